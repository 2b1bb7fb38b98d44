"""Atlas space (``--preprocess-space sri24``): registration to the template, resampling there and
label-wise back to native space, native volumes, the cache key, and segmentation in atlas space.

Synthetic and fast: a small synthetic atlas (:func:`make_test_atlas`, 2 mm) stands in for SRI24,
and the "native" scan is its reference brain moved by a known affine (rotation, scale, shift)
onto a grid of another resolution. The real-template check is in ``test_atlas_space_real.py``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gliocore.imaging.atlas import make_test_atlas
from gliocore.imaging.atlas_transform import (
    ATLAS_SPACE_FILE,
    atlas_fingerprint,
    read_atlas_transform,
)
from gliocore.imaging.io import load_volume
from gliocore.preprocess import atlas_space
from gliocore.preprocess.atlas_space import (
    array_from_sitk,
    labels_to_native,
    sitk_from_array,
    to_atlas_space,
)

pytest.importorskip("ants")

LABEL = "S1"


def known_affine(center, angles_deg=(8.0, -5.0, 10.0), scale=1.1, shift=(6.0, -4.0, 5.0)):
    """Native point -> atlas point: rotation and isotropic scale about ``center``, then a shift."""
    t = sitk.AffineTransform(3)
    rot = sitk.Euler3DTransform(center, *np.radians(angles_deg))
    t.SetCenter(center)
    t.SetMatrix(tuple((np.asarray(rot.GetMatrix()).reshape(3, 3) / scale).ravel()))
    t.SetTranslation(shift)
    return t


def native_grid(spacing=(1.5, 1.5, 2.5), size=(100, 110, 56), origin=(-70.0, -85.0, -65.0)):
    img = sitk.Image(size, sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


@pytest.fixture(scope="module")
def atlas():
    """The synthetic atlas at a head-like size, its reference brain given inner structure (lobes,
    deep nuclei, ventricles: an ellipsoid alone barely fixes rotations)."""
    base = make_test_atlas(shape=(64, 76, 56), spacing=2.0)
    gain = {"frontal": 0.4, "occipital": -0.3, "temporal": 0.2, "thalamus": 0.5,
            "ventricles": -0.8, "corpus_callosum": 0.6, "brainstem": 0.3}
    ref = base.reference * (1.0 + sum(g * base.region_mask(k) for k, g in gain.items()))
    return dataclasses.replace(base, reference=ref.astype(np.float32))


@pytest.fixture(scope="module")
def native_scan(atlas, tmp_path_factory):
    """A preprocessed native scan: the atlas brain moved by :func:`known_affine` onto another grid,
    the four sequences made of it with different contrasts, and its brain mask."""
    out = tmp_path_factory.mktemp("native")
    ref = atlas_space.atlas_image(atlas)
    grid = native_grid()
    centre = ref.TransformContinuousIndexToPhysicalPoint([s / 2 for s in ref.GetSize()])
    truth = known_affine(centre)
    brain = sitk.Resample(ref, grid, truth, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    files = {}
    for seq, gain in (("t1", 1.0), ("t1c", 1.3), ("t2", -0.6), ("flair", 0.8)):
        arr = sitk.GetArrayFromImage(brain)
        img = sitk.GetImageFromArray(np.where(arr > 0.05, 2.0 + gain * arr, 0.0).astype(np.float32))
        img.CopyInformation(grid)
        files[seq] = out / f"{LABEL}_{seq}.nii.gz"
        sitk.WriteImage(img, str(files[seq]))
    mask = sitk.Cast(brain > 0.5, sitk.sitkUInt8)
    files["brainmask"] = out / f"{LABEL}_brainmask.nii.gz"
    sitk.WriteImage(mask, str(files["brainmask"]))
    return {"dir": out, "files": files, "truth": truth, "grid": grid}


@pytest.fixture(scope="module")
def registered(native_scan, atlas):
    return to_atlas_space(native_scan["files"], native_scan["dir"], LABEL, key="k1", atlas=atlas)


def brain_points(grid, mask_file, n=200, seed=0):
    arr = array_from_sitk(sitk.ReadImage(str(mask_file)))
    idx = np.argwhere(arr > 0)
    idx = idx[np.random.default_rng(seed).choice(len(idx), n, replace=False)]
    return [grid.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in idx]


def test_registration_recovers_a_known_affine(native_scan, registered, atlas):
    inverse = sitk.ReadTransform(str(registered.inverse))
    truth = native_scan["truth"]
    pts = brain_points(native_scan["grid"], native_scan["files"]["brainmask"])
    err = [np.linalg.norm(np.subtract(inverse.TransformPoint(p), truth.TransformPoint(p)))
           for p in pts]
    print(f"landmark error {np.mean(err):.2f} mm (max {np.max(err):.2f}), brain Dice "
          f"{registered.brain_dice:.3f}, Jacobian {registered.jacobian:.3f} (known "
          f"{1.1 ** -3:.3f})")
    assert np.mean(err) < 2.0, f"landmark error {np.mean(err):.2f} mm (2 mm registration grid)"
    assert registered.brain_dice > 0.9
    # the Jacobian is the known scale's: atlas volume = native volume * det = native / 1.1^3
    assert registered.jacobian == pytest.approx(1.1 ** -3, rel=0.05)


def test_outputs_lie_on_the_atlas_grid_with_both_transforms_kept(registered, native_scan, atlas):
    rec = read_atlas_transform(native_scan["dir"])
    assert rec == registered
    assert (native_scan["dir"] / ATLAS_SPACE_FILE).is_file()
    assert rec.forward.suffix == ".mat" and rec.inverse.suffix == ".tfm"
    for seq in ("t1", "t1c", "t2", "flair", "brainmask"):
        vol = load_volume(rec.images[seq])
        assert vol.shape == atlas.shape and np.allclose(vol.affine, atlas.affine, atol=1e-4)
        assert (vol.data >= 0).all()
    # the forward and the inverse files are each other's inverse
    fwd, inv = sitk.ReadTransform(str(rec.forward)), sitk.ReadTransform(str(rec.inverse))
    p = (3.0, -7.0, 11.0)
    assert np.allclose(inv.TransformPoint(fwd.TransformPoint(p)), p, atol=1e-3)


def blob(shape, centre, radius):
    idx = np.indices(shape)
    return sum((idx[a] - centre[a]) ** 2 for a in range(3)) <= radius ** 2


def test_label_mask_round_trip_native_atlas_native(registered, native_scan, atlas):
    """A two-label tumour in native space, taken to the atlas (nearest) and back (label-wise):
    Dice close to 1, and its volume preserved both ways (Jacobian on the way in)."""
    grid = native_scan["grid"]
    shape = tuple(grid.GetSize())
    native_affine = np.asarray(load_volume(native_scan["files"]["t1"]).affine)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[blob(shape, (50, 60, 28), 14)] = 2
    mask[blob(shape, (50, 60, 28), 7)] = 1
    fwd = sitk.ReadTransform(str(registered.forward))
    on_atlas = array_from_sitk(atlas_space.to_atlas_grid(sitk_from_array(mask, native_affine),
                                                         fwd, atlas, label=True))
    back = labels_to_native(on_atlas, atlas.affine, sitk.ReadTransform(str(registered.inverse)),
                            shape, native_affine)
    native_vox = float(np.prod(grid.GetSpacing()))
    atlas_vox = float(abs(np.linalg.det(atlas.affine[:3, :3])))
    for lab in (1, 2):
        a, b = mask == lab, back == lab
        print(f"label {lab}: Dice {2 * (a & b).sum() / (a.sum() + b.sum()):.3f}, native "
              f"{a.sum() * native_vox:.0f} -> back {b.sum() * native_vox:.0f} mm3, SRI24 / "
              f"Jacobian {(on_atlas == lab).sum() * atlas_vox / registered.jacobian:.0f} mm3")
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, lab
        assert b.sum() == pytest.approx(a.sum(), rel=0.05)
        # the atlas-space volume divided by the Jacobian is the native volume
        assert (on_atlas == lab).sum() * atlas_vox / registered.jacobian == \
            pytest.approx(a.sum() * native_vox, rel=0.1)
    whole = mask > 0
    assert 2 * (whole & (back > 0)).sum() / (whole.sum() + (back > 0).sum()) > 0.95


def test_labels_to_native_of_an_empty_mask_is_empty(atlas, native_scan):
    out = labels_to_native(np.zeros(atlas.shape, np.uint8), atlas.affine, sitk.AffineTransform(3),
                           (5, 6, 7), np.eye(4))
    assert out.shape == (5, 6, 7) and not out.any()


class ThresholdSegmenter:
    """Duck-typed segmenter: label 1 where T1c is bright, on whatever grid it is given."""

    def __init__(self):
        self.seen = []

    def segment(self, subject, images):
        self.seen.append((subject, {s: v.shape for s, v in images.items()}))
        t1c = images["t1c"].data
        return (t1c > 0.5 * t1c.max()).astype(np.uint8)


def test_segmentation_runs_in_atlas_space_and_its_mask_comes_back_native(registered, native_scan,
                                                                         atlas):
    from gliocore.cohort.subjects import Scan
    files = native_scan["files"]
    scan = Scan(LABEL, {s: files[s] for s in ("t1", "t1c", "t2", "flair")}, native_scan["dir"])
    images = {s: load_volume(files[s]) for s in ("t1", "t1c", "t2", "flair")}
    seg = ThresholdSegmenter()
    mask = atlas_space.segment_in_atlas_space(seg, scan, images)
    got_scan, shapes = seg.seen[0]
    assert set(shapes.values()) == {atlas.shape}                 # the segmenter saw the atlas grid
    assert got_scan.path("t1c") == registered.images["t1c"]      # file-reading backends too
    assert mask.shape == images["t1c"].shape                     # the mask is native
    direct = ThresholdSegmenter().segment(scan, images)
    assert 2 * (mask & direct).sum() / (mask.sum() + direct.sum()) > 0.85
    # without an atlas transform the segmenter sees the native images unchanged
    bare = Scan(LABEL, scan.sequences, native_scan["dir"] / "elsewhere")
    seg2 = ThresholdSegmenter()
    assert np.array_equal(atlas_space.segment_in_atlas_space(seg2, bare, images), direct)


def test_fingerprint_marks_atlas_space_scans_only(registered, native_scan, tmp_path):
    assert atlas_fingerprint(tmp_path) == ""
    assert atlas_fingerprint(native_scan["dir"]) == registered.fingerprint != ""
    # a record whose files went missing is ignored (the scan is native-only again)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ATLAS_SPACE_FILE).write_text((native_scan["dir"] / ATLAS_SPACE_FILE).read_text())
    assert read_atlas_transform(broken) is None


def test_the_space_option_is_part_of_the_preprocessing_cache_key(monkeypatch):
    from gliocore.preprocess import scan as scan_mod
    from gliocore.preprocess.scan import PreprocessOptions, cache_key
    monkeypatch.setattr(scan_mod, "weights_sha256", lambda backend, folds: "w")
    hashes = {"t1": "a", "t1c": "b", "t2": "c", "flair": "d"}
    native = cache_key(hashes, PreprocessOptions(brain_backend="deepbet"))
    assert cache_key(hashes, PreprocessOptions(brain_backend="deepbet", space="native")) == native
    assert cache_key(hashes, PreprocessOptions(brain_backend="deepbet", space="sri24")) != native
    with pytest.raises(ValueError, match="space"):
        PreprocessOptions(space="mni")


def test_the_preprocessing_step_records_the_atlas_space_and_reads_it_back(native_scan, atlas,
                                                                         tmp_path, monkeypatch):
    """``preprocess_scan``'s atlas step (here with the synthetic atlas) adds the SRI24 outputs,
    both transforms, the time and the quality to the result, which the cache reads back."""
    import functools
    import json
    import shutil
    from dataclasses import asdict

    from gliocore.preprocess import scan as scan_mod
    out = tmp_path / "scan"
    out.mkdir()
    outputs = {k: str(shutil.copy(v, out / Path(v).name)) for k, v in native_scan["files"].items()}
    res = scan_mod.PreprocessResult(scan_label=LABEL, key="k2", outputs=outputs)
    monkeypatch.setattr(scan_mod, "to_atlas_space",
                        functools.partial(scan_mod.to_atlas_space, atlas=atlas))
    scan_mod._atlas_step(res, out, LABEL)
    assert res.atlas["space"] == "test" and res.atlas["brain_dice"] > 0.9 and not res.flags
    assert res.seconds["atlas"] > 0
    for k in ("test_t1", "test_t1c", "test_t2", "test_flair", "test_brainmask", "to_test",
              "from_test"):
        assert Path(res.outputs[k]).is_file(), k
    (out / scan_mod.CACHE_FILE).write_text(json.dumps(asdict(res)))
    again = scan_mod.load_cached(out, "k2")
    assert again is not None and again.atlas == res.atlas and again.cached
    assert read_atlas_transform(out).key == "k2"


def test_the_cli_passes_the_preprocess_space_to_the_stage(tmp_path, monkeypatch):
    """``process --preprocess-space sri24`` reaches PreprocessOptions (``--space`` stays the
    location stage's flag)."""
    from gliocore import cli
    from gliocore.pipeline import prepare
    from gliocore.settings import Settings

    seen = {}

    def fake_prepare(*a, options=None, **k):
        seen["options"] = options
        return prepare.PreparedCohort(scans_csv=tmp_path / "scans.csv")

    monkeypatch.setattr(prepare, "prepare_cohort", fake_prepare)
    csv = tmp_path / "clinical.csv"
    csv.write_text("SUBJECT ID\nS1\n")
    args = cli.build_parser().parse_args(["process", "--csv", str(csv), "--preprocess", "on",
                                          "--preprocess-space", "sri24", "--space", "auto",
                                          "--brain-model", "deepbet"])
    cli._preprocess_from_args(args, Settings(data_dir=tmp_path))
    assert seen["options"].space == "sri24" and args.space == "auto"
    args = cli.build_parser().parse_args(["process", "--csv", str(csv), "--preprocess", "on"])
    cli._preprocess_from_args(args, Settings(data_dir=tmp_path))
    assert seen["options"].space == "native"
