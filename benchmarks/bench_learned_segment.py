"""Seconds and peak memory of the learned backend on one real 240 x 240 x 155 case.

Runs :class:`gliocore.segment.learned.LearnedSegmenter` (the shipped final model; ``--backend
stacked``: the stacked one, rules included) exactly as the pipeline does, on a BraTS 2018 case from ``../shared/cases`` (default Brats18_TCIA01_201_1),
with the thread pools limited to ``--threads`` (default 2, the issue's budget: ≤ 30 s and
≤ 2 GiB on 2 cores). Prints load, feature, total seconds and the process's peak resident
memory and the 1-minute load average before and after. Run it alone: on a shared machine,
other jobs' load inflates the seconds.

Usage::

    .venv/bin/python benchmarks/bench_learned_segment.py [--case NAME] [--threads 2] [--repeat 2] [--backend stacked]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="Brats18_TCIA01_201_1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backend", default="learned", choices=("learned", "stacked"))
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(ROOT))
    import resource
    import time

    from gliocore.cohort.loading import Subject
    from gliocore.cohort.naming import find_sequences, get_naming
    from gliocore.cohort.subjects import load_subject_images
    from gliocore.segment import get_segmenter
    from gliocore.segment.learned_features import SEQUENCES, compute_features

    shared = ROOT.parent / "shared" / "cases"
    folder = next(p for sub in ("brats18-dev", "brats18-train")
                  for p in (shared / sub).glob(args.case))
    paths, _ = find_sequences(folder, args.case, get_naming("brats"))
    subject = Subject(args.case, paths, folder)
    t0 = time.perf_counter()
    images = load_subject_images(subject)
    print(f"case {args.case} {images['t1'].shape}, {args.threads} threads, "
          f"load {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"load average before {os.getloadavg()[0]:.2f}", flush=True)
    seg = get_segmenter(args.backend)
    t0 = time.perf_counter()
    seg.load()
    print(f"model load {time.perf_counter() - t0:.2f} s", flush=True)
    ref = images["flair"]
    for i in range(args.repeat):
        t0 = time.perf_counter()
        compute_features([images[s].data for s in SEQUENCES], ref.spacing, 0)
        t_feat = time.perf_counter() - t0
        t0 = time.perf_counter()
        mask = seg.segment(subject, images)
        total = time.perf_counter() - t0
        print(f"run {i + 1}: features {t_feat:.1f} s, segment (features + trees + clean-up) "
              f"{total:.1f} s, {int((mask > 0).sum()) / 1000:.0f} cm³ of tumour", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}", flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
