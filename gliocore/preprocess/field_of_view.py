"""Segmentation never runs on the part of the brain a sequence did not image.

When a sequence's field of view misses part of the brain (common: a thick-slab FLAIR covering only
part of the head), the preprocessing stage (:mod:`gliocore.preprocess.scan`) zeroes that part in the
sequence, flags the scan and writes the field of view on the T1c grid as ``<id>_<seq>_fov.nii.gz``,
listed in the scan's ``preprocess.json`` as output ``<seq>_fov``. A segmenter given those zeros
would read "no signal" as "no tumour" (or, worse, as tissue of another kind), so:

* a backend that handles a partly missing sequence itself (``handles_partial_coverage``:
  ``learned``, which segments that part from the sequences that cover it and says so; ``import``,
  whose masks were not made from these images) keeps its mask;
* for every other backend the mask is cleared outside the part all four sequences cover, and the
  scan's segmentation carries a warning that says which sequence missed how much of the brain.

The maps enter the segmentation key (:func:`fov_fingerprint`), so a scan segmented before the
restriction, or with other maps, is segmented again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gliocore.imaging.io import file_sha256, load_volume
from gliocore.types import SEQUENCES, PathType

#: The preprocessing record's file name (``gliocore.preprocess.scan.CACHE_FILE``).
RECORD_FILE = "preprocess.json"
SEQUENCE_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
#: Revision of this rule (part of the segmentation key of scans that have maps).
FOV_RULE_VERSION = "1"


def fov_maps(folder: PathType) -> dict[str, Path]:
    """The field-of-view maps preprocessing left in a scan folder: sequence -> NIfTI path.

    Empty when the folder has no ``preprocess.json`` or every sequence covered the brain.
    """
    record = Path(folder) / RECORD_FILE
    if not record.is_file():
        return {}
    try:
        outputs = json.loads(record.read_text()).get("outputs") or {}
    except (OSError, ValueError):
        return {}
    maps = {}
    for seq in SEQUENCES:
        path = outputs.get(f"{seq}_fov")
        if path and Path(path).is_file():
            maps[seq] = Path(path)
    return maps


def fov_fingerprint(folder: PathType) -> str:
    """What a segmentation key adds for a scan with field-of-view maps ('' without any)."""
    maps = fov_maps(folder)
    if not maps:
        return ""
    return f"|fov:{FOV_RULE_VERSION}:" + ",".join(f"{s}={file_sha256(p)}"
                                                   for s, p in sorted(maps.items()))


def restrict_to_field_of_view(mask: np.ndarray, folder: PathType, backend: Any,
                              brain: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Clear a mask outside the part of the brain every sequence imaged.

    Parameters
    ----------
    mask : (I, J, K) int ndarray
        The scan's canonical mask on the T1c grid (the maps' grid).
    folder : path
        The scan's folder (its ``preprocess.json`` names the maps).
    backend : gliocore.segment.Segmenter
        Its ``handles_partial_coverage`` (default False) decides whether the mask is kept (such a
        backend reports the missing part itself).
    brain : (I, J, K) bool ndarray
        The brain (for the share missed in the warning; :func:`brain_of`).

    Returns
    -------
    mask : ndarray
        The mask, cleared outside the covered part (a copy when anything changed).
    warnings : list of str
        One per sequence that missed part of the brain (none when the backend handles it).

    Raises
    ------
    ValueError
        A map's grid differs from the mask's (names the file).
    """
    maps = fov_maps(folder)
    if not maps or getattr(backend, "handles_partial_coverage", False):
        return mask, []
    name = getattr(backend, "name", "the backend")
    covered = np.ones(mask.shape, dtype=bool)
    warnings = []
    for seq, path in maps.items():
        fov = np.asarray(load_volume(path, dtype=None).data) > 0
        if fov.shape != mask.shape:
            raise ValueError(f"field-of-view map {path} has shape {fov.shape}, the mask "
                             f"{mask.shape}")
        missed = 1.0 - float((fov & brain).sum()) / max(1, int(brain.sum()))
        covered &= fov
        warnings.append(f"{SEQUENCE_NAMES.get(seq, seq)}'s field of view misses {missed:.0%} of "
                        f"the brain: no segmentation there ({name} needs all four sequences)")
    outside = (mask != 0) & ~covered
    if outside.any():
        mask = mask.copy()
        mask[outside] = 0
    return mask, warnings


def brain_of(images: Mapping[str, Any]) -> np.ndarray:
    """The brain of preprocessed images: voxels non-zero in T1c (the brain-extracted grid)."""
    return np.asarray(images["t1c"].data) != 0
