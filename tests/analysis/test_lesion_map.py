"""Cohort lesion-frequency maps and region association with known answers."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliocore.analysis import lesion_map


def test_frequency_map_is_the_share_of_subjects(tmp_path):
    paths = []
    for n, (lo, hi) in enumerate([(0, 4), (2, 6), (10, 12)]):
        m = np.zeros((12, 12, 12), dtype=np.uint8)
        m[lo:hi, 0:2, 0:2] = 2 if n else 1
        p = tmp_path / f"m{n}.nii.gz"
        nib.save(nib.Nifti1Image(m, np.eye(4)), p)
        paths.append(str(p))
    share, n = lesion_map.frequency_map(paths, factor=1)
    assert n == 3
    assert share[3, 0, 0] == pytest.approx(2 / 3)       # subjects 0 and 1
    assert share[0, 0, 0] == pytest.approx(1 / 3)
    assert share[8, 0, 0] == 0
    ce, _ = lesion_map.frequency_map(paths, "contrast_enhancing", factor=1)
    assert ce[3, 0, 0] == pytest.approx(1 / 3) and ce[10, 0, 0] == 0
    coarse, _ = lesion_map.frequency_map(paths, factor=2)
    assert coarse.shape == (6, 6, 6) and coarse[1, 0, 0] == pytest.approx(2 / 3)


def test_region_association_fisher_and_bh():
    idx = [f"S{i}" for i in range(10)]
    involved = pd.DataFrame({"frontal": [True] * 5 + [False] * 5,
                             "temporal": [True, False] * 5}, index=idx)
    groups = pd.Series(["mutant"] * 5 + ["wildtype"] * 5, index=idx)
    res = lesion_map.region_association(involved, groups).set_index("region")
    # 5/5 vs 0/5: two-sided Fisher p = 2 / C(10, 5) = 2/252
    assert res.loc["frontal", "p"] == pytest.approx(2 / 252)
    assert res.loc["frontal", "% mutant"] == 100 and res.loc["frontal", "% wildtype"] == 0
    assert res.loc["temporal", "p"] == pytest.approx(1.0)
    assert res.loc["frontal", "q (BH)"] == pytest.approx(2 * 2 / 252)
    with pytest.raises(ValueError, match="exactly two levels"):
        lesion_map.region_association(involved, pd.Series(["a", "b", "c"] * 3 + ["a"], index=idx))


def test_involvement_threshold():
    wide = pd.DataFrame({"loc_wt_frontal_pct": [60.0, 5.0, np.nan],
                         "loc_wt_temporal_pct": [40.0, 95.0, np.nan]}, index=["a", "b", "c"])
    inv = lesion_map.involvement(wide, "wt", min_pct=10)
    assert list(inv.index) == ["a", "b"]
    assert inv.loc["a"].tolist() == [True, True] and inv.loc["b"].tolist() == [False, True]


# -- issue 18 point 10: no circular tests; untestable regions out of the BH family --------------
def test_regions_involved_in_neither_group_are_left_out_of_the_bh_family():
    idx = [f"S{i}" for i in range(10)]
    involved = pd.DataFrame({"frontal": [True] * 5 + [False] * 5,
                             "temporal": [True, False] * 5,
                             "brainstem": [False] * 10, "thalamus": [False] * 10}, index=idx)
    groups = pd.Series(["mutant"] * 5 + ["wildtype"] * 5, index=idx)
    res = lesion_map.region_association(involved, groups).set_index("region")
    # m = 2 tested regions, not 4: frontal's q = p x 2 / 1
    assert res.loc["frontal", "q (BH)"] == pytest.approx(2 * 2 / 252)
    assert res.loc[["frontal", "temporal"], "tested"].all()
    for region in ("brainstem", "thalamus"):
        assert not res.loc[region, "tested"]
        assert np.isnan(res.loc[region, "p"]) and np.isnan(res.loc[region, "q (BH)"])
    assert res.attrs["m"] == 2


@pytest.mark.parametrize("column", ["loc_wt_epicentre_region_name", "loc_wt_side_name",
                                    "loc_ce_side_name", "vasari_F1"])
def test_grouping_derived_from_tumour_location_is_not_tested(column):
    why = lesion_map.circular_grouping(column)
    assert why and "by construction" in why
    idx = [f"S{i}" for i in range(6)]
    involved = pd.DataFrame({"temporal": [True] * 3 + [False] * 3}, index=idx)
    groups = pd.Series(["temporal"] * 3 + ["frontal"] * 3, index=idx)
    with pytest.raises(ValueError, match="by construction"):
        lesion_map.region_association(involved, groups, grouping=column)


def test_clinical_groupings_are_tested():
    for column in ("IDH-status", "sex", "MGMT"):
        assert lesion_map.circular_grouping(column) is None
