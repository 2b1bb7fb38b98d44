"""The image operations the intensity rules (:mod:`gliocore.segment.baseline`) are made of:
robust z-scores inside the brain, ball structuring elements in mm, small-component removal,
growth by geodesic distance in mm, hemispheric asymmetry, FLAIR slope and slice-wise hole
filling. Plain functions over numpy arrays; the rules' thresholds live with the rules."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

def _robust_z(img: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Z-score ``img`` with the median and MAD of its brain voxels."""
    vals = img[brain]
    if vals.size == 0:
        return np.zeros_like(img, dtype=np.float32)
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * 1.4826
    if not np.isfinite(mad) or mad <= 0:
        q25, q75 = np.percentile(vals, [25, 75])
        mad = float(q75 - q25) / 1.349
    if mad <= 0:
        mad = float(np.std(vals)) or 1.0
    return ((img - med) / mad).astype(np.float32)


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    """Ellipsoidal structuring element with per-axis radii in voxels."""
    r = np.maximum(np.round(radius_vox).astype(int), 0)
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g / max(float(rv), 1e-6)) ** 2 for g, rv in zip(grids, np.maximum(radius_vox, 1e-6)))
    return dist <= 1.0 + 1e-9


def _keep_components(mask: np.ndarray, voxel_mm3: float, min_mm3: float,
                     keep_fraction: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Keep the strongest component and the others of plausible size.

    A component's strength is its volume, or, with ``weight``, the sum of ``weight`` over it
    (e.g. the FLAIR z-score: a large but faint region, such as a bias-field-bright cortex,
    scores below a smaller, markedly hyperintense lesion). Components below ``min_mm3`` are
    dropped; the others are kept when their strength is at least ``keep_fraction`` of the
    strongest.
    """
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:] * voxel_mm3
    if weight is None:
        strength = sizes
    else:
        strength = np.bincount(lab.ravel(), weights=np.maximum(weight, 0).ravel())[1:]
    plausible = sizes >= min_mm3
    if not plausible.any():
        return np.zeros_like(mask, dtype=bool)
    best = strength[plausible].max()
    keep = plausible & (strength >= keep_fraction * best)
    return keep[lab - 1] & (lab > 0)


def grow_by_distance(seed: np.ndarray, allowed: np.ndarray, distance_mm: float,
                     spacing: Sequence[float]) -> np.ndarray:
    """Grow ``seed`` inside ``allowed`` by at most ``distance_mm`` of path length in mm.

    The growth is geodesic (it follows ``allowed``, it does not jump across gaps) and measured
    in millimetres, not in voxel steps, so it is the same in every direction however
    anisotropic the voxels: each step dilates by an ellipsoid of radius ``step`` mm (per-axis
    radii ``step / spacing``), where ``step`` is the coarsest voxel size (so every axis moves at
    least one voxel per step), and ``ceil(distance_mm / step)`` steps are taken.

    Parameters
    ----------
    seed, allowed : (I, J, K) bool ndarray
        Where growth starts, and where it may go (the seed is kept even outside it).
    distance_mm : float
        The largest distance to grow, in mm.
    spacing : 3 floats
        Voxel size in mm along each axis.

    Returns
    -------
    (I, J, K) bool ndarray
        ``seed`` plus the voxels of ``allowed`` reached.
    """
    sp = np.asarray(spacing, dtype=float)
    seed = np.asarray(seed, dtype=bool)
    if distance_mm <= 0 or not seed.any():
        return seed.copy()
    step = float(sp.max())
    n_steps = int(np.ceil(distance_mm / step - 1e-9))
    return ndi.binary_dilation(seed, _ball(step / sp), iterations=n_steps,
                               mask=np.asarray(allowed, dtype=bool)) | seed


def hemispheric_asymmetry(z: np.ndarray, brain: np.ndarray, lr_axis: int,
                          spacing: Sequence[float], smooth_mm: float = 3.0) -> np.ndarray:
    """How much brighter each voxel is than its mirror image across the midline.

    Gliomas are mostly unilateral, while normal anatomy is roughly symmetric: a voxel clearly
    brighter than the same place in the other hemisphere is a generic sign of disease, even
    where its own intensity is within the normal range (faint oedema at the level of grey
    matter). The midline is taken as the plane through the brain's centroid across
    ``lr_axis``. The voxel is compared with the Gaussian-smoothed (``smooth_mm``) mirror side:
    a local mean that tolerates a tilted or slightly shifted midline and asymmetric sulci;
    the voxel itself is not smoothed here (a bright lesion would leak a halo of "asymmetry"
    into the normal tissue around it); the baseline passes FLAIR's local mean and rejects such
    a halo by its slope (:func:`flair_slope`).

    Parameters
    ----------
    z : (I, J, K) float ndarray
        A normalised image (e.g. FLAIR robust z).
    brain : (I, J, K) bool ndarray
        The brain mask.
    lr_axis : int
        The array axis that runs left-right.
    spacing : 3 floats
        Voxel size in mm.
    smooth_mm : float
        Gaussian sigma in mm.

    Returns
    -------
    (I, J, K) float32 ndarray
        ``z`` minus the smoothed mirrored ``z`` where both the voxel and its mirror are brain, else 0.
    """
    sp = np.asarray(spacing, dtype=float)
    zs = ndi.gaussian_filter(np.where(brain, z, 0.0).astype(np.float32), smooth_mm / sp) \
        if smooth_mm > 0 else np.where(brain, z, 0.0).astype(np.float32)
    n = brain.shape[lr_axis]
    centre = float(np.nonzero(brain)[lr_axis].mean())
    mirror = np.clip(np.round(2 * centre - np.arange(n)).astype(int), 0, n - 1)
    zm = np.take(zs, mirror, axis=lr_axis)
    both = brain & np.take(brain, mirror, axis=lr_axis)
    return np.where(both, z - zm, 0.0).astype(np.float32)


def _local_mean(z: np.ndarray, where: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """Gaussian-weighted mean of ``z`` over the voxels ``where`` (normalised convolution);
    ``z`` itself outside ``where`` or with a zero ``sigma_vox``."""
    if not np.any(sigma_vox > 0):
        return z
    w = where.astype(np.float32)
    num = ndi.gaussian_filter(np.where(where, z, 0.0).astype(np.float32), sigma_vox)
    den = ndi.gaussian_filter(w, sigma_vox)
    return np.where(where & (den > 1e-3), num / np.maximum(den, 1e-3), z).astype(np.float32)


def flair_slope(z: np.ndarray, spacing: Sequence[float], smooth_mm: float = 1.0) -> np.ndarray:
    """The gradient magnitude of ``z`` in units per mm, after Gaussian smoothing (``smooth_mm``).

    Parameters
    ----------
    z : (I, J, K) float ndarray
        A normalised image (e.g. FLAIR robust z).
    spacing : 3 floats
        Voxel size in mm.
    smooth_mm : float
        Gaussian sigma in mm (0: none).

    Returns
    -------
    (I, J, K) float32 ndarray
        ``|grad z|`` in z units per mm.
    """
    sp = np.asarray(spacing, dtype=float)
    zs = ndi.gaussian_filter(z, smooth_mm / sp) if smooth_mm > 0 else z
    return np.sqrt(sum((np.gradient(zs, axis=k) / sp[k]) ** 2 for k in range(3))).astype(np.float32)


def _fill_holes_2d(mask: np.ndarray, axis: int) -> np.ndarray:
    """Fill the holes of every slice of ``mask`` across ``axis`` (a rim open in 3-D but closed
    in-plane, e.g. a necrotic core whose enhancing rim is cut by the slab's edge)."""
    out = mask.copy()
    for k in range(mask.shape[axis]):
        index = [slice(None)] * 3
        index[axis] = k
        sl = mask[tuple(index)]
        if sl.any():
            out[tuple(index)] = ndi.binary_fill_holes(sl)
    return out
