"""Survival analysis over a cohort table (one row per subject): Kaplan–Meier, log-rank, Cox PH.

Pure functions over a :class:`pandas.DataFrame`; every result is a small frozen dataclass that the
dashboard renders (figures live in :mod:`gliocore.analysis.plots`). Kaplan–Meier estimates, log-rank tests,
the Efron-ties Cox model and the proportional-hazards test come from lifelines; the Breslow-ties
Cox model (which lifelines does not offer) is a small Newton–Raphson on the Breslow partial
likelihood in this module. :func:`gliocore.validation.survival.validate_survival` checks all of
them against published reference values.

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

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from gliocore.errors import CohortError, GlioWarning

__all__ = [
    "KMCurve", "LogRankResult", "KMResult", "Grouping", "CoxResult", "OUTCOME_DEFINED_REASON",
    "kaplan_meier", "make_groups", "cox_ph", "screen_features", "screen_splits",
    "benjamini_hochberg",
    "format_number", "SurvivalWarning",
]

GroupKind = Literal["categorical", "short_long", "median", "tertile"]


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


def _nice_times(t_max: float, n: int = 6) -> np.ndarray:
    """About ``n`` round time points from 0 to ``t_max`` (for the number-at-risk table)."""
    if t_max <= 0:
        return np.array([0.0])
    raw = t_max / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda st: abs(math.log(st / raw)))
    return np.arange(0, t_max + 1e-9 * step, step)


# --------------------------------------------------------------------------------------------
# Kaplan–Meier and log-rank
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KMCurve:
    """Kaplan–Meier estimate of one group.

    Attributes
    ----------
    group : str
        Group label (``"all"`` without grouping).
    n, n_events : int
        Subjects and observed deaths.
    timeline, survival, ci_lower, ci_upper : (T,) ndarray
        Right-continuous step function starting at time 0 with S = 1; pointwise
        ``1 - alpha`` confidence interval (lifelines' exponential Greenwood, log(-log) scale).
    censor_times, censor_survival : (C,) ndarray
        Times of censored subjects and the curve's value there (where to draw the ticks).
    median : float
        Median survival; ``inf`` when not reached.
    median_ci : tuple of float
        ``(lower, upper)`` of the median's confidence interval; ``inf`` where unbounded.
    """

    group: str
    n: int
    n_events: int
    timeline: np.ndarray
    survival: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    censor_times: np.ndarray
    censor_survival: np.ndarray
    median: float
    median_ci: tuple[float, float]

    @property
    def median_reached(self) -> bool:
        return bool(np.isfinite(self.median))

    def survival_at(self, times: float | Sequence[float]) -> np.ndarray:
        """Value of the step function at ``times`` (right-continuous; NaN before time 0)."""
        return _step_at(self.timeline, self.survival, times)


def _step_at(timeline: np.ndarray, values: np.ndarray, times: float | Sequence[float]) -> np.ndarray:
    t = np.atleast_1d(np.asarray(times, dtype=float))
    idx = np.searchsorted(timeline, t, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)


@dataclass(frozen=True)
class LogRankResult:
    """Log-rank test across the groups of a :class:`KMResult`.

    Attributes
    ----------
    test_name : str
        ``"logrank_test"`` (two groups) or ``"multivariate_logrank_test"`` (three or more).
    statistic : float
        Chi-squared statistic.
    dof : int
        Degrees of freedom (groups - 1).
    p_value : float
    groups : tuple of str
        Groups entered in the test, in the order of ``observed`` / ``expected``.
    observed, expected : tuple of float
        Observed and expected deaths per group under the null hypothesis.
    """

    test_name: str
    statistic: float
    dof: int
    p_value: float
    groups: tuple[str, ...]
    observed: tuple[float, ...]
    expected: tuple[float, ...]


@dataclass(frozen=True)
class KMResult:
    """Kaplan–Meier curves per group, number at risk, medians and the log-rank test.

    Attributes
    ----------
    curves : dict of str to KMCurve
        One curve per group, in group order.
    at_risk : DataFrame
        Number of subjects still under observation (duration >= t) at each time point;
        rows = groups, columns = time points.
    logrank : LogRankResult or None
        None without grouping, with fewer than two testable groups, without any death, or for
        groups defined by the outcome (see ``no_test_reason``).
    duration_col, event_col : str
    group_col : str or None
    alpha : float
    n_excluded : int
        Rows dropped for a missing duration, event or group value.
    warnings : tuple of str
        Plain-language caveats (tiny groups, groups without deaths, ...).
    no_test_reason : str or None
        Set when the groups are defined by the outcome (e.g. short/long survival): the result is
        descriptive only and ``logrank`` is None on purpose, for this reason.
    """

    curves: dict[str, KMCurve]
    at_risk: pd.DataFrame
    logrank: LogRankResult | None
    duration_col: str
    event_col: str
    group_col: str | None
    alpha: float
    n_excluded: int
    warnings: tuple[str, ...] = ()
    no_test_reason: str | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.curves)

    @property
    def medians(self) -> pd.DataFrame:
        """Per group: n, events, median and its CI, and a display string ("NR" = not reached)."""
        level = int(round(100 * (1 - self.alpha)))

        def txt(v: float) -> str:
            return "NR" if not np.isfinite(v) else f"{v:.3g}"

        rows = [{"group": c.group, "n": c.n, "events": c.n_events, "median": c.median,
                 "ci_lower": c.median_ci[0], "ci_upper": c.median_ci[1],
                 "median_reached": c.median_reached,
                 "median_text": f"{txt(c.median)} ({level}% CI {txt(c.median_ci[0])}–{txt(c.median_ci[1])})"}
                for c in self.curves.values()]
        return pd.DataFrame(rows).set_index("group")

    def survival_at(self, times: float | Sequence[float], group: str | None = None) -> np.ndarray:
        """Kaplan–Meier survival of ``group`` (the only group if None) at ``times``."""
        if group is None:
            if len(self.curves) != 1:
                raise ValueError(f"several groups {self.groups}; pass group=")
            group = self.groups[0]
        if str(group) not in self.curves:
            raise KeyError(f"no group {group!r}; groups are {self.groups}")
        return self.curves[str(group)].survival_at(times)


def _group_order(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present]
    uniq = list(pd.unique(values.dropna()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _observed_expected(durations: np.ndarray, events: np.ndarray, labels: np.ndarray,
                       groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Observed and log-rank expected deaths per group (hypergeometric expectation)."""
    times = np.unique(durations[events == 1])
    obs = np.array([events[labels == g].sum() for g in groups], dtype=float)
    exp = np.zeros(len(groups))
    for t in times:
        at_risk = durations >= t
        n_t = at_risk.sum()
        d_t = ((durations == t) & (events == 1)).sum()
        for k, g in enumerate(groups):
            exp[k] += d_t * (at_risk & (labels == g)).sum() / n_t
    return obs, exp


def kaplan_meier(df: pd.DataFrame, duration_col: str, event_col: str,
                 group_col: str | Grouping | None = None, alpha: float = 0.05,
                 at_risk_times: Sequence[float] | None = None) -> KMResult:
    """Kaplan–Meier curves (optionally per group), number at risk, medians and log-rank test.

    Parameters
    ----------
    df : DataFrame
        One row per subject.
    duration_col, event_col : str
        Follow-up time and event indicator (1 = death observed, 0 = censored).
    group_col : str or Grouping, optional
        Column whose values define the groups, or a :class:`Grouping` from :func:`make_groups`
        (aligned with ``df``'s index). Rows where it is missing are excluded and counted.
        Groups defined by the outcome — a :class:`Grouping` with ``outcome_defined`` (short/long
        survival), or the duration or event column itself — get curves and medians but **no
        log-rank test** (``no_test_reason`` says why): they differ by construction.
    alpha : float, default 0.05
        Confidence intervals are ``1 - alpha``.
    at_risk_times : sequence of float, optional
        Time points of the number-at-risk table; by default about six round values from 0 to the
        longest follow-up.

    Returns
    -------
    KMResult

    Notes
    -----
    Two groups are compared with lifelines' ``logrank_test``, three or more with
    ``multivariate_logrank_test``. Groups with fewer than 2 subjects are left out of the test (with
    a warning); groups without any death are kept (their curve stays at 1) but flagged.

    Raises
    ------
    CohortError
        Missing columns, no usable rows, negative durations or an event column that is not 0/1.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test, multivariate_logrank_test
    from lifelines.utils import median_survival_times

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    no_test_reason = None
    if isinstance(group_col, Grouping):
        grouping = group_col
        if not grouping.labels.index.equals(df.index):
            raise ValueError("the Grouping's labels are not aligned with df's index; build it with "
                             "make_groups(df, ...) on the same table")
        group_col = "group"
        df = df.assign(**{group_col: grouping.labels})
        no_test_reason = grouping.no_test_reason
    elif group_col is not None and group_col in (duration_col, event_col):
        no_test_reason = OUTCOME_DEFINED_REASON
    extra = [group_col] if group_col is not None else []
    sub, n_excluded = _clean_survival(df, duration_col, event_col, extra)
    notes: list[str] = []
    if n_excluded:
        notes.append(f"{n_excluded} subject(s) excluded for a missing {duration_col!r}, {event_col!r}"
                     + (f" or {group_col!r}" if group_col else "") + " value")

    if group_col is None:
        labels = pd.Series("all", index=sub.index)
        order = ["all"]
    else:
        labels = sub[group_col]
        order = _group_order(labels)
    dur = sub[duration_col].to_numpy(float)
    ev = sub[event_col].to_numpy(int)
    lab = labels.to_numpy()

    if at_risk_times is None:
        at_risk_times = _nice_times(float(dur.max()))
    at_risk_times = np.asarray(at_risk_times, dtype=float)

    curves: dict[str, KMCurve] = {}
    at_risk_rows = {}
    testable = []
    for g in order:
        m = lab == g
        d, e = dur[m], ev[m]
        name = str(g)
        kmf = KaplanMeierFitter(alpha=alpha).fit(d, e, label=name)
        ci = kmf.confidence_interval_
        tl = kmf.survival_function_.index.to_numpy(float)
        s = kmf.survival_function_[name].to_numpy(float)
        cens = np.sort(d[e == 0])
        med = float(kmf.median_survival_time_)
        med_ci = median_survival_times(ci)
        curve = KMCurve(
            group=name, n=int(m.sum()), n_events=int(e.sum()), timeline=tl, survival=s,
            ci_lower=ci.iloc[:, 0].to_numpy(float), ci_upper=ci.iloc[:, 1].to_numpy(float),
            censor_times=cens, censor_survival=_step_at(tl, s, cens) if cens.size else np.empty(0),
            median=med, median_ci=(float(med_ci.iloc[0, 0]), float(med_ci.iloc[0, 1])),
        )
        curves[name] = curve
        at_risk_rows[name] = [(d >= t).sum() for t in at_risk_times]
        label = f"group {name!r}" if group_col else "the cohort"
        if m.sum() < 2:
            notes.append(f"{label} has only {int(m.sum())} subject(s): its curve is not interpretable"
                         + ("" if no_test_reason else " and it is left out of the log-rank test")
                         + "; merge it with another group")
        else:
            testable.append(g)
        if e.sum() == 0:
            notes.append(f"no events in {label}: its curve stays at 1 and the median is not reached")

    at_risk = pd.DataFrame.from_dict(at_risk_rows, orient="index", columns=at_risk_times)
    at_risk.index.name = group_col or "group"
    at_risk.columns.name = duration_col

    lr: LogRankResult | None = None
    if group_col is not None and no_test_reason is None:
        if len(testable) < 2:
            notes.append(f"log-rank test not computed: {len(testable)} group(s) with >= 2 subjects; "
                         "at least two are needed")
        else:
            m = np.isin(lab, testable)
            if ev[m].sum() == 0:
                notes.append("log-rank test not computed: no events in any group")
            else:
                if len(testable) == 2:
                    a, b = (lab == testable[0]), (lab == testable[1])
                    res = logrank_test(dur[a], dur[b], ev[a], ev[b], alpha=alpha)
                    name, dof = "logrank_test", 1
                else:
                    res = multivariate_logrank_test(dur[m], lab[m], ev[m], alpha=alpha)
                    name, dof = "multivariate_logrank_test", len(testable) - 1
                obs, exp = _observed_expected(dur[m], ev[m], lab[m], testable)
                lr = LogRankResult(test_name=name, statistic=float(res.test_statistic), dof=int(dof),
                                   p_value=float(res.p_value), groups=tuple(str(g) for g in testable),
                                   observed=tuple(obs.tolist()), expected=tuple(exp.tolist()))

    for msg in notes:
        warnings.warn(msg, SurvivalWarning, stacklevel=2)
    return KMResult(curves=curves, at_risk=at_risk, logrank=lr, duration_col=duration_col,
                    event_col=event_col, group_col=group_col, alpha=alpha,
                    n_excluded=n_excluded, warnings=tuple(notes), no_test_reason=no_test_reason)


# --------------------------------------------------------------------------------------------
# groupings
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Cox proportional hazards
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox proportional-hazards model.

    Attributes
    ----------
    summary : DataFrame
        Index = model terms; columns ``coef``, ``HR``, ``HR_lower``, ``HR_upper`` (``1 - alpha``
        CI), ``se``, ``z``, ``p``.
    concordance : float
        Harrell's C on the fitting data (optimistic: not cross-validated).
    log_likelihood : float
        Maximised partial log-likelihood.
    AIC : float
        Partial AIC, ``-2 * log_likelihood + 2 * n_terms``.
    lr_test : dict
        Likelihood-ratio test against the null model: ``stat``, ``df``, ``p``.
    ph_test : DataFrame
        Proportional-hazards test per term (Schoenfeld residuals, rank time transform):
        ``statistic``, ``p``.
    ph_verdict : str
        ``"PH assumption not rejected at 0.05"`` or ``"PH assumption violated at 0.05 for: ..."``.
    ties : str
        ``"efron"`` or ``"breslow"``.
    n, n_events, n_dropped : int
        Subjects used, deaths, and rows dropped for missing values.
    reference_levels : dict of str to str
        Reference level of each categorical covariate (its indicator terms are ``col=level``).
    standardized : tuple of str
        Terms rescaled to unit SD before fitting (their HR is per SD).
    alpha, penalizer : float
    notes : tuple of str
        Caveats, e.g. dropped rows or how the PH test was computed.
    """

    summary: pd.DataFrame
    concordance: float
    log_likelihood: float
    AIC: float
    lr_test: dict
    ph_test: pd.DataFrame
    ph_verdict: str
    ties: str
    n: int
    n_events: int
    n_dropped: int
    reference_levels: dict[str, str]
    standardized: tuple[str, ...]
    alpha: float
    penalizer: float
    notes: tuple[str, ...] = field(default=())

    @property
    def params(self) -> pd.Series:
        return self.summary["coef"]


def _design_matrix(sub: pd.DataFrame, covariates: Sequence[str],
                   reference_levels: dict[str, str] | None) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """Numeric design matrix: numeric columns as is, categorical ones as indicators vs a reference."""
    reference_levels = dict(reference_levels or {})
    parts, refs, numeric_terms = [], {}, []
    for c in covariates:
        col = sub[c]
        if pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).rename(c))
            numeric_terms.append(c)
        elif pd.api.types.is_numeric_dtype(col):
            parts.append(col.astype(float).rename(c))
            numeric_terms.append(c)
        else:
            levels = [str(v) for v in _group_order(col)]
            if len(levels) < 2:
                raise CohortError(f"categorical covariate {c!r} has a single level {levels}; remove it")
            ref = str(reference_levels.get(c, levels[0]))
            if ref not in levels:
                raise CohortError(f"reference level {ref!r} for {c!r} is not among its levels {levels}")
            refs[c] = ref
            s = col.astype(str)
            for lev in levels:
                if lev != ref:
                    parts.append((s == lev).astype(float).rename(f"{c}={lev}"))
    X = pd.concat(parts, axis=1)
    const = [t for t in X.columns if X[t].nunique() < 2]
    if const:
        raise CohortError(f"covariate term(s) {const} are constant in the usable rows; remove them")
    return X, refs, numeric_terms


