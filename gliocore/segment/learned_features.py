"""Voxel features of the learned segmenter (:mod:`gliocore.segment.learned`).

Every feature is relative, never an absolute intensity. Each sequence is first flattened: a
slow multiplicative field (scanner coil bias) is estimated from the log intensity of the
normal-looking tissue (robust z within 1.5), averaged in 4 mm blocks and smoothed at 30 mm
inside the brain, and divided out (:func:`flatten_bias`: a cheap stand-in for N4, which takes
6-8 s per sequence on two cores). It is then z-scored inside the brain with its median and a
robust spread (the 25-75 % range), so a gain, an offset, a bias field or a monotone contrast
change between scanners moves the features little. Per sequence:

* ``g1``, ``g3``, ``g8``: the z-scored image smoothed inside the brain (normalised
  convolution, so the brain's edge does not darken) at 1, 3 and 8 mm;
* ``c3``, ``c8``: local contrast, ``g1`` minus ``g3`` and minus ``g8`` (differences of
  Gaussians: blobs and edges at two scales);
* ``s3``: local standard deviation at 3 mm (texture);
* ``m3``, ``m8``: left-right asymmetry, ``g3`` (``g8``) minus its mirror image across the
  brain's midline (gliomas are mostly unilateral, normal anatomy roughly symmetric).

Plus ``t1c-t1`` (enhancement, at 1 mm), ``flair-t2`` (at 1 mm), ``edge_mm`` (the distance to
the brain's edge) and ``mid_mm`` (the distance to the brain's left-right midline).
Sigmas are in mm, so the features mean the same at any voxel size.

A sequence that does not cover part of the brain (zero or constant there while the others
show brain: an older protocol's partial FLAIR) is found per slice by :func:`coverage`; the
segmenter then predicts those voxels with a model that does not use that sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

SEQUENCES: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
PER_SEQUENCE: tuple[str, ...] = ("g1", "g3", "g8", "c3", "c8", "s3", "m3", "m8")
#: Feature names in column order.
FEATURES: tuple[str, ...] = tuple(f"{s}_{f}" for s in SEQUENCES for f in PER_SEQUENCE) \
    + ("t1c-t1", "flair-t2", "edge_mm", "mid_mm")
#: Bias flattening: block size and smoothing (mm), and the robust |z| of the tissue it uses.
BIAS_BLOCK_MM = 4.0
BIAS_SIGMA_MM = 12.0
BIAS_KEEP_Z = 1.5
#: Columns of the model that does without FLAIR (used where FLAIR does not cover the brain).
NO_FLAIR: tuple[str, ...] = tuple(f for f in FEATURES if not f.startswith("flair"))


@dataclass
class FeatureVolume:
    """Features of one scan, on the crop around its brain.

    Attributes
    ----------
    values : (n_features, I, J, K) float32 ndarray
        One channel per name in :data:`FEATURES`, on the crop.
    brain : (I, J, K) bool ndarray
        The brain on the crop.
    box : tuple of slices
        Where the crop lies in the full image.
    uncovered : dict of str -> (I, J, K) bool ndarray
        Brain voxels each sequence does not cover (absent when it covers the whole brain).
    names : tuple of str
        The channel names, in order (:data:`FEATURES`; more when channels were added, as the
        stacked segmenter adds the rules' output).
    """

    values: np.ndarray
    brain: np.ndarray
    box: tuple[slice, slice, slice]
    uncovered: dict[str, np.ndarray]
    names: tuple[str, ...] = FEATURES

    def columns(self, names: Sequence[str], where: np.ndarray) -> np.ndarray:
        """The ``(n_voxels, len(names))`` feature matrix at the voxels ``where`` is True."""
        idx = [self.names.index(n) for n in names]
        return np.stack([self.values[i][where] for i in idx], axis=1)


def brain_mask(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels where any sequence is above 2 % of its 99th percentile (largest component)."""
    brain = np.zeros(arrays[0].shape, dtype=bool)
    for a in arrays:
        pos = a.ravel()[::7]
        pos = pos[pos > 0]
        if pos.size:
            brain |= a > 0.02 * float(np.percentile(pos, 99))
    lab, n = ndi.label(brain)
    if n > 1:
        brain = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return brain


def coverage(a: np.ndarray, brain: np.ndarray, min_fraction: float = 0.2) -> np.ndarray:
    """Brain voxels that the sequence ``a`` does not cover.

    A slice (along any axis) is uncovered when fewer than ``min_fraction`` of its brain voxels
    differ from the sequence's fill value (the most common value inside the brain when one
    value holds over 2 % of it, else 0): a field of view that stops part way through the
    brain leaves a slab of zeros or of one constant.
    """
    vals = a[brain]
    uniq, counts = np.unique(vals, return_counts=True)
    fill = float(uniq[np.argmax(counts)]) if counts.max() > 0.02 * vals.size else 0.0
    scale = float(np.percentile(np.abs(vals - fill), 99)) or 1.0
    shows = brain & (np.abs(a - fill) > 1e-4 * scale)
    out = np.zeros_like(brain)
    for axis in range(3):
        other = tuple(i for i in range(3) if i != axis)
        n_brain = brain.sum(axis=other)
        n_show = shows.sum(axis=other)
        bad = (n_brain > 0) & (n_show < min_fraction * np.maximum(n_brain, 1))
        if bad.any():
            shape = [1, 1, 1]
            shape[axis] = -1
            out |= brain & bad.reshape(shape)
    return out


def _robust_z(a: np.ndarray, where: np.ndarray) -> np.ndarray:
    vals = a[where]
    if vals.size < 100:
        return np.zeros_like(a, dtype=np.float32)
    q25, med, q75 = np.percentile(vals, [25, 50, 75])
    scale = (q75 - q25) / 1.349
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.std(vals)) or 1.0
    return ((a - med) / scale).astype(np.float32)


