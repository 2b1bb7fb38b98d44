"""Preprocessing per scan: wall and CPU seconds of each step, peak memory, load average.

Usage::

    PYTHONPATH=. nice -n 10 python benchmarks/bench_preprocess.py [--shared ../shared]
        [--threads 2] [--backends deepbet] [--brats-case Brats18_TCIA10_628_1] [--brain-quality]

Needs ../shared and the optional weights (requirements-preprocess.txt). Two scans go through the
steps of :func:`gliocore.preprocess.scan.preprocess_scan` (N4 of each sequence, rigid
co-registration of T1, T2 and FLAIR to T1c, brain extraction on T1c), each step timed:

* the raw study ``cases/raw/TCGA-FG-6692`` (skull, four grids, 5.5 mm slices);
* a BraTS case with T1, T2 and FLAIR moved by the known rigid motions of the tests (up to 15 deg
  and 20 mm) onto coarser grids (FLAIR 0.9 x 0.9 x 5 mm), so that co-registration has real work;
  its TRE against the known motion is printed.

Brain extraction runs on T1c with the co-registered T1 as a second input (deepbet; see
:func:`gliocore.preprocess.brain.extract_brain`). ``--brain-quality`` adds, per BraTS case in
``cases/brats18-dev`` and ``cases/brats18-train`` (T1c and T1 as given), the brain mask's Dice
against the non-zero region and the share of tumour voxels (labels 1, 2, 4) kept.

Prints a Markdown table. CPU seconds are the process's (all threads); on a shared machine the
wall time depends on the load (printed with each row: the 1-minute load average when the step
ended), CPU time much less.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import SimpleITK as sitk

from gliocore.preprocess.bias import n4_correct
from gliocore.preprocess.brain import extract_brain
from gliocore.preprocess.coregister import register_rigid, target_registration_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "preprocess"))
from known_motion import MOTIONS, SPACINGS, brain_points, moved, rigid

SEQS = ("t1", "t1c", "t2", "flair")


def timed(fn, *a, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    return out, time.perf_counter() - w, time.process_time() - c


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def row(case: str, step: str, wall: float, cpu: float, result: str = "") -> str:
    return (f"| {case} | {step} | {wall:.1f} | {cpu:.1f} | {os.getloadavg()[0]:.1f} | "
            f"{peak_gib():.2f} | {result} |")


def one_scan(case: str, imgs: dict, backend: str, threads: int, truths: dict | None = None):
    """Time the steps of one scan's preprocessing; yield table rows (the total last)."""
    total_w = total_c = 0.0
    n4, on_t1c = {}, {}
    for s in SEQS:
        (n4[s], _), w, c = timed(n4_correct, imgs[s])
        total_w, total_c = total_w + w, total_c + c
        yield row(case, f"N4 {s}", w, c)
    for s in ("t1", "t2", "flair"):
        reg, w, c = timed(register_rigid, n4["t1c"], n4[s])
        total_w, total_c = total_w + w, total_c + c
        on_t1c[s] = reg.image
        res = (f"MI {reg.mi_before:.3f} -> {reg.mi_after:.3f}, {reg.rotation_deg:.1f} deg, "
               f"{reg.translation_mm:.1f} mm")
        if truths:
            tre = target_registration_error(reg.transform, truths[s].GetInverse(),
                                            brain_points(imgs["t1c"]))
            res += f", TRE {tre:.2f} mm"
        yield row(case, f"rigid {s} -> t1c", w, c, res)
    brain, w, c = timed(extract_brain, n4["t1c"], backend, threads=threads, also=[on_t1c["t1"]])
    total_w, total_c = total_w + w, total_c + c
    yield row(case, f"brain {brain.model}", w, c, f"{brain.volume_ml:.0f} ml")
    yield row(case, "**whole scan**", total_w, total_c)


def raw_study(shared: Path) -> dict:
    base = shared / "cases" / "raw" / "TCGA-FG-6692" / "TCGA-FG-6692"
    return {s: sitk.ReadImage(f"{base}_{s}.nii.gz", sitk.sitkFloat32) for s in SEQS}


def moved_brats(shared: Path, case: str) -> tuple[dict, dict]:
    base = next((shared / "cases").glob(f"brats18-*/{case}")) / case
    fixed = sitk.ReadImage(f"{base}_t1ce.nii.gz", sitk.sitkFloat32)
    center = fixed.TransformContinuousIndexToPhysicalPoint([s / 2 for s in fixed.GetSize()])
    imgs, truths = {"t1c": fixed}, {}
    for s in ("t1", "t2", "flair"):
        truths[s] = rigid(center, *MOTIONS[s])
        imgs[s] = moved(sitk.ReadImage(f"{base}_{s}.nii.gz"), truths[s], SPACINGS[s])
    return imgs, truths


def brain_quality(shared: Path, backend: str, threads: int):
    cases = sorted(p for d in ("brats18-dev", "brats18-train")
                   for p in (shared / "cases" / d).glob("Brats18_*") if p.is_dir())
    for case in cases:
        base = case / case.name
        img = sitk.ReadImage(f"{base}_t1ce.nii.gz")
        t1 = sitk.ReadImage(f"{base}_t1.nii.gz")
        nonzero = sitk.GetArrayFromImage(img) > 0
        tumour = sitk.GetArrayFromImage(sitk.ReadImage(f"{base}_seg.nii.gz")) > 0
        res, w, c = timed(extract_brain, img, backend, threads=threads, also=[t1])
        m = sitk.GetArrayFromImage(res.mask).astype(bool)
        dice = 2 * (m & nonzero).sum() / (m.sum() + nonzero.sum())
        kept = (m & tumour).sum() / max(1, tumour.sum())
        yield row(case.name, f"brain {res.model}", w, c,
                  f"Dice vs non-zero {dice:.4f}, tumour kept {kept:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["deepbet"])
    ap.add_argument("--brats-case", default="Brats18_TCIA10_628_1")
    ap.add_argument("--brain-quality", action="store_true")
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    shared = Path(args.shared)
    print(f"threads {args.threads}; cores {os.cpu_count()}; load at start "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| case | step | wall s | CPU s | load (1 min) | peak GiB | result |\n"
          "|---|---|---|---|---|---|---|")
    for backend in args.backends:
        for line in one_scan("TCGA-FG-6692", raw_study(shared), backend, args.threads):
            print(line, flush=True)
        imgs, truths = moved_brats(shared, args.brats_case)
        for line in one_scan(f"{args.brats_case} (moved)", imgs, backend, args.threads, truths):
            print(line, flush=True)
        if args.brain_quality:
            for line in brain_quality(shared, backend, args.threads):
                print(line, flush=True)


if __name__ == "__main__":
    main()
