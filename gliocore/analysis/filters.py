"""Cohort filters as data: which rows a filter keeps, and which filters condition on the outcome.

The dashboard's sidebar turns its widgets into :class:`Filter` objects; every page then selects
its rows with :func:`apply_filters`. A filter on the outcome itself (survival time, event) is
harmless on a descriptive page but biases every analysis *of* that outcome — a Kaplan–Meier curve
of the deaths only never shows censoring, a survival range truncates the curve, and short/long
classes become trivially separable — so the analysis pages ask :func:`outcome_filters` which of
the active filters do that, and can apply the others only (``skip_columns``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import pandas as pd

__all__ = ["Filter", "apply_filters", "outcome_filters"]

FilterKind = Literal["range", "in", "equals"]


@dataclass(frozen=True)
class Filter:
    """One active filter on a column of the cohort table.

    Attributes
    ----------
    column : str
        Column of the table the filter reads.
    label : str
        Name shown to the user (e.g. ``"Survival"``).
    kind : {"range", "in", "equals"}
        * ``range``: keep numeric values in ``[low, high]`` (inclusive; missing values dropped);
        * ``in``: keep rows whose value as text (missing as ``"unknown"``) is one of ``values``;
        * ``equals``: keep rows whose numeric value equals ``value`` (e.g. event == 1).
    low, high : float, optional
        Bounds of a ``range`` filter.
    values : tuple of str, optional
        Kept values of an ``in`` filter.
    value : float, optional
        Kept value of an ``equals`` filter.
    """

    column: str
    label: str
    kind: FilterKind
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "range" and (self.low is None or self.high is None):
            raise ValueError(f"range filter on {self.column!r} needs low and high")
        if self.kind == "in" and self.values is None:
            raise ValueError(f"'in' filter on {self.column!r} needs values")
        if self.kind == "equals" and self.value is None:
            raise ValueError(f"'equals' filter on {self.column!r} needs a value")
        if self.kind not in ("range", "in", "equals"):
            raise ValueError(f"unknown filter kind {self.kind!r}; use 'range', 'in' or 'equals'")

    def mask(self, table: pd.DataFrame) -> pd.Series:
        """Boolean Series (aligned with ``table``): True for the rows this filter keeps.

        A table without the filter's column keeps no row (the filter cannot be honoured).
        """
        if self.column not in table.columns:
            return pd.Series(False, index=table.index)
        col = table[self.column]
        if self.kind == "range":
            return pd.to_numeric(col, errors="coerce").between(self.low, self.high)
        if self.kind == "in":
            return col.astype(object).where(col.notna(), "unknown").astype(str).isin(self.values)
        return pd.to_numeric(col, errors="coerce") == self.value


def apply_filters(table: pd.DataFrame, filters: Iterable[Filter],
                  skip_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of ``table`` kept by every filter, except filters on ``skip_columns``.

    Parameters
    ----------
    table : DataFrame
    filters : iterable of Filter
    skip_columns : sequence of str, optional
        Filters on these columns are not applied (e.g. the outcome columns on an analysis of the
        outcome).

    Returns
    -------
    DataFrame
        The kept rows, index reset (0..n-1).
    """
    keep = pd.Series(True, index=table.index)
    skip = set(skip_columns)
    for f in filters:
        if f.column not in skip:
            keep &= f.mask(table)
    return table.loc[keep].reset_index(drop=True)


def outcome_filters(filters: Iterable[Filter], outcome_columns: Sequence[str]) -> list[Filter]:
    """The filters that select subjects by the outcome (a filter on any of ``outcome_columns``).

    Parameters
    ----------
    filters : iterable of Filter
    outcome_columns : sequence of str
        The columns that make up the outcome, e.g. ``("Survival(months)", "event")``.
    """
    cols = set(outcome_columns)
    return [f for f in filters if f.column in cols]
