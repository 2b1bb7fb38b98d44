"""Image I/O: reading and checking NIfTI volumes, :func:`load_volume` for any format, writing
masks, content hashes.

NIfTI (``.nii``, ``.nii.gz``) is read with nibabel; NRRD (``.nrrd``) by
:mod:`gliocore.imaging.nrrd`. Both are checked from their headers before a voxel is read and
become the same :class:`~gliocore.imaging.volume.Volume` (RAS+ world, (i, j, k) voxel order).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from gliocore.errors import InvalidVolumeError
from gliocore.imaging.nrrd import load_nrrd, read_nrrd_geometry
from gliocore.imaging.volume import (NIFTI_EXTENSIONS, NRRD_EXTENSIONS, Volume, announced_bytes,
                                     check_gzip_can_hold, checked_volume, human_bytes,
                                     image_suffix)
from gliocore.settings import InputLimits
from gliocore.types import PathType

#: qform and sform of one file may differ by this much before the file is refused as ambiguous.
QFORM_SFORM_ATOL = 1e-2
#: NIfTI data types GlioScope reads (real-valued scalars). Complex, RGB(A) and bit data are refused.
SUPPORTED_DTYPES = frozenset(np.dtype(t) for t in (
    "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"))


def read_nifti_header(path: PathType) -> nib.Nifti1Header | nib.Nifti2Header:
    """Read only the header of a NIfTI-1/2 file (at most 540 bytes, decompressed if ``.gz``).

    Raises
    ------
    InvalidVolumeError
        When the first bytes are not a NIfTI header (in either byte order).
    """
    p = Path(path)
    try:
        if p.name.lower().endswith(".gz"):
            with gzip.open(p, "rb") as fh:
                raw = fh.read(540)
        else:
            with open(p, "rb") as fh:
                raw = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidVolumeError(f"Cannot read the header of {p}: {exc}") from exc
    sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")} if len(raw) >= 4 else set()
    klass = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header if 348 in sizes else None
    if klass is None or len(raw) < klass.sizeof_hdr:
        raise InvalidVolumeError(f"Cannot read {p} as NIfTI: no NIfTI-1/2 header (the file "
                                 "starts with something else or is truncated)")
    try:
        return klass.from_fileobj(io.BytesIO(raw[:klass.sizeof_hdr]), check=False)
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, ...
        raise InvalidVolumeError(f"Cannot read {p} as NIfTI: bad header ({exc})") from exc


def check_nifti_header(path: PathType, header: nib.Nifti1Header | nib.Nifti2Header,
                       limits: InputLimits | None = None) -> tuple[int, ...]:
    """Check what a header announces against the file and the limits, before any voxel is read.

    Checks the data type (real scalars only), the shape (positive, at most 7 axes), the size of
    the voxel array against ``limits.max_volume_bytes``, the data offset, and that the file can
    hold the announced bytes: an uncompressed file must be at least ``offset + bytes`` long; a
    gzipped one cannot hold more than :data:`GZIP_MAX_RATIO` times its size.

    Returns
    -------
    shape : tuple of int
        The announced shape.

    Raises
    ------
    InvalidVolumeError
        Naming the file and what is wrong.
    """
    p = Path(path)
    limits = limits or InputLimits()
    code = int(header["datatype"])
    try:
        dt = np.dtype(header.get_data_dtype())
    except Exception as exc:
        raise InvalidVolumeError(f"Unknown NIfTI data type code {code} in {p}") from exc
    if dt.fields is not None or dt.kind in "cbVO" or dt.newbyteorder("=") not in SUPPORTED_DTYPES:
        what = ("RGB/RGBA colour" if dt.fields is not None else "complex" if dt.kind == "c"
                else str(dt))
        raise InvalidVolumeError(
            f"Unsupported NIfTI data type {what} (code {code}) in {p}; GlioScope reads real-valued "
            "scalar volumes (integers or floats): convert the image (e.g. take the magnitude of a "
            "complex image, or a grey-level version of a colour one)")
    ndim = int(header["dim"][0])
    if not 1 <= ndim <= 7:
        raise InvalidVolumeError(f"Invalid NIfTI header in {p}: dim[0] = {ndim} axes (must be 1-7)")
    shape = tuple(int(v) for v in header["dim"][1:ndim + 1])
    if any(v <= 0 for v in shape):
        raise InvalidVolumeError(f"Invalid NIfTI header in {p}: shape {shape} has an axis <= 0")
    n_bytes = announced_bytes(p, shape, dt, limits)
    offset = max(int(header["vox_offset"]), int(header.sizeof_hdr) + 4)
    if offset > limits.max_header_bytes:
        raise InvalidVolumeError(
            f"The header of {p} puts the voxel data at byte {offset}, beyond the limit of "
            f"{human_bytes(limits.max_header_bytes)} (Settings.input_limits.max_header_bytes); the "
            "file is corrupt")
    size = p.stat().st_size
    if p.name.lower().endswith(".gz"):
        check_gzip_can_hold(p, offset + n_bytes)
    elif size < offset + n_bytes:
        raise InvalidVolumeError(
            f"{p} is truncated: its header announces {human_bytes(n_bytes)} of voxel data from byte "
            f"{offset}, but the file has {size} bytes. Re-export or re-copy the file")
    return shape


def check_orientation_header(path: PathType, header: nib.Nifti1Header | nib.Nifti2Header) -> None:
    """Refuse a file whose qform and sform are both set but disagree (which one is right?)."""
    q, q_code = header.get_qform(coded=True)
    s, s_code = header.get_sform(coded=True)
    if q is None or s is None or not q_code or not s_code:
        return
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(s))):
        return  # reported as an invalid affine
    diff = float(np.abs(np.asarray(q) - np.asarray(s)).max())
    if diff > QFORM_SFORM_ATOL:
        raise InvalidVolumeError(
            f"qform and sform of {Path(path)} disagree by up to {diff:.4g} (mm / direction "
            "cosines), so the voxel-to-world position is ambiguous; fix the header (keep the "
            "right one and set the other's code to 0, e.g. nibabel img.set_qform(None)) and "
            "re-check the registration")


def read_geometry(path: PathType) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (3-D) and voxel-to-world RAS affine of an image file, from its header only.

    Parameters
    ----------
    path : str or path-like
        ``.nii``, ``.nii.gz`` or ``.nrrd`` file.

    Returns
    -------
    shape : tuple of 3 int
    affine : (4, 4) ndarray
        RAS+ world, as :attr:`Volume.affine` of :func:`load_volume`.
    """
    p = Path(path)
    if image_suffix(p) in NRRD_EXTENSIONS:
        return read_nrrd_geometry(p)
    img = nib.load(str(p))
    return tuple(int(v) for v in img.shape[:3]), np.asarray(img.affine, dtype=float)  # type: ignore[return-value]


