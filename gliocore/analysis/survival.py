"""Survival analysis: what the Kaplan–Meier, Cox, grouping and screen modules share.

The survival analysis over a cohort table (one row per subject) lives in one module per concept:
:mod:`gliocore.analysis.kaplan_meier` (curves, medians, log-rank), :mod:`gliocore.analysis.cox`
(Cox PH, Efron and Breslow ties, the PH test), :mod:`gliocore.analysis.groups` (group making for
the curves) and :mod:`gliocore.analysis.screens` (univariable screens with BH q-values). This module
holds what they share: the input cleaning, the warning class, the outcome-defined caveat, the
group order and the threshold label. :func:`gliocore.validation.survival.validate_survival` checks
them all against published reference values.

Conventions
-----------
* ``event`` is 1 when the death was observed and 0 when the subject was censored (booleans accepted).
* Rows with a missing duration, event or grouping value are dropped and *counted* in the result.
* Median survival follows lifelines: the first time at which the Kaplan–Meier curve drops strictly
  below 0.5 (R's ``survfit`` takes the midpoint when the curve sits exactly at 0.5 over an
  interval). A curve that never drops below 0.5 has median ``inf`` ("not reached").
* Nothing is standardised unless ``standardize=True`` is passed; hazard ratios are then per SD.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from gliocore.errors import CohortError, GlioWarning

__all__ = ["OUTCOME_DEFINED_REASON", "format_number", "SurvivalWarning"]


class SurvivalWarning(GlioWarning):
    """A survival analysis ran, but part of its input limits what the result means."""


#: Said wherever a grouping defined by the outcome is shown without a test.
OUTCOME_DEFINED_REASON = (
    "the groups are defined by the outcome itself (survival time and event), so their curves "
    "differ by construction: a log-rank test would return a tiny p-value even on random data "
    "and means nothing. Read these curves as a description of the groups only; to test whether "
    "a variable predicts survival, group by that variable or use the Cox model")


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CohortError(f"column(s) {missing} not in the table; available columns: {list(df.columns)}")


def _clean_survival(df: pd.DataFrame, duration_col: str, event_col: str,
                    extra: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """Return rows with a usable duration/event (and ``extra`` columns), event as int 0/1."""
    cols = [duration_col, event_col, *[c for c in extra if c not in (duration_col, event_col)]]
    _check_columns(df, cols)
    sub = df[cols].copy()
    keep = sub.notna().all(axis=1)
    n_dropped = int((~keep).sum())
    sub = sub.loc[keep]
    if sub.empty:
        raise CohortError(f"no subject has {', '.join(repr(c) for c in cols)} all present; "
                          "fill in the clinical table before a survival analysis")
    dur = pd.to_numeric(sub[duration_col], errors="coerce")
    if dur.isna().any():
        bad = sub.loc[dur.isna(), duration_col].iloc[:3].tolist()
        raise CohortError(f"{duration_col!r} has non-numeric values, e.g. {bad}; convert them to numbers")
    if (dur < 0).any():
        raise CohortError(f"{duration_col!r} has negative durations ({int((dur < 0).sum())} rows); "
                          "durations must be >= 0")
    ev = sub[event_col]
    if ev.dtype == object:
        ev = ev.map(lambda v: {"true": 1, "false": 0, "1": 1, "0": 0}.get(str(v).strip().lower(), v))
    ev = pd.to_numeric(ev, errors="coerce")
    if ev.isna().any() or not ev.isin([0, 1]).all():
        bad = sorted(set(sub.loc[ev.isna() | ~ev.isin([0, 1]), event_col].astype(str)))[:5]
        raise CohortError(f"{event_col!r} must be 1 (death observed) or 0 (censored); found {bad}")
    sub[duration_col] = dur.astype(float)
    sub[event_col] = ev.astype(int)
    return sub, n_dropped


def format_number(x: float) -> str:
    """Compact label for a threshold: 3 significant figures with k/M suffixes (12345 -> '12.3k')."""
    if not np.isfinite(x):
        return str(x)
    ax = abs(x)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _group_order(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present]
    uniq = list(pd.unique(values.dropna()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)

