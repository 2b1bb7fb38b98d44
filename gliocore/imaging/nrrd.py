"""NRRD reading (attached data only, as 3D Slicer writes it), with SimpleITK.

The header is read and checked before a voxel is read; the image becomes the same
:class:`~gliocore.imaging.volume.Volume` (RAS+ world, (i, j, k) voxel order) as a NIfTI file.
SimpleITK is imported lazily: only NRRD files need it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gliocore.errors import InvalidVolumeError
from gliocore.imaging.volume import (Volume, announced_bytes, check_gzip_can_hold, checked_volume,
                                     human_bytes)
from gliocore.settings import InputLimits
from gliocore.types import PathType

if TYPE_CHECKING:
    import SimpleITK as sitk

#: NRRD ``type`` field values (all spellings of the NRRD 5 specification) and their numpy types.
NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
                    "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long",
                     "signed long long int", "int64", "int64_t"), "i8"),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t"), "u8"),
    "float": "f4", "double": "f8",
}
#: NRRD encodings read (others, e.g. bzip2 or hex, are refused with a message).
NRRD_ENCODINGS = ("raw", "gzip", "gz", "ascii", "text", "txt")
#: ITK/DICOM (LPS) world axes from NIfTI/GlioScope (RAS) ones, and back (its own inverse).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def volume_from_sitk(image: sitk.Image, path: Path | None = None, dtype: Any = None) -> Volume:
    """Convert a 3-D SimpleITK image (LPS, (k, j, i) array) to a :class:`Volume` (RAS, (i, j, k)).

    Parameters
    ----------
    image : SimpleITK.Image
        A scalar 3-D image.
    path : Path, optional
        The file it came from (kept on the volume, named in errors).
    dtype : numpy dtype, optional
        Cast the voxels to this type; None keeps SimpleITK's type.
    """
    if image.GetDimension() != 3:
        raise InvalidVolumeError(f"Expected a 3D volume, got {image.GetDimension()}D"
                                 + (f": {path}" if path else ""))
    import SimpleITK as sitk  # only NRRD needs it: not on every import of gliocore.imaging.io (~50 ms)

    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    affine = ras_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    return Volume(np.ascontiguousarray(data), affine, path)


def ras_affine(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]
                ) -> np.ndarray:
    """Voxel-to-world RAS affine of ITK's (LPS) geometry; the first three axes only.

    ``direction`` is ITK's flat, row-major ``ndim x ndim`` matrix, ``spacing`` and ``origin``
    have ``ndim`` values (3 or 4: a 4-D image's extra axis is left out).
    """
    ndim = len(spacing)
    direction = np.asarray(direction, dtype=float).reshape(ndim, ndim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ (direction * np.asarray(spacing[:3], dtype=float)[None, :])
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(origin[:3], dtype=float)
    return affine


def read_nrrd_header(path: PathType, limits: InputLimits | None = None) -> tuple[dict[str, str], int]:
    """The fields of an NRRD header and its length in bytes, reading at most the header.

    Parameters
    ----------
    path : str or path-like
        ``.nrrd`` file.
    limits : InputLimits, optional
        ``max_header_bytes`` bounds what is read (default :class:`InputLimits`).

    Returns
    -------
    fields : dict
        Lower-case field name -> value (``sizes``, ``type``, ``encoding``, ...).
    header_bytes : int
        Where the voxel data start (attached data).

    Raises
    ------
    InvalidVolumeError
        No ``NRRD000x`` magic, or no end of header within ``limits.max_header_bytes``.
    """
    p = Path(path)
    limits = limits or InputLimits()
    try:
        with open(p, "rb") as fh:
            raw = b""
            while True:
                chunk = fh.read(64 * 1024)
                raw += chunk
                end = min((i for i in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n")) if i >= 0),
                          default=-1)
                if end >= 0 or not chunk or len(raw) > limits.max_header_bytes:
                    break
    except OSError as exc:
        raise InvalidVolumeError(f"Cannot read the header of {p}: {exc}") from exc
    if not raw.startswith(b"NRRD000"):
        raise InvalidVolumeError(f"Cannot read {p} as NRRD: no NRRD header (the file starts "
                                 "with something else)")
    if end < 0 or end > limits.max_header_bytes:
        raise InvalidVolumeError(f"Cannot read {p} as NRRD: no end of header (blank line) within "
                                 f"{human_bytes(limits.max_header_bytes)}; the file is truncated or "
                                 "corrupt")
    sep = 2 if raw[end:end + 2] == b"\n\n" else 4
    fields: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        field = line.find(": ")
        pair = line.find(":=")
        if line.startswith("#") or field < 0 or 0 <= pair < field:
            continue  # comments, key/value pairs ("key:=value"), anything else
        fields[line[:field].strip().lower()] = line[field + 2:].strip()
    return fields, end + sep


def check_nrrd_header(path: PathType, fields: dict[str, str], header_bytes: int,
                      limits: InputLimits | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Check what an NRRD header announces, before any voxel is read (see :func:`check_nifti_header`).

    Refused: detached data (``data file``: a file must hold its own voxels, and a header must
    not point the reader at another file), encodings other than raw/gzip/ascii, non-scalar or
    unknown types, more than :attr:`InputLimits.max_volume_bytes`, and files too short (raw) or
    too small (gzip, see :data:`GZIP_MAX_RATIO`) for the announced voxels.

    Parameters
    ----------
    path : str or path-like
        The file (named in errors; its size is compared with the announced voxels).
    fields, header_bytes
        What :func:`read_nrrd_header` returned for it.
    limits : InputLimits, optional
        Default :class:`InputLimits`.

    Returns
    -------
    shape : tuple of int
    dtype : numpy dtype
    """
    p = Path(path)
    limits = limits or InputLimits()
    if "data file" in fields or "datafile" in fields:
        raise InvalidVolumeError(f"{p} is a detached NRRD header (its voxels are in another "
                                 "file); save it as a single .nrrd file with attached data")
    type_name = fields.get("type", "").lower()
    if type_name not in NRRD_TYPES:
        raise InvalidVolumeError(f"Unsupported NRRD type {type_name or '(none)'!r} in {p}; "
                                 "GlioScope reads real-valued scalar volumes")
    dt = np.dtype(NRRD_TYPES[type_name])
    encoding = fields.get("encoding", "").lower()
    if encoding not in NRRD_ENCODINGS:
        raise InvalidVolumeError(f"Unsupported NRRD encoding {encoding or '(none)'!r} in {p}; "
                                 "save it raw or gzip-compressed")
    try:
        shape = tuple(int(v) for v in fields.get("sizes", "").split())
        ndim = int(fields.get("dimension", len(shape)))
    except ValueError as exc:
        raise InvalidVolumeError(f"Invalid NRRD header in {p}: sizes "
                                 f"{fields.get('sizes')!r}") from exc
    if not shape or len(shape) != ndim or any(v <= 0 for v in shape):
        raise InvalidVolumeError(f"Invalid NRRD header in {p}: dimension {ndim}, sizes {shape}")
    n_bytes = announced_bytes(p, shape, dt, limits)
    size = p.stat().st_size
    if encoding in ("gzip", "gz"):
        check_gzip_can_hold(p, n_bytes)
    elif encoding == "raw" and size < header_bytes + n_bytes:
        raise InvalidVolumeError(
            f"{p} is truncated: its header announces {human_bytes(n_bytes)} of voxel data, but the "
            f"file has {size} bytes. Re-export or re-copy the file")
    elif encoding in ("ascii", "text", "txt") and size - header_bytes < n_bytes // dt.itemsize:
        raise InvalidVolumeError(f"{p} is truncated: fewer characters than announced values")
    return shape, dt


def load_nrrd(p: Path, dtype: np.dtype | type | None, limits: InputLimits | None) -> Volume:
    fields, header_bytes = read_nrrd_header(p, limits)
    shape, _ = check_nrrd_header(p, fields, header_bytes, limits)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidVolumeError(f"Expected a 3D volume, got {len(shape)}D with sizes {shape} "
                                 f"(a multi-component or 4-D NRRD, e.g. a Slicer .seg.nrrd with "
                                 f"several layers?): {p}")
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(p))
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's message
        raise InvalidVolumeError(f"Cannot read {p} as NRRD: {exc}") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidVolumeError(f"Expected a scalar volume, got "
                                 f"{image.GetNumberOfComponentsPerPixel()} components per voxel: {p}")
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    vol = volume_from_sitk(image, p, dtype)
    return checked_volume(vol.data, vol.affine, p)


def read_nrrd_geometry(p: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (3-D) and RAS affine of an NRRD file, from its header only (see :func:`read_geometry`)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        raise InvalidVolumeError(f"Cannot read the header of {p} as NRRD: {exc}") from exc
    affine = ras_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin())
    return tuple(int(v) for v in reader.GetSize()[:3]), affine  # type: ignore[return-value]
