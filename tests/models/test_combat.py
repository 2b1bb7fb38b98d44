"""ComBat against neuroCombat 0.2.12 (the same algorithm: to 1e-6), and applied to held-out rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.models.combat import ComBat, site_effect_test


def _data(seed=0, n=90, p=25):
    rng = np.random.default_rng(seed)
    site = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    age = rng.integers(30, 80, n)
    sex = np.where(rng.random(n) < 0.5, "M", "F")
    X = rng.normal(size=(n, p)) + 0.02 * age[:, None] + 0.5 * (sex == "M")[:, None]
    shift = {"a": 0.0, "b": 2.0, "c": -1.0}
    scale = {"a": 1.0, "b": 2.0, "c": 0.5}
    X = X * np.array([scale[s] for s in site])[:, None] + np.array([shift[s] for s in site])[:, None]
    return X, site, pd.DataFrame({"age": age, "sex": sex})


def test_matches_neurocombat_with_covariates():
    nc = pytest.importorskip("neuroCombat")
    X, site, cov = _data()
    ref = nc.neuroCombat(pd.DataFrame(X.T), cov.assign(batch=site), "batch",
                         categorical_cols=["sex"], continuous_cols=["age"])["data"].T
    ours = ComBat(("sex",), ("age",)).fit(X, site, cov).transform(X, site, cov)
    assert np.abs(ours - ref).max() < 1e-6


def test_apply_matches_neurocombat_from_training_without_covariates():
    nc = pytest.importorskip("neuroCombat")
    X, site, _ = _data(1)
    fit = nc.neuroCombat(pd.DataFrame(X.T), pd.DataFrame({"batch": site}), "batch")
    new, new_site, _ = _data(2, n=30)
    # neuroCombatFromTraining's formula with neuroCombat's fitted estimates (the function itself
    # fails under numpy 2: int() of a 1-element array)
    est = fit["estimates"]
    j = [list(est["batches"]).index(s) for s in new_site]
    mean, sd = est["stand.mean"][:, 0], np.sqrt(est["var.pooled"][:, 0])
    ref = ((new - mean) / sd - est["gamma.star"][j]) / np.sqrt(est["delta.star"][j]) * sd + mean
    ours = ComBat().fit(X, site).transform(new, new_site)
    assert np.abs(ours - ref).max() < 1e-6


def test_removes_the_site_effect_and_keeps_covariates():
    X, site, cov = _data(3, n=150)
    before = site_effect_test(X, site)["p"]
    H = ComBat(("sex",), ("age",)).fit(X, site, cov).transform(X, site, cov)
    after = site_effect_test(H, site)["p"]
    assert (before < 1e-3).mean() > 0.9 and (after > 0.01).mean() > 0.8
    slope = np.polyfit(cov["age"], H[:, 0], 1)[0]
    assert 0.005 < slope < 0.04  # the age effect (0.02 per year, on the pooled scale) is kept


def test_unseen_site_is_estimated_from_its_own_rows_and_single_site_is_a_reference():
    X, site, _ = _data(4, n=120)
    cb = ComBat().fit(X[site != "c"], site[site != "c"])
    out = cb.transform(X[site == "c"], site[site == "c"])
    assert abs(out.mean() - X[site != "c"].mean()) < 0.5
    with pytest.raises(ValueError, match="single subject"):
        cb.transform(X[site == "c"][:1], site[site == "c"][:1])
    ref = ComBat().fit(X[site == "a"], site[site == "a"])
    assert np.allclose(ref.transform(X[site == "a"], site[site == "a"]), X[site == "a"])


def test_round_trip_and_errors():
    X, site, cov = _data(5)
    cb = ComBat(("sex",), ("age",)).fit(X, site, cov)
    again = ComBat.from_dict(cb.to_dict())
    assert np.allclose(again.transform(X, site, cov), cb.transform(X, site, cov))
    with pytest.raises(ValueError, match="two subjects"):
        ComBat().fit(X[:3], ["a", "b", "b"])
    with pytest.raises(ValueError, match="complete"):
        ComBat().fit(np.where(np.eye(len(X), X.shape[1]) > 0, np.nan, X), site)


def test_small_sites_can_be_left_unharmonised():
    """A fold of a small cohort can hold one subject of a small site: with leave_small_sites
    that site is left as it is (in the fit and when applied), the others harmonised as before."""
    X, site, cov = _data(6)
    site = site.astype(object)
    site[0] = "tiny"
    cb = ComBat(("sex",), ("age",), leave_small_sites=True).fit(X, site, cov)
    rest = ComBat(("sex",), ("age",)).fit(X[1:], site[1:], cov.iloc[1:].reset_index(drop=True))
    out = cb.transform(X, site, cov)
    assert cb.left_sites_ == ["tiny"] and np.allclose(out[0], X[0])
    assert np.allclose(out[1:], rest.transform(X[1:], site[1:], cov.iloc[1:].reset_index(drop=True)))
    lone = cb.transform(X[:1], np.array(["unseen"]), cov.iloc[:1])
    assert np.allclose(lone, X[:1])
    again = ComBat.from_dict(cb.to_dict())
    assert again.left_sites_ == ["tiny"] and np.allclose(again.transform(X, site, cov), out)
    with pytest.raises(ValueError, match="every site"):
        ComBat(leave_small_sites=True).fit(X[:2], ["a", "b"])


def test_cross_validation_survives_a_site_with_three_subjects():
    from gliocore.models.data import family_columns, prepare
    from gliocore.models.estimators import ModelSpec
    from gliocore.models.synthetic import feature_table
    from gliocore.models.validate import CVConfig, cross_validate
    t = feature_table(n=40, p=8, seed=1)
    t["site"] = np.where(np.arange(40) < 3, "siteZ", t["site"])
    d = prepare(t, "Survival(months)", "event", family_columns(t, "radiomics"),
                ["age", "IDH-status", "sex"], "site", ["age", "sex", "IDH-status"])
    res = cross_validate(d, ModelSpec(n_alphas=8, inner_splits=5), CVConfig(5),
                         arms=("combined",))
    assert len(res.folds) == 5 and res.folds["harrell"].notna().all()
