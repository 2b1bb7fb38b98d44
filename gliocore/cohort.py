"""Cohorts: a clinical table plus an image root, resolved into validated subjects.

A :class:`Cohort` is built by :func:`load_cohort` from a clinical CSV and an image folder.
Each subject's four sequences are found by file name under one of several
:class:`NamingScheme` conventions (TCGA, BraTS 2020/21, BraTS 2023, nnU-Net/HD-GLIO, or a
custom one). Every problem is a :class:`~gliocore.errors.SubjectError` that names the subject
and file; the other subjects go on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from gliocore.errors import CohortError, GeometryMismatchError, InvalidVolumeError, SubjectError
from gliocore.io import Volume, check_same_grid, load_volume
from gliocore.tabular import is_missing_text, read_text_table, to_number
from gliocore.types import SEQUENCES, PathType

ID_COLUMN = "SUBJECT ID"
SURVIVAL_COLUMN = "Survival(months)"
IDH_COLUMN = "IDH-status"
EVENT_COLUMN = "event"
IMG_DIR_COLUMN = "img_dir"
REQUIRED_COLUMNS = (ID_COLUMN, SURVIVAL_COLUMN, IDH_COLUMN)
IDH_VALUES = ("mutant", "wildtype")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class NamingScheme:
    """How a subject's sequence files are named: one file-name suffix per sequence.

    A file ``<anything><suffix>.nii[.gz]`` is that sequence. Matching is case-insensitive.

    Parameters
    ----------
    name : str
    suffixes : mapping of canonical sequence -> suffix
        Keys are ``t1``, ``t1c``, ``t2``, ``flair``.
    """

    name: str
    suffixes: Mapping[str, str]

    def __post_init__(self) -> None:
        missing = [s for s in SEQUENCES if s not in self.suffixes]
        if missing:
            raise ValueError(f"naming scheme {self.name!r} lacks suffixes for {missing}")

    def match(self, filename: str) -> str | None:
        """The canonical sequence a file name belongs to under this scheme, or None."""
        stem = _strip_nifti(filename)
        if stem is None:
            return None
        low = stem.lower()
        for seq in SEQUENCES:
            if low.endswith(self.suffixes[seq].lower()):
                return seq
        return None

    @classmethod
    def parse(cls, spec: str, name: str = "custom") -> "NamingScheme":
        """Parse ``"t1=_t1_bet,t1c=_t1c_bet,t2=_t2_bet,flair=_fla_bet"``."""
        suffixes: dict[str, str] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"naming spec {spec!r}: expected SEQ=SUFFIX items, got {part!r}")
            seq, suffix = (x.strip() for x in part.split("=", 1))
            seq = seq.lower()
            if seq not in SEQUENCES:
                raise ValueError(f"naming spec {spec!r}: unknown sequence {seq!r}; "
                                 f"use {', '.join(SEQUENCES)}")
            suffixes[seq] = suffix
        return cls(name, suffixes)


TCGA = NamingScheme("tcga", {"t1": "_t1", "t1c": "_t1Gd", "t2": "_t2", "flair": "_flair"})
BRATS = NamingScheme("brats", {"t1": "_t1", "t1c": "_t1ce", "t2": "_t2", "flair": "_flair"})
BRATS2023 = NamingScheme("brats2023", {"t1": "-t1n", "t1c": "-t1c", "t2": "-t2w", "flair": "-t2f"})
NNUNET = NamingScheme("nnunet", {"t1": "_0000", "t1c": "_0001", "t2": "_0002", "flair": "_0003"})
SKULLSTRIPPED = NamingScheme("bet", {"t1": "_t1_bet", "t1c": "_t1c_bet", "t2": "_t2_bet",
                                     "flair": "_fla_bet"})
NAMING_SCHEMES: dict[str, NamingScheme] = {s.name: s for s in (TCGA, BRATS, BRATS2023, NNUNET,
                                                               SKULLSTRIPPED)}


def get_naming(spec: str | NamingScheme | None) -> list[NamingScheme]:
    """Naming schemes to try: all presets (None/"auto"), one preset, or a custom spec."""
    if spec is None or spec == "auto":
        return list(NAMING_SCHEMES.values())
    if isinstance(spec, NamingScheme):
        return [spec]
    if spec in NAMING_SCHEMES:
        return [NAMING_SCHEMES[spec]]
    if "=" in spec:
        return [NamingScheme.parse(spec)]
    raise ValueError(f"unknown naming scheme {spec!r}; presets: {', '.join(NAMING_SCHEMES)}, "
                     "or a spec such as 't1=_t1,t1c=_t1ce,t2=_t2,flair=_flair'")


def _strip_nifti(filename: str) -> str | None:
    low = filename.lower()
    for ext in NIFTI_EXTENSIONS:
        if low.endswith(ext):
            return filename[: -len(ext)]
    return None


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
        Subjects with all four sequence files found (contents are checked later, when loaded).
    problems : list of SubjectError
        Everything that went wrong, each naming the subject and file.
    """

    name: str
    clinical_csv: Path
    image_root: Path
    clinical: pd.DataFrame
    subjects: list[Subject] = field(default_factory=list)
    problems: list[SubjectError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.subjects)

    def subject(self, subject_id: str) -> Subject:
        for s in self.subjects:
            if s.subject_id == subject_id:
                return s
        raise KeyError(f"no subject {subject_id!r} in cohort {self.name!r}")

    @property
    def subject_ids(self) -> list[str]:
        return [s.subject_id for s in self.subjects]


