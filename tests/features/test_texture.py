"""gliocore.features.texture: the texture matrices equal PyRadiomics' C matrices, element for element (bits)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from radiomics import cMatrices

from gliocore.features import texture as tx
from gliocore.features.binning import bin_image


def c_glrlm(image, mask, Ng, Nr, force2D=False, dim=0):
    return cMatrices.calculate_glrlm(image, mask, Ng, Nr, force2D, dim)


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint64) if a.dtype == np.float64 else a


def outcome(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 -- compared with the other side's
        return exc


def assert_pair_matrices_same(image: np.ndarray, mask: np.ndarray, distances=(1,),
                              force2D: bool = False, dim: int = 0, alpha: int = 0) -> None:
    """GLCM, GLDM and NGTDM of gliocore.features.texture and of PyRadiomics' C: same arrays, same bits
    (or the same exception type)."""
    Ng = max(int(image[mask].max()) if mask.any() else 1, 1)
    d = np.array(distances)
    for name, args in (("calculate_glcm", (image, mask, d, Ng, force2D, dim)),
                       ("calculate_gldm", (image, mask, d, Ng, alpha, force2D, dim)),
                       ("calculate_ngtdm", (image, mask, d, Ng, force2D, dim))):
        expected = outcome(getattr(cMatrices, name), *args)
        got = outcome(getattr(tx, name), *args)
        if isinstance(expected, Exception):
            assert type(got) is type(expected), (name, got, expected)
            continue
        assert not isinstance(got, Exception), (name, got)
        if isinstance(expected, tuple):
            assert np.array_equal(got[1], expected[1]), name  # angles
            got, expected = got[0], expected[0]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(bits(got), bits(expected)), name


def assert_same(image: np.ndarray, mask: np.ndarray, force2D: bool = False, dim: int = 0) -> None:
    Ng = max(int(image[mask].max()) if mask.any() else 1, 1)
    Nr = int(max(image.shape))
    try:
        expected, expected_angles = c_glrlm(image, mask, Ng, Nr, force2D, dim)
    except Exception as exc:  # noqa: BLE001 -- e.g. no angle in a 1x1x1 array: the same error
        with pytest.raises(type(exc)):
            tx.calculate_glrlm(image, mask, Ng, Nr, force2D, dim)
        return
    got, angles = tx.calculate_glrlm(image, mask, Ng, Nr, force2D, dim)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(angles, expected_angles)
    assert np.array_equal(got, expected)


def synthetic_rois(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ROIs with holes, several components, edge-touching voxels and flat (one-slice) extents."""
    shape = (9, 11, 7)
    grid = np.indices(shape)
    r = np.sqrt(((grid - np.array([4, 5, 3])[:, None, None, None]) ** 2).sum(0))
    ball = r < 3.6
    holes = ball & (rng.random(shape) > 0.3)
    two = np.zeros(shape, bool)
    two[0:3, 0:4, 0:3] = True
    two[5:9, 6:11, 3:7] = True  # second component, touching the far edges
    flat = np.zeros(shape, bool)
    flat[2:7, 3:9, 4] = True  # one slice: runs along the third axis have one voxel
    line = np.zeros(shape, bool)
    line[4, 2:10, 3] = True
    return {"ball": ball, "holes": holes, "two components": two, "full box": np.ones(shape, bool),
            "flat": flat, "line": line, "one voxel": r == 0, "speckle": rng.random(shape) > 0.5}


ROI_NAMES = ["ball", "holes", "two components", "full box", "flat", "line", "one voxel", "speckle"]


def grey_levels(rng, shape, levels: int) -> np.ndarray:
    """Grey levels 1..levels: noise (short runs) below 40 levels, smooth bands (long runs) at 40."""
    return (rng.integers(1, levels + 1, shape) if levels < 40
            else 1 + (np.indices(shape).sum(0) // 3) % levels)


@pytest.mark.parametrize("name", ROI_NAMES)
@pytest.mark.parametrize("levels", [1, 3, 40])
def test_glrlm_matches_pyradiomics(rng, name, levels):
    mask = synthetic_rois(rng)[name]
    assert_same(grey_levels(rng, mask.shape, levels), mask)


@pytest.mark.parametrize("name", ROI_NAMES)
@pytest.mark.parametrize("levels", [1, 3, 40])
def test_pair_matrices_match_pyradiomics(rng, name, levels):
    mask = synthetic_rois(rng)[name]
    image = grey_levels(rng, mask.shape, levels)
    assert_pair_matrices_same(image, mask)
    assert_pair_matrices_same(image, mask, alpha=1)


@pytest.mark.parametrize("distances", [(1, 2), (2,), (1, 3)])
def test_pair_matrices_other_distances(rng, distances):
    rois = synthetic_rois(rng)
    for name in ("holes", "two components", "flat"):
        assert_pair_matrices_same(rng.integers(1, 5, rois[name].shape), rois[name], distances)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_pair_matrices_force2d(rng, dim):
    mask = synthetic_rois(rng)["holes"]
    assert_pair_matrices_same(rng.integers(1, 4, mask.shape), mask, force2D=True, dim=dim)


def test_pair_matrices_random_boxes_and_errors(rng):
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 8, size=3))
        mask = rng.random(shape) < rng.random()
        assert_pair_matrices_same(rng.integers(1, int(rng.integers(2, 6)), shape), mask,
                                  alpha=int(rng.integers(0, 3)))
    mask = synthetic_rois(rng)["ball"]
    image = rng.integers(1, 4, mask.shape)
    image[4, 5, 3] = 0  # a grey level PyRadiomics' C rejects
    assert_pair_matrices_same(image, mask)
    with pytest.raises(TypeError):  # the C code takes an int alpha only
        tx.calculate_gldm(image, mask, np.array([1]), 3, 0.5)


