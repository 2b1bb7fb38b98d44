"""QC pictures of a preprocessed scan: the slices the stage keeps, and the panels drawn from them.

The stage runs once on the skull-bearing phantom (tests/preprocess/phantom.py) with the
``threshold`` brain method (no model weights needed), about half a minute on 2 cores.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phantom import phantom_scan

from gliocore.preprocess import qc
from gliocore.preprocess.scan import PreprocessOptions, preprocess_scan

OPTIONS = PreprocessOptions(brain_backend="threshold")


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "P1"
    images = phantom_scan(seed=1)
    res = preprocess_scan(images, out, "P1", {s: f"phantom-{s}" for s in images}, OPTIONS)
    assert not res.flags, res.flags
    return out


def test_stage_keeps_small_qc_slices_beside_its_record(scan_dir):
    scan = qc.read_scan_qc(scan_dir)
    assert scan is not None and scan.slices is not None
    assert scan.result["outputs"]["qc"] == str(scan_dir / qc.QC_FILE)
    assert (scan_dir / qc.QC_FILE).stat().st_size < 1_000_000
    # T1c is 56 x 64 x 50 voxels of 3 mm (LPS): axial slices are 64 x 56, coronal/sagittal 50 rows
    assert scan.slices.get("axial", "t1c").shape == (64, 56)
    assert scan.slices.get("coronal", "flair").shape == (50, 56)
    assert scan.slices.get("sagittal", "t2_before").shape == (50, 64)
    for plane in qc.PLANES:
        mask = scan.slices.get(plane, "mask") > 0
        assert 0.2 < mask.mean() < 0.8, (plane, mask.mean())  # through the brain's centre
        assert scan.slices.pixel_aspect(plane) == 1.0


def _corr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.corrcoef(a[where], b[where])[0, 1])


def test_slices_show_what_each_step_did(scan_dir):
    """After registration T1 agrees with T1c better than in scanner coordinates; after N4 the
    phantom's smooth bias (a left-right ramp) is gone from T1c's brain."""
    s = qc.read_scan_qc(scan_dir).slices
    for plane in qc.PLANES:
        mask = s.get(plane, "mask") > 0
        t1c = s.get(plane, "t1c")
        assert _corr(t1c, s.get(plane, "t1"), mask) > _corr(t1c, s.get(plane, "t1_unregistered"),
                                                             mask) + 0.05
    mask = s.get("axial", "mask") > 0
    cols = np.nonzero(mask.any(axis=0))[0]
    left, right = mask.copy(), mask.copy()
    left[:, cols.mean().astype(int):] = False
    right[:, :cols.mean().astype(int)] = False

    def ramp(img):
        return abs(float(img[left].mean() / img[right].mean()) - 1)

    before, after = s.get("axial", "t1c_before"), s.get("axial", "t1c")
    assert ramp(before) > 0.1 and ramp(after) < ramp(before) / 2, (ramp(before), ramp(after))


def test_panels_per_step(scan_dir):
    s = qc.read_scan_qc(scan_dir).slices
    brain = qc.qc_panels(s, "brain", "axial")
    assert [t for t, _ in brain] == ["Brain mask on T1c (as acquired)",
                                     "Brain mask on T1c (after N4)"]
    rgb = brain[0][1]
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 56, 3)
    green = np.all(rgb == qc.MASK_COLOUR, axis=-1)
    assert green.sum() == qc.outline(s.get("axial", "mask") > 0).sum()
    reg = qc.qc_panels(s, "registration", "coronal")
    assert [t for t, _ in reg] == ["T1 / T1c, before", "T1 / T1c, after", "T2 / T1c, before",
                                   "T2 / T1c, after", "FLAIR / T1c, before", "FLAIR / T1c, after"]
    bias = qc.qc_panels(s, "bias", "sagittal")
    assert len(bias) == 12 and bias[2][0] == "T1c field"
    field = bias[2][1][..., 0]
    assert field[s.get("sagittal", "mask") > 0].std() > 5  # the ramp removed shows as a gradient
    with pytest.raises(ValueError, match="unknown QC step"):
        qc.qc_panels(s, "skull", "axial")


def test_cached_run_keeps_the_qc_output(scan_dir):
    images = phantom_scan(seed=1)
    again = preprocess_scan(images, scan_dir, "P1", {s: f"phantom-{s}" for s in images}, OPTIONS)
    assert again.cached and again.outputs["qc"] == str(scan_dir / qc.QC_FILE)


def test_checkerboard_and_outline():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 255, np.uint8)
    board = qc.checkerboard(a, b, tiles=4)  # 4 x 4 tiles of 4 pixels
    assert board[0, 0, 0] == 0 and board[0, 4, 0] == 255 and board[4, 0, 0] == 255
    assert board[4, 4, 0] == 0 and (board[..., 0] == 255).sum() == 128
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    edge = qc.outline(m)
    assert edge.sum() == 16 and not edge[3, 3] and edge[1, 3]


def test_unpreprocessed_folder_has_no_qc(tmp_path):
    assert qc.read_scan_qc(tmp_path) is None
    (tmp_path / "preprocess.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable preprocessing record"):
        qc.read_scan_qc(tmp_path)


def test_large_grids_are_subsampled_and_spacing_follows():
    """A 500 x 300 x 12 T1c (0.5 mm in-plane): slices of at most 256 pixels, pixel size scaled."""
    import SimpleITK as sitk
    arr = np.random.default_rng(0).random((12, 300, 500)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.5, 5.0))
    mask = sitk.Cast(img > 0.3, sitk.sitkUInt8)
    seqs = {s: img for s in ("t1", "t1c", "t2", "flair")}
    tfms = {s: sitk.Transform() for s in qc.MOVING}
    cover = {s: mask for s in qc.MOVING}
    slices = qc.qc_slices(seqs, seqs, tfms, mask, cover)
    assert slices["axial.t1c"].shape == (150, 250) and slices["axial.mask"].shape == (150, 250)
    assert slices["coronal.flair"].shape == (12, 250)
    assert list(slices["axial.pixel_mm"]) == [1.0, 1.0]
    assert list(slices["coronal.pixel_mm"]) == [5.0, 1.0]
    assert slices["axial.t1c"].dtype == np.float16 and slices["axial.t1_fov"].dtype == np.uint8
