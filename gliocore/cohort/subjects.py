"""What a cohort is made of: :class:`Subject`, :class:`Scan` (one timepoint) and
:class:`Cohort`, loading a subject's images (:func:`load_subject_images`) and naming helpers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from gliocore.cohort.clinical import ID_COLUMN
from gliocore.errors import (GeometryMismatchError, InvalidVolumeError, OutsideRootError,
                             SubjectError)
from gliocore.imaging.io import load_volume, read_volume_header
from gliocore.imaging.volume import Volume, check_same_grid, human_bytes
from gliocore.settings import InputLimits
from gliocore.types import BASELINE_SCAN, SEQUENCES, PathType


@dataclass(frozen=True)
class Subject:
    """One subject: its ID and the paths of its four co-registered sequences.

    Attributes
    ----------
    subject_id : str
    sequences : mapping of canonical sequence -> Path
        Always the four keys of :data:`gliocore.types.SEQUENCES`.
    folder : Path
        Where the files were found.
    reference_mask : Path or None
        A reference segmentation in GlioScope's canonical labels (the demo's ground truth),
        used for segmentation quality control.
    """

    subject_id: str
    sequences: Mapping[str, Path]
    folder: Path
    reference_mask: Path | None = None

    def __post_init__(self) -> None:
        missing = [s for s in SEQUENCES if s not in self.sequences]
        if missing:
            raise ValueError(f"subject {self.subject_id}: no path for {missing}")

    def path(self, sequence: str) -> Path:
        return Path(self.sequences[sequence])


@dataclass(frozen=True)
class Scan(Subject):
    """One scan (timepoint) of a subject: a :class:`Subject` with a scan ID and a time.

    Everything per image (hashes, segmentation, features, QC, location) is computed per scan.

    Attributes
    ----------
    scan_id : str
        Unique within the subject; :data:`BASELINE_SCAN` in a cohort without timepoints.
    days : float or None
        Days from the subject's first scan (0 for it); None when the scans' times are unknown
        (they are then ordered by name and no time-based endpoint is derived).
    """

    scan_id: str = BASELINE_SCAN
    days: float | None = 0.0

    @property
    def label(self) -> str:
        """``subject`` for the only scan of a cross-sectional cohort, else ``subject/scan``."""
        return self.subject_id if self.scan_id == BASELINE_SCAN else \
            f"{self.subject_id}/{self.scan_id}"


def as_scan(subject: Subject) -> Scan:
    """A subject's images as its baseline scan (a :class:`Scan` is returned unchanged)."""
    if isinstance(subject, Scan):
        return subject
    return Scan(subject.subject_id, subject.sequences, subject.folder, subject.reference_mask)


@dataclass
class Cohort:
    """A clinical table and the subjects whose images were found.

    Attributes
    ----------
    name : str
    clinical_csv : Path
    image_root : Path
    clinical : DataFrame
        One row per clinical-table subject with typed columns (``SUBJECT ID`` str,
        ``Survival(months)`` float, ``event`` 0/1, ``IDH-status`` 'mutant'/'wildtype'/NaN, ...).
    subjects : list of Subject
        Subjects with all four sequence files found (contents are checked later, when loaded);
        for a subject with several scans, its first (baseline) scan.
    problems : list of SubjectError
        Everything that went wrong, each naming the subject (and scan) and file.
    scans : list of Scan
        Every scan with its four files found, ordered by subject then time. Defaults to the
        subjects as baseline scans (a cohort without timepoints).
    """

    name: str
    clinical_csv: Path
    image_root: Path
    clinical: pd.DataFrame
    subjects: list[Subject] = field(default_factory=list)
    problems: list[SubjectError] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.scans:
            self.scans = [as_scan(s) for s in self.subjects]

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def is_longitudinal(self) -> bool:
        """Whether any subject has more than one scan (or a scan other than the baseline)."""
        return any(s.scan_id != BASELINE_SCAN for s in self.scans)

    def scans_of(self, subject_id: str) -> list[Scan]:
        """A subject's scans in time order (empty when it has none)."""
        return [s for s in self.scans if s.subject_id == subject_id]

    def subject(self, subject_id: str) -> Subject:
        for s in self.subjects:
            if s.subject_id == subject_id:
                return s
        raise KeyError(f"no subject {subject_id!r} in cohort {self.name!r}")

    @property
    def subject_ids(self) -> list[str]:
        return [s.subject_id for s in self.subjects]


