"""Tests for the survival analysis (gliocore.analysis.kaplan_meier, cox, groups, screens, survival; and the survival figures of gliocore.analysis.plots) on tiny generated cohorts."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from scipy import stats

from gliocore.errors import CohortError
from gliocore.analysis.cox import cox_ph
from gliocore.analysis.groups import make_groups
from gliocore.analysis.kaplan_meier import kaplan_meier
from gliocore.analysis.screens import benjamini_hochberg, screen_features, screen_splits
from gliocore.analysis.survival import SurvivalWarning, format_number

DUR, EV = "Survival(months)", "event"


@pytest.fixture
def cohort(rng) -> pd.DataFrame:
    """120 subjects; IDH-wildtype and large tumours die sooner; about 25 % censored."""
    n = 120
    idh = rng.choice(["mutant", "wildtype"], size=n)
    vol = rng.lognormal(mean=9.5, sigma=0.6, size=n)
    age = rng.normal(55, 12, size=n)
    lin = 1.2 * (idh == "wildtype") + 0.5 * (np.log(vol) - 9.5) / 0.6
    t = rng.exponential(scale=20 * np.exp(-lin))
    c = rng.uniform(5, 80, size=n)
    return pd.DataFrame({
        "SUBJECT ID": [f"S{i:03d}" for i in range(n)], DUR: np.minimum(t, c),
        EV: (t <= c).astype(int), "IDH-status": idh, "age": age,
        "sex": rng.choice(["F", "M"], size=n), "tumor_volume": vol,
        "noise": rng.normal(size=n),
    })


# ---------------------------------------------------------------- Kaplan–Meier
def test_km_matches_hand_computation():
    df = pd.DataFrame({DUR: [1, 2, 2, 3, 4], EV: [1, 1, 0, 1, 0]})
    res = kaplan_meier(df, DUR, EV, at_risk_times=[0, 2, 3.5])
    # S(1) = 4/5, S(2) = 0.8 * 3/4, S(3) = 0.6 * 1/2
    np.testing.assert_allclose(res.survival_at([0, 1, 1.5, 2, 3, 10]), [1, 0.8, 0.8, 0.6, 0.3, 0.3])
    curve = res.curves["all"]
    assert curve.median == 3.0 and curve.median_reached
    np.testing.assert_array_equal(curve.censor_times, [2, 4])
    np.testing.assert_allclose(curve.censor_survival, [0.6, 0.3])
    assert res.at_risk.loc["all"].tolist() == [5, 4, 1]
    assert res.logrank is None and res.group_col is None


def test_km_curve_shape_and_ci(cohort):
    res = kaplan_meier(cohort, DUR, EV, group_col="IDH-status", alpha=0.1)
    assert res.groups == ("mutant", "wildtype")
    for c in res.curves.values():
        assert c.timeline[0] == 0 and c.survival[0] == 1
        assert np.all(np.diff(c.survival) <= 0)
        assert np.all(c.ci_lower <= c.survival + 1e-12) and np.all(c.survival <= c.ci_upper + 1e-12)
        assert c.censor_times.size == c.n - c.n_events
    assert res.at_risk.iloc[:, 0].tolist() == [res.curves[g].n for g in res.groups]
    assert res.at_risk.shape[0] == 2 and list(res.at_risk.columns) == sorted(res.at_risk.columns)
    med = res.medians
    assert list(med.columns[:3]) == ["n", "events", "median"] and "90% CI" in med["median_text"].iloc[0]


def test_logrank_two_groups_matches_lifelines(cohort):
    res = kaplan_meier(cohort, DUR, EV, group_col="IDH-status")
    a, b = (cohort[cohort["IDH-status"] == g] for g in ("mutant", "wildtype"))
    ref = logrank_test(a[DUR], b[DUR], a[EV], b[EV])
    lr = res.logrank
    assert lr.test_name == "logrank_test" and lr.dof == 1
    assert lr.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert lr.p_value == pytest.approx(ref.p_value, rel=1e-10)
    assert lr.p_value < 0.05  # the simulated IDH effect is strong
    # observed and expected deaths both add up to the total
    assert sum(lr.observed) == cohort[EV].sum() == pytest.approx(sum(lr.expected))
    # the two-group chi-squared equals (O - E)^2 / Var; check O - E signs: wildtype dies more
    assert lr.observed[1] > lr.expected[1]


def test_logrank_three_groups_uses_multivariate(cohort):
    g = make_groups(cohort, "tumor_volume", "tertile")
    df = cohort.assign(grp=g.labels)
    lr = kaplan_meier(df, DUR, EV, group_col="grp").logrank
    ref = multivariate_logrank_test(df[DUR], df["grp"].astype(str), df[EV])
    assert lr.test_name == "multivariate_logrank_test" and lr.dof == 2 and len(lr.groups) == 3
    assert lr.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert lr.p_value == pytest.approx(ref.p_value, rel=1e-10)


def test_tiny_group_and_group_without_events_are_flagged():
    df = pd.DataFrame({DUR: [1, 2, 3, 4, 5, 6, 7, 8], EV: [1, 1, 0, 1, 0, 0, 0, 1],
                       "g": ["a", "a", "a", "a", "b", "b", "b", "c"]})
    with pytest.warns(SurvivalWarning) as rec:
        res = kaplan_meier(df, DUR, EV, group_col="g")
    msgs = " | ".join(str(w.message) for w in rec)
    assert "group 'c' has only 1 subject" in msgs
    assert "no events in group 'b'" in msgs
    assert res.logrank.groups == ("a", "b")  # 'c' left out of the test
    assert res.curves["b"].median == np.inf and not res.curves["b"].median_reached
    assert "NR" in res.medians.loc["b", "median_text"]


def test_logrank_needs_two_groups():
    df = pd.DataFrame({DUR: [1, 2, 3, 4], EV: [1, 1, 0, 1], "g": ["a", "a", "a", "b"]})
    with pytest.warns(SurvivalWarning) as rec:
        res = kaplan_meier(df, DUR, EV, group_col="g")
    assert res.logrank is None
    assert any("log-rank test not computed: 1 group(s)" in str(w.message) for w in rec)


def test_missing_rows_are_excluded_and_counted(cohort):
    df = cohort.copy()
    df.loc[df.index[:3], DUR] = np.nan
    df.loc[df.index[3:5], "IDH-status"] = None
    with pytest.warns(SurvivalWarning, match="5 subject"):
        res = kaplan_meier(df, DUR, EV, group_col="IDH-status")
    assert res.n_excluded == 5
    assert sum(c.n for c in res.curves.values()) == len(df) - 5


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns=[EV]), "not in the table"),
    (lambda d: d.assign(**{EV: 2}), "must be 1 .death observed. or 0"),
    (lambda d: d.assign(**{DUR: -1.0}), "negative durations"),
    (lambda d: d.assign(**{DUR: "soon"}), "non-numeric"),
    (lambda d: d.assign(**{DUR: np.nan}), "no subject has"),
])
def test_bad_input_raises_with_advice(cohort, mutate, match):
    with pytest.raises(CohortError, match=match):
        kaplan_meier(mutate(cohort), DUR, EV)


def test_boolean_event_column_is_accepted(cohort):
    a = kaplan_meier(cohort, DUR, EV)
    b = kaplan_meier(cohort.assign(**{EV: cohort[EV].astype(bool)}), DUR, EV)
    np.testing.assert_array_equal(a.curves["all"].survival, b.curves["all"].survival)


def test_outcome_defined_groups_are_described_never_tested(rng):
    """Short/long groups are made from the outcome: on pure noise a log-rank p would be ~1e-12."""
    n = 200
    t = rng.exponential(scale=12, size=n)
    c = rng.uniform(2, 40, size=n)
    df = pd.DataFrame({DUR: np.minimum(t, c), EV: (t <= c).astype(int), "noise": rng.normal(size=n)})
    g = make_groups(df, DUR, "short_long", threshold=5, event_col=EV)
    assert g.outcome_defined and g.no_test_reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurvivalWarning)
        res = kaplan_meier(df, DUR, EV, group_col=g)
    assert res.logrank is None
    assert "defined by the outcome" in res.no_test_reason
    assert set(res.groups) == {"short (≤ 5)", "long (> 5)"}  # curves and medians are still there
    assert res.medians["n"].sum() == g.labels.notna().sum()
    # the circular test it replaces: what a log-rank test on these groups would say
    lab = g.labels.astype(object)
    a, b = df[lab == "short (≤ 5)"], df[lab == "long (> 5)"]
    assert logrank_test(a[DUR], b[DUR], a[EV], b[EV]).p_value < 1e-10
    # grouping by the event column itself is refused the test too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurvivalWarning)
        assert kaplan_meier(df, DUR, EV, group_col=EV).logrank is None
    # a grouping that is not made from the outcome keeps its test
    m = make_groups(df, "noise", "median")
    assert not m.outcome_defined and m.no_test_reason is None
    res = kaplan_meier(df, DUR, EV, group_col=m)
    assert res.logrank is not None and res.no_test_reason is None and res.logrank.p_value > 1e-4


def test_grouping_must_be_aligned_with_the_table(cohort):
    g = make_groups(cohort, "IDH-status")
    with pytest.raises(ValueError, match="aligned"):
        kaplan_meier(cohort.iloc[5:], DUR, EV, group_col=g)


# ---------------------------------------------------------------- groupings
def test_make_groups_short_long_excludes_early_censoring():
    df = pd.DataFrame({DUR: [2, 4, 5, 5, 6, 7, 3, np.nan], EV: [1, 0, 1, 0, 0, 1, 0, 1]})
    g = make_groups(df, DUR, "short_long", threshold=5)
    lab = g.labels.astype(object).tolist()
    assert lab[:7] == ["short (≤ 5)", np.nan, "short (≤ 5)", np.nan, "long (> 5)", "long (> 5)", np.nan]
    assert pd.isna(lab[7])
    assert g.n_excluded == 4  # censored at 4, 5, 3 and one missing duration
    assert "unknown class" in g.rule


def test_make_groups_median_and_tertile_labels():
    df = pd.DataFrame({"tumor_volume": [1000.0, 5000, 12345, 20000, 30000, 40000, np.nan]})
    g = make_groups(df, "tumor_volume", "median")
    assert list(g.labels.cat.categories) == ["tumor_volume ≤ 16.2k", "tumor_volume > 16.2k"]
    assert g.labels.iloc[:6].value_counts().tolist() == [3, 3] and g.n_excluded == 1
    t = make_groups(df, "tumor_volume", "tertile")
    assert len(t.labels.cat.categories) == 3
    assert t.labels.cat.categories[1].startswith(format_number(df["tumor_volume"].quantile(1 / 3)))
    assert t.labels.value_counts().tolist() == [2, 2, 2]


def test_make_groups_categorical_and_errors(cohort):
    g = make_groups(cohort, "IDH-status")
    assert list(g.labels.cat.categories) == ["mutant", "wildtype"] and g.n_excluded == 0
    with pytest.raises(CohortError, match="not numeric"):
        make_groups(cohort, "sex", "median")
    with pytest.raises(CohortError, match="fewer than two distinct"):
        make_groups(cohort.assign(c=1.0), "c", "median")
    with pytest.raises(ValueError, match="unknown kind"):
        make_groups(cohort, "age", "quartile")


def test_format_number():
    assert format_number(12345) == "12.3k"
    assert format_number(0.1234) == "0.123"
    assert format_number(2.5e6) == "2.5M"
    assert format_number(-1500) == "-1.5k"


# ---------------------------------------------------------------- Cox
def test_cox_categorical_covariate_reference_level(cohort):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurvivalWarning)
        res = cox_ph(cohort, DUR, EV, ["IDH-status", "age"])
        flipped = cox_ph(cohort, DUR, EV, ["IDH-status", "age"],
                         reference_levels={"IDH-status": "wildtype"})
    assert list(res.summary.index) == ["IDH-status=wildtype", "age"]
    assert res.reference_levels == {"IDH-status": "mutant"}
    assert res.summary.loc["IDH-status=wildtype", "HR"] > 1
    assert flipped.summary.loc["IDH-status=mutant", "coef"] == pytest.approx(
        -res.summary.loc["IDH-status=wildtype", "coef"], rel=1e-6)
    s = res.summary
    assert list(s.columns) == ["coef", "HR", "HR_lower", "HR_upper", "se", "z", "p"]
    np.testing.assert_allclose(s["HR"], np.exp(s["coef"]))
    np.testing.assert_allclose(s["HR_lower"], np.exp(s["coef"] - stats.norm.ppf(0.975) * s["se"]))
    np.testing.assert_allclose(s["p"], 2 * stats.norm.sf(np.abs(s["coef"] / s["se"])))
    assert 0.5 < res.concordance <= 1 and res.AIC == pytest.approx(-2 * res.log_likelihood + 2 * 2)
    assert res.lr_test["df"] == 2 and res.lr_test["p"] < 0.05
    assert res.ties == "efron" and res.n == len(cohort) and res.n_dropped == 0


def test_cox_drops_missing_rows_and_reports(cohort):
    df = cohort.copy()
    df.loc[df.index[:4], "age"] = np.nan
    with pytest.warns(SurvivalWarning, match="4 row"):
        res = cox_ph(df, DUR, EV, ["age"])
    assert res.n_dropped == 4 and res.n == len(df) - 4


def test_cox_standardize_gives_hr_per_sd(cohort):
    raw = cox_ph(cohort, DUR, EV, ["tumor_volume", "IDH-status"])
    std = cox_ph(cohort, DUR, EV, ["tumor_volume", "IDH-status"], standardize=True)
    sd = cohort["tumor_volume"].std(ddof=1)
    assert std.summary.loc["tumor_volume", "coef"] == pytest.approx(
        raw.summary.loc["tumor_volume", "coef"] * sd, rel=1e-5)
    # indicators are never rescaled
    assert std.summary.loc["IDH-status=wildtype", "coef"] == pytest.approx(
        raw.summary.loc["IDH-status=wildtype", "coef"], rel=1e-5)
    assert std.standardized == ("tumor_volume",) and raw.standardized == ()


def test_breslow_equals_efron_without_ties(cohort):
    df = cohort.assign(**{DUR: cohort[DUR] + np.arange(len(cohort)) * 1e-7})  # break any ties
    assert not df[DUR].duplicated().any()
    e = cox_ph(df, DUR, EV, ["age", "tumor_volume", "IDH-status"], ties="efron")
    b = cox_ph(df, DUR, EV, ["age", "tumor_volume", "IDH-status"], ties="breslow")
    # lifelines stops its Newton-Raphson at ~1e-6 relative precision; ours runs to 1e-10
    np.testing.assert_allclose(b.summary["coef"], e.summary["coef"], rtol=1e-4)
    np.testing.assert_allclose(b.summary["se"], e.summary["se"], rtol=1e-4)
    assert b.log_likelihood == pytest.approx(e.log_likelihood, rel=1e-8)
    assert b.concordance == pytest.approx(e.concordance, rel=1e-6)
    assert b.lr_test["stat"] == pytest.approx(e.lr_test["stat"], rel=1e-4)
    assert any("Efron fit" in n for n in b.notes)


def test_breslow_penalizer_matches_lifelines_convention(cohort):
    df = cohort.assign(**{DUR: cohort[DUR] + np.arange(len(cohort)) * 1e-7})
    b = cox_ph(df, DUR, EV, ["age", "tumor_volume"], ties="breslow", penalizer=0.3)
    ref = CoxPHFitter(penalizer=0.3).fit(df[[DUR, EV, "age", "tumor_volume"]], DUR, EV)
    np.testing.assert_allclose(b.summary["coef"], ref.params_, rtol=1e-5)


def test_breslow_differs_from_efron_with_ties(cohort):
    df = cohort.assign(**{DUR: np.ceil(cohort[DUR] / 6)})  # coarse follow-up: many ties
    e = cox_ph(df, DUR, EV, ["IDH-status"], ties="efron")
    b = cox_ph(df, DUR, EV, ["IDH-status"], ties="breslow")
    # Breslow shrinks towards 0 with heavy ties
    assert abs(b.params.iloc[0]) < abs(e.params.iloc[0])


def test_ph_test_detects_crossing_hazards(rng):
    n = 400
    x = np.r_[np.zeros(n // 2), np.ones(n // 2)]
    t = np.where(x == 1, rng.weibull(4.0, n) * 10, rng.weibull(0.6, n) * 10)  # survival curves cross
    df = pd.DataFrame({DUR: t, EV: 1, "x": x, "z": rng.normal(size=n)})
    res = cox_ph(df, DUR, EV, ["x", "z"])
    assert res.ph_test.loc["x", "p"] < 0.001
    assert res.ph_verdict.startswith("PH assumption violated at 0.05 for: x")
    ok = cox_ph(df.assign(**{DUR: rng.exponential(size=n)}), DUR, EV, ["z"])
    if ok.ph_test.loc["z", "p"] >= 0.05:
        assert ok.ph_verdict == "PH assumption not rejected at 0.05"


def test_cox_errors(cohort):
    with pytest.raises(CohortError, match="no events"):
        cox_ph(cohort.assign(**{EV: 0}), DUR, EV, ["age"])
    with pytest.raises(CohortError, match="constant"):
        cox_ph(cohort.assign(k=3.0), DUR, EV, ["age", "k"])
    with pytest.raises(CohortError, match="reference level"):
        cox_ph(cohort, DUR, EV, ["IDH-status"], reference_levels={"IDH-status": "IDH1"})
    with pytest.raises(ValueError, match="ties"):
        cox_ph(cohort, DUR, EV, ["age"], ties="exact")
    with pytest.raises(ValueError, match="no covariates"):
        cox_ph(cohort, DUR, EV, [])


# ---------------------------------------------------------------- feature screen + BH
def test_benjamini_hochberg_known_values():
    p = [0.005, 0.009, 0.019, 0.022, 0.051, 0.101, 0.361, 0.387]
    # R: p.adjust(p, "BH")
    want = [0.036, 0.036, 0.044, 0.044, 0.0816, 0.1346667, 0.387, 0.387]
    np.testing.assert_allclose(benjamini_hochberg(p), want, rtol=1e-6)
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05] * 5)
    # order of the input is kept, NaN passes through and does not count towards m
    np.testing.assert_allclose(benjamini_hochberg([0.04, np.nan, 0.01]), [0.04, np.nan, 0.02])
    assert benjamini_hochberg([0.9, 0.95]).max() <= 1.0
    with pytest.raises(ValueError):
        benjamini_hochberg([1.2])


def test_benjamini_hochberg_matches_scipy(rng):
    p = rng.uniform(size=200) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"))


def test_screen_features(cohort):
    df = cohort.copy()
    df["empty_ish"] = np.nan
    df.loc[df.index[:1], "empty_ish"] = 1.0
    res = screen_features(df, DUR, EV, ["age", "tumor_volume", "noise", "empty_ish"])
    assert list(res.columns) == ["n", "events", "HR_per_SD", "HR_lower", "HR_upper", "p", "q", "note"]
    assert res.index[0] == "tumor_volume" and res.loc["tumor_volume", "HR_per_SD"] > 1
    fitted = res["p"].notna()
    assert (res.loc[fitted, "q"] >= res.loc[fitted, "p"] - 1e-15).all()
    np.testing.assert_allclose(res.loc[fitted, "q"], benjamini_hochberg(res.loc[fitted, "p"]))
    assert np.isnan(res.loc["empty_ish", "p"]) and "constant" in res.loc["empty_ish", "note"]


# ---------------------------------------------------------------- figures
def test_km_figure(cohort):
    from gliocore.analysis.plots import forest_figure, km_figure

    res = kaplan_meier(cohort, DUR, EV, group_col="IDH-status")
    fig = km_figure(res)
    assert "log-rank" in fig.layout.title.text and "p" in fig.layout.title.text
    names = [t.name for t in fig.data]
    assert any(n and n.startswith("mutant (n=") for n in names)
    text_traces = [t for t in fig.data if t.mode == "text"]
    assert len(text_traces) == 2  # number-at-risk rows
    assert [int(v) for v in text_traces[0].text] == res.at_risk.loc["mutant"].tolist()
    assert any(t.marker.symbol == "line-ns-open" for t in fig.data if t.mode == "markers")

    cox = cox_ph(cohort, DUR, EV, ["IDH-status", "tumor_volume"], standardize=True)
    ff = forest_figure(cox)
    assert ff.layout.xaxis.type == "log" and "tumor_volume (per SD)" in ff.data[0].y
    assert "reference mutant" in ff.layout.annotations[0].text


# ---------------------------------------------------------------- split family (issue 8 point 14)
@pytest.mark.parametrize("kind", ["median", "tertile"])
def test_screen_splits_adjusts_over_every_split_offered(cohort, rng, kind):
    noise = pd.DataFrame(rng.normal(size=(len(cohort), 30)),
                         columns=[f"noise{i}" for i in range(30)], index=cohort.index)
    df = pd.concat([cohort, noise], axis=1).assign(constant=1.0)
    family = ["tumor_volume", "age", *noise.columns, "constant"]
    res = screen_splits(df, DUR, EV, family, kind=kind)
    assert set(res.index) == set(family)
    # the p of each split is the one the KM view shows for it
    for v in ("tumor_volume", "noise3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SurvivalWarning)
            km = kaplan_meier(df, DUR, EV, group_col=make_groups(df, v, kind))
        assert res.loc[v, "p"] == pytest.approx(km.logrank.p_value, rel=1e-12)
        assert res.loc[v, "groups"] == (2 if kind == "median" else 3)
    # q is Benjamini–Hochberg over the splits with a test; an unsplittable variable has none
    assert np.isnan(res.loc["constant", "p"]) and "fewer than two distinct" in res.loc["constant", "note"]
    tested = res["p"].notna()
    np.testing.assert_allclose(res.loc[tested, "q"], benjamini_hochberg(res.loc[tested, "p"]))
    assert (res.loc[tested, "q"] >= res.loc[tested, "p"] - 1e-15).all()
    assert tested.sum() == len(family) - 1
    assert list(res.index[tested]) == list(res.loc[tested].sort_values("p").index)  # sorted by p


def test_screen_splits_checks_its_input(cohort):
    with pytest.raises(ValueError, match="'median' or 'tertile'"):
        screen_splits(cohort, DUR, EV, ["age"], kind="quartile")
    with pytest.raises(ValueError, match="no variables"):
        screen_splits(cohort, DUR, EV, [])
    with pytest.raises(CohortError, match="not in the table"):
        screen_splits(cohort, DUR, EV, ["nope"])
