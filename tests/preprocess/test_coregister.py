"""Rigid co-registration to T1c recovers known transforms of real BraTS sequences (TRE < 1 mm)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from known_motion import MOTIONS, SPACINGS, brain_points, moved, rigid

from gliocore.preprocess.coregister import register_rigid, target_registration_error

CASE = "Brats18_TCIA10_628_1"


@pytest.mark.shared
@pytest.mark.parametrize("seq", sorted(MOTIONS))
def test_known_rigid_motion_is_recovered(shared_dir, seq):
    base = shared_dir / "cases" / "brats18-dev" / CASE / CASE
    fixed = sitk.ReadImage(f"{base}_t1ce.nii.gz", sitk.sitkFloat32)
    center = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    angles, translation = MOTIONS[seq]
    truth = rigid(center, angles, translation)
    mov = moved(sitk.ReadImage(f"{base}_{seq}.nii.gz"), truth, SPACINGS[seq])
    reg = register_rigid(fixed, mov)
    tre = target_registration_error(reg.transform, truth.GetInverse(), brain_points(fixed))
    assert tre < 1.0, f"{seq}: TRE {tre:.2f} mm"
    assert reg.mi_after > reg.mi_before
    assert reg.rotation_deg == pytest.approx(np.degrees(np.arccos(
        (np.trace(np.asarray(truth.GetMatrix()).reshape(3, 3)) - 1) / 2)), abs=1.0)
    # the moved sequence's padded field of view covers the whole brain of T1c
    cov = sitk.GetArrayFromImage(reg.coverage).astype(bool)
    assert cov[sitk.GetArrayFromImage(fixed) > 0].mean() > 0.99
