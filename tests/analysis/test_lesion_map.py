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
