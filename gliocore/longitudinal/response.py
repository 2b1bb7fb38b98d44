"""Volumetric response assessment (RANO 2.0) over a subject's scans.

Per scan and tumour class: the volume, its change from the baseline (the subject's first scan)
and from the nadir (the smallest volume of the earlier scans); per follow-up scan a category by
the criteria of :mod:`gliocore.longitudinal.criteria` (categories, thresholds, and what is
measured per tumour type are described there).

**Confirmation** (``confirm=True``): a response (CR, PR, MR) counts only when the next evaluable
scan shows a response too, and then at the lesser of the two (an unconfirmed CR followed by PR is
PR), otherwise SD; a PD counts only when the next evaluable scan still meets what made it PD
(>= 40 % above the same nadir, or measurable new enhancement; otherwise SD:
pseudo-progression). A PD on the last scan, which no later scan can confirm, stands (flagged
``confirmed`` = missing), as RANO 2.0 counts a progression that cannot be confirmed because the
patient deteriorated; a response on the last scan does not.

**Best overall response** (:func:`subject_summary`) and the waterfall's best change count only
the scans up to and including the first progression (RECIST 1.1, Eisenhauer et al., Eur J
Cancer 2009; RANO 2.0): a tumour that shrinks after progressing (e.g. under second-line
treatment) does not turn a PD into a response.

**Progression-free survival**: :mod:`gliocore.longitudinal.pfs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from gliocore.longitudinal.criteria import (  # noqa: F401  (re-exported: the public names)
    CATEGORIES, CATEGORY_TITLES, CLASS_SHORT, RANO2_SOURCE, RANO2_VOLUMETRIC, RECIST11_SOURCE,
    VOLUME_COLUMNS, AssessmentRules, NonEnhancingMode, ResponseCriteria, TumourTypeRule,
    _RANK, assessed_classes, idh_class, minor_response_volumetric, target_class)
from gliocore.longitudinal.pfs import (  # noqa: F401  (DAYS_PER_MONTH, PFS_*: re-exported)
    DAYS_PER_MONTH, PFS_EVENT_COLUMN, PFS_TIME_COLUMN, PfsRules, progression_free_survival)
from gliocore.types import TumourClass


def _pct(v: float, ref: float) -> float:
    if not (np.isfinite(v) and np.isfinite(ref)) or ref <= 0:
        return float("nan")
    return 100.0 * (v - ref) / ref


def _changes(df: pd.DataFrame, ok: np.ndarray) -> None:
    """Per class: % from baseline, nadir (smallest earlier volume), % from nadir (in place)."""
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


def assess_subject(scans: pd.DataFrame, criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                   target: TumourClass | None = None, idh: object = None) -> pd.DataFrame:
    """Volume changes and response categories of one subject's scans.

    Parameters
    ----------
    scans : DataFrame
        One subject's scans in time order, with ``scan_id``, ``days`` and the volume columns
        ``volume_ce_mm3``, ``volume_ne_mm3`` (NaN: the scan has no result; it is skipped).
    criteria : ResponseCriteria
    target : TumourClass, optional
        Assess this compartment only (an override); default: the rule of ``idh``.
    idh : optional
        The subject's clinical IDH status (:meth:`AssessmentRules.for_idh`).

    Returns
    -------
    DataFrame
        The input columns plus, per class ``c`` in (ce, ne): ``pct_from_baseline_c``,
        ``nadir_c_mm3`` (smallest earlier volume), ``pct_from_nadir_c``, ``category_c`` (that
        compartment's category; None when not assessed); ``new_enhancement`` (measurable
        enhancement where the baseline had none); ``pct_from_baseline_target`` (the worse of
        the assessed compartments' changes: the waterfall's bar); ``target`` (the assessed
        classes joined by ``+``), ``response_rule`` (tumour type), ``measurable``,
        ``raw_category`` (before confirmation), ``category`` (``baseline`` for the first scan;
        None for scans without a volume), ``confirmed`` (True / False / None).
    """
    df = scans.reset_index(drop=True).copy()
    ok = df[list(VOLUME_COLUMNS.values())].notna().all(axis=1).to_numpy()
    _changes(df, ok)
    rule = criteria.rules.for_idh(idh)
    df = df.assign(category_ce=None, category_ne=None, new_enhancement=False,
                   pct_from_baseline_target=np.nan, target=None, response_rule=rule.tumour_type,
                   measurable=False, raw_category=None, category=None, confirmed=None)
    if not ok.any():
        return df
    first = int(np.argmax(ok))
    vols = {cls: df[col].astype(float).to_numpy() for cls, col in VOLUME_COLUMNS.items()}
    ce0 = vols[TumourClass.ENHANCING][first]
    classes = [target] if target is not None else assessed_classes(ce0, rule, criteria)
    df["target"] = "+".join(c.value for c in classes)
    df["measurable"] = any(vols[c][first] >= criteria.min_measurable_mm3 for c in classes)
    evaluable = [i for i in range(first + 1, len(df)) if ok[i]]
    per_class: dict[TumourClass, list[str | None]] = {}
    for cls in classes:
        cats: list[str | None] = [None] * len(df)
        cats[first] = "baseline"
        vol, nadir = vols[cls], df[f"nadir_{CLASS_SHORT[cls]}_mm3"].to_numpy()
        measurable = vol[first] >= criteria.min_measurable_mm3
        for i in evaluable:
            cats[i] = _category(vol[i], vol[first], nadir[i], measurable, criteria,
                                minor=cls is TumourClass.NON_ENHANCING)
        per_class[cls] = cats
        df[f"category_{CLASS_SHORT[cls]}"] = cats
    watch_new = TumourClass.ENHANCING not in classes and ce0 < criteria.min_measurable_mm3
    new = np.array([watch_new and ok[i] and i > first
                    and vols[TumourClass.ENHANCING][i] >= criteria.min_measurable_mm3
                    for i in range(len(df))])
    df["new_enhancement"] = new
    pct = df[[f"pct_from_baseline_{CLASS_SHORT[c]}" for c in classes]].to_numpy(float)
    df["pct_from_baseline_target"] = [np.nan if np.isnan(row).all() else float(np.nanmax(row))
                                      for row in pct]
    raw: list[str | None] = [None] * len(df)
    raw[first] = "baseline"
    for i in evaluable:
        raw[i] = "PD" if new[i] else max((per_class[c][i] for c in classes), key=_RANK.get)
    df["raw_category"] = raw
    final, confirmed = _confirm(raw, evaluable, per_class, vols, df, new, criteria) \
        if criteria.confirm else (list(raw), [None] * len(df))
    df["category"] = final
    df["confirmed"] = confirmed
    return df


def _confirm(raw: list, evaluable: list[int], per_class: dict, vols: dict, df: pd.DataFrame,
             new: np.ndarray, c: ResponseCriteria) -> tuple[list, list]:
    """Categories after confirmation by the next evaluable scan (module notes)."""
    final, confirmed = list(raw), [None] * len(raw)
    for k, i in enumerate(evaluable):
        nxt = evaluable[k + 1] if k + 1 < len(evaluable) else None
        cat = raw[i]
        if cat == "PD":
            if nxt is None:
                continue  # stands, not confirmable
            still = bool(new[i]) and vols[TumourClass.ENHANCING][nxt] >= c.min_measurable_mm3
            for cls, cats in per_class.items():
                if cats[i] == "PD":
                    nadir = df.at[i, f"nadir_{CLASS_SHORT[cls]}_mm3"]
                    v = vols[cls][nxt]
                    still |= bool(v >= nadir * (1 + c.pd_increase) and v >= c.min_measurable_mm3)
            confirmed[i] = still
            if not still:
                final[i] = "SD"
        elif cat in ("CR", "PR", "MR"):
            nxt_cat = raw[nxt] if nxt is not None else None
            if nxt_cat in ("CR", "PR", "MR"):
                final[i] = max(cat, nxt_cat, key=_RANK.get)  # the lesser response
                confirmed[i] = final[i] == cat
            else:
                confirmed[i] = False
                final[i] = "SD"
    return final, confirmed


def _category(v: float, base: float, nadir: float, measurable: bool,
              c: ResponseCriteria, minor: bool = False) -> str:
    if v <= c.cr_max_mm3 and base > c.cr_max_mm3:
        return "CR"
    if v >= c.min_measurable_mm3 and v >= nadir * (1 + c.pd_increase):
        return "PD"
    if measurable and v <= base * (1 - c.pr_decrease):
        return "PR"
    if minor and measurable and v <= base * (1 - c.mr_decrease):
        return "MR"
    return "SD"


def assess_cohort(scans: pd.DataFrame, criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                  targets: Mapping[str, TumourClass] | None = None,
                  idh: Mapping[str, object] | None = None) -> pd.DataFrame:
    """:func:`assess_subject` for every subject of a per-scan table.

    Parameters
    ----------
    scans : DataFrame
        ``subject_id``, ``scan_id``, ``days``, ``scan_order``, ``volume_ce_mm3``,
        ``volume_ne_mm3`` (as :meth:`gliocore.store.database.Store.scan_results` returns).
    targets : mapping subject -> TumourClass, optional
        Overrides of the assessed compartment.
    idh : mapping subject -> IDH status, optional
        The clinical IDH status (missing: the ``unknown`` rule).

    Returns
    -------
    DataFrame
        One row per scan (see :func:`assess_subject`), by subject and time.
    """
    if scans.empty:
        return scans.assign(target=None, category=None)
    sort = ["subject_id", "scan_order"] if "scan_order" in scans.columns else ["subject_id", "days"]
    parts = [assess_subject(g, criteria, (targets or {}).get(sid), (idh or {}).get(str(sid)))
             for sid, g in scans.sort_values(sort, kind="stable").groupby("subject_id", sort=True)]
    return pd.concat(parts, ignore_index=True)


SUMMARY_COLUMNS = ["subject_id", "n_scans", "last_scan_days", "median_interval_days", "target",
                   "response_rule", "best_response", "best_pct_change", "progression_days",
                   "progression_scan", "times_known"]


def _summary_row(sid: object, g: pd.DataFrame) -> dict:
    ev = g[g["category"].notna()]
    fu = ev[ev["category"] != "baseline"]
    pd_at = np.flatnonzero((fu["category"] == "PD").to_numpy())
    upto = fu.iloc[: pd_at[0] + 1] if len(pd_at) else fu  # best response stops at progression
    days = ev["days"].astype(float).to_numpy()
    gaps = np.diff(days) if len(days) > 1 else np.array([])
    return {"subject_id": sid, "n_scans": int(len(ev)),
            "last_scan_days": float(ev["days"].max()) if len(ev) else float("nan"),
            "median_interval_days": float(np.median(gaps)) if len(gaps) and np.isfinite(gaps).all()
            else float("nan"),
            "target": ev["target"].iloc[0] if len(ev) else None,
            "response_rule": g["response_rule"].iloc[0] if "response_rule" in g and len(g) else None,
            "best_response": min(upto["category"], key=_RANK.get) if len(upto) else None,
            "best_pct_change": float(upto["pct_from_baseline_target"].min()) if len(upto)
            else float("nan"),
            "progression_days": float(fu["days"].iloc[pd_at[0]]) if len(pd_at) else float("nan"),
            "progression_scan": fu["scan_id"].iloc[pd_at[0]] if len(pd_at) else None,
            "times_known": bool(len(ev)) and bool(ev["days"].notna().all())}


def subject_summary(assessment: pd.DataFrame) -> pd.DataFrame:
    """Per subject: scans, follow-up, best response, best % change, first progression.

    Best response and best change count the follow-ups up to and including the first PD
    (RECIST 1.1; RANO 2.0).

    Returns
    -------
    DataFrame
        ``subject_id``, ``n_scans`` (with a volume), ``last_scan_days``,
        ``median_interval_days`` (between the scans with a volume: the subject's schedule),
        ``target``, ``response_rule``, ``best_response`` (best of CR > PR > MR > SD > PD;
        None without a follow-up), ``best_pct_change`` (the smallest
        ``pct_from_baseline_target``: the waterfall's bar), ``progression_days`` (first PD; NaN
        when none), ``progression_scan``, ``times_known``.
    """
    rows = [_summary_row(sid, g) for sid, g in assessment.groupby("subject_id", sort=True)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


@dataclass
class CohortResponse:
    """Everything derived from a cohort's scans: per-scan assessment, per-subject summary, PFS."""

    scans: pd.DataFrame
    subjects: pd.DataFrame
    pfs: pd.DataFrame
    criteria: ResponseCriteria
    pfs_rules: PfsRules = PfsRules()

    @property
    def is_longitudinal(self) -> bool:
        """Whether any subject has a follow-up scan with a result."""
        return bool((self.subjects["n_scans"] > 1).any()) if len(self.subjects) else False


def cohort_response(scan_results: pd.DataFrame, clinical: pd.DataFrame | None = None,
                    criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                    pfs_rules: PfsRules = PfsRules(), idh_column: str = "IDH-status",
                    id_column: str = "SUBJECT ID") -> CohortResponse:
    """Assess a cohort's scans and derive PFS.

    Parameters
    ----------
    scan_results : DataFrame
        :meth:`gliocore.store.database.Store.scan_results` (one row per scan with its volumes).
    clinical : DataFrame, optional
        The clinical table (``SUBJECT ID``, ``IDH-status`` for the rule per tumour type,
        ``Survival(months)``, ``event`` and :attr:`PfsRules.offset_column` for PFS).
    criteria : ResponseCriteria
    pfs_rules : PfsRules
    """
    idh = None
    if clinical is not None and idh_column in clinical.columns and id_column in clinical.columns:
        idh = dict(zip(clinical[id_column].astype(str), clinical[idh_column]))
    assessment = assess_cohort(scan_results, criteria, idh=idh)
    summary = subject_summary(assessment) if len(assessment) else pd.DataFrame(
        columns=SUMMARY_COLUMNS)
    pfs = progression_free_survival(summary, clinical, rules=pfs_rules)
    return CohortResponse(assessment, summary, pfs, criteria, pfs_rules)
