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


@pytest.mark.shared
def test_a_thick_slab_flair_that_misses_part_of_the_brain_is_flagged(shared_dir):
    """A FLAIR slab of 50 mm (as acquired on some scanners): its field of view, carried onto the
    T1c grid by the transform, covers only part of the brain; the scan is flagged, the rest of
    FLAIR is zero."""
    from gliocore.preprocess.coregister import field_of_view
    from gliocore.preprocess.scan import PreprocessResult, _flag, brain_coverage
    base = shared_dir / "cases" / "brats18-dev" / CASE / CASE
    fixed = sitk.ReadImage(f"{base}_t1ce.nii.gz", sitk.sitkFloat32)
    center = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    truth = rigid(center, *MOTIONS["flair"])  # moved(y) = flair(truth(y)): fixed-to-moving = inverse
    full = moved(sitk.ReadImage(f"{base}_flair.nii.gz"), truth, SPACINGS["flair"])
    brain = sitk.GetArrayFromImage(fixed) > 0
    assert brain_coverage(field_of_view(fixed, full, truth.GetInverse()), brain) > 0.99
    mid = full.GetSize()[2] // 2
    slab = full[:, :, mid - 5:mid + 5]  # 10 slices of 5 mm
    cov = brain_coverage(field_of_view(fixed, slab, truth.GetInverse()), brain)
    assert 0.2 < cov < 0.6, cov
    res = PreprocessResult("S", "k", {}, coverage={"flair": cov}, brain_ml=1200.0)
    _flag(res)
    assert res.flags == [f"flair: field of view covers {cov:.0%} of the brain; the rest is zero "
                         "in flair (see flair_fov)"]
