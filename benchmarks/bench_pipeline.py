"""Seconds per subject for each pipeline stage on the demo cohort.

Usage: python benchmarks/bench_pipeline.py [--n 5] [--workers 2]

Prints, per stage, mean seconds per subject (single process, measured stage by stage on the
first N demo subjects), then the wall time of a full `process_cohort` into a fresh store with
the given workers, and of a second, fully cached run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gliocore.features import radiomics  # noqa: E402
from gliocore.cli import ensure_demo  # noqa: E402
from gliocore.cohort.loading import load_cohort  # noqa: E402
from gliocore.cohort.subjects import load_subject_images  # noqa: E402
from gliocore.pipeline.context import ProcessingConfig  # noqa: E402
from gliocore.pipeline.runner import process_cohort  # noqa: E402
from gliocore.segment import get_segmenter  # noqa: E402
from gliocore.settings import Settings  # noqa: E402
from gliocore.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5, help="subjects timed stage by stage")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    settings = Settings.from_env()
    t0 = time.perf_counter()
    csv = ensure_demo(settings, quiet=True, workers=args.workers)
    print(f"demo cohort ready in {time.perf_counter() - t0:.1f} s ({csv})")
    cohort = load_cohort(csv, csv.parent, name="demo")
    seg = get_segmenter("baseline")
    seg.load()
    times: dict[str, list[float]] = {"load (4 volumes)": [], "segment (baseline)": [],
                                     "features (seed set)": []}
    for subj in cohort.subjects[: args.n]:
        t = time.perf_counter()
        images = load_subject_images(subj)
        times["load (4 volumes)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        mask = seg.segment(subj, images)
        times["segment (baseline)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        radiomics.extract_features(images, mask, next(iter(images.values())).affine)
        times["features (seed set)"].append(time.perf_counter() - t)
    print(f"\nper subject, one process, first {args.n} demo subjects (240x240x155):")
    for stage, ts in times.items():
        print(f"  {stage:<22} {np.mean(ts):6.2f} s  (min {np.min(ts):.2f}, max {np.max(ts):.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        cfg = ProcessingConfig(workers=args.workers, output_dir=Path(tmp) / "seg")
        t = time.perf_counter()
        s1 = process_cohort(cohort, store, cfg)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        s2 = process_cohort(cohort, store, cfg)
        warm = time.perf_counter() - t
    n = len(cohort.subjects)
    print(f"\nfull process_cohort, {n} subjects, {args.workers} workers:")
    print(f"  cold: {cold:6.1f} s total, {cold / n:.2f} s per subject "
          f"({len(s1.computed)} computed, {len(s1.errors)} errors)")
    print(f"  warm: {warm:6.2f} s total ({len(s2.cached)} from cache)")


if __name__ == "__main__":
    main()
