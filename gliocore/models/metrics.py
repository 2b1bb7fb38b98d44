"""Survival metrics, written out in numpy and checked against scikit-survival 0.28.

* :func:`harrell_c` — Harrell's concordance (``sksurv.metrics.concordance_index_censored``);
* :func:`uno_c` — Uno's IPCW concordance truncated at ``tau`` (``concordance_index_ipcw``);
* :func:`time_auc` — cumulative/dynamic AUC at given times (``cumulative_dynamic_auc``);
* :func:`brier` / :func:`integrated_brier` — IPCW Brier score (``brier_score``,
  ``integrated_brier_score``), with Kaplan–Meier's as the no-information reference;
* :func:`calibration_at` — predicted vs Kaplan–Meier survival by risk group at a horizon, with a
  bootstrap interval per group.

The censoring distribution G of the IPC weights is the reverse Kaplan–Meier of the *training*
subjects (events leave the risk set before censorings at tied times). An event at T is weighted
by G(T), right-continuous, as in scikit-survival (the default); with ``g_left=True`` by G(T-),
the censoring survival just before T, as in R's ``survival::concordance`` (timewt "n/G2"),
``pec`` and ``riskRegression``. The two differ only where a censoring shares an event's time.
tests/models/test_metrics.py compares every function with scikit-survival on GBSG2, veterans
and WHAS500, and tests/models/test_r_reference.py with the R values of
tests/data/r_reference.json (both conventions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["KaplanMeier", "harrell_c", "uno_c", "time_auc", "brier", "integrated_brier",
           "calibration_at", "TIED_TOL"]

TIED_TOL = 1e-8


@dataclass(frozen=True)
class KaplanMeier:
    """A right-continuous step function S(t) = P(T > t) (or G for the censoring distribution)."""

    times: np.ndarray
    values: np.ndarray

    @classmethod
    def fit(cls, time: np.ndarray, event: np.ndarray, reverse: bool = False) -> "KaplanMeier":
        """Kaplan–Meier of the event (or, with ``reverse``, of censoring) distribution."""
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=bool)
        uniq, inv = np.unique(time, return_inverse=True)
        n_event = np.bincount(inv, weights=event.astype(float), minlength=len(uniq))
        n_total = np.bincount(inv, minlength=len(uniq)).astype(float)
        at_risk = n_total[::-1].cumsum()[::-1]
        if reverse:  # censoring distribution: events leave the risk set first
            d, r = n_total - n_event, at_risk - n_event
        else:
            d, r = n_event, at_risk
        ratio = np.divide(d, r, out=np.zeros_like(d), where=d > 0)
        return cls(uniq, np.cumprod(1.0 - ratio))

    def __call__(self, t: np.ndarray | float, left: bool = False) -> np.ndarray:
        """S(t), or with ``left`` S(t-) (the value just before t)."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=float),
                              side="left" if left else "right") - 1
        vals = np.r_[1.0, self.values]
        return vals[idx + 1]


def _weights_event(train_time, train_event, time, event, g_left: bool = False) -> np.ndarray:
    """1/G(T_i) (or 1/G(T_i-)) for test events (0 for censored), G from the training subjects."""
    G = KaplanMeier.fit(train_time, train_event, reverse=True)(time, left=g_left)
    if (G[event] == 0).any():
        raise ValueError("the censoring survival is zero at a test event time: test times "
                         "beyond the training follow-up; use a shorter horizon")
    w = np.zeros(len(time))
    w[event] = 1.0 / G[event]
    return w


