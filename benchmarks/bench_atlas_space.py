"""Atlas-space step (``--preprocess-space sri24``): time and accuracy of the affine registration to
SRI24 on real BraTS cases moved out of SRI24 by a known affine (as in
``tests/preprocess/test_atlas_space_real.py``), per setting of resolution and iterations.

Prints, per case and setting: registration CPU and wall seconds, the whole step's wall seconds,
the brain-mask Dice with the original case and with the unmoved case fitted the same way, and the
landmark error (mm) of the found map against the known motion composed with the case's own fit.

    PYTHONPATH=. OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/bench_atlas_space.py \
        [--cases Brats18_TCIA01_201_1 ...] [--settings 2:500,250,100 3:200,100,50]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "preprocess"))
import SimpleITK as sitk
from known_motion import brain_points, moved

from gliocore.preprocess import atlas_space

SEQS = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}


def known_affine(center):
    rot = sitk.Euler3DTransform(tuple(center), *np.radians((9.0, -6.0, 12.0)))
    t = sitk.AffineTransform(3)
    t.SetCenter(tuple(center))
    t.SetMatrix(tuple((np.asarray(rot.GetMatrix()).reshape(3, 3) * 0.92).ravel()))
    t.SetTranslation((14.0, -10.0, 8.0))
    return t


def write(images, folder, label):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for seq, img in images.items():
        out[seq] = folder / f"{label}{atlas_space.SUFFIX[seq]}.nii.gz"
        sitk.WriteImage(img, str(out[seq]), True)
    return out


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def dice(a, b) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def run_case(base: Path, case: str, work: Path) -> None:
    original = {s: sitk.ReadImage(f"{base}_{f}.nii.gz", sitk.sitkFloat32) for s, f in SEQS.items()}
    original["brainmask"] = sitk.Cast(original["t1"] > 0, sitk.sitkUInt8)
    arr = atlas_space.array_from_sitk(original["brainmask"]).astype(bool)
    centre = original["t1"].TransformContinuousIndexToPhysicalPoint(
        np.argwhere(arr).mean(axis=0).tolist())
    truth = known_affine(centre)
    native = {s: moved(img, truth, (1.1, 1.1, 1.3)) for s, img in original.items()}
    native["brainmask"] = sitk.Cast(native["brainmask"] > 0.5, sitk.sitkUInt8)
    files_m, files_o = write(native, work / "m", case), write(original, work / "o", case)
    pts = brain_points(native["t1"], n=500)
    c0, w0 = cpu(), time.perf_counter()
    rec = atlas_space.to_atlas_space(files_m, work / "m", case, key="m")
    c1, w1 = cpu(), time.perf_counter()
    rec0 = atlas_space.to_atlas_space(files_o, work / "o", case, key="o")
    found, own = sitk.ReadTransform(str(rec.inverse)), sitk.ReadTransform(str(rec0.inverse))
    err = np.array([np.linalg.norm(np.subtract(found.TransformPoint(tuple(p)),
                                               own.TransformPoint(truth.TransformPoint(tuple(p)))))
                    for p in pts])
    back = atlas_space.array_from_sitk(sitk.ReadImage(str(rec.images["brainmask"]))).astype(bool)
    back0 = atlas_space.array_from_sitk(sitk.ReadImage(str(rec0.images["brainmask"]))).astype(bool)
    print(f"  {case}: step {w1 - w0:.1f} s wall, {c1 - c0:.1f} CPU-s; registration "
          f"{rec.seconds:.1f} s wall; Dice with original {dice(back, arr):.3f}, with the unmoved "
          f"case's fit {dice(back, back0):.3f}; landmark error {err.mean():.2f} mm "
          f"(95th pct {np.percentile(err, 95):.2f}); template Dice {rec.brain_dice:.3f}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--cases", nargs="+", default=["Brats18_TCIA01_201_1"])
    ap.add_argument("--settings", nargs="+", default=[
        f"{atlas_space.RESOLUTION_MM:g}:{','.join(map(str, atlas_space.ITERATIONS))}"])
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; ITK threads "
          f"{os.environ.get('ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS', atlas_space.THREADS)}")
    for setting in args.settings:
        res, its = setting.split(":")
        atlas_space.RESOLUTION_MM = float(res)
        atlas_space.ITERATIONS = tuple(int(v) for v in its.split(","))
        print(f"resolution {res} mm, iterations {atlas_space.ITERATIONS}:")
        for case in args.cases:
            base = Path(args.shared) / "cases" / "brats18-dev" / case / case
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
                run_case(base, case, Path(d))


if __name__ == "__main__":
    main()