def load_volume(path: PathType, dtype: np.dtype | type | None = np.float32,
                limits: InputLimits | None = None) -> Volume:
    """Read a NIfTI or NRRD volume and check it, with errors in nibabel's order.

    Missing file, then empty file, then "not a gzip file", then unreadable header, then what
    the header announces (data type, shape, size against ``limits`` and against the file's
    size; qform/sform agreement) — all before a single voxel is read or allocated — then
    dimensionality (3-D, or 4-D with one volume), then non-finite values and the affine.

    Parameters
    ----------
    path : str or path-like
        ``.nii``, ``.nii.gz`` or ``.nrrd`` file (NRRD: :func:`read_nrrd_header` and
        :func:`check_nrrd_header` play the header checks' part).
    dtype : numpy dtype or None
        Cast the data to this type (default float32); None keeps the stored type.
    limits : InputLimits, optional
        What a header may announce (default :class:`gliocore.settings.InputLimits`).

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
    suffix = image_suffix(p)
    if suffix in NRRD_EXTENSIONS:
        return load_nrrd(p, dtype, limits)
    if suffix not in NIFTI_EXTENSIONS:
        raise InvalidVolumeError(f"Expected a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file, got {p}")
    header = read_nifti_header(p)
    announced = check_nifti_header(p, header, limits)
    shape = announced
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidVolumeError(f"Expected a 3D volume, got {len(announced)}D with shape "
                                 f"{announced}: {p}")
    check_orientation_header(p, header)
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, OSError, ...
        raise InvalidVolumeError(f"Cannot read {p} as NIfTI: {exc}") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidVolumeError(f"Expected NIfTI, got {type(img).__name__}: {p}")
    if tuple(img.shape) != announced:  # nibabel read another header than we checked
        raise InvalidVolumeError(f"Inconsistent NIfTI header in {p}")
    try:
        # nibabel reads exactly the announced (and checked) number of bytes: bounded
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip streams fail here
        raise InvalidVolumeError(f"Cannot read the voxel data of {p} (truncated or corrupt "
                                 f"file?): {exc}") from exc
    data = data.reshape(shape)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return checked_volume(data, img.affine, p)


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
