"""gliocore.features.binning: PyRadiomics' discretisation, same values, shared between feature classes."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import getFeatureClasses, imageoperations

from gliocore.features import binning


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
@pytest.mark.parametrize("settings", [{}, {"binWidth": 7}, {"binWidth": 0.37}, {"binCount": 16}],
                         ids=["default", "w7", "w0.37", "count16"])
def test_bin_image_matches_pyradiomics(rng, dtype, settings):
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(3, 12, 3))
        matrix = (rng.normal(0, 1, shape) * rng.uniform(1, 500) + rng.uniform(-300, 300)).astype(dtype)
        roi = rng.random(shape) > 0.5
        roi.flat[0] = True
        want, _ = imageoperations.binImage(matrix, roi, **settings)
        got = binning.bin_image(matrix, roi, **settings)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    flat = np.full((4, 4, 4), 50, dtype=dtype)  # flat region: one bin
    roi = np.ones(flat.shape, bool)
    assert np.array_equal(binning.bin_image(flat, roi, **settings),
                          imageoperations.binImage(flat, roi, **settings)[0])


def test_scope_shares_only_equal_inputs(rng):
    """Inside one scope, classes on the same image/ROI share bins; another ROI is binned anew."""
    image = sitk.GetImageFromArray(rng.normal(300, 80, (12, 14, 10)).astype(np.float32))
    arr = np.zeros((12, 14, 10), np.uint8)
    arr[2:9, 3:10, 2:8] = 1
    arr[5:11, 1:6, 1:5] = 2
    mask = sitk.GetImageFromArray(arr)
    ours, theirs = binning.feature_classes(), getFeatureClasses()
    with binning.binning_scope():
        for label in (1, 2, 1):
            for name in ("firstorder", "glcm", "glszm", "ngtdm"):
                a = ours[name](image, mask, label=label, binWidth=10)
                b = theirs[name](image, mask, label=label, binWidth=10)
                assert a.execute() == b.execute(), (name, label)