def _concordance(time, event, risk, weights, tol: float = TIED_TOL) -> float:
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    ev = np.flatnonzero(event & (weights > 0))
    if not len(ev):
        return float("nan")
    ti, ri, wi = time[ev, None], risk[ev, None], weights[ev, None]
    comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
    diff = risk[None, :] - ri
    ties = np.abs(diff) <= tol
    score = ((diff < 0) & ~ties) + 0.5 * ties
    den = (wi * comparable).sum()
    if den == 0:
        return float("nan")
    return float((wi * comparable * score).sum() / den)


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: among comparable pairs (the shorter time is an event), the share in which
    the subject who died first had the higher ``risk`` (ties count 1/2); 0.5 = chance."""
    return _concordance(time, event, risk, np.ones(len(np.asarray(time))))


def uno_c(train_time, train_event, time, event, risk, tau: float | None = None,
          g_left: bool = False) -> float:
    """Uno's C: concordance with pairs weighted by 1/G(T_i)² (G: the training censoring
    distribution), so it does not depend on the censoring pattern; events at or after ``tau``
    are left out (Uno et al., Stat Med 2011). ``g_left``: weight by G(T_i-) (R's convention;
    R's ``ymax`` keeps an event at exactly tau, this function does not)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    keep = np.ones(len(time), dtype=bool) if tau is None else time < tau
    w = np.zeros(len(time))
    w[keep] = _weights_event(train_time, train_event, time[keep], event[keep], g_left)
    return _concordance(time, event, risk, w ** 2)


def time_auc(train_time, train_event, time, event, risk, times, g_left: bool = False
             ) -> np.ndarray:
    """Cumulative/dynamic AUC at each of ``times``: cases died by t (weighted 1/G(T_i)),
    controls still event-free after t; the chance that a case has the higher risk (Uno et al.,
    JASA 2007; Hung & Chiang 2010). ``risk`` is (n,) or (n, len(times)). NaN at a time without
    cases or controls, or with a case after the training follow-up (where G is 0). ``g_left``:
    cases weighted by 1/G(T_i-), as R's ``riskRegression::Score`` and ``timeROC``."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    times = np.atleast_1d(np.asarray(times, dtype=float))
    risk = np.asarray(risk, dtype=float)
    risk = np.broadcast_to(risk[:, None], (len(time), len(times))) if risk.ndim == 1 else risk
    G = KaplanMeier.fit(train_time, train_event, reverse=True)(time, left=g_left)
    w = np.divide(1.0, G, out=np.zeros(len(time)), where=G > 0)
    out = np.full(len(times), np.nan)
    for k, t in enumerate(times):
        case = (time <= t) & event
        control = time > t
        if not case.any() or not control.any() or (G[case] == 0).any():
            continue  # no case or control, or a case beyond the training follow-up: undefined
        d = risk[case, k][:, None] - risk[control, k][None, :]
        ties = np.abs(d) <= TIED_TOL
        score = ((d > 0) & ~ties) + 0.5 * ties
        out[k] = float((w[case, None] * score).sum() / (w[case].sum() * control.sum()))
    return out


def brier(train_time, train_event, time, event, surv, times, g_left: bool = False
          ) -> np.ndarray:
    """IPCW Brier score at ``times`` (Graf et al., Stat Med 1999): squared error of the predicted
    survival ``surv`` ((n, len(times)), P(T > t)) against the observed status, censored subjects
    re-weighted by the training censoring distribution. Lower is better. ``g_left``: a subject
    dead by t weighted by 1/G(T_i-), as R's ``pec``."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    times = np.atleast_1d(np.asarray(times, dtype=float))
    surv = np.asarray(surv, dtype=float).reshape(len(time), len(times))
    G = KaplanMeier.fit(train_time, train_event, reverse=True)
    g_t = G(times)
    g_y = G(time, left=g_left)
    g_t = np.where(g_t == 0, np.inf, g_t)
    g_y = np.where(g_y == 0, np.inf, g_y)
    case = (time[:, None] <= times[None, :]) & event[:, None]
    control = time[:, None] > times[None, :]
    return np.mean(surv ** 2 * case / g_y[:, None] + (1 - surv) ** 2 * control / g_t[None, :],
                   axis=0)


def integrated_brier(train_time, train_event, time, event, surv, times, g_left: bool = False,
                     rule: str = "trapezoid") -> float:
    """Brier score integrated over ``times``, divided by the time span: ``rule`` "trapezoid"
    (scikit-survival's ``integrated_brier_score``, the default) or "step" (the curve held
    constant from each time to the next, as R's ``pec::crps``/``ibs``)."""
    times = np.asarray(times, dtype=float)
    if len(times) < 2:
        raise ValueError("the integrated Brier score needs at least two times")
    if rule not in ("trapezoid", "step"):
        raise ValueError(f"rule must be 'trapezoid' or 'step', not {rule!r}")
    bs = brier(train_time, train_event, time, event, surv, times, g_left)
    area = np.trapezoid(bs, times) if rule == "trapezoid" else np.sum(bs[:-1] * np.diff(times))
    return float(area / (times[-1] - times[0]))


def calibration_at(time, event, surv_h: np.ndarray, horizon: float, n_groups: int = 5,
                   n_boot: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Predicted vs observed survival at ``horizon`` in ``n_groups`` groups of predicted survival,
    with a bootstrap interval of each group's observed survival.

    Parameters
    ----------
    n_boot : int
        Bootstrap resamples of each group's subjects (with replacement; 0: no interval). The
        interval is the percentile interval of the group's Kaplan–Meier S(horizon) over them.
    level : float
        Coverage of the interval.

    Returns
    -------
    DataFrame
        ``group``, ``n``, ``predicted`` (mean predicted S(horizon)), ``observed`` (Kaplan–Meier
        S(horizon) of the group's subjects), ``observed_lo``, ``observed_hi`` (NaN without
        resamples).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    surv_h = np.asarray(surv_h, dtype=float)
    n_groups = max(1, min(n_groups, len(time) // 10 or 1))
    ranks = pd.Series(surv_h).rank(method="first").to_numpy()
    group = np.ceil(ranks * n_groups / len(surv_h)).astype(int)
    rng = np.random.default_rng(seed)
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = []
    for g in range(1, n_groups + 1):
        idx = np.flatnonzero(group == g)
        observed = float(KaplanMeier.fit(time[idx], event[idx])(horizon))
        lo = hi = float("nan")
        if n_boot > 0:
            boot = [KaplanMeier.fit(time[b], event[b])(horizon)
                    for b in rng.choice(idx, (n_boot, len(idx)), replace=True)]
            lo, hi = (float(v) for v in np.quantile(boot, q))
        rows.append({"group": g, "n": len(idx), "predicted": float(surv_h[idx].mean()),
                     "observed": observed, "observed_lo": lo, "observed_hi": hi})
    return pd.DataFrame(rows)
