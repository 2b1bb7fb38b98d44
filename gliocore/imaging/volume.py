"""The in-memory image (:class:`Volume`), its grid, and checks shared by every file format.

:mod:`gliocore.imaging.io` (NIfTI, :func:`~gliocore.imaging.io.load_volume`) and
:mod:`gliocore.imaging.nrrd` both build their volumes and size checks from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliocore.errors import GeometryMismatchError, InvalidVolumeError
from gliocore.settings import InputLimits
from gliocore.types import PathType

#: Affines of one subject's volumes may differ by this much (mm / direction cosines).
AFFINE_ATOL = 1e-3
#: Deflate cannot compress better than ~1032:1, so a .nii.gz announcing more voxel bytes than
#: this many times its size is truncated or lying (checked before anything is decompressed).
GZIP_MAX_RATIO = 1032
#: File name endings GlioScope reads as images (lower case).
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
NRRD_EXTENSIONS = (".nrrd",)
IMAGE_EXTENSIONS = NIFTI_EXTENSIONS + NRRD_EXTENSIONS


def image_suffix(path: PathType) -> str | None:
    """The image type ending of ``path`` (``.nii.gz``, ``.nii`` or ``.nrrd``), or None."""
    low = Path(path).name.lower()
    return next((ext for ext in IMAGE_EXTENSIONS if low.endswith(ext)), None)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image in voxel order (i, j, k) with its affine.

    Attributes
    ----------
    data : (I, J, K) ndarray
        Voxel values as stored on disk (scaled by the NIfTI slope/intercept).
    affine : (4, 4) ndarray
        Voxel-to-world (RAS+, mm) transform.
    path : Path or None
        File it was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise InvalidVolumeError(f"Expected a 3D volume, got {self.data.ndim}D"
                                     + (f" ({self.path})" if self.path else ""))
        if np.asarray(self.affine).shape != (4, 4):
            raise InvalidVolumeError("affine must be 4x4")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (from the affine's column norms)."""
        return spacing_from_affine(self.affine)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm³."""
        return float(abs(np.linalg.det(np.asarray(self.affine)[:3, :3])))


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the norms of the affine's first three columns."""
    a = np.asarray(affine, dtype=float)
    return tuple(float(v) for v in np.sqrt((a[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def checked_volume(data: np.ndarray, affine: np.ndarray | None, p: Path) -> Volume:
    """The voxel values and affine checks common to every format."""
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            raise InvalidVolumeError(f"{int(bad.sum())} non-finite voxel values (NaN/inf) in {p}; "
                                     "fix or replace them (e.g. with 0) before processing")
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidVolumeError(f"Invalid affine (missing, singular or non-finite) in {p}")
    return Volume(np.ascontiguousarray(data), np.asarray(affine, dtype=float), p)


def check_same_grid(volumes: dict[str, Volume], atol: float = AFFINE_ATOL) -> None:
    """Raise :class:`GeometryMismatchError` unless all volumes share shape and affine.

    The message names the first volume that differs and suggests resampling.
    """
    items = list(volumes.items())
    if not items:
        return
    ref_name, ref = items[0]
    for name, vol in items[1:]:
        if vol.shape != ref.shape:
            raise GeometryMismatchError(
                f"{name} shape {vol.shape} != {ref_name} shape {ref.shape}"
                f" ({vol.path}); co-register and resample all sequences to one grid first")
        if not np.allclose(vol.affine, ref.affine, atol=atol):
            raise GeometryMismatchError(
                f"{name} affine differs from {ref_name} affine by up to "
                f"{np.abs(vol.affine - ref.affine).max():.4g} ({vol.path}); "
                "co-register and resample all sequences to one grid first")


def announced_bytes(p: Path, shape: tuple[int, ...], dt: np.dtype, limits: InputLimits) -> int:
    """Bytes of the voxel array a header announces; refused above ``limits.max_volume_bytes``."""
    n_bytes = int(np.prod(np.array(shape, dtype=object))) * dt.itemsize
    if n_bytes > limits.max_volume_bytes:
        raise InvalidVolumeError(
            f"The header of {p} announces a {'x'.join(map(str, shape))} {dt.name} volume "
            f"({human_bytes(n_bytes)}), more than the limit of {human_bytes(limits.max_volume_bytes)} per "
            "volume (Settings.input_limits.max_volume_bytes); the file is corrupt or not a "
            "single MRI volume. Nothing was read")
    return n_bytes


def check_gzip_can_hold(p: Path, n_bytes: int) -> None:
    """Refuse a gzip stream announcing more than deflate can hold (:data:`GZIP_MAX_RATIO`)."""
    size = p.stat().st_size
    if n_bytes > GZIP_MAX_RATIO * size + 64 * 1024:
        raise InvalidVolumeError(
            f"The header of {p} announces {human_bytes(n_bytes)} of voxel data, which a gzip file "
            f"of {human_bytes(size)} cannot hold (deflate compresses at most ~{GZIP_MAX_RATIO}:1); "
            "the file is truncated or its header is wrong. Nothing was decompressed")


def human_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
