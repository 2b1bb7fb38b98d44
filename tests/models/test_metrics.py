"""Harrell's and Uno's C, time-dependent AUC and Brier scores against scikit-survival 0.28 on the
data sets it ships (GBSG2, veterans, WHAS500)."""
from __future__ import annotations

import numpy as np
import pytest

from gliocore.models import metrics as M

sksurv = pytest.importorskip("sksurv")
from sksurv import datasets, metrics as R  # noqa: E402

LOADERS = [datasets.load_gbsg2, datasets.load_veterans_lung_cancer, datasets.load_whas500]


@pytest.fixture(params=LOADERS, ids=lambda f: f.__name__)
def data(request):
    X, y = request.param()
    ev, tm = y.dtype.names
    num = X.select_dtypes("number").to_numpy(float)
    risk = np.round(num @ np.random.default_rng(0).normal(size=num.shape[1]))  # with ties
    times = np.percentile(y[tm][y[ev]], [20, 40, 60, 75])
    surv = (1 / (1 + np.exp(-(risk - risk.mean()) / (risk.std() + 1))))[:, None] * \
        np.linspace(0.9, 0.5, len(times))
    return y, y[tm].astype(float), y[ev], risk, times, surv


def test_harrell(data):
    y, t, e, risk, *_ = data
    assert M.harrell_c(t, e, risk) == pytest.approx(R.concordance_index_censored(e, t, risk)[0], abs=1e-12)


def test_uno(data):
    y, t, e, risk, *_ = data
    tau = np.percentile(t, 80)
    assert M.uno_c(t, e, t, e, risk, tau) == pytest.approx(
        R.concordance_index_ipcw(y, y, risk, tau)[0], abs=1e-10)


def test_time_auc(data):
    y, t, e, risk, times, _ = data
    assert np.allclose(M.time_auc(t, e, t, e, risk, times),
                       R.cumulative_dynamic_auc(y, y, risk, times)[0], atol=1e-10)


def test_brier_and_integrated(data):
    y, t, e, _, times, surv = data
    assert np.allclose(M.brier(t, e, t, e, surv, times), R.brier_score(y, y, surv, times)[1],
                       atol=1e-10)
    assert M.integrated_brier(t, e, t, e, surv, times) == pytest.approx(
        R.integrated_brier_score(y, y, surv, times), abs=1e-10)


def test_kaplan_meier_and_calibration():
    from sksurv.nonparametric import kaplan_meier_estimator
    X, y = datasets.load_veterans_lung_cancer()
    e, t = y["Status"], y["Survival_in_days"].astype(float)
    ut, s = kaplan_meier_estimator(e, t)
    assert np.allclose(M.KaplanMeier.fit(t, e)(ut), s)
    perfect = M.KaplanMeier.fit(t, e)(100.0) * np.ones(len(t))
    cal = M.calibration_at(t, e, perfect + np.linspace(-1e-6, 1e-6, len(t)), 100.0, n_groups=1)
    assert cal["observed"].iloc[0] == pytest.approx(cal["predicted"].iloc[0], abs=1e-5)


def test_calibration_interval_covers_the_truth_and_narrows_with_n():
    """Exponential survival with known S(h): perfect predictions sit inside the groups'
    bootstrap intervals (most groups), every interval contains its estimate, and the intervals
    narrow as the groups grow."""
    def sample(n, seed):
        rng = np.random.default_rng(seed)
        rate = np.exp(rng.normal(0, 0.8, n)) / 20.0
        T, C = rng.exponential(1 / rate), rng.uniform(5, 60, n)
        return np.minimum(T, C), T <= C, np.exp(-rate * 12.0)
    widths = []
    for n in (200, 2000):
        t, e, s12 = sample(n, n)
        cal = M.calibration_at(t, e, s12, 12.0, n_boot=200, seed=1)
        assert (cal["observed_lo"] <= cal["observed"]).all()
        assert (cal["observed"] <= cal["observed_hi"]).all()
        inside = (cal["observed_lo"] <= cal["predicted"]) & (cal["predicted"] <= cal["observed_hi"])
        assert inside.sum() >= 4
        widths.append((cal["observed_hi"] - cal["observed_lo"]).mean())
    assert widths[1] < 0.5 * widths[0]
    assert M.calibration_at(t, e, s12, 12.0, n_boot=0)["observed_lo"].isna().all()
    assert M.calibration_at(t, e, s12, 12.0, seed=3).equals(M.calibration_at(t, e, s12, 12.0, seed=3))