def find_sequences(folder: Path, subject_id: str,
                   schemes: Sequence[NamingScheme]) -> tuple[dict[str, Path], str]:
    """Find the four sequence files of one subject in ``folder``.

    Files are considered when their name starts with the subject ID or when the folder is the
    subject's own. The first scheme that finds all four sequences wins.

    Returns
    -------
    paths : dict of sequence -> Path
    scheme : str
        Name of the scheme that matched.

    Raises
    ------
    SubjectError
        When no scheme finds all four; the message lists what was found and missing.
    """
    if not folder.is_dir():
        raise SubjectError(subject_id, "image folder not found", path=str(folder), stage="load")
    own_folder = folder.name == subject_id
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and _strip_nifti(p.name) is not None
                   and (own_folder or _named_for(p.name, subject_id, schemes)))
    best: tuple[dict[str, Path], str] = ({}, "")
    for scheme in schemes:
        found: dict[str, Path] = {}
        dupes: list[str] = []
        for p in files:
            seq = scheme.match(p.name)
            if seq is None:
                continue
            if seq in found:
                dupes.append(f"{seq}: {found[seq].name} and {p.name}")
            found[seq] = p
        if len(found) == len(SEQUENCES):
            if dupes:
                raise SubjectError(subject_id, f"more than one file for a sequence under naming "
                                   f"{scheme.name!r}: {'; '.join(dupes)}", path=str(folder),
                                   stage="load")
            return found, scheme.name
        if len(found) > len(best[0]):
            best = (found, scheme.name)
    found, name = best
    missing = [s for s in SEQUENCES if s not in found]
    detail = (f"found {', '.join(f'{k}={v.name}' for k, v in found.items())} under naming "
              f"{name!r}; missing {', '.join(missing)}") if found else "no sequence file recognised"
    raise SubjectError(subject_id, f"cannot find all four sequences ({detail}); "
                       f"tried naming {', '.join(s.name for s in schemes)}", path=str(folder),
                       stage="load")


def _named_for(filename: str, subject_id: str, schemes: Sequence[NamingScheme]) -> bool:
    """Whether a file in a shared folder is named for ``subject_id``: the ID followed by a
    separator or directly by a sequence suffix (so ``P10_t1`` is not a file of ``P1``)."""
    if not filename.startswith(subject_id):
        return False
    rest = (_strip_nifti(filename) or "")[len(subject_id):]
    if not rest or not rest[0].isalnum():
        return True
    return any(rest.lower() == suffix.lower() for s in schemes for suffix in s.suffixes.values())


