"""The PyRadiomics bridge: GlioScope's extractor subclass, extractor caches and SimpleITK images.

:class:`_Extractor` is PyRadiomics' ``RadiomicsFeatureExtractor`` with the faster, value-identical
shape (:mod:`gliocore.features.shape`) and binning (:mod:`gliocore.features.binning`);
:func:`_extractors` caches its shape/image/per-pass variants per parameter fingerprint;
:func:`_image_features` follows ``execute``'s steps to filter an image once for several labels;
:func:`_to_sitk` and :func:`stored_dtype` hand arrays to PyRadiomics as its reader would.
The extraction itself is :mod:`gliocore.features.radiomics`.

PyRadiomics' own logging is lowered to ERROR when this module is imported.
"""
from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics import imageoperations
from radiomics.featureextractor import RadiomicsFeatureExtractor

from gliocore.features.binning import binning_scope, feature_classes
from gliocore.features.laplacian import log_images
from gliocore.features.shape import HullShape
from gliocore.imaging.nrrd import RAS_TO_LPS
from gliocore.imaging.volume import spacing_from_affine
from gliocore.types import PathType

__all__ = ["stored_dtype"]

# PyRadiomics logs every step at INFO; keep only errors (setVerbosity sets its stderr handler,
# the logger level stops records from reaching the root logger of the application too).
radiomics.setVerbosity(logging.ERROR)
logging.getLogger("radiomics").setLevel(logging.ERROR)


class _Extractor(RadiomicsFeatureExtractor):
    """PyRadiomics' extractor with GlioScope's faster, value-identical parts.

    ``computeShape`` is PyRadiomics 3.0.1's, with ``RadiomicsShape`` replaced by ``HullShape``
    (same values; diameters from the convex hull instead of all vertex pairs).
    ``computeFeatures`` is PyRadiomics 3.0.1's, with the feature classes of
    :func:`gliocore.features.binning.feature_classes` (the image is discretised once for all classes).
    """

    def computeFeatures(self, image, mask, imageTypeName, **kwargs):  # noqa: N802
        out: dict[str, Any] = {}
        classes = feature_classes()
        with binning_scope():
            for class_name, feature_names in self.enabledFeatures.items():
                if class_name.startswith("shape") or class_name not in classes:
                    continue
                feature_class = classes[class_name](image, mask, **kwargs)
                for feature in feature_names or []:
                    feature_class.enableFeatureByName(feature)
                for name, value in feature_class.execute().items():
                    out[f"{imageTypeName}_{class_name}_{name}"] = value
        return out

    def computeShape(self, image, mask, boundingBox, **kwargs):  # noqa: N802 (PyRadiomics' name)
        out: dict[str, Any] = {}
        enabled = self.enabledFeatures
        cropped_image, cropped_mask = imageoperations.cropToTumorMask(image, mask, boundingBox)

        def compute(shape_type: str, cls: type) -> None:
            shape = cls(cropped_image, cropped_mask, **kwargs)
            for feature in enabled[shape_type] or []:
                shape.enableFeatureByName(feature)
            for name, value in shape.execute().items():
                out[f"original_{shape_type}_{name}"] = value

        nd = mask.GetDimension()
        if "shape" in enabled and nd == 3:
            compute("shape", HullShape)
        if "shape2D" in enabled:
            if nd == 3:
                dim = kwargs.get("force2Ddimension", 0)
                if kwargs.get("force2D", False) and (boundingBox[1::2] - boundingBox[0::2] + 1)[dim] > 1:
                    compute("shape2D", radiomics.getFeatureClasses()["shape2D"])
            elif nd == 2:
                compute("shape2D", radiomics.getFeatureClasses()["shape2D"])
        return out


def _make_extractor(params: dict) -> RadiomicsFeatureExtractor:
    p = copy.deepcopy(params)
    p.setdefault("setting", {})
    ex = _Extractor(p)
    ex.settings["additionalInfo"] = False  # no diagnostics, no per-call sitk.Hash
    return ex


@dataclass
class _Extractors:
    shape: RadiomicsFeatureExtractor | None      # shape classes only
    image: RadiomicsFeatureExtractor | None      # all other classes
    shape_per_sequence: bool
    #: The image part split by image type (LoG by sigma), in PyRadiomics' order: each pass gets
    #: the crop its filter needs (parameters restricted to that image type, for crop_margin).
    passes: list[tuple[RadiomicsFeatureExtractor, dict]]


_CACHE: dict[str, _Extractors] = {}
_CACHE_LOCK = threading.Lock()


