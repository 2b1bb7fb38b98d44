"""Atlas space (``--preprocess-space sri24``): a scan's brain registered to SRI24 and back.

After brain extraction the scan's T1c brain is registered *affinely* to the SRI24 reference brain
(the MNI152 T1 brain resampled to SRI24 that :func:`gliocore.imaging.atlas.load_atlas` reads) with
ANTs: both images resampled to :data:`RESOLUTION_MM` first, then three levels
(:data:`SHRINK`, :data:`SMOOTHING`, :data:`ITERATIONS`), Mattes mutual information, centre-of-mass
initialisation, a fixed seed and :data:`THREADS` ITK threads. The four sequences (linear, brain
mask applied) and the brain mask (nearest) are resampled onto the 240 x 240 x 155, 1 mm BraTS grid
and written with the transforms beside the scan's native outputs
(:mod:`gliocore.imaging.atlas_transform` describes the files).

Segmentation then runs on the SRI24 images (:func:`segment_in_atlas_space`); its mask is taken
back to the native T1c grid label-wise (each label's indicator resampled linearly with the
inverse transform, then the most likely label per voxel: smoother than nearest neighbour when the
native grid is finer than 1 mm), so volumes and features are counted on the native-space mask
with the native voxel size. The affine's Jacobian (atlas volume / native volume) is recorded as a
cross-check: native volume ~ SRI24 volume / Jacobian.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gliocore.imaging.atlas import Atlas, load_atlas
from gliocore.imaging.atlas_transform import (
    AtlasTransform,
    read_atlas_transform,
    write_atlas_transform,
)
from gliocore.imaging.io import load_volume
from gliocore.imaging.volume import Volume

#: ``--preprocess-space`` choices: stay in the scan's own (T1c) space, or go to SRI24.
SPACE_CHOICES = ("native", "sri24")
#: Version of this step; part of the preprocessing cache key when the space is not native.
ATLAS_SPACE_VERSION = 1
#: Voxel size (mm) both images are resampled to before registering: an affine needs no detail.
RESOLUTION_MM = 2.0
#: ANTs levels on the resampled images: shrink 4, 2, 1 (8, 4, 2 mm), smoothing in voxels.
SHRINK = (4, 2, 1)
SMOOTHING = (2, 1, 0)
ITERATIONS = (200, 100, 50)
#: ITK threads of the registration (read when ANTs first starts threads; an explicit
#: ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` wins).
THREADS = "2"
#: Sub-folder of a scan's output folder holding the atlas-space images.
ATLAS_FOLDER = "sri24"
SEQUENCES = ("t1", "t1c", "t2", "flair")
#: BraTS file suffix per sequence (as in :mod:`gliocore.preprocess.scan`).
SUFFIX = {"t1": "_t1", "t1c": "_t1ce", "t2": "_t2", "flair": "_flair", "brainmask": "_brainmask"}


# -- grids ---------------------------------------------------------------------------------------
_LPS = np.diag([-1.0, -1.0, 1.0])


def sitk_from_array(data: np.ndarray, affine: np.ndarray):
    """A numpy volume in (i, j, k) order with its RAS+ affine as a SimpleITK image (LPS)."""
    import SimpleITK as sitk
    m = _LPS @ np.asarray(affine, dtype=float)[:3, :]
    spacing = np.linalg.norm(m[:, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in (m[:, :3] / spacing).ravel()))
    img.SetOrigin(tuple(float(v) for v in m[:, 3]))
    return img


def array_from_sitk(image) -> np.ndarray:
    """The voxels of a SimpleITK image in (i, j, k) order."""
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def atlas_image(atlas: Atlas):
    """The atlas reference brain as a SimpleITK image on the atlas grid."""
    return sitk_from_array(atlas.reference.astype(np.float32), atlas.affine)


def jacobian(inverse) -> float:
    """``|det|`` of a native-to-atlas affine's linear part (atlas volume per native volume)."""
    return float(abs(np.linalg.det(np.asarray(inverse.GetMatrix()).reshape(3, 3))))


# -- registration --------------------------------------------------------------------------------
def _ants():
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", THREADS)
    import ants
    return ants


