"""Texture matrices: PyRadiomics' GLCM, GLRLM, GLDM and NGTDM, the same arrays, the ROI's geometry shared.

PyRadiomics computes its texture matrices in C (``radiomics._cmatrices``), one call per image and
ROI. With filters, one ROI meets many images (the original, each LoG sigma, eight wavelet
bands: 11 images per ROI), yet much of the work depends only on the ROI: which voxels are
neighbours along each direction, which lie on which line, in which order. The C code finds this
again for every image, walking every voxel of the ROI's bounding box with integer divisions to
know where it is. Here it is found once per ROI (cached per thread, see :func:`_cached`) and
each image only looks up its grey levels:

* :class:`RunGeometry` (GLRLM): per direction, the ROI's voxels ordered line by line and along
  each line, with a flag saying whether two voxels next to each other in that order are
  neighbours on the line. A run ends where the next voxel is not the next one on the line or has
  another grey level; run lengths are the distances between run starts.
* :class:`PairGeometry` (GLCM, GLDM, NGTDM): per direction, the pairs of ROI voxels that are
  neighbours along it, and each voxel's number of neighbours in the ROI.

Identity. The GLCM, GLRLM and GLDM are counts and the NGTDM's first column too: counting in
another order gives the same integers, hence the same float64 arrays. The NGTDM's second column
sums ``|g_i - mean of the neighbours' grey levels|`` per grey level: the neighbours' sum is a sum
of small integers (exact in float64, any order), the mean and difference are the same IEEE
operations as in C, and the per-grey-level totals are accumulated voxel by voxel in C order
(``np.bincount`` with weights adds sequentially, like the C loop). The tests compare every
array element with PyRadiomics' C on synthetic and real ROIs.

:func:`texture_mixins` gives PyRadiomics' own ``_calculateMatrix`` methods of these classes,
unchanged, bound to a namespace where ``cMatrices`` answers segment-based calls with these
functions (voxel-based calls, and the GLSZM, go to PyRadiomics' C). Only GlioScope's extractor
uses them; PyRadiomics itself is not modified.
"""
from __future__ import annotations

import operator
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from radiomics import cMatrices, getFeatureClasses

__all__ = ["PairGeometry", "RunGeometry", "calculate_glcm", "calculate_gldm", "calculate_glrlm",
           "calculate_ngtdm", "clear_geometry_cache", "pair_geometry", "run_geometry",
           "texture_mixins"]

_LOCAL = threading.local()
#: Geometries kept per thread and kind: one per ROI and angle set, and an extraction alternates
#: between two ROIs (the tumour classes). A geometry takes about 13 x 9 bytes per ROI voxel.
_GEOMETRY_CACHE_SIZE = 2


def _cached(kind: str, mask: np.ndarray, angles: np.ndarray, build: Callable):
    """``build(mask, angles)``, remembered per thread for the last few equal masks and angles.

    A mask is found again only if it is equal (same shape, same voxels) to a cached one, so a
    cached geometry is never used for another ROI.
    """
    caches = getattr(_LOCAL, "caches", None)
    if caches is None:
        caches = _LOCAL.caches = {}
    cache = caches.setdefault(kind, [])
    for m, a, value in cache:
        if m.shape == mask.shape and np.array_equal(a, angles) and np.array_equal(m, mask):
            return value
    value = build(mask, angles)
    cache.insert(0, (mask.copy(), angles.copy(), value))
    del cache[_GEOMETRY_CACHE_SIZE:]
    return value


def clear_geometry_cache() -> None:
    """Forget this thread's cached geometries (benchmarks: each repeat pays for its own)."""
    _LOCAL.caches = {}


def _angles(shape: tuple[int, ...], distances, bidirectional: bool, force2D: bool,
            force2Ddimension: int) -> np.ndarray:
    """PyRadiomics' own angles (``cMatrices.generate_angles``), as its C matrix functions use."""
    return cMatrices.generate_angles(np.array(shape, dtype=np.intc),
                                     np.asarray(distances), bool(bidirectional), bool(force2D),
                                     int(force2Ddimension) if force2D else -1)


