"""Degradations that mimic how other centres' scans differ (TorchIO-style), on one grid.

Used twice, with different random draws: to augment the learned segmenter's training cases
(:mod:`scripts.train_learned_segmenter`) and to test its robustness on held-out cases. Every
function takes the four sequences (T1, T1c, T2, FLAIR) on one grid and returns new arrays on
the same grid, so the expert labels stay the truth.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

Arrays = list[np.ndarray]


def _fg(a: np.ndarray) -> np.ndarray:
    return a > 0


def bias_field(arrays: Sequence[np.ndarray], rng: np.random.Generator,
               strength: float = 0.3) -> Arrays:
    """Multiply each sequence by its own smooth field ``exp(strength * f)``, f in about [-1, 1]."""
    out = []
    for a in arrays:
        coarse = rng.uniform(-1.0, 1.0, size=(4, 4, 4))
        field = ndi.zoom(coarse, np.asarray(a.shape) / 4.0, order=3, mode="nearest",
                         grid_mode=True)[:a.shape[0], :a.shape[1], :a.shape[2]]
        out.append((a * np.exp(strength * field)).astype(np.float32))
    return out


def noise(arrays: Sequence[np.ndarray], rng: np.random.Generator, level: float = 0.08) -> Arrays:
    """Rician noise inside the head, sigma = ``level`` x the median of the non-zero voxels."""
    out = []
    for a in arrays:
        fg = _fg(a)
        sigma = level * float(np.median(a[fg])) if fg.any() else 0.0
        n1 = rng.normal(0.0, sigma, a.shape).astype(np.float32)
        n2 = rng.normal(0.0, sigma, a.shape).astype(np.float32)
        out.append(np.where(fg, np.sqrt((a + n1) ** 2 + n2 ** 2), 0.0).astype(np.float32))
    return out


def contrast(arrays: Sequence[np.ndarray], rng: np.random.Generator,
             gamma_range: tuple[float, float] = (0.7, 1.4),
             gain_range: tuple[float, float] = (0.3, 3.0)) -> Arrays:
    """A random gain and gamma per sequence: ``gain * p99 * (a / p99) ** gamma``."""
    out = []
    for a in arrays:
        fg = _fg(a)
        p99 = float(np.percentile(a[fg], 99)) if fg.any() else 1.0
        gamma = rng.uniform(*gamma_range)
        gain = np.exp(rng.uniform(np.log(gain_range[0]), np.log(gain_range[1])))
        out.append((gain * p99 * np.clip(a / p99, 0, None) ** gamma).astype(np.float32))
    return out


def _back_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    sl = tuple(slice(0, min(s, t)) for s, t in zip(a.shape, shape))
    out[sl] = a[sl]
    return out


def thick_slices(arrays: Sequence[np.ndarray], axis: int = 2, thickness: int = 5) -> Arrays:
    """Slices ``thickness`` voxels thick (the slab mean), re-interpolated (linear) to the grid."""
    out = []
    for a in arrays:
        avg = ndi.uniform_filter1d(a, thickness, axis=axis)
        idx = np.arange(thickness // 2, a.shape[axis], thickness)
        sub = np.take(avg, idx, axis=axis)
        coords = (np.arange(a.shape[axis]) - thickness // 2) / thickness
        coords = np.clip(coords, 0, len(idx) - 1)
        lo = np.floor(coords).astype(int)
        hi = np.minimum(lo + 1, len(idx) - 1)
        t = (coords - lo).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = -1
        t = t.reshape(shape)
        res = np.take(sub, lo, axis=axis) * (1 - t) + np.take(sub, hi, axis=axis) * t
        out.append(res.astype(np.float32))
    return out


def low_resolution(arrays: Sequence[np.ndarray], factor: float = 2.0) -> Arrays:
    """Acquired at ``factor`` x the voxel size (blur, downsample), re-interpolated (linear)."""
    out = []
    for a in arrays:
        blurred = ndi.gaussian_filter(a, factor / 2.355, truncate=2.5)
        small = ndi.zoom(blurred, 1.0 / factor, order=1)
        out.append(_back_to(ndi.zoom(small, np.asarray(a.shape) / small.shape, order=1),
                            a.shape))
    return out


def partial_coverage(arrays: Sequence[np.ndarray], which: int = 3, fraction: float = 2 / 3,
                     axis: int = 2) -> Arrays:
    """Sequence ``which`` (3 = FLAIR) covers only the lower ``fraction`` of the head along ``axis``.

    Outside that slab it is zero, as an older protocol's FLAIR with fewer slices.
    """
    union = np.zeros(arrays[0].shape, dtype=bool)
    for a in arrays:
        union |= _fg(a)
    counts = union.sum(axis=tuple(i for i in range(3) if i != axis)).astype(float)
    cum = np.cumsum(counts) / max(counts.sum(), 1.0)
    stop = int(np.searchsorted(cum, fraction))
    out = [np.array(a, dtype=np.float32, copy=True) for a in arrays]
    sl = [slice(None)] * 3
    sl[axis] = slice(stop + 1, None)
    out[which][tuple(sl)] = 0.0
    return out


#: Named degradations for the robustness table (each its own fixed draw).
DEGRADATIONS: dict[str, Callable[[Sequence[np.ndarray], np.random.Generator], Arrays]] = {
    "thick slices 5 mm (axial, re-interpolated)": lambda a, r: thick_slices(a, 2, 5),
    "lower resolution (2 mm, re-interpolated)": lambda a, r: low_resolution(a, 2.0),
    "FLAIR covers 2/3 of the brain": lambda a, r: partial_coverage(a, 3, 2 / 3, 2),
    "bias field (±30 %)": lambda a, r: bias_field(a, r, 0.3),
    "noise (Rician, 8 % of median)": lambda a, r: noise(a, r, 0.08),
    "contrast and gain (gamma 0.7-1.4, gain 0.3-3)": lambda a, r: contrast(a, r),
}
