"""Seconds per subject: the seed's plain PyRadiomics loop vs gliocore.features.radiomics.extract_features.

Three feature sets, each measured on both sides in the same run (the machine is shared, so only
the ratios printed side by side mean something):

1. **seed set** (:data:`gliocore.features.params.DEFAULT_PARAMS`), 4 sequences x 2 classes;
2. **PyRadiomics' full default set** (all feature classes, Original image), 4 sequences x 2 classes;
3. **LoG (sigma 1, 3 mm) + Wavelet + Original**, all feature classes, FLAIR, 2 classes.

Plain = one ``RadiomicsFeatureExtractor.execute(image_file, mask_file, label)`` per sequence and
class, as the seed notebook did. GlioScope = volumes loaded once (float32, as the pipeline does;
the loading time is printed apart), then ``extract_features``, each repeat with an empty cache of
ROI geometries (:mod:`gliocore.features.texture`): only what depends on the parameters alone (parsed
extractors, feature names) is carried from one repeat to the next, as from one subject to the
next. For each set the largest relative difference between the two sides over all features is
printed.

The case is ``../shared/cases/brats18-dev/Brats18_TCIA01_378_1`` (a large tumour; BraTS labels
mapped to GlioScope's) when present, else a generated 240x240x155 volume.

Usage: python benchmarks/bench_radiomics.py [--repeats N] [--sets seed,full,filters] [--case DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from radiomics.featureextractor import RadiomicsFeatureExtractor  # noqa: E402

from gliocore.features import radiomics as gr  # noqa: E402
from gliocore.features.params import DEFAULT_PARAMS  # noqa: E402
from gliocore.imaging.io import load_volume  # noqa: E402
from gliocore.imaging.labels import BRATS  # noqa: E402
from gliocore.features.texture import clear_geometry_cache  # noqa: E402
from gliocore.types import SEQUENCES  # noqa: E402

ALL_CLASSES = ["firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape"]
SETS = {
    "seed": ("seed set (DEFAULT_PARAMS)", DEFAULT_PARAMS, None),
    "full": ("full default set (all classes, Original)", {}, None),
    "filters": ("LoG (sigma 1, 3) + Wavelet + Original, all classes", {
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}}}, ["flair"]),
}
DEFAULT_CASE = REPO.parent / "shared" / "cases" / "brats18-dev" / "Brats18_TCIA01_378_1"


def brats_case(base: Path, tmp: Path) -> tuple[dict[str, Path], Path, str] | None:
    if not base.exists():
        return None
    name = base.name
    tags = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
    paths = {s: base / f"{name}_{t}.nii.gz" for s, t in tags.items()}
    seg = nib.load(base / f"{name}_seg.nii.gz")
    mask = BRATS.to_canonical(np.asanyarray(seg.dataobj))
    mpath = tmp / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, seg.affine, seg.header), mpath)
    counts = ", ".join(f"label {k}: {(mask == k).sum()} voxels" for k in (1, 2))
    return paths, mpath, f"{name} (240x240x155; {counts})"


def generated_case(tmp: Path) -> tuple[dict[str, Path], Path, str]:
    rng = np.random.default_rng(0)
    shape = (240, 240, 155)
    grid = np.indices(shape, dtype=np.float32)
    r = np.sqrt(((grid - np.array([120, 110, 80], np.float32)[:, None, None, None]) ** 2).sum(0))
    mask = np.zeros(shape, np.uint8)
    mask[r < 30] = 2
    mask[(r > 12) & (r < 18)] = 1
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths = {}
    for n, seq in enumerate(SEQUENCES):
        img = (300 + 50 * n + 200 * (mask == 1) + 80 * (mask == 2)
               + rng.normal(0, 40, shape)).astype(np.int16)
        paths[seq] = tmp / f"{seq}.nii.gz"
        nib.save(nib.Nifti1Image(img, affine), paths[seq])
    mpath = tmp / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, affine), mpath)
    return paths, mpath, "generated 240x240x155 volume"


def max_rel_diff(rows: list[gr.FeatureValue], plain: dict, first: str) -> tuple[float, int]:
    worst, n = 0.0, 0
    for r in rows:
        expected = plain[(r.tumour_class.canonical_label, r.sequence or first)][r.feature]
        if r.value is None:
            return float("inf"), n
        d = abs(r.value - expected) / abs(expected) if expected != 0 else abs(r.value)
        worst = max(worst, d)
        n += 1
    return worst, n


def run_set(key: str, paths: dict[str, Path], mpath: Path, repeats: int) -> dict:
    title, params, seqs = SETS[key]
    paths = {s: p for s, p in paths.items() if seqs is None or s in seqs}
    ex = RadiomicsFeatureExtractor(params)
    plain_times, plain_cpu, plain = [], [], {}
    ours_times, ours_cpu, load_times = [], [], []
    for _ in range(repeats):  # interleaved, so that a change of load hits both sides alike
        t0, c0 = time.perf_counter(), time.process_time()
        for label in (1, 2):
            for seq, p in paths.items():
                res = ex.execute(str(p), str(mpath), label=label)
                plain[(label, seq)] = {k: float(v) for k, v in res.items()
                                       if not k.startswith("diagnostics_")}
        plain_times.append(time.perf_counter() - t0)
        plain_cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        vols = {seq: load_volume(p) for seq, p in paths.items()}
        mvol = load_volume(mpath, dtype=None)
        clear_geometry_cache()  # a repeat on the same masks would reuse the ROIs' geometry
        t1, c1 = time.perf_counter(), time.process_time()
        rows = gr.extract_features(vols, mvol.data, mvol.affine, params)
        t2 = time.perf_counter()
        ours_cpu.append(time.process_time() - c1)
        load_times.append(t1 - t0)
        ours_times.append(t2 - t1)
    diff, n = max_rel_diff(rows, plain, next(iter(paths)))
    return {"title": title, "n_seq": len(paths), "plain": min(plain_times),
            "ours": min(ours_times), "plain_cpu": min(plain_cpu), "ours_cpu": min(ours_cpu),
            "load": min(load_times), "diff": diff, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sets", default="seed,full,filters")
    ap.add_argument("--case", type=Path, default=DEFAULT_CASE)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths, mpath, what = brats_case(args.case, tmp) or generated_case(tmp)
        load = os.getloadavg()[0]
        print(f"case: {what}; {os.cpu_count()} CPUs, load average {load:.1f} at start")
        results = [run_set(k, paths, mpath, args.repeats) for k in args.sets.split(",")]
        print(f"\n{'feature set':52s} {'seqs':>4s} {'plain':>8s} {'GlioScope':>10s} {'ratio':>7s}"
              f" {'CPU ratio':>9s} {'max rel. diff':>14s} {'values':>7s}")
        for r in results:
            print(f"{r['title']:52s} {r['n_seq']:4d} {r['plain']:7.2f}s {r['ours']:9.2f}s "
                  f"{r['plain'] / r['ours']:6.1f}x {r['plain_cpu'] / r['ours_cpu']:8.1f}x "
                  f"{r['diff']:14.2e} {r['n']:7d}")
        print(f"(wall-clock seconds, best of {args.repeats}, both sides interleaved; CPU ratio = "
              "ratio of process CPU seconds, less sensitive to other processes' load. GlioScope "
              f"times exclude loading the volumes once: {results[0]['load']:.2f} s; load average "
              f"now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