def _smooth_in(x: np.ndarray, weight: np.ndarray, norm: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian smoothing inside ``weight`` (normalised convolution)."""
    return ndi.gaussian_filter(x * weight, sigma, truncate=2.5) / norm


def _coarse_smooth(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Wide Gaussian smoothing computed on a grid halved in each axis (2x2x2 block means),
    brought back by repeating each value (the result varies over about ``sigma`` anyway)."""
    pad = [(0, s % 2) for s in x.shape]
    xp = np.pad(x, pad, mode="edge")
    half = xp.reshape(xp.shape[0] // 2, 2, xp.shape[1] // 2, 2, xp.shape[2] // 2, 2).mean(
        axis=(1, 3, 5))
    half = ndi.gaussian_filter(half, np.asarray(sigma) / 2.0, truncate=2.5)
    up = half.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return up[:x.shape[0], :x.shape[1], :x.shape[2]]


def _edge_distance(brain: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Distance (mm) to the brain's edge, on a grid halved in each axis (to 1 voxel)."""
    half = brain[::2, ::2, ::2]
    d = ndi.distance_transform_edt(half, sampling=2.0 * sp).astype(np.float32)
    up = d.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return up[:brain.shape[0], :brain.shape[1], :brain.shape[2]]


def flatten_bias(a: np.ndarray, inside: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Divide out a slow multiplicative field (a bias field), estimated inside ``inside``.

    The log intensity of the tissue within :data:`BIAS_KEEP_Z` robust z of its median (normal
    grey and white matter: bright lesions, CSF and necrosis left out) is averaged in blocks of
    :data:`BIAS_BLOCK_MM`, smoothed at :data:`BIAS_SIGMA_MM` by normalised convolution, brought
    back to the grid (linear) and divided out, centred on its median inside the brain (so the
    image keeps its scale). Outside ``inside`` the image is returned unchanged.
    """
    sp = np.asarray(spacing, dtype=float)
    pos = inside & (a > 0)
    if pos.sum() < 1000:
        return a
    log = np.zeros(a.shape, dtype=np.float32)
    log[pos] = np.log(a[pos])
    z = _robust_z(log, pos)
    keep = pos & (np.abs(z) < BIAS_KEEP_Z)
    block = np.maximum(np.round(BIAS_BLOCK_MM / sp).astype(int), 1)
    pad = [(0, (-n) % b) for n, b in zip(a.shape, block)]
    coarse_shape = [(n + p[1]) // b for n, p, b in zip(a.shape, pad, block)]

    def block_sum(x: np.ndarray) -> np.ndarray:
        xp = np.pad(x, pad).reshape(coarse_shape[0], block[0], coarse_shape[1], block[1],
                                    coarse_shape[2], block[2])
        return xp.sum(axis=(1, 3, 5))

    sigma = BIAS_SIGMA_MM / (block * sp)
    num = ndi.gaussian_filter(block_sum(np.where(keep, log, 0.0)), sigma, truncate=2.5)
    den = ndi.gaussian_filter(block_sum(keep.astype(np.float32)), sigma, truncate=2.5)
    field = np.where(den > 1e-3, num / np.maximum(den, 1e-3), float(np.median(log[keep])))
    full = ndi.zoom(field.astype(np.float32), block.astype(float), order=1, grid_mode=True,
                    mode="nearest")[:a.shape[0], :a.shape[1], :a.shape[2]]
    full -= float(np.median(full[pos]))
    return np.where(pos, a * np.exp(-full), a).astype(np.float32)


def _sequence_features(a: np.ndarray, inside: np.ndarray, norms: list[np.ndarray],
                       sigmas: list[np.ndarray], sp: np.ndarray, lr_axis: int) -> np.ndarray:
    """The :data:`PER_SEQUENCE` channels of one sequence (flattened, z-scored inside)."""
    w = inside.astype(np.float32)
    z = _robust_z(flatten_bias(a, inside, sp), inside) * w
    g1 = _smooth_in(z, w, norms[0], sigmas[0])
    g3 = _smooth_in(z, w, norms[1], sigmas[1])
    g8 = _coarse_smooth(z, sigmas[2]) / norms[2]
    var3 = _smooth_in(z * z, w, norms[1], sigmas[1]) - g3 * g3
    return np.stack((g1, g3, g8, g1 - g3, g1 - g8, np.sqrt(np.maximum(var3, 0.0)),
                     g3 - np.flip(g3, axis=lr_axis), g8 - np.flip(g8, axis=lr_axis)))


def compute_features(arrays: Sequence[np.ndarray], spacing: Sequence[float], lr_axis: int,
                     brain: np.ndarray | None = None) -> FeatureVolume:
    """Features of one scan (see the module docstring).

    Parameters
    ----------
    arrays : 4 (I, J, K) arrays
        T1, T1c, T2 and FLAIR on one grid, skull-stripped (zero outside the brain).
    spacing : 3 floats
        Voxel size in mm.
    lr_axis : int
        The array axis that runs left-right (the mirror for the asymmetry features).
    brain : bool array, optional
        The brain; by default :func:`brain_mask`.

    Returns
    -------
    FeatureVolume
    """
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    arrays = [a if np.isfinite(a).all() else np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
              for a in arrays]
    sp = np.asarray(spacing, dtype=float)
    full_brain = brain_mask(arrays) if brain is None else np.asarray(brain, dtype=bool)
    if not full_brain.any():
        raise ValueError("no brain found: every sequence is empty or constant")
    box = ndi.find_objects(full_brain.astype(np.uint8))[0]
    brain = full_brain[box]
    crops = [a[box] for a in arrays]
    uncovered = {}
    for name, a in zip(SEQUENCES, crops):
        miss = coverage(a, brain)
        if miss.any():
            uncovered[name] = miss
    values = np.zeros((len(FEATURES),) + brain.shape, dtype=np.float32)
    sigmas = [np.asarray([m, m, m]) / sp for m in (1.0, 3.0, 8.0)]
    norms_of: dict[bytes, list[np.ndarray]] = {}
    n = len(PER_SEQUENCE)
    for k, (name, a) in enumerate(zip(SEQUENCES, crops)):
        inside = brain & ~uncovered.get(name, np.zeros_like(brain))
        key = np.packbits(inside).tobytes() if name in uncovered else b""
        if key not in norms_of:
            w = inside.astype(np.float32)
            norms_of[key] = [np.maximum(ndi.gaussian_filter(w, s, truncate=2.5), 1e-3)
                             for s in sigmas[:2]] + [np.maximum(_coarse_smooth(w, sigmas[2]),
                                                                1e-3)]
        values[k * n:(k + 1) * n] = _sequence_features(a, inside, norms_of[key], sigmas, sp,
                                                       lr_axis)
    g1 = {name: values[k * n] for k, name in enumerate(SEQUENCES)}
    values[-4] = g1["t1c"] - g1["t1"]
    values[-3] = g1["flair"] - g1["t2"]
    values[-2] = _edge_distance(brain, sp)
    mid = np.abs(np.arange(brain.shape[lr_axis]) - (brain.shape[lr_axis] - 1) / 2.0)
    shape = [1, 1, 1]
    shape[lr_axis] = -1
    values[-1] = (mid * sp[lr_axis]).astype(np.float32).reshape(shape)
    values[:, ~brain] = 0.0
    return FeatureVolume(values, brain, box, uncovered)
