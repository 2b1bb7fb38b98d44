"""gliocore.features.laplacian: LoG on a box equals SimpleITK's LaplacianRecursiveGaussian there, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from gliocore.features.laplacian import log_images, log_on_box


def full_log(image: sitk.Image, sigma: float) -> sitk.Image:
    f = sitk.LaplacianRecursiveGaussianImageFilter()
    f.SetNormalizeAcrossScale(True)
    f.SetSigma(sigma)
    return f.Execute(image)


def assert_box_identical(image: sitk.Image, sigma: float, lower, upper) -> None:
    ref = full_log(image, sigma)
    got = log_on_box(image, sigma, lower, upper)
    size = [int(h - l + 1) for l, h in zip(lower, upper)]
    expected = sitk.RegionOfInterest(ref, size, [int(v) for v in lower])
    assert got.GetPixelID() == expected.GetPixelID()
    assert got.GetSize() == expected.GetSize()
    assert got.GetOrigin() == expected.GetOrigin()
    assert got.GetSpacing() == expected.GetSpacing()
    assert got.GetDirection() == expected.GetDirection()
    a, b = sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))  # same bits, -0.0 included


def make_image(rng: np.random.Generator, shape, dtype, spacing=(0.9, 1.1, 2.5)) -> sitk.Image:
    grid = np.indices(shape).sum(0)
    arr = rng.normal(300, 80, shape) + 4 * grid
    arr[tuple(s // 2 for s in shape)] += 2000  # a bright spot: large second derivatives
    image = sitk.GetImageFromArray(arr.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((12.5, -40.0, 3.25))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_box_identical_to_whole_image_filter(rng, dtype, sigma):
    image = make_image(rng, (14, 17, 19), dtype)
    size = np.array(image.GetSize())
    for _ in range(3):
        lower = np.array([rng.integers(0, s) for s in size])
        upper = np.array([rng.integers(lo, s) for lo, s in zip(lower, size)])
        assert_box_identical(image, sigma, lower, upper)


def test_whole_image_and_single_voxel_boxes(rng):
    image = make_image(rng, (9, 10, 11), np.int16, spacing=(1.0, 1.0, 1.0))
    size = np.array(image.GetSize())
    assert_box_identical(image, 1.0, [0, 0, 0], size - 1)
    assert_box_identical(image, 1.0, [4, 0, 8], [4, 0, 8])
    assert_box_identical(image, 2.0, size - 1, size - 1)


def test_log_images_follows_pyradiomics_checks_and_names(rng):
    from radiomics import imageoperations

    image = make_image(rng, (12, 12, 12), np.int16)
    mask = sitk.GetImageFromArray(np.ones((12, 12, 12), np.uint8))
    mask.CopyInformation(image)
    kwargs = {"sigma": [1.0, 0.0, -1.0, 2.5, 30.0], "binWidth": 25}
    ours = list(log_images(image, [0, 0, 0], [11, 11, 11], **kwargs))
    theirs = list(imageoperations.getLoGImage(image, mask, **kwargs))
    assert [n for _, n, _ in ours] == [n for _, n, _ in theirs] == ["log-sigma-1-0-mm-3D",
                                                                      "log-sigma-2-5-mm-3D"]
    for (a, _, ka), (b, _, kb) in zip(ours, theirs):
        assert ka == kb
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    tiny = make_image(rng, (3, 12, 12), np.int16)
    assert list(log_images(tiny, [0, 0, 0], [11, 11, 2], sigma=[1.0])) == []


@pytest.mark.shared
@pytest.mark.slow
def test_real_flair_tumour_box(shared_dir):
    """A large real tumour's box inside a real FLAIR, sigma 1 and 3 mm (the benchmark's LoG)."""
    name = "Brats18_TCIA01_378_1"
    image = sitk.ReadImage(str(shared_dir / "cases" / "brats18-dev" / name / f"{name}_flair.nii.gz"))
    for sigma in (1.0, 3.0):
        assert_box_identical(image, sigma, [54, 100, 57], [124, 196, 128])
