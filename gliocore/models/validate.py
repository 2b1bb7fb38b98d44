"""Nested cross-validation, external validation and the permutation test of a signature's gain.

Outer loop: repeated k-fold stratified by event. In each outer training part everything that
learns is fitted (clinical encoding, feature filter, imputation, ComBat, scaling, top-k, the
penalty by an inner k-fold), then the outer test part is scored: Harrell's and Uno's C,
time-dependent AUC at the horizons, the integrated Brier score (and Kaplan–Meier's on the same
subjects), and each test subject's risk group cut at the *training* part's median risk.
Intervals are the spread over the outer folds (2.5th–97.5th percentile).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from gliocore.models.data import SurvivalData
from gliocore.models.estimators import FittedArm, ModelSpec, fit_arm
from gliocore.models.metrics import (KaplanMeier, calibration_at, harrell_c, integrated_brier,
                                     time_auc, uno_c)

__all__ = ["CVConfig", "CVResult", "cross_validate", "summarise", "score_split",
           "permutation_gain", "external_validation", "ARMS", "StopRequested"]

ARMS = ("clinical", "signature", "combined")
Progress = Callable[[int, int, str], None]


class StopRequested(Exception):
    """Raised between folds when the caller's ``should_stop`` returns True."""


@dataclass(frozen=True)
class CVConfig:
    """Outer CV scheme and what is reported.

    Parameters
    ----------
    outer_splits, repeats : int
        Repeated k-fold stratified by event.
    horizons : sequence of float
        Months for the time-dependent AUC and calibration (the last one also truncates Uno's C).
    seed : int
    """

    outer_splits: int = 5
    repeats: int = 1
    horizons: tuple[float, ...] = (12.0, 24.0)
    seed: int = 0

    def describe(self, spec: ModelSpec) -> str:
        inner = (f"inner {spec.inner_splits}-fold CV of the penalty" if spec.kind == "coxnet"
                 else f"inner {spec.inner_splits}-fold CV of min samples per leaf {spec.leaf_grid}")
        return (f"{self.repeats} × {self.outer_splits}-fold outer CV stratified by event, "
                f"{inner}, seed {self.seed}")


@dataclass
class CVResult:
    """Per-fold metrics and out-of-fold predictions of every arm."""

    folds: pd.DataFrame
    predictions: pd.DataFrame
    coefficients: pd.DataFrame
    scheme: str
    arms: tuple[str, ...]
    horizons: tuple[float, ...]
    notes: list[str] = field(default_factory=list)

    def calibration(self, arm: str, horizon: float, repeat: int = 0, n_boot: int = 200
                    ) -> pd.DataFrame:
        """Out-of-fold calibration of one repeat at ``horizon``, with 95 % bootstrap intervals
        of each group's observed survival (see :func:`~gliocore.models.metrics.calibration_at`)."""
        p = self.predictions[(self.predictions["arm"] == arm) & (self.predictions["repeat"] == repeat)]
        return calibration_at(p["time"], p["event"], p[f"S_{horizon:g}"], horizon, n_boot=n_boot)

    def risk_groups(self, arm: str, repeat: int = 0) -> pd.DataFrame:
        """Out-of-fold subjects of one repeat with ``group`` high/low (training-median cut)."""
        p = self.predictions[(self.predictions["arm"] == arm) & (self.predictions["repeat"] == repeat)]
        return p[["id", "time", "event", "risk", "group"]].reset_index(drop=True)

    def gain(self, metric: str = "harrell") -> float:
        """Mean over folds of combined − clinical (NaN without both arms)."""
        f = self.folds.pivot_table(index=["repeat", "fold"], columns="arm", values=metric)
        if not {"combined", "clinical"} <= set(f.columns):
            return float("nan")
        return float((f["combined"] - f["clinical"]).mean())


def _ibs_grid(time_train, event_train, time_test) -> np.ndarray:
    ev = np.sort(time_train[event_train])
    lo, hi = np.percentile(ev, 10), min(np.percentile(ev, 80), time_test.max(), time_train.max())
    return np.linspace(lo, hi, 20) if hi > lo else np.array([lo, lo + 1e-9])


