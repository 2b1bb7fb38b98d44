"""Segmentation quality control: overlap, surface distance and volume against a reference.

Every measure works in physical units where units matter: volumes come from the voxel
spacing (never from voxel counts alone) and Hausdorff distances are in millimetres, computed
with :func:`scipy.ndimage.distance_transform_edt` and the voxel spacing as ``sampling``.

Conventions
-----------
* :func:`dice` of two empty masks is 1.0 (both agree there is nothing); of one empty and one
  non-empty mask it is 0.0.
* :func:`hausdorff95` is NaN when either mask is empty (a distance to nothing is undefined);
  :func:`compare_masks` then gives the reason in :attr:`QCRow.note`, and :func:`summarise`
  counts such a region as a *missed* segmentation (reference non-empty, prediction empty) or a
  *false positive* (reference empty, prediction non-empty) instead of leaving it out silently.

HD95: two definitions are in use, and they differ (e.g. 11.9 vs 9.9 mm on the example in the
tests). GlioScope reports both, named:

* ``hd95_mm`` — **the BraTS definition** (the BraTS challenges' evaluation, CaPTk): the
  *maximum of the two directed* 95th percentiles, ``max(P95(d(A→B)), P95(d(B→A)))``. This is the
  number papers compare with, so it is the default everywhere GlioScope shows "HD95".
* ``hd95_pooled_mm`` — the 95th percentile of the *pooled* distances of both directions (as
  MedPy's ``hd95`` computes it); usually smaller than the BraTS value.

Distances are between the centres of surface voxels (foreground voxels with a 6-connected
background neighbour); percentiles use NumPy's linear interpolation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from gliocore.imaging.volume import spacing_from_affine
from gliocore.types import TUMOUR_CLASSES, PathType
from gliocore.versions import QC_VERSION  # noqa: F401  (re-exported: the QC stage's revision)

#: Name used in :class:`QCRow` for the union of both tumour classes.
WHOLE_TUMOUR = "whole_tumour"
#: HD95 definitions: ``brats`` (max of the directed 95th percentiles; the default) and
#: ``pooled`` (95th percentile of both directions' distances together).
HD95_METHODS = ("brats", "pooled")


@dataclass(frozen=True)
class QCRow:
    """Agreement between a predicted and a reference mask for one region.

    Attributes
    ----------
    region : str
        A :class:`~gliocore.types.TumourClass` value (``"contrast_enhancing"``,
        ``"non_enhancing"``) or ``"whole_tumour"``.
    dice : float
    hd95_mm : float
        HD95 by the BraTS definition (max of the directed 95th percentiles), mm; NaN when either
        mask is empty (see ``note``).
    volume_pred_mm3, volume_ref_mm3, volume_diff_mm3 : float
        ``volume_diff_mm3 = volume_pred_mm3 - volume_ref_mm3``.
    note : str
        Why a value is NaN, or ``""``.
    hd95_pooled_mm : float
        HD95 as the 95th percentile of the pooled distances (MedPy's ``hd95``), mm.
    """

    region: str
    dice: float
    hd95_mm: float
    volume_pred_mm3: float
    volume_ref_mm3: float
    volume_diff_mm3: float
    note: str = ""
    hd95_pooled_mm: float = math.nan

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D mask, got {arr.ndim}-D with shape {arr.shape}")
    return arr.astype(bool, copy=False)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_bool(a, "a"), _as_bool(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} != {b.shape}; resample one mask to the "
                         "other's grid first")
    return a, b


def _spacing(affine_or_spacing: np.ndarray | Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(affine_or_spacing, dtype=float)
    if arr.shape == (4, 4):
        return spacing_from_affine(arr)
    if arr.shape == (3,):
        if np.any(arr <= 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"voxel spacing must be positive and finite, got {tuple(arr)}")
        return tuple(float(v) for v in arr)  # type: ignore[return-value]
    raise ValueError(f"expected a (4, 4) affine or 3 voxel sizes, got an array of shape {arr.shape}")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two binary masks.

    Parameters
    ----------
    a, b : (I, J, K) array-like
        Non-zero voxels are foreground.

    Returns
    -------
    float
        1.0 when both are empty (they agree completely), 0.0 when exactly one is empty.
    """
    a, b = _check_pair(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with at least one 6-connected background neighbour (or on the border)."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1),
                                    border_value=0)
    return mask & ~eroded


def surface_distances(a: np.ndarray, b: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and back.

    Both masks must be non-empty. Distances are between voxel centres, with the voxel
    spacing as the sampling of :func:`scipy.ndimage.distance_transform_edt`.
    """
    a, b = _check_pair(a, b)
    sampling = _spacing(spacing)
    # Work inside the bounding box of both masks plus one voxel: every surface voxel lies in
    # it, and straight-line distances between points of a box stay in the box, so the result
    # is exact and whole-brain volumes cost little.
    idx = np.argwhere(a | b)
    if len(idx):
        lo = np.maximum(idx.min(axis=0) - 1, 0)
        hi = np.minimum(idx.max(axis=0) + 2, a.shape)
        box = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
        a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return dist_to_b[sa], dist_to_a[sb]


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | np.ndarray,
                method: str = "brats") -> float:
    """95th-percentile Hausdorff distance between the surfaces of two masks, in mm.

    Parameters
    ----------
    a, b : (I, J, K) array-like
        Binary masks on one grid.
    spacing : 3 floats or (4, 4) affine
        Voxel size in mm along i, j, k (or the affine it is taken from).
    method : {"brats", "pooled"}
        ``"brats"`` (default): the BraTS evaluation's definition, the maximum of the two
        directed 95th percentiles, ``max(P95(d(a→b)), P95(d(b→a)))``. ``"pooled"``: the 95th
        percentile of the distances of both directions pooled together (MedPy's ``hd95``).

    Returns
    -------
    float
        0.0 for identical masks; NaN when either mask is empty (the distance to an empty set
        is undefined).
    """
    if method not in HD95_METHODS:
        raise ValueError(f"unknown HD95 method {method!r}; use one of {', '.join(HD95_METHODS)}")
    a, b = _check_pair(a, b)
    if not a.any() or not b.any():
        return math.nan
    d_ab, d_ba = surface_distances(a, b, spacing)
    return _hd95(d_ab, d_ba, method)


def _hd95(d_ab: np.ndarray, d_ba: np.ndarray, method: str) -> float:
    if method == "pooled":
        return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def volume_mm3(mask: np.ndarray, affine_or_spacing: np.ndarray | Sequence[float]) -> float:
    """Foreground volume in mm³: voxel count times the voxel volume.

    Parameters
    ----------
    mask : (I, J, K) array-like
    affine_or_spacing : (4, 4) affine or 3 voxel sizes (mm)
        With an affine the voxel volume is ``|det(affine[:3, :3])|`` (exact for sheared
        grids too); with voxel sizes it is their product.
    """
    m = _as_bool(mask, "mask")
    arr = np.asarray(affine_or_spacing, dtype=float)
    if arr.shape == (4, 4):
        voxel = float(abs(np.linalg.det(arr[:3, :3])))
    else:
        voxel = float(np.prod(_spacing(arr)))
    return float(m.sum()) * voxel


def compare_masks(pred_canonical: np.ndarray, ref_canonical: np.ndarray,
                  affine: np.ndarray) -> list[QCRow]:
    """Compare a predicted canonical mask with a reference, per tumour class and overall.

    Parameters
    ----------
    pred_canonical, ref_canonical : (I, J, K) int arrays
        GlioScope canonical labels (1 = contrast-enhancing, 2 = non-enhancing).
    affine : (4, 4) array
        The grid's voxel-to-world transform (spacing and voxel volume come from it).

    Returns
    -------
    list of QCRow
        One row per :data:`~gliocore.types.TUMOUR_CLASSES` member, then ``whole_tumour``
        (any non-zero label).
    """
    pred = np.asarray(pred_canonical)
    ref = np.asarray(ref_canonical)
    if pred.shape != ref.shape:
        raise ValueError(f"predicted mask shape {pred.shape} != reference shape {ref.shape}; "
                         "resample the reference to the image grid first")
    spacing = _spacing(affine)
    regions = [(cls.value, pred == cls.canonical_label, ref == cls.canonical_label)
               for cls in TUMOUR_CLASSES]
    regions.append((WHOLE_TUMOUR, pred > 0, ref > 0))
    rows = []
    for name, p, r in regions:
        vp, vr = volume_mm3(p, affine), volume_mm3(r, affine)
        note = ""
        if not p.any() and not r.any():
            note = "both masks empty: Dice 1 by convention, HD95 undefined"
        elif not p.any():
            note = "prediction empty: HD95 undefined"
        elif not r.any():
            note = "reference empty: HD95 undefined"
        hd_brats = hd_pooled = math.nan
        if p.any() and r.any():
            d_pr, d_rp = surface_distances(p, r, spacing)
            hd_brats, hd_pooled = _hd95(d_pr, d_rp, "brats"), _hd95(d_pr, d_rp, "pooled")
        rows.append(QCRow(name, dice(p, r), hd_brats, vp, vr, vp - vr, note, hd_pooled))
    return rows


def outcome(volume_pred: float, volume_ref: float) -> str:
    """How a region's prediction relates to its reference when either may be empty.

    Returns
    -------
    str
        ``"scored"`` (both non-empty), ``"missed"`` (reference non-empty, prediction empty),
        ``"false positive"`` (reference empty, prediction non-empty) or ``"both empty"``.
    """
    has_p, has_r = bool(volume_pred and volume_pred > 0), bool(volume_ref and volume_ref > 0)
    if has_p and has_r:
        return "scored"
    if has_r:
        return "missed"
    if has_p:
        return "false positive"
    return "both empty"


def summarise(metrics: pd.DataFrame, group: str = "region") -> pd.DataFrame:
    """Per region: how many subjects, how many missed, and the medians over the scored ones.

    A region whose prediction is empty while the reference is not (a *missed* segmentation) has
    Dice 0 and no HD95. Leaving it out of the HD95 median would silently flatter the method, so
    the summary counts it: ``n_missed`` beside ``hd95_median_mm`` (over the ``n_scored``
    subjects where both masks are non-empty). ``dice_median`` is over every subject (a missed
    region counts with Dice 0).

    Parameters
    ----------
    metrics : DataFrame
        Columns ``subject_id``, ``region``, ``dice``, ``hd95_mm``, ``volume_pred_mm3``,
        ``volume_ref_mm3`` (``hd95_pooled_mm``, ``volume_diff_mm3`` when present).

    Returns
    -------
    DataFrame
        Index ``region``; columns ``subjects`` (``scans`` too when ``metrics`` has a
        ``scan_id`` column: one row per scan and region), ``n_scored``, ``n_missed``,
        ``n_false_positive``, ``n_both_empty``, ``dice_median``, ``dice_mean``,
        ``hd95_median_mm`` (BraTS definition), ``hd95_pooled_median_mm`` and
        ``volume_diff_median_mm3`` (when the inputs have them).
    """
    df = metrics.copy()
    df["outcome"] = [outcome(p, r) for p, r in zip(df["volume_pred_mm3"], df["volume_ref_mm3"])]
    scored = df["outcome"] == "scored"
    agg = {"subjects": ("subject_id", "nunique"),
           **({"scans": ("scan_id", "size")} if "scan_id" in df else {}),
           "n_scored": ("outcome", lambda o: int((o == "scored").sum())),
           "n_missed": ("outcome", lambda o: int((o == "missed").sum())),
           "n_false_positive": ("outcome", lambda o: int((o == "false positive").sum())),
           "n_both_empty": ("outcome", lambda o: int((o == "both empty").sum())),
           "dice_median": ("dice", "median"), "dice_mean": ("dice", "mean")}
    out = df.groupby(group, sort=False).agg(**agg)
    hd_cols = [("hd95_mm", "hd95_median_mm"), ("hd95_pooled_mm", "hd95_pooled_median_mm")]
    for col, name in hd_cols:
        if col in df:
            out[name] = df[scored].groupby(group, sort=False)[col].median().reindex(out.index)
    if "volume_diff_mm3" in df:
        out["volume_diff_median_mm3"] = df.groupby(group, sort=False)["volume_diff_mm3"].median()
    return out


def compare_mask_files(pairs: Mapping[str, tuple[PathType, PathType]]) -> pd.DataFrame:
    """Compare two segmentations of each subject (e.g. two backends), file by file.

    Parameters
    ----------
    pairs : mapping of subject ID -> (path A, path B)
        Canonical masks on the same grid; B plays the reference.

    Returns
    -------
    DataFrame
        One row per subject and region: ``subject_id``, ``region``, ``dice``, ``hd95_mm``
        (BraTS definition), ``hd95_pooled_mm``,
        ``volume_a_mm3``, ``volume_b_mm3``, ``volume_diff_mm3`` (A - B), ``note``. A subject
        whose files cannot be read gets one row with the error in ``note``.
    """
    from gliocore.imaging.io import load_volume
    rows: list[dict[str, object]] = []
    for sid, (path_a, path_b) in sorted(pairs.items()):
        try:
            a = load_volume(path_a, dtype=None)
            b = load_volume(path_b, dtype=None)
            if not np.allclose(a.affine, b.affine, atol=1e-3):
                raise ValueError("the two masks are on different grids")
            result = compare_masks(a.data, b.data, a.affine)
        except Exception as exc:  # report and go on with the other subjects
            rows.append({"subject_id": sid, "region": None, "note": f"{type(exc).__name__}: {exc}"})
            continue
        for r in result:
            rows.append({"subject_id": sid, "region": r.region, "dice": r.dice,
                         "hd95_mm": r.hd95_mm, "hd95_pooled_mm": r.hd95_pooled_mm,
                         "volume_a_mm3": r.volume_pred_mm3,
                         "volume_b_mm3": r.volume_ref_mm3, "volume_diff_mm3": r.volume_diff_mm3,
                         "note": r.note})
    return pd.DataFrame(rows, columns=["subject_id", "region", "dice", "hd95_mm", "hd95_pooled_mm",
                                       "volume_a_mm3",
                                       "volume_b_mm3", "volume_diff_mm3", "note"])


def majority_vote(masks: Sequence[np.ndarray], min_votes: int | None = None) -> np.ndarray:
    """Fuse label masks voxel-wise: the label with the most votes, if it has at least ``min_votes``.

    Parameters
    ----------
    masks : sequence of (I, J, K) int arrays
        Masks in one label convention (e.g. canonical), on one grid.
    min_votes : int, optional
        Votes a non-zero label needs; default a strict majority, ``len(masks) // 2 + 1``.

    Returns
    -------
    (I, J, K) ndarray
        Same dtype as the first mask. Voxels where no non-zero label has ``min_votes`` are 0.
        Ties between non-zero labels go to the smaller label value.
    """
    if len(masks) == 0:
        raise ValueError("majority_vote needs at least one mask")
    stack = np.stack([np.asarray(m) for m in masks])
    if stack.ndim != 4:
        raise ValueError(f"expected 3-D masks, got shape {stack.shape[1:]}")
    n = stack.shape[0]
    if min_votes is None:
        min_votes = n // 2 + 1
    if not 1 <= min_votes <= n:
        raise ValueError(f"min_votes must be between 1 and the number of masks ({n}), got {min_votes}")
    labels = [v for v in np.unique(stack) if v != 0]
    out = np.zeros(stack.shape[1:], dtype=stack.dtype)
    best = np.zeros(stack.shape[1:], dtype=np.int32)
    for value in sorted(labels):
        votes = (stack == value).sum(axis=0)
        win = (votes >= min_votes) & (votes > best)
        out[win] = value
        best[win] = votes[win]
    return out
