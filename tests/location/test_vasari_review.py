"""VASARI F1, F11 and F24 as the second expert review (issue 18, points 5, 6, 12) asks.

F11: solid means enhancement without necrosis (VASARI guide); an open enhancing rim around a large
necrosis is a rim, not solid; a two-class mask (necrosis inside the non-enhancing class) does not
decide it. F24: a satellite is an enhancing focus not contiguous with the main tumour mass
(enhancing + necrotic core); fragments of one rim joined through necrosis are not satellites.
"""
from __future__ import annotations

import numpy as np
import pytest

from gliocore.imaging.atlas import make_test_atlas
from gliocore.location import vasari
from gliocore.location.describe import locate
from gliocore.location.regions import frame_in_atlas_space


@pytest.fixture(scope="module")
def tatlas():
    return make_test_atlas()


def _grid(at):
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in at.shape), indexing="ij"), -1)
    return idx @ at.affine[:3, :3].T + at.affine[:3, 3]


def _ball(xyz, centre, r):
    return ((xyz - np.asarray(centre)) ** 2).sum(-1) <= r ** 2


def _run(at, mask, necrosis=None):
    frame = frame_in_atlas_space(at, at.affine, mask.shape)
    return locate(mask, frame, spacing=abs(at.affine[0, 0]), necrosis=necrosis)


def open_rim(at):
    """An enhancing rim 4 mm thick around a 10 mm necrosis, open on one side (a real rim rarely
    closes in 3-D), inside oedema. Returns (canonical mask, necrosis mask)."""
    xyz = _grid(at)
    c = (-20.0, 0.0, 8.0)
    necrosis = _ball(xyz, c, 10.0)
    rim = _ball(xyz, c, 14.0) & ~necrosis & ~(xyz[..., 1] > c[1] + 8.0)  # open anteriorly
    oedema = _ball(xyz, c, 20.0) & ~rim & ~necrosis
    mask = np.zeros(at.shape, dtype=np.uint8)
    mask[oedema | necrosis] = 2
    mask[rim] = 1
    return mask, necrosis


def test_open_rim_around_necrosis_is_a_rim_not_solid(tatlas):
    mask, necrosis = open_rim(tatlas)
    res = _run(tatlas, mask, necrosis)
    assert res.value("vasari", "F11") in (3, 4), res.get("vasari", "F11")
    assert "solid" not in (res.label("vasari", "F11") or "")


def test_enhancement_without_necrosis_is_solid(tatlas):
    xyz = _grid(tatlas)
    mask = np.zeros(tatlas.shape, dtype=np.uint8)
    mask[_ball(xyz, (-20.0, 0.0, 8.0), 16.0)] = 2
    mask[_ball(xyz, (-20.0, 0.0, 8.0), 8.0)] = 1
    res = _run(tatlas, mask, np.zeros(tatlas.shape, dtype=bool))
    assert res.value("vasari", "F11") == 5


def test_two_class_mask_does_not_decide_solid_or_rim(tatlas):
    mask, _ = open_rim(tatlas)
    res = _run(tatlas, mask)                       # necrosis not kept apart
    f11 = res.get("vasari", "F11")
    assert f11.value is None and "necrosis" in f11.reason
    assert vasari.FEATURES["F11"][0] == "partly"
    # no enhancement is decided whatever the classes
    only_ne = np.where(mask > 0, 2, 0).astype(np.uint8)
    assert _run(tatlas, only_ne).value("vasari", "F11") == 2


def rim_in_two_fragments(at):
    """One enhancing rim cut into two fragments by a gap, both touching the same necrosis."""
    xyz = _grid(at)
    c = (-20.0, 0.0, 8.0)
    necrosis = _ball(xyz, c, 10.0)
    rim = _ball(xyz, c, 14.0) & ~necrosis & (np.abs(xyz[..., 2] - c[2]) > 3.0)  # cut at the equator
    mask = np.zeros(at.shape, dtype=np.uint8)
    mask[(_ball(xyz, c, 22.0) & ~rim) | necrosis] = 2
    mask[rim] = 1
    return mask, necrosis, xyz, c


def test_rim_fragments_joined_by_necrosis_are_not_satellites(tatlas):
    mask, necrosis, _, _ = rim_in_two_fragments(tatlas)
    res = _run(tatlas, mask, necrosis)
    assert res.value("vasari", "F24") == 1, res.get("vasari", "F24")


def test_enhancing_focus_apart_from_the_core_is_a_satellite(tatlas):
    mask, necrosis, xyz, c = rim_in_two_fragments(tatlas)
    focus = _ball(xyz, (c[0], c[1] + 19.0, c[2]), 3.0)   # in the oedema, 5 mm from the rim
    mask[focus] = 1
    res = _run(tatlas, mask, necrosis)
    assert res.value("vasari", "F24") == 2
    # two classes: several enhancing fragments in one abnormality -> not decided
    two = _run(tatlas, mask)
    assert two.value("vasari", "F24") is None and two.get("vasari", "F24").reason
    assert vasari.FEATURES["F24"][0] == "partly"


def test_single_enhancing_focus_has_no_satellites_even_with_two_classes(tatlas):
    xyz = _grid(tatlas)
    mask = np.zeros(tatlas.shape, dtype=np.uint8)
    mask[_ball(xyz, (-20.0, 0.0, 8.0), 16.0)] = 2
    mask[_ball(xyz, (-20.0, 0.0, 8.0), 8.0)] = 1
    assert _run(tatlas, mask).value("vasari", "F24") == 1


def test_f1_is_stored_with_its_region_name(tatlas):
    xyz = _grid(tatlas)
    mask = np.zeros(tatlas.shape, dtype=np.uint8)
    mask[_ball(xyz, (-16.0, 24.0, 4.0), 6.0)] = 2
    res = _run(tatlas, mask)
    assert res.label("whole_tumour", "epicentre_region") == "frontal"
    assert res.label("vasari", "F1") == "frontal"
