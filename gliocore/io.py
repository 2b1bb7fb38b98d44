"""Image I/O: reading and checking NIfTI volumes, writing masks, content hashes."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from gliocore.errors import GeometryMismatchError, InvalidVolumeError
from gliocore.types import PathType

#: Affines of one subject's volumes may differ by this much (mm / direction cosines).
AFFINE_ATOL = 1e-3


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


def load_volume(path: PathType, dtype: np.dtype | type | None = np.float32) -> Volume:
    """Read a NIfTI volume and check it, with errors in nibabel's order.

    Missing file, then empty file, then "not a gzip file", then unreadable format, then
    dimensionality (3-D, or 4-D with one volume), then non-finite values.

    Parameters
    ----------
    path : str or path-like
        ``.nii`` or ``.nii.gz`` file.
    dtype : numpy dtype or None
        Cast the data to this type (default float32); None keeps the stored type.

    Returns
    -------
    Volume

    Raises
    ------
    InvalidVolumeError
        With a message that names the file and what is wrong.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidVolumeError(f"No such file: {p}")
    if p.is_dir():
        raise InvalidVolumeError(f"Expected a NIfTI file, got a directory: {p}")
    if p.stat().st_size == 0:
        raise InvalidVolumeError(f"Empty file: {p}")
    if p.name.endswith(".gz"):
        with open(p, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise InvalidVolumeError(f"File {p} is not a gzip file (it ends in .gz)")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, OSError, ...
        raise InvalidVolumeError(f"Cannot read {p} as NIfTI: {exc}") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidVolumeError(f"Expected NIfTI, got {type(img).__name__}: {p}")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidVolumeError(f"Expected a 3D volume, got {len(img.shape)}D with shape "
                                 f"{tuple(img.shape)}: {p}")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip streams fail here
        raise InvalidVolumeError(f"Cannot read the voxel data of {p} (truncated or corrupt "
                                 f"file?): {exc}") from exc
    data = data.reshape(shape)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            raise InvalidVolumeError(f"{int(bad.sum())} non-finite voxel values (NaN/inf) in {p}; "
                                     "fix or replace them (e.g. with 0) before processing")
    affine = img.affine
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


def save_mask(mask: np.ndarray, affine: np.ndarray, path: PathType) -> Path:
    """Write an integer mask as NIfTI (uint8), atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp" + (".nii.gz" if p.name.endswith(".gz") else ".nii"))
    nib.save(img, str(tmp))
    os.replace(tmp, p)
    return p


def save_volume(data: np.ndarray, affine: np.ndarray, path: PathType) -> Path:
    """Write a 3-D image as NIfTI, atomically, keeping its dtype."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp" + (".nii.gz" if p.name.endswith(".gz") else ".nii"))
    nib.save(img, str(tmp))
    os.replace(tmp, p)
    return p


def file_sha256(path: PathType, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (the content part of every cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    """SHA-256 of a UTF-8 string (for parameter sets and composite keys)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
