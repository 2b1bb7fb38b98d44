"""The fold pipeline: everything that learns from data, fitted on training subjects only.

:class:`Preprocessor` (feature filter, median imputation, ComBat, scaling, optional univariate
top-k) and the models: an unpenalised-in-practice Cox for the clinical arm, an elastic-net Cox
(scikit-survival's ``CoxnetSurvivalAnalysis``: glmnet's coordinate descent over a whole penalty
path in one call, so an inner cross-validation of the penalty costs one path fit per inner fold)
and a random survival forest (``RandomSurvivalForest``). Linear models keep coefficients and a
Breslow baseline hazard, so a model card can apply them anywhere without pickles.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from gliocore.models.combat import ComBat
from gliocore.models.data import ClinicalEncoder, SurvivalData
from gliocore.models.metrics import harrell_c

__all__ = ["ModelSpec", "Preprocessor", "LinearSurvival", "ForestSurvival", "FittedArm",
           "fit_arm", "breslow", "cox_scores"]

Arm = Literal["clinical", "signature", "combined"]


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of a signature model (the inner CV picks the penalty / leaf size).

    Parameters
    ----------
    kind : "coxnet" or "rsf"
    l1_ratio : float
        Elastic-net mixing (1 = lasso, near 0 = ridge).
    n_alphas : int
        Penalties on the path; the inner CV picks the one with the best mean Harrell's C.
    k_best : int or None
        Keep the k features with the largest univariate Cox score in the training part.
    harmonise : bool
        ComBat over the site column (when there is one), fitted on the training part.
    n_trees, leaf_grid : forest size and the min-samples-leaf values the inner CV tries.
    inner_splits : int
    """

    kind: Literal["coxnet", "rsf"] = "coxnet"
    l1_ratio: float = 0.5
    n_alphas: int = 30
    k_best: int | None = None
    harmonise: bool = True
    n_trees: int = 100
    leaf_grid: tuple[int, ...] = (5, 15)
    inner_splits: int = 5


@dataclass
class Preprocessor:
    """Feature filter -> median imputation -> ComBat -> standardisation -> top-k (optional)."""

    harmonise: bool = True
    k_best: int | None = None
    max_missing: float = 0.5
    combat_: ComBat | None = field(default=None, init=False)

    def fit_transform(self, d: SurvivalData) -> np.ndarray:
        X = d.X.to_numpy(dtype=float)
        present = np.mean(~np.isnan(X), axis=0) >= 1 - self.max_missing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(X, axis=0)
        filled = np.where(np.isnan(X), med, X)
        keep = present & (np.ptp(filled, axis=0) > 0)
        if not keep.any():
            raise ValueError("no feature varies among the training subjects")
        self.columns_ = [c for c, k in zip(d.X.columns, keep) if k]
        self.medians_ = med[keep]
        Z = filled[:, keep]
        if self.harmonise and d.site is not None:
            cat = [c for c in d.covars.columns if not pd.api.types.is_numeric_dtype(d.covars[c])]
            num = [c for c in d.covars.columns if c not in cat]
            cat = [c for c in cat if d.covars[c].nunique() > 1]
            if pd.Series(d.site).value_counts().max() >= 2:  # else no site effect is estimable
                self.combat_ = ComBat(tuple(cat), tuple(num), leave_small_sites=True).fit(
                    Z, d.site, d.covars)
                Z = self.combat_.transform(Z, d.site, d.covars)
        self.mean_ = Z.mean(axis=0)
        sd = Z.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = (Z - self.mean_) / self.scale_
        self.selected_ = np.arange(Z.shape[1])
        if self.k_best and self.k_best < Z.shape[1]:
            score = np.abs(cox_scores(Z, d.time, d.event))
            self.selected_ = np.sort(np.argsort(-score)[: self.k_best])
        return Z[:, self.selected_]

    def transform(self, d: SurvivalData) -> np.ndarray:
        X = d.X[self.columns_].to_numpy(dtype=float)
        Z = np.where(np.isnan(X), self.medians_, X)
        if self.combat_ is not None:
            Z = self.combat_.transform(Z, d.site, d.covars)
        return ((Z - self.mean_) / self.scale_)[:, self.selected_]

    @property
    def feature_names_(self) -> list[str]:
        return [self.columns_[i] for i in self.selected_]


