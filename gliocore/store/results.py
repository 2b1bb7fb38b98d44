"""Configurations, segmentations, feature sets and each subject's / scan's current result."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import duckdb
import pandas as pd

from gliocore.store.rows import _frame, _insert, _none, _now
from gliocore.types import BASELINE_SCAN

_SEG_COLUMNS = ["seg_key", "input_key", "backend", "backend_version", "weights_checksum",
                "cache_token", "label_map", "device", "path", "mask_sha256", "volume_ce_mm3",
                "volume_ne_mm3", "seconds", "warnings", "created_at"]


@dataclass(frozen=True)
class SegmentationRecord:
    """A cached segmentation (row of ``segmentations``)."""

    seg_key: str
    backend: str
    backend_version: str
    weights_checksum: str | None
    label_map: str
    device: str | None
    path: str
    mask_sha256: str
    volume_ce_mm3: float | None
    volume_ne_mm3: float | None
    seconds: float | None
    warnings: list[str]


class ResultsMixin:
    """Configurations, segmentations, feature sets and each subject's / scan's current result.

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

    def put_config(self, config_key: str, backend: str, backend_version: str, cache_token: str,
                   params_fingerprint: str, params_json: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR IGNORE INTO configs VALUES (?, ?, ?, ?, ?, ?)",
                        [config_key, backend, backend_version, cache_token, params_fingerprint,
                         _now()])
            con.execute("INSERT OR IGNORE INTO radiomics_params VALUES (?, ?, ?)",
                        [params_fingerprint, params_json, _now()])

    def configs(self, cohort_id: str) -> pd.DataFrame:
        """Configurations with results in a cohort, most recently updated first."""
        return self._df("""
            SELECT c.config_key, c.backend, c.backend_version, c.params_fingerprint,
                   c.cache_token, count(*) AS n_subjects, max(r.updated_at) AS updated_at
            FROM subject_results r JOIN configs c USING (config_key)
            WHERE r.cohort_id = ? GROUP BY ALL ORDER BY updated_at DESC""", [cohort_id])

    def latest_config(self, cohort_id: str) -> str | None:
        df = self.configs(cohort_id)
        return None if df.empty else str(df.iloc[0]["config_key"])

    # -- segmentations and features -------------------------------------------------------
    def segmentation(self, seg_key: str) -> SegmentationRecord | None:
        return self.segmentations([seg_key]).get(seg_key)

    def segmentation_keys_at(self, paths: Sequence[str]) -> dict[str, set[str]]:
        """``{path: {seg_key, ...}}`` of the segmentations recorded at these mask paths (one
        query): a path recorded for another key is a collision."""
        wanted = sorted(set(paths))
        if not wanted:
            return {}
        df = self._df("SELECT path, seg_key FROM segmentations "
                      "WHERE path IN (SELECT unnest(?::VARCHAR[]))", [wanted])
        out: dict[str, set[str]] = {}
        for path, key in df.itertuples(index=False):
            out.setdefault(str(path), set()).add(str(key))
        return out

    def segmentations(self, seg_keys: Sequence[str]) -> dict[str, SegmentationRecord]:
        """Cached segmentations by key, in one query (keys not cached are absent)."""
        keys = sorted(set(seg_keys))
        if not keys:
            return {}
        df = self._df("SELECT * FROM segmentations WHERE seg_key IN (SELECT unnest(?::VARCHAR[]))",
                      [keys])
        return {r.seg_key: SegmentationRecord(
            r.seg_key, r.backend, r.backend_version, _none(r.weights_checksum), r.label_map,
            _none(r.device), r.path, r.mask_sha256, _none(r.volume_ce_mm3),
            _none(r.volume_ne_mm3), _none(r.seconds), json.loads(r.warnings or "[]"))
            for r in df.itertuples(index=False)}


    def has_feature_set(self, feature_key: str) -> bool:
        return bool(self.existing_feature_sets([feature_key]))

    def existing_feature_sets(self, feature_keys: Sequence[str]) -> set[str]:
        """Which feature sets are stored, in one query."""
        keys = sorted(set(k for k in feature_keys if k))
        if not keys:
            return set()
        with self.read() as con:
            rows = con.execute("SELECT feature_key FROM feature_sets WHERE feature_key IN "
                               "(SELECT unnest(?::VARCHAR[]))", [keys]).fetchall()
        return {r[0] for r in rows}

    def save_subject_result(self, **result: Any) -> None:
        """Write one scan's results in one transaction; see :meth:`save_subject_results`."""
        self.save_subject_results([result])

    def save_subject_results(self, results: Sequence[dict[str, Any]]) -> None:
        """Write several scans' results in one transaction (a crash loses none of them
        half-written; a batch costs a handful of statements, not several per scan).

        Each item has: cohort_id, subject_id, config_key, input_key, seg_key, feature_key, and

        scan_id : str, default ``baseline``
            The scan; its result goes to ``scan_results``.
        baseline : bool, default True
            Whether it is the subject's baseline (first) scan, whose result is also the
            subject's in ``subject_results`` (what the cross-sectional analyses read).
        segmentation : dict or None
            A new ``segmentations`` row (None when the segmentation was cached).
        feature_rows : sequence of (tumour_class, sequence, feature, value, reason) or None
            A new feature set (None when cached); ``feature_meta`` has params_fingerprint,
            seconds.
        image_stats : dict path -> {brain_mean, brain_std, brain_median, brain_p01, brain_p99,
            shape, spacing}, optional
        qc_rows : QC metrics rows against a reference mask, optional.
        """
        results = list(results)
        if not results:
            return
        rows = _result_rows(results, _now())
        with self.transaction() as con:
            _write_result_rows(con, *rows)

    def drop_stale_result(self, cohort_id: str, subject_id: str, config_key: str,
                          input_key: str | None = None, scan_id: str | None = None) -> None:
        """Forget a scan's result under a configuration unless it was computed from
        ``input_key`` (None: whatever it was computed from), e.g. when its current images fail.

        ``scan_id`` None: every scan of the subject."""
        self.drop_stale_results([(cohort_id, subject_id, config_key, input_key, scan_id)])

    def drop_stale_results(self, rows: Sequence[tuple[str, str, str, str | None, str | None]]
                           ) -> None:
        """:meth:`drop_stale_result` for several (cohort_id, subject_id, config_key, input_key,
        scan_id) rows, in one transaction."""
        rows = list(rows)
        if not rows:
            return
        df = pd.DataFrame(rows, columns=["cohort_id", "subject_id", "config_key", "input_key",
                                         "scan_id"], dtype=object)
        with self.transaction() as con:
            con.register("_stale", df)
            for table in ("subject_results", "scan_results"):  # module constants, not input
                con.execute(f"""DELETE FROM {table} USING _stale s
                                WHERE {table}.cohort_id = s.cohort_id
                                AND {table}.subject_id = s.subject_id
                                AND {table}.config_key = s.config_key
                                AND {table}.input_key IS DISTINCT FROM s.input_key::VARCHAR
                                AND (s.scan_id IS NULL OR {table}.scan_id = s.scan_id::VARCHAR)""")
            con.unregister("_stale")

    def subject_result(self, cohort_id: str, subject_id: str, config_key: str
                       ) -> dict[str, Any] | None:
        df = self._df("SELECT * FROM subject_results WHERE cohort_id = ? AND subject_id = ? "
                      "AND config_key = ?", [cohort_id, subject_id, config_key])
        return None if df.empty else df.iloc[0].to_dict()

    def features_long(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Features of a cohort under a configuration (default: the latest), long form.

        Columns: subject_id, tumour_class, sequence, feature, value, reason.
        """
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "tumour_class", "sequence", "feature",
                                         "value", "reason"])
        return self._df("""
            SELECT r.subject_id, f.tumour_class, f.sequence, f.feature, f.value, f.reason
            FROM subject_results r JOIN features f USING (feature_key)
            WHERE r.cohort_id = ? AND r.config_key = ?
            ORDER BY r.subject_id, f.tumour_class, f.sequence, f.feature""",
                        [cohort_id, config_key])

    def segmentations_of(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Per subject: segmentation path, backend, version, weights checksum, volumes, time."""
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "seg_key", "path", "backend"])
        return self._df("""
            SELECT r.subject_id, s.seg_key, s.path, s.backend, s.backend_version,
                   s.weights_checksum, s.label_map, s.device, s.volume_ce_mm3, s.volume_ne_mm3,
                   s.seconds, s.warnings, fs.seconds AS feature_seconds
            FROM subject_results r JOIN segmentations s USING (seg_key)
            LEFT JOIN feature_sets fs USING (feature_key)
            WHERE r.cohort_id = ? AND r.config_key = ? ORDER BY r.subject_id""",
                        [cohort_id, config_key])

    def scan_results(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Per scan: subject_id, scan_id, days, scan_order, seg_key, feature_key, mask path,
        volume_ce_mm3, volume_ne_mm3 (voxel counts x voxel volume) under a configuration
        (default: the latest); scans without a result have NULL keys and volumes."""
        config_key = config_key or self.latest_config(cohort_id) or ""
        return self._df("""
            SELECT sc.subject_id, sc.scan_id, sc.days, sc.scan_order, r.seg_key, r.feature_key,
                   seg.path, seg.volume_ce_mm3, seg.volume_ne_mm3
            FROM scans sc
            LEFT JOIN scan_results r ON r.cohort_id = sc.cohort_id
                 AND r.subject_id = sc.subject_id AND r.scan_id = sc.scan_id AND r.config_key = ?
            LEFT JOIN segmentations seg ON seg.seg_key = r.seg_key
            WHERE sc.cohort_id = ? ORDER BY sc.subject_id, sc.scan_order""",
                        [config_key, cohort_id])

    def features_long_scans(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Features of every scan, long form: subject_id, scan_id, tumour_class, sequence,
        feature, value, reason."""
        config_key = config_key or self.latest_config(cohort_id) or ""
        return self._df("""
            SELECT r.subject_id, r.scan_id, f.tumour_class, f.sequence, f.feature, f.value,
                   f.reason
            FROM scan_results r JOIN features f USING (feature_key)
            WHERE r.cohort_id = ? AND r.config_key = ?
            ORDER BY r.subject_id, r.scan_id, f.tumour_class, f.sequence, f.feature""",
                        [cohort_id, config_key])


_Rows = list[tuple]


def _result_rows(results: Sequence[dict[str, Any]], now: Any
                 ) -> tuple[_Rows, _Rows, _Rows, _Rows, _Rows, _Rows]:
    """The rows :meth:`ResultsMixin.save_subject_results` writes: segmentations, feature sets,
    features, image statistics, QC metrics and results (the last item of a result row says
    whether it is the subject's baseline)."""
    seg_rows, fs_rows, feat_rows, stat_rows, qc_rows, res_rows = [], [], [], [], [], []
    for r in results:
        seg_key, feature_key, input_key = r["seg_key"], r["feature_key"], r["input_key"]
        s = r.get("segmentation")
        if s is not None:
            seg_rows.append((seg_key, input_key, s["backend"], s["backend_version"],
                             s.get("weights_checksum"), s["cache_token"], s["label_map"],
                             s.get("device"), s["path"], s["mask_sha256"],
                             s.get("volume_ce_mm3"), s.get("volume_ne_mm3"), s.get("seconds"),
                             json.dumps(s.get("warnings") or []), now))
        rows = r.get("feature_rows")
        if rows is not None:
            meta = r.get("feature_meta") or {}
            n_missing = sum(1 for row in rows if row[3] is None)
            fs_rows.append((feature_key, seg_key, meta.get("params_fingerprint", ""),
                            len(rows), n_missing, meta.get("seconds"), now))
            feat_rows.extend((feature_key, *row) for row in rows)
        for path, st in (r.get("image_stats") or {}).items():
            stat_rows.append((path, st["brain_mean"], st["brain_std"], st["brain_median"],
                              st["brain_p01"], st["brain_p99"], json.dumps(st.get("shape")),
                              json.dumps(st.get("spacing"))))
        for q in r.get("qc_rows") or ():
            qc_rows.append((seg_key, q["reference_sha256"], q["region"], q.get("dice"),
                            q.get("hd95_mm"), q.get("volume_pred_mm3"), q.get("volume_ref_mm3"),
                            q.get("volume_diff_mm3"), q.get("hd95_pooled_mm"),
                            q.get("reference_label_map"), q.get("qc_version")))
        res_rows.append((r["cohort_id"], r["subject_id"], r["config_key"], input_key, seg_key,
                         feature_key, now, r.get("scan_id") or BASELINE_SCAN,
                         bool(r.get("baseline", True))))
    return seg_rows, fs_rows, feat_rows, stat_rows, qc_rows, res_rows


def _write_result_rows(con: duckdb.DuckDBPyConnection, seg_rows: _Rows, fs_rows: _Rows,
                       feat_rows: _Rows, stat_rows: _Rows, qc_rows: _Rows, res_rows: _Rows
                       ) -> None:
    """Write the rows of :func:`_result_rows` inside the caller's transaction."""
    _insert(con, "segmentations", _SEG_COLUMNS, seg_rows, replace=True, key=["seg_key"])
    if fs_rows:
        keys = sorted({row[0] for row in fs_rows})
        con.execute("DELETE FROM features WHERE feature_key IN "
                    "(SELECT unnest(?::VARCHAR[]))", [keys])
        _insert(con, "features", ["feature_key", "tumour_class", "sequence", "feature",
                                  "value", "reason"], feat_rows, replace=True,
                key=["feature_key", "tumour_class", "sequence", "feature"])
        _insert(con, "feature_sets", ["feature_key", "seg_key", "params_fingerprint",
                                      "n_values", "n_missing", "seconds", "created_at"],
                fs_rows, replace=True, key=["feature_key"])
    if stat_rows:
        df = _frame(stat_rows, ["path", "brain_mean", "brain_std", "brain_median",
                                "brain_p01", "brain_p99", "shape", "spacing"], ["path"])
        con.register("_stats", df)
        con.execute("""UPDATE images SET brain_mean = s.brain_mean, brain_std = s.brain_std,
                       brain_median = s.brain_median, brain_p01 = s.brain_p01,
                       brain_p99 = s.brain_p99, shape = s.shape, spacing = s.spacing
                       FROM _stats s WHERE images.path = s.path""")
        con.unregister("_stats")
    if qc_rows:
        # one reference per segmentation: scores against an older version of it, read
        # with another label map or by older QC definitions go
        refs = _frame([(q[0], q[1]) for q in qc_rows], ["seg_key", "ref"], ["seg_key"])
        con.register("_refs", refs)
        con.execute("""DELETE FROM qc_metrics USING _refs r
                       WHERE qc_metrics.seg_key = r.seg_key""")
        con.unregister("_refs")
        _insert(con, "qc_metrics", ["seg_key", "reference_sha256", "region", "dice",
                                    "hd95_mm", "volume_pred_mm3", "volume_ref_mm3",
                                    "volume_diff_mm3", "hd95_pooled_mm",
                                    "reference_label_map", "qc_version"], qc_rows,
                replace=True, key=["seg_key", "reference_sha256", "region"])
    _insert(con, "scan_results", ["cohort_id", "subject_id", "scan_id", "config_key",
                                  "input_key", "seg_key", "feature_key", "updated_at"],
            [(r[0], r[1], r[7], *r[2:7]) for r in res_rows], replace=True,
            key=["cohort_id", "subject_id", "scan_id", "config_key"])
    _insert(con, "subject_results", ["cohort_id", "subject_id", "config_key", "input_key",
                                     "seg_key", "feature_key", "updated_at", "scan_id"],
            [r[:8] for r in res_rows if r[8]], replace=True,
            key=["cohort_id", "subject_id", "config_key"])
