"""Input checks for the deep-learning segmenters (HD-GLIO, nnU-Net).

HD-GLIO and most BraTS-trained nnU-Net models expect images prepared in one particular way,
and give poor masks, without any error, when they are not:

1. **Skull-stripped**, with every non-brain voxel exactly 0 (HD-GLIO's README: "the non-brain
   region being 0"). The route its authors use is HD-BET (https://github.com/MIC-DKFZ/HD-BET):
   ``hd-bet -i t1.nii.gz -o t1_bet.nii.gz``, then apply the same brain mask to all four
   sequences.
2. **Co-registered** to one sequence (usually T1c or T1) and **resampled onto one grid**, e.g.
   with ANTs (``antsRegistrationSyNQuick.sh -t r``) or FSL FLIRT (6 DOF), so that the voxel
   arrays line up.
3. In a near-standard orientation (RAS, as ``fslreorient2std`` / ``nibabel.as_closest_canonical``
   give) with roughly 1 mm voxels; the networks resample internally, but thick or
   very anisotropic slices degrade the result.

GlioScope does not do this preparation itself. :func:`check_dl_inputs` looks for the
tell-tale signs that it was not done and returns one clearly worded warning per problem; the
backends issue them as :class:`DLInputWarning` and keep going.
"""
from __future__ import annotations

import warnings
from typing import Mapping, MutableMapping

import nibabel as nib
import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import GlioWarning
from gliocore.imaging.volume import AFFINE_ATOL, Volume
from gliocore.segment.qc import dice
from gliocore.types import SEQUENCES

#: Fraction of the volume's outer shell that may be non-zero in a skull-stripped image.
BORDER_NONZERO_MAX = 0.02
#: Minimum Dice between the sequences' non-zero (brain) masks before they count as different.
BRAIN_MASK_DICE_MIN = 0.9
#: Voxel sizes (mm) outside this range are unusual for HD-GLIO / BraTS-style models.
SPACING_RANGE_MM = (0.4, 2.5)
#: Largest ratio between the coarsest and finest voxel size before a warning.
MAX_ANISOTROPY = 3.0
#: Largest angle (degrees) between a voxel axis and the nearest world axis.
MAX_OBLIQUE_DEG = 15.0

PREPARATION_HINT = ("skull-strip with HD-BET and co-register all sequences to one grid "
                    "before segmenting (see gliocore.segment.checks)")


class DLInputWarning(GlioWarning):
    """An input to a deep-learning segmenter looks unprepared (the subject is still segmented)."""


