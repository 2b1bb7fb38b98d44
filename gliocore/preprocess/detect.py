"""Is a scan already preprocessed (BraTS-style)? Then it passes through untouched.

Already preprocessed means: the four sequences share one grid (shape and affine, from the
headers alone) and each has a zero background (skull-stripped): the volume's outer shell is
exactly zero and at least a fifth of its voxels are zero.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gliocore.imaging.io import load_volume, read_geometry
from gliocore.imaging.volume import AFFINE_ATOL
from gliocore.types import PathType

#: Smallest share of exactly-zero voxels in a skull-stripped volume.
MIN_ZERO_FRACTION = 0.2
#: Largest share of non-zero voxels allowed on the volume's outer shell.
MAX_SHELL_NONZERO = 0.001


@dataclass(frozen=True)
class Readiness:
    """Whether a scan is ready as it is, and why (or why not)."""

    ready: bool
    same_grid: bool
    reason: str


def same_grid(paths: Mapping[str, PathType]) -> tuple[bool, str]:
    """Do the files share one grid? Headers only."""
    geoms = {seq: read_geometry(p) for seq, p in paths.items()}
    first_seq, (shape0, aff0) = next(iter(geoms.items()))
    for seq, (shape, aff) in geoms.items():
        if tuple(shape) != tuple(shape0) or not np.allclose(aff, aff0, atol=AFFINE_ATOL):
            return False, f"{seq} is on another grid than {first_seq} ({shape} vs {shape0})"
    return True, f"one grid {tuple(shape0)}"


def zero_background(data: np.ndarray) -> tuple[bool, str]:
    """Is the background of ``data`` exactly zero (skull-stripped)?"""
    shell = np.concatenate([data[[0, -1]].ravel(), data[:, [0, -1]].ravel(),
                            data[:, :, [0, -1]].ravel()])
    shell_nonzero = float(np.count_nonzero(shell)) / shell.size
    zero = 1.0 - float(np.count_nonzero(data)) / data.size
    ok = shell_nonzero <= MAX_SHELL_NONZERO and zero >= MIN_ZERO_FRACTION
    return ok, f"{zero:.0%} zero voxels, {shell_nonzero:.1%} of the border non-zero"


def check_ready(paths: Mapping[str, PathType]) -> Readiness:
    """Decide whether the scan of ``paths`` (sequence -> NIfTI/NRRD) is already preprocessed."""
    grid_ok, why = same_grid(paths)
    if not grid_ok:
        return Readiness(False, False, why)
    for seq, p in paths.items():
        ok, detail = zero_background(load_volume(p, dtype=None).data)
        if not ok:
            return Readiness(False, True, f"{seq} has a non-zero background ({detail}): "
                                          "not skull-stripped")
    return Readiness(True, True, f"{why}, zero background in all sequences")
