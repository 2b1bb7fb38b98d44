"""Preprocessing per scan: time (wall and CPU) and peak memory of each step, brain-mask quality.

Usage::

    PYTHONPATH=. python benchmarks/bench_preprocess.py [--shared ../shared] [--threads 2]
                                                       [--backends hdbet deepbet]

Needs ../shared and the optional weights (requirements-preprocess.txt). Measures, in this process:

* the raw study ``cases/raw/TCGA-FG-6692`` (skull, four grids, 5.5 mm slices): N4 of each
  sequence, rigid co-registration of T1, T2 and FLAIR to T1c (with mutual information before
  and after), brain extraction on T1c with each backend (volume in ml);
* the BraTS cases in ``cases/brats18-dev`` (already brain-only): brain-mask Dice against the
  non-zero region and the share of tumour voxels kept, per backend.

Prints a Markdown table. CPU seconds are the process's (all threads); on a shared machine the
wall time depends on the load, CPU time much less.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gliocore.preprocess.bias import n4_correct
from gliocore.preprocess.brain import extract_brain
from gliocore.preprocess.coregister import register_rigid


def timed(fn, *a, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    return out, time.perf_counter() - w, time.process_time() - c


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def raw_study(shared: Path, backends: list[str], threads: int) -> list[str]:
    base = shared / "cases" / "raw" / "TCGA-FG-6692" / "TCGA-FG-6692"
    imgs = {s: sitk.ReadImage(f"{base}_{s}.nii.gz", sitk.sitkFloat32)
            for s in ("t1", "t1c", "t2", "flair")}
    rows = []
    n4 = {}
    for s, im in imgs.items():
        (n4[s], _), w, c = timed(n4_correct, im)
        rows.append(f"| TCGA-FG-6692 | N4 {s} | {w:.1f} | {c:.1f} | {peak_gib():.2f} | |")
    for s in ("t1", "t2", "flair"):
        reg, w, c = timed(register_rigid, n4["t1c"], n4[s])
        rows.append(f"| TCGA-FG-6692 | rigid {s} -> t1c | {w:.1f} | {c:.1f} | {peak_gib():.2f} | "
                    f"MI {reg.mi_before:.3f} -> {reg.mi_after:.3f}, {reg.rotation_deg:.1f} deg, "
                    f"{reg.translation_mm:.1f} mm |")
    for b in backends:
        res, w, c = timed(extract_brain, n4["t1c"], b, threads=threads)
        rows.append(f"| TCGA-FG-6692 | brain {res.model} | {w:.1f} | {c:.1f} | {peak_gib():.2f} | "
                    f"{res.volume_ml:.0f} ml |")
    return rows


def brats_cases(shared: Path, backends: list[str], threads: int) -> list[str]:
    rows = []
    for case in sorted(p for p in (shared / "cases" / "brats18-dev").iterdir() if p.is_dir()):
        base = case / case.name
        img = sitk.ReadImage(f"{base}_t1ce.nii.gz")
        nonzero = sitk.GetArrayFromImage(img) > 0
        tumour = sitk.GetArrayFromImage(sitk.ReadImage(f"{base}_seg.nii.gz")) > 0
        for b in backends:
            res, w, c = timed(extract_brain, img, b, threads=threads)
            m = sitk.GetArrayFromImage(res.mask).astype(bool)
            dice = 2 * (m & nonzero).sum() / (m.sum() + nonzero.sum())
            kept = (m & tumour).sum() / max(1, tumour.sum())
            rows.append(f"| {case.name} | brain {res.model} | {w:.1f} | {c:.1f} | "
                        f"{peak_gib():.2f} | Dice vs non-zero {dice:.4f}, tumour kept {kept:.4f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["hdbet", "deepbet"])
    ap.add_argument("--skip-brats", action="store_true")
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    shared = Path(args.shared)
    print("| case | step | wall s | CPU s | peak GiB | result |\n|---|---|---|---|---|---|")
    for row in raw_study(shared, args.backends, args.threads):
        print(row, flush=True)
    if not args.skip_brats:
        for row in brats_cases(shared, args.backends, args.threads):
            print(row, flush=True)
    print(f"\nnumpy {np.__version__}; threads {args.threads}")


if __name__ == "__main__":
    main()
