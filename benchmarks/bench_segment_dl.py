"""Seconds per case for the HD-GLIO backend, CPU vs GPU, with and without mirroring.

The network is the full-size nnU-Net v1 3d_fullres architecture nnU-Net plans for 1 mm brain
MRI with four channels (Generic_UNet, 128^3 patch, 5 poolings, 30 base features; HD-GLIO's
own plans could not be read here because its weights cannot be downloaded), with random
weights, in HD-GLIO's on-disk format (see tests/segment/test_segment_hdglio.py). Speed does not depend
on the weights' values, so this measures what the real model would cost. One synthetic
240 x 240 x 155 case (BraTS/SRI-24 grid, skull-stripped ellipsoidal "brain") is segmented
through :class:`gliocore.segment.hdglio.HDGlioSegmenter`, exactly as the pipeline calls it.

Usage::

    .venv/bin/python benchmarks/bench_segment_dl.py            # full case, all devices
    .venv/bin/python benchmarks/bench_segment_dl.py --quick    # 128 x 128 x 96 case
    .venv/bin/python benchmarks/bench_segment_dl.py --mirroring off --threads 2

Recorded in this task. No GPU was available to it, so there are only CPU numbers, measured
on 2 shared CPU cores under heavy load from other jobs (load average 5-12), 1 torch thread
(``--threads 1``; on that busy machine 2 threads were far slower), so treat them as upper
bounds:

    --quick (128 x 128 x 96; the brain crop fits one 128^3 tile)
        device  mirroring  load s  s/case
        cpu     off           1.2    38.1
        cpu     on            0.7   310.1   (8 network passes per tile)

    The full 240 x 240 x 155 case was not run here. Its synthetic brain crop
    (173 x 173 x 112) needs 4 tiles, and a real skull-stripped brain on the SRI-24 grid needs
    about 8, so expect 4-8x the figures above: about 2.5-5 min per case without mirroring
    and 20-40 min with it on this machine. HD-GLIO's README gives < 10 s per case on a GPU.

Run it on a CUDA machine to fill in the GPU column (``--devices cuda``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

FULL_SHAPE = (240, 240, 155)
QUICK_SHAPE = (128, 128, 96)


def synthetic_case(shape: tuple[int, int, int], seed: int = 0):
    """A skull-stripped four-sequence case on a 1 mm grid (Subject, images)."""
    from gliocore.cohort.subjects import Subject
    from gliocore.imaging.volume import Volume
    from gliocore.types import SEQUENCES

    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    c = [(s - 1) / 2 for s in shape]
    r = [s * 0.36 for s in shape]
    brain = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) <= 1
    lesion = sum(((g - ci - 8) / (ri / 4)) ** 2 for g, ci, ri in zip(grid, c, r)) <= 1
    images = {}
    for k, seq in enumerate(SEQUENCES):
        img = (100 + 20 * k + 10 * rng.standard_normal(shape)).astype(np.float32)
        img[lesion] += 60
        img[~brain] = 0
        images[seq] = Volume(img, np.eye(4))
    subject = Subject("bench", {s: Path(f"/nonexistent/{s}.nii.gz") for s in SEQUENCES},
                      Path("/nonexistent"))
    return subject, images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"a {QUICK_SHAPE} case instead of "
                    f"{FULL_SHAPE}")
    ap.add_argument("--devices", default="auto", help="cpu, cuda or both (auto: cpu, plus cuda "
                    "when available)")
    ap.add_argument("--mirroring", choices=["off", "on", "both"], default="both")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: "
                    "torch's own)")
    ap.add_argument("--base-features", type=int, default=30)
    args = ap.parse_args(argv)

    import torch
    from test_segment_hdglio import build_hdglio_params

    from gliocore.segment.checks import DLInputWarning
    from gliocore.segment.hdglio import HDGlioSegmenter

    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    mirrorings = {"off": [False], "on": [True], "both": [False, True]}[args.mirroring]
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    subject, images = synthetic_case(shape)
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, "
          f"threads: {args.threads or torch.get_num_threads()}, case {shape}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        params = build_hdglio_params(Path(tmp) / "hd_glio_params", patch_size=(128, 128, 128),
                                     num_pool=5, base_features=args.base_features)
        print(f"built random-weight checkpoint in {time.perf_counter() - t0:.1f} s")
        print(f"{'device':8} {'mirroring':10} {'load s':>8} {'s/case':>8}  labels")
        for device in devices:
            for mirroring in mirrorings:
                seg = HDGlioSegmenter(weights_dir=params, device=device, mirroring=mirroring,
                                      num_threads=args.threads, check_inputs=False)
                t0 = time.perf_counter()
                seg.load()
                t_load = time.perf_counter() - t0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DLInputWarning)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    mask = seg.segment(subject, images)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t_case = time.perf_counter() - t0
                seg.close()
                print(f"{device:8} {'on' if mirroring else 'off':10} {t_load:8.1f} "
                      f"{t_case:8.1f}  {sorted(np.unique(mask).tolist())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
