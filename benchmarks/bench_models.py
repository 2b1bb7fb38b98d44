"""Survival models: wall time of the Models page's nested cross-validation (issue 22).

Usage::

    python benchmarks/bench_models.py [--n 262] [--p 400] [--outer 5] [--inner 5] [--repeats 1]
                                      [--rsf] [--threads 2]

A synthetic feature table (:func:`gliocore.models.synthetic.feature_table`: three sites with
scanner effects, a modest signal in five features) of ``--n`` subjects × ``--p`` features, then
the nested CV the page runs: clinical Cox, elastic-net Cox signature and clinical + signature,
each with ComBat, imputation and scaling fitted in every outer training part and the penalty by
an inner CV. Prints the wall time per arm-fold and in total (target: ≤ 20 s on 2 cores), and
the pure-noise variant's signature C and gain, as a sanity line.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=262)
    ap.add_argument("--p", type=int, default=400)
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--rsf", action="store_true", help="also time the random survival forest")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from gliocore.models.data import family_columns, prepare
    from gliocore.models.estimators import ModelSpec
    from gliocore.models.synthetic import feature_table
    from gliocore.models.validate import CVConfig, cross_validate, summarise

    t0 = time.perf_counter()
    import sksurv.linear_model  # noqa: F401  (import time, reported apart)
    t_import = time.perf_counter() - t0
    cfg = CVConfig(args.outer, args.repeats, (12.0, 24.0), 0)
    kinds = ["coxnet"] + (["rsf"] if args.rsf else [])
    for signal in (0.6, 0.0):
        table = feature_table(n=args.n, p=args.p, signal=signal, seed=1)
        d = prepare(table, "Survival(months)", "event", family_columns(table, "radiomics"),
                    ["age", "IDH-status", "sex"], "site", ["age", "sex", "IDH-status"])
        for kind in kinds:
            spec = ModelSpec(kind=kind, inner_splits=args.inner)
            with threadpool_limits(args.threads):
                t0 = time.perf_counter()
                res = cross_validate(d, spec, cfg)
                wall = time.perf_counter() - t0
            s = summarise(res.folds).set_index(["arm", "metric"])["mean"]
            fits = len(res.folds)
            print(f"{kind:6s} signal {signal:.1f}: {args.n} x {args.p}, {res.scheme}: "
                  f"{wall:.1f} s total ({wall / fits:.2f} s per arm-fold, {fits} arm-folds); "
                  f"Harrell C clinical {s[('clinical', 'harrell')]:.3f}, signature "
                  f"{s[('signature', 'harrell')]:.3f}, combined {s[('combined', 'harrell')]:.3f}; "
                  f"gain {res.gain():+.3f}")
    print(f"scikit-survival import: {t_import:.1f} s (once per process, before the first run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