def _variant(extractor: RadiomicsFeatureExtractor) -> RadiomicsFeatureExtractor:
    """A copy of ``extractor`` whose enabled features and image types can be replaced.

    Shallow: the settings are shared (nothing changes them after construction); building a new
    extractor would validate the parameter schema again (~0.3 s each).
    """
    ex = copy.copy(extractor)
    ex.settings = dict(extractor.settings)
    ex.enabledFeatures = dict(extractor.enabledFeatures)
    ex.enabledImagetypes = dict(extractor.enabledImagetypes)
    return ex


def _extractors(params: dict, fingerprint: str) -> _Extractors:
    with _CACHE_LOCK:
        cached = _CACHE.get(fingerprint)
    if cached is not None:
        return cached
    full = _make_extractor(params)
    enabled = full.enabledFeatures
    shape_part = {k: v for k, v in enabled.items() if k.startswith("shape")}
    other_part = {k: v for k, v in enabled.items() if not k.startswith("shape")}
    shape_ex = image_ex = None
    if shape_part:
        shape_ex = _variant(full)
        shape_ex.enabledFeatures = shape_part
        shape_ex.enabledImagetypes = {"Original": {}}  # shape is only computed on the original
    if other_part:
        image_ex = _variant(full)
        image_ex.enabledFeatures = other_part
    passes: list[tuple[RadiomicsFeatureExtractor, dict]] = []
    if image_ex is not None:
        for image_type, custom in image_ex.enabledImagetypes.items():
            custom = dict(custom or {})
            sigmas = custom.get("sigma", full.settings.get("sigma"))
            splits = ([dict(custom, sigma=[sg]) for sg in sigmas]
                      if image_type == "LoG" and sigmas else [custom])
            for c in splits:
                pass_ex = _variant(full)
                pass_ex.enabledFeatures = other_part
                pass_ex.enabledImagetypes = {image_type: c}
                passes.append((pass_ex, dict(params, imageType={image_type: c})))
    s = full.settings
    per_seq = bool(s.get("resegmentShape", False) and s.get("resegmentRange") is not None)
    ex = _Extractors(shape_ex, image_ex, per_seq, passes)
    with _CACHE_LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[fingerprint] = ex
    return ex


_NAMES_CACHE: dict[str, tuple[list[str], list[str]] | None] = {}


def _feature_names(params: dict, fingerprint: str) -> tuple[list[str], list[str]] | None:
    """(shape names, per-image names) that ``params`` produce, or None if they cannot be found.

    Found by running the same extractors on a small synthetic volume (20³ voxels, a 8³ cube),
    once per parameter set.
    """
    if fingerprint in _NAMES_CACHE:
        return _NAMES_CACHE[fingerprint]
    names: tuple[list[str], list[str]] | None
    try:
        rng = np.random.default_rng(0)
        data = rng.integers(0, 200, size=(20, 20, 20)).astype(np.float32)
        mask = np.zeros((20, 20, 20), dtype=np.uint8)
        mask[6:14, 6:14, 6:14] = 1
        ex = _extractors(params, fingerprint)
        img, msk = _to_sitk(data, np.eye(4)), _to_sitk(mask, np.eye(4))
        shape_names = list(ex.shape.execute(img, msk, label=1)) if ex.shape else []
        other_names = list(ex.image.execute(img, msk, label=1)) if ex.image else []
        names = (shape_names, other_names)
    except Exception:  # e.g. resegmentation empties the synthetic ROI
        names = None
    _NAMES_CACHE[fingerprint] = names
    return names


def _to_sitk(data: np.ndarray, affine: np.ndarray,
             start: tuple[int, int, int] = (0, 0, 0)) -> sitk.Image:
    """SimpleITK image from an (i, j, k) array and its RAS affine; ``start`` = index of data[0,0,0].

    The array is transposed to ITK's (k, j, i) order; spacing, direction and origin follow
    SimpleITK's NIfTI reader (LPS+).
    """
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    a = np.asarray(affine, dtype=float)
    spacing = np.asarray(spacing_from_affine(a))
    lps = RAS_TO_LPS @ a[:3, :3]
    direction = lps / spacing[None, :]
    origin = lps @ np.asarray(start, dtype=float) + RAS_TO_LPS @ a[:3, 3]
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img


