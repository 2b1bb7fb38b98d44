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
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from gliocore.errors import CohortError, GeometryMismatchError, InvalidVolumeError, SubjectError
from gliocore.imaging.io import IMAGE_EXTENSIONS, Volume, check_same_grid, image_suffix, load_volume
from gliocore.cohort.tabular import is_missing_text, read_text_table, to_number
from gliocore.types import BASELINE_SCAN, SEQUENCES, PathType

ID_COLUMN = "SUBJECT ID"
SURVIVAL_COLUMN = "Survival(months)"
IDH_COLUMN = "IDH-status"
EVENT_COLUMN = "event"
IMG_DIR_COLUMN = "img_dir"
#: File name of a scans table found automatically beside the clinical table.
SCANS_FILE = "scans.csv"
#: Accepted column names of a scans table (first match wins), by meaning.
SCAN_ID_COLUMNS = ("scan_id", "scan", "timepoint", "session")
SCAN_DAYS_COLUMNS = ("days", "days_from_baseline", "day")
SCAN_DATE_COLUMNS = ("date", "scan_date", "acquisition_date")
REQUIRED_COLUMNS = (ID_COLUMN, SURVIVAL_COLUMN, IDH_COLUMN)
IDH_VALUES = ("mutant", "wildtype")


@dataclass(frozen=True)
class NamingScheme:
    """How a subject's sequence files are named: one file-name suffix per sequence.

    A file ``<anything><suffix>.nii[.gz]`` (or ``.nrrd``) is that sequence. Matching is
    case-insensitive.

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
        stem = _strip_image_suffix(filename)
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


def _strip_image_suffix(filename: str) -> str | None:
    """``filename`` without its image ending (NIfTI or NRRD), or None for other files."""
    ext = image_suffix(filename)
    return None if ext is None else filename[: -len(ext)]


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


def find_sequences(folder: Path, subject_id: str, schemes: Sequence[NamingScheme],
                   own_folder: bool | None = None, scan_id: str | None = None
                   ) -> tuple[dict[str, Path], str]:
    """Find the four sequence files of one subject in ``folder``.

    Files are considered when their name starts with the subject ID or when the folder is the
    subject's own (its name is the subject ID, or ``own_folder`` is true: a timepoint folder of
    the subject, or an ``img_dir`` of a scans table). The first scheme that finds all four
    sequences wins. ``scan_id`` names the scan in errors.

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
        raise SubjectError(subject_id, "image folder not found", path=str(folder), stage="load",
                           scan_id=scan_id)
    own_folder = bool(own_folder) or folder.name == subject_id
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and _strip_image_suffix(p.name) is not None
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
                                   stage="load", scan_id=scan_id)
            return found, scheme.name
        if len(found) > len(best[0]):
            best = (found, scheme.name)
    found, name = best
    missing = [s for s in SEQUENCES if s not in found]
    detail = (f"found {', '.join(f'{k}={v.name}' for k, v in found.items())} under naming "
              f"{name!r}; missing {', '.join(missing)}") if found else "no sequence file recognised"
    raise SubjectError(subject_id, f"cannot find all four sequences ({detail}); "
                       f"tried naming {', '.join(s.name for s in schemes)}", path=str(folder),
                       stage="load", scan_id=scan_id)


def _named_for(filename: str, subject_id: str, schemes: Sequence[NamingScheme]) -> bool:
    """Whether a file in a shared folder is named for ``subject_id``: the ID followed by a
    separator or directly by a sequence suffix (so ``P10_t1`` is not a file of ``P1``)."""
    if not filename.startswith(subject_id):
        return False
    rest = (_strip_image_suffix(filename) or "")[len(subject_id):]
    if not rest or not rest[0].isalnum():
        return True
    return any(rest.lower() == suffix.lower() for s in schemes for suffix in s.suffixes.values())


def _header_note(df: pd.DataFrame) -> str:
    """What a missing column's message says about the header: a count, never its text (the
    file may be any readable file, e.g. ``/etc/shadow``, and messages reach the browser)."""
    return (f"the first line has {len(df.columns)} column(s), none with the name(s) looked for; is it the "
            "clinical table, saved as CSV with a header line?")


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
            raise CohortError(f"{path}: ID column {id_column!r} not found ({_header_note(df)})")
        df = df.rename(columns={id_column: ID_COLUMN})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CohortError(f"{path}: required column(s) {', '.join(missing)} missing "
                          f"({_header_note(df)})")
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
    subjects: list[Subject] = []
    all_scans: list[Scan] = []
    for _, row in clinical.iterrows():
        sid = str(row[ID_COLUMN])
        if table is not None and (table["subject_id"] == sid).any():
            candidates = _scans_from_table(table[table["subject_id"] == sid], sid, root,
                                           scans_csv.parent)
        else:
            folder = _subject_folder(sid, row.get(IMG_DIR_COLUMN), root, csv.parent)
            candidates = _scans_from_folders(folder, sid, schemes)
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
        all_scans.extend(found)
        if found and found[0].scan_id == candidates[0][0]:  # the baseline scan loaded
            subjects.append(found[0])
        elif found:
            problems.append(SubjectError(sid, f"the first scan ({candidates[0][0]}) failed, so the "
                                         "subject has no baseline for the cross-sectional analyses; "
                                         "its later scans are still processed", stage="load",
                                         scan_id=candidates[0][0]))
    return Cohort(name or csv.parent.name, csv, root, clinical, subjects, problems, all_scans)


