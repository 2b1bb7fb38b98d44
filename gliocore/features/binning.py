"""Binning: PyRadiomics' grey-level discretisation, the same values, once per image and ROI.

Every PyRadiomics feature class (first order and the five texture classes) discretises the image
inside the ROI in its constructor (``RadiomicsFeaturesBase._applyBinning`` ->
``imageoperations.binImage`` -> ``getBinEdges``), so one image with all classes enabled is binned
six times, and ``getBinEdges`` takes the ROI's minimum and maximum with Python's built-in
``min``/``max``, which iterate over the array element by element.

:func:`feature_classes` returns PyRadiomics' classes with ``_applyBinning`` replaced by
:meth:`_CachedBinning._applyBinning`:

* the bin edges are computed by the same code with ``ndarray.min``/``ndarray.max`` (the same
  element, hence the same numpy scalar, for the finite values images hold; NaN-containing arrays go
  to PyRadiomics' own function);
* within one :func:`binning_scope` (GlioScope opens one per ``computeFeatures`` call, i.e. one
  image and one ROI), the discretised matrix is computed once and copied to the other classes;
  a cached result is used only if the class's input matrix and ROI are equal to the cached ones.

The texture classes also get the matrix mixins of :mod:`gliocore.features.texture` (same matrices).
Only GlioScope's extractor uses these classes; PyRadiomics itself is not modified.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
from radiomics import getFeatureClasses, imageoperations

__all__ = ["bin_edges", "bin_image", "binning_scope", "feature_classes"]

_LOCAL = threading.local()


def bin_edges(values: np.ndarray, **settings) -> np.ndarray:
    """``radiomics.imageoperations.getBinEdges`` with numpy's min/max (same values)."""
    bin_width = settings.get("binWidth", 25)
    if settings.get("binCount") is not None or values.size == 0 or np.isnan(values).any():
        return imageoperations.getBinEdges(values, **settings)
    minimum = values.min()
    maximum = values.max()
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:  # flat region: one bin, as PyRadiomics
        edges = [edges[0] - .5, edges[0] + .5]
    return edges


def bin_image(matrix: np.ndarray, roi: np.ndarray, **settings) -> np.ndarray:
    """``radiomics.imageoperations.binImage(matrix, roi, **settings)[0]`` (same values)."""
    out = np.zeros(matrix.shape, dtype="int")
    values = matrix[roi]
    out[roi] = np.digitize(values, bin_edges(values, **settings))
    return out


@contextlib.contextmanager
def binning_scope() -> Iterator[None]:
    """Share discretised matrices between the feature classes created inside this block."""
    previous = getattr(_LOCAL, "cache", None)
    _LOCAL.cache = []
    try:
        yield
    finally:
        _LOCAL.cache = previous


class _CachedBinning:
    """Mixin replacing ``RadiomicsFeaturesBase._applyBinning`` (see the module docstring)."""

    def _applyBinning(self, matrix):  # noqa: N802 (PyRadiomics' name)
        cache = getattr(_LOCAL, "cache", None)
        binned = levels = None
        if cache is not None:
            for src, roi, settings, result, grey in cache:
                if (settings == self.settings and np.array_equal(roi, self.maskArray)
                        and np.array_equal(src, matrix)):
                    binned, levels = result.copy(), grey.copy()
                    break
        if binned is None:
            binned = bin_image(matrix, self.maskArray, **self.settings)
            levels = np.unique(binned[self.maskArray])
            if cache is not None:
                cache.append((matrix.copy(), self.maskArray.copy(), dict(self.settings),
                              binned.copy(), levels.copy()))
        self.coefficients["grayLevels"] = levels
        self.coefficients["Ng"] = int(np.max(levels))
        return binned


_CLASSES: dict[str, type] = {}


def feature_classes() -> dict[str, type]:
    """PyRadiomics' feature classes by name, the binning ones with :class:`_CachedBinning` and the
    texture ones with the matrix mixins of :func:`gliocore.features.texture.texture_mixins`."""
    if not _CLASSES:
        from gliocore.features.texture import texture_mixins

        mixins = texture_mixins()
        for name, cls in getFeatureClasses().items():
            if name.startswith("shape"):
                _CLASSES[name] = cls
            else:
                bases = (_CachedBinning, *mixins.get(name, ()), cls)
                _CLASSES[name] = type(cls.__name__, bases,
                                      {"__module__": cls.__module__})  # PyRadiomics logger
    return _CLASSES
