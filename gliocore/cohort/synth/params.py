"""Vocabulary of the synthetic cohort: grid, tissue codes and contrasts, the subject
record, per-subject parameter draws, smooth random fields and argument checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

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
