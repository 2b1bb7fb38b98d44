"""Image I/O: reading and checking NIfTI and NRRD volumes, writing masks, content hashes.

NIfTI (``.nii``, ``.nii.gz``) is read with nibabel; NRRD (``.nrrd``, attached data only, as 3D
Slicer writes it) with SimpleITK. Both are checked from their headers before a voxel is read and
become the same :class:`Volume` (RAS+ world, (i, j, k) voxel order).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from gliocore.errors import GeometryMismatchError, InvalidVolumeError
from gliocore.settings import InputLimits
from gliocore.types import PathType

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Affines of one subject's volumes may differ by this much (mm / direction cosines).
AFFINE_ATOL = 1e-3
#: qform and sform of one file may differ by this much before the file is refused as ambiguous.
QFORM_SFORM_ATOL = 1e-2
#: Deflate cannot compress better than ~1032:1, so a .nii.gz announcing more voxel bytes than
#: this many times its size is truncated or lying (checked before anything is decompressed).
GZIP_MAX_RATIO = 1032
#: NIfTI data types GlioScope reads (real-valued scalars). Complex, RGB(A) and bit data are refused.
SUPPORTED_DTYPES = frozenset(np.dtype(t) for t in (
    "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"))
#: File name endings GlioScope reads as images (lower case).
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
NRRD_EXTENSIONS = (".nrrd",)
IMAGE_EXTENSIONS = NIFTI_EXTENSIONS + NRRD_EXTENSIONS
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


def _announced_bytes(p: Path, shape: tuple[int, ...], dt: np.dtype, limits: InputLimits) -> int:
    """Bytes of the voxel array a header announces; refused above ``limits.max_volume_bytes``."""
    n_bytes = int(np.prod(np.array(shape, dtype=object))) * dt.itemsize
    if n_bytes > limits.max_volume_bytes:
        raise InvalidVolumeError(
            f"The header of {p} announces a {'x'.join(map(str, shape))} {dt.name} volume "
            f"({_human(n_bytes)}), more than the limit of {_human(limits.max_volume_bytes)} per "
            "volume (Settings.input_limits.max_volume_bytes); the file is corrupt or not a "
            "single MRI volume. Nothing was read")
    return n_bytes


def _check_gzip_can_hold(p: Path, n_bytes: int) -> None:
    """Refuse a gzip stream announcing more than deflate can hold (:data:`GZIP_MAX_RATIO`)."""
    size = p.stat().st_size
    if n_bytes > GZIP_MAX_RATIO * size + 64 * 1024:
        raise InvalidVolumeError(
            f"The header of {p} announces {_human(n_bytes)} of voxel data, which a gzip file "
            f"of {_human(size)} cannot hold (deflate compresses at most ~{GZIP_MAX_RATIO}:1); "
            "the file is truncated or its header is wrong. Nothing was decompressed")


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
    n_bytes = _announced_bytes(p, shape, dt, limits)
    offset = max(int(header["vox_offset"]), int(header.sizeof_hdr) + 4)
    if offset > limits.max_header_bytes:
        raise InvalidVolumeError(
            f"The header of {p} puts the voxel data at byte {offset}, beyond the limit of "
            f"{_human(limits.max_header_bytes)} (Settings.input_limits.max_header_bytes); the "
            "file is corrupt")
    size = p.stat().st_size
    if p.name.lower().endswith(".gz"):
        _check_gzip_can_hold(p, offset + n_bytes)
    elif size < offset + n_bytes:
        raise InvalidVolumeError(
            f"{p} is truncated: its header announces {_human(n_bytes)} of voxel data from byte "
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


def _human(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


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
    affine = _ras_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    return Volume(np.ascontiguousarray(data), affine, path)


def _ras_affine(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]
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
                                 f"{_human(limits.max_header_bytes)}; the file is truncated or "
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
    n_bytes = _announced_bytes(p, shape, dt, limits)
    size = p.stat().st_size
    if encoding in ("gzip", "gz"):
        _check_gzip_can_hold(p, n_bytes)
    elif encoding == "raw" and size < header_bytes + n_bytes:
        raise InvalidVolumeError(
            f"{p} is truncated: its header announces {_human(n_bytes)} of voxel data, but the "
            f"file has {size} bytes. Re-export or re-copy the file")
    elif encoding in ("ascii", "text", "txt") and size - header_bytes < n_bytes // dt.itemsize:
        raise InvalidVolumeError(f"{p} is truncated: fewer characters than announced values")
    return shape, dt


def _load_nrrd(p: Path, dtype: np.dtype | type | None, limits: InputLimits | None) -> Volume:
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
    return _checked(vol.data, vol.affine, p)


def _checked(data: np.ndarray, affine: np.ndarray | None, p: Path) -> Volume:
    """The voxel values and affine checks common to every format."""
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            raise InvalidVolumeError(f"{int(bad.sum())} non-finite voxel values (NaN/inf) in {p}; "
                                     "fix or replace them (e.g. with 0) before processing")
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidVolumeError(f"Invalid affine (missing, singular or non-finite) in {p}")
    return Volume(np.ascontiguousarray(data), np.asarray(affine, dtype=float), p)


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
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        try:
            reader.ReadImageInformation()
        except Exception as exc:
            raise InvalidVolumeError(f"Cannot read the header of {p} as NRRD: {exc}") from exc
        affine = _ras_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin())
        return tuple(int(v) for v in reader.GetSize()[:3]), affine  # type: ignore[return-value]
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
        return _load_nrrd(p, dtype, limits)
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
    return _checked(data, img.affine, p)


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