def read_clinical(csv_path: PathType, id_column: str = ID_COLUMN
                  ) -> tuple[pd.DataFrame, list[SubjectError]]:
    """Read and type-check a clinical CSV.

    Required columns: ``SUBJECT ID``, ``Survival(months)``, ``IDH-status``. Optional:
    ``event`` (1 = death observed, 0 = censored; when absent every subject counts as an
    event, as in the seed, and a problem is recorded), ``age``, ``sex``, ``img_dir``, any other.

    Returns
    -------
    clinical : DataFrame
        Typed; invalid cells are set to missing.
    problems : list of SubjectError
        One per invalid cell or duplicate ID, naming the subject and the CSV.

    Raises
    ------
    CohortError
        When the file cannot be read or a required column is absent.
    """
    path = Path(csv_path)
    if not path.exists():
        raise CohortError(f"clinical table not found: {path}")
    # BOM, ';'/tab separators, blank lines, duplicated headers, over-long rows (tabular.py)
    table = read_text_table(path, id_column)
    df = table.frame
    if id_column != ID_COLUMN:
        if id_column not in df.columns:
            raise CohortError(f"{path}: ID column {id_column!r} not found; columns are "
                              f"{', '.join(df.columns)}")
        df = df.rename(columns={id_column: ID_COLUMN})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CohortError(f"{path}: required column(s) {', '.join(missing)} missing; "
                          f"columns are {', '.join(df.columns)}")
    problems: list[SubjectError] = list(table.problems)
    df[ID_COLUMN] = df[ID_COLUMN].str.strip()
    empty = df[ID_COLUMN] == ""
    if empty.any():
        problems.append(SubjectError("?", f"{int(empty.sum())} row(s) with an empty "
                                     f"{ID_COLUMN} were dropped", path=str(path), stage="clinical"))
        df = df[~empty]
    dup = df[ID_COLUMN].duplicated(keep=False)
    for sid in sorted(set(df.loc[dup, ID_COLUMN])):
        problems.append(SubjectError(sid, f"duplicate {ID_COLUMN} in the clinical table "
                                     f"({int((df[ID_COLUMN] == sid).sum())} rows); the subject is "
                                     "left out until the table has one row for it",
                                     path=str(path), stage="clinical"))
    df = df[~dup].copy()

    def numeric(column: str, minimum: float | None = None) -> None:
        raw = df[column].str.strip()
        values = to_number(raw, table.decimal_comma)  # Excel's decimal commas (12,5) too
        bad = values.isna() & ~is_missing_text(raw)
        if minimum is not None:
            bad |= values < minimum
        for sid, text in zip(df.loc[bad, ID_COLUMN], raw[bad]):
            problems.append(SubjectError(sid, f"{column} = {text!r} is not a valid number"
                                         + (f" >= {minimum}" if minimum is not None else ""),
                                         path=str(path), stage="clinical"))
        values[bad] = np.nan
        df[column] = values.astype(float)

    numeric(SURVIVAL_COLUMN, minimum=0.0)
    idh = df[IDH_COLUMN].str.strip().str.lower()
    idh = idh.replace({"mut": "mutant", "mutated": "mutant", "wt": "wildtype", "wild-type": "wildtype",
                       "wild type": "wildtype", "": None, "na": None, "nan": None})
    bad = idh.notna() & ~idh.isin(IDH_VALUES)
    for sid, text in zip(df.loc[bad, ID_COLUMN], df.loc[bad, IDH_COLUMN]):
        problems.append(SubjectError(sid, f"{IDH_COLUMN} = {text!r}; expected mutant or wildtype",
                                     path=str(path), stage="clinical"))
    idh[bad] = None
    df[IDH_COLUMN] = idh
    if EVENT_COLUMN in df.columns:
        raw = df[EVENT_COLUMN].str.strip().str.lower().replace(
            {"true": "1", "false": "0", "yes": "1", "no": "0", "dead": "1", "alive": "0"})
        values = pd.to_numeric(raw.replace({"": None}), errors="coerce")
        bad = ~values.isin([0, 1]) & (raw != "")
        for sid, text in zip(df.loc[bad, ID_COLUMN], df.loc[bad, EVENT_COLUMN]):
            problems.append(SubjectError(sid, f"{EVENT_COLUMN} = {text!r}; expected 1 (death "
                                         "observed) or 0 (censored)", path=str(path),
                                         stage="clinical"))
        values[bad] = np.nan
        df[EVENT_COLUMN] = values
    else:
        df[EVENT_COLUMN] = 1.0
        df.attrs["event_assumed"] = True
    if "age" in df.columns:
        numeric("age", minimum=0.0)
    if "sex" in df.columns:
        df["sex"] = df["sex"].str.strip().str.upper().replace({"": None, "MALE": "M", "FEMALE": "F"})
    # Any other column that is entirely numeric becomes numeric.
    for col in df.columns:
        if col in (ID_COLUMN, IDH_COLUMN, IMG_DIR_COLUMN, "sex") or df[col].dtype != object:
            continue
        conv = to_number(df[col], table.decimal_comma)
        if conv.notna().sum() == (~is_missing_text(df[col])).sum() and conv.notna().any():
            df[col] = conv
    return df.reset_index(drop=True), problems


