"""The DuckDB store: the schema (in this one module) and every query, parameterised.

Everything GlioScope computes is cached here, keyed by content:

* an image's SHA-256 (looked up by path, size and mtime, so unchanged files are not re-hashed);
* ``seg_key`` = hash(input images' hashes + the backend's cache token: name, version, weights
  checksum, options, label map [+ the imported mask's hash]);
* ``feature_key`` = hash(segmentation mask hash + input hashes + radiomics params fingerprint).

Results of one subject are written in one transaction when the subject is done, so a crash
loses at most the subjects in flight and a re-run resumes. Connections are short-lived so
that the CLI and the dashboard can take turns on one file: reads are read-only and go first
(see :meth:`Store.read`), and one processing run at a time holds the store
(:class:`gliocore.store.locking.RunLock`).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import duckdb
import pandas as pd

from gliocore.store.locking import ReaderTurns, RunLock
from gliocore.versions import QC_VERSION
from gliocore.types import BASELINE_SCAN, PathType

SCHEMA_VERSION = 1
#: A reader uses the writer's snapshot only when it is at most this much older than the store.
SNAPSHOT_MAX_LAG_S = 30.0

#: The whole schema. Tables, in the order data flows.
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR)""",
    # A cohort = clinical CSV + image root (+ naming). cohort_id = hash of the resolved paths.
    """CREATE TABLE IF NOT EXISTS cohorts (
        cohort_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        clinical_csv VARCHAR NOT NULL,
        image_root VARCHAR NOT NULL,
        naming VARCHAR,
        updated_at TIMESTAMP,
        event_assumed BOOLEAN DEFAULT FALSE)""",
    # One row per clinical-table subject; clinical values as JSON (columns vary by cohort).
    """CREATE TABLE IF NOT EXISTS subjects (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        folder VARCHAR,
        has_images BOOLEAN NOT NULL,
        reference_mask VARCHAR,
        clinical_json VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id))""",
    # One row per scan (timepoint) of a subject; a cohort without timepoints has one scan per
    # subject, scan_id 'baseline'. days = days from the subject's first scan (NULL: unknown).
    """CREATE TABLE IF NOT EXISTS scans (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        days DOUBLE,
        scan_order INTEGER NOT NULL,
        folder VARCHAR,
        reference_mask VARCHAR,
        PRIMARY KEY (cohort_id, subject_id, scan_id))""",
    """CREATE TABLE IF NOT EXISTS scan_images (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id, scan_id, sequence))""",
    # The baseline scan's images (kept for the cross-sectional queries).
    """CREATE TABLE IF NOT EXISTS subject_images (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id, sequence))""",
    # Content hash and geometry of every image file, with brain-intensity statistics.
    """CREATE TABLE IF NOT EXISTS images (
        path VARCHAR PRIMARY KEY,
        size_bytes BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        shape VARCHAR,
        spacing VARCHAR,
        brain_mean DOUBLE,
        brain_std DOUBLE,
        brain_median DOUBLE,
        brain_p01 DOUBLE,
        brain_p99 DOUBLE,
        hashed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS segmentations (
        seg_key VARCHAR PRIMARY KEY,
        input_key VARCHAR NOT NULL,
        backend VARCHAR NOT NULL,
        backend_version VARCHAR NOT NULL,
        weights_checksum VARCHAR,
        cache_token VARCHAR NOT NULL,
        label_map VARCHAR NOT NULL,
        device VARCHAR,
        path VARCHAR NOT NULL,
        mask_sha256 VARCHAR NOT NULL,
        volume_ce_mm3 DOUBLE,
        volume_ne_mm3 DOUBLE,
        seconds DOUBLE,
        warnings VARCHAR,
        created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS radiomics_params (
        params_fingerprint VARCHAR PRIMARY KEY,
        params_json VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS feature_sets (
        feature_key VARCHAR PRIMARY KEY,
        seg_key VARCHAR NOT NULL,
        params_fingerprint VARCHAR NOT NULL,
        n_values INTEGER,
        n_missing INTEGER,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Long form: one row per (feature set, class, sequence, feature). sequence '' = shape.
    """CREATE TABLE IF NOT EXISTS features (
        feature_key VARCHAR NOT NULL,
        tumour_class VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        feature VARCHAR NOT NULL,
        value DOUBLE,
        reason VARCHAR,
        PRIMARY KEY (feature_key, tumour_class, sequence, feature))""",
    # A configuration = backend cache token + radiomics params; config_key = hash of both.
    """CREATE TABLE IF NOT EXISTS configs (
        config_key VARCHAR PRIMARY KEY,
        backend VARCHAR NOT NULL,
        backend_version VARCHAR NOT NULL,
        cache_token VARCHAR NOT NULL,
        params_fingerprint VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    # Each scan's current result under a configuration.
    """CREATE TABLE IF NOT EXISTS scan_results (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        input_key VARCHAR NOT NULL,
        seg_key VARCHAR NOT NULL,
        feature_key VARCHAR NOT NULL,
        updated_at TIMESTAMP,
        PRIMARY KEY (cohort_id, subject_id, scan_id, config_key))""",
    # Each subject's current result under a configuration: its baseline (first) scan's, the
    # one the cross-sectional analyses use (scan_id says which; added by a migration).
    """CREATE TABLE IF NOT EXISTS subject_results (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        input_key VARCHAR NOT NULL,
        seg_key VARCHAR NOT NULL,
        feature_key VARCHAR NOT NULL,
        updated_at TIMESTAMP,
        PRIMARY KEY (cohort_id, subject_id, config_key))""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        cohort_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        backend VARCHAR,
        workers INTEGER,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        status VARCHAR,
        n_subjects INTEGER,
        n_computed INTEGER,
        n_cached INTEGER,
        n_errors INTEGER)""",
    """CREATE TABLE IF NOT EXISTS subject_errors (
        run_id VARCHAR NOT NULL,
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        stage VARCHAR,
        path VARCHAR,
        message VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    # Segmentation QC against reference masks (ground truth or expert masks).
    """CREATE TABLE IF NOT EXISTS qc_metrics (
        seg_key VARCHAR NOT NULL,
        reference_sha256 VARCHAR NOT NULL,
        region VARCHAR NOT NULL,
        dice DOUBLE,
        hd95_mm DOUBLE,
        volume_pred_mm3 DOUBLE,
        volume_ref_mm3 DOUBLE,
        volume_diff_mm3 DOUBLE,
        PRIMARY KEY (seg_key, reference_sha256, region))""",
    # Registrations of native-space images to an atlas template (gliocore.location.registration).
    # reg_key = hash(moving image SHA-256 + atlas + transform type + code version).
    """CREATE TABLE IF NOT EXISTS registrations (
        reg_key VARCHAR PRIMARY KEY,
        moving_sha256 VARCHAR NOT NULL,
        atlas VARCHAR NOT NULL,
        transform VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        transforms_json VARCHAR NOT NULL,
        brain_dice DOUBLE,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Location results of one segmentation (gliocore.location.regions), keyed by content:
    # location_key = hash(seg_key + mask SHA-256 + atlas + space + reg_key + code versions).
    """CREATE TABLE IF NOT EXISTS location_sets (
        location_key VARCHAR PRIMARY KEY,
        seg_key VARCHAR NOT NULL,
        atlas VARCHAR NOT NULL,
        space VARCHAR NOT NULL,
        reg_key VARCHAR,
        code_version VARCHAR NOT NULL,
        atlas_mask_path VARCHAR,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Long form: one row per (location set, class, feature); class 'vasari' holds F1..F25.
    """CREATE TABLE IF NOT EXISTS location_values (
        location_key VARCHAR NOT NULL,
        tumour_class VARCHAR NOT NULL,
        feature VARCHAR NOT NULL,
        value DOUBLE,
        label VARCHAR,
        reason VARCHAR,
        PRIMARY KEY (location_key, tumour_class, feature))""",
)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ImageRecord:
    path: str
    sha256: str
    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None


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


class Store:
    """A GlioScope DuckDB file.

    Parameters
    ----------
    path : path
        The ``.duckdb`` file (created with its schema if absent).
    lock_timeout : float
        Seconds to keep retrying when another process holds the file.
    """

    def __init__(self, path: PathType, lock_timeout: float = 30.0,
                 run_wait: float = 0.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.run_wait = run_wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._readers = ReaderTurns(self.path)
        self._run_locks: dict[str, RunLock] = {}
        self._local = threading.local()
        self.last_read_wait = 0.0
        with self.connect() as con:
            ensure_schema(con)

    # -- connection -----------------------------------------------------------------------
    # Reads open the file read-only (many readers share it) and poll the lock every few ms;
    # a reader kept waiting announces itself and writers let it in after their current short
    # transaction (gliocore.store.locking.ReaderTurns): a read waits at most about one write
    # transaction, not a whole run. Writers: keep transactions short (one subject / one batch).
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the calls inside (on this thread) share one connection and one transaction.

        Opening a DuckDB file costs tens of milliseconds, so several reads and writes that
        belong together (a batch of results, the start of a run) take one connection, and the
        writes commit together or not at all.
        """
        if getattr(self._local, "con", None) is not None:  # already inside a batch
            yield
            return
        with self.transaction() as con:
            self._local.con = con
            try:
                yield
            finally:
                self._local.con = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-write connection; retried while another process (or, in this
        process, a read-only connection) holds the file; waiting readers go first."""
        shared = getattr(self._local, "con", None)
        if shared is not None:  # inside batch(): its connection
            yield shared
            return
        deadline = time.monotonic() + self.lock_timeout
        while True:
            self._readers.let_readers_in()
            try:
                con = duckdb.connect(str(self.path))
                break
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Serve every read of this thread inside the block from one read-only connection
        (a page's several queries cost one connection, ~10-80 ms each, not one per query)."""
        if getattr(self._local, "con", None) is not None or \
                getattr(self._local, "read_con", None) is not None:
            yield  # inside batch() or reading() already
            return
        with self.read() as con:
            self._local.read_con = con
            try:
                yield
            finally:
                self._local.read_con = None

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection (see the comment above :meth:`connect`).

        Inside a process that has a read-write connection open (the dashboard processing a
        cohort), reads share that connection's database instead. ``last_read_wait`` says how
        long the last read waited for the file (seconds; 0 when it was free).
        """
        held = getattr(self._local, "con", None)
        if held is None:
            held = getattr(self._local, "read_con", None)
        if held is not None:  # inside batch() (its read-write connection) or reading()
            yield held
            return
        t_start = time.perf_counter()
        deadline = time.monotonic() + self.lock_timeout
        announced: Path | None = None
        try:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=True)
                    break
                except duckdb.ConnectionException as exc:  # this process has it open read-write
                    if "different configuration" not in str(exc):
                        raise
                    try:
                        con = duckdb.connect(str(self.path))
                        break
                    except (duckdb.IOException, duckdb.ConnectionException) as exc2:
                        if not _busy(exc2) or time.monotonic() > deadline:
                            raise
                except duckdb.IOException as exc:
                    if not _busy(exc) or time.monotonic() > deadline:
                        raise
                    snap = self._fresh_snapshot()  # a writer has the file: read its last commit
                    if snap is not None:
                        try:
                            con = duckdb.connect(str(snap), read_only=True)
                            break
                        except duckdb.Error:
                            pass
                if announced is None:
                    self._readers.mark_contended()
                    announced = self._readers.announce()
                time.sleep(0.005)
        finally:
            ReaderTurns.withdraw(announced)
        self.last_read_wait = time.perf_counter() - t_start
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT (ROLLBACK on error); inside :meth:`batch`, its
        connection and transaction. Publishes a snapshot for readers after the commit when
        readers have recently found the store locked."""
        shared = getattr(self._local, "con", None)
        if shared is not None:
            yield shared
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            if self._readers.contended_recently():
                self._publish_snapshot(con)

    @property
    def snapshot_path(self) -> Path:
        """A read-only copy of the store as of a recent commit (see :mod:`gliocore.store.locking`)."""
        return Path(f"{self.path}.snapshot")

    def _publish_snapshot(self, con: duckdb.DuckDBPyConnection) -> None:
        """Checkpoint, then copy the file while still holding it (a consistent copy) and put
        the copy in place atomically. Never fails the write that triggered it."""
        tmp = self.path.with_name(f".{self.path.name}.snapshot.{os.getpid()}.tmp")
        try:
            con.execute("CHECKPOINT")
            shutil.copyfile(self.path, tmp)
            os.replace(tmp, self.snapshot_path)
        except (duckdb.Error, OSError):
            tmp.unlink(missing_ok=True)

    def _fresh_snapshot(self) -> Path | None:
        """The snapshot, if it is at most :data:`SNAPSHOT_MAX_LAG_S` older than the store."""
        try:
            snap = self.snapshot_path.stat().st_mtime
            main = self.path.stat().st_mtime
        except OSError:
            return None
        return self.snapshot_path if snap >= main - SNAPSHOT_MAX_LAG_S else None

    def _df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.read() as con:
            return con.execute(sql, list(params)).df()

    # -- cohorts and subjects -------------------------------------------------------------
    def upsert_cohort(self, cohort_id: str, name: str, clinical_csv: str, image_root: str,
                      naming: str | None, subjects: Iterable[dict[str, Any]],
                      event_assumed: bool = False) -> None:
        """Record a cohort and its subjects (replacing the previous subject list).

        ``subjects`` items: subject_id, folder, has_images, reference_mask, clinical (dict),
        sequences (dict seq -> path, may be empty) of the baseline scan, and optionally
        ``scans``: a list of {scan_id, days, folder, reference_mask, reference_sha256,
        sequences} in time order
        (default: the one baseline scan above). ``event_assumed``: the clinical table had
        no event column, so every subject counts as a death.
        """
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO cohorts (cohort_id, name, clinical_csv, image_root, "
                        "naming, updated_at, event_assumed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [cohort_id, name, clinical_csv, image_root, naming, _now(),
                         bool(event_assumed)])
            con.execute("DELETE FROM subjects WHERE cohort_id = ?", [cohort_id])
            con.execute("DELETE FROM subject_images WHERE cohort_id = ?", [cohort_id])
            con.execute("DELETE FROM scans WHERE cohort_id = ?", [cohort_id])
            con.execute("DELETE FROM scan_images WHERE cohort_id = ?", [cohort_id])
            subj_rows, image_rows, scan_rows, scan_image_rows = [], [], [], []
            for s in subjects:
                sid = str(s["subject_id"])
                subj_rows.append((cohort_id, sid, s.get("folder"), bool(s["has_images"]),
                                  s.get("reference_mask"),
                                  json.dumps(s["clinical"], default=_json_default),
                                  s.get("reference_sha256")))
                image_rows.extend((cohort_id, sid, seq, str(p))
                                  for seq, p in (s.get("sequences") or {}).items())
                scans = s.get("scans")
                if scans is None:
                    scans = ([{"scan_id": BASELINE_SCAN, "days": 0.0, "folder": s.get("folder"),
                               "reference_mask": s.get("reference_mask"),
                               "sequences": s.get("sequences") or {}}]
                             if s.get("has_images") else [])
                for order, sc in enumerate(scans):
                    ref_sha = sc.get("reference_sha256")
                    if ref_sha is None and order == 0 and sc.get("reference_mask") and \
                            sc.get("reference_mask") == s.get("reference_mask"):
                        ref_sha = s.get("reference_sha256")  # the baseline's is the subject's
                    scan_rows.append((cohort_id, sid, sc["scan_id"], sc.get("days"), order,
                                      sc.get("folder"), sc.get("reference_mask"), ref_sha))
                    scan_image_rows.extend((cohort_id, sid, sc["scan_id"], seq, str(p))
                                           for seq, p in (sc.get("sequences") or {}).items())
            # one statement per table, not one per row (1,000 subjects: milliseconds)
            _insert(con, "subjects", ["cohort_id", "subject_id", "folder", "has_images",
                                      "reference_mask", "clinical_json", "reference_sha256"],
                    subj_rows)
            _insert(con, "subject_images", ["cohort_id", "subject_id", "sequence", "path"],
                    image_rows)
            _insert(con, "scans", ["cohort_id", "subject_id", "scan_id", "days", "scan_order",
                                   "folder", "reference_mask", "reference_sha256"], scan_rows)
            _insert(con, "scan_images", ["cohort_id", "subject_id", "scan_id", "sequence", "path"],
                    scan_image_rows)

    def cohorts(self) -> pd.DataFrame:
        """All cohorts with subject counts, most recently updated first."""
        return self._df("""
            SELECT c.*, count(s.subject_id) AS n_subjects,
                   count(s.subject_id) FILTER (WHERE s.has_images) AS n_with_images
            FROM cohorts c LEFT JOIN subjects s USING (cohort_id)
            GROUP BY ALL ORDER BY c.updated_at DESC""")

    def cohort(self, cohort_id: str) -> dict[str, Any] | None:
        df = self._df("SELECT * FROM cohorts WHERE cohort_id = ?", [cohort_id])
        return None if df.empty else df.iloc[0].to_dict()

    def clinical(self, cohort_id: str) -> pd.DataFrame:
        """The clinical table of a cohort (one row per subject, typed as loaded)."""
        df = self._df("SELECT subject_id, has_images, clinical_json FROM subjects "
                      "WHERE cohort_id = ? ORDER BY subject_id", [cohort_id])
        rows = [json.loads(t) for t in df["clinical_json"]]
        out = pd.DataFrame(rows)
        if not out.empty:
            out["has_images"] = df["has_images"].to_numpy()
        return out

    def subject_images(self, cohort_id: str, subject_id: str) -> dict[str, str]:
        df = self._df("SELECT sequence, path FROM subject_images WHERE cohort_id = ? AND "
                      "subject_id = ?", [cohort_id, subject_id])
        return dict(zip(df["sequence"], df["path"]))

    def scans(self, cohort_id: str) -> pd.DataFrame:
        """Every scan of a cohort: subject_id, scan_id, days (from the subject's first scan),
        scan_order (0 = baseline), folder, reference_mask; by subject and time."""
        return self._df("SELECT subject_id, scan_id, days, scan_order, folder, reference_mask "
                        "FROM scans WHERE cohort_id = ? ORDER BY subject_id, scan_order",
                        [cohort_id])

    def has_followups(self, cohort_id: str) -> bool:
        """Whether any subject of the cohort has more than one scan."""
        with self.connect() as con:
            return con.execute("SELECT 1 FROM scans WHERE cohort_id = ? AND scan_order > 0 LIMIT 1",
                               [cohort_id]).fetchone() is not None

    def scan_images(self, cohort_id: str, subject_id: str, scan_id: str) -> dict[str, str]:
        """Sequence -> path of one scan."""
        df = self._df("SELECT sequence, path FROM scan_images WHERE cohort_id = ? AND "
                      "subject_id = ? AND scan_id = ?", [cohort_id, subject_id, scan_id])
        return dict(zip(df["sequence"], df["path"]))

    def reference_mask(self, cohort_id: str, subject_id: str) -> str | None:
        df = self._df("SELECT reference_mask FROM subjects WHERE cohort_id = ? AND subject_id = ?",
                      [cohort_id, subject_id])
        return None if df.empty else df.iloc[0, 0]

    # -- images ---------------------------------------------------------------------------
    def cached_image_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The stored SHA-256 of a file whose size and mtime are unchanged, else None."""
        return self.cached_file_hashes([(path, size, mtime_ns)]).get(path)

    def cached_file_hashes(self, files: Sequence[tuple[str, int, int]]) -> dict[str, str]:
        """Stored SHA-256 of every file whose size and mtime are unchanged, in one query.

        Parameters
        ----------
        files : sequence of (path, size_bytes, mtime_ns)

        Returns
        -------
        dict path -> sha256, for the files whose stored size and mtime match.
        """
        files = list(files)
        if not files:
            return {}
        df = pd.DataFrame(files, columns=["path", "size_bytes", "mtime_ns"])
        with self.read() as con:
            con.register("_wanted", df)
            rows = con.execute("""SELECT i.path, i.sha256 FROM images i JOIN _wanted w
                                  ON i.path = w.path AND i.size_bytes = w.size_bytes
                                  AND i.mtime_ns = w.mtime_ns""").fetchall()
        return dict(rows)

    def put_image_hashes(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, sha256) rows (one statement for all)."""
        rows = list(rows)
        if not rows:
            return
        df = pd.DataFrame(rows, columns=["path", "size_bytes", "mtime_ns", "sha256"])
        df = df.drop_duplicates("path", keep="last")
        df["hashed_at"] = _now()
        with self.transaction() as con:
            con.register("_hashes", df)
            con.execute("""INSERT INTO images (path, size_bytes, mtime_ns, sha256, hashed_at)
                           SELECT path, size_bytes, mtime_ns, sha256, hashed_at FROM _hashes
                           ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                             mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                             hashed_at = excluded.hashed_at""")
            con.unregister("_hashes")

    def image_stats(self, cohort_id: str) -> pd.DataFrame:
        """Per subject and sequence: brain intensity statistics (raw), for the data check."""
        return self._df("""
            SELECT si.subject_id, si.sequence, i.brain_mean, i.brain_std, i.brain_median,
                   i.brain_p01, i.brain_p99, i.shape, i.spacing
            FROM subject_images si JOIN images i USING (path)
            WHERE si.cohort_id = ? AND i.brain_mean IS NOT NULL
            ORDER BY si.subject_id, si.sequence""", [cohort_id])

    # -- configurations -------------------------------------------------------------------
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

    def has_qc(self, seg_key: str, reference_sha256: str, label_map: str | None = None,
               qc_version: int | None = None) -> bool:
        """Whether a segmentation was scored against this exact reference mask content (read
        with ``label_map``, by QC definitions of revision ``qc_version``, when given)."""
        return bool(self.existing_qc([(seg_key, reference_sha256)], label_map, qc_version))

    def existing_qc(self, pairs: Sequence[tuple[str, str]], label_map: str | None = None,
                    qc_version: int | None = None) -> set[tuple[str, str]]:
        """Which (seg_key, reference_sha256) pairs have QC metrics, in one query (only scores
        made with reference label map ``label_map`` and QC revision ``qc_version`` when given)."""
        pairs = list(set(pairs))
        if not pairs:
            return set()
        df = pd.DataFrame(pairs, columns=["seg_key", "reference_sha256"])
        with self.read() as con:
            con.register("_pairs", df)
            rows = con.execute("""SELECT DISTINCT q.seg_key, q.reference_sha256 FROM qc_metrics q
                                  JOIN _pairs p USING (seg_key, reference_sha256)
                                  WHERE (CAST(? AS VARCHAR) IS NULL OR q.reference_label_map = ?)
                                    AND (CAST(? AS INTEGER) IS NULL OR q.qc_version = ?)""",
                               [label_map, label_map, qc_version, qc_version]).fetchall()
        return {(a, b) for a, b in rows}

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
        now = _now()
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
        with self.transaction() as con:
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

    def qc_metrics(self, cohort_id: str, config_key: str | None = None,
                   qc_version: int | None = None) -> pd.DataFrame:
        """QC metrics against the subjects' *current* reference masks, per subject and region.

        Rows are joined on the segmentation AND the content hash of the reference mask the
        subject has now (recorded when the cohort is registered), so scores against a removed
        or changed reference are not returned. ``qc_version`` (default: the current
        :data:`gliocore.versions.QC_VERSION`) drops scores made by older QC definitions.
        """
        if qc_version is None:
            qc_version = QC_VERSION
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "region", "dice", "hd95_mm"])
        return self._df("""
            SELECT r.subject_id, s.backend, s.backend_version, q.region, q.dice, q.hd95_mm,
                   q.hd95_pooled_mm, q.volume_pred_mm3, q.volume_ref_mm3, q.volume_diff_mm3,
                   q.reference_label_map
            FROM subject_results r JOIN segmentations s USING (seg_key)
            JOIN subjects sub ON sub.cohort_id = r.cohort_id AND sub.subject_id = r.subject_id
            JOIN qc_metrics q ON q.seg_key = r.seg_key
                 AND q.reference_sha256 = sub.reference_sha256
            WHERE r.cohort_id = ? AND r.config_key = ? AND q.qc_version = ?
            ORDER BY r.subject_id, q.region""",
                        [cohort_id, config_key, qc_version])

    def scan_qc_metrics(self, cohort_id: str, config_key: str | None = None,
                        qc_version: int | None = None) -> pd.DataFrame:
        """QC metrics of every scan (baseline and follow-ups) against each scan's *current*
        reference mask, per scan and region.

        As :meth:`qc_metrics`, with ``scan_id``, ``scan_order`` (0 = baseline) and ``days``.
        A scan's current reference is the content hash recorded when the cohort was registered
        (``scans.reference_sha256``). In a store made before that column existed it is, until
        the cohort is registered again (every ``process`` run does), the subject's for the
        baseline scan and the reference file's last recorded hash (``images``) for follow-ups.
        """
        if qc_version is None:
            qc_version = QC_VERSION
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "scan_id", "scan_order", "days", "region",
                                         "dice", "hd95_mm"])
        return self._df("""
            SELECT r.subject_id, r.scan_id, sc.scan_order, sc.days, s.backend,
                   s.backend_version, q.region, q.dice, q.hd95_mm, q.hd95_pooled_mm,
                   q.volume_pred_mm3, q.volume_ref_mm3, q.volume_diff_mm3, q.reference_label_map
            FROM scan_results r JOIN segmentations s USING (seg_key)
            JOIN scans sc ON sc.cohort_id = r.cohort_id AND sc.subject_id = r.subject_id
                 AND sc.scan_id = r.scan_id
            JOIN subjects sub ON sub.cohort_id = r.cohort_id AND sub.subject_id = r.subject_id
            LEFT JOIN images ref ON ref.path = sc.reference_mask
            JOIN qc_metrics q ON q.seg_key = r.seg_key
                 AND q.reference_sha256 = coalesce(
                     sc.reference_sha256,
                     CASE WHEN sc.scan_order = 0 THEN sub.reference_sha256 END,
                     ref.sha256)
            WHERE r.cohort_id = ? AND r.config_key = ? AND q.qc_version = ?
            ORDER BY r.subject_id, sc.scan_order, q.region""",
                        [cohort_id, config_key, qc_version])

    # -- registrations and locations -------------------------------------------------------
    def registration(self, reg_key: str) -> dict[str, Any] | None:
        """A cached registration (row of ``registrations``) or None."""
        df = self._df("SELECT * FROM registrations WHERE reg_key = ?", [reg_key])
        return None if df.empty else df.iloc[0].to_dict()

    def save_registration(self, reg_key: str, moving_sha256: str, atlas: str, transform: str,
                          code_version: str, transforms_json: str, brain_dice: float | None,
                          seconds: float | None) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [reg_key, moving_sha256, atlas, transform, code_version, transforms_json,
                         brain_dice, seconds, _now()])

    def has_location(self, location_key: str) -> bool:
        with self.read() as con:
            return con.execute("SELECT 1 FROM location_sets WHERE location_key = ?",
                               [location_key]).fetchone() is not None

    def save_location(self, *, location_key: str, seg_key: str, atlas: str, space: str,
                      reg_key: str | None, code_version: str, atlas_mask_path: str | None,
                      seconds: float | None,
                      rows: Sequence[tuple[str, str, float | None, str | None, str | None]]
                      ) -> None:
        """Write one segmentation's location values in one transaction.

        ``rows``: (tumour_class, feature, value, label, reason).
        """
        with self.transaction() as con:
            con.execute("DELETE FROM location_values WHERE location_key = ?", [location_key])
            if rows:
                con.executemany("INSERT INTO location_values VALUES (?, ?, ?, ?, ?, ?)",
                                [[location_key, *r] for r in rows])
            con.execute("INSERT OR REPLACE INTO location_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [location_key, seg_key, atlas, space, reg_key, code_version,
                         atlas_mask_path, seconds, _now()])

    def location_sets_of(self, cohort_id: str, config_key: str | None = None,
                         code_version: str | None = None) -> pd.DataFrame:
        """Per subject: its segmentation's newest location set (of ``code_version`` when given),
        with the atlas, space, registration quality and the atlas-space mask path."""
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "seg_key", "location_key", "atlas", "space",
                                         "reg_key", "brain_dice", "atlas_mask_path"])
        return self._df("""
            SELECT subject_id, seg_key, location_key, atlas, space, reg_key, brain_dice,
                   transform, transforms_json, atlas_mask_path, seconds, created_at FROM (
                SELECT r.subject_id, r.seg_key, l.location_key, l.atlas, l.space, l.reg_key,
                       g.brain_dice, g.transform, g.transforms_json, l.atlas_mask_path,
                       l.seconds, l.created_at,
                       row_number() OVER (PARTITION BY r.subject_id
                                          ORDER BY l.created_at DESC, l.location_key) AS rn
                FROM subject_results r JOIN location_sets l ON l.seg_key = r.seg_key
                LEFT JOIN registrations g ON g.reg_key = l.reg_key
                WHERE r.cohort_id = ? AND r.config_key = ?
                  AND (CAST(? AS VARCHAR) IS NULL OR l.code_version = ?))
            WHERE rn = 1 ORDER BY subject_id""",
                        [cohort_id, config_key, code_version, code_version])

    def location_long(self, cohort_id: str, config_key: str | None = None,
                      code_version: str | None = None) -> pd.DataFrame:
        """Location values of each subject's newest location set, long form.

        Columns: subject_id, tumour_class, feature, value, label, reason.
        """
        config_key = config_key or self.latest_config(cohort_id)
        if config_key is None:
            return pd.DataFrame(columns=["subject_id", "tumour_class", "feature", "value",
                                         "label", "reason"])
        return self._df("""
            WITH latest AS (
                SELECT subject_id, location_key FROM (
                    SELECT r.subject_id, l.location_key,
                           row_number() OVER (PARTITION BY r.subject_id
                                              ORDER BY l.created_at DESC, l.location_key) AS rn
                    FROM subject_results r JOIN location_sets l ON l.seg_key = r.seg_key
                    WHERE r.cohort_id = ? AND r.config_key = ?
                      AND (CAST(? AS VARCHAR) IS NULL OR l.code_version = ?))
                WHERE rn = 1)
            SELECT latest.subject_id, v.tumour_class, v.feature, v.value, v.label, v.reason
            FROM latest JOIN location_values v USING (location_key)
            ORDER BY latest.subject_id, v.tumour_class, v.feature""",
                        [cohort_id, config_key, code_version, code_version])

    def location_long_scans(self, cohort_id: str, config_key: str | None = None,
                            code_version: str | None = None) -> pd.DataFrame:
        """Location values of every scan's newest location set, long form: subject_id, scan_id,
        tumour_class, feature, value, label, reason (location follows the scan's seg_key)."""
        config_key = config_key or self.latest_config(cohort_id) or ""
        return self._df("""
            WITH latest AS (
                SELECT subject_id, scan_id, location_key FROM (
                    SELECT r.subject_id, r.scan_id, l.location_key,
                           row_number() OVER (PARTITION BY r.subject_id, r.scan_id
                                              ORDER BY l.created_at DESC, l.location_key) AS rn
                    FROM scan_results r JOIN location_sets l ON l.seg_key = r.seg_key
                    WHERE r.cohort_id = ? AND r.config_key = ?
                      AND (CAST(? AS VARCHAR) IS NULL OR l.code_version = ?))
                WHERE rn = 1)
            SELECT latest.subject_id, latest.scan_id, v.tumour_class, v.feature, v.value, v.label,
                   v.reason
            FROM latest JOIN location_values v USING (location_key)
            ORDER BY latest.subject_id, latest.scan_id, v.tumour_class, v.feature""",
                        [cohort_id, config_key, code_version, code_version])

    # -- runs and errors ------------------------------------------------------------------
    def acquire_run_lock(self, what: str) -> RunLock:
        """Take the store's run lock (waiting up to ``run_wait`` seconds); pass it to
        :meth:`start_run`. Take it before opening a connection (e.g. before :meth:`batch`):
        a run waiting for the lock must not hold the file the running one writes.

        Raises
        ------
        StoreBusyError
            When another run holds the store for longer than ``run_wait`` seconds.
        """
        lock = RunLock(self.path)
        lock.acquire(what, wait=self.run_wait)
        return lock

    def start_run(self, cohort_id: str, config_key: str, backend: str, workers: int,
                  n_subjects: int, lock: RunLock | None = None) -> str:
        """Record a new run, holding the store's run lock until :meth:`finish_run`.

        ``lock``: from :meth:`acquire_run_lock`; without it the lock is taken here.

        Raises
        ------
        StoreBusyError
            When another run holds the store for longer than ``run_wait`` seconds.
        """
        run_id = uuid.uuid4().hex[:12]
        if lock is None:
            lock = self.acquire_run_lock(f"processing cohort {cohort_id} with {backend}")
        try:
            with self.transaction() as con:
                con.execute("INSERT INTO runs (run_id, cohort_id, config_key, backend, workers, "
                            "started_at, finished_at, status, n_subjects, n_computed, n_cached, "
                            "n_errors) VALUES (?, ?, ?, ?, ?, ?, NULL, 'running', ?, 0, 0, 0)",
                            [run_id, cohort_id, config_key, backend, workers, _now(), n_subjects])
        except BaseException:
            lock.release()
            raise
        self._run_locks[run_id] = lock
        return run_id

    def finish_run(self, run_id: str, status: str, n_computed: int, n_cached: int,
                   n_errors: int, warnings: Sequence[str] | None = None) -> None:
        """Close a run with its counts and cohort-level warnings (JSON list, or NULL), and
        release the run lock."""
        try:
            with self.transaction() as con:
                con.execute("UPDATE runs SET finished_at = ?, status = ?, n_computed = ?, "
                            "n_cached = ?, n_errors = ?, warnings = ? WHERE run_id = ?",
                            [_now(), status, n_computed, n_cached, n_errors,
                             json.dumps(list(warnings)) if warnings else None, run_id])
        finally:
            lock = self._run_locks.pop(run_id, None)
            if lock is not None:
                lock.release()

    def add_error(self, run_id: str, cohort_id: str, subject_id: str, stage: str | None,
                  path: str | None, message: str, scan_id: str | None = None) -> None:
        """Record a subject's (scan's, when ``scan_id`` is given) error in a run."""
        self.add_errors([(run_id, cohort_id, subject_id, stage, path, message, scan_id)])

    def add_errors(self, rows: Sequence[tuple]) -> None:
        """Record (run_id, cohort_id, subject_id, stage, path, message[, scan_id]) rows in one
        transaction."""
        rows = [(*r[:6], _now(), r[6] if len(r) > 6 else None) for r in rows]
        if not rows:
            return
        with self.transaction() as con:
            _insert(con, "subject_errors", ["run_id", "cohort_id", "subject_id", "stage", "path",
                                            "message", "created_at", "scan_id"], rows)

    def runs(self, cohort_id: str) -> pd.DataFrame:
        return self._df("SELECT * FROM runs WHERE cohort_id = ? ORDER BY started_at DESC",
                        [cohort_id])

    def errors(self, cohort_id: str, run_id: str | None = None) -> pd.DataFrame:
        """Per-subject errors of a run (default: the latest run of the cohort)."""
        if run_id is None:
            runs = self.runs(cohort_id)
            if runs.empty:
                return pd.DataFrame(columns=["subject_id", "stage", "path", "message"])
            run_id = str(runs.iloc[0]["run_id"])
        return self._df("SELECT subject_id, scan_id, stage, path, message, created_at "
                        "FROM subject_errors WHERE cohort_id = ? AND run_id = ? "
                        "ORDER BY subject_id, scan_id NULLS FIRST", [cohort_id, run_id])

    def status(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Per subject: has images, segmented, features, input warnings (JSON list) of the
        segmentation backend, and the latest run's error (stage and message)."""
        with self.reading():  # one connection for the three queries
            return self._status(cohort_id, config_key)

    def _status(self, cohort_id: str, config_key: str | None) -> pd.DataFrame:
        config_key = config_key or self.latest_config(cohort_id) or ""
        runs = self.runs(cohort_id)
        run_id = "" if runs.empty else str(runs.iloc[0]["run_id"])
        return self._df("""
            SELECT s.subject_id, s.has_images,
                   r.seg_key IS NOT NULL AS segmented,
                   fs.feature_key IS NOT NULL AS features,
                   seg.backend, seg.seconds AS segment_seconds, fs.seconds AS feature_seconds,
                   fs.n_missing AS missing_features,
                   CASE WHEN seg.warnings IS NULL OR seg.warnings = '[]' THEN NULL
                        ELSE seg.warnings END AS input_warnings,
                   e.stage AS error_stage, e.message AS error
            FROM subjects s
            LEFT JOIN subject_results r ON r.cohort_id = s.cohort_id
                 AND r.subject_id = s.subject_id AND r.config_key = ?
            LEFT JOIN segmentations seg ON seg.seg_key = r.seg_key
            LEFT JOIN feature_sets fs ON fs.feature_key = r.feature_key
            LEFT JOIN (SELECT subject_id, first(stage) AS stage,
                              string_agg(CASE WHEN scan_id IS NULL THEN message
                                         ELSE 'scan ' || scan_id || ': ' || message END,
                                         ' | ') AS message
                       FROM subject_errors WHERE cohort_id = ? AND run_id = ?
                       GROUP BY subject_id) e ON e.subject_id = s.subject_id
            WHERE s.cohort_id = ? ORDER BY s.subject_id""",
                        [config_key, cohort_id, run_id, cohort_id])


#: Additive changes for stores made by earlier versions of the same schema version.
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE cohorts ADD COLUMN IF NOT EXISTS event_assumed BOOLEAN DEFAULT FALSE",
    # Scans (timepoints): the subject's result says which scan it is (the baseline's), errors
    # may name a scan. Old rows are the only scan of a cross-sectional cohort: 'baseline'.
    f"ALTER TABLE subject_results ADD COLUMN IF NOT EXISTS scan_id VARCHAR DEFAULT '{BASELINE_SCAN}'",
    "ALTER TABLE subject_errors ADD COLUMN IF NOT EXISTS scan_id VARCHAR",
    # QC (issue 8): the current reference mask's content hash per subject, so scores against a
    # removed or changed reference are not shown; the reference's label map and the QC
    # definitions' revision (HD95 by the BraTS definition + the pooled one) per score.
    "ALTER TABLE subjects ADD COLUMN IF NOT EXISTS reference_sha256 VARCHAR",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS hd95_pooled_mm DOUBLE",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS reference_label_map VARCHAR",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS qc_version INTEGER",
    # cohort-level warnings of a run (JSON list), e.g. no enhancing voxel in any subject
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS warnings VARCHAR",
    # QC of every scan (issue 11): each scan's current reference mask's content hash, as
    # subjects.reference_sha256 is for the baseline (NULL in older stores until the cohort is
    # registered again, which every `process` run does)
    "ALTER TABLE scans ADD COLUMN IF NOT EXISTS reference_sha256 VARCHAR",
)

