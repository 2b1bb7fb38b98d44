"""Volumetric response assessment (RANO 2.0) over a subject's scans, and progression-free survival.

Per scan and tumour class: the volume, its change from the baseline (the subject's first scan)
and from the nadir (the smallest volume of the earlier scans). Per follow-up scan, a response
category by volumetric RANO 2.0 (:data:`RANO2_VOLUMETRIC`):

* **CR** (complete response): the target class has disappeared (volume <= ``cr_max_mm3``, 0 by
  default: no voxel of it);
* **PD** (progressive disease): volume >= nadir x (1 + 40 %) *and* at least the minimum
  measurable volume (so that a few voxels appearing after a complete response, or noise on a
  tiny remnant, are not a progression);
* **PR** (partial response): volume <= baseline x (1 - 65 %);
* **SD** (stable disease): otherwise.

PD is checked before PR: a tumour far below its baseline that regrew 40 % from its nadir has
progressed. The **target class** is the contrast-enhancing tumour; for a non-enhancing tumour
(its baseline enhancing volume below the minimum measurable volume, as IDH-mutant lower-grade
gliomas typically are) the same rules apply to the non-enhancing (T2/FLAIR) volume, as RANO 2.0
does. A baseline whose target volume is below the minimum measurable volume is *non-measurable*:
its follow-ups can be CR, PD (a measurable lesion growing 40 % from nadir) or SD, never PR.

**Confirmation** (``confirm=True``): a response (CR, PR) counts only when the next evaluable scan
shows the same or a better response; an unconfirmed CR becomes PR when the next scan is PR,
otherwise SD; a PD counts only when the next evaluable scan is still >= 40 % above the same
nadir (otherwise SD: pseudo-progression). A PD on the last scan, which no later scan can
confirm, stands (flagged ``confirmed`` = missing), as RANO 2.0 counts a progression that
cannot be confirmed because the patient deteriorated; a response on the last scan does not.

**Progression-free survival** (:func:`progression_free_survival`): time from the baseline scan
to the first PD, or to death without a recorded progression (an event), whichever comes first;
a subject alive without progression is censored at their last evaluated scan. Overall
survival in the clinical table is taken as measured from the baseline scan. Months = days /
30.4375.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from gliocore.types import TumourClass

#: Days per month (365.25 / 12), for PFS in months next to ``Survival(months)``.
DAYS_PER_MONTH = 30.4375

#: The criteria's source.
RANO2_SOURCE = ("Wen PY, van den Bent M, Youssef G, et al. RANO 2.0: Update to the Response "
                "Assessment in Neuro-Oncology Criteria for High- and Low-Grade Gliomas in "
                "Adults. J Clin Oncol 2023;41(33):5187-5199. doi:10.1200/JCO.23.01059")

#: Response categories, best first.
CATEGORIES: tuple[str, ...] = ("CR", "PR", "SD", "PD")
CATEGORY_TITLES: dict[str, str] = {"CR": "Complete response", "PR": "Partial response",
                                   "SD": "Stable disease", "PD": "Progressive disease"}

#: Volume columns of a scan table, per class.
VOLUME_COLUMNS: dict[TumourClass, str] = {TumourClass.ENHANCING: "volume_ce_mm3",
                                          TumourClass.NON_ENHANCING: "volume_ne_mm3"}
CLASS_SHORT: dict[TumourClass, str] = {TumourClass.ENHANCING: "ce",
                                       TumourClass.NON_ENHANCING: "ne"}


@dataclass(frozen=True)
class ResponseCriteria:
    """Volumetric response thresholds.

    Attributes
    ----------
    pr_decrease : float
        Partial response: volume decrease from baseline of at least this fraction.
    pd_increase : float
        Progression: volume increase from nadir of at least this fraction.
    min_measurable_mm3 : float
        Minimum measurable volume. RANO 2.0 defines measurable disease bidimensionally (two
        perpendicular diameters >= 10 mm) and fixes no volume; GlioScope uses 1 cm³, the
        volume of a 10 x 10 x 10 mm lesion, by default.
    cr_max_mm3 : float
        Complete response: target volume at most this (0 = no voxel left).
    confirm : bool
        Require confirmation by the next scan (see the module notes).
    name, source : str
    """

    pr_decrease: float = 0.65
    pd_increase: float = 0.40
    min_measurable_mm3: float = 1000.0
    cr_max_mm3: float = 0.0
    confirm: bool = False
    name: str = "Volumetric RANO 2.0"
    source: str = RANO2_SOURCE

    def describe(self) -> str:
        """The thresholds in one sentence (shown in the dashboard)."""
        conf = ("; responses and progressions confirmed by the next scan" if self.confirm
                else "; no confirmation scan required")
        return (f"{self.name}: CR = target volume ≤ {self.cr_max_mm3:g} mm³; "
                f"PR = ≥ {self.pr_decrease:.0%} decrease from baseline; "
                f"PD = ≥ {self.pd_increase:.0%} increase from nadir (and ≥ "
                f"{self.min_measurable_mm3 / 1000:g} cm³); SD otherwise. Minimum measurable "
                f"volume {self.min_measurable_mm3 / 1000:g} cm³{conf}. Target: contrast-enhancing "
                "tumour, or the non-enhancing volume for non-enhancing tumours.")


#: Volumetric RANO 2.0 (Wen et al., J Clin Oncol 2023): PR >= 65 % decrease, PD >= 40 % increase.
RANO2_VOLUMETRIC = ResponseCriteria()


def target_class(baseline_ce_mm3: float | None, criteria: ResponseCriteria = RANO2_VOLUMETRIC
                 ) -> TumourClass:
    """The class a subject's response is assessed on: enhancing, unless the baseline enhancing
    volume is below the minimum measurable volume (a non-enhancing tumour)."""
    if baseline_ce_mm3 is not None and np.isfinite(baseline_ce_mm3) \
            and baseline_ce_mm3 >= criteria.min_measurable_mm3:
        return TumourClass.ENHANCING
    return TumourClass.NON_ENHANCING


def _pct(v: float, ref: float) -> float:
    if not (np.isfinite(v) and np.isfinite(ref)) or ref <= 0:
        return float("nan")
    return 100.0 * (v - ref) / ref


def assess_subject(scans: pd.DataFrame, criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                   target: TumourClass | None = None) -> pd.DataFrame:
    """Volume changes and response categories of one subject's scans.

    Parameters
    ----------
    scans : DataFrame
        One subject's scans in time order, with ``scan_id``, ``days`` and the volume columns
        ``volume_ce_mm3``, ``volume_ne_mm3`` (NaN: the scan has no result; it is skipped).
    criteria : ResponseCriteria
    target : TumourClass, optional
        Default: :func:`target_class` of the baseline.

    Returns
    -------
    DataFrame
        The input columns plus, per class ``c`` in (ce, ne): ``pct_from_baseline_c``,
        ``nadir_c_mm3`` (smallest earlier volume), ``pct_from_nadir_c``; and ``target``,
        ``measurable`` (baseline target >= minimum), ``raw_category`` (before confirmation),
        ``category`` (``baseline`` for the first scan; NaN for scans without a volume),
        ``confirmed`` (True / False / NaN when not applicable or not confirmable).
    """
    df = scans.reset_index(drop=True).copy()
    ok = df[list(VOLUME_COLUMNS.values())].notna().all(axis=1).to_numpy()
    for cls, col in VOLUME_COLUMNS.items():
        c = CLASS_SHORT[cls]
        vol = df[col].astype(float).to_numpy()
        base = vol[np.argmax(ok)] if ok.any() else np.nan
        nadir = np.full(len(df), np.nan)
        best = np.inf
        for i in range(len(df)):
            if not ok[i]:
                continue
            if np.isfinite(best):
                nadir[i] = best
            best = min(best, vol[i])
        df[f"pct_from_baseline_{c}"] = [_pct(v, base) if ok[i] else np.nan
                                        for i, v in enumerate(vol)]
        df[f"nadir_{c}_mm3"] = nadir
        df[f"pct_from_nadir_{c}"] = [_pct(v, n) for v, n in zip(vol, nadir)]
    df["target"] = None
    df["measurable"] = False
    df["raw_category"] = None
    df["category"] = None
    df["confirmed"] = None
    if not ok.any():
        return df
    first = int(np.argmax(ok))
    if target is None:
        target = target_class(float(df.at[first, VOLUME_COLUMNS[TumourClass.ENHANCING]]), criteria)
    col = VOLUME_COLUMNS[target]
    vol = df[col].astype(float).to_numpy()
    base = vol[first]
    measurable = base >= criteria.min_measurable_mm3
    df["target"] = target.value
    df["measurable"] = bool(measurable)
    nadir = df[f"nadir_{CLASS_SHORT[target]}_mm3"].to_numpy()
    raw: list[str | None] = [None] * len(df)
    raw[first] = "baseline"
    for i in range(first + 1, len(df)):
        if not ok[i]:
            continue
        raw[i] = _category(vol[i], base, nadir[i], measurable, criteria)
    df["raw_category"] = raw
    final = list(raw)
    confirmed: list[bool | None] = [None] * len(df)
    if criteria.confirm:
        evaluable = [i for i in range(first + 1, len(df)) if ok[i]]
        for k, i in enumerate(evaluable):
            nxt = evaluable[k + 1] if k + 1 < len(evaluable) else None
            cat = raw[i]
            if cat == "PD":
                if nxt is None:
                    continue  # stands, not confirmable
                still = vol[nxt] >= nadir[i] * (1 + criteria.pd_increase) \
                    and vol[nxt] >= criteria.min_measurable_mm3
                confirmed[i] = bool(still)
                if not still:
                    final[i] = "SD"
            elif cat in ("CR", "PR"):
                nxt_cat = raw[nxt] if nxt is not None else None
                if cat == "CR" and nxt_cat == "CR":
                    confirmed[i] = True
                elif nxt_cat in ("CR", "PR"):
                    confirmed[i] = cat == "PR"
                    final[i] = "PR"
                else:
                    confirmed[i] = False
                    final[i] = "SD"
    df["category"] = final
    df["confirmed"] = confirmed
    return df


def _category(v: float, base: float, nadir: float, measurable: bool,
              c: ResponseCriteria) -> str:
    if v <= c.cr_max_mm3 and base > c.cr_max_mm3:
        return "CR"
    if v >= c.min_measurable_mm3 and v >= nadir * (1 + c.pd_increase):
        return "PD"
    if measurable and v <= base * (1 - c.pr_decrease):
        return "PR"
    return "SD"


def assess_cohort(scans: pd.DataFrame, criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                  targets: Mapping[str, TumourClass] | None = None) -> pd.DataFrame:
    """:func:`assess_subject` for every subject of a per-scan table.

    Parameters
    ----------
    scans : DataFrame
        ``subject_id``, ``scan_id``, ``days``, ``scan_order``, ``volume_ce_mm3``,
        ``volume_ne_mm3`` (as :meth:`gliocore.store.database.Store.scan_results` returns).
    targets : mapping subject -> TumourClass, optional
        Overrides of the target class.

    Returns
    -------
    DataFrame
        One row per scan (see :func:`assess_subject`), by subject and time.
    """
    if scans.empty:
        return scans.assign(target=None, category=None)
    sort = ["subject_id", "scan_order"] if "scan_order" in scans.columns else ["subject_id", "days"]
    parts = [assess_subject(g, criteria, (targets or {}).get(sid))
             for sid, g in scans.sort_values(sort, kind="stable").groupby("subject_id", sort=True)]
    return pd.concat(parts, ignore_index=True)


def subject_summary(assessment: pd.DataFrame) -> pd.DataFrame:
    """Per subject: scans, follow-up, best response, best % change, first progression.

    Returns
    -------
    DataFrame
        ``subject_id``, ``n_scans`` (with a volume), ``last_scan_days``, ``target``,
        ``best_response`` (best of CR > PR > SD > PD over the follow-ups; NaN without one),
        ``best_pct_change`` (the target's smallest % change from baseline over follow-ups, the
        waterfall's bar), ``progression_days`` (first PD; NaN when none), ``times_known``.
    """
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    rows = []
    for sid, g in assessment.groupby("subject_id", sort=True):
        ev = g[g["category"].notna()]
        fu = ev[ev["category"] != "baseline"]
        target = ev["target"].iloc[0] if len(ev) else None
        best = min(fu["category"], key=rank.get) if len(fu) else None
        pct_col = None if target is None else \
            f"pct_from_baseline_{CLASS_SHORT[TumourClass(target)]}"
        best_pct = float(fu[pct_col].min()) if len(fu) and pct_col else float("nan")
        pd_rows = fu[fu["category"] == "PD"]
        rows.append({"subject_id": sid, "n_scans": int(len(ev)),
                     "last_scan_days": float(ev["days"].max()) if len(ev) else float("nan"),
                     "target": target, "best_response": best, "best_pct_change": best_pct,
                     "progression_days": float(pd_rows["days"].iloc[0]) if len(pd_rows)
                     else float("nan"),
                     "progression_scan": pd_rows["scan_id"].iloc[0] if len(pd_rows) else None,
                     "times_known": bool(len(ev)) and bool(ev["days"].notna().all())})
    return pd.DataFrame(rows, columns=["subject_id", "n_scans", "last_scan_days", "target",
                                       "best_response", "best_pct_change", "progression_days",
                                       "progression_scan", "times_known"])


#: Columns of the PFS endpoint, next to ``Survival(months)`` / ``event``.
PFS_TIME_COLUMN = "PFS(months)"
PFS_EVENT_COLUMN = "PFS_event"


def progression_free_survival(summary: pd.DataFrame, clinical: pd.DataFrame | None = None,
                              os_column: str = "Survival(months)", event_column: str = "event",
                              id_column: str = "SUBJECT ID") -> pd.DataFrame:
    """Progression-free survival per subject.

    Rule: the first PD -> event at that scan's time; else a death (``event`` = 1 in the
    clinical table) -> event at the overall-survival time (PFS counts death from any cause; a
    death recorded before the last scan's time is taken at the last scan's time); else censored
    at the last evaluated scan. Subjects whose scan times are unknown, or who have no evaluated
    scan, get no PFS (missing, with the reason).

    Parameters
    ----------
    summary : DataFrame
        :func:`subject_summary`.
    clinical : DataFrame, optional
        With ``id_column``, ``os_column`` (months) and ``event_column`` (1 = death).

    Returns
    -------
    DataFrame
        ``subject_id``, ``PFS(months)``, ``PFS_event`` (1 progression or death, 0 censored),
        ``pfs_reason`` (``progression``, ``death``, ``censored at last scan``, or why missing).
    """
    os_by = {}
    if clinical is not None and not clinical.empty and os_column in clinical.columns:
        ev = clinical[event_column] if event_column in clinical.columns else 1.0
        os_by = dict(zip(clinical[id_column].astype(str),
                         zip(clinical[os_column].astype(float),
                             pd.Series(ev, index=clinical.index).astype(float))))
    rows = []
    for r in summary.itertuples(index=False):
        if r.n_scans == 0:
            rows.append((r.subject_id, np.nan, np.nan, "no scan with a volume"))
            continue
        if not r.times_known:
            rows.append((r.subject_id, np.nan, np.nan, "scan times unknown"))
            continue
        last_m = r.last_scan_days / DAYS_PER_MONTH
        if np.isfinite(r.progression_days):
            rows.append((r.subject_id, r.progression_days / DAYS_PER_MONTH, 1.0, "progression"))
            continue
        os_t, died = os_by.get(str(r.subject_id), (np.nan, np.nan))
        if died == 1 and np.isfinite(os_t):
            rows.append((r.subject_id, max(os_t, last_m), 1.0, "death"))
        else:
            rows.append((r.subject_id, last_m, 0.0, "censored at last scan"))
    out = pd.DataFrame(rows, columns=["subject_id", PFS_TIME_COLUMN, PFS_EVENT_COLUMN,
                                      "pfs_reason"])
    out[PFS_TIME_COLUMN] = out[PFS_TIME_COLUMN].astype(float).round(2)
    return out


@dataclass
class CohortResponse:
    """Everything derived from a cohort's scans: per-scan assessment, per-subject summary, PFS."""

    scans: pd.DataFrame
    subjects: pd.DataFrame
    pfs: pd.DataFrame
    criteria: ResponseCriteria

    @property
    def is_longitudinal(self) -> bool:
        """Whether any subject has a follow-up scan with a result."""
        return bool((self.subjects["n_scans"] > 1).any()) if len(self.subjects) else False


def cohort_response(scan_results: pd.DataFrame, clinical: pd.DataFrame | None = None,
                    criteria: ResponseCriteria = RANO2_VOLUMETRIC) -> CohortResponse:
    """Assess a cohort's scans and derive PFS.

    Parameters
    ----------
    scan_results : DataFrame
        :meth:`gliocore.store.database.Store.scan_results` (one row per scan with its volumes).
    clinical : DataFrame, optional
        The clinical table (``SUBJECT ID``, ``Survival(months)``, ``event``), for deaths.
    criteria : ResponseCriteria
    """
    assessment = assess_cohort(scan_results, criteria)
    summary = subject_summary(assessment) if len(assessment) else subject_summary(
        pd.DataFrame(columns=["subject_id", "category", "target", "days", "scan_id"]))
    pfs = progression_free_survival(summary, clinical)
    return CohortResponse(assessment, summary, pfs, criteria)