@dataclass(frozen=True)
class RunGeometry:
    """Where the voxels of one ROI lie along the run-length directions.

    Attributes
    ----------
    voxels : (n,) intp ndarray
        Flat (C-order) indices of the ROI's voxels in the ROI's array, ascending.
    order : (Na * n,) int32 or intp ndarray
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


def _index_type(n: int) -> type:
    """int32 for positions among ``n`` voxels when it holds them (half of intp's memory)."""
    return np.int32 if n < 2**31 else np.intp


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    """C-order strides of ``shape``, in elements."""
    return np.array([int(np.prod(shape[d + 1:])) for d in range(len(shape))], dtype=np.intp)


def _line_order(voxels: np.ndarray, coords: np.ndarray, shape: tuple[int, ...], step: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Order of the ROI's voxels line by line along ``step``, links, several voxels on a line.

    Runs along ``step`` and along ``-step`` are the same, so the step is turned to move forward
    in C order; then C order along a line is the order along the step, and a stable sort by
    line keeps it. A voxel's line is named by its first voxel (the C code's start voxel):
    ``t`` steps back, ``t`` the smallest number of steps back to an edge of the array.
    """
    flat_step = int(step @ _strides(shape))
    if flat_step < 0:
        step, flat_step = -step, -flat_step
    moving = np.flatnonzero(step)
    t = np.min([coords[d] if step[d] > 0 else shape[d] - 1 - coords[d] for d in moving], axis=0)
    line = (voxels - t * flat_step).astype(_index_type(int(np.prod(shape))))  # ids < array size
    order = np.argsort(line, kind="stable")
    line, ordered = line[order], voxels[order]
    same_line = line[1:] == line[:-1]
    linked = same_line & (ordered[1:] - ordered[:-1] == flat_step)
    return order, linked, bool(same_line.any())


def run_geometry(mask: np.ndarray, angles: np.ndarray) -> RunGeometry:
    """:class:`RunGeometry` of ``mask`` (True = ROI) along ``angles``, cached (see :func:`_cached`).

    Parameters
    ----------
    mask : ndarray of bool
        The ROI.
    angles : (Na, ndim) ndarray of int
        Directions, as PyRadiomics' ``generate_angles`` gives them.

    Returns
    -------
    RunGeometry
    """
    return _cached("runs", np.asarray(mask, dtype=bool), np.asarray(angles), _build_runs)


def _build_runs(mask: np.ndarray, angles: np.ndarray) -> RunGeometry:
    voxels = np.flatnonzero(mask)
    coords = np.unravel_index(voxels, mask.shape)
    orders, links, multi = [], [], []
    for angle in angles:
        order, linked, several = _line_order(voxels, coords, mask.shape, np.asarray(angle))
        orders.append(order)
        links.append(linked)
        links.append(np.zeros(1, bool))  # no run goes on into the next direction
        multi.append(several)
    order = np.concatenate(orders) if orders else np.zeros(0, np.intp)
    order = order.astype(_index_type(voxels.size))  # half the memory; positions < n
    linked = np.concatenate(links)[:-1] if links else np.zeros(0, bool)
    return RunGeometry(voxels, order, linked, np.array(multi, dtype=bool))


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
    angles = _angles(image.shape, [1], False, force2D, force2Ddimension)
    Na = len(angles)
    geometry = run_geometry(mask, angles)
    n = geometry.voxels.size
    P = np.zeros(Ng * Nr * Na, dtype=np.float64)
    if n and Na:
        grey = np.take(np.take(image.ravel(), geometry.voxels), geometry.order)
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


@dataclass(frozen=True)
class PairGeometry:
    """The pairs of neighbouring voxels of one ROI along a set of directions.

    Attributes
    ----------
    voxels : (n,) intp ndarray
        Flat (C-order) indices of the ROI's voxels in the ROI's array, ascending (PyRadiomics'
        loop order).
    first, second : (m,) int32 (or intp) ndarray
        Positions in ``voxels`` of each pair: ``second`` is ``first`` moved by the pair's angle.
    angle : (m,) unsigned int ndarray
        Index of each pair's angle.
    neighbours : (n,) float64 ndarray
        Number of ROI voxels among each voxel's neighbours along the angles and their opposites.
    """

    voxels: np.ndarray
    first: np.ndarray
    second: np.ndarray
    angle: np.ndarray
    neighbours: np.ndarray


def pair_geometry(mask: np.ndarray, angles: np.ndarray) -> PairGeometry:
    """:class:`PairGeometry` of ``mask`` (True = ROI) along ``angles``, cached (see :func:`_cached`).

    Parameters
    ----------
    mask : ndarray of bool
        The ROI.
    angles : (Na, ndim) ndarray of int
        One-way directions, as PyRadiomics' ``generate_angles`` gives them.

    Returns
    -------
    PairGeometry
    """
    return _cached("pairs", np.asarray(mask, dtype=bool), np.asarray(angles), _build_pairs)


def _build_pairs(mask: np.ndarray, angles: np.ndarray) -> PairGeometry:
    voxels = np.flatnonzero(mask)
    n = voxels.size
    coords = np.unravel_index(voxels, mask.shape)
    position = np.full(mask.size, -1, dtype=np.intp)
    position[voxels] = np.arange(n)
    strides = _strides(mask.shape)
    firsts, seconds, which = [], [], []
    for a, angle in enumerate(np.asarray(angles)):
        inside = np.ones(n, dtype=bool)
        for d in np.flatnonzero(angle):
            moved = coords[d] + angle[d]
            inside &= (moved >= 0) & (moved < mask.shape[d])
        first = np.flatnonzero(inside)
        other = position[voxels[first] + int(angle @ strides)]
        keep = other >= 0
        firsts.append(first[keep])
        seconds.append(other[keep])
        which.append(np.full(int(keep.sum()), a, dtype=np.min_scalar_type(len(angles))))
    kind = _index_type(n)
    empty = np.zeros(0, kind)
    first = np.concatenate(firsts).astype(kind) if firsts else empty
    second = np.concatenate(seconds).astype(kind) if seconds else empty
    neighbours = (np.bincount(first, minlength=n) + np.bincount(second, minlength=n)).astype(float)
    return PairGeometry(voxels, first, second,
                        np.concatenate(which) if which else np.zeros(0, np.uint8), neighbours)


def _pairs_both_ways(shape: tuple[int, ...], distances, force2D: bool, force2Ddimension: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """(one-way angles, PyRadiomics' two-way angles), or None when the two-way set is not the
    one-way set and its opposites (then only PyRadiomics' C can reproduce the matrix)."""
    one = _angles(shape, distances, False, force2D, force2Ddimension)
    both = _angles(shape, distances, True, force2D, force2Ddimension)
    expected = {tuple(a) for a in one} | {tuple(-a) for a in one}
    if len(both) != 2 * len(one) or {tuple(a) for a in both} != expected:
        return None
    return one, both


def _grey_levels(image: np.ndarray, voxels: np.ndarray, what: str | None) -> np.ndarray:
    """Grey levels of the ROI's voxels; IndexError as PyRadiomics' C (``what``) for one < 1."""
    grey = np.asarray(image).ravel()[voxels].astype(np.intc)  # the C code reads C ints
    if what is not None and grey.size and grey.min() < 1:
        raise IndexError(f"Calculation of {what} Failed.")
    return grey


def calculate_glcm(image: np.ndarray, mask: np.ndarray, distances, Ng: int, force2D: bool = False,
                   force2Ddimension: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``radiomics._cmatrices.calculate_glcm`` (segment-based): the same matrix and angles.

    Parameters
    ----------
    image, mask, force2D, force2Ddimension
        As :func:`calculate_glrlm`.
    distances : sequence of int
        Neighbour distances, as PyRadiomics.
    Ng : int
        Number of grey levels.

    Returns
    -------
    (P, angles)
        ``P`` (1, Ng, Ng, Na) float64: ``P[0, i - 1, j - 1, a]`` pairs of ROI voxels with grey
        level ``i`` and, moved by ``angles[a]``, ``j``.

    Raises
    ------
    IndexError
        Where PyRadiomics' C code fails (a grey level < 1 or > Ng in the ROI).
    """
    mask = np.asarray(mask, dtype=bool)
    angles = _angles(mask.shape, distances, False, force2D, force2Ddimension)
    Na = len(angles)
    geometry = pair_geometry(mask, angles)
    grey = _grey_levels(image, geometry.voxels, None)
    first, second = np.take(grey, geometry.first), np.take(grey, geometry.second)
    size = Ng * Ng * Na
    index = ((first.astype(np.intp) - 1) * Ng + second - 1) * Na + geometry.angle
    if index.size and (index.max() >= size or first.min() < 1 or second.min() < 1):
        raise IndexError("Calculation of GLCM Failed.")
    P = np.bincount(index, minlength=size).astype(np.float64)
    return P.reshape(1, Ng, Ng, Na), angles


def calculate_gldm(image: np.ndarray, mask: np.ndarray, distances, Ng: int, alpha: int,
                   force2D: bool = False, force2Ddimension: int = 0) -> np.ndarray:
    """``radiomics._cmatrices.calculate_gldm`` (segment-based): the same matrix.

    Parameters
    ----------
    image, mask, distances, Ng, force2D, force2Ddimension
        As :func:`calculate_glcm`.
    alpha : int
        Largest grey-level difference for which a neighbour counts as dependent.

    Returns
    -------
    P : (1, Ng, 2 * Na + 1) float64
        ``P[0, i - 1, k]``: ROI voxels of grey level ``i`` with ``k`` neighbours (along the
        ``Na`` two-way angles) in the ROI whose grey level differs by at most ``alpha``.
    """
    alpha = operator.index(alpha)  # the C code takes an int (a float raises TypeError there too)
    mask = np.asarray(mask, dtype=bool)
    ways = _pairs_both_ways(mask.shape, distances, force2D, force2Ddimension)
    if ways is None:
        return cMatrices.calculate_gldm(image, mask, np.asarray(distances), Ng, alpha, force2D,
                                        force2Ddimension)
    one, both = ways
    columns = 2 * len(both) + 1
    geometry = pair_geometry(mask, one)
    grey = _grey_levels(image, geometry.voxels, "GLDM")
    n = grey.size
    a, b = geometry.first, geometry.second
    dependent = (np.abs(np.take(grey, a) - np.take(grey, b)) <= alpha).astype(np.float64)
    count = np.bincount(a, weights=dependent, minlength=n) + np.bincount(b, weights=dependent,
                                                                          minlength=n)
    index = (grey.astype(np.intp) - 1) * columns + count.astype(np.intp)
    size = Ng * columns
    if index.size and index.max() >= size:
        raise IndexError("Calculation of GLDM Failed.")
    return np.bincount(index, minlength=size).astype(np.float64).reshape(1, Ng, columns)


def calculate_ngtdm(image: np.ndarray, mask: np.ndarray, distances, Ng: int, force2D: bool = False,
                    force2Ddimension: int = 0) -> np.ndarray:
    """``radiomics._cmatrices.calculate_ngtdm`` (segment-based): the same matrix, bit for bit.

    Parameters
    ----------
    image, mask, distances, Ng, force2D, force2Ddimension
        As :func:`calculate_glcm`.

    Returns
    -------
    P : (1, Ng, 3) float64
        Per grey level ``i``: number of ROI voxels, sum over them of ``|i - mean grey level of
        their neighbours in the ROI|`` (0 for a voxel without one), and ``i``.
    """
    mask = np.asarray(mask, dtype=bool)
    ways = _pairs_both_ways(mask.shape, distances, force2D, force2Ddimension)
    if ways is None:
        return cMatrices.calculate_ngtdm(image, mask, np.asarray(distances), Ng, force2D,
                                         force2Ddimension)
    geometry = pair_geometry(mask, ways[0])
    grey = _grey_levels(image, geometry.voxels, "NGTDM")
    if grey.size and grey.max() > Ng:
        raise IndexError("Calculation of NGTDM Failed.")
    n = grey.size
    a, b = geometry.first, geometry.second
    level = grey.astype(np.float64)
    # Sums of integers: exact in float64 whatever the order.
    total = (np.bincount(a, weights=np.take(level, b), minlength=n)
             + np.bincount(b, weights=np.take(level, a), minlength=n))
    count = geometry.neighbours
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(count > 0, np.abs(level - total / count), 0.0)
    P = np.zeros((1, Ng, 3), dtype=np.float64)
    P[0, :, 0] = np.bincount(grey - 1, minlength=Ng)
    P[0, :, 1] = np.bincount(grey - 1, weights=diff, minlength=Ng)  # voxel by voxel, C order
    P[0, :, 2] = np.arange(1, Ng + 1)
    return P


def _segment_only(fast: Callable, slow: Callable, n_args: int) -> Callable:
    """``fast`` for PyRadiomics' segment-based calls (``n_args`` arguments), else ``slow``."""

    def call(*args):
        return fast(*args) if len(args) == n_args else slow(*args)

    call.__name__ = slow.__name__
    return call


#: Stands in for ``radiomics.cMatrices`` in the rebound ``_calculateMatrix`` methods.
_MATRICES = types.SimpleNamespace(
    **{name: getattr(cMatrices, name) for name in dir(cMatrices) if not name.startswith("_")})
_MATRICES.calculate_glcm = _segment_only(calculate_glcm, cMatrices.calculate_glcm, 6)
_MATRICES.calculate_glrlm = _segment_only(calculate_glrlm, cMatrices.calculate_glrlm, 6)
_MATRICES.calculate_gldm = _segment_only(calculate_gldm, cMatrices.calculate_gldm, 7)
_MATRICES.calculate_ngtdm = _segment_only(calculate_ngtdm, cMatrices.calculate_ngtdm, 6)

#: Feature classes whose matrix comes from this module.
_CLASSES = ("glcm", "glrlm", "gldm", "ngtdm")


def _rebind(function: Callable, **names) -> Callable:
    """``function``'s own code with some of its module's global names replaced."""
    namespace = dict(function.__globals__)
    namespace.update(names)
    new = types.FunctionType(function.__code__, namespace, function.__name__,
                             function.__defaults__, function.__closure__)
    new.__kwdefaults__ = function.__kwdefaults__
    new.__qualname__ = function.__qualname__
    new.__doc__ = function.__doc__
    return new


def texture_mixins() -> dict[str, tuple[type, ...]]:
    """Mixins by PyRadiomics feature-class name: the class's own ``_calculateMatrix`` with the
    matrices of this module (see the module docstring).

    Returns
    -------
    dict
        ``"glcm"``, ``"glrlm"``, ``"gldm"``, ``"ngtdm"`` -> a one-class tuple, to be put before
        PyRadiomics' class among the bases (see :func:`gliocore.features.binning.feature_classes`).
    """
    out: dict[str, tuple[type, ...]] = {}
    for name, cls in getFeatureClasses().items():
        if name in _CLASSES:
            method = _rebind(cls._calculateMatrix, cMatrices=_MATRICES)
            out[name] = (type(f"_Numpy{cls.__name__.replace('Radiomics', '')}", (), {"_calculateMatrix": method}),)
    return out