def register_affine(moving, atlas: Atlas, prefix: Path, seed: int = 1,
                    resolution_mm: float | None = None) -> tuple[Path, Any]:
    """Register a skull-stripped brain (SimpleITK image) affinely to the atlas reference brain.

    Parameters
    ----------
    moving : SimpleITK.Image
        The scan's brain (zero outside), e.g. T1c after brain extraction.
    atlas : Atlas
    prefix : Path
        ANTs' output prefix; the forward transform is ``<prefix>0GenericAffine.mat``.
    seed : int
        ANTs' sampling seed (``ants.registration`` reads it from ``ants.config``).
    resolution_mm : float, optional
        Voxel size both images are resampled to for the registration (default
        :data:`RESOLUTION_MM`).

    Returns
    -------
    (Path, SimpleITK.Transform)
        The forward transform file (atlas point -> native point) and its inverse.
    """
    import ants.config as ants_config
    import SimpleITK as sitk

    from gliocore.preprocess.coregister import to_ants
    ants = _ants()
    res = (float(resolution_mm or RESOLUTION_MM),) * 3
    fixed = ants.resample_image(to_ants(atlas_image(atlas)), res, use_voxels=False, interp_type=0)
    mov = ants.resample_image(to_ants(moving), res, use_voxels=False, interp_type=0)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    previous, ants_config._random_seed = ants_config._random_seed, int(seed)
    try:
        reg = ants.registration(fixed, mov, type_of_transform="Affine", outprefix=str(prefix),
                                aff_metric="mattes", aff_sampling=32, aff_iterations=ITERATIONS,
                                aff_shrink_factors=SHRINK, aff_smoothing_sigmas=SMOOTHING)
    finally:
        ants_config._random_seed = previous
    forward = Path(reg["fwdtransforms"][0])
    for extra in set(reg["invtransforms"]) - {str(forward)}:  # an affine has one file
        Path(extra).unlink(missing_ok=True)
    t = sitk.ReadTransform(str(forward))
    if t.GetName() == "CompositeTransform":
        t = t.GetNthTransform(0)
    affine = sitk.AffineTransform(3)
    affine.SetParameters(t.GetParameters())
    affine.SetFixedParameters(t.GetFixedParameters())
    return forward, affine.GetInverse()