def test_ngtdm_sums_in_c_order(rng):
    """Many voxels per grey level with non-integer differences: float sums in PyRadiomics' order."""
    mask = rng.random((30, 31, 29)) > 0.2
    image = rng.integers(1, 4, mask.shape)
    assert_pair_matrices_same(image, mask)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_glrlm_force2d(rng, dim):
    mask = synthetic_rois(rng)["holes"]
    assert_same(rng.integers(1, 4, mask.shape), mask, force2D=True, dim=dim)


@pytest.mark.parametrize("shape", [(1, 6, 5), (6, 1, 5), (4, 5, 1), (1, 1, 7), (3, 4)])
def test_thin_arrays(rng, shape):
    """Axes of size 1 (PyRadiomics then generates fewer angles) and 2-D arrays."""
    mask = rng.random(shape) > 0.3
    mask.flat[0] = True
    image = rng.integers(1, 3, shape)
    assert_same(image, mask)
    assert_pair_matrices_same(image, mask)


def test_glrlm_random_boxes(rng):
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 8, size=3))
        mask = rng.random(shape) < rng.random()
        if not mask.any():
            continue
        assert_same(rng.integers(1, int(rng.integers(2, 6)), shape), mask)


def test_geometry_cache_tells_masks_apart(rng):
    """Equal shapes, different ROIs: each gets its own geometry (and a cached one is reused)."""
    rois = synthetic_rois(rng)
    image = rng.integers(1, 4, rois["ball"].shape)
    for _ in range(2):
        for name in ("ball", "holes", "speckle", "two components", "flat"):
            assert_same(image, rois[name])
    first = tx.run_geometry(rois["ball"], np.array([[0, 0, 1]]))
    assert tx.run_geometry(rois["ball"].copy(), np.array([[0, 0, 1]])) is first
    assert tx.run_geometry(rois["holes"], np.array([[0, 0, 1]])) is not first
    tx.clear_geometry_cache()
    again = tx.run_geometry(rois["ball"], np.array([[0, 0, 1]]))
    assert again is not first and np.array_equal(again.order, first.order)


def test_bad_grey_level_raises_like_pyradiomics(rng):
    mask = synthetic_rois(rng)["ball"]
    image = rng.integers(1, 4, mask.shape)
    image[4, 5, 3] = 0
    with pytest.raises(IndexError):
        c_glrlm(image, mask, 3, 11)
    with pytest.raises(IndexError):
        tx.calculate_glrlm(image, mask, 3, 11)


@pytest.mark.shared
def test_real_roi_matrices(shared_dir):
    """The FLAIR of a large real tumour, both classes, cropped to each ROI as PyRadiomics does."""
    from gliocore.imaging.labels import BRATS

    name = "Brats18_TCIA01_378_1"
    base = shared_dir / "cases" / "brats18-dev" / name
    labels = BRATS.to_canonical(np.asanyarray(nib.load(base / f"{name}_seg.nii.gz").dataobj))
    flair = np.asanyarray(nib.load(base / f"{name}_flair.nii.gz").dataobj).astype(float)
    for label in (1, 2):
        roi = labels == label
        idx = np.argwhere(roi)
        box = tuple(slice(a, b + 1) for a, b in zip(idx.min(0), idx.max(0)))
        for width in (25, 5):
            image = bin_image(flair[box], roi[box], binWidth=width)
            assert_same(image, roi[box])
            assert_pair_matrices_same(image, roi[box])


def test_feature_classes_use_these_matrices():
    """GlioScope's feature classes run PyRadiomics' own _calculateMatrix code with these matrices."""
    from radiomics import getFeatureClasses

    from gliocore.features.binning import feature_classes

    ours = feature_classes()
    for name in ("glcm", "glrlm", "gldm", "ngtdm"):
        method = ours[name]._calculateMatrix
        assert method.__code__ is getFeatureClasses()[name]._calculateMatrix.__code__
        assert method.__globals__["cMatrices"] is tx._MATRICES
    assert ours["glszm"]._calculateMatrix is getFeatureClasses()["glszm"]._calculateMatrix
