"""Progression-free survival from a response summary and the clinical table (issue 18 point 8).

PFS is the time from the baseline scan to the first progression or to death from any cause,
whichever comes first. Three rules make it a number a trial statistician would defend:

* **One origin.** Scan times are days from the subject's baseline scan; the clinical table's
  overall survival is from its own origin (often the diagnosis or surgery). The offset, days from
  that origin to the baseline scan, is read per subject from a clinical column
  (:attr:`PfsRules.offset_column`, ``days_to_baseline_scan`` by default); where the column or the
  value is absent, :attr:`PfsRules.default_offset_days` is assumed (0: survival measured from the
  baseline scan) and each subject's ``pfs_detail`` says it was assumed. A death that falls before
  the baseline scan on the common axis gives no PFS (the offset must be wrong).
* **Deaths after missed assessments are censored.** A death later than
  :attr:`PfsRules.missed_assessments` (2) expected assessment intervals after the last adequate
  assessment (the last scan with a volume) is censored at that scan, not counted as an event at
  the death (U.S. Food and Drug Administration, *Clinical Trial Endpoints for the Approval of
  Cancer Drugs and Biologics*, Guidance for Industry, December 2018, Table 3). The expected
  interval is the subject's own scan schedule (the median interval between their scans) when
  they have a follow-up scan, else :attr:`PfsRules.default_interval_days` (84 days: the
  12-weekly MRI of most glioma trials); ``pfs_detail`` says which.
* **A reason per subject**: ``pfs_reason`` (a short category, filterable) and ``pfs_detail``
  (the numbers behind it).

Months = days / 30.4375.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Days per month (365.25 / 12), for PFS in months next to ``Survival(months)``.
DAYS_PER_MONTH = 30.4375

#: Columns of the PFS endpoint, next to ``Survival(months)`` / ``event``.
PFS_TIME_COLUMN = "PFS(months)"
PFS_EVENT_COLUMN = "PFS_event"
#: Every column :func:`progression_free_survival` returns (besides ``subject_id``).
PFS_COLUMNS = (PFS_TIME_COLUMN, PFS_EVENT_COLUMN, "pfs_reason", "pfs_detail",
               "os_origin_to_baseline_days")

FDA_2018_SOURCE = ("U.S. Food and Drug Administration. Clinical Trial Endpoints for the Approval "
                   "of Cancer Drugs and Biologics: Guidance for Industry. December 2018 "
                   "(Table 3: PFS censoring when death follows two or more missed assessments)")

#: The categories of ``pfs_reason``.
PFS_REASONS = ("progression", "death", "censored: death after missed assessments",
               "censored: alive at last scan", "censored: no follow-up scan",
               "no scan with a volume", "scan times unknown", "death before the baseline scan")


@dataclass(frozen=True)
class PfsRules:
    """How PFS is derived (see the module notes).

    Attributes
    ----------
    offset_column : str
        Clinical column: days from the overall-survival origin to the baseline scan.
    default_offset_days : float
        Offset assumed where the column or a subject's value is absent (0: survival is measured
        from the baseline scan).
    missed_assessments : int
        A death more than this many expected intervals after the last scan is censored there.
    default_interval_days : float
        Expected assessment interval of a subject without a follow-up scan.
    """

    offset_column: str = "days_to_baseline_scan"
    default_offset_days: float = 0.0
    missed_assessments: int = 2
    default_interval_days: float = 84.0

    def describe(self) -> str:
        """The rules in two sentences (shown on the Progression page)."""
        return (f"PFS: baseline scan to the first progression or death; a death more than "
                f"{self.missed_assessments} expected assessment intervals after the last scan "
                "is censored at the last scan (FDA 2018); the interval is the subject's own "
                "median scan interval, or "
                f"{self.default_interval_days:g} days without a follow-up scan. Overall survival "
                f"is put on the scan time axis with the clinical column `{self.offset_column}` "
                f"(days from the survival origin to the baseline scan); where it is absent, "
                f"{self.default_offset_days:g} days is assumed"
                + (" (survival measured from the baseline scan)." if self.default_offset_days == 0
                   else "."))


def _deaths(clinical: pd.DataFrame | None, os_column: str, event_column: str, id_column: str,
            rules: PfsRules) -> dict[str, tuple[float, float, float, bool]]:
    """Per subject: (OS months, died 1/0/NaN, offset days, offset assumed)."""
    if clinical is None or clinical.empty or id_column not in clinical.columns:
        return {}
    n = len(clinical)
    os_t = (pd.to_numeric(clinical[os_column], errors="coerce") if os_column in clinical
            else pd.Series(np.nan, index=clinical.index))
    died = (pd.to_numeric(clinical[event_column], errors="coerce") if event_column in clinical
            else pd.Series(1.0, index=clinical.index))
    off = (pd.to_numeric(clinical[rules.offset_column], errors="coerce")
           if rules.offset_column in clinical else pd.Series(np.nan, index=clinical.index))
    assumed = off.isna()
    off = off.fillna(rules.default_offset_days)
    return dict(zip(clinical[id_column].astype(str),
                    zip(os_t.astype(float), died.astype(float), off.astype(float),
                        assumed.astype(bool), strict=True))) if n else {}


def _interval(r, rules: PfsRules) -> tuple[float, str]:
    iv = getattr(r, "median_interval_days", np.nan)
    if iv is not None and np.isfinite(iv) and iv > 0:
        return float(iv), f"a {iv / DAYS_PER_MONTH:.1f}-month interval, the subject's scan schedule"
    return (rules.default_interval_days,
            f"the {rules.default_interval_days:g}-day default interval, no follow-up scan")


def _one(r, death: tuple[float, float, float, bool] | None, rules: PfsRules
         ) -> tuple[float, float, str, str, float]:
    """(PFS months, event, reason, detail, offset days) of one summary row."""
    os_t, died, off, assumed = death if death else (np.nan, np.nan, rules.default_offset_days, True)
    if r.n_scans == 0:
        return np.nan, np.nan, "no scan with a volume", "", off
    if not r.times_known:
        return np.nan, np.nan, "scan times unknown", "", off
    last = float(r.last_scan_days)
    if np.isfinite(r.progression_days):
        return (r.progression_days / DAYS_PER_MONTH, 1.0, "progression",
                f"first progression at scan {r.progression_scan} "
                f"({r.progression_days / DAYS_PER_MONTH:.1f} months)", off)
    origin = (f"survival origin {off:g} days before the baseline scan"
              + (f" (assumed: no `{rules.offset_column}`)" if assumed else ""))
    if died == 1 and np.isfinite(os_t):
        death_days = os_t * DAYS_PER_MONTH - off
        if death_days < 0:
            return (np.nan, np.nan, "death before the baseline scan",
                    f"death {-death_days:.0f} days before the baseline scan; {origin}", off)
        gap = death_days - last
        interval, source = _interval(r, rules)
        if gap > rules.missed_assessments * interval:
            return (last / DAYS_PER_MONTH, 0.0, "censored: death after missed assessments",
                    f"death {gap / DAYS_PER_MONTH:.1f} months after the last scan, more than "
                    f"{rules.missed_assessments} expected assessments later ({source}): censored "
                    f"at the last scan (FDA 2018); {origin}", off)
        if gap < 0:
            return (last / DAYS_PER_MONTH, 1.0, "death",
                    f"death recorded {-gap:.0f} days before the last scan, taken at the last "
                    f"scan; {origin}", off)
        return (death_days / DAYS_PER_MONTH, 1.0, "death",
                f"death {gap / DAYS_PER_MONTH:.1f} months after the last scan, within "
                f"{rules.missed_assessments} expected assessments ({source}); {origin}", off)
    if r.n_scans == 1:
        return 0.0, 0.0, "censored: no follow-up scan", "only the baseline scan; no death recorded", off
    return (last / DAYS_PER_MONTH, 0.0, "censored: alive at last scan",
            f"no progression and no death recorded; censored at the last scan "
            f"({last / DAYS_PER_MONTH:.1f} months)", off)


def progression_free_survival(summary: pd.DataFrame, clinical: pd.DataFrame | None = None,
                              os_column: str = "Survival(months)", event_column: str = "event",
                              id_column: str = "SUBJECT ID", rules: PfsRules = PfsRules()
                              ) -> pd.DataFrame:
    """Progression-free survival per subject (rules: the module notes and :class:`PfsRules`).

    Parameters
    ----------
    summary : DataFrame
        :func:`gliocore.longitudinal.response.subject_summary` (``subject_id``, ``n_scans``,
        ``last_scan_days``, ``progression_days``, ``progression_scan``, ``times_known``,
        ``median_interval_days``).
    clinical : DataFrame, optional
        With ``id_column``, ``os_column`` (months), ``event_column`` (1 = death) and,
        optionally, :attr:`PfsRules.offset_column`.
    rules : PfsRules

    Returns
    -------
    DataFrame
        ``subject_id`` and :data:`PFS_COLUMNS`: ``PFS(months)``, ``PFS_event`` (1 progression
        or death, 0 censored), ``pfs_reason`` (one of :data:`PFS_REASONS`), ``pfs_detail`` (the
        numbers behind it) and ``os_origin_to_baseline_days`` (the offset used).
    """
    deaths = _deaths(clinical, os_column, event_column, id_column, rules)
    rows = [(r.subject_id, *_one(r, deaths.get(str(r.subject_id)), rules))
            for r in summary.itertuples(index=False)]
    out = pd.DataFrame(rows, columns=["subject_id", *PFS_COLUMNS])
    out[PFS_TIME_COLUMN] = out[PFS_TIME_COLUMN].astype(float).round(2)
    out[PFS_EVENT_COLUMN] = out[PFS_EVENT_COLUMN].astype(float)
    return out
