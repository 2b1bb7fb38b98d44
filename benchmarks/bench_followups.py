"""Cost of the demo's follow-up scans next to its baseline subjects, measured in the same run.

Usage: ``.venv/bin/python benchmarks/bench_followups.py [--n 3] [--shape 240 240 155]``

Prints seconds per baseline subject (``synth.generate_demo_cohort``), per follow-up scan
(``synth.generate_followups``) and per scan processed (baseline backend + radiomics), and the
number of scans the follow-ups add. The machine's load is printed too: timings are noisy.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155))
    args = ap.parse_args()
    from gliocore.cohort import synth
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        csv = synth.generate_demo_cohort(root, n_subjects=args.n, seed=0, shape=tuple(args.shape))
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        synth.generate_followups(root, seed=0)
        t_fu = time.perf_counter() - t0
        cohort = load_cohort(csv)
        n_fu = len(cohort.scans) - len(cohort.subjects)
        t0 = time.perf_counter()
        summary = process_cohort(cohort, Store(root / "s.duckdb"))
        t_proc = time.perf_counter() - t0
    print(f"baseline generation: {t_base / args.n:.1f} s per subject ({args.n} subjects)")
    if n_fu:
        print(f"follow-up generation: {t_fu / n_fu:.1f} s per scan ({n_fu} follow-ups, "
              f"ratio to a baseline subject {t_fu / n_fu / (t_base / args.n):.2f})")
    print(f"processing: {t_proc / len(cohort.scans):.1f} s per scan ({len(cohort.scans)} scans, "
          f"{len(summary.errors)} errors)")


if __name__ == "__main__":
    main()
