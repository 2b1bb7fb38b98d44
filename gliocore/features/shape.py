"""Shape: PyRadiomics' 3-D mesh features with the diameters found on the convex hull.

PyRadiomics 3.0.1 computes ``MeshVolume``, ``SurfaceArea`` and the four maximum diameters in one C
function (``radiomics._cshape.calculate_coefficients``, source ``radiomics/src/cshape.c``). The
mesh part is a marching-cubes pass over the label (padded by one voxel), linear in the number of
voxels; the diameters are then found by comparing **every pair** of mesh vertices, quadratic in
their number: on a large tumour (10^5 vertices) that pair loop is most of the extraction time.

This module gives the same four numbers and the same two mesh numbers, faster:

* **Mesh volume and surface** -- the same marching cubes (PyRadiomics' triangle table, reproduced
  below), each triangle's term computed with the same floating-point operations in the same order,
  and the terms summed sequentially in the C loop's order (``numpy.cumsum``), so the sums are
  bit-identical to the C code's.
* **Vertices** -- PyRadiomics stores one vertex per edge of the voxel grid whose two end voxels
  differ (in or out of the label), at the edge's midpoint: ``(index + 0.5) * spacing`` along the
  edge, ``index * spacing`` across it (``vertList`` entries 6, 7 and 11 of each cube; every such
  edge once). Here they are found with array comparisons and kept as integers on the half-voxel
  lattice; their coordinates are then ``(lattice * 0.5) * spacing``, the same doubles as in C.
* **Diameters** -- the largest distance between two points of a finite set is attained between two
  vertices of its convex hull (the squared distance to a fixed point is convex, so its maximum
  over the hull is at an extreme point; apply twice). The hull is computed by Qhull
  (``scipy.spatial.ConvexHull``) on the integer lattice coordinates, and an affine map (the
  spacing) keeps extreme points extreme. With integer input Qhull cannot miss an extreme point: a
  lattice point outside the plane (line) of a facet is at least 1/|integer normal| (>= 1e-7 for
  lattices below 10^3 per axis) away from it, far above Qhull's round-off threshold (~1e-13).
  Points on a facet but not extreme are convex combinations of vertices and strictly closer to
  every point than some vertex, by far more than round-off. The hull vertices' pairs are compared
  with C's formula ``(dz*dz + dy*dy) + dx*dx`` (same operation order) and the square root of the
  maximum is taken, as in C; ties are the same doubles either way. The in-plane diameters (``Maximum2DDiameterSlice``,
  ``...Column``, ``...Row``: pairs with equal z, y or x coordinate) are found the same way in each
  lattice plane with a 2-D hull; planes whose bounding box cannot beat the best so far are skipped.

:class:`HullShape` is PyRadiomics' ``RadiomicsShape`` with only the call to the C function replaced;
every other shape feature is PyRadiomics' own code. The triangle table is PyRadiomics' (BSD
3-clause licence, Copyright 2017 Harvard Medical School).
"""
from __future__ import annotations

import numpy as np
from radiomics.shape import RadiomicsShape
from scipy.spatial import ConvexHull, QhullError

__all__ = ["mesh_coefficients", "mesh_vertices", "max_diameters", "HullShape"]

# Corners of the marching cube relative to its origin, (z, y, x), in PyRadiomics' bit order.
_GRID_ANGLES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0],
                         [1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]])

# Position of the vertex on each of the 12 cube edges, (z, y, x), relative to the cube origin.
_VERT_LIST = np.array([[0, 0, 0.5], [0, 0.5, 1], [0, 1, 0.5], [0, 0.5, 0],
                       [1, 0, 0.5], [1, 0.5, 1], [1, 1, 0.5], [1, 0.5, 0],
                       [0.5, 0, 0], [0.5, 0, 1], [0.5, 1, 1], [0.5, 1, 0]])