def _border_nonzero_fraction(data: np.ndarray, width: int = 2) -> float:
    w = max(1, min(width, *(s // 4 for s in data.shape)))
    shell = np.ones(data.shape, dtype=bool)
    shell[w:-w, w:-w, w:-w] = False
    return float(np.count_nonzero(data[shell])) / max(1, int(shell.sum()))


def check_dl_inputs(subject: Subject | str, images: Mapping[str, Volume]) -> list[str]:
    """Look for signs that a subject's images were not prepared for HD-GLIO / nnU-Net.

    Checks, in order: all four sequences present; one grid (shape and affine); background
    exactly zero (skull-stripped) and the same brain mask in every sequence; orientation close
    to RAS; voxel sizes in a usual range and not too anisotropic.

    Parameters
    ----------
    subject : Subject or str
        The subject (or its ID), named in every message.
    images : mapping of sequence -> Volume

    Returns
    -------
    list of str
        One human-readable warning per problem found; empty when the inputs look prepared.
    """
    sid = subject.subject_id if isinstance(subject, Subject) else str(subject)
    out: list[str] = []
    missing = [s for s in SEQUENCES if s not in images]
    if missing:
        out.append(f"subject {sid}: sequence(s) {', '.join(missing)} missing; HD-GLIO needs T1, "
                   "T1c, T2 and FLAIR")
    present = [s for s in SEQUENCES if s in images]
    if not present:
        return out
    same_grid = _grid_warnings(sid, images, present, out)
    _skull_warnings(sid, images, present, same_grid, out)
    _orientation_warnings(sid, images[present[0]], out)
    _spacing_warnings(sid, images[present[0]], out)
    return out


def _grid_warnings(sid: str, images: Mapping[str, Volume], present: list[str],
                   out: list[str]) -> bool:
    """One grid: shape and affine of every sequence against the first; whether they agree."""
    ref_name = present[0]
    ref = images[ref_name]
    same_grid = True
    for seq in present[1:]:
        vol = images[seq]
        if vol.shape != ref.shape:
            same_grid = False
            out.append(f"subject {sid}: {seq} has shape {vol.shape} but {ref_name} has "
                       f"{ref.shape}; the sequences are not on one grid: co-register and "
                       "resample them to one reference image")
        elif not np.allclose(vol.affine, ref.affine, atol=AFFINE_ATOL):
            same_grid = False
            out.append(f"subject {sid}: {seq} affine differs from {ref_name} by up to "
                       f"{np.abs(vol.affine - ref.affine).max():.3g} mm; the sequences are not "
                       "on one grid: co-register and resample them to one reference image")
    return same_grid


def _skull_warnings(sid: str, images: Mapping[str, Volume], present: list[str], same_grid: bool,
                    out: list[str]) -> None:
    """Skull stripping: zero background, and one brain mask in every sequence."""
    not_stripped = []
    for seq in present:
        frac = _border_nonzero_fraction(images[seq].data)
        if frac > BORDER_NONZERO_MAX:
            not_stripped.append(f"{seq} ({frac:.0%} of the outer border non-zero)")
    if not_stripped:
        out.append(f"subject {sid}: background is not zero in {', '.join(not_stripped)}; the "
                   "images look not skull-stripped. HD-GLIO needs brain-extracted input with "
                   "non-brain voxels exactly 0: run HD-BET and apply its mask to all sequences")
    elif same_grid and len(present) > 1:
        ref_name = present[0]
        masks = {seq: images[seq].data != 0 for seq in present}
        worst = min(((seq, dice(masks[ref_name], masks[seq])) for seq in present[1:]),
                    key=lambda t: t[1])
        if worst[1] < BRAIN_MASK_DICE_MIN:
            out.append(f"subject {sid}: the non-zero (brain) region of {worst[0]} overlaps that "
                       f"of {ref_name} with Dice {worst[1]:.2f}; apply one brain mask to all "
                       "sequences after co-registration")


def _orientation_warnings(sid: str, ref: Volume, out: list[str]) -> None:
    """Orientation close to RAS and not oblique."""
    aff = np.asarray(ref.affine, dtype=float)
    codes = nib.aff2axcodes(aff)
    if codes != ("R", "A", "S"):
        permuted = not (codes[0] in "RL" and codes[1] in "AP" and codes[2] in "SI")
        how = ("axes are permuted relative to RAS (e.g. a sagittal or coronal stack)"
               if permuted else "axes are flipped relative to RAS")
        out.append(f"subject {sid}: voxel orientation is {''.join(codes)}, not RAS; {how}. "
                   "Reorient to the standard orientation first (fslreorient2std or "
                   "nibabel.as_closest_canonical) so the network sees the anatomy as in training")
    cosines = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    angle = float(np.degrees(np.arccos(np.clip(np.abs(cosines).max(axis=0).min(), -1, 1))))
    if angle > MAX_OBLIQUE_DEG:
        out.append(f"subject {sid}: the voxel grid is oblique ({angle:.0f} degrees from the "
                   "nearest world axis); resample to an axis-aligned (e.g. MNI/SRI-24-like) grid")


def _spacing_warnings(sid: str, ref: Volume, out: list[str]) -> None:
    """Voxel sizes in a usual range and not too anisotropic."""
    spacing = ref.spacing
    lo, hi = SPACING_RANGE_MM
    text = " x ".join(f"{s:.2g}" for s in spacing)
    if min(spacing) < lo or max(spacing) > hi:
        out.append(f"subject {sid}: voxel size {text} mm is outside the usual {lo}-{hi} mm; "
                   "HD-GLIO was trained on images resampled to about 1 mm, so check the header "
                   "or resample to 1 mm isotropic")
    elif max(spacing) / min(spacing) > MAX_ANISOTROPY:
        out.append(f"subject {sid}: voxel size {text} mm is strongly anisotropic (thick "
                   "slices); results on thick-slice images are less reliable")


def record_input_warnings(subject: Subject, images: Mapping[str, Volume],
                          sink: MutableMapping[str, list[str]]) -> list[str]:
    """Run :func:`check_dl_inputs`, keep the messages in ``sink[subject_id]`` (a backend's
    ``input_warnings_``, stored with its result) and emit each as a :class:`DLInputWarning`."""
    messages = check_dl_inputs(subject, images)
    sink[subject.subject_id] = messages
    for msg in messages:
        warnings.warn(msg, DLInputWarning, stacklevel=3)
    return messages
