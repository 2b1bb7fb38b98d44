"""Short vs long survival classification with honest cross-validation.

Everything that learns from data (imputation, scaling, feature selection, the model) sits inside one
scikit-learn :class:`~sklearn.pipeline.Pipeline` that is refitted on the training part of every
fold, so nothing leaks from the test folds. Performance is only ever measured on held-out
subjects; training-set accuracy is never computed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.model_selection import RepeatedStratifiedKFold, permutation_test_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from gliocore.errors import CohortError
from gliocore.analysis.groups import ShortLongLabels, make_short_long_labels  # noqa: F401

__all__ = ["ShortLongLabels", "ClassifierResult", "make_short_long_labels", "build_pipeline",
           "missing_values", "IMPUTATION_METHOD",
           "evaluate_classifier"]

ModelName = Literal["logreg", "random_forest", "svm"]

#: How the pipeline fills a missing feature value, in words (shown wherever values were imputed).
IMPUTATION_METHOD = ("median of the training folds, refitted inside every cross-validation fold "
                     "(a test subject's own value never enters the median)")

#: Small-sample thresholds below which results are flagged as unstable.
SMALL_N = 50
SMALL_MINORITY = 10


@dataclass(frozen=True)
class ClassifierResult:
    """Cross-validated performance of a binary classifier (held-out data only).

    Attributes
    ----------
    model : str
        Model name.
    cv_scheme : str
        The resampling used, in words (repeated stratified k-fold; says when k was reduced).
    n_splits : int
        The k actually used: the requested k, reduced to the minority class size when smaller.
    n_samples, n_features : int
    class_counts : dict of int to int
        Subjects per class (0, 1).
    class_names : tuple of str
        Display names of classes 0 and 1.
    fpr_grid, mean_tpr, sd_tpr : (101,) ndarray
        Mean ROC curve on a common false-positive-rate grid: mean and SD of the per-fold curves.
    fold_aucs : ndarray
        Per-fold test AUCs (``n_splits * n_repeats`` of them).
    auc_mean, auc_sd : float
        Mean and SD of ``fold_aucs``; ``auc_mean`` is the headline AUC.
    pooled_auc : float
        AUC of the pooled out-of-fold scores (mean over repeats). Secondary: scores of different
        fold models are not on one scale, so pooling them is biased low on small samples.
    auc_method : str
        How the headline :attr:`auc` was computed.
    confusion_matrix : (2, 2) ndarray of int
        Rows = true class, columns = predicted class, from out-of-fold predictions in which every
        subject is predicted exactly once (first repetition).
    confusion_note : str
    oof_scores : (n_samples,) ndarray
        Out-of-fold scores of class 1 (probability or decision value), first repetition.
    permutation_score : float
        Score of the unpermuted labels in the permutation test (equals the headline AUC).
    permutation_scores : ndarray
        Scores with permuted labels.
    permutation_pvalue : float
        ``(1 + #{permuted >= observed}) / (1 + n_permutations)``; NaN when not run.
    feature_importance : DataFrame
        Index = feature; ``importance`` (mean drop of pooled out-of-fold AUC when the feature is
        permuted, held-out predictions of the fold models), ``sd``, ``selected_in_folds``.
    importance_method : str
    imputed : DataFrame
        Per feature (index): ``n`` subjects, ``n_imputed`` missing values that the pipeline
        filled in, and ``share`` (see :func:`missing_values`).
    imputation_method : str
        How they were filled (:data:`IMPUTATION_METHOD`).
    warnings : tuple of str
        Caveats such as small samples.
    """

    model: str
    cv_scheme: str
    n_splits: int
    n_samples: int
    n_features: int
    class_counts: dict[int, int]
    class_names: tuple[str, str]
    fpr_grid: np.ndarray
    mean_tpr: np.ndarray
    sd_tpr: np.ndarray
    fold_aucs: np.ndarray
    auc_mean: float
    auc_sd: float
    pooled_auc: float
    auc_method: str
    confusion_matrix: np.ndarray
    confusion_note: str
    oof_scores: np.ndarray
    permutation_score: float
    permutation_scores: np.ndarray
    permutation_pvalue: float
    feature_importance: pd.DataFrame
    importance_method: str
    imputed: pd.DataFrame = field(default_factory=pd.DataFrame)
    imputation_method: str = IMPUTATION_METHOD
    warnings: tuple[str, ...] = field(default=())

    @property
    def auc(self) -> float:
        """Headline AUC: the mean of the held-out fold AUCs (the permutation test's statistic)."""
        return self.auc_mean

    def summary(self) -> str:
        """One line for captions."""
        a = f"AUC {self.auc_mean:.3f} ± {self.auc_sd:.3f} (mean ± SD over {self.fold_aucs.size} folds)"
        p = "" if np.isnan(self.permutation_pvalue) else f", permutation p = {self.permutation_pvalue:.3g}"
        return f"{self.model}, {self.cv_scheme}: {a}{p}"


def _make_model(model: str | BaseEstimator, random_state: int) -> BaseEstimator:
    if isinstance(model, BaseEstimator):
        return clone(model)
    if model == "logreg":
        return LogisticRegression(max_iter=5000, class_weight="balanced")
    if model == "random_forest":
        return RandomForestClassifier(n_estimators=200, class_weight="balanced", min_samples_leaf=2,
                                      random_state=random_state)
    if model == "svm":
        return SVC(kernel="rbf", class_weight="balanced")
    raise ValueError(f"unknown model {model!r}; use 'logreg', 'random_forest' or 'svm'")


def build_pipeline(model: str | BaseEstimator = "logreg", feature_selection_k: int | None = None,
                   random_state: int = 0) -> Pipeline:
    """Median imputation -> standardisation -> optional ``SelectKBest(f_classif)`` -> model.

    Classes are weighted ``"balanced"`` in the built-in models, so the minority class is not
    ignored by the decision threshold.
    """
    steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    if feature_selection_k is not None:
        steps.append(("select", SelectKBest(f_classif, k=int(feature_selection_k))))
    steps.append(("model", _make_model(model, random_state)))
    return Pipeline(steps)


def _class1_scores(pipe: Pipeline, X: pd.DataFrame) -> np.ndarray:
    if hasattr(pipe, "predict_proba"):
        try:
            return pipe.predict_proba(X)[:, 1]
        except AttributeError:  # e.g. SVC without probability=True
            pass
    return pipe.decision_function(X)


def missing_values(X: pd.DataFrame) -> pd.DataFrame:
    """How many values of each feature are missing, i.e. will be imputed by the pipeline.

    Parameters
    ----------
    X : DataFrame
        Subjects x features, as passed to :func:`evaluate_classifier`.

    Returns
    -------
    DataFrame
        Index = feature; ``n`` (subjects), ``n_imputed`` (missing values, filled in with the
        training-fold median, see :data:`IMPUTATION_METHOD`) and ``share`` (``n_imputed / n``).
    """
    miss = X.isna().sum().astype(int)
    out = pd.DataFrame({"n": len(X), "n_imputed": miss, "share": miss / max(len(X), 1)},
                       index=pd.Index([str(c) for c in X.columns], name="feature"))
    return out


def _imputation_note(imputed: pd.DataFrame) -> str | None:
    """A warning naming every feature with imputed values, or None when nothing was imputed."""
    hit = imputed[imputed["n_imputed"] > 0]
    if hit.empty:
        return None
    parts = ", ".join(f"{f} ({int(k)} of {int(n)})" for f, k, n in
                      zip(hit.index, hit["n_imputed"], hit["n"]))
    return (f"{int(hit['n_imputed'].sum())} missing value(s) imputed with the {IMPUTATION_METHOD}: "
            f"{parts}")


def _check_xy(X, y) -> tuple[pd.DataFrame, np.ndarray]:
    if isinstance(X, pd.DataFrame):
        Xd = X.copy()
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (subjects x features), got {arr.ndim}-D")
        Xd = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    if isinstance(y, pd.Series) and isinstance(X, pd.DataFrame):
        if not y.index.equals(X.index):
            if not set(y.index) <= set(X.index):
                raise ValueError("y's index does not match X's; align them (e.g. X.loc[y.index])")
            Xd = Xd.loc[y.index]
    yv = np.asarray(y)
    if yv.ndim != 1 or len(yv) != len(Xd):
        raise ValueError(f"y must be 1-D with one label per row of X ({len(Xd)}), got shape {yv.shape}")
    if pd.isna(yv).any():
        raise ValueError("y has missing labels; drop those subjects first (see make_short_long_labels)")
    classes = np.unique(yv)
    if len(classes) != 2:
        raise CohortError(f"need exactly two classes, found {len(classes)} ({classes.tolist()}); "
                          "adjust the short/long threshold")
    if set(classes.tolist()) != {0, 1}:
        raise ValueError(f"y must be coded 0/1 (1 = positive class, e.g. short survival), got {classes}")
    non_num = [c for c in Xd.columns if not pd.api.types.is_numeric_dtype(Xd[c])]
    if non_num:
        raise ValueError(f"non-numeric feature columns {non_num}; encode or drop them")
    empty = [c for c in Xd.columns if Xd[c].isna().all()]
    if empty:
        raise ValueError(f"feature columns {empty} are entirely missing; drop them")
    Xd.columns = [str(c) for c in Xd.columns]
    return Xd, yv.astype(int)


def _interp_roc(y_true: np.ndarray, score: np.ndarray, grid: np.ndarray) -> np.ndarray:
    fpr, tpr, _ = roc_curve(y_true, score)
    out = np.interp(grid, fpr, tpr)
    out[0] = 0.0
    return out


def evaluate_classifier(X: pd.DataFrame | np.ndarray, y: Sequence[int] | pd.Series,
                        model: ModelName | BaseEstimator = "logreg", n_splits: int = 5,
                        n_repeats: int = 10, random_state: int = 0, n_permutations: int = 200,
                        feature_selection_k: int | None = None, importance_repeats: int = 5,
                        class_names: tuple[str, str] | None = None,
                        n_jobs: int | None = None) -> ClassifierResult:
    """Cross-validate a binary classifier without leakage, with ROC, confusion and permutation test.

    Parameters
    ----------
    X : (n_samples, n_features) DataFrame or array
        Numeric features. Missing values are imputed inside the pipeline with the training-fold
        median — never silently: ``imputed`` counts them per feature and a warning names them.
    y : (n_samples,) array-like of 0/1
        Class 1 is the positive class (short survival in GlioScope).
    model : {"logreg", "random_forest", "svm"} or estimator, default "logreg"
    n_splits, n_repeats : int
        ``RepeatedStratifiedKFold``. When the minority class has fewer than ``n_splits`` members,
        k is reduced to the minority class size (at least 2), so that every test fold holds a
        subject of each class and has an AUC; ``cv_scheme`` and a warning say so. Leave-one-out
        is never used: its pooled AUC is biased low (about 0.38 on pure noise with 30 subjects,
        4 in the minority class), whereas each fold's AUC compares subjects scored by one model.
    random_state : int, default 0
    n_permutations : int, default 200
        Label permutations for the permutation test (``sklearn.model_selection.
        permutation_test_score`` with the same CV and ``roc_auc``: the statistic is the mean fold
        AUC, the headline AUC). 0 skips the test. Cost: about
        ``(n_permutations + 1) * n_splits * n_repeats`` model fits.
    feature_selection_k : int, optional
        Keep the ``k`` best features (ANOVA F) — fitted inside each training fold.
    importance_repeats : int, default 5
        Shuffles per feature for permutation importance (0 skips it).
    class_names : (str, str), optional
        Display names of classes 0 and 1, e.g. ``("long", "short")``.
    n_jobs : int, optional
        Parallel jobs for the permutation test.

    Returns
    -------
    ClassifierResult

    Notes
    -----
    BLAS is limited to one thread while this runs: the many fits on small cohorts are dominated by
    thread start-up, and multi-threaded BLAS was up to 40x slower on a loaded 2-core machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(X, y, model, n_splits, n_repeats, random_state, n_permutations,
                         feature_selection_k, importance_repeats, class_names, n_jobs)


def _evaluate(X, y, model, n_splits, n_repeats, random_state, n_permutations, feature_selection_k,
              importance_repeats, class_names, n_jobs) -> ClassifierResult:
    Xd, yv = _check_xy(X, y)
    n, p = Xd.shape
    imputed = missing_values(Xd)
    counts = {0: int((yv == 0).sum()), 1: int((yv == 1).sum())}
    n_min = min(counts.values())
    k, notes = _checked_design(n_splits, n_min, feature_selection_k, p)
    pipe = build_pipeline(model, k, random_state)
    model_name = model if isinstance(model, str) else type(model).__name__
    folds, cv, scheme = _cv_scheme(n_splits, n_repeats, n_min, random_state, notes)
    imputation_note = _imputation_note(imputed)
    if imputation_note:
        notes.append(imputation_note)
    if n < SMALL_N or n_min < SMALL_MINORITY:
        notes.append(f"results are unstable: n = {n}, minority class = {n_min} (below {SMALL_N} "
                     f"subjects or {SMALL_MINORITY} per class); read the AUC as indicative only")
    Xa = Xd.to_numpy(dtype=float)  # fit on arrays: column names are kept by us, not the pipeline
    cvr = _cross_validate(pipe, Xa, yv, list(cv.split(Xa, yv)), folds, n_repeats)
    perm_score, perm_scores, perm_p = _permutation_test(pipe, Xa, yv, cv, n_permutations,
                                                        random_state, n_jobs)
    importance, imp_method = _held_out_permutation_importance(
        cvr.first_models, Xa, list(Xd.columns), yv, importance_repeats, random_state)
    for msg in notes:
        warnings.warn(msg, UserWarning, stacklevel=3)
    names = tuple(class_names) if class_names is not None else ("0", "1")
    return ClassifierResult(
        model=model_name, cv_scheme=scheme, n_splits=folds, n_samples=n, n_features=p,
        class_counts=counts,
        class_names=names, fpr_grid=cvr.grid, mean_tpr=cvr.mean_tpr, sd_tpr=cvr.sd_tpr,
        fold_aucs=np.asarray(cvr.fold_aucs, float), auc_mean=float(np.mean(cvr.fold_aucs)),
        auc_sd=float(np.std(cvr.fold_aucs)), pooled_auc=cvr.pooled,
        auc_method=f"mean ± SD of {len(cvr.fold_aucs)} held-out fold AUCs",
        confusion_matrix=confusion_matrix(yv, cvr.oof_pred, labels=[0, 1]),
        confusion_note="out-of-fold predictions, each subject predicted once (first of the "
                       "repeated k-fold partitions)",
        oof_scores=cvr.oof[0],
        permutation_score=perm_score, permutation_scores=np.asarray(perm_scores, float),
        permutation_pvalue=perm_p, feature_importance=importance, importance_method=imp_method,
        imputed=imputed,
        warnings=tuple(notes))


def _checked_design(n_splits: int, n_min: int, feature_selection_k: int | None, p: int
                    ) -> tuple[int | None, list[str]]:
    """The feature-selection k to use and the notes so far; refuses what cannot be
    cross-validated."""
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    if n_min < 2:
        raise CohortError(f"the minority class has {n_min} subject(s); at least 2 are needed to "
                          "cross-validate (every test fold needs one of each class, and k >= 2) — "
                          "adjust the threshold or add subjects")
    notes: list[str] = []
    k = feature_selection_k
    if k is not None:
        if k < 1:
            raise ValueError(f"feature_selection_k must be >= 1, got {k}")
        if k >= p:
            notes.append(f"feature_selection_k={k} >= {p} features: no selection applied")
            k = None
    return k, notes


def _cv_scheme(n_splits: int, n_repeats: int, n_min: int, random_state: int, notes: list[str]
               ) -> tuple[int, RepeatedStratifiedKFold, str]:
    """Repeated stratified k-fold with k at most the minority class's size (a note when cut)."""
    folds = min(n_splits, n_min)
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=n_repeats, random_state=random_state)
    scheme = f"stratified {folds}-fold CV repeated {n_repeats}×"
    if folds < n_splits:
        scheme += f" (k reduced from {n_splits}: the minority class has {n_min} subjects)"
        notes.append(f"k reduced from {n_splits} to {folds} folds: the minority class has only "
                     f"{n_min} subjects and every test fold needs one to have an AUC")
    return folds, cv, scheme


@dataclass
class _CVRun:
    """Held-out scores of one repeated k-fold run."""

    grid: np.ndarray
    oof: np.ndarray            # (n_repeats, n) held-out scores
    oof_pred: np.ndarray       # first repeat's held-out class predictions
    fold_aucs: list[float]
    mean_tpr: np.ndarray
    sd_tpr: np.ndarray
    pooled: float
    first_models: list[tuple[Pipeline, np.ndarray]]


def _cross_validate(pipe: Pipeline, Xa: np.ndarray, yv: np.ndarray,
                    splits: list[tuple[np.ndarray, np.ndarray]], folds: int, n_repeats: int
                    ) -> _CVRun:
    """Fit a clone of ``pipe`` on every training part; score its held-out part."""
    n = len(yv)
    grid = np.linspace(0.0, 1.0, 101)
    oof = np.full((n_repeats, n), np.nan)
    oof_pred = np.full(n, -1)
    fold_aucs, fold_tprs = [], []
    first_models: list[tuple[Pipeline, np.ndarray]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # f_classif on constant folds
        for i, (tr, te) in enumerate(splits):
            rep = i // folds
            est = clone(pipe).fit(Xa[tr], yv[tr])
            s = _class1_scores(est, Xa[te])
            oof[rep, te] = s
            if rep == 0:
                oof_pred[te] = est.predict(Xa[te])
                first_models.append((est, te))
            fold_aucs.append(roc_auc_score(yv[te], s))
            fold_tprs.append(_interp_roc(yv[te], s, grid))
    pooled = float(np.mean([roc_auc_score(yv, oof[r]) for r in range(n_repeats)]))
    mean_tpr = np.mean(fold_tprs, axis=0)
    mean_tpr[-1] = 1.0
    return _CVRun(grid, oof, oof_pred, fold_aucs, mean_tpr, np.std(fold_tprs, axis=0), pooled,
                  first_models)


def _permutation_test(pipe: Pipeline, Xa: np.ndarray, yv: np.ndarray, cv, n_permutations: int,
                      random_state: int, n_jobs) -> tuple[float, np.ndarray, float]:
    """Permutation test with the same CV and the same statistic (mean held-out fold AUC)."""
    if n_permutations <= 0:
        return float("nan"), np.empty(0), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        score, scores, p = permutation_test_score(
            pipe, Xa, yv, cv=cv, scoring="roc_auc", n_permutations=n_permutations,
            random_state=random_state, n_jobs=n_jobs)
    return float(score), scores, float(p)


def _held_out_permutation_importance(models: list[tuple[Pipeline, np.ndarray]], X: np.ndarray,
                                     cols: list[str], y: np.ndarray, n_rep: int, random_state: int
                                     ) -> tuple[pd.DataFrame, str]:
    """Drop of pooled out-of-fold AUC when one feature is shuffled, scored by the fold models.

    Each fold's model (fitted without its test subjects) predicts only its own test subjects, with
    the feature's column shuffled across the cohort; no model ever sees its test labels.
    Features that no fold's ``SelectKBest`` kept have importance exactly 0 and are not shuffled.
    """
    p = len(cols)
    support = np.array([est.named_steps["select"].get_support() if "select" in est.named_steps
                        else np.ones(p, bool) for est, _ in models])
    selected = support.sum(0)
    method = ("permutation importance on held-out folds: mean drop in pooled out-of-fold AUC when the "
              f"feature is shuffled ({n_rep} shuffles; fold models of the first CV repetition)")
    imp = np.zeros(p)
    sd = np.zeros(p)
    if n_rep <= 0:
        imp[:] = np.nan
        sd[:] = np.nan
        method = "not computed (importance_repeats=0)"
    else:
        rng = np.random.default_rng(random_state)
        base_oof = np.empty(len(y))
        for est, te in models:
            base_oof[te] = _class1_scores(est, X[te])
        base = float(roc_auc_score(y, base_oof))
        for j in np.flatnonzero(selected):
            drops = []
            for _ in range(n_rep):
                perm = rng.permutation(X[:, j])
                oof = base_oof.copy()
                for f, (est, te) in enumerate(models):
                    if support[f, j]:  # a model that dropped feature j is unaffected by it
                        Xt = X[te].copy()
                        Xt[:, j] = perm[te]
                        oof[te] = _class1_scores(est, Xt)
                drops.append(base - float(roc_auc_score(y, oof)))
            imp[j], sd[j] = np.mean(drops), np.std(drops)
    out = pd.DataFrame({"importance": imp, "sd": sd, "selected_in_folds": selected},
                       index=pd.Index(cols, name="feature"))
    return out.sort_values("importance", ascending=False, na_position="last"), method