def score_split(fitted: FittedArm, train: SurvivalData, test: SurvivalData,
                horizons: Sequence[float]) -> tuple[dict, pd.DataFrame]:
    """Metrics of a fitted arm on held-out subjects, and their predictions."""
    risk = fitted.risk(test)
    hs = np.asarray(horizons, dtype=float)
    grid = _ibs_grid(train.time, train.event, test.time)
    surv = fitted.survival(test, np.r_[hs, grid])
    tau = min(float(hs.max()), float(train.time.max()))
    row = {"harrell": harrell_c(test.time, test.event, risk),
           "uno": uno_c(train.time, train.event, test.time, test.event, risk, tau)}
    aucs = time_auc(train.time, train.event, test.time, test.event, risk, hs)
    row.update({f"auc_{h:g}": a for h, a in zip(hs, aucs)})
    km = KaplanMeier.fit(train.time, train.event)(grid)
    row["ibs"] = integrated_brier(train.time, train.event, test.time, test.event,
                                  surv[:, len(hs):], grid)
    row["ibs_km"] = integrated_brier(train.time, train.event, test.time, test.event,
                                     np.tile(km, (len(test), 1)), grid)
    pred = pd.DataFrame({"id": test.ids, "time": test.time, "event": test.event, "risk": risk,
                         "group": np.where(risk > fitted.train_risk_median, "high", "low")})
    for k, h in enumerate(hs):
        pred[f"S_{h:g}"] = surv[:, k]
    return row, pred


def _splits(d: SurvivalData, cfg: CVConfig):
    from sklearn.model_selection import RepeatedStratifiedKFold
    k = max(2, min(cfg.outer_splits, int(d.event.sum()), int((~d.event).sum()) or cfg.outer_splits))
    rskf = RepeatedStratifiedKFold(n_splits=k, n_repeats=cfg.repeats, random_state=cfg.seed)
    return k, list(rskf.split(np.zeros(len(d)), d.event))


