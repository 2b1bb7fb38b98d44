"""From a subject's folder (DICOM or raw NIfTI) to the four sequences of each scan.

A folder of DICOM may hold several studies: each study is one scan, ordered by study date and
named by its day from the first study (``day0``, ``day91``...); the dates themselves are not
kept (they are identifiers). Within a study, :func:`gliocore.preprocess.identify.pick_sequences`
chooses T1, T1c, T2 and FLAIR; ambiguous picks stop that scan with an error that lists the
candidates and says how to decide (the mapping CSV).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from gliocore.errors import SubjectError
from gliocore.imaging.io import file_sha256
from gliocore.preprocess.dicom import (DicomSeriesError, Series, by_study, group_series,
                                       read_series)
from gliocore.preprocess.identify import SEQUENCES, Identification, pick_sequences
from gliocore.types import BASELINE_SCAN

STAGE = "preprocess"


@dataclass
class RawScan:
    """One scan found in raw input: where from, its day, and its sequences once read."""

    subject_id: str
    scan_id: str
    days: float | None
    series: dict[str, Series]
    identification: Identification | None = None


def _days(d: str | None, first: str | None) -> float | None:
    try:
        a = date(int(d[:4]), int(d[4:6]), int(d[6:8]))
        b = date(int(first[:4]), int(first[4:6]), int(first[6:8]))
    except (TypeError, ValueError):
        return None
    return float((a - b).days)


def identify_dicom_scans(folder: Path, subject_id: str,
                         mappings: Mapping[tuple[str, str | None], dict[str, str]] | None = None
                         ) -> tuple[list[RawScan], list[SubjectError]]:
    """Group a subject's DICOM folder into scans (one per study) and identify each one's
    sequences (headers only), whether or not the identification is complete.

    Returns
    -------
    scans : list of RawScan
        Every study, with its :class:`Identification` (``complete`` or not) and, when complete,
        its four series.
    problems : list of SubjectError
        The folder cannot be read as DICOM (no scan is returned then).
    """
    try:
        series, _skipped = group_series(folder)
    except DicomSeriesError as exc:
        return [], [SubjectError(subject_id, str(exc), path=str(folder), stage=STAGE)]
    if not series:
        return [], [SubjectError(subject_id, "no DICOM series found", path=str(folder), stage=STAGE)]
    studies = by_study(series)
    first = min((s[0].date for s in studies.values() if s[0].date), default=None)
    scans: list[RawScan] = []
    for i, group in enumerate(studies.values()):
        days = _days(group[0].date, first)
        scan_id = (BASELINE_SCAN if len(studies) == 1 else f"day{int(days)}" if days is not None
                   else f"study{i + 1}")
        mapping = (mappings or {}).get((subject_id, scan_id)) or (mappings or {}).get(
            (subject_id, None))
        ident = pick_sequences(group, mapping)
        picked = {seq: ident.picks[seq].series for seq in SEQUENCES} if ident.complete else {}
        scans.append(RawScan(subject_id, scan_id, days, picked, ident))
    return scans, []


def undecided_error(scan: RawScan, folder: Path) -> SubjectError:
    """The error of a scan whose sequences were not all identified (lists every series)."""
    return SubjectError(scan.subject_id, _undecided(scan.identification), path=str(folder),
                        stage=STAGE,
                        scan_id=None if scan.scan_id == BASELINE_SCAN else scan.scan_id)


def find_dicom_scans(folder: Path, subject_id: str,
                     mappings: Mapping[tuple[str, str | None], dict[str, str]] | None = None
                     ) -> tuple[list[RawScan], list[SubjectError]]:
    """Group a subject's DICOM folder into scans (one per study) and identify their sequences.

    Returns
    -------
    scans : list of RawScan
        The scans whose four sequences were identified (or mapped by the user).
    problems : list of SubjectError
        One per scan that could not be identified (naming the candidates), and one per broken
        series that was a candidate.
    """
    found, problems = identify_dicom_scans(folder, subject_id, mappings)
    scans = [s for s in found if s.identification.complete]
    problems += [undecided_error(s, folder) for s in found if not s.identification.complete]
    return scans, problems


def _undecided(ident: Identification) -> str:
    lines = [f"{seq}: {why}" for seq, why in ident.ambiguous.items()]
    cands = [f"{c.series.label} -> {c.sequence or '-'} ({c.confidence:.2f}: {c.reason})"
             for c in ident.candidates]
    return ("sequences not identified, GlioScope does not guess: " + "; ".join(lines)
            + ". Series: " + " | ".join(cands)
            + ". Decide with a mapping CSV (SUBJECT ID, series, sequence): --sequence-map")


def read_raw_scan(scan: RawScan) -> tuple[dict[str, object], dict[str, str]]:
    """Read the four series of ``scan``: SimpleITK images and a content hash per sequence.

    Raises
    ------
    SubjectError
        A series cannot be read; the message names the series.
    """
    images, hashes = {}, {}
    for seq, s in scan.series.items():
        try:
            images[seq] = read_series(s)
        except DicomSeriesError as exc:
            raise SubjectError(scan.subject_id, f"{seq.upper()} {exc}", stage=STAGE,
                               scan_id=None if scan.scan_id == BASELINE_SCAN else scan.scan_id
                               ) from None
        h = hashlib.sha256()
        for f in sorted(s.files):
            h.update(file_sha256(f).encode())
        hashes[seq] = h.hexdigest()
    return images, hashes


def read_nifti_scan(paths: Mapping[str, Path]) -> tuple[dict[str, object], dict[str, str]]:
    """The four raw NIfTI (or NRRD) files of a scan as SimpleITK images, with their hashes."""
    import SimpleITK as sitk
    images = {seq: sitk.ReadImage(str(p)) for seq, p in paths.items()}
    return images, {seq: file_sha256(p) for seq, p in paths.items()}
