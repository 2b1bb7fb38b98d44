"""ComBat harmonisation (Johnson, Li & Rabinovic, Biostatistics 2007; Fortin et al., NeuroImage
2018), as an estimator fitted on one set of subjects and applied to others.

The algorithm is neuroCombat's (``Jfortin1/neuroCombat`` 0.2.12, parametric empirical Bayes,
no reference batch): on the subjects it is fitted on, :meth:`ComBat.fit` followed by
:meth:`ComBat.transform` gives neuroCombat's harmonised values (tests/models/test_combat.py
checks to 1e-6). What neuroCombat lacks, and a cross-validated model needs, is applying fitted
parameters to held-out subjects: :meth:`ComBat.transform` keeps the held-out subjects' own
covariate effects (neuroCombat's ``neuroCombatFromTraining`` averages them away), and a site
absent from the fit gets its location/scale estimated from its own feature values alone, by the
same empirical-Bayes step (no outcome is used, and no training parameter changes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["ComBat", "site_effect_test"]


def _aprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), np.var(d, ddof=1)
    return (2 * s2 + m ** 2) / s2


def _bprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), np.var(d, ddof=1)
    return (m * s2 + m ** 3) / s2


def _eb_solve(sdat: np.ndarray, conv: float = 1e-4, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Parametric empirical-Bayes location (gamma*) and scale (delta*) of one site.

    ``sdat`` is (features, subjects of the site), standardised. Same iteration as neuroCombat's
    ``it_sol`` (priors across features, relative change below ``conv``).
    """
    n = sdat.shape[1]
    g_hat = sdat.mean(axis=1)
    d_hat = np.var(sdat, axis=1, ddof=1) if n > 1 else np.ones(sdat.shape[0])
    d_hat[d_hat == 0] = 1.0
    g_bar, t2 = g_hat.mean(), np.var(g_hat, ddof=1)
    a, b = _aprior(d_hat), _bprior(d_hat)
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for _ in range(max_iter):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((sdat - g_new[:, None]) ** 2).sum(axis=1)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        change = max((np.abs(g_new - g_old) / g_old).max(), (np.abs(d_new - d_old) / d_old).max())
        g_old, d_old = g_new, d_new
        if change <= conv:
            break
    return g_old, d_old


