"""Cox proportional-hazards models: Efron ties (lifelines), Breslow ties (our Newton–Raphson), PH test.

The Breslow-ties model, which lifelines does not offer, is a small Newton–Raphson on the Breslow
partial likelihood in this module. Conventions are in :mod:`gliocore.analysis.survival`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from gliocore.analysis.survival import SurvivalWarning, _clean_survival, _group_order
from gliocore.errors import CohortError

__all__ = ["CoxResult", "cox_ph"]


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


def _cox_data(df: pd.DataFrame, duration_col: str, event_col: str, covariates: list[str],
              standardize: bool, reference_levels: dict[str, str] | None, notes: list[str]):
    """Usable rows, design matrix, reference levels, standardised terms and event count for :func:`cox_ph`.

    Caveats (dropped rows, few events per term) are appended to ``notes``.
    """
    sub, n_dropped = _clean_survival(df, duration_col, event_col, covariates)
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
    return sub, n_dropped, X, refs, std_terms, n_events


def _fit_lifelines(data: pd.DataFrame, duration_col: str, event_col: str, alpha: float,
                   penalizer: float):
    """lifelines' Efron-ties CoxPHFitter on ``data``; a non-convergence becomes a CohortError."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    cph = CoxPHFitter(alpha=alpha, penalizer=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' own convergence hints; we report ours
            cph.fit(data, duration_col=duration_col, event_col=event_col)
    except ConvergenceError as exc:
        raise CohortError("the Cox model did not converge (often: a covariate separates deaths from "
                          f"survivors, or too few events); try penalizer=0.1 or fewer covariates. ({exc})"
                          ) from exc
    return cph


def _coefficients(cph, ties: str, T: np.ndarray, E: np.ndarray, X: pd.DataFrame, penalizer: float,
                  notes: list[str]) -> tuple[np.ndarray, np.ndarray, float, dict, float]:
    """Coefficients, their SEs, log-likelihood, LR test and concordance for the chosen ties."""
    from lifelines.utils import concordance_index

    if ties == "efron":
        beta = cph.params_.to_numpy(float)
        se = cph.standard_errors_.to_numpy(float)
        ll = float(cph.log_likelihood_)
        lrt = cph.log_likelihood_ratio_test()
        lr = {"stat": float(lrt.test_statistic), "df": int(lrt.degrees_freedom), "p": float(lrt.p_value)}
        conc = float(cph.concordance_index_)
    else:
        p = X.shape[1]
        beta, cov, ll, ll0 = _breslow_fit(T, E, X.to_numpy(float), penalizer=penalizer)
        se = np.sqrt(np.diag(cov))
        stat = 2 * (ll - ll0)
        lr = {"stat": float(stat), "df": p, "p": float(stats.chi2.sf(stat, p))}
        conc = float(concordance_index(T, -(X.to_numpy(float) @ beta), E))
        notes.append("PH test computed from the Efron fit of the same model (lifelines)")
    return beta, se, ll, lr, conc


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
    from lifelines.statistics import proportional_hazard_test

    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    covariates = list(covariates)
    if not covariates:
        raise ValueError("no covariates given; pass at least one column name")
    if duration_col in covariates or event_col in covariates:
        raise ValueError("the duration and event columns cannot be covariates")
    notes: list[str] = []
    sub, n_dropped, X, refs, std_terms, n_events = _cox_data(
        df, duration_col, event_col, covariates, standardize, reference_levels, notes)
    p = X.shape[1]
    T = sub[duration_col].to_numpy(float)
    E = sub[event_col].to_numpy(int)
    data = pd.concat([X, sub[[duration_col, event_col]]], axis=1)
    cph = _fit_lifelines(data, duration_col, event_col, alpha, penalizer)
    beta, se, ll, lr, conc = _coefficients(cph, ties, T, E, X, penalizer, notes)

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
