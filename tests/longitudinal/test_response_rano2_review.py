"""Issue 18 (second expert review), points 1, 2, 3 and 8: new enhancement, the per-tumour-type
rule (IDH) with the minor response, best response up to progression, and PFS censoring and
origin."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.longitudinal.response import (RANO2_VOLUMETRIC, PfsRules, ResponseCriteria,
                                            TumourTypeRule, assess_cohort, assess_subject,
                                            cohort_response, minor_response_volumetric,
                                            progression_free_survival, subject_summary)


def traj(ce, ne, days=None, sid="S1"):
    n = len(ce)
    return pd.DataFrame({"subject_id": sid, "scan_id": [f"t{i}" for i in range(n)],
                         "days": days if days is not None else [90.0 * i for i in range(n)],
                         "scan_order": range(n), "volume_ce_mm3": ce, "volume_ne_mm3": ne})


# -- point 1: new measurable enhancement is progression ------------------------------------------
def test_new_measurable_enhancement_after_surgery_is_progression():
    # glioblastoma, no enhancement left after surgery, FLAIR 40 cm³; a 5 cm³ enhancing lesion
    a = assess_subject(traj([0.0, 0.0, 5000.0], [40000.0, 40000.0, 40000.0]), idh="wildtype")
    assert list(a["category"]) == ["baseline", "SD", "PD"]
    assert bool(a["new_enhancement"].iloc[2]) and not bool(a["new_enhancement"].iloc[1])


def test_new_enhancement_in_a_non_enhancing_lower_grade_glioma_is_progression():
    a = assess_subject(traj([0.0, 3000.0], [30000.0, 29000.0]), idh="mutant")
    assert list(a["category"]) == ["baseline", "PD"]
    # a few voxels of enhancement (below the minimum measurable volume) are not
    b = assess_subject(traj([0.0, 400.0], [30000.0, 29000.0]), idh="mutant")
    assert list(b["category"]) == ["baseline", "SD"]


# -- point 2: IDH decides what is measured; minor response ---------------------------------------
def test_idh_mutant_enhancement_gone_while_flair_grows_is_progression_not_cr():
    a = assess_subject(traj([2000.0, 0.0], [30000.0, 48000.0]), idh="mutant")  # FLAIR +60 %
    assert a["target"].iloc[0] == "contrast_enhancing+non_enhancing"
    assert list(a["category_ce"]) == ["baseline", "CR"]
    assert list(a["category_ne"]) == ["baseline", "PD"]
    assert list(a["category"]) == ["baseline", "PD"]
    # the same volumes under the IDH-wildtype rule: the enhancing tumour only (RANO 2.0)
    w = assess_subject(traj([2000.0, 0.0], [30000.0, 48000.0]), idh="wildtype")
    assert w["target"].iloc[0] == "contrast_enhancing" and list(w["category"]) == ["baseline", "CR"]


def test_minor_response_volumetric_equivalent_of_the_bidimensional_25_percent():
    # sphere relation: a product of two diameters 25 % smaller is a volume (0.75)^1.5 = 0.6495
    assert minor_response_volumetric(0.25) == pytest.approx(1 - 0.75 ** 1.5)
    assert RANO2_VOLUMETRIC.mr_decrease == pytest.approx(0.35)
    # the same relation gives the PR (50 % -> 65 %) and PD (+25 % -> +40 %) thresholds
    assert minor_response_volumetric(0.50) == pytest.approx(0.65, abs=0.005)
    ne = [30000.0, 19500.0, 18000.0, 10000.0]  # -35 % MR, -40 % MR, -66.7 % PR
    a = assess_subject(traj([0.0] * 4, ne), idh="mutant")
    assert list(a["category"]) == ["baseline", "MR", "MR", "PR"]
    assert list(assess_subject(traj([0.0, 0.0], [30000.0, 19800.0]), idh="mutant")["category"]) \
        == ["baseline", "SD"]  # -34 %
    # enhancing tumours have no minor response
    e = assess_subject(traj([10000.0, 6000.0], [30000.0, 30000.0]), idh="wildtype")
    assert list(e["category"]) == ["baseline", "SD"]


def test_rule_per_tumour_type_is_configurable_and_described():
    rules = RANO2_VOLUMETRIC.rules
    assert rules.for_idh("IDH-mutant").tumour_type == "IDH-mutant"
    assert rules.for_idh("wildtype").non_enhancing == "without measurable enhancement"
    assert rules.for_idh(None).tumour_type == "IDH unknown"
    text = RANO2_VOLUMETRIC.describe()
    assert "IDH-mutant" in text and "minor response" in text.lower() and "35%" in text
    # a site that assesses FLAIR in every glioma
    every = TumourTypeRule("IDH-wildtype", non_enhancing="always")
    crit = ResponseCriteria(rules=RANO2_VOLUMETRIC.rules.replace(idh_wildtype=every))
    a = assess_subject(traj([2000.0, 0.0], [30000.0, 48000.0]), crit, idh="wildtype")
    assert list(a["category"]) == ["baseline", "PD"]


def test_cohort_reads_idh_from_the_clinical_table_and_exports_the_rule():
    scans = pd.concat([traj([2000.0, 0.0], [30000.0, 48000.0], sid="M"),
                       traj([2000.0, 0.0], [30000.0, 48000.0], sid="W")], ignore_index=True)
    clinical = pd.DataFrame({"SUBJECT ID": ["M", "W"], "IDH-status": ["mutant", "wildtype"],
                             "Survival(months)": [40.0, 40.0], "event": [0, 0]})
    r = cohort_response(scans, clinical)
    s = r.subjects.set_index("subject_id")
    assert s.at["M", "best_response"] == "PD" and s.at["W", "best_response"] == "CR"
    assert s.at["M", "response_rule"] == "IDH-mutant" and s.at["W", "response_rule"] == "IDH-wildtype"


# -- point 3: best response and the waterfall bar stop at progression ----------------------------
def test_best_response_counts_only_scans_up_to_progression():
    a = assess_subject(traj([5000.0, 8000.0, 1000.0], [20000.0] * 3))  # PD at day 90, then -80 %
    assert list(a["category"]) == ["baseline", "PD", "PR"]
    s = subject_summary(a).iloc[0]
    assert s["best_response"] == "PD"
    assert s["best_pct_change"] == pytest.approx(60.0)
    # a response before the progression still counts
    b = subject_summary(assess_subject(traj([5000.0, 1500.0, 3000.0, 500.0], [20000.0] * 4))).iloc[0]
    assert b["best_response"] == "PR" and b["best_pct_change"] == pytest.approx(-70.0)


# -- point 8: PFS ---------------------------------------------------------------------------------
def _pfs(scans, clinical, rules=PfsRules()):
    out = progression_free_survival(subject_summary(assess_cohort(scans)), clinical, rules=rules)
    return out.set_index("subject_id")


def test_death_after_two_missed_assessments_is_censored_at_the_last_scan():
    # scans every 3 months up to 46.8 months (schedule interval 91.3 days); death at 74.2 months
    days = list(np.arange(0, 47) * 30.4375)[::3][:16] + [46.8 * 30.4375]
    ce = [5000.0] * len(days)
    near = [0.0, 91.3125, 182.625]  # last scan 6 months; death at 10 months: 1.3 intervals
    scans = pd.concat([traj(ce, [20000.0] * len(days), days=days, sid="LATE"),
                       traj([5000.0] * 3, [20000.0] * 3, days=near, sid="NEAR")],
                      ignore_index=True)
    clinical = pd.DataFrame({"SUBJECT ID": ["LATE", "NEAR"], "Survival(months)": [74.2, 10.0],
                             "event": [1, 1]})
    p = _pfs(scans, clinical)
    assert p.at["LATE", "PFS(months)"] == pytest.approx(46.8)
    assert p.at["LATE", "PFS_event"] == 0.0
    assert p.at["LATE", "pfs_reason"] == "censored: death after missed assessments"
    assert "subject's scan schedule" in p.at["LATE", "pfs_detail"]
    assert p.at["NEAR", "PFS(months)"] == pytest.approx(10.0) and p.at["NEAR", "PFS_event"] == 1.0
    assert p.at["NEAR", "pfs_reason"] == "death"


def test_baseline_only_subject_uses_the_default_interval():
    scans = pd.concat([traj([5000.0], [20000.0], days=[0.0], sid=s) for s in "ABC"],
                      ignore_index=True)
    clinical = pd.DataFrame({"SUBJECT ID": list("ABC"), "Survival(months)": [30.0, 4.0, 12.0],
                             "event": [1, 1, 0]})
    p = _pfs(scans, clinical, PfsRules(default_interval_days=84.0))
    # A: dies 30 months after its only scan: censored at baseline, not PFS = OS
    assert (p.at["A", "PFS(months)"], p.at["A", "PFS_event"]) == (0.0, 0.0)
    assert "default" in p.at["A", "pfs_detail"] and "84" in p.at["A", "pfs_detail"]
    # B: dies within two 12-week intervals: an event at the death
    assert (p.at["B", "PFS(months)"], p.at["B", "PFS_event"]) == (4.0, 1.0)
    assert p.at["C", "pfs_reason"] == "censored: no follow-up scan"


def test_survival_origin_offset_puts_death_on_the_scan_time_axis():
    # survival counted from diagnosis; the baseline scan came 2 months (60.875 days) later
    scans = traj([5000.0] * 3, [20000.0] * 3, days=[0.0, 91.3125, 182.625], sid="S")
    clinical = pd.DataFrame({"SUBJECT ID": ["S"], "Survival(months)": [10.0], "event": [1],
                             "days_to_baseline_scan": [60.875]})
    p = _pfs(scans, clinical)
    assert p.at["S", "PFS(months)"] == pytest.approx(8.0) and p.at["S", "PFS_event"] == 1.0
    assert p.at["S", "os_origin_to_baseline_days"] == pytest.approx(60.875)
    # absent column: survival is taken as measured from the baseline scan, and said so
    q = _pfs(scans, clinical.drop(columns=["days_to_baseline_scan"]))
    assert q.at["S", "PFS(months)"] == pytest.approx(10.0)
    assert q.at["S", "os_origin_to_baseline_days"] == 0.0
    assert "assumed" in q.at["S", "pfs_detail"]
    assert "days_to_baseline_scan" in PfsRules().describe()
