"""Texture matrices: PyRadiomics' grey-level run-length matrix, the same counts, the ROI's geometry shared.

PyRadiomics computes its texture matrices in C (``radiomics._cmatrices``), one call per image and
ROI. With filters, one ROI meets many images (the original, each LoG sigma, eight wavelet
bands: 11 images per ROI), yet most of the work of the run-length matrix (GLRLM) depends only on
the ROI: which voxels lie on which line along each of the 13 directions, in which order. The C
code walks every voxel of the ROI's bounding box along every direction for every image, with an
integer division per step to find where it is.

:func:`calculate_glrlm` returns the matrix ``radiomics._cmatrices.calculate_glrlm`` returns
(same shape, same angles, same counts, hence the same float64 array: every element is a count of
runs, and counting in another order gives the same integers), in two steps:

* :class:`RunGeometry` (once per ROI, cached by :func:`run_geometry`): the ROI's voxels, and, per
  direction, their order along the lines (line by line, in the direction's order) with a flag
  saying whether two voxels next to each other in that order are neighbours on the line;
* per image: the grey levels in those orders; a run ends where the next voxel is not the next one
  on the line or has another grey level; the runs' lengths are the distances between run starts,
  and one ``np.bincount`` over (grey level, length, direction) gives the matrix.

:func:`texture_classes` gives mixins replacing the matrix step of PyRadiomics' feature classes
with these functions where the result is the same (segment-based extraction; anything else goes
to PyRadiomics' own code). Only GlioScope's extractor uses them; PyRadiomics is not modified.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from radiomics import cMatrices

__all__ = ["RunGeometry", "calculate_glrlm", "run_geometry", "texture_mixins"]

_LOCAL = threading.local()
#: Geometries kept per thread (one per ROI; an extraction alternates between at most two ROIs).
_GEOMETRY_CACHE_SIZE = 4


@dataclass(frozen=True)
class RunGeometry:
    """Where the voxels of one ROI lie along the run-length directions.

    Attributes
    ----------
    voxels : (n,) intp ndarray
        Flat (C-order) indices of the ROI's voxels in the ROI's array, ascending.
    order : (Na * n,) intp ndarray
        For each direction in turn, positions in ``voxels`` sorted line by line and along each
        line in the direction of the angle.
    linked : (Na * n - 1,) bool ndarray
        ``linked[k]``: entry ``k + 1`` of ``order`` is the next voxel on the line of entry ``k``
        (False across lines, gaps in the ROI and directions).
    multi : (Na,) bool ndarray
        Whether some line along the direction holds more than one ROI voxel (PyRadiomics drops the
        runs of length 1 of a direction along which the ROI is flat).
    """

    voxels: np.ndarray
    order: np.ndarray
    linked: np.ndarray
    multi: np.ndarray


def _line_order(coords: np.ndarray, shape: tuple[int, ...], step: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sort order of ``coords`` by line along ``step`` and position on it, links, several-on-a-line.

    A voxel's position ``t`` on its line is the number of steps back to the array's edge (the
    smallest over the axes the step moves along); the line is named by the voxel ``t`` steps back
    (on the edge where the C code starts its walk).
    """
    moving = np.flatnonzero(step)
    back = np.stack([coords[:, d] if step[d] > 0 else shape[d] - 1 - coords[:, d]
                     for d in moving])
    t = back.min(axis=0)
    start = coords - t[:, None] * step[None, :]
    line = np.ravel_multi_index(tuple(start.T), shape)
    length = max(shape)
    order = np.argsort(line * length + t)
    line, t = line[order], t[order]
    same_line = line[1:] == line[:-1]
    linked = same_line & (t[1:] == t[:-1] + 1)
    return order, linked, bool(same_line.any())


def run_geometry(mask: np.ndarray, angles: np.ndarray) -> RunGeometry:
    """:class:`RunGeometry` of ``mask`` (True = ROI) along ``angles``, cached per thread.

    The cache holds the last few masks; a mask is found again only if it is equal (same shape,
    same voxels) to a cached one and the angles are the same.
    """
    mask = np.asarray(mask, dtype=bool)
    angles = np.asarray(angles)
    cache = getattr(_LOCAL, "geometry", None)
    if cache is None:
        cache = _LOCAL.geometry = []
    for m, a, geometry in cache:
        if m.shape == mask.shape and np.array_equal(a, angles) and np.array_equal(m, mask):
            return geometry
    voxels = np.flatnonzero(mask)
    coords = np.stack(np.unravel_index(voxels, mask.shape), axis=1)
    n = voxels.size
    orders, links, multi = [], [], []
    for angle in angles:
        order, linked, several = _line_order(coords, mask.shape, np.asarray(angle))
        orders.append(order)
        links.append(linked)
        links.append(np.zeros(1, bool))  # no run goes on into the next direction
        multi.append(several)
    order = np.concatenate(orders) if orders else np.zeros(0, np.intp)
    linked = np.concatenate(links)[:-1] if links else np.zeros(0, bool)
    geometry = RunGeometry(voxels, order, linked, np.array(multi, dtype=bool))
    assert geometry.order.size == n * len(angles)
    cache.insert(0, (mask.copy(), angles.copy(), geometry))
    del cache[_GEOMETRY_CACHE_SIZE:]
    return geometry


