"""Cohorts: a clinical table plus an image root, resolved into validated subjects and scans.

A :class:`Cohort` is built by :func:`load_cohort` from a clinical CSV and an image folder.
Each subject's four sequences are found by file name under one of several
:class:`NamingScheme` conventions (TCGA, BraTS 2020/21, BraTS 2023, nnU-Net/HD-GLIO, or a
custom one). Every problem is a :class:`~gliocore.errors.SubjectError` that names the subject
(and scan) and file; the other subjects go on.

A subject can have several **scans** (timepoints). They come from a scans table (``scans=``,
or a ``scans.csv`` beside the clinical table: one row per scan with the subject ID, a scan ID
and/or date / days from baseline, and the image folder) or from the folder convention
``<subject>/<timepoint>/<files>`` (as in TCIA's longitudinal collections; timepoints ordered
by the date or day number in their names). A cohort without timepoints has one scan per
subject, :data:`BASELINE_SCAN`, and behaves exactly as a cross-sectional cohort.

The parts live beside this module: naming presets in :mod:`gliocore.cohort.naming`, the
clinical table in :mod:`gliocore.cohort.clinical`, scans tables and timepoint folders in
:mod:`gliocore.cohort.scans`, and the Subject/Scan/Cohort types in :mod:`gliocore.cohort.subjects`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from gliocore.cohort.clinical import ID_COLUMN, IMG_DIR_COLUMN, read_clinical
from gliocore.cohort.naming import NamingScheme, find_sequences, get_naming
from gliocore.cohort.scans import (SCANS_FILE, read_scans, scans_from_folders, scans_from_table,
                                   subject_folder)
from gliocore.cohort.subjects import Cohort, Scan, Subject
from gliocore.errors import CohortError, SubjectError
from gliocore.imaging.volume import IMAGE_EXTENSIONS
from gliocore.types import BASELINE_SCAN, PathType


def load_cohort(clinical_csv: PathType, image_root: PathType | None = None, *,
                naming: str | NamingScheme | None = None, id_column: str = ID_COLUMN,
                name: str | None = None, reference_suffix: str | None = "_truth",
                scans: PathType | bool | None = None) -> Cohort:
    """Resolve a clinical CSV and an image root into a :class:`Cohort`.

    Each subject's folder is, in order: the CSV's ``img_dir`` value (absolute, or relative to
    ``image_root``, or relative to the CSV's folder), ``image_root/<subject>/``, or
    ``image_root`` itself (files named ``<subject>...``).

    Scans (timepoints) come from, in order: the scans table (``scans``, or ``scans.csv``
    beside the clinical table), one row per scan (see :func:`read_scans`); or the folder
    convention: a subject folder holding no sequence file but sub-folders that do, one per
    timepoint (``<subject>/<timepoint>/``, ordered by the date or day number in their names,
    see :func:`timepoint_days`). Otherwise the subject has one scan, :data:`BASELINE_SCAN`.

    Parameters
    ----------
    clinical_csv : path
    image_root : path, optional
        Defaults to the CSV's folder.
    naming : str or NamingScheme, optional
        A preset name (``tcga``, ``brats``, ``brats2023``, ``nnunet``, ``bet``), a custom
        spec (``"t1=_t1,t1c=_t1ce,t2=_t2,flair=_flair"``) or None to try all presets.
    id_column : str
        Column with subject IDs (renamed to ``SUBJECT ID``), in both tables.
    reference_suffix : str or None
        File-name suffix of a reference mask in canonical labels (the demo writes
        ``<subject>_truth.nii.gz``); None to not look.
    scans : path, False or None
        The scans table; None looks for ``scans.csv`` beside the clinical table; False
        ignores one.

    Returns
    -------
    Cohort
    """
    csv = Path(clinical_csv).resolve()
    root = Path(image_root).resolve() if image_root is not None else csv.parent
    if not root.is_dir():
        raise CohortError(f"image root not found: {root}")
    clinical, problems = read_clinical(csv, id_column=id_column)
    schemes = get_naming(naming)
    table, scans_csv = _scans_table(csv, scans, clinical, id_column, problems)
    subjects: list[Subject] = []
    all_scans: list[Scan] = []
    for _, row in clinical.iterrows():
        sid = str(row[ID_COLUMN])
        if table is not None and (table["subject_id"] == sid).any():
            candidates = scans_from_table(table[table["subject_id"] == sid], sid, root,
                                          scans_csv.parent)
        else:
            folder = subject_folder(sid, row.get(IMG_DIR_COLUMN), root, csv.parent)
            candidates = scans_from_folders(folder, sid, schemes)
        found = _found_scans(sid, candidates, schemes, reference_suffix, problems)
        all_scans.extend(found)
        if found and found[0].scan_id == candidates[0][0]:  # the baseline scan loaded
            subjects.append(found[0])
        elif found:
            problems.append(SubjectError(sid, f"the first scan ({candidates[0][0]}) failed, so the "
                                         "subject has no baseline for the cross-sectional analyses; "
                                         "its later scans are still processed", stage="load",
                                         scan_id=candidates[0][0]))
    return Cohort(name or csv.parent.name, csv, root, clinical, subjects, problems, all_scans)


def _scans_table(csv: Path, scans: PathType | bool | None, clinical: pd.DataFrame,
                 id_column: str, problems: list[SubjectError]
                 ) -> tuple[pd.DataFrame | None, Path | None]:
    """The scans table (``scans``, or ``scans.csv`` beside ``csv``) and its path, or Nones;
    its problems, and scans of subjects not in ``clinical``, go to ``problems``."""
    scans_csv: Path | None = None
    if scans is None:
        auto = csv.parent / SCANS_FILE
        scans_csv = auto if auto.is_file() and auto != csv else None
    elif scans is not False and scans is not True:
        scans_csv = Path(scans).resolve()
    table = None
    if scans_csv is not None:
        table, scan_problems = read_scans(scans_csv, id_column=id_column)
        problems.extend(scan_problems)
        unknown = sorted(set(table["subject_id"]) - set(clinical[ID_COLUMN]))
        for sid in unknown:
            problems.append(SubjectError(sid, "scans listed in the scans table but the subject is "
                                         "not in the clinical table; they are left out",
                                         path=str(scans_csv), stage="load"))
    return table, scans_csv


def _found_scans(sid: str, candidates: list[tuple[str, float | None, Path]],
                 schemes: Sequence[NamingScheme], reference_suffix: str | None,
                 problems: list[SubjectError]) -> list[Scan]:
    """The candidate scans whose four sequence files are found; the others go to ``problems``."""
    found: list[Scan] = []
    for scan_id, days, folder in candidates:
        err_scan = None if scan_id == BASELINE_SCAN else scan_id
        try:
            paths, _scheme = find_sequences(folder, sid, schemes,
                                            own_folder=sid in folder.parts or None,
                                            scan_id=err_scan)
        except SubjectError as err:
            problems.append(err)
            continue
        found.append(Scan(sid, paths, folder, _reference(folder, sid, reference_suffix),
                          scan_id=scan_id, days=days))
    return found


def _reference(folder: Path, sid: str, reference_suffix: str | None) -> Path | None:
    if reference_suffix:
        for ext in IMAGE_EXTENSIONS:
            cand = folder / f"{sid}{reference_suffix}{ext}"
            if cand.exists():
                return cand
    return None
