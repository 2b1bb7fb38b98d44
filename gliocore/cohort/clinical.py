"""The clinical table: reading and type-checking it (:func:`read_clinical`), its columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gliocore.cohort.tabular import is_missing_text, read_text_table, to_number
from gliocore.errors import CohortError, SubjectError
from gliocore.types import PathType

ID_COLUMN = "SUBJECT ID"
SURVIVAL_COLUMN = "Survival(months)"
IDH_COLUMN = "IDH-status"
EVENT_COLUMN = "event"
IMG_DIR_COLUMN = "img_dir"
REQUIRED_COLUMNS = (ID_COLUMN, SURVIVAL_COLUMN, IDH_COLUMN)
IDH_VALUES = ("mutant", "wildtype")


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
    df = _unique_ids(df, path, problems)
    _numeric(df, SURVIVAL_COLUMN, table.decimal_comma, path, problems, minimum=0.0)
    _idh_column(df, path, problems)
    _event_column(df, path, problems)
    if "age" in df.columns:
        _numeric(df, "age", table.decimal_comma, path, problems, minimum=0.0)
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


def _unique_ids(df: pd.DataFrame, path: Path, problems: list[SubjectError]) -> pd.DataFrame:
    """``df`` without rows of empty or duplicated IDs, each kind reported in ``problems``."""
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
    return df[~dup].copy()


def _numeric(df: pd.DataFrame, column: str, decimal_comma: bool, path: Path,
             problems: list[SubjectError], minimum: float | None = None) -> None:
    """Make ``column`` numeric in place; invalid cells (or below ``minimum``) become NaN."""
    raw = df[column].str.strip()
    values = to_number(raw, decimal_comma)  # Excel's decimal commas (12,5) too
    bad = values.isna() & ~is_missing_text(raw)
    if minimum is not None:
        bad |= values < minimum
    for sid, text in zip(df.loc[bad, ID_COLUMN], raw[bad]):
        problems.append(SubjectError(sid, f"{column} = {text!r} is not a valid number"
                                     + (f" >= {minimum}" if minimum is not None else ""),
                                     path=str(path), stage="clinical"))
    values[bad] = np.nan
    df[column] = values.astype(float)


def _idh_column(df: pd.DataFrame, path: Path, problems: list[SubjectError]) -> None:
    """Normalise the IDH status in place to mutant / wildtype / missing."""
    idh = df[IDH_COLUMN].str.strip().str.lower()
    idh = idh.replace({"mut": "mutant", "mutated": "mutant", "wt": "wildtype", "wild-type": "wildtype",
                       "wild type": "wildtype", "": None, "na": None, "nan": None})
    bad = idh.notna() & ~idh.isin(IDH_VALUES)
    for sid, text in zip(df.loc[bad, ID_COLUMN], df.loc[bad, IDH_COLUMN]):
        problems.append(SubjectError(sid, f"{IDH_COLUMN} = {text!r}; expected mutant or wildtype",
                                     path=str(path), stage="clinical"))
    idh[bad] = None
    df[IDH_COLUMN] = idh


def _event_column(df: pd.DataFrame, path: Path, problems: list[SubjectError]) -> None:
    """The event indicator in place as 0/1; absent, every subject is an event (``event_assumed``)."""
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
