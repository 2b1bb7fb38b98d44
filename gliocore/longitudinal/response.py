"""Volumetric response assessment (RANO 2.0) over a subject's scans.

Per scan and tumour class: the volume, its change from the baseline (the subject's first scan)
and from the nadir (the smallest volume of the earlier scans). Per follow-up scan and assessed
compartment, a category by volumetric RANO 2.0 (:data:`RANO2_VOLUMETRIC`):

* **CR** (complete response): the compartment has disappeared (volume <= ``cr_max_mm3``, 0 by
  default: no voxel of it);
* **PD** (progressive disease): volume >= nadir x (1 + 40 %) *and* at least the minimum
  measurable volume (so that a few voxels appearing after a complete response, or noise on a
  tiny remnant, are not a progression);
* **PR** (partial response): volume <= baseline x (1 - 65 %);
* **MR** (minor response; the non-enhancing compartment only): volume <= baseline x (1 - 35 %);
* **SD** (stable disease): otherwise.

The volumetric thresholds are the bidimensional ones (product of two perpendicular diameters)
carried to a volume by the sphere relation V ~ (d1 x d2)^1.5 (:func:`minor_response_volumetric`):
PR, a 50 % decrease of the product -> 1 - 0.5^1.5 = 64.6 % ~ 65 %; PD, +25 % -> 1.25^1.5 - 1 =
39.8 % ~ 40 % (the values RANO 2.0 gives for volumetric assessment); MR, a 25-49 % decrease ->
1 - 0.75^1.5 = 35.0 % (to 64.6 %). PD is checked before PR: a tumour far below its baseline that
regrew 40 % from its nadir has progressed.

**What is measured** depends on the tumour type (:class:`TumourTypeRule`, chosen per subject
from the clinical IDH status by :class:`AssessmentRules`), as RANO 2.0 does: in IDH-mutant
gliomas the non-enhancing (T2/FLAIR) component is assessed, and the enhancing one as well where
it is measurable at baseline; in IDH-wildtype gliomas (and, by default, when IDH is unknown) the
enhancing component, or the non-enhancing one when the baseline has no measurable enhancement.
With two compartments the scan's category is the worse of the two (a tumour whose enhancement
disappears while its FLAIR component grows 60 % has progressed). **New measurable
enhancement** (the enhancing volume reaching the minimum measurable volume where the baseline
had none measurable) is progression whatever the compartments assessed, also in non-enhancing
gliomas. A baseline whose assessed volume is below the minimum measurable volume is
*non-measurable*: its follow-ups can be CR, PD or SD, never PR or MR.

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

import dataclasses
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import pandas as pd

from gliocore.longitudinal.pfs import (  # noqa: F401  (DAYS_PER_MONTH, PFS_*: re-exported)
    DAYS_PER_MONTH, PFS_EVENT_COLUMN, PFS_TIME_COLUMN, PfsRules, progression_free_survival)
from gliocore.types import TumourClass

#: The criteria's source.
RANO2_SOURCE = ("Wen PY, van den Bent M, Youssef G, et al. RANO 2.0: Update to the Response "
                "Assessment in Neuro-Oncology Criteria for High- and Low-Grade Gliomas in "
                "Adults. J Clin Oncol 2023;41(33):5187-5199. doi:10.1200/JCO.23.01059")
#: Best overall response up to progression.
RECIST11_SOURCE = ("Eisenhauer EA, Therasse P, Bogaerts J, et al. New response evaluation "
                   "criteria in solid tumours: revised RECIST guideline (version 1.1). Eur J "
                   "Cancer 2009;45(2):228-247")

#: Response categories, best first.
CATEGORIES: tuple[str, ...] = ("CR", "PR", "MR", "SD", "PD")
CATEGORY_TITLES: dict[str, str] = {"CR": "Complete response", "PR": "Partial response",
                                   "MR": "Minor response", "SD": "Stable disease",
                                   "PD": "Progressive disease"}
_RANK = {c: i for i, c in enumerate(CATEGORIES)}

#: Volume columns of a scan table, per class.
VOLUME_COLUMNS: dict[TumourClass, str] = {TumourClass.ENHANCING: "volume_ce_mm3",
                                          TumourClass.NON_ENHANCING: "volume_ne_mm3"}
CLASS_SHORT: dict[TumourClass, str] = {TumourClass.ENHANCING: "ce",
                                       TumourClass.NON_ENHANCING: "ne"}


def minor_response_volumetric(bidimensional_decrease: float) -> float:
    """The volume decrease equivalent to a decrease of the bidimensional product (sphere).

    The product of two perpendicular diameters scales as d², a volume as d³, so a product ratio
    r is a volume ratio r^1.5: 1 - (1 - ``bidimensional_decrease``)^1.5. RANO 2.0's minor
    response (a 25-49 % decrease of the product) is a 35.0-64.6 % volume decrease; the same
    relation gives its volumetric PR (50 % -> 65 %) and PD (+25 % -> +40 %) thresholds.
    """
    return 1.0 - (1.0 - float(bidimensional_decrease)) ** 1.5


NonEnhancingMode = Literal["always", "without measurable enhancement"]


@dataclass(frozen=True)
class TumourTypeRule:
    """What is measured in one tumour type.

    Attributes
    ----------
    tumour_type : str
        Its name, as exported (``response_rule``) and shown, e.g. ``"IDH-mutant"``.
    non_enhancing : {"always", "without measurable enhancement"}
        ``always``: the non-enhancing (T2/FLAIR) compartment is assessed, and the enhancing one
        as well where it is measurable at baseline (RANO 2.0 for IDH-mutant gliomas).
        ``without measurable enhancement``: the enhancing compartment, or the non-enhancing one
        when the baseline has no measurable enhancement (RANO 2.0 for IDH-wildtype
        glioblastoma). New measurable enhancement is progression under either.
    """

    tumour_type: str
    non_enhancing: NonEnhancingMode = "without measurable enhancement"

    def __post_init__(self) -> None:
        if self.non_enhancing not in ("always", "without measurable enhancement"):
            raise ValueError(f"TumourTypeRule {self.tumour_type!r}: non_enhancing must be "
                             f"'always' or 'without measurable enhancement', not "
                             f"{self.non_enhancing!r}")

    def describe(self) -> str:
        """The rule in one sentence."""
        if self.non_enhancing == "always":
            return (f"{self.tumour_type}: non-enhancing (T2/FLAIR) volume assessed, the "
                    "enhancing volume too where measurable at baseline")
        return (f"{self.tumour_type}: enhancing volume assessed; the non-enhancing volume when "
                "the baseline has no measurable enhancement")


def idh_class(status: object) -> str | None:
    """``"mutant"``, ``"wildtype"`` or None (unknown) from a clinical IDH value
    (``mutant``, ``IDH-mutant``, ``IDH1 mut``, ``wildtype``, ``wild-type``, ``WT``...)."""
    if status is None or (isinstance(status, float) and not np.isfinite(status)):
        return None
    s = str(status).strip().lower()
    if "mut" in s:
        return "mutant"
    if "wild" in s or s in ("wt", "idh-wt", "idhwt", "idh wt"):
        return "wildtype"
    return None


@dataclass(frozen=True)
class AssessmentRules:
    """The :class:`TumourTypeRule` of each IDH status (RANO 2.0 by default; configurable)."""

    idh_mutant: TumourTypeRule = TumourTypeRule("IDH-mutant", "always")
    idh_wildtype: TumourTypeRule = TumourTypeRule("IDH-wildtype")
    unknown: TumourTypeRule = TumourTypeRule("IDH unknown")

    def for_idh(self, status: object) -> TumourTypeRule:
        """The rule of a clinical IDH value (:func:`idh_class`)."""
        return {"mutant": self.idh_mutant, "wildtype": self.idh_wildtype}.get(
            idh_class(status), self.unknown)

    def replace(self, **changes: TumourTypeRule) -> "AssessmentRules":
        """A copy with some rules changed (``idh_mutant=``, ``idh_wildtype=``, ``unknown=``)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The three rules, ``;``-separated."""
        return "; ".join(r.describe() for r in (self.idh_mutant, self.idh_wildtype, self.unknown))


@dataclass(frozen=True)
class ResponseCriteria:
    """Volumetric response thresholds and what is measured per tumour type.

    Attributes
    ----------
    pr_decrease : float
        Partial response: volume decrease from baseline of at least this fraction.
    pd_increase : float
        Progression: volume increase from nadir of at least this fraction.
    mr_decrease : float
        Minor response (non-enhancing compartment): decrease from baseline of at least this
        fraction (and less than ``pr_decrease``): 35 %, the volume equivalent of RANO 2.0's
        25 % bidimensional decrease (:func:`minor_response_volumetric`, rounded as the PR and PD
        thresholds are). 1 disables it.
    min_measurable_mm3 : float
        Minimum measurable volume. RANO 2.0 defines measurable disease bidimensionally (two
        perpendicular diameters >= 10 mm) and fixes no volume; GlioScope uses 1 cm³, the
        volume of a 10 x 10 x 10 mm lesion, by default.
    cr_max_mm3 : float
        Complete response: target volume at most this (0 = no voxel left).
    confirm : bool
        Require confirmation by the next scan (see the module notes).
    rules : AssessmentRules
        What is measured per tumour type.
    name, source : str
    """

    pr_decrease: float = 0.65
    pd_increase: float = 0.40
    mr_decrease: float = round(minor_response_volumetric(0.25), 2)
    min_measurable_mm3: float = 1000.0
    cr_max_mm3: float = 0.0
    confirm: bool = False
    rules: AssessmentRules = AssessmentRules()
    name: str = "Volumetric RANO 2.0"
    source: str = RANO2_SOURCE

    def describe(self, rules: bool = True) -> str:
        """The thresholds (and, with ``rules``, what is measured per tumour type) in a few
        sentences (shown in the dashboard)."""
        conf = ("; responses and progressions confirmed by the next scan" if self.confirm
                else "; no confirmation scan required")
        return (f"{self.name}: CR = assessed volume ≤ {self.cr_max_mm3:g} mm³; "
                f"PR = ≥ {self.pr_decrease:.0%} decrease from baseline; minor response (MR, "
                f"non-enhancing volume) = ≥ {self.mr_decrease:.0%} decrease, the volume "
                "equivalent of a 25 % bidimensional decrease ((1 − 0.25)^1.5 = 0.65); "
                f"PD = ≥ {self.pd_increase:.0%} increase from nadir (and ≥ "
                f"{self.min_measurable_mm3 / 1000:g} cm³), or new measurable enhancement; SD "
                f"otherwise. Minimum measurable volume {self.min_measurable_mm3 / 1000:g} cm³"
                f"{conf}. "
                + (f"Measured per tumour type: {self.rules.describe()}. " if rules else "")
                + "With two "
                "compartments the worse category counts. Best response counts the scans up to "
                "the first progression.")


#: Volumetric RANO 2.0 (Wen et al., J Clin Oncol 2023): PR >= 65 % decrease, PD >= 40 % increase.
RANO2_VOLUMETRIC = ResponseCriteria()


def target_class(baseline_ce_mm3: float | None, criteria: ResponseCriteria = RANO2_VOLUMETRIC
                 ) -> TumourClass:
    """The class a subject's response is assessed on under the IDH-wildtype rule: enhancing,
    unless the baseline enhancing volume is below the minimum measurable volume."""
    if baseline_ce_mm3 is not None and np.isfinite(baseline_ce_mm3) \
            and baseline_ce_mm3 >= criteria.min_measurable_mm3:
        return TumourClass.ENHANCING
    return TumourClass.NON_ENHANCING


def assessed_classes(baseline_ce_mm3: float, rule: TumourTypeRule,
                     criteria: ResponseCriteria = RANO2_VOLUMETRIC) -> list[TumourClass]:
    """The compartments a rule assesses, given the baseline enhancing volume."""
    measurable_ce = target_class(baseline_ce_mm3, criteria) is TumourClass.ENHANCING
    out = [TumourClass.ENHANCING] if measurable_ce else []
    if rule.non_enhancing == "always" or not measurable_ce:
        out.append(TumourClass.NON_ENHANCING)
    return out


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
