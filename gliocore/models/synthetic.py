"""Feature tables with known structure, for tests, benchmarks and the CLI's ``--synthetic``:
sites with scanner effects on intensity-like features, survival driven by age and IDH, plus
(optionally) a modest signal carried by a few features."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["feature_table", "SIGNAL_FEATURES", "DEMO_TABLES", "demo_table"]

#: How many features carry the signal (the first ones of each table).
SIGNAL_FEATURES = 5
#: The synthetic tables the Models page offers beside the cohort (262 subjects x 400 features,
#: three sites): variant -> log hazard ratio of the signal. The image demo (30 subjects) is too
#: small for a modest signal to show beyond age and IDH under nested CV; these are not.
DEMO_TABLES = {"signal": 0.5, "noise": 0.0}


def feature_table(n: int = 262, p: int = 400, n_sites: int = 3, signal: float = 0.5,
                  site_effect: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A wide table like GlioScope's export: ``SUBJECT ID``, ``Survival(months)``, ``event``,
    ``age``, ``sex``, ``IDH-status``, ``site``, ``diagnosis_date`` (2010–2020, for temporal
    validation) and ``p`` feature columns ``feat{j}_label1``.

    Parameters
    ----------
    signal : float
        Log hazard ratio per SD of the mean of the first :data:`SIGNAL_FEATURES` features
        (0 = pure noise: the features tell nothing about survival).
    site_effect : float
        Site shift (in SDs) and log scale factor on the first half of the features, which behave
        like intensities; the other half are site-free (like shape).
    """
    if n < 10 or p < SIGNAL_FEATURES or n_sites < 1:
        raise ValueError("need n >= 10, p >= 5 and at least one site")
    rng = np.random.default_rng(seed)
    site = rng.integers(0, n_sites, n)
    mutant = rng.random(n) < 0.35
    age = np.clip(np.where(mutant, rng.normal(39, 10, n), rng.normal(61, 11, n)), 18, 90).round()
    sex = np.where(rng.random(n) < 0.6, "M", "F")
    latent = rng.normal(size=(n, p))
    latent[:, :SIGNAL_FEATURES] += 0.3 * rng.normal(size=(n, 1))  # a correlated block
    z = latent[:, :SIGNAL_FEATURES].mean(axis=1)
    z = (z - z.mean()) / z.std()
    lp = 0.3 * (age - 50) / 10 + 1.2 * (~mutant) + signal * z
    T = 60.0 * rng.weibull(1.3, n) * np.exp(-lp / 1.3)
    C = rng.uniform(12, 72, n)
    X = latent.copy()
    shift = rng.normal(0, site_effect, (n_sites, p))
    scale = np.exp(rng.normal(0, 0.3 * site_effect, (n_sites, p)))
    half = p // 2
    X[:, :half] = X[:, :half] * scale[site, :half] + shift[site, :half]
    X = 100 + 10 * X
    table = pd.DataFrame(X, columns=[f"feat{j}_label1" for j in range(p)])
    # drawn last, so the other columns are those of tables made before it existed
    diagnosed = np.datetime64("2010-01-01") + rng.integers(0, 11 * 365, n).astype("timedelta64[D]")
    front = pd.DataFrame({
        "SUBJECT ID": [f"S{i:04d}" for i in range(n)],
        "Survival(months)": np.round(np.minimum(T, C), 2) + 0.01, "event": (T <= C).astype(int),
        "age": age.astype(int), "sex": sex,
        "IDH-status": np.where(mutant, "mutant", "wildtype"),
        "site": [f"site{chr(65 + s)}" for s in site],
        "diagnosis_date": pd.to_datetime(diagnosed).strftime("%Y-%m-%d")})
    return pd.concat([front, table], axis=1)


def demo_table(variant: str) -> pd.DataFrame:
    """The Models page's synthetic table: ``"signal"`` (a modest signal in 5 of 400 features,
    log HR 0.5 per SD, beyond age and IDH) or ``"noise"`` (none); both with site effects."""
    if variant not in DEMO_TABLES:
        raise ValueError(f"unknown synthetic table {variant!r}; choose from {', '.join(DEMO_TABLES)}")
    return feature_table(signal=DEMO_TABLES[variant], seed=0)
