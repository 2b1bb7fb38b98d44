"""Write the data sets scikit-survival ships (GBSG2, veterans, WHAS500) as CSV for
``reference.R``, with the fixed inputs every reference value is computed from.

Each ``<name>.csv`` has ``time``, ``event`` (0/1), ``risk`` (a fixed score with ties: a rounded
random linear combination of the numeric columns), ``x1 … xp`` (the design matrix: numeric
columns and one-hot categories, standardised with the population SD, for glmnet and
scikit-survival's Coxnet) and ``s1 … sK`` (fixed predicted survival at the K times of
``<name>_times.csv``, for the Brier score). Dev-time only: CI reads the JSON that ``reference.R``
writes and recomputes these inputs with :func:`inputs`.

Usage: ``python scripts/r_reference/export_datasets.py OUTDIR``
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

NAMES = {"gbsg2": "load_gbsg2", "veterans": "load_veterans_lung_cancer", "whas500": "load_whas500"}
#: Brier times: this many points between the 10th and 80th percentile of the event times.
N_TIMES = 12


def inputs(name: str, untied: bool = False) -> dict:
    """The fixed inputs of one data set: time, event, risk, standardised design X (DataFrame),
    Brier times and predicted survival at them (n × len(times)).

    With ``untied`` every time gets a distinct offset below half a unit ((i + 1) / (2 (n + 1))
    for row i), which keeps the order of distinct times and breaks every tie: R's ``survival``,
    ``pec`` and ``riskRegression`` weight an event by the censoring survival just before it,
    G(T-), scikit-survival and GlioScope by G(T); the two differ only where a censoring shares
    an event's time, so on untied data they must agree to rounding."""
    from sksurv import datasets
    from sksurv.column import encode_categorical
    X, y = getattr(datasets, NAMES[name])()
    ev, tm = y.dtype.names
    time, event = y[tm].astype(float), y[ev].astype(bool)
    if untied:
        time = time + (np.arange(len(time)) + 1) / (2 * (len(time) + 1))
    num = X.select_dtypes("number").to_numpy(float)
    risk = np.round(num @ np.random.default_rng(0).normal(size=num.shape[1]))  # with ties
    design = encode_categorical(X).astype(float)
    design = (design - design.mean()) / design.std(ddof=0)
    design.columns = [f"x{j + 1}" for j in range(design.shape[1])]
    times = np.linspace(*np.percentile(time[event], [10, 80]), N_TIMES)
    lp = 0.5 * (risk - risk.mean()) / risk.std()
    km = _km(time, event, times)
    surv = km[None, :] ** np.exp(lp)[:, None]
    return {"time": time, "event": event, "risk": risk, "X": design, "times": times, "surv": surv}


def _km(time, event, at):
    uniq = np.unique(time[event])
    s = np.cumprod([1 - np.sum((time == t) & event) / np.sum(time >= t) for t in uniq])
    idx = np.searchsorted(uniq, at, side="right") - 1
    return np.r_[1.0, s][idx + 1]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, untied in [(n, u) for n in NAMES for u in (False, True)]:
        d = inputs(name, untied)
        name = f"{name}_untied" if untied else name
        table = pd.DataFrame({"time": d["time"], "event": d["event"].astype(int), "risk": d["risk"]})
        surv = pd.DataFrame(d["surv"], columns=[f"s{k + 1}" for k in range(len(d["times"]))])
        pd.concat([table, d["X"], surv], axis=1).to_csv(out / f"{name}.csv", index=False,
                                                         float_format="%.17g")
        pd.DataFrame({"time": d["times"]}).to_csv(out / f"{name}_times.csv", index=False,
                                                   float_format="%.17g")
        print(f"{name}: {len(table)} subjects, {d['X'].shape[1]} design columns, {len(np.unique(d['time']))} distinct times")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "r_reference_data"))
