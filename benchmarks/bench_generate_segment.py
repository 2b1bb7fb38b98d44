"""Seconds per subject for demo generation and baseline segmentation at full size.

Usage: ``python benchmarks/bench_generate_segment.py [N_SUBJECTS]`` (default 3). Also prints the
baseline's Dice per label against the generator's truth.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gliocore.cohort import synth  # noqa: E402
from gliocore.cohort.loading import load_cohort  # noqa: E402
from gliocore.cohort.subjects import load_subject_images  # noqa: E402
from gliocore.imaging.io import load_volume  # noqa: E402
from gliocore.segment import get_segmenter  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denom = int(a.sum()) + int(b.sum())
    return float("nan") if denom == 0 else 2.0 * float((a & b).sum()) / denom


def main(n: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        csv = synth.generate_demo_cohort(Path(tmp), n_subjects=n, seed=0)
        t_gen = (time.perf_counter() - t0) / n
        cohort = load_cohort(csv)
        seg = get_segmenter("baseline")
        seg.load()
        times = []
        for subject in cohort.subjects:
            images = load_subject_images(subject)
            t0 = time.perf_counter()
            mask = seg.segment(subject, images)
            times.append(time.perf_counter() - t0)
            ref = load_volume(subject.reference_mask, dtype=None).data
            print(f"{subject.subject_id}: segment {times[-1]:.2f} s  Dice CE "
                  f"{dice(mask == 1, ref == 1):.3f}  NE {dice(mask == 2, ref == 2):.3f}  "
                  f"WT {dice(mask > 0, ref > 0):.3f}  (CE {int((ref == 1).sum()) / 1e3:.1f} cm³)")
    print(f"generation (incl. writing NIfTI): {t_gen:.2f} s/subject")
    print(f"baseline segmentation: {np.mean(times):.2f} s/subject")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