def load_subject_images(subject: Subject, dtype: np.dtype | type | None = np.float32,
                        limits: InputLimits | None = None) -> dict[str, Volume]:
    """Load and check a subject's four sequences, their headers first.

    Before a single voxel is read: every file's header passes :func:`read_volume_header`'s
    checks, the four share shape and affine (within :data:`gliocore.imaging.volume.AFFINE_ATOL`),
    and the bytes held while reading all four (the stored arrays and their ``dtype`` copies) fit
    ``limits.max_subject_bytes`` — the per-worker memory bound of the images. Then each file is
    loaded (finite values, valid affine).

    Raises
    ------
    SubjectError
        Naming the subject, the file and the problem (stage ``"load"``).
    """
    limits = limits or InputLimits()
    scan = scan_label(subject)
    headers = _each_sequence(subject, scan, lambda path: read_volume_header(path, dtype=dtype,
                                                                           limits=limits))
    _check_grid(subject, headers)
    held = sum(h.held_bytes for h in headers.values())
    if held > limits.max_subject_bytes:
        raise SubjectError(subject.subject_id, f"its four sequences hold {human_bytes(held)} while "
                           f"being read, more than the per-subject limit of "
                           f"{human_bytes(limits.max_subject_bytes)} "
                           "(Settings.input_limits.max_subject_bytes); nothing was read",
                           path=str(subject.folder), stage="load", scan_id=scan)
    images: dict[str, Volume] = _each_sequence(
        subject, scan, lambda path: load_volume(path, dtype=dtype, limits=limits))
    _check_grid(subject, images)
    return images


def _each_sequence(subject: Subject, scan: str | None, read: Any) -> dict[str, Any]:
    """``read(path)`` of every sequence; an invalid file is a SubjectError naming it."""
    out: dict[str, Any] = {}
    for seq in SEQUENCES:
        path = subject.path(seq)
        try:
            out[seq] = read(path)
        except InvalidVolumeError as exc:
            raise SubjectError(subject.subject_id, str(exc), path=str(path), stage="load",
                               scan_id=scan) from exc
    return out


def _check_grid(subject: Subject, volumes: Mapping[str, Any]) -> None:
    try:
        check_same_grid(dict(volumes))
    except GeometryMismatchError as exc:
        raise SubjectError(subject.subject_id, str(exc), path=str(subject.folder),
                           stage="load", scan_id=scan_label(subject)) from exc


def scan_label(subject: Subject) -> str | None:
    """The scan ID to name in an error: None for a subject's only (baseline) scan."""
    scan_id = getattr(subject, "scan_id", BASELINE_SCAN)
    return None if scan_id == BASELINE_SCAN else scan_id


def clinical_frame(cohort: Cohort, subject_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The clinical table restricted to subjects with images (or to ``subject_ids``)."""
    ids = set(cohort.subject_ids if subject_ids is None else subject_ids)
    return cohort.clinical[cohort.clinical[ID_COLUMN].isin(ids)].reset_index(drop=True)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe version of a subject, scan or cohort name: one path component.

    Only letters, digits, ``.``, ``_`` and ``-`` are kept (others become ``_``); leading and
    trailing dots and underscores are dropped, so the result is never ``.``, ``..``, a hidden
    name or empty (``unnamed``), and never holds a separator. Different names can give the same
    safe name (``P 1``, ``P_1``): never place outputs by it alone (see
    :func:`gliocore.pipeline.context.mask_path`).
    """
    return _SAFE.sub("_", str(text)).strip("_.") or "unnamed"


def ensure_inside(path: PathType, root: PathType) -> Path:
    """``path``, after checking that it resolves (links included) strictly inside ``root``.

    Raises
    ------
    OutsideRootError
        Naming both, when the path would leave its root.
    """
    p = Path(path)
    base = Path(root).resolve()
    if base not in p.resolve().parents:
        raise OutsideRootError(f"refused to write {p}: it lies outside {base}")
    return p
