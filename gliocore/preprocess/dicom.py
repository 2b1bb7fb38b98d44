"""DICOM import: group a folder of files into series, check each series, read it into a volume.

Headers are read with pydicom (``stop_before_pixels``, and only the tags in :data:`TAGS_READ`:
no patient name, ID, birth date or institution is ever read, so none can reach the store, an
export or a log). Pixels are read by SimpleITK/GDCM (``ImageSeriesReader``), which builds the
geometry (origin, direction, slice spacing) from ImagePositionPatient/ImageOrientationPatient.
SimpleITK was chosen over dcm2niix because it is already a dependency, reads in-process (no
temporary files, no subprocess) and returns the image straight to the registration code;
dcm2niix's strengths (vendor quirks, multi-frame mosaics) are refused here with a clear error.

Every check on a series happens on its headers, before any pixel is allocated.
"""
from __future__ import annotations

import contextlib
import hashlib
import locale
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gliocore.types import PathType

#: The only DICOM tags GlioScope reads (keywords). Patient and institution tags are not among them.
TAGS_READ = ("SOPClassUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID", "SeriesNumber",
             "SeriesDescription", "ProtocolName", "ImageType", "ContrastBolusAgent",
             "RepetitionTime", "EchoTime", "InversionTime", "ScanningSequence", "SequenceVariant",
             "MRAcquisitionType", "SliceThickness", "ImagePositionPatient",
             "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
             "StudyDate", "SeriesDate", "AcquisitionDate", "InstanceNumber", "SamplesPerPixel")

#: Most files looked at in one folder; beyond it the folder is refused before any is opened.
MAX_FILES = 20_000
#: Most slices in one series.
MAX_SLICES = 2_000
#: Most voxels in one series (announced by its headers), checked before reading.
MAX_VOXELS = 512 * 512 * 2_000
#: SOP classes of images read here (classic single-frame MR, CT, secondary capture is refused).
IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4": "MR Image", "1.2.840.10008.5.1.4.1.1.2": "CT Image"}
_NON_IMAGE_SOP = {"1.2.840.10008.5.1.4.1.1.88": "Structured Report",
                  "1.2.840.10008.5.1.4.1.1.11": "Presentation State",
                  "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
                  "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR (multi-frame)",
                  "1.2.840.10008.5.1.4.1.1.66": "Raw Data / Registration",
                  "1.2.840.10008.5.1.4.1.1.104": "Encapsulated document"}


class DicomSeriesError(ValueError):
    """A DICOM series that cannot be read as one volume; the message names the series."""


@dataclass(frozen=True)
class Slice:
    """The header fields of one file that a series check needs."""

    path: Path
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    frames: int
    instance: int | None


