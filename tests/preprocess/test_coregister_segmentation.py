"""Co-registration keeps the segmentation: the issue's check on real BraTS cases.

T1, T2 and FLAIR of a BraTS case are moved by known rigid transforms (up to 15 deg and 20 mm;
``known_motion.MOTIONS``) onto other grids (FLAIR 0.9 x 0.9 x 5 mm), registered back to T1c with
:func:`gliocore.preprocess.coregister.register_rigid`, resampled onto the T1c grid and given
T1c's brain (the non-zero region, as the brain mask of the preprocessing stage would). The baseline segmenter's whole-tumour Dice against the expert label
must stay within 0.03 of its Dice on the original, untouched case.

Two cases: a lower-grade glioma with little enhancement and an enhancing glioblastoma (the
baseline leans on T1c-over-T1 enhancement and FLAIR hyperintensity, so both kinds of cue are
exercised). About a minute a case on two cores.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from known_motion import MOTIONS, SPACINGS, moved, rigid

from gliocore.preprocess.coregister import register_rigid
from gliocore.segment.baseline import segment_arrays

CASES = ["Brats18_TCIA10_628_1", "Brats18_TCIA01_201_1"]
SEQS = ("t1", "t2", "flair")


def whole_tumour_dice(arrays: dict, truth: np.ndarray, spacing) -> float:
    """Whole-tumour Dice of the baseline on four (z, y, x) arrays of one grid."""
    pred = segment_arrays(arrays["t1"], arrays["t1c"], arrays["t2"], arrays["flair"],
                          spacing=spacing, lr_axis=2) > 0
    return 2.0 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_baseline_dice_survives_known_motion_and_coregistration(shared_dir, case):
    base = next((shared_dir / "cases").glob(f"brats18-*/{case}")) / case
    images = {s: sitk.ReadImage(f"{base}_{s}.nii.gz", sitk.sitkFloat32) for s in SEQS}
    fixed = sitk.ReadImage(f"{base}_t1ce.nii.gz", sitk.sitkFloat32)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(f"{base}_seg.nii.gz")) > 0
    spacing = fixed.GetSpacing()[::-1]
    original = {s: sitk.GetArrayFromImage(im) for s, im in images.items()}
    original["t1c"] = sitk.GetArrayFromImage(fixed)
    brain = original["t1c"] > 0
    d_original = whole_tumour_dice(original, truth, spacing)

    center = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    registered = {"t1c": original["t1c"]}
    for s in SEQS:
        mov = moved(images[s], rigid(center, *MOTIONS[s]), SPACINGS[s])
        assert mov.GetSize() != fixed.GetSize()  # really on another grid
        arr = sitk.GetArrayFromImage(register_rigid(fixed, mov).image)
        registered[s] = np.where(brain, np.maximum(arr, 0.0), 0.0).astype(np.float32)
    d_registered = whole_tumour_dice(registered, truth, spacing)
    print(f"{case}: baseline whole-tumour Dice original {d_original:.3f}, "
          f"after known motion and co-registration {d_registered:.3f}")
    assert d_original > 0.5  # the check means something only where the baseline works
    assert abs(d_registered - d_original) <= 0.03, (d_original, d_registered)
