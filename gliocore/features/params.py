"""Radiomics settings: PyRadiomics parameter sets, their validation, fingerprint and crop rules.

:func:`load_params` reads and checks a PyRadiomics YAML (or dict); :func:`params_fingerprint`
keys every feature cache on the parameters, the PyRadiomics version and
:data:`FEATURE_CODE_VERSION`; :func:`crop_is_exact` and :func:`crop_margin` say how much of the
image the extraction (:mod:`gliocore.features.radiomics`) must keep around each ROI.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import radiomics

from gliocore.features.pyradiomics_bridge import _make_extractor

__all__ = [
    "DEFAULT_PARAMS",
    "FEATURE_CODE_VERSION",
    "LOG_MARGIN_SIGMAS",
    "crop_is_exact",
    "crop_margin",
    "load_params",
    "params_fingerprint",
]

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

#: Version of GlioScope's own feature-extraction code (radiomics, the bridge, shape, binning, texture). It is part
#: of :func:`params_fingerprint`, hence of every feature cache key: bump it whenever a change here
#: can change a value, so that a fixed wrapper never keeps serving values cached by the old one.
FEATURE_CODE_VERSION = "5"

#: Top-level keys of a PyRadiomics parameter file.
_PARAM_KEYS = ("imageType", "featureClass", "setting", "voxelSetting")


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