def _subject_folder(sid: str, img_dir: object, root: Path, csv_dir: Path) -> Path:
    if isinstance(img_dir, str) and img_dir.strip():
        p = Path(img_dir.strip())
        for cand in ([p] if p.is_absolute() else [root / p, csv_dir / p, root / p.name]):
            if cand.is_dir():
                return cand
    if (root / sid).is_dir():
        return root / sid
    return root


def _reference(folder: Path, sid: str, reference_suffix: str | None) -> Path | None:
    if reference_suffix:
        for ext in IMAGE_EXTENSIONS:
            cand = folder / f"{sid}{reference_suffix}{ext}"
            if cand.exists():
                return cand
    return None


def _scans_from_table(rows: pd.DataFrame, sid: str, root: Path, csv_dir: Path
                      ) -> list[tuple[str, float | None, Path]]:
    out = []
    for r in rows.itertuples(index=False):
        if isinstance(r.img_dir, str) and r.img_dir.strip():
            rel = Path(r.img_dir.strip())
            cands = [rel] if rel.is_absolute() else [root / rel, csv_dir / rel]
            folder = next((c for c in cands if c.is_dir()), cands[0])  # absent: error on load
        else:  # no folder given: <root>/<subject>/<scan>/ when it exists
            folder = _subject_folder(sid, None, root, csv_dir)
            sub = folder / r.scan_id
            folder = sub if sub.is_dir() else folder
        out.append((r.scan_id, None if pd.isna(r.days) else float(r.days), folder))
    return out


def _scans_from_folders(folder: Path, sid: str, schemes: Sequence[NamingScheme]
                        ) -> list[tuple[str, float | None, Path]]:
    """The folder convention: timepoint sub-folders of a subject folder without own files."""
    if folder.is_dir() and folder.name == sid and not any(
            p.is_file() and _strip_image_suffix(p.name) is not None for p in folder.iterdir()):
        tps = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and any(_strip_image_suffix(f.name) is not None for f in p.iterdir() if f.is_file()))
        if tps:
            days = timepoint_days([p.name for p in tps])
            order = sorted(range(len(tps)), key=lambda i: (days[i] is None, days[i] or 0.0,
                                                           _natural(tps[i].name)))
            return [(tps[i].name, days[i], tps[i]) for i in order]
    return [(BASELINE_SCAN, 0.0, folder)]


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"), ("y", "m", "d")),   # 2001-05-31
    (re.compile(r"(?<!\d)(\d{2})-(\d{2})-(\d{4})(?!\d)"), ("m", "d", "y")),   # TCIA 05-31-2001
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"), ("y", "m", "d")),      # 20010531
)
_DAY_PATTERN = re.compile(r"(?:^|[^a-z])(day|d|week|wk|w|month|m)[ _-]?(\d+)(?!\d)", re.I)


def timepoint_days(names: Sequence[str]) -> list[float | None]:
    """Days from the first timepoint, read from timepoint (folder) names.

    Recognised, when *every* name has it: a date (``2001-05-31``, TCIA's ``05-31-2001-…``,
    ``20010531``), or a day / week / month number (``day120``, ``d120``, ``week12``, ``w12``,
    ``month3``; a month counts 30.4375 days). Otherwise every value is None (the times are
    unknown; the scans are then ordered by name).
    """
    import datetime as _dt
    dates: list[_dt.date | None] = []
    for n in names:
        d = None
        for pattern, order in _DATE_PATTERNS:
            m = pattern.search(n)
            if m:
                parts = dict(zip(order, (int(g) for g in m.groups())))
                try:
                    d = _dt.date(parts["y"], parts["m"], parts["d"])
                except ValueError:
                    d = None
                if d is not None:
                    break
        dates.append(d)
    if names and all(d is not None for d in dates):
        first = min(dates)  # type: ignore[type-var]
        return [float((d - first).days) for d in dates]  # type: ignore[operator]
    values: list[float | None] = []
    for n in names:
        m = _DAY_PATTERN.search(n)
        if m is None:
            return [None] * len(names)
        unit = m.group(1).lower()
        factor = 7.0 if unit in ("week", "wk", "w") else 30.4375 if unit in ("month", "m") else 1.0
        values.append(float(m.group(2)) * factor)
    if not values:
        return []
    first_v = min(v for v in values if v is not None)
    return [v - first_v for v in values]  # type: ignore[operator]