@dataclass
class Series:
    """One DICOM series: its headers (identifier-free) and files.

    Attributes
    ----------
    key : str
        A short hash of the SeriesInstanceUID (the UID itself is never kept).
    number : int | None
        SeriesNumber.
    description : str
        SeriesDescription (or ProtocolName when empty).
    slices : list of Slice
        One entry per file.
    problem : str | None
        Why the series cannot be read as a volume (None when it can), set by :func:`check_series`.
    """

    key: str
    number: int | None
    description: str
    sop_class: str
    modality: str
    image_type: tuple[str, ...]
    tr: float | None
    te: float | None
    ti: float | None
    scanning_sequence: str
    sequence_variant: str
    acquisition_type: str
    contrast_agent: str
    slice_thickness: float | None
    study_key: str
    date: str | None
    slices: list[Slice] = field(default_factory=list)
    problem: str | None = None

    @property
    def label(self) -> str:
        """How errors name the series: number, description and file count."""
        num = f"series {self.number}" if self.number is not None else f"series {self.key}"
        return f"{num} '{self.description or '(no description)'}' ({len(self.slices)} files)"

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.slices]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def iter_files(folder: PathType, max_files: int = MAX_FILES) -> Iterator[Path]:
    """Every regular file under ``folder`` (any nesting); refuses more than ``max_files``.

    Raises
    ------
    DicomSeriesError
        The folder holds more than ``max_files`` files (counted while walking, before any is
        opened), or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DicomSeriesError(f"{root}: not a folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                found.append(p)
                if len(found) > max_files:
                    raise DicomSeriesError(
                        f"{root}: more than {max_files} files; one scan's DICOM folder holds a few "
                        "thousand at most; point GlioScope at one study or subject folder")
    yield from found


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(TAGS_READ))
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError, TypeError):
        return None


def _floats(value, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def group_series(folder: PathType, max_files: int = MAX_FILES) -> tuple[list[Series], int]:
    """Group the DICOM files under ``folder`` by series (headers only, no pixels).

    Parameters
    ----------
    folder : path
        A subject's or scan's folder: any nesting, any file names, several studies mixed.
    max_files : int
        More files than this and the folder is refused (see :func:`iter_files`).

    Returns
    -------
    (series, n_skipped)
        The series found, ordered by study date and series number, each checked by
        :func:`check_series`; and how many files were not DICOM.
    """
    groups: dict[str, Series] = {}
    skipped = 0
    for path in iter_files(folder, max_files):
        ds = _read_header(path)
        if ds is None or "SeriesInstanceUID" not in ds:
            skipped += 1
            continue
        key = _short_hash(str(ds.SeriesInstanceUID))
        if key not in groups:
            groups[key] = _series_from(ds, key)
        groups[key].slices.append(Slice(
            path=path, position=_floats(ds.get("ImagePositionPatient"), 3),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            rows=int(ds.get("Rows") or 0), columns=int(ds.get("Columns") or 0),
            frames=int(_num(ds.get("NumberOfFrames")) or 1),
            instance=int(_num(ds.get("InstanceNumber"))) if _num(ds.get("InstanceNumber")) is not None
            else None))
    series = sorted(groups.values(), key=lambda s: (s.date or "", s.number if s.number is not None
                                                    else 1 << 30, s.key))
    for s in series:
        s.problem = check_series(s)
    return series, skipped


def _series_from(ds, key: str) -> Series:
    number = _num(ds.get("SeriesNumber"))
    return Series(
        key=key, number=None if number is None else int(number),
        description=_text(ds.get("SeriesDescription")) or _text(ds.get("ProtocolName")),
        sop_class=str(ds.get("SOPClassUID", "")), modality=_text(ds.get("Modality")),
        image_type=tuple(v.upper() for v in _text(ds.get("ImageType")).split("\\") if v),
        tr=_num(ds.get("RepetitionTime")), te=_num(ds.get("EchoTime")),
        ti=_num(ds.get("InversionTime")), scanning_sequence=_text(ds.get("ScanningSequence")).upper(),
        sequence_variant=_text(ds.get("SequenceVariant")).upper(),
        acquisition_type=_text(ds.get("MRAcquisitionType")).upper(),
        contrast_agent=_text(ds.get("ContrastBolusAgent")),
        slice_thickness=_num(ds.get("SliceThickness")),
        study_key=_short_hash(str(ds.get("StudyInstanceUID", ""))),
        date=(_text(ds.get("StudyDate")) or _text(ds.get("SeriesDate"))
              or _text(ds.get("AcquisitionDate")) or None))


def check_series(series: Series) -> str | None:
    """Why ``series`` cannot be read as one 3-D volume, or None. Headers only; nothing allocated."""
    sop = series.sop_class
    if sop and sop not in IMAGE_SOP_CLASSES:
        kind = next((v for k, v in _NON_IMAGE_SOP.items() if sop.startswith(k)), f"SOP class {sop}")
        return f"not a single-frame image series ({kind})"
    slices = series.slices
    if any(s.frames > 1 for s in slices):
        return ("multi-frame DICOM (NumberOfFrames > 1) is not read; export the series as "
                "classic single-frame images or convert it with dcm2niix")
    if len(slices) > MAX_SLICES:
        return f"{len(slices)} slices: more than the {MAX_SLICES} one volume may have"
    if len(slices) < 3:
        return f"only {len(slices)} slice(s): not a volume (a localiser or a single image)"
    if len({(s.rows, s.columns) for s in slices}) > 1:
        return "slices of different sizes (Rows x Columns) in one series"
    rows, cols = slices[0].rows, slices[0].columns
    if rows * cols * len(slices) > MAX_VOXELS or rows <= 0 or cols <= 0:
        return f"{rows} x {cols} x {len(slices)} voxels: outside what one volume may have"
    if any(s.position is None or s.orientation is None for s in slices):
        return "slices without ImagePositionPatient/ImageOrientationPatient: geometry unknown"
    orients = {tuple(np.round(s.orientation, 3)) for s in slices}
    if len(orients) > 1:
        return (f"{len(orients)} slice orientations in one series (a multi-plane localiser "
                "or a mixed series); GlioScope reads one orientation per series")
    return _check_positions(slices)


def _check_positions(slices: list[Slice]) -> str | None:
    o = np.asarray(slices[0].orientation)
    normal = np.cross(o[:3], o[3:])
    z = np.sort(np.array([np.dot(normal, s.position) for s in slices]))
    gaps = np.diff(z)
    n_dup = int(np.sum(gaps < 1e-3))
    if n_dup:
        distinct = len(z) - n_dup
        return (f"{n_dup} duplicated slice position(s) ({len(z)} files on {distinct} positions: "
                "several volumes in one series, e.g. DWI, multi-echo or a repeated file)")
    step = float(np.median(gaps))
    uneven = np.abs(gaps - step) > max(0.01 * step, 0.02)
    if not uneven.any():
        return None
    i = int(np.argmax(uneven))
    k = gaps[i] / step
    if abs(k - round(k)) < 0.05 and round(k) >= 2:
        return (f"{int(round(k)) - 1} missing slice(s) near position {z[i]:.1f} mm "
                f"(gap {gaps[i]:.2f} mm, spacing {step:.2f} mm)")
    return (f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm); "
            "GlioScope reads evenly spaced series only")


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process's C locale after ITK/GDCM calls: GDCM's writer sets it to "C", after
    which Python opens text files as ASCII by default (seen in this project's tests)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_series(series: Series):
    """Read a checked series into a SimpleITK image (GDCM), slices ordered along their normal.

    Raises
    ------
    DicomSeriesError
        The series failed :func:`check_series` or GDCM cannot decode it; the message names it.
    """
    import SimpleITK as sitk
    problem = series.problem if series.problem is not None else check_series(series)
    if problem:
        raise DicomSeriesError(f"{series.label}: {problem}")
    o = np.asarray(series.slices[0].orientation)
    normal = np.cross(o[:3], o[3:])
    ordered = sorted(series.slices, key=lambda s: float(np.dot(normal, s.position)))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in ordered])
    reader.SetImageIO("GDCMImageIO")
    try:
        with keep_locale():
            image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "unknown error"
        raise DicomSeriesError(f"{series.label}: GDCM cannot read it ({first})") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise DicomSeriesError(f"{series.label}: not a scalar 3-D image (colour or 2-D)")
    return image


def is_dicom_folder(folder: PathType, probe: int = 50) -> bool:
    """True when one of the first ``probe`` files under ``folder`` is DICOM (has 'DICM' at 128)."""
    root = Path(folder)
    if not root.is_dir():
        return False
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            n += 1
            try:
                with open(Path(dirpath) / name, "rb") as fh:
                    fh.seek(128)
                    if fh.read(4) == b"DICM":
                        return True
            except OSError:
                pass
            if n >= probe:
                return False
    return False


def series_summary(series: list[Series]) -> list[dict]:
    """Identifier-free rows describing ``series`` (for tables, logs and the CLI)."""
    rows = []
    for s in series:
        rows.append({"series": s.number, "description": s.description, "files": len(s.slices),
                     "tr": s.tr, "te": s.te, "ti": s.ti, "acquisition": s.acquisition_type,
                     "contrast": bool(s.contrast_agent), "date": s.date, "problem": s.problem})
    return rows


def by_study(series: list[Series]) -> dict[str, list[Series]]:
    """``series`` grouped by (hashed) study, in date order."""
    out: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        out[s.study_key].append(s)
    return dict(out)