def cross_validate(d: SurvivalData, spec: ModelSpec, cfg: CVConfig = CVConfig(),
                   arms: Sequence[str] = ARMS, progress: Progress | None = None,
                   should_stop: Callable[[], bool] | None = None) -> CVResult:
    """Nested CV of each arm on the same outer folds.

    Raises
    ------
    StopRequested
        When ``should_stop()`` turns True (checked before every fit).
    """
    k, splits = _splits(d, cfg)
    folds, preds, coefs = [], [], []
    total, done = len(splits) * len(arms), 0
    for s, (tr, te) in enumerate(splits):
        train, test = d.subset(tr), d.subset(te)
        for arm in arms:
            if should_stop and should_stop():
                raise StopRequested(f"stopped after {done} of {total} fits")
            if progress:
                progress(done, total, f"{arm}: repeat {s // k + 1}, fold {s % k + 1}")
            fitted = fit_arm(train, arm, spec, seed=cfg.seed + s)
            row, pred = score_split(fitted, train, test, cfg.horizons)
            folds.append({"arm": arm, "repeat": s // k, "fold": s % k, **row,
                          "penalty": fitted.penalty, "n_test": len(te),
                          "n_nonzero": int((fitted.weights() != 0).sum())})
            preds.append(pred.assign(arm=arm, repeat=s // k, fold=s % k))
            w = fitted.weights()
            if len(w):
                coefs.append(pd.DataFrame({"arm": arm, "split": s, "feature": w.index,
                                           "coef": w.to_numpy()}))
            done += 1
    if progress:
        progress(total, total, "done")
    notes = [] if k == cfg.outer_splits else [
        f"outer folds reduced to {k}: too few events or censored subjects for {cfg.outer_splits}"]
    return CVResult(pd.DataFrame(folds), pd.concat(preds, ignore_index=True),
                    pd.concat(coefs, ignore_index=True) if coefs else pd.DataFrame(
                        columns=["arm", "split", "feature", "coef"]),
                    cfg.describe(spec).replace(f"{cfg.outer_splits}-fold outer", f"{k}-fold outer"),
                    tuple(arms), tuple(cfg.horizons), notes)


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD and 2.5th–97.5th percentile over folds of each metric, per arm."""
    metrics = [c for c in folds.columns if c in ("harrell", "uno", "ibs", "ibs_km")
               or c.startswith("auc_")]
    rows = []
    for arm, g in folds.groupby("arm", sort=False):
        for m in metrics:
            v = g[m].dropna()
            rows.append({"arm": arm, "metric": m, "mean": v.mean(), "sd": v.std(ddof=1),
                         "lo": v.quantile(0.025) if len(v) else np.nan,
                         "hi": v.quantile(0.975) if len(v) else np.nan, "n_folds": len(v)})
    return pd.DataFrame(rows)


def permutation_gain(d: SurvivalData, spec: ModelSpec, cfg: CVConfig, n_permutations: int,
                     metric: str = "harrell", observed: CVResult | None = None,
                     progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None) -> tuple[float, float, np.ndarray]:
    """Permutation p-value of the combined model's gain over the clinical model.

    The feature rows are shuffled together (breaking features ↔ outcome, keeping clinical ↔
    outcome and the correlation between features) and the combined arm re-cross-validated on the
    same folds; p = (1 + #{gain_perm ≥ gain}) / (1 + B).

    Returns
    -------
    gain, p, null gains
    """
    observed = observed or cross_validate(d, spec, cfg, ("clinical", "combined"))
    gain = observed.gain(metric)
    clinical = observed.folds[observed.folds["arm"] == "clinical"].set_index(["repeat", "fold"])[metric]
    rng = np.random.default_rng(cfg.seed + 7919)
    null = []
    for b in range(n_permutations):
        if progress:
            progress(b, n_permutations, f"permutation {b + 1} of {n_permutations}")
        perm = d.with_features(d.X.iloc[rng.permutation(len(d))])
        r = cross_validate(perm, spec, cfg, ("combined",), should_stop=should_stop)
        comb = r.folds.set_index(["repeat", "fold"])[metric]
        null.append(float((comb - clinical).mean()))
    null_arr = np.array(null)
    p = (1 + np.sum(null_arr >= gain)) / (1 + len(null_arr)) if len(null_arr) else float("nan")
    return gain, float(p), null_arr


def external_validation(d: SurvivalData, train_mask: np.ndarray, spec: ModelSpec,
                        cfg: CVConfig = CVConfig(), arms: Sequence[str] = ARMS,
                        n_boot: int = 200, test_mask: np.ndarray | None = None
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train each arm on ``train_mask`` subjects (inner CV as usual) and score ``test_mask``
    subjects (default: all the others): other sites, or later dates (:mod:`.split`).

    Intervals are percentile bootstrap intervals over the test subjects (the model is fixed).

    Returns
    -------
    summary : DataFrame
        ``arm``, ``metric``, ``value``, ``lo``, ``hi``.
    predictions : DataFrame
        Test subjects' risk, group (cut at the training median) and S at the horizons.
    """
    train_mask = np.asarray(train_mask, dtype=bool)
    test_mask = ~train_mask if test_mask is None else np.asarray(test_mask, dtype=bool)
    if (train_mask & test_mask).any():
        raise ValueError("a subject is in both the training and the test part")
    train, test = d.subset(train_mask), d.subset(test_mask)
    if len(train) < 10 or train.event.sum() < 3:
        raise ValueError(f"the training part has {len(train)} subjects and "
                         f"{int(train.event.sum())} events: too few to fit on")
    if len(test) < 5 or test.event.sum() < 2:
        raise ValueError(f"the test part has {len(test)} subjects and {int(test.event.sum())} "
                         "events: too few to validate on")
    rng = np.random.default_rng(cfg.seed)
    rows, preds = [], []
    for arm in arms:
        fitted = fit_arm(train, arm, spec, seed=cfg.seed)
        point, pred = score_split(fitted, train, test, cfg.horizons)
        boots = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(test), len(test))
            b = pred.iloc[idx]
            boots.append({"harrell": harrell_c(b["time"], b["event"], b["risk"]),
                          "uno": uno_c(train.time, train.event, b["time"].to_numpy(),
                                       b["event"].to_numpy(), b["risk"].to_numpy(),
                                       min(max(cfg.horizons), train.time.max()))})
        boots = pd.DataFrame(boots)
        for m, v in point.items():
            lo = hi = np.nan
            if m in boots:
                lo, hi = boots[m].quantile(0.025), boots[m].quantile(0.975)
            rows.append({"arm": arm, "metric": m, "value": v, "lo": lo, "hi": hi})
        preds.append(pred.assign(arm=arm))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)