def read_scans(csv_path: PathType, id_column: str = ID_COLUMN
               ) -> tuple[pd.DataFrame, list[SubjectError]]:
    """Read a scans table: one row per scan (timepoint) of a subject.

    Columns: the subject ID (``SUBJECT ID`` or ``id_column``); a scan ID (``scan_id``,
    ``scan``, ``timepoint`` or ``session``) and/or the time (``days`` from baseline, or a
    ``date``); ``img_dir`` (the scan's image folder, absolute or relative to the image root or
    to the table's folder). A scan without an ID is named by its date or ``day<N>``. Days are
    made relative to each subject's first scan; with dates, they are the days between dates.

    Returns
    -------
    scans : DataFrame
        Columns ``subject_id``, ``scan_id``, ``days`` (float, NaN when unknown), ``img_dir``;
        sorted by subject, then time (unknown last), then scan ID.
    problems : list of SubjectError
        Unreadable times and duplicate scan IDs, each naming the subject, scan and table.

    Raises
    ------
    CohortError
        When the file cannot be read or lacks the ID column or both scan ID and time.
    """
    path = Path(csv_path)
    table = read_text_table(path, id_column)  # BOM, ';' separators, blank lines, ... (tabular.py)
    df = table.frame
    lower = {c.lower(): c for c in df.columns}
    idc = id_column if id_column in df.columns else ID_COLUMN if ID_COLUMN in df.columns else None
    if idc is None:
        raise CohortError(f"{path}: ID column {id_column!r} not found ({_header_note(df)})")
    scan_col = next((lower[c] for c in SCAN_ID_COLUMNS if c in lower), None)
    days_col = next((lower[c] for c in SCAN_DAYS_COLUMNS if c in lower), None)
    date_col = next((lower[c] for c in SCAN_DATE_COLUMNS if c in lower), None)
    if scan_col is None and days_col is None and date_col is None:
        raise CohortError(f"{path}: a scans table needs a scan ID column ({', '.join(SCAN_ID_COLUMNS)}) "
                          f"or a time column ({', '.join(SCAN_DAYS_COLUMNS + SCAN_DATE_COLUMNS)})")
    problems: list[SubjectError] = list(table.problems)
    out = pd.DataFrame({"subject_id": df[idc].str.strip()})
    out = out.assign(img_dir=df[lower["img_dir"]].str.strip() if "img_dir" in lower else "")
    days = pd.Series(np.nan, index=df.index)
    label = pd.Series("", index=df.index)
    if days_col is not None:
        raw = df[days_col].str.strip()
        days = to_number(raw, table.decimal_comma)
        label = raw.map(lambda t: f"day{t}" if t else "")
        bad = days.isna() & (raw != "")
    elif date_col is not None:
        raw = df[date_col].str.strip()
        dates = pd.to_datetime(raw.replace({"": None}), errors="coerce", format="mixed")
        bad = dates.isna() & (raw != "")
        label = raw
        first = dates.groupby(out["subject_id"]).transform("min")
        days = (dates - first).dt.days.astype(float)
    else:
        bad = pd.Series(False, index=df.index)
    for i in df.index[bad]:
        problems.append(SubjectError(out.at[i, "subject_id"], f"scan time {df.loc[i, days_col or date_col]!r} "
                                     "is not a number of days or a date; its time is unknown",
                                     path=str(path), stage="load"))
    scan_ids = df[scan_col].str.strip() if scan_col is not None else label
    out["scan_id"] = [sid if sid else (lab or f"scan{k + 1}")
                      for k, (sid, lab) in enumerate(zip(scan_ids, label))]
    out["days"] = days.astype(float)
    out = out[out["subject_id"] != ""]
    out["days"] = out["days"] - out.groupby("subject_id")["days"].transform("min")
    dup = out.duplicated(["subject_id", "scan_id"], keep="first")
    for sid, scan in out.loc[dup, ["subject_id", "scan_id"]].itertuples(index=False):
        problems.append(SubjectError(sid, "duplicate scan ID in the scans table; the first row is "
                                     "used", path=str(path), stage="load", scan_id=scan))
    out = out[~dup]
    out = out.assign(_unknown=out["days"].isna(), _nat=out["scan_id"].map(_natural))
    out = out.sort_values(["subject_id", "_unknown", "days", "scan_id"], kind="stable")
    return out.drop(columns=["_unknown", "_nat"]).reset_index(drop=True), problems


def load_subject_images(subject: Subject, dtype: np.dtype | type | None = np.float32
                        ) -> dict[str, Volume]:
    """Load and check a subject's four sequences.

    Checks: each file exists and loads as a 3-D NIfTI with finite values; the four share shape
    and affine (within :data:`gliocore.imaging.io.AFFINE_ATOL`).

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
            raise SubjectError(subject.subject_id, str(exc), path=str(path), stage="load",
                               scan_id=scan_label(subject)) from exc
    try:
        check_same_grid(images)
    except GeometryMismatchError as exc:
        raise SubjectError(subject.subject_id, str(exc), path=str(subject.folder),
                           stage="load", scan_id=scan_label(subject)) from exc
    return images


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
    """A file-system-safe version of a subject or cohort name."""
    return _SAFE.sub("_", text).strip("_") or "unnamed"
