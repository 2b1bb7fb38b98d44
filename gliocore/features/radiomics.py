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
  Filters get the margin their support needs (:func:`crop_margin`): ``Wavelet`` the filter
  length times the number of levels (exact: each output voxel depends on input voxels at most
  that far away, and along an axis where the margin would pass the image's edge the whole axis
  is kept, so the periodic extension is the same as on the whole image); ``LoG`` (ITK's recursive
  Gaussian, infinite support) :data:`LOG_MARGIN_SIGMAS` sigmas, which keeps every value within
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
  PyRadiomics' ``execute`` (see :func:`_image_features`).

Stored types. Each image reaches PyRadiomics with the voxel type SimpleITK reads from its file
(``Volume.path``, header only, see :func:`stored_dtype`), converted back losslessly from the
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

PyRadiomics' own logging is lowered to ERROR when this module is imported.
"""
from __future__ import annotations

import copy
import hashlib
import json
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

from gliocore.errors import FeatureExtractionError, GeometryMismatchError
from gliocore.imaging.nrrd import RAS_TO_LPS, volume_from_sitk
from gliocore.imaging.volume import AFFINE_ATOL, Volume, spacing_from_affine
from gliocore.features.binning import binning_scope, feature_classes
from gliocore.features.laplacian import log_images
from gliocore.features.shape import HullShape
from gliocore.types import TUMOUR_CLASSES, PathType, TumourClass

__all__ = [
    "DEFAULT_PARAMS",
    "FEATURE_CODE_VERSION",
    "FeatureValue",
    "load_params",
    "params_fingerprint",
    "extract_features",
    "extract_features_from_files",
    "crop_is_exact",
    "crop_margin",
    "LOG_MARGIN_SIGMAS",
    "stored_dtype",
    "volume_from_sitk",
]

# PyRadiomics logs every step at INFO; keep only errors (setVerbosity sets its stderr handler,
# the logger level stops records from reaching the root logger of the application too).
radiomics.setVerbosity(logging.ERROR)
logging.getLogger("radiomics").setLevel(logging.ERROR)

#: The seed notebook's feature set: per label shape MeshVolume and Maximum3DDiameter; per sequence
#: and label first-order Mean and Variance and GLDM GrayLevelNonUniformity. Everything else is
#: PyRadiomics' default (binWidth 25, no resampling, no normalisation), written out here.
DEFAULT_PARAMS: dict = {
    "imageType": {"Original": {}},
    "featureClass": {
        "shape": ["MeshVolume", "Maximum3DDiameter"],
        "firstorder": ["Mean", "Variance"],
        "gldm": ["GrayLevelNonUniformity"],
    },
    "setting": {"binWidth": 25},
}

#: Version of GlioScope's own feature-extraction code (this module, shape, binning, texture). It is part
#: of :func:`params_fingerprint`, hence of every feature cache key: bump it whenever a change here
#: can change a value, so that a fixed wrapper never keeps serving values cached by the old one.
FEATURE_CODE_VERSION = "5"

#: Top-level keys of a PyRadiomics parameter file.
_PARAM_KEYS = ("imageType", "featureClass", "setting", "voxelSetting")


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


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

def load_params(params: None | str | Path | dict) -> dict:
    """Return a validated PyRadiomics parameter dictionary.

    Parameters
    ----------
    params : None, str, Path or dict
        None for a deep copy of :data:`DEFAULT_PARAMS`; a path to a PyRadiomics YAML (or JSON)
        parameter file; or a dict in the same structure (``imageType``, ``featureClass``,
        ``setting``, ``voxelSetting``).

    Returns
    -------
    dict
        A new dict (the input is not modified), validated against PyRadiomics' schema, with
        feature class, feature and image type names checked.

    Raises
    ------
    ValueError
        With the file name (when given a path) and what is wrong: missing or empty file,
        YAML syntax error, not a mapping, unknown key, schema violation, unknown feature.
    """
    if params is None:
        return copy.deepcopy(DEFAULT_PARAMS)
    if isinstance(params, Mapping):
        return _validate_params(copy.deepcopy(dict(params)), source="parameter dict")
    if isinstance(params, (str, Path)):
        path = Path(params)
        where = f"radiomics parameter file {path}"
        if not path.exists():
            raise ValueError(f"{where} does not exist")
        if path.is_dir():
            raise ValueError(f"{where} is a directory; expected a YAML file")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"{where} is empty; expected a YAML mapping with imageType, "
                             "featureClass and setting")
        import yaml  # PyYAML, a PyRadiomics dependency

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{where} is not valid YAML: {exc}") from exc
        if data is None:
            raise ValueError(f"{where} holds no parameters (only comments?)")
        return _validate_params(data, source=where)
    raise TypeError(f"params must be None, a path or a dict, got {type(params).__name__}")


_SCHEMA_OK: set[str] = set()


def _validate_params(data: Any, source: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with keys {', '.join(_PARAM_KEYS)}, "
                         f"got {type(data).__name__}")
    unknown = [k for k in data if k not in _PARAM_KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}; allowed: "
                         f"{', '.join(_PARAM_KEYS)}")
    for key in _PARAM_KEYS:
        if key in data and data[key] is None:
            data[key] = {}
    if data.get("voxelSetting"):
        raise ValueError(f"{source}: voxel-based extraction (voxelSetting) is not supported; "
                         "remove the voxelSetting section")
    for key in ("imageType", "featureClass", "setting"):
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{source}: {key} must be a mapping, got {type(data[key]).__name__}")
    classes = radiomics.getFeatureClasses()
    for cls_name, names in (data.get("featureClass") or {}).items():
        if cls_name not in classes:
            raise ValueError(f"{source}: unknown feature class {cls_name!r}; choose from "
                             f"{', '.join(sorted(classes))}")
        known = classes[cls_name].getFeatureNames()
        for name in names or []:
            if name not in known:
                raise ValueError(f"{source}: feature class {cls_name!r} has no feature {name!r}; "
                                 f"choose from {', '.join(sorted(known))}")
    image_types = set(radiomics.getImageTypes())
    for it in (data.get("imageType") or {}):
        if it not in image_types:
            raise ValueError(f"{source}: unknown image type {it!r}; choose from "
                             f"{', '.join(sorted(image_types))}")
    # PyRadiomics' own schema check (pykwalify) for the values of settings (~0.3 s: remembered).
    key = json.dumps(data, sort_keys=True, default=repr)
    if key in _SCHEMA_OK:
        return data
    try:
        _make_extractor(data)
        _SCHEMA_OK.add(key)
    except Exception as exc:
        raise ValueError(f"{source} does not pass PyRadiomics' parameter schema: "
                         f"{type(exc).__name__}: {exc}") from exc
    return data


def params_fingerprint(params: dict) -> str:
    """SHA-256 of the canonical JSON of ``params``, the PyRadiomics version and GlioScope's
    feature-code version (:data:`FEATURE_CODE_VERSION`).

    Keys are sorted and separators fixed, so equal parameter sets give equal fingerprints
    whatever the key order; any change of a value, of the feature list, of the PyRadiomics
    version or of GlioScope's extraction code version gives another. Used in cache keys.
    """
    payload = {"params": params, "pyradiomics": str(radiomics.__version__),
               "gliocore_features": FEATURE_CODE_VERSION}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def crop_is_exact(params: dict) -> tuple[bool, str]:
    """Whether cropping to the ROI's bounding box leaves every value of ``params`` unchanged.

    Returns
    -------
    (bool, str)
        True and ``''`` when a crop is exact, else False and the reason (the whole image is
        then used).
    """
    setting = params.get("setting") or {}
    if setting.get("normalize"):
        return False, "normalize uses whole-image mean and SD"
    if setting.get("resampledPixelSpacing") is not None and setting.get("interpolator", "sitkBSpline") is not None:
        return False, "resampling: the interpolator (B-spline pre-filter) sees the whole image"
    others = [t for t in (params.get("imageType") or {"Original": {}}) if t != "Original"]
    if others:
        return False, f"image type(s) {', '.join(others)} depend on voxels outside the ROI"
    return True, ""


#: ITK's recursive Gaussian behind PyRadiomics' LoG has infinite support, so no crop is exact
#: for it. A crop keeping this many sigmas around the ROI changes no LoG value inside the ROI by
#: more than float32 round-off (tested on real cases: every feature within 1e-9 relative, most
#: bit-identical; at 16 sigmas one voxel in 10^5 differed by one float32 ulp).
LOG_MARGIN_SIGMAS = 20


def crop_margin(params: dict, spacing: tuple[float, float, float] | np.ndarray) -> np.ndarray | None:
    """Voxels to keep around the ROI so that the image types of ``params`` see what they need.

    Parameters
    ----------
    params : dict
        PyRadiomics parameters.
    spacing : (3,) sequence of float
        Voxel spacing along the array's axes, mm.

    Returns
    -------
    (3,) int ndarray or None
        Margin per axis; 0 for ``Original`` only (crop to the bounding box is exact). ``Wavelet``:
        the filter length times the number of decomposition levels (PyRadiomics applies the
        one-level stationary transform ``start_level + level`` times; each application reaches
        at most the filter length away; exact). ``LoG``: :data:`LOG_MARGIN_SIGMAS` times the
        largest sigma, in voxels of each axis (within 1e-9, see there). None when no crop can
        be used: normalisation (whole-image mean and SD), resampling (ITK's B-spline pre-filter
        sees the whole image), pre-crop and other image types (scaled by the whole image's
        maximum, or not examined).
    """
    setting = params.get("setting") or {}
    if setting.get("normalize") or setting.get("preCrop"):
        return None
    if setting.get("resampledPixelSpacing") is not None and setting.get("interpolator", "sitkBSpline") is not None:
        return None
    sp = np.asarray(spacing, dtype=float)
    need = np.zeros(3, dtype=int)
    for image_type, custom in (params.get("imageType") or {"Original": {}}).items():
        args = dict(setting)
        args.update(custom or {})
        if image_type == "Original":
            continue
        if image_type == "Wavelet":
            import pywt

            wavelet = pywt.Wavelet(args.get("wavelet", "coif1"))
            levels = int(args.get("start_level", 0)) + int(args.get("level", 1))
            need = np.maximum(need, wavelet.dec_len * levels)
        elif image_type == "LoG":
            sigmas = [float(v) for v in args.get("sigma", []) or []]
            if sigmas:
                need = np.maximum(need, np.ceil(LOG_MARGIN_SIGMAS * max(sigmas) / sp).astype(int))
        else:
            return None
    return need


# --------------------------------------------------------------------------------------------
# Extractors (cached per parameter set)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

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


def _bbox(mask_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive lower and upper indices of the True voxels along each axis."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask_label.any(axis=other))
        lo.append(idx[0])
        hi.append(idx[-1])
    return np.array(lo), np.array(hi)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

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


def _extract_labels(images: Mapping[str, np.ndarray], mask: np.ndarray, affine: np.ndarray,
                    labels: list[int], params: dict, fingerprint: str, margin: int,
                    dtypes: Mapping[str, np.dtype | None] | None = None) -> dict[int, list[Row]]:
    """Rows (sequence, feature, value, reason) for each integer label of ``mask``.

    ``dtypes`` maps a sequence to the type PyRadiomics would read from its file (see
    :func:`stored_dtype`); images are converted to it (losslessly) before they reach PyRadiomics.
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
    whole = ((slice(None),) * 3, (0, 0, 0))

    def region(which: list[int]) -> tuple[tuple[slice, ...], tuple[int, int, int]]:
        if need is None:
            return whole
        return _crop_region([rois[lab] for lab in which], mask.shape, margin, need,
                            wraps="Wavelet" in (params.get("imageType") or {}))

    def sitk_image(seq: str, sl: tuple[slice, ...], start: tuple[int, int, int]) -> sitk.Image:
        return _to_sitk(_as_stored(images[seq][sl], dtypes.get(seq)), affine, start)

    def failed(label: int, seq: str, what: str, exc: Exception) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        names = _feature_names(params, fingerprint)
        pick = None if names is None else (names[0] if what == "shape" else names[1])
        out[label].extend((seq, f, None, msg) for f in (pick or ["*"]))

    def add(label: int, seq: str, result: Mapping[str, Any]) -> None:
        for key, value in result.items():
            if not key.startswith("diagnostics_"):
                v, why = _as_float(value)
                out[label].append((seq, key, v, why))

    def run(extractor: RadiomicsFeatureExtractor, image: sitk.Image, sitk_mask: sitk.Image,
            label: int, seq: str, what: str) -> None:
        try:
            result = extractor.execute(image, sitk_mask, label=label)
        except Exception as exc:  # PyRadiomics raises ValueError/RuntimeError on bad ROIs
            failed(label, seq, what, exc)
            return
        add(label, seq, result)

    one_pass = (ex.image is not None and bool(sequences) and not ex.shape_per_sequence
                and _one_pass(params))
    # Derived images of each sequence, filtered once for all labels (one-pass case), each image
    # type (LoG sigma) on the crop its own filter needs.
    per_seq: dict[str, dict[int, dict | Exception]] = {}
    if one_pass:
        spacing = spacing_from_affine(np.asarray(affine, dtype=float))
        # checkMask once per label (on its own box): its bounding box in whole-image indices.
        found: dict[int, np.ndarray | Exception] = {}
        for label, roi in rois.items():
            sl, start = _crop_region([roi], mask.shape, margin, np.zeros(3, int))
            try:
                bb, _ = imageoperations.checkMask(
                    sitk_image(sequences[0], sl, start), _to_sitk(mask[sl], affine, start),
                    **dict(ex.image.settings, label=label))
                found[label] = bb + np.repeat(start, 2)
            except Exception as exc:  # noqa: BLE001 -- the label's reason
                found[label] = exc
        for pass_ex, pass_params in ex.passes:
            pass_need = crop_margin(pass_params, spacing)
            sl, start = (whole if pass_need is None else
                         _crop_region(list(rois.values()), mask.shape, margin, pass_need,
                                      wraps="Wavelet" in pass_params["imageType"]))
            sitk_mask = _to_sitk(mask[sl], affine, start)
            boxes = {lab: bb if isinstance(bb, Exception) else bb - np.repeat(start, 2)
                     for lab, bb in found.items()}
            for seq in sequences:
                got = _image_features(pass_ex, sitk_image(seq, sl, start), sitk_mask, boxes)
                acc = per_seq.setdefault(seq, {lab: {} for lab in rois})
                for lab, res in got.items():
                    if isinstance(acc[lab], Exception):
                        continue
                    if isinstance(res, Exception):
                        acc[lab] = res
                    else:
                        acc[lab].update(res)
    for label in rois:
        # Shape: the label's own box (exact: the mask is all it uses), unless resampling etc.
        sl, start = whole if need is None else _crop_region([rois[label]], mask.shape, margin,
                                                             np.zeros(3, int))
        sitk_mask = _to_sitk(mask[sl], affine, start)
        if ex.shape is not None and not ex.shape_per_sequence:
            # Shape depends on the mask and spacing only; any image on the grid will do.
            shape_img = (sitk_image(sequences[0], sl, start) if sequences
                         else _to_sitk(np.zeros(mask[sl].shape, np.float32), affine, start))
            run(ex.shape, shape_img, sitk_mask, label, "", "shape")
        if ex.image is None and not ex.shape_per_sequence:
            continue
        if not one_pass:
            sl, start = region([label])
            sitk_mask = _to_sitk(mask[sl], affine, start)
        for seq in sequences:
            if one_pass:
                res = per_seq[seq][label]
                if isinstance(res, Exception):
                    failed(label, seq, "image", res)
                else:
                    add(label, seq, res)
                continue
            img = sitk_image(seq, sl, start)
            if ex.shape is not None and ex.shape_per_sequence:
                run(ex.shape, img, sitk_mask, label, seq, "shape")
            if ex.image is not None:
                run(ex.image, img, sitk_mask, label, seq, "image")
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
        PyRadiomics parameters (see :func:`load_params`); None for :data:`DEFAULT_PARAMS`.
    margin : int
        Voxels kept around each label's bounding box when cropping (crop is used only where it
        is exact, see :func:`crop_is_exact`); at least 1 is used (PyRadiomics needs a
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