_SITK_TO_NUMPY = {
    sitk.sitkUInt8: np.uint8, sitk.sitkInt8: np.int8, sitk.sitkUInt16: np.uint16,
    sitk.sitkInt16: np.int16, sitk.sitkUInt32: np.uint32, sitk.sitkInt32: np.int32,
    sitk.sitkUInt64: np.uint64, sitk.sitkInt64: np.int64, sitk.sitkFloat32: np.float32,
    sitk.sitkFloat64: np.float64,
}


def stored_dtype(path: PathType | None) -> np.dtype | None:
    """The numpy type of the voxels SimpleITK's reader (hence PyRadiomics) gives for ``path``.

    Only the header is read. None when there is no file, it cannot be read, or the type is not a
    scalar type.
    """
    if path is None or not Path(path).is_file():
        return None
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dtype = _SITK_TO_NUMPY.get(reader.GetPixelID())
    except Exception:  # unreadable header: the caller's data are used as they are
        return None
    return None if dtype is None else np.dtype(dtype)


def _as_stored(data: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    """``data`` in the file's stored type when that conversion loses nothing, else unchanged.

    Volumes are usually loaded as float32; filters (wavelets, resampling interpolators) compute
    in the input's precision, so PyRadiomics' values on the file are only reproduced when the
    image reaches it with the type it would have read.
    """
    if dtype is None or data.dtype == dtype:
        return data
    cast = data.astype(dtype)
    if np.array_equal(cast, data):
        return cast
    return data



def _image_features(extractor: RadiomicsFeatureExtractor, image: sitk.Image, mask: sitk.Image,
                    boxes: Mapping[int, np.ndarray | Exception]) -> dict[int, dict | Exception]:
    """``extractor.execute(image, mask, label)`` for several labels, filtering the image once.

    The steps of PyRadiomics 3.0.1's ``execute`` after ``checkMask`` (the image type generators,
    ``cropToTumorMask``, ``computeFeatures``) in the same order, valid when nothing before the
    filters depends on the label: no normalisation, resampling, pre-crop or resegmentation, and
    image types whose generators ignore the mask (see :func:`_one_pass`). ``boxes`` holds each
    label's ``checkMask`` bounding box in this image's index frame (or the error ``checkMask``
    raised): ``checkMask`` only looks at the mask and the geometry, which are the same for every
    sequence and crop, so the caller runs it once per label. The derived images are computed
    once and each label's features are computed on them; LoG images only on the box covering
    the labels' boxes (:func:`gliocore.features.laplacian.log_images`: the same values there).
    """
    settings = extractor.settings.copy()
    out: dict[int, dict | Exception] = {lab: (bb if isinstance(bb, Exception) else {})
                                        for lab, bb in boxes.items()}
    labels = list(boxes)
    found = [bb for bb in boxes.values() if not isinstance(bb, Exception)]
    for image_type, custom in extractor.enabledImagetypes.items():
        args = dict(settings, label=labels[0])
        args.update(custom)
        on_mask, on_boxes = mask, boxes
        if image_type == "LoG" and found:
            # Only the labels' boxes are read: filter there (same values, see gliocore.features.laplacian).
            lower = np.min([bb[0::2] for bb in found], axis=0)
            upper = np.max([bb[1::2] for bb in found], axis=0)
            derived_images = log_images(image, lower, upper, **args)
            on_mask = sitk.RegionOfInterest(mask, [int(v) for v in upper - lower + 1],
                                            [int(v) for v in lower])
            on_boxes = {lab: bb if isinstance(bb, Exception) else bb - np.repeat(lower, 2)
                        for lab, bb in boxes.items()}
        else:
            derived_images = getattr(imageoperations, f"get{image_type}Image")(image, mask, **args)
        for derived, name, kwargs in derived_images:
            for label in labels:
                res = out[label]
                if isinstance(res, Exception):
                    continue
                try:
                    ci, cm = imageoperations.cropToTumorMask(derived, on_mask, on_boxes[label],
                                                             padDistance=0)
                    res.update(extractor.computeFeatures(ci, cm, name,
                                                         **dict(kwargs, label=label)))
                except Exception as exc:  # noqa: BLE001 -- reported per label, like execute's
                    out[label] = exc
    return out


def _one_pass(params: dict) -> bool:
    """Whether :func:`_image_features` reproduces ``execute`` for ``params`` (see there)."""
    setting = params.get("setting") or {}
    if setting.get("normalize") or setting.get("preCrop") or setting.get("resegmentRange") is not None:
        return False
    if setting.get("resampledPixelSpacing") is not None and setting.get("interpolator", "sitkBSpline") is not None:
        return False
    return all(t in ("Original", "LoG", "Wavelet") for t in (params.get("imageType") or {"Original": {}}))
