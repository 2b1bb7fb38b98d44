"""Segmentation QC on hand-made masks with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gliocore.segment.qc import (WHOLE_TUMOUR, compare_masks, dice, hausdorff95, majority_vote,
                         volume_mm3)


def cube(shape=(30, 30, 30), start=(5, 5, 5), side=10) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[start[0]:start[0] + side, start[1]:start[1] + side, start[2]:start[2] + side] = True
    return m


def sphere(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum(((grid[i] - centre[i]) * spacing[i]) ** 2 for i in range(3))
    return d2 <= radius ** 2


class TestDice:
    @pytest.mark.parametrize("k", [0, 1, 3, 7, 10])
    def test_offset_cubes_analytic(self, k):
        # Cubes of side n offset by k along one axis overlap in n*n*(n-k) voxels: Dice = (n-k)/n.
        n = 10
        a = cube(side=n)
        b = cube(start=(5 + k, 5, 5), side=n)
        assert dice(a, b) == pytest.approx((n - k) / n)

    def test_both_empty_is_one(self):
        z = np.zeros((4, 4, 4), bool)
        assert dice(z, z) == 1.0

    def test_one_empty_is_zero(self):
        assert dice(cube(), np.zeros((30, 30, 30), bool)) == 0.0

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="resample"):
            dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))


class TestHausdorff95:
    def test_identical_is_zero(self):
        assert hausdorff95(cube(), cube(), (1, 1, 1)) == 0.0

    @pytest.mark.parametrize("spacing,expected", [((1, 1, 1), 3.0), ((2, 1, 1), 6.0),
                                                   ((0.5, 3, 3), 1.5)])
    def test_parallel_planes_follow_spacing(self, spacing, expected):
        # Every surface voxel of one plane is exactly 3 voxels (3 * spacing[0] mm) from the other.
        a = np.zeros((12, 8, 8), bool)
        b = np.zeros_like(a)
        a[4] = True
        b[7] = True
        assert hausdorff95(a, b, spacing) == pytest.approx(expected)

    def test_anisotropy_along_other_axis_does_not_matter(self):
        a = np.zeros((12, 8, 8), bool)
        b = np.zeros_like(a)
        a[4] = True
        b[7] = True
        assert hausdorff95(a, b, (1, 5, 5)) == pytest.approx(3.0)

    def test_affine_accepted(self):
        a = np.zeros((12, 8, 8), bool)
        b = np.zeros_like(a)
        a[4], b[7] = True, True
        aff = np.diag([2.0, 1.0, 1.0, 1.0])
        assert hausdorff95(a, b, aff) == pytest.approx(6.0)

    def test_offset_cubes_bounded_by_offset(self):
        k = 3
        h = hausdorff95(cube(), cube(start=(5 + k, 5, 5)), (1, 1, 1))
        assert 0 < h <= k

    def test_concentric_spheres(self):
        shape = (48, 48, 48)
        c = (24, 24, 24)
        a = sphere(shape, c, 8)
        b = sphere(shape, c, 12)
        # Surfaces 4 mm apart, up to voxelisation (one voxel either way).
        assert 3.0 <= hausdorff95(a, b, (1, 1, 1)) <= 5.0

    def test_spheres_anisotropic_spacing_in_mm(self):
        # The same physical spheres sampled at 1 x 1 x 2 mm: the answer stays in mm.
        spacing = (1.0, 1.0, 2.0)
        shape = (48, 48, 24)
        c = (24, 24, 12)
        a = sphere(shape, c, 8, spacing)
        b = sphere(shape, c, 12, spacing)
        assert 3.0 <= hausdorff95(a, b, spacing) <= 5.5

    def test_empty_gives_nan(self):
        assert math.isnan(hausdorff95(cube(), np.zeros((30, 30, 30), bool), (1, 1, 1)))
        assert math.isnan(hausdorff95(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), (1, 1, 1)))


class TestVolume:
    def test_counts_times_voxel_volume(self):
        m = cube(side=10)
        assert volume_mm3(m, (1, 1, 1)) == pytest.approx(1000)
        assert volume_mm3(m, (1, 1, 3)) == pytest.approx(3000)
        assert volume_mm3(m, np.diag([0.5, 0.5, 2.0, 1.0])) == pytest.approx(500)

    def test_rotated_affine(self):
        theta = 0.3
        rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                        [0, 0, 1]])
        aff = np.eye(4)
        aff[:3, :3] = rot @ np.diag([2.0, 1.0, 1.5])
        assert volume_mm3(cube(side=10), aff) == pytest.approx(3000)

    def test_sphere_volume_close_to_analytic(self):
        spacing = (1.0, 1.0, 2.0)
        m = sphere((60, 60, 30), (30, 30, 15), 20, spacing)
        assert volume_mm3(m, spacing) == pytest.approx(4 / 3 * math.pi * 20 ** 3, rel=0.03)

    def test_bad_spacing(self):
        with pytest.raises(ValueError, match="positive"):
            volume_mm3(cube(), (1, 0, 1))
        with pytest.raises(ValueError, match="affine or 3 voxel sizes"):
            volume_mm3(cube(), (1, 1))


class TestCompareMasks:
    def test_rows_per_class_and_whole(self):
        ref = np.zeros((30, 30, 30), np.uint8)
        ref[cube(side=10)] = 2
        ref[cube(start=(8, 8, 8), side=4)] = 1
        pred = np.zeros_like(ref)
        pred[cube(start=(6, 5, 5), side=10)] = 2
        pred[cube(start=(8, 8, 8), side=4)] = 1
        aff = np.diag([1.0, 1.0, 2.0, 1.0])
        rows = {r.region: r for r in compare_masks(pred, ref, aff)}
        assert set(rows) == {"contrast_enhancing", "non_enhancing", WHOLE_TUMOUR}
        ce = rows["contrast_enhancing"]
        assert ce.dice == 1.0 and ce.hd95_mm == 0.0
        assert ce.volume_pred_mm3 == ce.volume_ref_mm3 == 64 * 2
        whole = rows[WHOLE_TUMOUR]
        assert whole.dice == pytest.approx(0.9)
        assert whole.volume_ref_mm3 == pytest.approx(2000)
        assert whole.volume_diff_mm3 == pytest.approx(0.0)
        ne = rows["non_enhancing"]
        assert ne.volume_diff_mm3 == pytest.approx(ne.volume_pred_mm3 - ne.volume_ref_mm3)

    def test_empty_class_note(self):
        ref = np.zeros((10, 10, 10), np.uint8)
        ref[2:5, 2:5, 2:5] = 2
        pred = ref.copy()
        rows = {r.region: r for r in compare_masks(pred, ref, np.eye(4))}
        ce = rows["contrast_enhancing"]
        assert ce.dice == 1.0 and math.isnan(ce.hd95_mm) and "both masks empty" in ce.note
        assert rows["non_enhancing"].note == ""

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="resample"):
            compare_masks(np.zeros((3, 3, 3)), np.zeros((4, 3, 3)), np.eye(4))


class TestMajorityVote:
    def test_strict_majority(self):
        a = np.zeros((2, 2, 2), np.uint8)
        b, c = a.copy(), a.copy()
        a[0, 0, 0] = b[0, 0, 0] = 1           # 2 of 3 -> 1
        a[1, 1, 1] = 2                        # 1 of 3 -> 0
        a[0, 1, 0], b[0, 1, 0], c[0, 1, 0] = 1, 2, 2  # 2 votes for 2
        out = majority_vote([a, b, c])
        assert out[0, 0, 0] == 1 and out[1, 1, 1] == 0 and out[0, 1, 0] == 2

    def test_min_votes(self):
        a = np.zeros((2, 2, 2), np.uint8)
        b, c = a.copy(), a.copy()
        a[1, 1, 1] = 2
        assert majority_vote([a, b, c], min_votes=1)[1, 1, 1] == 2
        with pytest.raises(ValueError, match="min_votes"):
            majority_vote([a, b, c], min_votes=4)

    def test_empty_list(self):
        with pytest.raises(ValueError):
            majority_vote([])


def test_compare_mask_files_scores_a_against_b(tmp_path):
    import nibabel as nib

    from gliocore.segment.qc import compare_mask_files
    a = np.zeros((10, 10, 10), np.uint8)
    a[2:6, 2:6, 2:6] = 1          # 64 voxels CE
    b = a.copy()
    b[2:6, 2:6, 2:4] = 2          # half of it NE in B
    aff = np.diag([2.0, 1.0, 1.0, 1.0])  # 2 mm³ voxels
    for name, m in (("a", a), ("b", b)):
        nib.save(nib.Nifti1Image(m, aff), str(tmp_path / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(tmp_path / "other_grid.nii.gz"))
    df = compare_mask_files({"S1": (tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"),
                             "S2": (tmp_path / "a.nii.gz", tmp_path / "other_grid.nii.gz")})
    s1 = df[df["subject_id"] == "S1"].set_index("region")
    assert s1.loc["contrast_enhancing", "dice"] == pytest.approx(2 * 32 / (64 + 32))
    assert s1.loc["contrast_enhancing", "volume_a_mm3"] == 128.0
    assert s1.loc["contrast_enhancing", "volume_diff_mm3"] == 64.0
    assert s1.loc["whole_tumour", "dice"] == 1.0
    s2 = df[df["subject_id"] == "S2"]
    assert len(s2) == 1 and "different grids" in s2["note"].iloc[0]


class TestHD95Definitions:
    """Issue 8.15: the BraTS HD95 (max of the directed 95th percentiles) vs the pooled one."""

    @staticmethod
    def line_masks():
        # A: 20 voxels in a row (x = 0..19); B: A plus 3 voxels at x = 30, 31, 32. Every voxel of
        # a 1-voxel-thick line is a surface voxel. d(A->B) = 20 zeros; d(B->A) = 20 zeros and
        # 11, 12, 13 mm.
        a = np.zeros((40, 3, 3), bool)
        a[0:20, 1, 1] = True
        b = a.copy()
        b[30:33, 1, 1] = True
        return a, b

    def test_brats_definition_by_hand(self):
        # P95(d(A->B)) = 0; P95 of the 23 values of d(B->A): position 0.95 * 22 = 20.9 between
        # the 21st (11) and 22nd (12) sorted values -> 11.9 mm; the BraTS HD95 = max = 11.9.
        a, b = self.line_masks()
        assert hausdorff95(a, b, (1, 1, 1)) == pytest.approx(11.9)
        assert hausdorff95(b, a, (1, 1, 1)) == pytest.approx(11.9)  # symmetric
        assert hausdorff95(a, b, (1, 1, 1), method="brats") == pytest.approx(11.9)

    def test_pooled_definition_by_hand(self):
        # 43 pooled values (40 zeros, 11, 12, 13): position 0.95 * 42 = 39.9 between the 40th
        # (0) and 41st (11) sorted values -> 9.9 mm.
        a, b = self.line_masks()
        assert hausdorff95(a, b, (1, 1, 1), method="pooled") == pytest.approx(9.9)

    def test_compare_masks_reports_both_named(self):
        a, b = self.line_masks()
        rows = {r.region: r for r in compare_masks(b.astype(np.uint8), a.astype(np.uint8),
                                                   np.eye(4))}
        ce = rows["contrast_enhancing"]
        assert ce.hd95_mm == pytest.approx(11.9) and ce.hd95_pooled_mm == pytest.approx(9.9)

    def test_unknown_method(self):
        with pytest.raises(ValueError, match="brats"):
            hausdorff95(cube(), cube(), (1, 1, 1), method="mean")


def test_summary_counts_missed_segmentations_instead_of_skipping_them():
    import pandas as pd
    from gliocore.segment.qc import summarise
    rows = [  # S3's prediction is empty: Dice 0, no HD95 -> a missed segmentation
        ("S1", "contrast_enhancing", 0.9, 2.0, 1000.0, 1100.0),
        ("S2", "contrast_enhancing", 0.8, 4.0, 900.0, 1000.0),
        ("S3", "contrast_enhancing", 0.0, math.nan, 0.0, 800.0),
        ("S4", "contrast_enhancing", 0.0, math.nan, 50.0, 0.0),
        ("S5", "contrast_enhancing", 1.0, math.nan, 0.0, 0.0),
    ]
    df = pd.DataFrame(rows, columns=["subject_id", "region", "dice", "hd95_mm",
                                     "volume_pred_mm3", "volume_ref_mm3"])
    out = summarise(df).loc["contrast_enhancing"]
    assert out["subjects"] == 5 and out["n_scored"] == 2
    assert out["n_missed"] == 1 and out["n_false_positive"] == 1 and out["n_both_empty"] == 1
    assert out["hd95_median_mm"] == pytest.approx(3.0)
    assert out["dice_median"] == pytest.approx(0.8)