def cox_scores(Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Univariate Cox score statistics U/sqrt(I) at beta = 0 for every column (Breslow ties)."""
    order = np.argsort(-time, kind="stable")
    Zs, ts, es = Z[order], time[order], event[order]
    n = np.arange(1, len(ts) + 1)[:, None]
    s1, s2 = np.cumsum(Zs, axis=0), np.cumsum(Zs ** 2, axis=0)
    # the risk set of a subject is everyone with time >= its time: extend ties to the last row
    last = np.searchsorted(-ts, -ts, side="right") - 1
    m1, m2 = s1[last] / n[last], s2[last] / n[last]
    U = ((Zs - m1) * es[:, None]).sum(axis=0)
    info = ((m2 - m1 ** 2) * es[:, None]).sum(axis=0)
    return U / np.sqrt(np.where(info > 0, info, np.inf))


def breslow(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow cumulative baseline hazard at the unique event times."""
    t_ev = np.unique(time[event])
    r = np.exp(lp - lp.max())
    order = np.argsort(time)
    ts, rs = time[order], r[order]
    at_risk = rs[::-1].cumsum()[::-1]
    idx = np.searchsorted(ts, t_ev, side="left")
    d = np.array([np.sum((time == t) & event) for t in t_ev], dtype=float)
    h = d / at_risk[idx] * np.exp(-lp.max())
    return t_ev, np.cumsum(h)


@dataclass
class LinearSurvival:
    """A Cox model: risk = X @ coef, S(t|x) = exp(-H0(t) exp(risk))."""

    coef: np.ndarray
    base_times: np.ndarray
    base_cumhaz: np.ndarray

    def risk(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef

    def survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.base_times, np.asarray(times, float), side="right") - 1
        H = np.r_[0.0, self.base_cumhaz][idx + 1]
        return np.exp(-np.exp(self.risk(X))[:, None] * H[None, :])

    @classmethod
    def fitted(cls, coef, X, time, event) -> "LinearSurvival":
        t, H = breslow(time, event, X @ coef)
        return cls(np.asarray(coef, float), t, H)


@dataclass
class ForestSurvival:
    """A fitted scikit-survival random survival forest. It predicts on one thread: summing the
    trees on several threads adds them in a varying order, so the same subject would get risks
    a few 1e-14 apart from one call to the next (and a saved forest not the same risks)."""

    forest: object

    def __post_init__(self) -> None:
        self.forest.set_params(n_jobs=1)

    def risk(self, X: np.ndarray) -> np.ndarray:
        return self.forest.predict(X)

    def survival(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        S = self.forest.predict_survival_function(X, return_array=True)
        grid = self.forest.unique_times_
        idx = np.searchsorted(grid, np.asarray(times, float), side="right") - 1
        return np.where(idx[None, :] >= 0, S[:, np.clip(idx, 0, None)], 1.0)


def _y(time, event):
    from sksurv.util import Surv
    return Surv.from_arrays(event.astype(bool), time.astype(float))


def _inner_folds(time, event, k: int, seed: int):
    from sklearn.model_selection import StratifiedKFold
    k = max(2, min(k, int(event.sum()), int((~event).sum()) or k))
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(time, event))


def _coxnet(X, time, event, spec: ModelSpec, penalty, alphas=None):
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxnetSurvivalAnalysis(l1_ratio=spec.l1_ratio, n_alphas=spec.n_alphas,
                                      alphas=alphas, alpha_min_ratio=0.02, penalty_factor=penalty,
                                      max_iter=20000, tol=1e-5).fit(X, _y(time, event))


def _penalty(design: "_Design") -> np.ndarray:
    """Clinical columns unpenalised, features penalised."""
    return np.r_[np.zeros(design.n_clin), np.ones(design.X.shape[1] - design.n_clin)]


def _inner_designs(d: SurvivalData, arm: str, spec: ModelSpec, seed: int):
    """(training design, validation matrix, validation subjects) per inner fold, everything
    that learns refitted on the inner training part; a fold that cannot be fitted (e.g. a site
    with one subject) is skipped."""
    for tr, va in _inner_folds(d.time, d.event, spec.inner_splits, seed):
        try:
            inner = _design(d.subset(tr), arm, spec)
        except ValueError:
            continue
        val = d.subset(va)
        yield inner, inner.transform(val), val


def _fit_coxnet(d: SurvivalData, full: "_Design", arm: str, spec: ModelSpec, seed: int):
    path = _coxnet(full.X, d.time, d.event, spec, _penalty(full))
    alphas = path.alphas_
    scores = np.zeros((0, len(alphas)))
    for inner, Xva, val in _inner_designs(d, arm, spec, seed):
        try:
            fit = _coxnet(inner.X, inner.time, inner.event, spec, _penalty(inner), alphas)
        except (ArithmeticError, ValueError):
            continue
        lp = Xva @ fit.coef_
        c = [harrell_c(val.time, val.event, lp[:, j]) if j < lp.shape[1] else np.nan
             for j in range(len(alphas))]
        scores = np.vstack([scores, c])
    with warnings.catch_warnings():  # an alpha no inner fold could score stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(scores, axis=0) if len(scores) else np.zeros(len(alphas))
    best = int(np.nanargmax(np.where(np.isnan(mean), -np.inf, mean)))
    return path.coef_[:, best], float(alphas[best]), mean


def _fit_forest(d: SurvivalData, full: "_Design", arm: str, spec: ModelSpec, seed: int):
    from sksurv.ensemble import RandomSurvivalForest

    def forest(leaf):
        return RandomSurvivalForest(n_estimators=spec.n_trees, min_samples_leaf=leaf,
                                    max_features="sqrt", n_jobs=2, random_state=seed,
                                    low_memory=False)
    best_leaf, best = spec.leaf_grid[0], -np.inf
    if len(spec.leaf_grid) > 1:
        folds = list(_inner_designs(d, arm, spec, seed))
        for leaf in spec.leaf_grid:
            cs = [harrell_c(val.time, val.event, ForestSurvival(
                      forest(leaf).fit(inner.X, _y(inner.time, inner.event))).risk(Xva))
                  for inner, Xva, val in folds]
            if cs and np.nanmean(cs) > best:
                best_leaf, best = leaf, float(np.nanmean(cs))
    return forest(best_leaf).fit(full.X, _y(d.time, d.event)), best_leaf


@dataclass
class _Design:
    """The design matrix of one arm on the subjects it was fitted on, and how to make it."""

    enc: ClinicalEncoder | None
    pre: Preprocessor | None
    names: list[str]
    X: np.ndarray
    time: np.ndarray
    event: np.ndarray

    @property
    def n_clin(self) -> int:
        return len(self.enc.names_) if self.enc is not None else 0

    def transform(self, d: SurvivalData) -> np.ndarray:
        parts = [] if self.enc is None else [self.enc.transform(d.clinical)]
        return np.hstack(parts + ([] if self.pre is None else [self.pre.transform(d)]))


def _design(d: SurvivalData, arm: str, spec: ModelSpec) -> _Design:
    """Fit the clinical encoding and the feature preprocessing of ``arm`` on ``d``."""
    enc = ClinicalEncoder().fit(d.clinical) if arm != "signature" and d.clinical.shape[1] else None
    pre = Preprocessor(spec.harmonise, spec.k_best) if arm != "clinical" else None
    parts, names = [], []
    if enc is not None:
        parts.append(enc.transform(d.clinical))
        names += enc.names_
    if pre is not None:
        parts.append(pre.fit_transform(d))
        names += pre.feature_names_
    if not parts:
        raise ValueError("the clinical model needs at least one clinical column")
    return _Design(enc, pre, names, np.hstack(parts), d.time, d.event)


@dataclass
class FittedArm:
    """One arm fitted on a training part: its preprocessing, model and what the inner CV chose."""

    arm: str
    spec: ModelSpec
    clinical: ClinicalEncoder | None
    pre: Preprocessor | None
    model: LinearSurvival | ForestSurvival
    names: list[str]
    penalty: float | None = None
    train_risk_median: float = 0.0

    def design(self, d: SurvivalData) -> np.ndarray:
        parts = []
        if self.clinical is not None:
            parts.append(self.clinical.transform(d.clinical))
        if self.pre is not None:
            parts.append(self.pre.transform(d))
        return np.hstack(parts)

    def risk(self, d: SurvivalData) -> np.ndarray:
        return self.model.risk(self.design(d))

    def survival(self, d: SurvivalData, times) -> np.ndarray:
        return self.model.survival(self.design(d), times)

    def weights(self) -> pd.Series:
        """Coefficients (Cox) or nothing (forest: see permutation importance elsewhere)."""
        if isinstance(self.model, LinearSurvival):
            return pd.Series(self.model.coef, index=self.names)
        return pd.Series(dtype=float)


def fit_arm(d: SurvivalData, arm: Arm, spec: ModelSpec, seed: int = 0) -> FittedArm:
    """Fit one arm on the training subjects ``d``: ``clinical`` (Cox on the clinical columns,
    ridge 1e-4 for stability), ``signature`` (features only) or ``combined`` (clinical columns
    unpenalised + features penalised / both in the forest). The inner CV that picks the penalty
    (or the forest's leaf size) refits the encoding and preprocessing in every inner fold."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    full = _design(d, arm, spec)
    X = full.X
    penalty_value = None
    if arm == "clinical":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHSurvivalAnalysis(alpha=1e-4, ties="breslow").fit(X, _y(d.time, d.event))
        model = LinearSurvival.fitted(cph.coef_, X, d.time, d.event)
    elif spec.kind == "coxnet":
        coef, penalty_value, _ = _fit_coxnet(d, full, arm, spec, seed)
        model = LinearSurvival.fitted(coef, X, d.time, d.event)
    else:
        forest, leaf = _fit_forest(d, full, arm, spec, seed)
        model, penalty_value = ForestSurvival(forest), float(leaf)
    fitted = FittedArm(arm, spec, full.enc, full.pre, model, full.names, penalty_value)
    fitted.train_risk_median = float(np.median(model.risk(X)))
    return fitted