# PyRadiomics' triTable for cube indices 0..127 (indices >= 128 are flipped): the edges of each
# triangle, three per triangle; rows separated by '|', four rows per line, '-' = no triangle.
_TRI_TEXT = """
- | 0 8 3 | 1 9 0 | 1 8 3 1 9 8
1 2 10 | 0 8 3 1 2 10 | 9 2 10 0 2 9 | 2 8 3 2 10 8 10 9 8
11 2 3 | 11 2 0 0 8 11 | 1 9 0 11 2 3 | 11 2 1 1 9 11 9 8 11
3 10 1 11 10 3 | 10 1 0 0 8 10 8 11 10 | 9 0 3 3 11 9 11 10 9 | 9 8 10 11 10 8
4 7 8 | 0 4 3 4 7 3 | 1 9 0 4 7 8 | 1 9 4 1 4 7 1 7 3
1 2 10 4 7 8 | 3 4 7 3 0 4 1 2 10 | 9 2 10 9 0 2 4 7 8 | 2 10 9 2 9 7 2 7 3 4 7 9
4 7 8 11 2 3 | 11 4 7 11 2 4 2 0 4 | 1 9 0 4 7 8 11 2 3 | 4 7 11 9 4 11 11 2 9 1 9 2
3 10 1 11 10 3 4 7 8 | 11 10 1 1 4 11 1 0 4 4 7 11 | 4 7 8 9 0 3 3 11 9 11 10 9 | 4 7 11 4 11 9 9 11 10
9 5 4 | 9 5 4 0 8 3 | 0 5 4 0 1 5 | 8 5 4 8 3 5 3 1 5
1 2 10 9 5 4 | 0 8 3 1 2 10 9 5 4 | 2 10 5 5 4 2 2 4 0 | 2 10 5 3 2 5 3 5 4 8 3 4
9 5 4 11 2 3 | 11 2 0 0 8 11 9 5 4 | 0 5 4 0 1 5 11 2 3 | 2 1 5 2 5 8 11 2 8 5 4 8
3 10 1 11 10 3 9 5 4 | 5 4 9 10 1 0 0 8 10 8 11 10 | 5 4 0 5 0 11 10 5 11 11 0 3 | 5 4 8 10 5 8 11 10 8
7 8 9 5 7 9 | 3 0 9 5 3 9 3 5 7 | 7 8 0 0 1 7 7 1 5 | 1 5 7 1 7 3
7 8 9 5 7 9 1 2 10 | 1 2 10 3 0 9 3 9 5 3 5 7 | 0 2 8 8 2 5 8 5 7 2 10 5 | 2 10 5 2 5 3 3 5 7
5 7 9 7 8 9 11 2 3 | 5 7 9 9 7 2 2 0 9 11 2 7 | 11 2 3 0 1 8 1 7 8 1 5 7 | 2 1 11 1 7 11 1 5 7
7 8 9 5 7 9 3 10 1 11 10 3 | 5 7 0 5 0 9 7 11 0 10 1 0 11 10 0 | 11 10 0 0 3 11 10 5 0 0 7 8 5 7 0 | 11 10 5 5 7 11
6 5 10 | 0 8 3 6 5 10 | 1 9 0 6 5 10 | 1 8 3 1 9 8 6 5 10
1 6 5 1 2 6 | 1 6 5 1 2 6 0 8 3 | 9 6 5 9 0 6 0 2 6 | 5 9 8 5 8 2 5 2 6 8 3 2
11 2 3 6 5 10 | 11 2 0 0 8 11 6 5 10 | 1 9 0 11 2 3 6 5 10 | 11 2 1 1 9 11 9 8 11 6 5 10
6 3 11 6 5 3 5 1 3 | 0 8 11 0 11 5 0 5 1 5 11 6 | 6 3 11 0 3 6 0 6 5 0 5 9 | 6 5 9 6 9 11 11 9 8
4 7 8 6 5 10 | 0 4 3 4 7 3 6 5 10 | 1 9 0 4 7 8 6 5 10 | 1 9 4 1 4 7 1 7 3 6 5 10
4 7 8 1 6 5 1 2 6 | 0 4 3 4 7 3 1 6 5 1 2 6 | 4 7 8 9 6 5 9 0 6 0 2 6 | 7 3 9 4 7 9 3 2 9 5 9 6 2 6 9
11 2 3 4 7 8 6 5 10 | 11 4 7 11 2 4 2 0 4 6 5 10 | 1 9 0 11 2 3 4 7 8 6 5 10 | 4 7 11 9 4 11 11 2 9 1 9 2 6 5 10
4 7 8 6 3 11 6 5 3 5 1 3 | 5 1 11 5 11 6 1 0 11 4 7 11 0 4 11 | 4 7 8 6 3 11 0 3 6 0 6 5 0 5 9 | 6 5 9 6 9 11 4 7 9 7 11 9
10 4 9 6 4 10 | 10 4 9 6 4 10 0 8 3 | 0 1 10 10 6 0 6 4 0 | 1 8 3 1 6 8 8 6 4 6 1 10
1 4 9 1 2 4 2 6 4 | 1 4 9 1 2 4 2 6 4 0 8 3 | 0 2 4 4 2 6 | 8 3 2 8 2 4 4 2 6
11 2 3 10 4 9 6 4 10 | 11 2 0 0 8 11 10 4 9 6 4 10 | 11 2 3 0 1 10 10 6 0 6 4 0 | 6 4 1 6 1 10 1 4 8 11 2 1 1 8 11
9 6 4 3 6 9 1 3 9 11 6 3 | 1 8 11 0 8 1 11 6 1 1 4 9 6 4 1 | 6 3 11 0 3 6 6 4 0 | 8 6 4 6 8 11
6 7 10 7 8 10 8 9 10 | 6 7 10 0 10 7 0 9 10 0 7 3 | 6 7 10 1 10 7 1 7 8 0 1 8 | 6 7 10 1 10 7 1 7 3
1 2 6 1 6 8 1 8 9 6 7 8 | 2 6 9 1 2 9 6 7 9 3 0 9 7 3 9 | 0 7 8 7 0 6 6 0 2 | 2 7 3 2 6 7
11 2 3 6 7 10 7 8 10 8 9 10 | 2 0 7 11 2 7 0 9 7 6 7 10 9 10 7 | 6 7 10 1 10 7 1 7 8 0 1 8 11 2 3 | 11 2 1 1 7 11 10 6 1 1 6 7
8 9 6 6 7 8 1 6 9 11 6 3 1 3 6 | 0 9 1 6 7 11 | 0 7 8 7 0 6 0 3 11 11 6 0 | 6 7 11
"""


