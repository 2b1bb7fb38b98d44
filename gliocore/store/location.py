"""Atlas registrations and location results (location sets and their values)."""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from gliocore.store.rows import _now


class LocationMixin:
    """Atlas registrations and location results (location sets and their values).

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

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