@dataclass
class ComBat:
    """Location/scale harmonisation of features across sites, keeping covariate effects.

    Parameters
    ----------
    categorical : sequence of str
        Covariate columns whose biology is kept (e.g. sex, IDH status), one-hot coded with the
        first level dropped, as neuroCombat does.
    continuous : sequence of str
        Numeric covariates kept (e.g. age).

    Attributes
    ----------
    sites_ : list of str
        Sites seen by :meth:`fit`, in sorted order.
    grand_mean_, var_pooled_ : (p,) ndarray
        Site-weighted mean and pooled residual variance of each feature.
    beta_cov_ : (q, p) ndarray
        Covariate effects on each feature.
    gamma_star_, delta_star_ : (n_sites, p) ndarray
        Empirical-Bayes location and scale of each site.
    levels_ : dict
        Levels of each categorical covariate seen in the fit.
    left_sites_ : list of str
        With ``leave_small_sites``: sites that had a single subject in the fit, left as they are.

    leave_small_sites : bool
        A site with a single subject has no estimable scale: by default :meth:`fit` refuses it
        (and :meth:`transform` refuses an unseen site with one subject); with True such a site
        is left unharmonised instead, in the fit and wherever the model is applied (a fold of a
        small cohort can hold one subject of a small site).
    """

    categorical: Sequence[str] = ()
    continuous: Sequence[str] = ()
    leave_small_sites: bool = False
    sites_: list[str] = field(default_factory=list, init=False)
    left_sites_: list[str] = field(default_factory=list, init=False)

    def _covariates(self, covars: pd.DataFrame, fit: bool) -> np.ndarray:
        cols: list[np.ndarray] = []
        if fit:
            self.levels_ = {c: sorted(covars[c].astype(str).unique()) for c in self.categorical}
        for c in self.categorical:
            values = covars[c].astype(str).to_numpy()
            for level in self.levels_[c][1:]:
                cols.append((values == level).astype(float))
        for c in self.continuous:
            cols.append(pd.to_numeric(covars[c], errors="coerce").to_numpy(dtype=float))
        n = len(covars)
        out = np.column_stack(cols) if cols else np.zeros((n, 0))
        if np.isnan(out).any():
            raise ValueError("ComBat covariates have missing values "
                             f"({', '.join(list(self.categorical) + list(self.continuous))}); "
                             "impute them or leave the column out")
        return out

    def fit(self, X: np.ndarray, site: Sequence, covars: pd.DataFrame | None = None) -> "ComBat":
        """Estimate site and covariate effects on ``X`` (subjects × features, no missing value).

        With a single site, that site is the reference (its parameters are the identity) and
        :meth:`transform` maps unseen sites onto it.

        Raises
        ------
        ValueError
            A site with one subject (unless ``leave_small_sites``), or missing values.
        """
        X = np.asarray(X, dtype=float)
        site = np.asarray(site).astype(str)
        if np.isnan(X).any():
            raise ValueError("ComBat needs complete features: impute before harmonising")
        if self.leave_small_sites:
            names, counts = np.unique(site, return_counts=True)
            self.left_sites_ = [str(s) for s in names[counts < 2]]
            keep = ~np.isin(site, self.left_sites_)
            if not keep.any():
                raise ValueError("ComBat: every site has a single subject; nothing to harmonise")
            X, site = X[keep], site[keep]
            covars = None if covars is None else covars[keep].reset_index(drop=True)
        self.sites_, idx = np.unique(site, return_inverse=True)
        self.sites_ = list(self.sites_)
        counts = np.bincount(idx)
        if counts.min() < 2:
            raise ValueError(f"ComBat needs two subjects or more per site; got "
                             f"{dict(zip(self.sites_, counts.tolist()))} in the subjects it is "
                             "fitted on: use fewer folds, merge small sites, or no site column")
        n = len(site)
        batch = np.eye(len(self.sites_))[idx]
        cov = self._covariates(covars if covars is not None else pd.DataFrame(index=range(n)), True)
        design = np.hstack([batch, cov])
        B = np.linalg.solve(design.T @ design, design.T @ X)
        k = batch.shape[1]
        self.grand_mean_ = (counts / n) @ B[:k]
        self.beta_cov_ = B[k:]
        self.var_pooled_ = ((X - design @ B) ** 2).mean(axis=0)
        if (self.var_pooled_ == 0).any():
            raise ValueError("ComBat: a feature is constant within every site; drop it first")
        if k == 1:  # one training site is the reference: unseen sites are mapped onto it
            self.gamma_star_, self.delta_star_ = np.zeros((1, X.shape[1])), np.ones((1, X.shape[1]))
            return self
        s = self._standardise(X, cov)
        stars = [_eb_solve(s[idx == j].T) for j in range(k)]
        self.gamma_star_ = np.array([g for g, _ in stars])
        self.delta_star_ = np.array([d for _, d in stars])
        return self

    def _standardise(self, X: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return (X - self.grand_mean_ - cov @ self.beta_cov_) / np.sqrt(self.var_pooled_)

    def transform(self, X: np.ndarray, site: Sequence, covars: pd.DataFrame | None = None
                  ) -> np.ndarray:
        """Harmonise ``X`` with the fitted parameters; an unseen site is estimated from its own
        rows (at least two needed)."""
        if not self.sites_:
            raise RuntimeError("ComBat is not fitted: call fit first")
        X = np.asarray(X, dtype=float)
        site = np.asarray(site).astype(str)
        cov = self._covariates(covars if covars is not None else pd.DataFrame(index=range(len(X))),
                               False)
        s = self._standardise(X, cov)
        out = np.empty_like(s)
        for name in np.unique(site):
            rows = site == name
            if name in self.left_sites_ or (self.leave_small_sites and rows.sum() < 2
                                            and name not in self.sites_):
                out[rows] = s[rows]  # left as it is: the identity below
                continue
            if name in self.sites_:
                j = self.sites_.index(name)
                g, d = self.gamma_star_[j], self.delta_star_[j]
            elif rows.sum() >= 2:
                g, d = _eb_solve(s[rows].T)
            else:
                raise ValueError(f"site {name!r} was not in the harmonisation's training data and "
                                 "has a single subject: its scanner effect cannot be estimated")
            out[rows] = (s[rows] - g) / np.sqrt(d)
        return out * np.sqrt(self.var_pooled_) + self.grand_mean_ + cov @ self.beta_cov_

    def to_dict(self) -> dict:
        """Fitted parameters as JSON-ready lists (for the model card)."""
        return {"categorical": list(self.categorical), "continuous": list(self.continuous),
                "leave_small_sites": self.leave_small_sites, "left_sites": self.left_sites_,
                "levels": self.levels_, "sites": self.sites_,
                "grand_mean": self.grand_mean_.tolist(), "var_pooled": self.var_pooled_.tolist(),
                "beta_cov": self.beta_cov_.tolist(), "gamma_star": self.gamma_star_.tolist(),
                "delta_star": self.delta_star_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ComBat":
        """Inverse of :meth:`to_dict`."""
        cb = cls(tuple(d["categorical"]), tuple(d["continuous"]), d.get("leave_small_sites", False))
        cb.levels_, cb.sites_ = d["levels"], list(d["sites"])
        cb.left_sites_ = list(d.get("left_sites", []))
        p = len(d["grand_mean"])
        cb.grand_mean_, cb.var_pooled_ = np.array(d["grand_mean"]), np.array(d["var_pooled"])
        cb.beta_cov_ = np.array(d["beta_cov"], dtype=float).reshape(-1, p)
        cb.gamma_star_, cb.delta_star_ = np.array(d["gamma_star"]), np.array(d["delta_star"])
        return cb


def site_effect_test(X: np.ndarray, site: Sequence) -> pd.DataFrame:
    """Per-feature Kruskal–Wallis test of a site effect (before/after harmonisation views).

    Returns
    -------
    DataFrame
        One row per feature column of ``X``: ``H`` statistic and ``p``.
    """
    from scipy.stats import kruskal
    X = np.asarray(X, dtype=float)
    site = np.asarray(site).astype(str)
    groups = [site == s for s in np.unique(site)]
    rows = []
    for j in range(X.shape[1]):
        parts = [X[g, j][~np.isnan(X[g, j])] for g in groups]
        parts = [p for p in parts if len(p)]
        if len(parts) < 2 or np.ptp(np.concatenate(parts)) == 0:
            rows.append((np.nan, np.nan))
            continue
        h, p = kruskal(*parts)
        rows.append((h, p))
    return pd.DataFrame(rows, columns=["H", "p"])