def _tri_table() -> tuple[np.ndarray, np.ndarray]:
    rows = [r.strip() for line in _TRI_TEXT.strip().splitlines() for r in line.split("|")]
    assert len(rows) == 128
    table = np.full((128, 15), -1, dtype=np.int64)
    counts = np.zeros(128, dtype=np.int64)
    for i, r in enumerate(rows):
        vals = [] if r == "-" else [int(v) for v in r.split()]
        assert len(vals) % 3 == 0
        table[i, :len(vals)] = vals
        counts[i] = len(vals) // 3
    return table, counts


_TRI_TABLE, _TRI_COUNT = _tri_table()


def _cube_indices(mask: np.ndarray) -> np.ndarray:
    """Cube index (0..255, PyRadiomics' corner bits) of every 2x2x2 cube of a boolean array."""
    m = mask.astype(np.uint8)
    nz, ny, nx = (s - 1 for s in m.shape)
    cube = np.zeros((nz, ny, nx), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(_GRID_ANGLES):
        cube |= m[dz:dz + nz, dy:dy + ny, dx:dx + nx] << np.uint8(bit)
    return cube


def mesh_coefficients(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """Surface area and volume of PyRadiomics' marching-cubes mesh, bit-identical to its C code.

    Parameters
    ----------
    mask : (Z, Y, X) bool ndarray
        The label, already padded with one background voxel on every side (as PyRadiomics does).
    spacing : (3,) array-like
        Voxel spacing in the array's axis order (z, y, x), mm.

    Returns
    -------
    (float, float)
        Surface area (mm^2) and volume (mm^3).
    """
    s = np.asarray(spacing, dtype=np.float64)
    cube = _cube_indices(np.asarray(mask, dtype=bool)).ravel()
    flip = cube >= 128
    cube = np.where(flip, cube ^ np.uint8(0xFF), cube).astype(np.int64)
    ntri = _TRI_COUNT[cube]
    sel = np.flatnonzero(ntri)  # C order = the loop's order
    if sel.size == 0:
        return 0.0, 0.0
    reps = ntri[sel]
    cube_of_tri = np.repeat(sel, reps)
    first = np.cumsum(reps) - reps
    t = np.arange(cube_of_tri.size) - np.repeat(first, reps)
    code = cube[cube_of_tri]
    sign = np.where(flip[cube_of_tri], -1.0, 1.0)
    nz, ny, nx = (n - 1 for n in mask.shape)
    origin = np.stack(np.unravel_index(cube_of_tri, (nz, ny, nx)), axis=1).astype(np.float64)
    pts = []
    for k in range(3):
        edge = _TRI_TABLE[code, 3 * t + k]
        pts.append((origin + _VERT_LIST[edge]) * s)  # (i + v) * spacing, as in C
    a, b, c = pts
    # Volume: signed tetrahedra with the origin, sum(sign * ((a x b) . c)) / 6.
    ab0 = a[:, 1] * b[:, 2] - b[:, 1] * a[:, 2]
    ab1 = a[:, 2] * b[:, 0] - b[:, 2] * a[:, 0]
    ab2 = a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]
    vol_terms = sign * (ab0 * c[:, 0] + ab1 * c[:, 1] + ab2 * c[:, 2])
    volume = float(np.cumsum(vol_terms)[-1]) / 6
    # Surface: half the norm of (a - c) x (b - c).
    a = a - c
    b = b - c
    ab0 = a[:, 1] * b[:, 2] - b[:, 1] * a[:, 2]
    ab1 = a[:, 2] * b[:, 0] - b[:, 2] * a[:, 0]
    ab2 = a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]
    area_terms = 0.5 * np.sqrt(ab0 * ab0 + ab1 * ab1 + ab2 * ab2)
    surface = float(np.cumsum(area_terms)[-1])
    return surface, volume


