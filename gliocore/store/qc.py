"""Segmentation QC metrics against reference masks."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from gliocore.versions import QC_VERSION


class QCMixin:
    """Segmentation QC metrics against reference masks.

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

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

