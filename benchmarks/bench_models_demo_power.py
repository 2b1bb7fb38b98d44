"""Survival models: can the Models page find the image demo's radiomic signal? (issue 22)

Usage::

    python -m gliocore --data-dir D process --demo --n-subjects 60 --no-location
    python -m gliocore --data-dir D export D/features.csv
    python benchmarks/bench_models_demo_power.py D/features.csv [--n 30 60] [--draws 12]
                                                 [--effects 0 0.7 1.4]

Keeps the demo's features, IDH status, age, sex and site, and redraws its survival
(:func:`gliocore.cohort.synth.simulate_clinical`, measured tumour volume in place of the true
one) ``--draws`` times per volume effect (log hazard ratio per log volume; the demo's is 0.7, 0
is its noise-only outcome), then runs the page's default analysis (elastic-net Cox on the full
family, age + IDH + sex, ComBat over the site, 5 × 5 nested CV) on the first ``--n`` subjects.
Prints, per size and effect, the mean and SD of the gain of clinical + signature over clinical
(Harrell's C) over the draws, the share of draws with a positive gain, and the signature's C.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", help="the demo's export (CSV)")
    ap.add_argument("--n", type=int, nargs="+", default=[30, 60])
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--effects", type=float, nargs="+", default=[0.0, 0.7, 1.4])
    args = ap.parse_args()
    import numpy as np
    import pandas as pd
    from gliocore.cohort.synth import simulate_clinical
    from gliocore.models.data import family_columns, prepare
    from gliocore.models.estimators import ModelSpec
    from gliocore.models.validate import CVConfig, cross_validate
    table = pd.read_csv(args.features)
    for n in args.n:
        feat = table.iloc[:n]
        family = family_columns(feat, "radiomics")
        volume = np.maximum(feat["tumor_volume"].to_numpy(float), 1.0)
        for effect in args.effects:
            gains, sig = [], []
            for draw in range(args.draws):
                t = feat.copy()
                rng = np.random.default_rng(np.random.SeedSequence([draw, 104729]))
                cl = simulate_clinical(volume, rng, idh_status=t["IDH-status"], age=t["age"],
                                       sex=t["sex"], log_hr_per_log_volume=effect)
                t["Survival(months)"] = cl["Survival(months)"].to_numpy()
                t["event"] = cl["event"].to_numpy()
                d = prepare(t, "Survival(months)", "event", family, ["age", "IDH-status", "sex"],
                            "site", ["age", "sex", "IDH-status"])
                res = cross_validate(d, ModelSpec(), CVConfig(5, 1, (12.0, 24.0), 0))
                gains.append(res.gain())
                sig.append(res.folds.query("arm == 'signature'")["harrell"].mean())
            g = np.array(gains)
            print(f"n {n:3d}, volume effect {effect:.1f}: gain {g.mean():+.3f} (SD {g.std():.3f}),"
                  f" positive in {(g > 0).mean():.0%} of {len(g)} draws; signature C "
                  f"{np.mean(sig):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
