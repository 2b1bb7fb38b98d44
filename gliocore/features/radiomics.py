"""Radiomics: PyRadiomics feature extraction on GlioScope's canonical masks, fast and value-identical.

The public entry point is :func:`extract_features`. It takes the volumes of one subject (already
loaded by the caller, each once) and GlioScope's canonical mask (1 = contrast-enhancing,
2 = non-enhancing) and returns one :class:`FeatureValue` per (tumour class, sequence, feature).
The values are those of ``radiomics.featureextractor.RadiomicsFeatureExtractor.execute`` run on
the same NIfTI files with the same parameters; only the work around the computation is cut:

* **Shape once per label.** Shape features depend on the mask and the voxel spacing, never on
  intensities, so they are computed once per label (``sequence == ''``) and not once per sequence.
  (Exception: with ``resegmentShape: true`` and a ``resegmentRange`` the shape mask depends on
  the intensities; shape is then computed per sequence and reported with that sequence.)
* **Shape from the convex hull.** PyRadiomics' 3-D shape class computes the maximum diameters by
  comparing every pair of mesh vertices (quadratic: most of the time on a large tumour). The
  extractor here uses :class:`gliocore.features.shape.HullShape`, which computes the same mesh and the same
  diameters from the vertices' convex hull, bit-identical (see :mod:`gliocore.features.shape`).
* **Discretise once.** PyRadiomics bins the image inside the ROI in every feature class's
  constructor (six times with all classes), taking the minimum and maximum with Python's
  element-wise ``min``/``max``; the extractor here uses the classes of
  :func:`gliocore.features.binning.feature_classes`, which bin once per image and ROI (same values).
* **Texture matrices from the ROI's geometry.** The GLCM, GLRLM, GLDM and NGTDM are computed by
  :mod:`gliocore.features.texture` from the ROI's neighbour pairs and lines, found once per ROI and shared
  by all its images (the original, LoG, wavelet bands), instead of PyRadiomics' C walk through
  the bounding box per image: the same arrays bit for bit, fed to PyRadiomics' own code.
* **No provenance.** ``additionalInfo`` is forced off, which skips PyRadiomics' diagnostics,
  among them the ``sitk.Hash`` of every image and mask on every call.
* **Crop before building SimpleITK images.** Each label is cropped to its bounding box plus
  ``margin`` voxels (clipped at the volume's edges) before the arrays become SimpleITK images.
  For the ``Original`` image type without normalisation or resampling this cannot change a value:
  PyRadiomics itself crops to the bounding box (no padding) before computing any feature, the
  grey-level discretisation uses only the voxels inside the ROI, and every texture matrix only
  looks at voxels inside the ROI. The crop keeps the physical origin, so the geometry is the same.
  Filters get the margin their support needs (:func:`gliocore.features.params.crop_margin`):
  ``Wavelet`` the filter
  length times the number of levels (exact: each output voxel depends on input voxels at most
  that far away, and along an axis where the margin would pass the image's edge the whole axis
  is kept, so the periodic extension is the same as on the whole image); ``LoG`` (ITK's recursive
  Gaussian, infinite support) :data:`gliocore.features.params.LOG_MARGIN_SIGMAS` sigmas, which
  keeps every value within
  float32 round-off of the whole-image filter (features within 1e-9 relative, tested on real
  cases). The whole image is used (exactly as PyRadiomics would get it from the file) with
  ``normalize: true`` (whole-image mean/SD), resampling (ITK's B-spline pre-filter sees the whole
  image), ``preCrop`` and the other image types (``Square``/``SquareRoot``/``Logarithm``/
  ``Exponential`` are scaled by the whole image's maximum; ``Gradient``/``LBP`` not examined).
* **LoG only where it is read.** ITK's LoG is nine one-dimensional recursive passes; features
  read it only inside the labels' boxes, so each pass's output is cut to the box along the axis
  it has just filtered (:mod:`gliocore.features.laplacian`: the same float32 values, about a third of
  the work on the 20-sigma crop).
* **Filter once for both classes.** When nothing before the filters depends on the label (no
  normalisation, resampling, pre-crop or resegmentation; image types Original/LoG/Wavelet), each
  derived image (each LoG sigma, the wavelet bands) is computed once per sequence, on the crop
  covering both classes, and both classes' features are computed from it, following the steps of
  PyRadiomics' ``execute`` (see :func:`gliocore.features.pyradiomics_bridge._image_features`).

Stored types. Each image reaches PyRadiomics with the voxel type SimpleITK reads from its file
(``Volume.path``, header only, see :func:`gliocore.features.pyradiomics_bridge.stored_dtype`),
converted back losslessly from the
float32 the pipeline loads: wavelets and resampling interpolators compute in the input's
precision, so only then are filtered or resampled values those of PyRadiomics on the file.

Geometry. ``Volume.data`` is in nibabel's voxel order (i, j, k) with a RAS+ affine; SimpleITK
arrays are (k, j, i) and ITK's physical space is LPS+. Images are built with spacing from
:func:`gliocore.imaging.volume.spacing_from_affine`, direction ``diag(-1, -1, 1) @ A[:3, :3] / spacing`` and
origin ``diag(-1, -1, 1) @ A[:3, 3]`` (moved to the crop's first voxel), which is what
SimpleITK's NIfTI reader produces for the same file. All images of a subject are given the mask's
affine (the caller has checked that the sequences share one grid, see
:func:`gliocore.imaging.volume.check_same_grid`).

Failure handling. An empty label or a label of one voxel (PyRadiomics raises for both) gives
``FeatureValue(value=None, reason=...)`` for every feature of that label; the other label is still
computed. The feature names of such rows are the names the parameters would have produced
(found once per parameter set by running PyRadiomics on a small synthetic volume); if even that
fails, a single placeholder row with ``feature == '*'`` per class and sequence carries the reason.
A feature PyRadiomics returns as NaN becomes ``value=None`` with a reason.

Settings live in :mod:`gliocore.features.params`, the extractor subclass, its caches and the
SimpleITK conversion in :mod:`gliocore.features.pyradiomics_bridge`; PyRadiomics' own logging is
lowered to ERROR when they are imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
from radiomics import imageoperations
from radiomics.featureextractor import RadiomicsFeatureExtractor

from gliocore.errors import FeatureExtractionError, GeometryMismatchError
from gliocore.features.params import crop_margin, load_params, params_fingerprint
from gliocore.features.pyradiomics_bridge import (_as_stored, _Extractors, _extractors,
                                                  _feature_names, _image_features, _one_pass,
                                                  _to_sitk, stored_dtype)
from gliocore.imaging.nrrd import volume_from_sitk
from gliocore.imaging.volume import AFFINE_ATOL, Volume, spacing_from_affine
from gliocore.types import TUMOUR_CLASSES, PathType, TumourClass

__all__ = ["FeatureValue", "extract_features", "extract_features_from_files"]


@dataclass(frozen=True)
class FeatureValue:
    """One radiomics feature of one tumour class (and one sequence).

    Attributes
    ----------
    tumour_class : TumourClass
        The class whose canonical label was used as the ROI.
    sequence : str
        Canonical sequence key (``'t1'``, ``'t1c'``, ``'t2'``, ``'flair'``), or ``''`` for shape
        features, which do not depend on the image.
    feature : str
        PyRadiomics key, e.g. ``'original_shape_MeshVolume'``, ``'wavelet-LLH_glcm_Contrast'``;
        ``'*'`` for a placeholder row standing for all features of a failed extraction.
    value : float or None
        The feature value; None when it could not be computed.
    reason : str or None
        Why ``value`` is None (``'label empty'``, ``'label has 1 voxel'``, an exception text).
    """

    tumour_class: TumourClass
    sequence: str
    feature: str
    value: float | None
    reason: str | None = None


def _bbox(mask_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive lower and upper indices of the True voxels along each axis."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask_label.any(axis=other))
        lo.append(idx[0])
        hi.append(idx[-1])
    return np.array(lo), np.array(hi)


def _as_float(value: Any) -> tuple[float | None, str | None]:
    arr = np.asarray(value, dtype=float)
    if arr.size != 1:
        return None, f"PyRadiomics returned {arr.size} values"
    v = float(arr.reshape(-1)[0])
    if not np.isfinite(v):
        return None, f"not computable (PyRadiomics returned {v})"
    return v, None


def _missing_rows(names: tuple[list[str], list[str]] | None, sequences: list[str],
                  shape_wanted: bool, image_wanted: bool, shape_per_seq: bool,
                  reason: str) -> list[tuple[str, str, float | None, str | None]]:
    rows: list[tuple[str, str, float | None, str | None]] = []
    shape_names, image_names = names if names is not None else (["*"] if shape_wanted else [],
                                                                  ["*"] if image_wanted else [])
    if not shape_per_seq:
        rows += [("", n, None, reason) for n in shape_names]
    for seq in sequences:
        if shape_per_seq:
            rows += [(seq, n, None, reason) for n in shape_names]
        rows += [(seq, n, None, reason) for n in image_names]
    return rows


Row = tuple[str, str, "float | None", "str | None"]


def _crop_region(rois: list[np.ndarray], shape: tuple[int, ...], margin: int,
                 need: np.ndarray, wraps: bool = False
                 ) -> tuple[tuple[slice, ...], tuple[int, int, int]]:
    """Slices of the union of the ROIs' bounding boxes plus the margins, and the start index.

    ``need`` is the margin a filter needs per axis (:func:`crop_margin`). A crop that reaches an
    edge of the image keeps that edge, so a filter that handles each edge locally (ITK's
    recursive Gaussian extends the edge value) sees it as on the whole image. With ``wraps``
    (wavelets: periodic extension, the values past one edge come from the opposite one), the
    whole axis is kept along an axis where ``need > 0`` and the margin would pass an edge.
    """
    los, his = zip(*(_bbox(r) for r in rois))
    lo, hi = np.min(los, axis=0), np.max(his, axis=0)
    sl, start = [], []
    for axis in range(3):
        m = max(int(margin), int(need[axis]), 1)
        a, b = int(lo[axis]) - m, int(hi[axis]) + m
        if wraps and need[axis] > 0 and (a < 0 or b > shape[axis] - 1):
            a, b = 0, shape[axis] - 1
        a, b = max(a, 0), min(b, shape[axis] - 1)
        sl.append(slice(a, b + 1))
        start.append(a)
    return tuple(sl), (start[0], start[1], start[2])


_WHOLE: tuple[tuple[slice, ...], tuple[int, int, int]] = ((slice(None),) * 3, (0, 0, 0))


@dataclass
class _Labels:
    """One subject's label extraction: its inputs, extractors, ROIs and the rows found so far."""

    images: Mapping[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray
    params: dict
    fingerprint: str
    margin: int
    dtypes: Mapping[str, np.dtype | None]
    ex: _Extractors
    sequences: list[str]
    out: dict[int, list[Row]]
    rois: dict[int, np.ndarray]
    need: np.ndarray | None

    def region(self, which: list[int]) -> tuple[tuple[slice, ...], tuple[int, int, int]]:
        """Crop of the labels ``which`` with the margin ``params`` need (whole image if none)."""
        if self.need is None:
            return _WHOLE
        return _crop_region([self.rois[lab] for lab in which], self.mask.shape, self.margin,
                            self.need, wraps="Wavelet" in (self.params.get("imageType") or {}))

    def sitk_image(self, seq: str, sl: tuple[slice, ...], start: tuple[int, int, int]) -> sitk.Image:
        return _to_sitk(_as_stored(self.images[seq][sl], self.dtypes.get(seq)), self.affine, start)

    def failed(self, label: int, seq: str, what: str, exc: Exception) -> None:
        """Rows without values for the ``what`` ('shape' or 'image') features of one label."""
        msg = f"{type(exc).__name__}: {exc}"
        names = _feature_names(self.params, self.fingerprint)
        pick = None if names is None else (names[0] if what == "shape" else names[1])
        self.out[label].extend((seq, f, None, msg) for f in (pick or ["*"]))

    def add(self, label: int, seq: str, result: Mapping[str, Any]) -> None:
        for key, value in result.items():
            if not key.startswith("diagnostics_"):
                v, why = _as_float(value)
                self.out[label].append((seq, key, v, why))

    def run(self, extractor: RadiomicsFeatureExtractor, image: sitk.Image, sitk_mask: sitk.Image,
            label: int, seq: str, what: str) -> None:
        try:
            result = extractor.execute(image, sitk_mask, label=label)
        except Exception as exc:  # PyRadiomics raises ValueError/RuntimeError on bad ROIs
            self.failed(label, seq, what, exc)
            return
        self.add(label, seq, result)


def _filter_once(job: _Labels) -> dict[str, dict[int, dict | Exception]]:
    """Image features of every sequence and label, each derived image filtered once for all labels.

    The one-pass case (see :func:`gliocore.features.pyradiomics_bridge._one_pass`): each image
    type (LoG sigma) on the crop its own filter needs.
    """
    ex, mask, affine, margin, rois = job.ex, job.mask, job.affine, job.margin, job.rois
    per_seq: dict[str, dict[int, dict | Exception]] = {}
    spacing = spacing_from_affine(np.asarray(affine, dtype=float))
    # checkMask once per label (on its own box): its bounding box in whole-image indices.
    found: dict[int, np.ndarray | Exception] = {}
    for label, roi in rois.items():
        sl, start = _crop_region([roi], mask.shape, margin, np.zeros(3, int))
        try:
            bb, _ = imageoperations.checkMask(
                job.sitk_image(job.sequences[0], sl, start), _to_sitk(mask[sl], affine, start),
                **dict(ex.image.settings, label=label))
            found[label] = bb + np.repeat(start, 2)
        except Exception as exc:  # noqa: BLE001 -- the label's reason
            found[label] = exc
    for pass_ex, pass_params in ex.passes:
        pass_need = crop_margin(pass_params, spacing)
        sl, start = (_WHOLE if pass_need is None else
                     _crop_region(list(rois.values()), mask.shape, margin, pass_need,
                                  wraps="Wavelet" in pass_params["imageType"]))
        sitk_mask = _to_sitk(mask[sl], affine, start)
        boxes = {lab: bb if isinstance(bb, Exception) else bb - np.repeat(start, 2)
                 for lab, bb in found.items()}
        for seq in job.sequences:
            got = _image_features(pass_ex, job.sitk_image(seq, sl, start), sitk_mask, boxes)
            acc = per_seq.setdefault(seq, {lab: {} for lab in rois})
            for lab, res in got.items():
                if isinstance(acc[lab], Exception):
                    continue
                if isinstance(res, Exception):
                    acc[lab] = res
                else:
                    acc[lab].update(res)
    return per_seq


def _label_rows(job: _Labels, label: int, one_pass: bool,
                per_seq: dict[str, dict[int, dict | Exception]]) -> None:
    """Shape rows, then per sequence the image rows, of one non-empty label (into ``job.out``)."""
    ex, mask, affine = job.ex, job.mask, job.affine
    # Shape: the label's own box (exact: the mask is all it uses), unless resampling etc.
    sl, start = _WHOLE if job.need is None else _crop_region([job.rois[label]], mask.shape,
                                                             job.margin, np.zeros(3, int))
    sitk_mask = _to_sitk(mask[sl], affine, start)
    if ex.shape is not None and not ex.shape_per_sequence:
        # Shape depends on the mask and spacing only; any image on the grid will do.
        shape_img = (job.sitk_image(job.sequences[0], sl, start) if job.sequences
                     else _to_sitk(np.zeros(mask[sl].shape, np.float32), affine, start))
        job.run(ex.shape, shape_img, sitk_mask, label, "", "shape")
    if ex.image is None and not ex.shape_per_sequence:
        return
    if not one_pass:
        sl, start = job.region([label])
        sitk_mask = _to_sitk(mask[sl], affine, start)
    for seq in job.sequences:
        if one_pass:
            res = per_seq[seq][label]
            if isinstance(res, Exception):
                job.failed(label, seq, "image", res)
            else:
                job.add(label, seq, res)
            continue
        img = job.sitk_image(seq, sl, start)
        if ex.shape is not None and ex.shape_per_sequence:
            job.run(ex.shape, img, sitk_mask, label, seq, "shape")
        if ex.image is not None:
            job.run(ex.image, img, sitk_mask, label, seq, "image")


def _extract_labels(images: Mapping[str, np.ndarray], mask: np.ndarray, affine: np.ndarray,
                    labels: list[int], params: dict, fingerprint: str, margin: int,
                    dtypes: Mapping[str, np.dtype | None] | None = None) -> dict[int, list[Row]]:
    """Rows (sequence, feature, value, reason) for each integer label of ``mask``.

    ``dtypes`` maps a sequence to the type PyRadiomics would read from its file (see
    :func:`gliocore.features.pyradiomics_bridge.stored_dtype`); images are converted to it
    (losslessly) before they reach PyRadiomics.
    """
    dtypes = dtypes or {}
    ex = _extractors(params, fingerprint)
    sequences = list(images)
    out: dict[int, list[Row]] = {}
    rois: dict[int, np.ndarray] = {}
    for label in labels:
        roi = mask == label
        n = int(np.count_nonzero(roi))
        reason = "label empty" if n == 0 else "label has 1 voxel" if n == 1 else None
        if reason is not None:
            out[label] = _missing_rows(_feature_names(params, fingerprint), sequences,
                                       ex.shape is not None, ex.image is not None,
                                       ex.shape_per_sequence, reason)
        else:
            rois[label] = roi
            out[label] = []
    if not rois:
        return out
    need = crop_margin(params, spacing_from_affine(np.asarray(affine, dtype=float)))
    job = _Labels(images, mask, affine, params, fingerprint, margin, dtypes, ex, sequences, out,
                  rois, need)
    one_pass = (ex.image is not None and bool(sequences) and not ex.shape_per_sequence
                and _one_pass(params))
    # Derived images of each sequence, filtered once for all labels (one-pass case).
    per_seq = _filter_once(job) if one_pass else {}
    for label in rois:
        _label_rows(job, label, one_pass, per_seq)
    return out


def _check_inputs(images: Mapping[str, Volume], mask: np.ndarray, affine: np.ndarray) -> None:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise GeometryMismatchError(f"mask must be 3-D, got {mask.ndim}-D")
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise GeometryMismatchError(f"affine must be 4x4, got {aff.shape}")
    for name, vol in images.items():
        if tuple(vol.shape) != tuple(mask.shape):
            raise GeometryMismatchError(
                f"{name} shape {vol.shape} != mask shape {tuple(mask.shape)}"
                + (f" ({vol.path})" if vol.path else "") + "; resample the mask first")
        if not np.allclose(vol.affine, aff, atol=AFFINE_ATOL):
            raise GeometryMismatchError(
                f"{name} affine differs from the mask affine by up to "
                f"{np.abs(vol.affine - aff).max():.4g}" + (f" ({vol.path})" if vol.path else "")
                + "; co-register and resample to one grid first")


def extract_features(images: Mapping[str, Volume], mask: np.ndarray, affine: np.ndarray,
                     params: dict | None = None, margin: int = 5) -> list[FeatureValue]:
    """Radiomics features of each tumour class, shape once per class, the rest per sequence.

    Parameters
    ----------
    images : mapping of str to Volume
        Canonical sequence key -> volume, all on the mask's grid. ``Volume.data`` is used as is
        (its dtype too: load with the dtype PyRadiomics would read from the file for
        bit-identical results; float32 holds every int16 value exactly).
    mask : (I, J, K) integer ndarray
        GlioScope canonical mask: 1 = contrast-enhancing, 2 = non-enhancing, 0 = background.
    affine : (4, 4) ndarray
        Voxel-to-RAS affine of the mask (used for every image). Pass it as read from the file
        (``Volume.affine``): NIfTI stores it in float32, and SimpleITK's spacing comes from the
        same float32 numbers, so a float64 affine from elsewhere (e.g. 0.9 instead of
        float32(0.9)) changes spacing-dependent features (shape) in the 8th digit.
    params : dict, optional
        PyRadiomics parameters (see :func:`gliocore.features.params.load_params`); None for
        :data:`gliocore.features.params.DEFAULT_PARAMS`.
    margin : int
        Voxels kept around each label's bounding box when cropping (crop is used only where it
        is exact, see :func:`gliocore.features.params.crop_is_exact`); at least 1 is used
        (PyRadiomics needs a
        background voxel in the mask). Values do not depend on it.

    Returns
    -------
    list of FeatureValue
        For each class in :data:`gliocore.types.TUMOUR_CLASSES`: shape rows (``sequence ''``)
        then, per sequence in ``images`` order, the other features in PyRadiomics' order.

    Raises
    ------
    GeometryMismatchError
        When an image's shape or affine disagrees with the mask's.
    ValueError
        When ``params`` are invalid.
    """
    params = load_params(params)
    _check_inputs(images, mask, affine)
    fp = params_fingerprint(params)
    mask = np.asarray(mask)
    arrays = {name: vol.data for name, vol in images.items()}
    dtypes = {name: stored_dtype(vol.path) for name, vol in images.items()}
    out: list[FeatureValue] = []
    rows = _extract_labels(arrays, mask, affine, [c.canonical_label for c in TUMOUR_CLASSES],
                           params, fp, margin, dtypes)
    for cls in TUMOUR_CLASSES:
        for seq, feat, value, reason in rows[cls.canonical_label]:
            out.append(FeatureValue(cls, seq, feat, value, reason))
    return out


def extract_features_from_files(image_path: PathType, mask_path: PathType,
                                params: None | str | Path | dict = None, label: int = 1,
                                margin: int = 5) -> dict[str, float | None]:
    """Features of one label of any SimpleITK-readable image/mask pair (NIfTI, NRRD, ...).

    The files are read with SimpleITK (as PyRadiomics would), converted to (i, j, k) arrays and a
    RAS affine with :func:`volume_from_sitk`, and go through the same extraction code as
    :func:`extract_features`. Used by the validation against PyRadiomics' baselines.

    Returns
    -------
    dict of str to float or None
        PyRadiomics feature key -> value (shape and image features together).

    Raises
    ------
    FeatureExtractionError
        When the label cannot be extracted (empty, one voxel, PyRadiomics error).
    """
    params = load_params(params)
    image = volume_from_sitk(sitk.ReadImage(str(image_path)), Path(image_path))
    mask_img = sitk.ReadImage(str(mask_path))
    mask = volume_from_sitk(mask_img, Path(mask_path))
    if image.shape != mask.shape:
        raise GeometryMismatchError(f"image {image_path} shape {image.shape} != mask {mask_path} "
                                    f"shape {mask.shape}; resample the mask first")
    rows = _extract_labels({"image": image.data}, mask.data, mask.affine, [int(label)], params,
                           params_fingerprint(params), margin,
                           {"image": stored_dtype(image_path)})[int(label)]
    if not rows or all(v is None for _, _, v, _ in rows):
        reason = rows[0][3] if rows else "no features enabled"
        raise FeatureExtractionError(f"label {label} of {mask_path}: {reason}")
    return {f: v for _, f, v, _ in rows}
