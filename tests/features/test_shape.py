"""gliocore.features.shape: PyRadiomics' mesh volume, surface and diameters, without the all-pairs search."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from radiomics import cShape

from gliocore.features import shape as gs


def c_values(padded: np.ndarray, spacing: np.ndarray) -> tuple[float, float, tuple]:
    sa, vol, diam = cShape.calculate_coefficients(padded, spacing)
    return sa, vol, tuple(diam)


def ours(padded: np.ndarray, spacing: np.ndarray) -> tuple[float, float, tuple]:
    sa, vol = gs.mesh_coefficients(padded, spacing)
    return sa, vol, gs.max_diameters(padded, spacing)


def ellipsoid(shape, radii, centre=None) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    c = np.asarray(centre if centre is not None else np.array(shape) / 2.0)[:, None, None, None]
    return (((grid - c) / np.asarray(radii, float)[:, None, None, None]) ** 2).sum(0) <= 1


def synthetic_labels(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shapes with holes, several components, labels touching the box, lines and slabs."""
    shapes: dict[str, np.ndarray] = {}
    ball = ellipsoid((26, 30, 22), (11, 13, 9))
    shapes["ellipsoid"] = ball
    holed = ball.copy()
    holed &= rng.random(ball.shape) > 0.15  # speckled holes
    holed[10:16, 12:18, 8:14] = False  # a cavity
    shapes["holes"] = holed
    two = ellipsoid((30, 24, 20), (6, 5, 4), (7, 8, 6)) | ellipsoid((30, 24, 20), (5, 7, 5), (22, 15, 13))
    two[0, 0, 0] = True  # a third, one-voxel component in the corner
    shapes["components"] = two
    shell = ball & ~ellipsoid(ball.shape, (7, 9, 5))
    shapes["shell"] = shell
    box = np.zeros((12, 15, 9), bool)
    box[:, :, :] = True
    box[3:6, 4:9, 2:5] = False  # fills its box except a hole: touches every face
    shapes["box_touching_edges"] = box
    line = np.zeros((3, 40, 3), bool)
    line[1, :, 1] = True
    shapes["line"] = line
    slab = np.zeros((1, 30, 25), bool)
    slab[0, 2:28, 3:20] = True
    shapes["slab_one_voxel_thick"] = slab
    shapes["random_noise"] = rng.random((14, 16, 12)) > 0.4
    shapes["one_voxel"] = np.ones((1, 1, 1), bool)
    return shapes


SPACINGS = [np.array([1.0, 1.0, 1.0]), np.array([2.5, 0.9375, 0.9375]),
            np.array([0.8999999761581421, 1.100000023841858, 3.0])]


@pytest.mark.parametrize("spacing", SPACINGS, ids=["iso", "thick", "float32"])
def test_bit_identical_to_pyradiomics_c(rng, spacing):
    for name, label in synthetic_labels(rng).items():
        padded = np.pad(label, 1)
        assert ours(padded, spacing) == c_values(padded, spacing), name


def test_random_masks_bit_identical(rng):
    for _ in range(60):
        shape = tuple(int(v) for v in rng.integers(2, 18, 3))
        label = rng.random(shape) < rng.uniform(0.1, 0.95)
        spacing = rng.uniform(0.3, 3.0, 3)
        padded = np.pad(label, 1)
        assert ours(padded, spacing) == c_values(padded, spacing)


def test_plane_bound_is_an_upper_bound(rng):
    """The per-plane bound used to skip planes never falls below the true diameter."""
    for _ in range(200):
        n = int(rng.integers(2, 60))
        pts = rng.normal(size=(n, 2)) * rng.uniform(0.1, 50, 2)
        if rng.random() < 0.5:  # rotated thin sets: the diameter between sampled directions
            t = rng.uniform(0, np.pi)
            pts = pts @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        d = pts[:, None, :] - pts[None, :, :]
        true = (d ** 2).sum(-1).max()
        assert gs._width_bound(pts, np.array([0]))[0] >= true * (1 - 1e-12)


def test_rotated_blobs_bit_identical(rng):
    """Thin rotated slabs and blobs: in-plane diameters in every direction, large planes."""
    for _ in range(6):
        shape = (24, 28, 26)
        grid = np.indices(shape).astype(float) - np.array(shape)[:, None, None, None] / 2
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        local = np.einsum("ij,jxyz->ixyz", q, grid)
        radii = rng.uniform([3, 6, 9], [5, 10, 13])
        label = ((local / radii[:, None, None, None]) ** 2).sum(0) <= 1
        label &= rng.random(shape) > 0.05
        spacing = rng.uniform(0.5, 2.5, 3)
        padded = np.pad(label, 1)
        assert ours(padded, spacing) == c_values(padded, spacing)


def test_vertices_are_pyradiomics_edge_midpoints():
    """One voxel: 6 vertices, at the centres of its faces."""
    padded = np.pad(np.ones((1, 1, 1), bool), 1)
    v = gs.mesh_vertices(padded)
    assert sorted(map(tuple, v)) == sorted([(1, 2, 2), (3, 2, 2), (2, 1, 2), (2, 3, 2),
                                            (2, 2, 1), (2, 2, 3)])
    assert gs.max_diameters(padded, np.ones(3))[3] == 1.0


def test_hull_shape_class_identical(rng, tmp_path):
    """All 3-D shape features through extract_features equal PyRadiomics on the files."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from gliocore.features import radiomics as gr
    from gliocore.imaging.io import load_volume

    shape = (30, 32, 20)
    mask = np.zeros(shape, np.uint8)
    mask[ellipsoid(shape, (10, 12, 7))] = 2
    mask[ellipsoid(shape, (10, 12, 7)) & (rng.random(shape) > 0.7)] = 1  # speckled: holes
    mask[0:4, 0:5, 0:20] = 1  # a second component touching three faces of the image
    image = (rng.normal(200, 40, shape)).astype(np.int16)
    affine = np.diag([-0.9375, -0.9375, 2.5, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    params = {"featureClass": {"shape": []}}
    vols = {"t1": load_volume(tmp_path / "t1.nii.gz")}
    mvol = load_volume(tmp_path / "mask.nii.gz", dtype=None)
    rows = gr.extract_features(vols, mvol.data, mvol.affine, params)
    ex = RadiomicsFeatureExtractor(params)
    for label in (1, 2):
        ref = ex.execute(str(tmp_path / "t1.nii.gz"), str(tmp_path / "mask.nii.gz"), label=label)
        got = {r.feature: r.value for r in rows if r.tumour_class.canonical_label == label}
        want = {k: float(v) for k, v in ref.items() if not k.startswith("diagnostics_")}
        assert len(want) == 14 and got == want


@pytest.mark.shared
@pytest.mark.slow
def test_real_cases_identical(shared_dir):
    """Both classes of the five BraTS 2018 cases: bit-identical to PyRadiomics' C function."""
    import SimpleITK as sitk

    from gliocore.imaging.labels import BRATS

    cases = sorted((shared_dir / "cases" / "brats18-dev").glob("Brats18_*"))
    assert cases
    for case in cases:
        seg = sitk.ReadImage(str(case / f"{case.name}_seg.nii.gz"))
        canonical = BRATS.to_canonical(sitk.GetArrayFromImage(seg))
        spacing = np.array(seg.GetSpacing()[::-1])
        for label in (1, 2):
            roi = canonical == label
            idx = np.argwhere(roi)
            lo, hi = idx.min(0), idx.max(0) + 1
            padded = np.pad(roi[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1)
            assert ours(padded, spacing) == c_values(padded, spacing), (case.name, label)
