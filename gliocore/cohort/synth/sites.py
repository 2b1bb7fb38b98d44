"""Scanner sites of the demo cohort, read off the intensities it already has.

Every demo subject's sequences were always given a random scanner gain (``tumour.py``: a
log-normal factor per sequence, as raw MRI intensities vary between scanners). The ``site``
column groups subjects into three scanners by their overall gain, so intensity features differ
by site the way they do between centres, and ComBat has something to remove, without changing
a single voxel (the demo's images, their hashes and every store made from them stay valid).
The site is computed from the images themselves, so a resumed demo gets the same sites as a
fresh one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np

from .params import BASE_SCALE, FILE_SUFFIX

__all__ = ["SITES", "SITE_THRESHOLDS", "scanner_score", "site_of", "read_site"]

#: Site names, from the lowest overall scanner gain to the highest.
SITES = ("A", "B", "C")
#: Cut-points of :func:`scanner_score` between the sites (about a third of subjects each: the
#: score's mean is -0.30 and SD 0.14 over 60 demo subjects).
SITE_THRESHOLDS = (-0.35, -0.24)


def scanner_score(images: Mapping[str, np.ndarray]) -> float:
    """Mean over sequences of log(median brain intensity / the sequence's base scale).

    The median is taken over every third voxel along each axis (27× fewer; ~10 ms per
    full-size subject): the arrays written to disk are the ones generated, in the same order,
    so a fresh and a resumed demo sample the same voxels.
    """
    logs = []
    for seq, img in images.items():
        sub = np.asarray(img)[::3, ::3, ::3]
        brain = sub[sub > 0].astype(np.float64)
        if brain.size:
            logs.append(np.log(np.median(brain) / BASE_SCALE[seq]))
    return float(np.mean(logs)) if logs else 0.0


def site_of(score: float) -> str:
    """The site whose gain band holds ``score``."""
    return SITES[int(np.searchsorted(SITE_THRESHOLDS, score, side="right"))]


def read_site(folder: Path, sid: str) -> str:
    """The site of a subject already written to ``folder`` (reads its four images)."""
    images = {seq: np.asarray(nib.load(str(Path(folder) / f"{sid}_{suffix}.nii.gz")).dataobj)
              for seq, suffix in FILE_SUFFIX.items()}
    return site_of(scanner_score(images))
