"""Volumetric RANO 2.0 categories and PFS on hand-computed trajectories."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.longitudinal.response import (RANO2_VOLUMETRIC, RANO2_SOURCE, ResponseCriteria, assess_cohort,
                               assess_subject, cohort_response, progression_free_survival,
                               subject_summary, target_class)
from gliocore.types import TumourClass


def traj(ce, ne=None, days=None, sid="S1"):
    n = len(ce)
    return pd.DataFrame({"subject_id": sid, "scan_id": [f"t{i}" for i in range(n)],
                         "days": days if days is not None else [90.0 * i for i in range(n)],
                         "scan_order": range(n),
                         "volume_ce_mm3": ce,
                         "volume_ne_mm3": ne if ne is not None else [20000.0] * n})


def test_criteria_constant_states_rano2_source():
    assert RANO2_VOLUMETRIC.pr_decrease == 0.65 and RANO2_VOLUMETRIC.pd_increase == 0.40
    assert "Wen" in RANO2_SOURCE and "J Clin Oncol 2023" in RANO2_SOURCE
    assert "65%" in RANO2_VOLUMETRIC.describe() and "40%" in RANO2_VOLUMETRIC.describe()


def test_nadir_is_smallest_earlier_volume_and_pd_from_nadir():
    # 10 -> 4 -> 2 -> 3 -> 2.9 cm³: nadirs -, 10, 4, 2, 2; 3 is +50 % from nadir 2 -> PD even
    # though it is -70 % from baseline (PD before PR); 2.9 is +45 % from the same nadir.
    a = assess_subject(traj([10000.0, 4000.0, 2000.0, 3000.0, 2900.0]))
    assert list(a["nadir_ce_mm3"].iloc[1:]) == [10000.0, 4000.0, 2000.0, 2000.0]
    assert np.isnan(a["nadir_ce_mm3"].iloc[0])
    assert list(a["pct_from_baseline_ce"].round(1)) == [0.0, -60.0, -80.0, -70.0, -71.0]
    assert list(a["pct_from_nadir_ce"].iloc[1:].round(1)) == [-60.0, -50.0, 50.0, 45.0]
    #  -60 % is not PR (needs -65 %); -80 % is PR
    assert list(a["category"]) == ["baseline", "SD", "PR", "PD", "PD"]
    assert a["target"].iloc[0] == "contrast_enhancing"


def test_thresholds_are_inclusive():
    a = assess_subject(traj([10000.0, 3500.0, 4900.0]))
    # -65.0 % exactly -> PR; 4900 = 3500 x 1.4 exactly -> PD
    assert list(a["category"]) == ["baseline", "PR", "PD"]


def test_first_follow_up_progression_and_summary():
    a = assess_subject(traj([5000.0, 7000.0, 3000.0], days=[0.0, 60.0, 150.0]))
    assert list(a["category"]) == ["baseline", "PD", "SD"]  # 3000: -40 %, not PR; nadir 5000
    s = subject_summary(a)
    # best response and change stop at the progression (issue 18 point 3): not the later SD
    assert s.loc[0, "progression_days"] == 60.0 and s.loc[0, "best_response"] == "PD"
    assert s.loc[0, "best_pct_change"] == pytest.approx(40.0)


def test_complete_response_and_regrowth_below_minimum_is_not_pd():
    a = assess_subject(traj([5000.0, 0.0, 300.0, 1200.0]))
    # 0 -> CR; 300 mm³ is infinitely above nadir 0 but below 1 cm³, so not PD; it is -94 %
    # from baseline -> PR; 1200 mm³ >= 1 cm³ and above nadir 0 -> PD
    assert list(a["category"]) == ["baseline", "CR", "PR", "PD"]


def test_non_enhancing_tumour_uses_non_enhancing_volume():
    ce = [200.0, 0.0, 150.0]            # below 1 cm³: non-enhancing tumour
    ne = [30000.0, 9000.0, 14000.0]     # -70 % -> PR; +55.6 % from nadir 9000 -> PD
    a = assess_subject(traj(ce, ne))
    assert a["target"].iloc[0] == "non_enhancing"
    assert list(a["category"]) == ["baseline", "PR", "PD"]
    assert target_class(999.0) is TumourClass.NON_ENHANCING
    assert target_class(1000.0) is TumourClass.ENHANCING


def test_non_measurable_baseline_has_no_partial_response():
    a = assess_subject(traj([600.0, 100.0, 0.0]), target=TumourClass.ENHANCING)
    assert not a["measurable"].iloc[0]
    assert list(a["category"]) == ["baseline", "SD", "CR"]


def test_scan_without_volume_is_skipped_for_nadir():
    a = assess_subject(traj([10000.0, np.nan, 6000.0, 8500.0]))
    assert a["category"].iloc[1] is None
    assert a["nadir_ce_mm3"].iloc[3] == 6000.0
    assert list(a["category"].iloc[[0, 2, 3]]) == ["baseline", "SD", "PD"]  # 8500 = +41.7 %


def test_confirmation():
    conf = ResponseCriteria(confirm=True)
    # PD at t1 not confirmed (t2 back below nadir x 1.4) -> SD (pseudo-progression);
    # PD at t3 confirmed by t4; t4 itself is the last scan: PD stands, not confirmable.
    a = assess_subject(traj([5000.0, 7500.0, 5200.0, 7200.0, 9000.0]), conf)
    assert list(a["raw_category"]) == ["baseline", "PD", "SD", "PD", "PD"]
    assert list(a["category"]) == ["baseline", "SD", "SD", "PD", "PD"]
    assert list(a["confirmed"]) == [None, False, None, True, None]
    # responses: PR confirmed by PR; CR followed by PR -> PR; last-scan PR unconfirmed -> SD
    b = assess_subject(traj([10000.0, 3000.0, 2000.0, 0.0, 1000.0, 3000.0]), conf)
    assert list(b["raw_category"]) == ["baseline", "PR", "PR", "CR", "PD", "PD"]
    assert list(b["category"]) == ["baseline", "PR", "PR", "SD", "PD", "PD"]
    c = assess_subject(traj([10000.0, 0.0, 0.0, 2000.0]), conf)
    assert list(c["category"]) == ["baseline", "CR", "SD", "PD"]  # CR then PD: not confirmed
    d = assess_subject(traj([10000.0, 0.0, 0.0, 0.0]), conf)
    assert list(d["category"]) == ["baseline", "CR", "CR", "SD"]
    # without confirmation the same trajectory keeps its raw categories
    assert list(assess_subject(traj([5000.0, 7500.0, 5200.0]))["category"]) == \
        ["baseline", "PD", "SD"]


def test_pfs_progression_death_and_censoring():
    scans = pd.concat([
        traj([5000.0, 4000.0, 8000.0], days=[0, 91.3125, 182.625], sid="P"),   # PD at 6 months
        traj([5000.0, 4000.0, 4500.0], days=[0, 91.3125, 182.625], sid="D"),   # dies at 20 mo
        traj([5000.0, 4000.0, 4500.0], days=[0, 91.3125, 182.625], sid="N"),   # dies at 11 mo
        traj([5000.0, 4000.0, 4500.0], days=[0, 91.3125, 304.375], sid="C"),   # alive: 10 mo
        traj([5000.0], days=[0], sid="B"),                                      # baseline only
        traj([5000.0, 3000.0], days=[np.nan, np.nan], sid="U"),                 # times unknown
        traj([5000.0, 3000.0], days=[0, 182.625], sid="E"),                     # died before last scan
    ], ignore_index=True)
    clinical = pd.DataFrame({"SUBJECT ID": ["P", "D", "N", "C", "B", "U", "E"],
                             "Survival(months)": [30.0, 20.0, 11.0, 40.0, 15.0, 9.0, 3.0],
                             "event": [1, 1, 1, 0, 0, 1, 1]})
    pfs = progression_free_survival(subject_summary(assess_cohort(scans)), clinical)
    got = {r[0]: (r[1], r[2], r[3]) for r in pfs.itertuples(index=False)}
    assert got["P"] == (6.0, 1.0, "progression")
    # D dies 14 months after its last scan, > 2 of its 3-month intervals: censored there
    # (issue 18 point 8, FDA 2018); N dies 5 months after: within two intervals, an event
    assert got["D"] == (6.0, 0.0, "censored: death after missed assessments")
    assert got["N"] == (11.0, 1.0, "death")
    assert got["C"] == (10.0, 0.0, "censored: alive at last scan")
    assert got["B"] == (0.0, 0.0, "censored: no follow-up scan")
    assert np.isnan(got["U"][0]) and got["U"][2] == "scan times unknown"
    assert got["E"] == (6.0, 1.0, "death")


def test_cohort_response_one_scan_cohort_is_not_longitudinal():
    scans = pd.concat([traj([5000.0], sid="A"), traj([8000.0], sid="B")], ignore_index=True)
    res = cohort_response(scans)
    assert not res.is_longitudinal
    assert list(res.scans["category"]) == ["baseline", "baseline"]
    assert res.subjects["best_response"].isna().all()
