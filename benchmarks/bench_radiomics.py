"""Seconds per subject: plain PyRadiomics (the seed's loop) vs gliocore.radiomics.extract_features.

Plain: one ``RadiomicsFeatureExtractor.execute(image_file, mask_file, label)`` per sequence and
label with the default feature set, as the seed notebook did (8 calls for 4 sequences and 2
labels). GlioScope: volumes loaded once, then ``extract_features`` (shape once per label, crop,
no diagnostics). Uses the real case in ../shared when present, else a generated 240x240x155
volume. Also checks the values are identical.

Usage: python benchmarks/bench_radiomics.py [--repeats N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from radiomics.featureextractor import RadiomicsFeatureExtractor  # noqa: E402

from gliocore import radiomics as gr  # noqa: E402
from gliocore.io import load_volume  # noqa: E402
from gliocore.labels import BRATS  # noqa: E402
from gliocore.types import SEQUENCES  # noqa: E402


def real_case(tmp: Path) -> tuple[dict[str, Path], Path, str] | None:
    base = REPO.parent / "shared" / "cases" / "TCGA-DU-7294"
    if not base.exists():
        return None
    tags = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "fla"}
    paths = {s: base / f"TCGA-DU-7294_{t}_bet.nii.gz" for s, t in tags.items()}
    seg = nib.load(base / "algorithm_segmentations" / "hnfnetv1-20.nii.gz")
    mask = BRATS.to_canonical(np.asanyarray(seg.dataobj))
    mpath = tmp / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, seg.affine), mpath)
    return paths, mpath, "TCGA-DU-7294 (240x240x155, hnfnetv1 segmentation)"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths, mpath, what = real_case(tmp) or generated_case(tmp)
        print(f"case: {what}; {len(paths)} sequences x 2 labels; default feature set")

        ex = RadiomicsFeatureExtractor(gr.DEFAULT_PARAMS)
        plain_times, plain = [], {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for label in (1, 2):
                for seq, p in paths.items():
                    res = ex.execute(str(p), str(mpath), label=label)
                    plain[(label, seq)] = {k: float(v) for k, v in res.items()
                                           if not k.startswith("diagnostics_")}
            plain_times.append(time.perf_counter() - t0)

        ours_times, load_times = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            vols = {seq: load_volume(p) for seq, p in paths.items()}
            mvol = load_volume(mpath, dtype=None)
            t1 = time.perf_counter()
            rows = gr.extract_features(vols, mvol.data, mvol.affine)
            t2 = time.perf_counter()
            load_times.append(t1 - t0)
            ours_times.append(t2 - t1)

        first = next(iter(paths))
        same = all(r.value == plain[(r.tumour_class.canonical_label, r.sequence or first)][r.feature]
                   for r in rows)
        print(f"plain PyRadiomics (8 execute calls, files): {min(plain_times):6.2f} s/subject")
        print(f"gliocore extract_features:                  {min(ours_times):6.2f} s/subject "
              f"(+ {min(load_times):.2f} s loading the 5 volumes once)")
        print(f"speed-up (extraction): {min(plain_times) / min(ours_times):.0f}x; "
              f"values identical: {same} ({len(rows)} features)")


if __name__ == "__main__":
    main()
