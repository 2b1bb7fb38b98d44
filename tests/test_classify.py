"""Tests for gliocore.classify: the short/long rule, leakage, real signal, CV fallbacks, figures."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import SelectKBest, f_classif

from gliocore.classify import build_pipeline, evaluate_classifier, make_short_long_labels
from gliocore.errors import CohortError

FAST = dict(n_repeats=2, n_permutations=0, importance_repeats=2)


@pytest.fixture(autouse=True)
def _quiet_small_n():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="results are unstable")
        warnings.filterwarnings("ignore", message="leave-one-out used")
        yield


def _signal(rng, n=80, p=6):
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    y = (2.0 * X["f0"] - 1.5 * X["f1"] + rng.normal(size=n) > 0).astype(int)
    return X, y


def test_short_long_rule():
    df = pd.DataFrame({"Survival(months)": [2, 4, 5, 5, 6, 7, 3, np.nan, 12],
                       "event": [1, 0, 1, 0, 0, 1, 0, 1, 1]}, index=list("abcdefghi"))
    lab = make_short_long_labels(df, "Survival(months)", "event", threshold=5.0)
    # a: died at 2 -> short; b: censored at 4 -> unknown; c: died at 5 -> short (<=);
    # d: censored at 5 -> unknown; e: censored at 6 -> long; f, i: died later -> long;
    # g: censored at 3 -> unknown; h: missing duration -> excluded
    assert lab.y.to_dict() == {"a": 1, "c": 1, "e": 0, "f": 0, "i": 0}
    assert lab.n_excluded == 4
    assert "excluded" in lab.rule


def test_no_leakage_noise_with_feature_selection(rng):
    """Pure noise, 300 features, SelectKBest(10): honest CV stays near chance.

    The same data with the 10 features selected on *all* subjects first (selection outside the
    cross-validation) scores far above chance — so this test would catch selection leaking out
    of the pipeline.
    """
    n, p = 80, 300
    X = rng.normal(size=(n, p))
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    rng.shuffle(y)
    honest = evaluate_classifier(X, y, feature_selection_k=10, n_splits=5, n_repeats=3,
                                 n_permutations=0, importance_repeats=1)
    assert abs(honest.auc_mean - 0.5) < 0.17
    assert abs(honest.pooled_auc - 0.5) < 0.17

    leaky_X = SelectKBest(f_classif, k=10).fit_transform(X, y)  # sees the test folds' labels
    leaky = evaluate_classifier(leaky_X, y, n_splits=5, n_repeats=3, n_permutations=0,
                                importance_repeats=0)
    assert leaky.auc_mean > 0.75
    assert leaky.auc_mean - honest.auc_mean > 0.2


def test_selection_lives_inside_the_pipeline():
    pipe = build_pipeline("logreg", feature_selection_k=5)
    assert [name for name, _ in pipe.steps] == ["impute", "scale", "select", "model"]
    assert [name for name, _ in build_pipeline("svm").steps] == ["impute", "scale", "model"]


def test_real_signal_is_found(rng):
    X, y = _signal(rng)
    res = evaluate_classifier(X, y, n_repeats=2, n_permutations=19, importance_repeats=3,
                              class_names=("long", "short"))
    assert res.auc_mean > 0.8 and res.pooled_auc > 0.8
    assert res.permutation_pvalue == pytest.approx(1 / 20)  # no permutation beats the real labels
    assert res.permutation_score == pytest.approx(res.auc_mean)  # the same CV as the ROC
    assert res.permutation_scores.shape == (19,) and res.permutation_scores.mean() < 0.7
    assert res.cv_scheme.startswith("stratified 5-fold CV repeated 2")
    assert res.fold_aucs.shape == (10,) and res.auc == res.auc_mean
    assert list(res.feature_importance.index[:2]) == ["f0", "f1"]
    assert res.feature_importance.loc["f0", "importance"] > 0.1
    cm = res.confusion_matrix
    assert cm.shape == (2, 2) and cm.sum() == len(y) and cm.trace() / cm.sum() > 0.7
    assert cm.sum(axis=1).tolist() == [int((y == 0).sum()), int((y == 1).sum())]
    assert res.fpr_grid[0] == 0 and res.mean_tpr[0] == 0 and res.mean_tpr[-1] == 1
    assert np.all(np.diff(res.mean_tpr) >= -1e-12)
    assert res.warnings == ()  # n = 80 and both classes >= 10
    assert "AUC" in res.summary()


@pytest.mark.parametrize("model", ["random_forest", "svm"])
def test_other_models_run(rng, model):
    X, y = _signal(rng, n=60, p=4)
    res = evaluate_classifier(X, y, model=model, n_repeats=1, n_permutations=0, importance_repeats=1)
    assert res.model == model and res.auc_mean > 0.75


def test_unselected_features_have_zero_importance(rng):
    X, y = _signal(rng, n=80, p=30)
    res = evaluate_classifier(X, y, feature_selection_k=2, **FAST)
    imp = res.feature_importance
    never = imp["selected_in_folds"] == 0
    assert never.any() and (imp.loc[never, "importance"] == 0).all()
    assert imp.loc["f0", "selected_in_folds"] == 5


def test_loo_fallback_for_small_minority(rng):
    X, y = _signal(rng, n=40, p=3)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:3]]
    X, y = X.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)
    with pytest.warns(UserWarning) as rec:
        warnings.filterwarnings("default", message="results are unstable")
        res = evaluate_classifier(X, y, n_splits=5, n_permutations=9, importance_repeats=1)
    assert res.cv_scheme.startswith("leave-one-out") and res.is_loo
    assert res.fold_aucs.size == 0 and np.isnan(res.auc_mean)
    assert res.auc == res.pooled_auc and "pooled" in res.auc_method
    assert res.confusion_matrix.sum() == len(y)
    assert res.permutation_scores.shape == (9,) and 0 < res.permutation_pvalue <= 1
    assert any("results are unstable" in str(w.message) for w in rec)
    assert any("unstable" in w for w in res.warnings)


def test_small_n_warning(rng):
    X, y = _signal(rng, n=30, p=3)
    res = evaluate_classifier(X, y, n_splits=3, **FAST)
    assert any(w.startswith("results are unstable: n = 30") for w in res.warnings)


def test_never_reports_training_performance(rng):
    X, y = _signal(rng, n=40, p=3)
    res = evaluate_classifier(X, y, **FAST)
    names = [f.name for f in dataclasses.fields(res)]
    assert not any("train" in n for n in names)


def test_missing_values_are_imputed_inside_folds(rng):
    X, y = _signal(rng, n=60, p=4)
    X = X.mask(rng.uniform(size=X.shape) < 0.1)
    res = evaluate_classifier(X, y, **FAST)
    assert res.auc_mean > 0.7


def test_input_errors(rng):
    X, y = _signal(rng, n=30, p=3)
    with pytest.raises(CohortError, match="exactly two classes"):
        evaluate_classifier(X, np.zeros(30, int), **FAST)
    with pytest.raises(ValueError, match="coded 0/1"):
        evaluate_classifier(X, y.map({0: 1, 1: 2}), **FAST)
    with pytest.raises(CohortError, match="minority class has 1"):
        evaluate_classifier(X, np.r_[np.zeros(29), 1].astype(int), **FAST)
    with pytest.raises(ValueError, match="non-numeric"):
        evaluate_classifier(X.assign(sex="F"), y, **FAST)
    with pytest.raises(ValueError, match="entirely missing"):
        evaluate_classifier(X.assign(e=np.nan), y, **FAST)
    with pytest.raises(ValueError, match="unknown model"):
        evaluate_classifier(X, y, model="xgboost", **FAST)


def test_roc_and_confusion_figures(rng):
    from gliocore.plots import confusion_figure, roc_figure

    X, y = _signal(rng, n=60, p=3)
    res = evaluate_classifier(X, y, class_names=("long", "short"), **FAST)
    fig = roc_figure(res)
    assert any("mean ROC (AUC" in (t.name or "") for t in fig.data)
    assert any(t.name == "chance" for t in fig.data)
    cf = confusion_figure(res)
    assert list(cf.data[0].x) == ["pred long", "pred short"]
    np.testing.assert_array_equal(np.asarray(cf.data[0].z), res.confusion_matrix)
    assert confusion_figure(np.eye(2, dtype=int), ["a", "b"]).data[0].y == ("true a", "true b")
