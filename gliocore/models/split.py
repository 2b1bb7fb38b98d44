"""Temporal external validation: each subject's date (a date column of the clinical table, or
the first scan's date in a scans table) and the split into subjects before a cut-off date
(training) and on or after it (test).

A temporal split is what TRIPOD calls a type 2b validation: the model is fitted on the earlier
patients and tested on later ones of the same centres, which checks that it survives changes of
practice and scanners over time. Subjects whose date is missing or unreadable are in neither
part (counted, never guessed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gliocore.cohort.scans import SCAN_DATE_COLUMNS
from gliocore.cohort.tabular import read_text_table
from gliocore.errors import CohortError
from gliocore.types import PathType

__all__ = ["DATE_CANDIDATES", "date_columns", "table_dates", "first_scan_dates", "DateSplit",
           "date_split"]

#: Clinical column names tried first as the subject's date (then any column of dates).
DATE_CANDIDATES = ("diagnosis_date", "date_of_diagnosis", "surgery_date", "enrolment_date",
                   "enrollment_date", "study_date", "scan_date", "date")
#: Share of a column's non-empty values that must read as dates for it to count as dates.
MIN_DATE_SHARE = 0.8


def _parse(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().replace({"": pd.NA})
    return pd.to_datetime(text, errors="coerce", format="mixed")


def date_columns(table: pd.DataFrame) -> list[str]:
    """Columns of ``table`` whose non-empty values are (≥ 80 %) dates, the usual names first.
    Numeric columns never count (a number of days is not a date)."""
    out = []
    for c in table.columns:
        col = table[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            out.append(c)
            continue
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        present = col.dropna().astype(str).str.strip()
        present = present[present != ""]
        if len(present) and _parse(present).notna().mean() >= MIN_DATE_SHARE:
            out.append(c)
    first = [c for c in DATE_CANDIDATES if c in out]
    return first + [c for c in out if c not in first]


def table_dates(table: pd.DataFrame, column: str, id_col: str = "SUBJECT ID") -> pd.Series:
    """Each subject's date from a column of the table: a Series of Timestamps (NaT where missing
    or unreadable) indexed by subject ID.

    Raises
    ------
    CohortError
        The column or the ID column is not in the table.
    """
    for c in (column, id_col):
        if c not in table.columns:
            raise CohortError(f"column {c!r} is not in the table")
    return pd.Series(_parse(table[column]).to_numpy(), index=table[id_col].astype(str).to_numpy(),
                     name=column)


def first_scan_dates(scans_csv: PathType, id_col: str = "SUBJECT ID") -> pd.Series:
    """Each subject's first scan date from a scans table (``date``, ``scan_date`` or
    ``acquisition_date`` column, see :mod:`gliocore.cohort.scans`), indexed by subject ID.

    Raises
    ------
    CohortError
        The file cannot be read, or has no ID or date column.
    """
    path = Path(scans_csv)
    frame = read_text_table(path, id_col).frame
    lower = {c.lower(): c for c in frame.columns}
    idc = id_col if id_col in frame.columns else None
    date_col = next((lower[c] for c in SCAN_DATE_COLUMNS if c in lower), None)
    if idc is None or date_col is None:
        raise CohortError(f"{path}: a scans table with dates needs the column {id_col!r} and a "
                          f"date column ({', '.join(SCAN_DATE_COLUMNS)})")
    dates = _parse(frame[date_col])
    first = dates.groupby(frame[idc].str.strip().to_numpy()).min()
    first.name = f"first scan ({date_col})"
    return first


@dataclass(frozen=True)
class DateSplit:
    """Training (before the cut-off) and test (on or after it) masks over some subjects."""

    train: np.ndarray
    test: np.ndarray
    cutoff: pd.Timestamp
    n_undated: int

    def describe(self, source: str) -> str:
        return (f"trained on {int(self.train.sum())} subjects with {source} before "
                f"{self.cutoff.date()}, tested on {int(self.test.sum())} on or after it"
                + (f"; {self.n_undated} without a date left out" if self.n_undated else ""))


def date_split(ids: np.ndarray, dates: pd.Series, cutoff) -> DateSplit:
    """Split the subjects ``ids`` by their date (``dates``, indexed by subject ID).

    Raises
    ------
    ValueError
        The cut-off is not a date, or one side of it is empty.
    """
    cut = pd.to_datetime(cutoff, errors="coerce")
    if pd.isna(cut):
        raise ValueError(f"cut-off {cutoff!r} is not a date (use YYYY-MM-DD)")
    dates = dates[~dates.index.duplicated(keep="first")]
    d = pd.to_datetime(dates.reindex(pd.Index(np.asarray(ids).astype(str)))).to_numpy()
    known = ~pd.isna(d)
    train, test = known & (d < np.datetime64(cut)), known & (d >= np.datetime64(cut))
    if not train.any() or not test.any():
        raise ValueError(f"no subject dated {'before' if not train.any() else 'on or after'} "
                         f"{cut.date()} (dates run from {pd.Series(d).min()} to "
                         f"{pd.Series(d).max()})")
    return DateSplit(train, test, cut, int((~known).sum()))
