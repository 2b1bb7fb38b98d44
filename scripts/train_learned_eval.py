"""Held-out evaluation of the learned segmenter (``train_learned_segmenter.py evaluate``).

Every figure comes from the fold model that did not see the case. Writes
``gliocore/segment/models/learned/cv.json``: per case, clean Dice (whole tumour, contrast-
enhancing, non-enhancing) and volumes, the same under each degradation of
:data:`gliocore.segment.degrade.DEGRADATIONS` (fixed seeded draws, other than training's), the
rule baseline's Dice on the same clean case, and the seconds each took.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gliocore.segment import degrade  # noqa: E402
from gliocore.segment.learned import MODEL_DIR, load_models, segment_arrays  # noqa: E402
from gliocore.segment.qc import dice  # noqa: E402
from train_learned_segmenter import SEED, case_dirs, folds, load_case  # noqa: E402

EVAL_SEED = SEED + 1


def scores(pred: np.ndarray, ref: np.ndarray, voxel_mm3: float) -> dict[str, float]:
    """Dice per region and the volumes (cm³) of prediction and reference."""
    out = {}
    for region, a, b in (("WT", pred > 0, ref > 0), ("CE", pred == 1, ref == 1),
                         ("NE", pred == 2, ref == 2)):
        out[f"dice_{region}"] = round(dice(a, b), 4)
        out[f"pred_{region}_cm3"] = round(float(a.sum()) * voxel_mm3 / 1000, 2)
        out[f"ref_{region}_cm3"] = round(float(b.sum()) * voxel_mm3 / 1000, 2)
    return out


def evaluate(degraded: bool = True) -> None:
    from gliocore.segment.baseline import segment_arrays as baseline_arrays

    dirs = {d.name: d for d in case_dirs()}
    rows = []
    for k, held in enumerate(folds(sorted(dirs))):
        models = load_models(f"fold{k}")
        for case in held:
            arrays, ref, spacing, lr_axis = load_case(dirs[case])
            vox = float(np.prod(spacing))
            t0 = time.perf_counter()
            pred, uncovered = segment_arrays(arrays, spacing, lr_axis, models)
            row = {"case": case, "fold": f"fold{k}",
                   "seconds": round(time.perf_counter() - t0, 1), **scores(pred, ref, vox)}
            t0 = time.perf_counter()
            base = baseline_arrays(*arrays, spacing=spacing, lr_axis=lr_axis)
            row["baseline"] = {**scores(base, ref, vox),
                               "seconds": round(time.perf_counter() - t0, 1)}
            row["degraded"] = {}
            if degraded:
                for j, (name, fn) in enumerate(degrade.DEGRADATIONS.items()):
                    rng = np.random.default_rng([EVAL_SEED, j, sum(case.encode())])
                    pred, uncovered = segment_arrays(fn(arrays, rng), spacing, lr_axis, models)
                    row["degraded"][name] = {**scores(pred, ref, vox),
                                             "uncovered": {s: round(f, 3)
                                                           for s, f in uncovered.items()}}
            rows.append(row)
            print(json.dumps({k2: v for k2, v in row.items() if k2 != "degraded"}), flush=True)
            _write(rows)
    _write(rows)


def _write(rows: list[dict]) -> None:
    out = {"note": "every figure from the fold model that never saw the case; "
                   "written by scripts/train_learned_segmenter.py evaluate",
           "cases": sorted(rows, key=lambda r: r["case"])}
    (MODEL_DIR / "cv.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    evaluate()