#: Data migrations, each run once per store (recorded in ``meta``): (key, statements).
DATA_MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A store made before scans existed: each subject with images has one scan, 'baseline',
    # and its result is that scan's result. INSERT ... ON CONFLICT DO NOTHING, so re-running
    # (or a store already holding scans) changes nothing.
    ("migration_scans_v1", (
        """INSERT INTO scans (cohort_id, subject_id, scan_id, days, scan_order, folder,
                              reference_mask)
           SELECT cohort_id, subject_id, 'baseline', 0.0, 0, folder, reference_mask
           FROM subjects WHERE has_images ON CONFLICT DO NOTHING""",
        """INSERT INTO scan_images (cohort_id, subject_id, scan_id, sequence, path)
           SELECT cohort_id, subject_id, 'baseline', sequence, path FROM subject_images
           ON CONFLICT DO NOTHING""",
        """INSERT INTO scan_results (cohort_id, subject_id, scan_id, config_key, input_key,
                                     seg_key, feature_key, updated_at)
           SELECT cohort_id, subject_id, coalesce(scan_id, 'baseline'), config_key, input_key,
                  seg_key, feature_key, updated_at FROM subject_results
           ON CONFLICT DO NOTHING""",
    )),
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table if absent, apply additive migrations, record the schema version."""
    for ddl in SCHEMA:
        con.execute(ddl)
    for ddl in MIGRATIONS:
        con.execute(ddl)
    for key, statements in DATA_MIGRATIONS:
        if con.execute("SELECT 1 FROM meta WHERE key = ?", [key]).fetchone() is None:
            con.execute("BEGIN TRANSACTION")
            try:
                for sql in statements:
                    con.execute(sql)
                con.execute("INSERT INTO meta VALUES (?, 'done')", [key])
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    elif int(row[0]) != SCHEMA_VERSION:
        raise RuntimeError(f"store schema version {row[0]} != {SCHEMA_VERSION}; "
                           "delete the .duckdb file to rebuild it (results are recomputed)")


_SEG_COLUMNS = ["seg_key", "input_key", "backend", "backend_version", "weights_checksum",
                "cache_token", "label_map", "device", "path", "mask_sha256", "volume_ce_mm3",
                "volume_ne_mm3", "seconds", "warnings", "created_at"]


def _frame(rows: Sequence[tuple], columns: Sequence[str], key: Sequence[str] | None) -> pd.DataFrame:
    """Rows as a DataFrame of Python objects (NULLs stay NULL), the last row per key kept."""
    df = pd.DataFrame(list(rows), columns=list(columns), dtype=object)
    if key:
        df = df.drop_duplicates(list(key), keep="last")
    return df


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
            rows: Sequence[tuple], replace: bool = False, key: Sequence[str] | None = None) -> None:
    """Insert many rows in one statement (DuckDB's executemany runs one statement per row).

    ``table`` and ``columns`` are this module's constants, never user input; the values travel
    as a registered DataFrame, not in the SQL text.
    """
    if not rows:
        return
    df = _frame(rows, columns, key if replace else None)
    name = f"_rows_{table}"
    cols = ", ".join(columns)
    con.register(name, df)
    try:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        con.unregister(name)


def _busy(exc: Exception) -> bool:
    """Whether a DuckDB error means "someone else has the file open" (worth a retry)."""
    text = str(exc).lower()
    return "lock" in text or "different configuration" in text


def _none(v: Any) -> Any:
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):
        return v


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, float) and v != v:
        return None
    return str(v)
