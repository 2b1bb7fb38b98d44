"""Kaplan–Meier curves, number at risk, medians and the log-rank test (lifelines underneath).

Pure functions over a :class:`pandas.DataFrame`; results are small frozen dataclasses that the
dashboard renders (figures live in :mod:`gliocore.analysis.plots`). Conventions (event coding,
dropped rows, the median) are in :mod:`gliocore.analysis.survival`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from gliocore.analysis.groups import Grouping
from gliocore.analysis.survival import (OUTCOME_DEFINED_REASON, SurvivalWarning, _clean_survival,
                                        _group_order)

__all__ = ["KMCurve", "LogRankResult", "KMResult", "kaplan_meier"]


def _nice_times(t_max: float, n: int = 6) -> np.ndarray:
    """About ``n`` round time points from 0 to ``t_max`` (for the number-at-risk table)."""
    if t_max <= 0:
        return np.array([0.0])
    raw = t_max / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda st: abs(math.log(st / raw)))
    return np.arange(0, t_max + 1e-9 * step, step)



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


def _attach_grouping(df: pd.DataFrame, duration_col: str, event_col: str,
                     group_col: str | Grouping | None) -> tuple[pd.DataFrame, str | None, str | None]:
    """Resolve ``group_col``: the table (with a ``group`` column for a Grouping), the column, why no test."""
    if isinstance(group_col, Grouping):
        grouping = group_col
        if not grouping.labels.index.equals(df.index):
            raise ValueError("the Grouping's labels are not aligned with df's index; build it with "
                             "make_groups(df, ...) on the same table")
        return df.assign(group=grouping.labels), "group", grouping.no_test_reason
    if group_col is not None and group_col in (duration_col, event_col):
        return df, group_col, OUTCOME_DEFINED_REASON
    return df, group_col, None


def _fit_curves(dur: np.ndarray, ev: np.ndarray, lab: np.ndarray, order: list, alpha: float,
                at_risk_times: np.ndarray, grouped: bool, no_test_reason: str | None, notes: list[str]
                ) -> tuple[dict[str, KMCurve], dict[str, list], list]:
    """One Kaplan–Meier curve per group; its number-at-risk row; the groups fit for a test.

    Caveats (tiny groups, groups without deaths) are appended to ``notes``.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

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
        label = f"group {name!r}" if grouped else "the cohort"
        if m.sum() < 2:
            notes.append(f"{label} has only {int(m.sum())} subject(s): its curve is not interpretable"
                         + ("" if no_test_reason else " and it is left out of the log-rank test")
                         + "; merge it with another group")
        else:
            testable.append(g)
        if e.sum() == 0:
            notes.append(f"no events in {label}: its curve stays at 1 and the median is not reached")
    return curves, at_risk_rows, testable


def _logrank(dur: np.ndarray, ev: np.ndarray, lab: np.ndarray, testable: list, alpha: float,
             notes: list[str]) -> LogRankResult | None:
    """Log-rank test over the ``testable`` groups (None, with a note in ``notes``, when it cannot run)."""
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    if len(testable) < 2:
        notes.append(f"log-rank test not computed: {len(testable)} group(s) with >= 2 subjects; "
                     "at least two are needed")
        return None
    m = np.isin(lab, testable)
    if ev[m].sum() == 0:
        notes.append("log-rank test not computed: no events in any group")
        return None
    if len(testable) == 2:
        a, b = (lab == testable[0]), (lab == testable[1])
        res = logrank_test(dur[a], dur[b], ev[a], ev[b], alpha=alpha)
        name, dof = "logrank_test", 1
    else:
        res = multivariate_logrank_test(dur[m], lab[m], ev[m], alpha=alpha)
        name, dof = "multivariate_logrank_test", len(testable) - 1
    obs, exp = _observed_expected(dur[m], ev[m], lab[m], testable)
    return LogRankResult(test_name=name, statistic=float(res.test_statistic), dof=int(dof),
                         p_value=float(res.p_value), groups=tuple(str(g) for g in testable),
                         observed=tuple(obs.tolist()), expected=tuple(exp.tolist()))


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
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    df, group_col, no_test_reason = _attach_grouping(df, duration_col, event_col, group_col)
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
    curves, at_risk_rows, testable = _fit_curves(dur, ev, lab, order, alpha, at_risk_times,
                                                 bool(group_col), no_test_reason, notes)
    at_risk = pd.DataFrame.from_dict(at_risk_rows, orient="index", columns=at_risk_times)
    at_risk.index.name = group_col or "group"
    at_risk.columns.name = duration_col

    lr: LogRankResult | None = None
    if group_col is not None and no_test_reason is None:
        lr = _logrank(dur, ev, lab, testable, alpha, notes)

    for msg in notes:
        warnings.warn(msg, SurvivalWarning, stacklevel=2)
    return KMResult(curves=curves, at_risk=at_risk, logrank=lr, duration_col=duration_col,
                    event_col=event_col, group_col=group_col, alpha=alpha,
                    n_excluded=n_excluded, warnings=tuple(notes), no_test_reason=no_test_reason)