# -- resampling ----------------------------------------------------------------------------------
def to_atlas_grid(image, forward, atlas: Atlas, label: bool = False):
    """A native image resampled onto the atlas grid (linear, or nearest for a label image)."""
    import SimpleITK as sitk
    grid = atlas_image(atlas)
    if label:
        return sitk.Resample(image, grid, forward, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.Resample(image, grid, forward, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def labels_to_native(mask: np.ndarray, atlas_affine: np.ndarray, inverse, native_shape,
                     native_affine: np.ndarray) -> np.ndarray:
    """A label mask on the atlas grid taken to a native grid, label-wise.

    Each label's indicator (background included, 1 outside the atlas grid) is resampled linearly
    with ``inverse`` (native point -> atlas point); each native voxel takes the label of highest
    value (ties: the lowest label).

    Parameters
    ----------
    mask : (I, J, K) integer ndarray on the atlas grid
    atlas_affine : (4, 4) ndarray
    inverse : SimpleITK.Transform
        Native point -> atlas point.
    native_shape : 3 ints
    native_affine : (4, 4) ndarray

    Returns
    -------
    (I', J', K') uint8 ndarray
    """
    import SimpleITK as sitk
    mask = np.asarray(mask)
    grid = sitk_from_array(np.zeros(tuple(native_shape), dtype=np.uint8), native_affine)
    labels = [int(v) for v in np.unique(mask)]
    if labels == [0] or not labels:
        return np.zeros(tuple(native_shape), dtype=np.uint8)
    best = np.full(tuple(native_shape), -1.0, dtype=np.float32)
    out = np.zeros(tuple(native_shape), dtype=np.uint8)
    for lab in sorted(set(labels) | {0}):
        ind = sitk_from_array((mask == lab).astype(np.float32), atlas_affine)
        p = array_from_sitk(sitk.Resample(ind, grid, inverse, sitk.sitkLinear,
                                          1.0 if lab == 0 else 0.0, sitk.sitkFloat32))
        better = p > best
        best[better], out[better] = p[better], lab
    return out


def brain_dice(brain_on_atlas: np.ndarray, atlas: Atlas) -> float:
    a, b = np.asarray(brain_on_atlas, dtype=bool), atlas.brain
    denom = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / denom) if denom else float("nan")


# -- the preprocessing step ------------------------------------------------------------------------
def to_atlas_space(native: Mapping[str, Path], out_dir: Path, scan_label: str, key: str,
                   atlas: Atlas | None = None, moving: str = "t1c") -> AtlasTransform:
    """Register a preprocessed scan to the atlas and write its atlas-space images and transforms.

    Parameters
    ----------
    native : mapping
        ``t1``, ``t1c``, ``t2``, ``flair``, ``brainmask`` -> the scan's native preprocessed files
        (brain-only, on the T1c grid).
    out_dir : Path
        The scan's output folder: ``atlas_space.json``, ``<label>_to_sri24.mat`` (forward),
        ``<label>_from_sri24.tfm`` (inverse) and ``sri24/<label>_<seq>.nii.gz`` go there.
    scan_label : str
        File-name stem (the subject ID).
    key : str
        The preprocessing cache key (recorded; covers the space option).
    atlas : Atlas, optional
        The template (default SRI24; tests pass a small synthetic one).
    moving : str
        The sequence registered.
    """
    import SimpleITK as sitk
    atlas = atlas or load_atlas("sri24")
    out_dir = Path(out_dir)
    folder = out_dir / ATLAS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = {s: sitk.ReadImage(str(native[s]), sitk.sitkFloat32) for s in SEQUENCES}
    prefix = out_dir / f"{scan_label}_to_{atlas.name}_"
    ants_file, inverse = register_affine(images[moving], atlas, prefix)
    forward = out_dir / f"{scan_label}_to_{atlas.name}.mat"
    ants_file.replace(forward)
    inverse_file = out_dir / f"{scan_label}_from_{atlas.name}.tfm"
    sitk.WriteTransform(inverse, str(inverse_file))
    seconds = time.perf_counter() - t0
    fwd = sitk.ReadTransform(str(forward))
    brain = to_atlas_grid(sitk.ReadImage(str(native["brainmask"]), sitk.sitkUInt8), fwd, atlas,
                          label=True)
    brain_arr = sitk.GetArrayFromImage(brain).astype(bool)
    written = {}
    for seq, img in images.items():
        arr = sitk.GetArrayFromImage(to_atlas_grid(img, fwd, atlas))
        arr[~brain_arr | (arr < 0)] = 0.0  # zero background, no interpolation undershoot
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(brain)
        written[seq] = folder / f"{scan_label}{SUFFIX[seq]}.nii.gz"
        sitk.WriteImage(out, str(written[seq]), True)
    written["brainmask"] = folder / f"{scan_label}{SUFFIX['brainmask']}.nii.gz"
    sitk.WriteImage(brain, str(written["brainmask"]), True)
    record = AtlasTransform(space=atlas.name, forward=forward, inverse=inverse_file,
                            images=written, key=key, jacobian=round(jacobian(inverse), 5),
                            brain_dice=round(brain_dice(array_from_sitk(brain), atlas), 4),
                            seconds=round(seconds, 2), moving=moving)
    write_atlas_transform(out_dir, record)
    return record


# -- segmentation in atlas space -------------------------------------------------------------------
def segment_in_atlas_space(segmenter: Any, subject: Any, images: Mapping[str, Volume]
                           ) -> np.ndarray:
    """Segment a scan in its atlas space when preprocessing registered it, else as it is.

    With an atlas transform in the scan's folder (:func:`read_atlas_transform`), the segmenter
    gets the atlas-space images (and a scan whose paths point at them, for backends that read
    files); its canonical mask is taken back to the native grid of ``images`` label-wise
    (:func:`labels_to_native`).

    Parameters
    ----------
    segmenter : gliocore.segment.Segmenter
    subject : gliocore.cohort.subjects.Scan
    images : mapping of sequence -> Volume
        The scan's native images (their grid is the mask's).

    Returns
    -------
    (I, J, K) uint8 ndarray
        The canonical mask on the native grid.
    """
    record = read_atlas_transform(subject.folder)
    if record is None:
        return segmenter.segment(subject, images)
    import SimpleITK as sitk
    on_atlas = {s: load_volume(record.images[s]) for s in SEQUENCES}
    scan = dataclasses.replace(subject, sequences={s: record.images[s] for s in SEQUENCES},
                               folder=record.images["t1c"].parent)
    mask = segmenter.segment(scan, on_atlas)
    ref = next(iter(images.values()))
    atlas_affine = on_atlas["t1c"].affine
    return labels_to_native(mask, atlas_affine, sitk.ReadTransform(str(record.inverse)),
                            ref.shape, ref.affine)
