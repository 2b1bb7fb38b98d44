"""Volumetric response criteria (RANO 2.0): thresholds, categories and what is measured per
tumour type.

Per follow-up scan and assessed compartment, a category by volumetric RANO 2.0
(:data:`RANO2_VOLUMETRIC`):

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

The assessment over a subject's scans: :mod:`gliocore.longitudinal.response`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
