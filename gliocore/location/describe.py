"""One segmentation described in the atlas: its region values and its VASARI features.

:func:`locate` joins the two halves of the location stage's per-mask work: the atlas-region
values of :mod:`gliocore.location.regions` and the VASARI rules of :mod:`gliocore.location.vasari`
(which use the region facts). Kept apart from both so that neither imports the other's caller.
"""
from __future__ import annotations

import numpy as np

from gliocore.location import vasari
from gliocore.location.regions import (CLASSES, MIN_FOCUS_MM3, LocationResult, LocationValue,
                                       SubjectFrame, _class_values, component_volumes)


def locate(mask: np.ndarray, frame: SubjectFrame,
           spacing: tuple[float, float, float] | float = 1.0,
           necrosis: np.ndarray | None = None) -> LocationResult:
    """Location and VASARI features of one segmentation.

    Parameters
    ----------
    mask : (I, J, K) int ndarray
        GlioScope labels: 1 = contrast-enhancing, 2 = non-enhancing.
    frame : SubjectFrame
        Where the subject's voxels lie in the atlas.
    spacing : float or 3 floats
        Subject voxel size (mm); volumes are measured with it.
    necrosis : (I, J, K) bool ndarray, optional
        Necrosis inside the non-enhancing class where the mask source keeps it apart (BraTS
        label 1); None for GlioScope's two-class masks (VASARI F11 and F24 then partly decided).

    Returns
    -------
    LocationResult
    """
    mask = np.asarray(mask)
    sp = tuple(float(x) for x in np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    voxel_mm3 = float(np.prod(sp))
    values: list[LocationValue] = []
    facts: dict[str, dict[str, float]] = {}
    for name, labels in CLASSES.items():
        sel = np.isin(mask, labels)
        voxels = np.argwhere(sel)
        foci = component_volumes(sel, voxel_mm3)
        vals, f = _class_values(name, voxels, frame, voxel_mm3,
                                int((foci >= MIN_FOCUS_MM3).sum()))
        values.extend(vals)
        facts[name] = f
    values.extend(vasari.vasari_features(mask, facts, voxel_mm3, sp,  # type: ignore[arg-type]
                                         necrosis))
    return LocationResult(tuple(values))
