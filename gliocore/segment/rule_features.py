"""Features from the intensity rules' output, for the stacked learned segmenter.

The rule baseline (:mod:`gliocore.segment.baseline`) is deterministic and learns nothing from
a case, so its mask is a legitimate input for a model cross-validated by leaving cases out.
Given to the trees beside the intensity features, it lets them learn where to trust the rules
(their shape: connected, hole-free, grown from a core) and where the intensities disagree.

Fixed before any held-out evaluation (:data:`RULE_FEATURES`, in column order):

* ``rule_ce``, ``rule_ne``: the voxel is contrast-enhancing (non-enhancing) in the rules' mask;
* ``rule_wt_sd_mm``: signed distance (mm) to the rules' whole-tumour boundary, negative inside,
  clipped to +-:data:`SD_CLIP_MM` (:data:`SD_CLIP_MM` everywhere when the rules found nothing);
* ``rule_wt_g3``, ``rule_ce_g3``: the rules' whole-tumour (enhancing) mask smoothed at 3 mm,
  a soft version of the boundary.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

RULE_FEATURES: tuple[str, ...] = ("rule_ce", "rule_ne", "rule_wt_sd_mm", "rule_wt_g3",
                                  "rule_ce_g3")
SD_CLIP_MM = 40.0
SMOOTH_MM = 3.0


def signed_distance(mask: np.ndarray, spacing: Sequence[float],
                    clip_mm: float = SD_CLIP_MM) -> np.ndarray:
    """Signed distance (mm) to the boundary of ``mask``: positive outside, negative inside,
    clipped to ``+-clip_mm``; ``clip_mm`` everywhere when ``mask`` is empty."""
    if not mask.any():
        return np.full(mask.shape, clip_mm, dtype=np.float32)
    sp = np.asarray(spacing, dtype=float)
    outside = ndi.distance_transform_edt(~mask, sampling=sp)
    inside = ndi.distance_transform_edt(mask, sampling=sp)
    return np.clip(outside - inside, -clip_mm, clip_mm).astype(np.float32)


def rule_feature_volume(rule_labels: np.ndarray, brain: np.ndarray,
                        spacing: Sequence[float]) -> np.ndarray:
    """The :data:`RULE_FEATURES` channels on a crop.

    Parameters
    ----------
    rule_labels : (I, J, K) uint8 ndarray
        The rules' canonical labels (0, 1 = CE, 2 = NE) on the crop.
    brain : (I, J, K) bool ndarray
        The brain on the crop (features are zero outside it).
    spacing : 3 floats
        Voxel size in mm.

    Returns
    -------
    (5, I, J, K) float32 ndarray
    """
    sp = np.asarray(spacing, dtype=float)
    wt = rule_labels > 0
    ce = rule_labels == 1
    sigma = SMOOTH_MM / sp
    out = np.stack((ce.astype(np.float32), (rule_labels == 2).astype(np.float32),
                    signed_distance(wt, sp),
                    ndi.gaussian_filter(wt.astype(np.float32), sigma, truncate=2.5),
                    ndi.gaussian_filter(ce.astype(np.float32), sigma, truncate=2.5)))
    out[:, ~brain] = 0.0
    return out