def mesh_vertices(mask: np.ndarray) -> np.ndarray:
    """PyRadiomics' mesh vertices of a padded boolean (Z, Y, X) label, on the half-voxel lattice.

    Returns
    -------
    (N, 3) int64 ndarray
        ``2 * position`` in voxel units (z, y, x): one row per grid edge whose end voxels differ.
        Physical coordinates are ``(lattice * 0.5) * spacing``.
    """
    m = np.asarray(mask, dtype=bool)
    out = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        idx = np.argwhere(m[tuple(lo)] != m[tuple(hi)]).astype(np.int64) * 2
        idx[:, axis] += 1
        out.append(idx)
    return np.concatenate(out)


def _sq_dist(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Squared distances between rows of p (n, 3) and q (m, 3), C's operation order."""
    d0 = p[:, None, 0] - q[None, :, 0]
    d1 = p[:, None, 1] - q[None, :, 1]
    d2 = p[:, None, 2] - q[None, :, 2]
    return d0 * d0 + d1 * d1 + d2 * d2


def _max_pairs(p: np.ndarray, q: np.ndarray | None = None) -> float:
    """Largest squared distance between a row of p and a row of q (q = p when None)."""
    q = p if q is None else q
    chunk = max(1, 2_000_000 // max(len(q), 1))  # bounded memory: ~50 MB of temporaries
    best = 0.0
    for i in range(0, len(p), chunk):
        best = max(best, float(_sq_dist(p[i:i + chunk], q).max(initial=0.0)))
    return best


def _farthest_sq(points: np.ndarray, lattice: np.ndarray, axes: list[int]) -> float:
    """Largest squared distance within ``points`` (physical, (n, 3)), via the hull of ``lattice``.

    ``axes`` are the columns of ``lattice`` that vary (3 for the 3-D diameter, 2 within a plane).
    """
    n = len(points)
    if n < 2:
        return 0.0
    if n <= 64:
        return _max_pairs(points)
    try:
        hull = ConvexHull(lattice[:, axes].astype(np.float64))
    except (QhullError, ValueError):  # degenerate: all points on a line (2-D) or a plane (3-D)
        return _max_pairs(points)
    return _max_pairs(points[hull.vertices])


def _row_extremes(lattice: np.ndarray, keys: list[int], along: int) -> np.ndarray:
    """Indices of the points with the smallest and largest ``along`` coordinate of each line.

    A line is a set of points sharing the ``keys`` coordinates. The other points of a line lie
    between these two, so they are neither hull vertices nor (strictly) farther from anything.
    """
    order = np.lexsort([lattice[:, along]] + [lattice[:, k] for k in reversed(keys)])
    sk = lattice[order][:, keys]
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any(sk[1:] != sk[:-1], axis=1)
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(order) - 1)
    return np.unique(order[np.concatenate([first, last])])


_N_DIRECTIONS = 8
_DIRECTIONS = np.stack([np.cos(np.arange(_N_DIRECTIONS) * np.pi / _N_DIRECTIONS),
                        np.sin(np.arange(_N_DIRECTIONS) * np.pi / _N_DIRECTIONS)], axis=1)


def _width_bound(points2d: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Upper bound of the squared diameter of each group of 2-D points (groups start at ``starts``).

    The diameter is the largest width over all directions. A direction u at angle t from u1
    towards u2 (2*delta apart) is a*u1 + b*u2 with a, b >= 0 and a + b = cos(delta - t) / cos(delta)
    <= 1 / cos(delta), so width(u) <= max(width(u1), width(u2)) / cos(delta); with 8 sampled
    directions the bound is within 2 % of the diameter.
    """
    proj = points2d @ _DIRECTIONS.T
    width = np.maximum.reduceat(proj, starts, axis=0) - np.minimum.reduceat(proj, starts, axis=0)
    b = width.max(axis=1) / np.cos(np.pi / (2 * _N_DIRECTIONS))
    return b * b


def max_diameters(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float, float]:
    """PyRadiomics' four maximum diameters of a padded boolean (Z, Y, X) label.

    Returns
    -------
    (float, float, float, float)
        Largest vertex distance with equal z (``Maximum2DDiameterSlice``), equal y
        (``...Column``), equal x (``...Row``), and overall (``Maximum3DDiameter``), mm.
    """
    s = np.asarray(spacing, dtype=np.float64)
    lattice = mesh_vertices(mask)
    if len(lattice) == 0:
        return 0.0, 0.0, 0.0, 0.0
    # Only the two ends of each line of vertices matter (in a plane and in 3-D): lines along x
    # serve the z- and y-planes and the 3-D diameter, lines along y the x-planes.
    along_x = lattice[_row_extremes(lattice, [0, 1], 2)]
    along_y = lattice[_row_extremes(lattice, [2, 0], 1)]
    out = []
    for axis in range(3):
        free = [a for a in range(3) if a != axis]
        sub = along_y if axis == 2 else along_x
        pts = (sub * 0.5) * s  # (i + v) * spacing, the same doubles as in C
        order = np.argsort(sub[:, axis], kind="stable")
        starts = np.flatnonzero(np.diff(sub[order, axis], prepend=-1))
        groups = np.split(order, starts[1:])
        bound = _width_bound(pts[order][:, free], starts)
        # Visit the planes by decreasing upper bound; stop when none can beat the best.
        best = 0.0
        for gi in np.argsort(bound)[::-1]:
            if bound[gi] * (1 + 1e-9) < best:
                break
            g = groups[gi]
            best = max(best, _farthest_sq(pts[g], sub[g], free))
        out.append(best)
    out.append(_farthest_sq((along_x * 0.5) * s, along_x, [0, 1, 2]))
    return tuple(float(np.sqrt(v)) for v in out)


class HullShape(RadiomicsShape):
    """PyRadiomics' 3-D shape features; mesh and diameters from this module instead of its C pass.

    Identical to ``radiomics.shape.RadiomicsShape`` except that ``SurfaceArea``, ``Volume`` and
    ``diameters`` come from :func:`mesh_coefficients` and :func:`max_diameters` (same values).
    """

    def _initSegmentBasedCalculation(self):  # noqa: N802 (PyRadiomics' name)
        import SimpleITK as sitk

        self.pixelSpacing = np.array(self.inputImage.GetSpacing()[::-1])
        cpif = sitk.ConstantPadImageFilter()
        cpif.SetPadLowerBound([1, 1, 1])
        cpif.SetPadUpperBound([1, 1, 1])
        self.inputMask = cpif.Execute(self.inputMask)
        self.maskArray = (sitk.GetArrayFromImage(self.inputMask) == self.label)
        self.labelledVoxelCoordinates = np.where(self.maskArray != 0)

        self.SurfaceArea, self.Volume = mesh_coefficients(self.maskArray, self.pixelSpacing)
        self.diameters = max_diameters(self.maskArray, self.pixelSpacing)

        # The rest is PyRadiomics' own code (radiomics/shape.py, 3.0.1).
        Np = len(self.labelledVoxelCoordinates[0])
        coordinates = np.array(self.labelledVoxelCoordinates, dtype="int").transpose((1, 0))
        physicalCoordinates = coordinates * self.pixelSpacing[None, :]
        physicalCoordinates -= np.mean(physicalCoordinates, axis=0)
        physicalCoordinates /= np.sqrt(Np)
        covariance = np.dot(physicalCoordinates.T.copy(), physicalCoordinates)
        self.eigenValues = np.linalg.eigvals(covariance)
        machine_errors = np.bitwise_and(self.eigenValues < 0, self.eigenValues > -1e-10)
        if np.sum(machine_errors) > 0:
            self.logger.warning("Encountered %d eigenvalues < 0 and > -1e-10, rounding to 0",
                                np.sum(machine_errors))
            self.eigenValues[machine_errors] = 0
        self.eigenValues.sort()