def load_cohort(clinical_csv: PathType, image_root: PathType | None = None, *,
                naming: str | NamingScheme | None = None, id_column: str = ID_COLUMN,
                name: str | None = None, reference_suffix: str | None = "_truth") -> Cohort:
    """Resolve a clinical CSV and an image root into a :class:`Cohort`.

    Each subject's folder is, in order: the CSV's ``img_dir`` value (absolute, or relative to
    ``image_root``, or relative to the CSV's folder), ``image_root/<subject>/``, or
    ``image_root`` itself (files named ``<subject>...``).

    Parameters
    ----------
    clinical_csv : path
    image_root : path, optional
        Defaults to the CSV's folder.
    naming : str or NamingScheme, optional
        A preset name (``tcga``, ``brats``, ``brats2023``, ``nnunet``, ``bet``), a custom
        spec (``"t1=_t1,t1c=_t1ce,t2=_t2,flair=_flair"``) or None to try all presets.
    id_column : str
        Column with subject IDs (renamed to ``SUBJECT ID``).
    reference_suffix : str or None
        File-name suffix of a reference mask in canonical labels (the demo writes
        ``<subject>_truth.nii.gz``); None to not look.

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
    subjects: list[Subject] = []
    for _, row in clinical.iterrows():
        sid = str(row[ID_COLUMN])
        folder = _subject_folder(sid, row.get(IMG_DIR_COLUMN), root, csv.parent)
        try:
            paths, _scheme = find_sequences(folder, sid, schemes)
        except SubjectError as err:
            problems.append(err)
            continue
        ref = None
        if reference_suffix:
            for ext in NIFTI_EXTENSIONS:
                cand = folder / f"{sid}{reference_suffix}{ext}"
                if cand.exists():
                    ref = cand
                    break
        subjects.append(Subject(sid, paths, folder, ref))
    return Cohort(name or csv.parent.name, csv, root, clinical, subjects, problems)


def _subject_folder(sid: str, img_dir: object, root: Path, csv_dir: Path) -> Path:
    if isinstance(img_dir, str) and img_dir.strip():
        p = Path(img_dir.strip())
        for cand in ([p] if p.is_absolute() else [root / p, csv_dir / p, root / p.name]):
            if cand.is_dir():
                return cand
    if (root / sid).is_dir():
        return root / sid
    return root


def load_subject_images(subject: Subject, dtype: np.dtype | type | None = np.float32
                        ) -> dict[str, Volume]:
    """Load and check a subject's four sequences.

    Checks: each file exists and loads as a 3-D NIfTI with finite values; the four share shape
    and affine (within :data:`gliocore.io.AFFINE_ATOL`).

    Raises
    ------
    SubjectError
        Naming the subject, the file and the problem (stage ``"load"``).
    """
    images: dict[str, Volume] = {}
    for seq in SEQUENCES:
        path = subject.path(seq)
        try:
            images[seq] = load_volume(path, dtype=dtype)
        except InvalidVolumeError as exc:
            raise SubjectError(subject.subject_id, str(exc), path=str(path), stage="load") from exc
    try:
        check_same_grid(images)
    except GeometryMismatchError as exc:
        raise SubjectError(subject.subject_id, str(exc), path=str(subject.folder),
                           stage="load") from exc
    return images


def clinical_frame(cohort: Cohort, subject_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The clinical table restricted to subjects with images (or to ``subject_ids``)."""
    ids = set(cohort.subject_ids if subject_ids is None else subject_ids)
    return cohort.clinical[cohort.clinical[ID_COLUMN].isin(ids)].reset_index(drop=True)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe version of a subject or cohort name."""
    return _SAFE.sub("_", text).strip("_") or "unnamed"
