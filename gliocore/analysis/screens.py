"""Univariable screens over many variables, adjusted with Benjamini–Hochberg q-values.

:func:`screen_features` fits one Cox model per feature; :func:`screen_splits` runs the log-rank
test of every variable's median (or tertile) split. Both are exploratory searches and report q.
"""
from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from gliocore.analysis.cox import cox_ph
from gliocore.analysis.groups import make_groups
from gliocore.analysis.kaplan_meier import kaplan_meier
from gliocore.analysis.survival import SurvivalWarning, _check_columns
from gliocore.errors import CohortError

__all__ = ["benjamini_hochberg", "screen_features", "screen_splits"]


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg FDR-adjusted q-values (step-up, monotone, capped at 1).

    ``q_(i) = min_{j >= i} min(1, m * p_(j) / j)`` over the sorted p-values; NaN stays NaN and
    does not count towards ``m``. Equals R's ``p.adjust(p, "BH")``.
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    if pv.size == 0:
        return q
    if ((pv < 0) | (pv > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = pv.size
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def screen_features(df: pd.DataFrame, duration_col: str, event_col: str,
                    features: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Univariable Cox screen of numeric features, with Benjamini–Hochberg q-values.

    Each feature is standardised (HR per SD over the subjects with that feature present) and fitted
    alone (Efron ties). Always read ``q`` (FDR-adjusted over the features screened), not ``p``.

    Returns
    -------
    DataFrame
        Index = feature; columns ``n``, ``events``, ``HR_per_SD``, ``HR_lower``, ``HR_upper``,
        ``p``, ``q``, ``note`` (why a feature could not be fitted), sorted by ``p``.
    """
    features = list(features)
    if not features:
        raise ValueError("no features given to screen")
    _check_columns(df, [duration_col, event_col, *features])
    rows = []
    for f in features:
        row = {"feature": f, "n": 0, "events": 0, "HR_per_SD": np.nan, "HR_lower": np.nan,
               "HR_upper": np.nan, "p": np.nan, "note": ""}
        if not pd.api.types.is_numeric_dtype(df[f]):
            row["note"] = "not numeric"
            rows.append(row)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = cox_ph(df, duration_col, event_col, [f], alpha=alpha, standardize=True)
            s = r.summary.iloc[0]
            row.update(n=r.n, events=r.n_events, HR_per_SD=s["HR"], HR_lower=s["HR_lower"],
                       HR_upper=s["HR_upper"], p=s["p"])
        except CohortError as exc:
            row["note"] = str(exc)
        rows.append(row)
    out = pd.DataFrame(rows).set_index("feature")
    out.insert(out.columns.get_loc("p") + 1, "q", benjamini_hochberg(out["p"].to_numpy()))
    return out.sort_values("p", na_position="last")


def screen_splits(df: pd.DataFrame, duration_col: str, event_col: str, variables: Sequence[str],
                  kind: Literal["median", "tertile"] = "median") -> pd.DataFrame:
    """Log-rank test of the median (or tertile) split of every variable, with BH q-values.

    Splitting many variables at their median and keeping the one with the smallest log-rank p
    is a multiple-testing search: on pure noise, one of 50 splits has p < 0.05 more often than
    not. This runs exactly the test :func:`kaplan_meier` shows for each split of the family and
    adjusts over all of them with :func:`benjamini_hochberg`, so a chosen split can be read with
    its q-value. Cut-points at the sample median/tertiles are themselves data-derived: treat the
    whole family as exploratory.

    Parameters
    ----------
    df : DataFrame
        One row per subject.
    duration_col, event_col : str
    variables : sequence of str
        The family: every variable the user can split (numeric columns).
    kind : {"median", "tertile"}, default "median"

    Returns
    -------
    DataFrame
        Index = variable; columns ``n``, ``events``, ``groups`` (testable groups), ``statistic``,
        ``p``, ``q`` (BH over the variables with a test; NaN without one) and ``note`` (why a
        variable has no test). Sorted by ``p``.
    """
    if kind not in ("median", "tertile"):
        raise ValueError(f"kind must be 'median' or 'tertile', got {kind!r}")
    variables = list(variables)
    if not variables:
        raise ValueError("no variables given to split")
    _check_columns(df, [duration_col, event_col, *variables])
    rows = []
    for v in variables:
        row = {"variable": v, "n": 0, "events": 0, "groups": 0, "statistic": np.nan, "p": np.nan,
               "note": ""}
        try:
            grouping = make_groups(df, v, kind)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SurvivalWarning)
                km = kaplan_meier(df, duration_col, event_col, group_col=grouping)
        except CohortError as exc:
            row["note"] = str(exc)
        else:
            row.update(n=int(sum(c.n for c in km.curves.values())),
                       events=int(sum(c.n_events for c in km.curves.values())))
            if km.logrank is None:
                row["note"] = "; ".join(w for w in km.warnings if "log-rank" in w) or "no test"
            else:
                row.update(groups=len(km.logrank.groups), statistic=km.logrank.statistic,
                           p=km.logrank.p_value)
        rows.append(row)
    out = pd.DataFrame(rows).set_index("variable")
    out.insert(out.columns.get_loc("p") + 1, "q", benjamini_hochberg(out["p"].to_numpy()))
    return out.sort_values("p", na_position="last")
