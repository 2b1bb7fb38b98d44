"""Group making for Kaplan–Meier comparisons (categorical, short/long survival, median, tertiles)
and the short/long survival labels the classifiers learn."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from gliocore.analysis.survival import (OUTCOME_DEFINED_REASON, _check_columns, _clean_survival,
                                        _group_order, format_number)
from gliocore.errors import CohortError

__all__ = ["Grouping", "GroupKind", "ShortLongLabels", "short_long_mask", "make_short_long_labels",
           "make_groups"]

GroupKind = Literal["categorical", "short_long", "median", "tertile"]


@dataclass(frozen=True)
class Grouping:
    """Group labels for :func:`kaplan_meier` (``group_col``) and the subjects left out.

    Attributes
    ----------
    labels : Series
        Ordered categorical aligned with the input's index; NaN for excluded subjects.
    n_excluded : int
        Subjects without a group (missing value, or censored before the short/long threshold).
    rule : str
        The grouping rule in words, for captions.
    """

    labels: pd.Series
    n_excluded: int
    rule: str
    outcome_defined: bool = False

    @property
    def no_test_reason(self) -> str | None:
        """Why these groups must not be compared by a test (None when a test is fine)."""
        return OUTCOME_DEFINED_REASON if self.outcome_defined else None


def short_long_mask(durations: pd.Series, events: pd.Series, threshold: float) -> tuple[pd.Series, pd.Series]:
    """Short/long survival class and which subjects can be classified.

    Short = death observed at or before ``threshold``; long = follow-up beyond ``threshold``
    (dead or alive). A subject censored at or before ``threshold`` has an unknown class.

    Returns
    -------
    is_short : Series of bool
    known : Series of bool
    """
    is_short = (durations <= threshold) & (events == 1)
    is_long = durations > threshold
    return is_short, (is_short | is_long)


@dataclass(frozen=True)
class ShortLongLabels:
    """Binary short/long survival labels.

    Attributes
    ----------
    y : Series of int
        1 = short, 0 = long; indexed like the input rows that could be classified.
    n_excluded : int
        Subjects left out (censored at or before the threshold, or missing duration/event).
    rule : str
        The labelling rule in words.
    """

    y: pd.Series
    n_excluded: int
    rule: str


def make_short_long_labels(df: pd.DataFrame, duration_col: str, event_col: str,
                           threshold: float = 5.0) -> ShortLongLabels:
    """Label subjects short (1) or long (0) survivors.

    Rule:

    * **short (1)**: death observed at or before ``threshold`` (``duration <= threshold`` and
      ``event == 1``);
    * **long (0)**: followed beyond ``threshold`` (``duration > threshold``), whether they died
      later or were censored later;
    * **excluded**: censored at or before ``threshold`` — alive when last seen, so whether they
      outlived the threshold is unknown. Counting them as long would bias the labels.

    Rows with a missing duration or event are excluded too; ``n_excluded`` counts both.

    Parameters
    ----------
    df : DataFrame
    duration_col, event_col : str
        Survival time (same unit as ``threshold``, months in GlioScope) and 1/0 death indicator.
    threshold : float, default 5.0

    Returns
    -------
    ShortLongLabels
    """
    sub, n_missing = _clean_survival(df, duration_col, event_col)
    is_short, known = short_long_mask(sub[duration_col], sub[event_col], threshold)
    y = is_short[known].astype(int).rename("short_survival")
    rule = (f"short (1) = died at or before {threshold:g}; long (0) = followed beyond {threshold:g}; "
            f"{int((~known).sum())} censored at or before {threshold:g} excluded as unknown"
            + (f"; {n_missing} with missing {duration_col!r}/{event_col!r} excluded" if n_missing else ""))
    return ShortLongLabels(y=y, n_excluded=int((~known).sum()) + n_missing, rule=rule)


def make_groups(df: pd.DataFrame, by: str, kind: GroupKind = "categorical", *,
                threshold: float = 5.0, event_col: str = "event") -> Grouping:
    """Group the subjects for a Kaplan–Meier comparison.

    Parameters
    ----------
    df : DataFrame
    by : str
        Column to group on. For ``kind="short_long"`` this is the duration column.
    kind : {"categorical", "short_long", "median", "tertile"}
        * ``categorical``: the column's values as they are (e.g. ``IDH-status``).
        * ``short_long``: ``short (<= threshold)`` when death was observed at or before
          ``threshold``; ``long (> threshold)`` when follow-up exceeds it. Subjects censored at or
          before ``threshold`` have an unknown class and are excluded (counted). These groups are
          defined by the outcome (``outcome_defined=True``): :func:`kaplan_meier` describes them
          but never tests them.
        * ``median``: ``by <= median`` vs ``by > median``.
        * ``tertile``: three groups split at the 1/3 and 2/3 quantiles.
    threshold : float, default 5.0
        Short/long threshold, in the unit of the duration column (months in GlioScope).
    event_col : str, default "event"
        Event column, used by ``short_long`` only.

    Returns
    -------
    Grouping
    """
    _check_columns(df, [by] + ([event_col] if kind == "short_long" else []))
    col = df[by]
    n_missing = int(col.isna().sum())
    if kind == "categorical":
        order = _group_order(col)
        labels = pd.Series(pd.Categorical(col.astype(object).where(col.notna()).map(
            lambda v: v if pd.isna(v) else str(v)), categories=[str(o) for o in order], ordered=True),
            index=df.index, name=by)
        return Grouping(labels, n_missing, f"{by} as recorded")

    values = pd.to_numeric(col, errors="coerce")
    if (values.isna() & col.notna()).any():
        raise CohortError(f"column {by!r} is not numeric; use kind='categorical' for it")
    if kind == "short_long":
        sub, _ = _clean_survival(df.assign(**{by: values}), by, event_col)
        is_short, known = short_long_mask(sub[by], sub[event_col], threshold)
        t = format_number(threshold)
        lab = pd.Series(np.where(is_short, f"short (≤ {t})", f"long (> {t})"), index=sub.index)
        lab = lab[known].reindex(df.index)
        cats = [f"short (≤ {t})", f"long (> {t})"]
        labels = pd.Series(pd.Categorical(lab, categories=cats, ordered=True), index=df.index, name=by)
        n_unknown = int((~known).sum())
        rule = (f"short = died at or before {t}; long = followed beyond {t}; {n_unknown} subject(s) "
                f"censored at or before {t} have an unknown class and are excluded")
        return Grouping(labels, n_unknown + len(df) - len(sub), rule, outcome_defined=True)

    v = values.dropna()
    if v.nunique() < 2:
        raise CohortError(f"column {by!r} has fewer than two distinct values; it cannot be split")
    if kind == "median":
        cut = float(v.median())
        cats = [f"{by} ≤ {format_number(cut)}", f"{by} > {format_number(cut)}"]
        lab = pd.Series(np.where(values <= cut, cats[0], cats[1]), index=df.index).where(values.notna())
        rule = f"median split of {by} at {format_number(cut)}"
    elif kind == "tertile":
        q1, q2 = (float(x) for x in v.quantile([1 / 3, 2 / 3]))
        if q1 == q2:
            raise CohortError(f"the tertiles of {by!r} coincide ({format_number(q1)}); "
                              "use kind='median' for this column")
        f1, f2 = format_number(q1), format_number(q2)
        cats = [f"{by} ≤ {f1}", f"{f1} < {by} ≤ {f2}", f"{by} > {f2}"]
        lab = pd.Series(np.select([values <= q1, values <= q2], cats[:2], cats[2]),
                        index=df.index).where(values.notna())
        rule = f"tertiles of {by} at {f1} and {f2}"
    else:
        raise ValueError(f"unknown kind {kind!r}; use 'categorical', 'short_long', 'median' or 'tertile'")
    labels = pd.Series(pd.Categorical(lab, categories=cats, ordered=True), index=df.index, name=by)
    return Grouping(labels, n_missing, rule)

