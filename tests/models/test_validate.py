"""Nested CV: learns only inside the folds, finds a real signal, finds none in noise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.models import estimators
from gliocore.models.data import family_columns, prepare
from gliocore.models.estimators import ModelSpec, Preprocessor, cox_scores
from gliocore.models.synthetic import feature_table
from gliocore.models.validate import (CVConfig, StopRequested, cross_validate, external_validation,
                                      permutation_gain, summarise)

SPEC = ModelSpec(n_alphas=15, inner_splits=3)
CFG = CVConfig(outer_splits=3, repeats=1, horizons=(12.0, 24.0), seed=0)


def _data(signal, n=160, p=40, seed=0):
    t = feature_table(n=n, p=p, signal=signal, seed=seed)
    return prepare(t, "Survival(months)", "event", family_columns(t, "radiomics"),
                   ["age", "IDH-status", "sex"], "site", ["age", "sex", "IDH-status"])


def test_pure_noise_signature_is_chance_and_gain_not_significant():
    d = _data(0.0, n=200, p=60, seed=11)
    res = cross_validate(d, SPEC, CFG)
    s = summarise(res.folds).set_index(["arm", "metric"])
    sig = s.loc[("signature", "harrell")]
    assert abs(sig["mean"] - 0.5) <= max(2 * sig["sd"], 0.05)
    assert s.loc[("clinical", "harrell"), "mean"] > 0.6
    gain, p, null = permutation_gain(d, SPEC, CFG, 9, observed=res)
    assert p > 0.05 and len(null) == 9


def test_real_signal_is_found():
    d = _data(1.2, n=200, p=30, seed=2)
    res = cross_validate(d, SPEC, CFG)
    s = summarise(res.folds).set_index(["arm", "metric"])["mean"]
    assert s[("signature", "harrell")] > 0.58
    assert res.gain() > 0.01
    top = res.coefficients.query("arm == 'signature' and coef != 0")["feature"].value_counts()
    assert set(top.index[:3]) & {f"feat{j}_label1" for j in range(5)}


def test_everything_that_learns_sees_training_rows_only(monkeypatch):
    """ComBat, imputation, scaling, top-k and the penalty path are fitted on the outer training
    part (and, for the inner CV, on inner training parts of it): a spy records the subjects each
    preprocessing fit sees while each outer fold runs."""
    d = _data(0.5, n=120, p=20)
    fits: list[tuple[int, set]] = []
    combat_rows: list[int] = []
    fold = {"now": -1}
    real_fit = estimators.ComBat.fit
    real_pre = Preprocessor.fit_transform

    def spy_combat(self, X, site, covars=None):
        combat_rows.append(len(X))
        return real_fit(self, X, site, covars)

    def spy_pre(self, dd):
        fits.append((fold["now"], set(dd.ids)))
        return real_pre(self, dd)
    monkeypatch.setattr(estimators.ComBat, "fit", spy_combat)
    monkeypatch.setattr(Preprocessor, "fit_transform", spy_pre)
    spec = ModelSpec(n_alphas=15, inner_splits=3, k_best=5)
    res = cross_validate(d, spec, CFG, arms=("signature",),
                         progress=lambda i, n, what: fold.update(now=i))
    tests = res.predictions.groupby("fold")["id"].apply(set)
    assert len(fits) == CFG.outer_splits * (1 + spec.inner_splits)
    for k, ids in fits:
        assert not ids & tests[k], f"fold {k}: a preprocessing fit saw held-out subjects"
    outer = [ids for k, ids in fits if len(ids) + len(tests[k]) == len(d)]
    assert len(outer) == CFG.outer_splits  # one fit on each whole outer training part
    assert max(combat_rows) < len(d)


def test_harmonisation_fitted_on_all_subjects_would_change_held_out_values():
    """Why it matters: held-out features depend on which rows ComBat was fitted on."""
    d = _data(0.0, n=120, p=20)
    train = d.subset(np.arange(80))
    test = d.subset(np.arange(80, 120))
    inside = Preprocessor().fit_transform(train) is not None
    pre = Preprocessor()
    pre.fit_transform(train)
    leaky = Preprocessor()
    leaky.fit_transform(d)
    assert inside and not np.allclose(pre.transform(test), leaky.transform(test))


def test_risk_groups_are_cut_at_the_training_median():
    d = _data(0.8, n=120, p=20)
    res = cross_validate(d, SPEC, CFG, arms=("combined",))
    g = res.risk_groups("combined")
    assert set(g["group"]) == {"high", "low"}
    assert 0.25 < (g["group"] == "high").mean() < 0.75
    cal = res.calibration("combined", 12.0)
    assert cal["n"].sum() == len(d) and cal["predicted"].between(0, 1).all()
    assert (cal["observed_lo"] <= cal["observed"]).all() and (cal["observed"] <= cal["observed_hi"]).all()
    from gliocore.models.plots import calibration_figure
    bars = calibration_figure(cal, 12.0).data[1].error_y
    assert np.allclose(np.asarray(bars.array) + cal["observed"], cal["observed_hi"])


def test_external_validation_and_stop():
    d = _data(0.8, n=150, p=20)
    summary, pred = external_validation(d, d.site == "siteA", SPEC, CFG, n_boot=20)
    assert set(pred["id"]) == set(d.ids[d.site != "siteA"])
    h = summary.query("metric == 'harrell'")
    assert (h["lo"] <= h["value"]).all() and (h["value"] <= h["hi"]).all()
    with pytest.raises(StopRequested):
        cross_validate(d, SPEC, CFG, should_stop=lambda: True)


def test_cox_scores_match_lifelines_score_test():
    from lifelines import CoxPHFitter
    d = _data(1.0, n=100, p=6)
    Z = (d.X - d.X.mean()) / d.X.std()
    z = cox_scores(Z.to_numpy(), d.time, d.event)
    df = pd.DataFrame({"x": Z.iloc[:, 0], "T": d.time, "E": d.event.astype(int)})
    cph = CoxPHFitter().fit(df, "T", "E")
    assert np.sign(z[0]) == np.sign(cph.params_["x"])
    assert abs(z[0]) == pytest.approx(abs(cph.summary["z"]["x"]), rel=0.15)


def test_random_survival_forest_arm_with_inner_leaf_choice():
    d = _data(1.2, n=90, p=10, seed=3)
    spec = ModelSpec(kind="rsf", n_trees=15, leaf_grid=(5, 15), inner_splits=2)
    res = cross_validate(d, spec, CVConfig(outer_splits=2, horizons=(12.0,)), arms=("signature",))
    assert set(res.folds["penalty"]) <= {5.0, 15.0}
    assert res.folds["harrell"].between(0, 1).all() and res.coefficients.empty
    assert res.predictions["S_12"].between(0, 1).all()