def calculate_glrlm(image: np.ndarray, mask: np.ndarray, Ng: int, Nr: int, force2D: bool = False,
                    force2Ddimension: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``radiomics._cmatrices.calculate_glrlm`` (segment-based), the same matrix and angles.

    Parameters
    ----------
    image : ndarray of int
        Discretised grey levels (1..Ng inside the ROI).
    mask : ndarray of bool
        The ROI, same shape as ``image``.
    Ng, Nr : int
        Number of grey levels and of run lengths (the matrix's 2nd and 3rd dimensions).
    force2D, force2Ddimension : bool, int
        As PyRadiomics: with ``force2D`` no direction moves along ``force2Ddimension``.

    Returns
    -------
    (P, angles)
        ``P`` of shape (1, Ng, Nr, Na), float64: ``P[0, g - 1, r - 1, a]`` runs of grey level
        ``g`` and length ``r`` along ``angles[a]``; ``angles`` (Na, ndim) int, PyRadiomics' own.

    Raises
    ------
    IndexError
        Where PyRadiomics' C code fails: a grey level < 1 in the ROI, or beyond ``Ng``/``Nr``.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    size = np.array(image.shape, dtype=np.intc)
    angles = cMatrices.generate_angles(size, np.array([1]), False, bool(force2D),
                                       int(force2Ddimension) if force2D else -1)
    Na = len(angles)
    geometry = run_geometry(mask, angles)
    n = geometry.voxels.size
    P = np.zeros(Ng * Nr * Na, dtype=np.float64)
    if n and Na:
        grey = image.ravel()[geometry.voxels][geometry.order]
        ends = ~(geometry.linked & (grey[1:] == grey[:-1]))
        starts = np.concatenate(([0], np.flatnonzero(ends) + 1))
        lengths = np.diff(starts, append=grey.size)
        levels = grey[starts]
        if levels.min() < 1:
            raise IndexError("Calculation of GLRLM Failed.")
        index = ((levels.astype(np.int64) - 1) * Nr + (lengths - 1)) * Na + starts // n
        if index.max() >= P.size:
            raise IndexError("Calculation of GLRLM Failed.")
        P += np.bincount(index, minlength=P.size)
    P = P.reshape(1, Ng, Nr, Na)
    P[0, :, 0, ~geometry.multi] = 0  # as PyRadiomics: a direction along which the ROI is flat
    return P, angles


class _NumpyGLRLM:
    """Mixin for ``RadiomicsGLRLM``: ``_calculateMatrix`` of PyRadiomics 3.0.1 with the matrix from
    :func:`calculate_glrlm` (segment-based; voxel-based extraction goes to PyRadiomics' own)."""

    def _calculateMatrix(self, voxelCoordinates=None):  # noqa: N802 (PyRadiomics' name)
        if self.voxelBased:
            return super()._calculateMatrix(voxelCoordinates)
        Ng = self.coefficients["Ng"]
        Nr = np.max(self.imageArray.shape)
        P_glrlm, angles = calculate_glrlm(self.imageArray, self.maskArray, Ng, Nr,
                                          self.settings.get("force2D", False),
                                          self.settings.get("force2Ddimension", 0))
        # From here on PyRadiomics 3.0.1's code (radiomics/glrlm.py), unchanged.
        NgVector = range(1, Ng + 1)
        GrayLevels = self.coefficients["grayLevels"]
        emptyGrayLevels = np.array(list(set(NgVector) - set(GrayLevels)), dtype=int)
        P_glrlm = np.delete(P_glrlm, emptyGrayLevels - 1, 1)
        if self.weightingNorm is not None:
            pixelSpacing = self.inputImage.GetSpacing()[::-1]
            weights = np.empty(len(angles))
            for a_idx, a in enumerate(angles):
                if self.weightingNorm == "infinity":
                    weights[a_idx] = max(np.abs(a) * pixelSpacing)
                elif self.weightingNorm == "euclidean":
                    weights[a_idx] = np.sqrt(np.sum((np.abs(a) * pixelSpacing) ** 2))
                elif self.weightingNorm == "manhattan":
                    weights[a_idx] = np.sum(np.abs(a) * pixelSpacing)
                elif self.weightingNorm == "no_weighting":
                    weights[a_idx] = 1
                else:
                    self.logger.warning('weigthing norm "%s" is unknown, weighting factor is set to 1',
                                        self.weightingNorm)
                    weights[a_idx] = 1
            P_glrlm = np.sum(P_glrlm * weights[None, None, None, :], 3, keepdims=True)
        Nr = np.sum(P_glrlm, (1, 2))
        if P_glrlm.shape[3] > 1:
            emptyAngles = np.where(np.sum(Nr, 0) == 0)
            if len(emptyAngles[0]) > 0:
                P_glrlm = np.delete(P_glrlm, emptyAngles, 3)
                Nr = np.delete(Nr, emptyAngles, 1)
        Nr[Nr == 0] = np.nan
        self.coefficients["Nr"] = Nr
        return P_glrlm


def texture_mixins() -> dict[str, tuple[type, ...]]:
    """Mixins (by PyRadiomics feature-class name) replacing a class's matrix computation."""
    return {"glrlm": (_NumpyGLRLM,)}