def _breslow_fit(T: np.ndarray, E: np.ndarray, X: np.ndarray, penalizer: float = 0.0,
                 max_iter: int = 50, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Newton–Raphson on the Breslow partial likelihood.

    Parameters
    ----------
    T, E : (n,) ndarray
        Durations and 0/1 events.
    X : (n, p) ndarray
        Design matrix (already on the scale the coefficients are reported on).
    penalizer : float
        Ridge penalty ``n * penalizer / 2 * ||beta_std||^2`` on the coefficients of the
        standardised covariates, as lifelines' CoxPHFitter (l1_ratio = 0) applies it.

    Returns
    -------
    beta : (p,) ndarray
    cov : (p, p) ndarray
        Inverse of the negative Hessian of the (penalised) log-likelihood.
    loglik : float
        Unpenalised partial log-likelihood at ``beta``.
    loglik0 : float
        Partial log-likelihood at ``beta = 0``.
    """
    n, p = X.shape
    mu, sd = X.mean(0), X.std(0, ddof=1)
    Z = (X - mu) / sd
    order = np.argsort(T, kind="stable")
    T, E, Z = T[order], E[order].astype(float), Z[order]
    # first index of each distinct time in ascending order: the risk set is everything from there on
    uniq, first = np.unique(T, return_index=True)
    d_t = np.add.reduceat(E, first)
    xd_t = np.add.reduceat(Z * E[:, None], first, axis=0)
    ev = d_t > 0

    def pieces(b: np.ndarray):
        eta = Z @ b
        c = eta.max()
        w = np.exp(eta - c)
        S0 = np.cumsum(w[::-1])[::-1][first][ev]
        S1 = np.cumsum((w[:, None] * Z)[::-1], axis=0)[::-1][first][ev]
        S2 = np.cumsum((w[:, None, None] * Z[:, :, None] * Z[:, None, :])[::-1], axis=0)[::-1][first][ev]
        d = d_t[ev]
        ll = float((xd_t[ev] @ b).sum() - (d * (np.log(S0) + c)).sum())
        m1 = S1 / S0[:, None]
        grad = xd_t[ev].sum(0) - (d[:, None] * m1).sum(0)
        hess = -(d[:, None, None] * (S2 / S0[:, None, None] - m1[:, :, None] * m1[:, None, :])).sum(0)
        return ll, grad, hess

    b = np.zeros(p)
    ll0 = pieces(b)[0]
    pen = n * penalizer
    for _ in range(max_iter):
        ll, g, H = pieces(b)
        obj = ll - 0.5 * pen * b @ b
        g = g - pen * b
        H = H - pen * np.eye(p)
        step = np.linalg.solve(-H, g)
        # step halving keeps the ascent monotone on awkward data
        t = 1.0
        while True:
            b_new = b + t * step
            ll_new = pieces(b_new)[0] - 0.5 * pen * b_new @ b_new
            if ll_new >= obj - 1e-12 or t < 1e-8:
                break
            t /= 2
        b = b_new
        if abs(ll_new - obj) < tol and np.max(np.abs(t * step)) < 1e-8:
            break
    else:
        raise CohortError("the Breslow Cox fit did not converge in "
                          f"{max_iter} iterations; try penalizer=0.1 or fewer covariates")
    ll, g, H = pieces(b)
    H = H - pen * np.eye(p)
    cov_std = np.linalg.inv(-H)
    beta = b / sd
    cov = cov_std / np.outer(sd, sd)
    return beta, cov, ll, ll0


def _ph_verdict(ph: pd.DataFrame, alpha: float) -> str:
    bad = ph.index[ph["p"] < alpha].tolist()
    a = f"{alpha:g}"
    if not bad:
        return f"PH assumption not rejected at {a}"
    return f"PH assumption violated at {a} for: {', '.join(map(str, bad))}"


def cox_ph(df: pd.DataFrame, duration_col: str, event_col: str, covariates: Sequence[str],
           alpha: float = 0.05, ties: Literal["efron", "breslow"] = "efron", penalizer: float = 0.0,
           standardize: bool = False, reference_levels: dict[str, str] | None = None) -> CoxResult:
    """Fit a Cox proportional-hazards model and test the proportional-hazards assumption.

    Parameters
    ----------
    df : DataFrame
        One row per subject.
    duration_col, event_col : str
    covariates : sequence of str
        Numeric or categorical columns. A categorical column (strings, e.g. ``IDH-status``) enters as
        indicators ``col=level`` against a reference level: the first level in sorted order (or
        the first category of a categorical dtype) unless ``reference_levels`` names one.
    alpha : float, default 0.05
        Confidence intervals of the hazard ratios are ``1 - alpha``; also the level of the
        proportional-hazards verdict.
    ties : {"efron", "breslow"}, default "efron"
        Handling of tied death times. Efron uses lifelines' CoxPHFitter; Breslow uses this module's
        Newton–Raphson (lifelines supports only Efron).
    penalizer : float, default 0.0
        Ridge penalty as in lifelines' CoxPHFitter (``l1_ratio = 0``).
    standardize : bool, default False
        Rescale numeric covariates to unit SD (over the rows used) so their HR is per SD;
        indicator terms of categorical covariates are never rescaled.
    reference_levels : dict, optional
        ``{column: level}`` to override the reference level of categorical covariates.

    Returns
    -------
    CoxResult

    Notes
    -----
    Rows with a missing duration, event or covariate are dropped (counted in ``n_dropped``). The
    proportional-hazards test is lifelines' ``proportional_hazard_test`` (scaled Schoenfeld
    residuals, ``time_transform="rank"``) on the Efron fit; with ``ties="breslow"`` it is still
    computed from the Efron fit of the same model (stated in ``notes``).
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test
    from lifelines.utils import concordance_index

    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    covariates = list(covariates)
    if not covariates:
        raise ValueError("no covariates given; pass at least one column name")
    if duration_col in covariates or event_col in covariates:
        raise ValueError("the duration and event columns cannot be covariates")
    sub, n_dropped = _clean_survival(df, duration_col, event_col, covariates)
    notes: list[str] = []
    if n_dropped:
        notes.append(f"{n_dropped} row(s) with a missing duration, event or covariate were dropped")
    n_events = int(sub[event_col].sum())
    if n_events == 0:
        raise CohortError("no events (deaths) among the usable subjects: a Cox model cannot be fitted")
    X, refs, numeric_terms = _design_matrix(sub, covariates, reference_levels)
    std_terms: tuple[str, ...] = ()
    if standardize:
        X[numeric_terms] = (X[numeric_terms] - X[numeric_terms].mean()) / X[numeric_terms].std(ddof=1)
        std_terms = tuple(numeric_terms)
    p = X.shape[1]
    if n_events < 10 * p:
        notes.append(f"{n_events} events for {p} term(s): fewer than 10 events per term, "
                     "estimates may be unstable or over-fitted")
    T = sub[duration_col].to_numpy(float)
    E = sub[event_col].to_numpy(int)
    data = pd.concat([X, sub[[duration_col, event_col]]], axis=1)

    cph = CoxPHFitter(alpha=alpha, penalizer=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' own convergence hints; we report ours
            cph.fit(data, duration_col=duration_col, event_col=event_col)
    except ConvergenceError as exc:
        raise CohortError("the Cox model did not converge (often: a covariate separates deaths from "
                          f"survivors, or too few events); try penalizer=0.1 or fewer covariates. ({exc})"
                          ) from exc

    if ties == "efron":
        beta = cph.params_.to_numpy(float)
        se = cph.standard_errors_.to_numpy(float)
        ll = float(cph.log_likelihood_)
        lrt = cph.log_likelihood_ratio_test()
        lr = {"stat": float(lrt.test_statistic), "df": int(lrt.degrees_freedom), "p": float(lrt.p_value)}
        conc = float(cph.concordance_index_)
    else:
        beta, cov, ll, ll0 = _breslow_fit(T, E, X.to_numpy(float), penalizer=penalizer)
        se = np.sqrt(np.diag(cov))
        stat = 2 * (ll - ll0)
        lr = {"stat": float(stat), "df": p, "p": float(stats.chi2.sf(stat, p))}
        conc = float(concordance_index(T, -(X.to_numpy(float) @ beta), E))
        notes.append("PH test computed from the Efron fit of the same model (lifelines)")

    zcrit = stats.norm.ppf(1 - alpha / 2)
    z = beta / se
    summary = pd.DataFrame({
        "coef": beta, "HR": np.exp(beta), "HR_lower": np.exp(beta - zcrit * se),
        "HR_upper": np.exp(beta + zcrit * se), "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
    }, index=pd.Index(X.columns, name="term"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pht = proportional_hazard_test(cph, data, time_transform="rank")
    ph = pd.DataFrame({"statistic": np.asarray(pht.test_statistic, float).ravel(),
                       "p": np.asarray(pht.p_value, float).ravel()}, index=pd.Index(X.columns, name="term"))

    for msg in notes:
        if not msg.startswith("PH test"):
            warnings.warn(msg, SurvivalWarning, stacklevel=2)
    return CoxResult(summary=summary, concordance=conc, log_likelihood=ll, AIC=-2 * ll + 2 * p,
                     lr_test=lr, ph_test=ph, ph_verdict=_ph_verdict(ph, alpha), ties=ties,
                     n=len(sub), n_events=n_events, n_dropped=n_dropped, reference_levels=refs,
                     standardized=std_terms, alpha=alpha, penalizer=penalizer, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# feature screen
# --------------------------------------------------------------------------------------------
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
