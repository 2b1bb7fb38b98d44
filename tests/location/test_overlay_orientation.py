"""The Viewer's atlas overlay is drawn from the same region map, in the same orientation, as the
location numbers, whatever the voxel order of an atlas-space subject (issue 18, point 11)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from gliocore.analysis.plots import to_ras
from gliocore.imaging.atlas import make_test_atlas
from gliocore.location.localise import DISPLAY_REGIONS, subject_region_labels
from gliocore.location.regions import frame_in_atlas_space


@pytest.fixture(scope="module")
def tatlas():
    return make_test_atlas()


def _orders(at):
    """The atlas grid in its own voxel order, and the same anatomy in RAS voxel order."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = at.shape[0] - 1, at.shape[1] - 1
    return {"atlas order": at.affine, "RAS order": at.affine @ flip}


@pytest.mark.parametrize("order", ["atlas order", "RAS order"])
def test_overlay_matches_the_regions_of_the_numbers(tatlas, tmp_path, order):
    affine = _orders(tatlas)[order]
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(tatlas.shape, np.uint8), affine), path)
    labels = subject_region_labels(tatlas, "atlas", str(path))
    frame = frame_in_atlas_space(tatlas, affine, tatlas.shape)
    idx = np.argwhere(np.ones(tatlas.shape, bool))
    bits = frame.bits_at(idx).reshape(tatlas.shape)
    for n, key in enumerate(DISPLAY_REGIONS, start=1):
        if key not in tatlas.regions:
            continue
        in_numbers = (bits >> np.uint16(tatlas.regions.index(key)) & 1).astype(bool)
        drawn = labels == n
        assert drawn.any() or not in_numbers.any(), key
        assert in_numbers[drawn].all(), f"{key}: overlay voxels outside the region ({order})"


def test_both_voxel_orders_look_the_same_on_screen(tatlas, tmp_path):
    shown = []
    for order, affine in _orders(tatlas).items():
        path = tmp_path / f"{order.replace(' ', '_')}.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(tatlas.shape, np.uint8), affine), path)
        shown.append(to_ras(subject_region_labels(tatlas, "atlas", str(path)), affine)[0])
    assert np.array_equal(shown[0], shown[1])
