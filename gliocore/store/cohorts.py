"""Cohorts, subjects, scans and their clinical values."""
from __future__ import annotations

import json
from typing import Any, Iterable

import pandas as pd

from gliocore.store.rows import _insert, _json_default, _now
from gliocore.types import BASELINE_SCAN


class CohortsMixin:
    """Cohorts, subjects, scans and their clinical values.

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

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
        with self.read() as con:
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

