"""Cohort filters as data: which rows a filter keeps, and which filters condition on the outcome.

The dashboard's sidebar turns its widgets into :class:`Filter` objects; every page then selects
its rows with :func:`apply_filters`. A filter on the outcome itself (survival time, event) is
harmless on a descriptive page but biases every analysis *of* that outcome — a Kaplan–Meier curve
of the deaths only never shows censoring, a survival range truncates the curve, and short/long
classes become trivially separable — so the analysis pages ask :func:`outcome_filters` which of
the active filters do that, and can apply the others only (``skip_columns``).

The outcome is more than the survival columns: every column known only *after* baseline (the
number of scans, the follow-up, the best response, the first progression, the PFS reason...) is
one too (:data:`POST_BASELINE_COLUMNS`). Selecting subjects by such a column selects them by how
long they lived without progression — a subject must survive to be scanned twice or to respond
— and inflates the survival of the selection: guarantee-time bias (:data:`GUARANTEE_TIME_BIAS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import pandas as pd

from gliocore.longitudinal.response import PFS_EVENT_COLUMN, PFS_TIME_COLUMN

__all__ = ["Filter", "apply_filters", "outcome_filters", "guarantee_time_filters",
           "SURVIVAL_OUTCOME_COLUMNS", "POST_BASELINE_COLUMNS", "OUTCOME_COLUMNS",
           "GUARANTEE_TIME_BIAS"]

#: The survival endpoints: overall survival and progression-free survival.
SURVIVAL_OUTCOME_COLUMNS: tuple[str, ...] = ("Survival(months)", "event", PFS_TIME_COLUMN,
                                             PFS_EVENT_COLUMN)
#: Per-subject columns known only after baseline (gliocore.analysis.export.ENDPOINT_COLUMNS
#: less ``response_rule`` and ``os_origin_to_baseline_days``, which baseline data decide).
POST_BASELINE_COLUMNS: tuple[str, ...] = (
    "n_scans", "followup_months", "response_target", "best_response", "best_pct_change",
    "progression_months", "pfs_reason", "pfs_detail")
#: Every outcome column: a filter on one of them selects subjects by their outcome.
OUTCOME_COLUMNS: tuple[str, ...] = SURVIVAL_OUTCOME_COLUMNS + POST_BASELINE_COLUMNS
#: Why a filter on a post-baseline column biases an analysis of survival, with the sources.
GUARANTEE_TIME_BIAS = (
    "a column known only after baseline (number of scans, follow-up, response, progression) "
    "selects subjects who lived long enough to have it, which inflates their survival: "
    "guarantee-time bias (Anderson JR, Cain KC, Gelber RD. Analysis of survival by tumor "
    "response. J Clin Oncol 1983;1:710-719; Giobbie-Hurder A, Gelber RD, Regan MM. Challenges "
    "of guarantee-time bias. J Clin Oncol 2013;31:2963-2969)")

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


def outcome_filters(filters: Iterable[Filter],
                    outcome_columns: Sequence[str] = OUTCOME_COLUMNS) -> list[Filter]:
    """The filters that select subjects by the outcome (a filter on any of ``outcome_columns``).

    Parameters
    ----------
    filters : iterable of Filter
    outcome_columns : sequence of str, optional
        The columns that make up the outcome; default :data:`OUTCOME_COLUMNS` (survival, PFS
        and every post-baseline column).
    """
    cols = set(outcome_columns)
    return [f for f in filters if f.column in cols]


def guarantee_time_filters(filters: Iterable[Filter]) -> list[Filter]:
    """The filters on a column known only after baseline (:data:`POST_BASELINE_COLUMNS`), for
    which :data:`GUARANTEE_TIME_BIAS` explains the warning."""
    return outcome_filters(filters, POST_BASELINE_COLUMNS)
