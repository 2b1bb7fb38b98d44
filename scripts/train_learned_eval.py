"""Held-out evaluation of the learned segmenter, after ``train_learned_segmenter.py train``.

    python scripts/train_learned_eval.py [--folds 0 1 2]   # then --merge once all six are done
    python scripts/train_learned_eval.py --stacked ...      # the same for the stacked backend

Every figure comes from the fold model that did not see the case. Writes
``gliocore/segment/models/learned/cv.json``: per case, clean Dice (whole tumour, contrast-
enhancing, non-enhancing) and volumes, the same under each degradation of
:data:`gliocore.segment.degrade.DEGRADATIONS` (fixed seeded draws, other than training's), the
rule baseline's Dice on the same clean case, and the seconds each took. With ``--stacked``
the stacked backend (:mod:`gliocore.segment.stacked`, rules + trees) is scored instead, into
``models/stacked/cv.json`` (its seconds include the rules').
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gliocore.segment import degrade, learned, stacked  # noqa: E402
from gliocore.segment.learned import ModelPair, load_models  # noqa: E402
from gliocore.segment.qc import dice  # noqa: E402
from train_learned_segmenter import (CACHE, N_FOLDS, SEED, case_dirs, folds,  # noqa: E402
                                     load_case)

EVAL_SEED = SEED + 1
#: The backend scored: (model folder, segment_arrays, prefix of the per-fold result files);
#: ``--stacked`` switches to the stacked backend.
BACKEND = {"model_dir": learned.MODEL_DIR, "segment": learned.segment_arrays, "prefix": "eval"}


def use_stacked() -> None:
    """Score the stacked backend (rules + trees) instead of the learned one."""
    BACKEND.update(model_dir=stacked.MODEL_DIR, segment=stacked.segment_arrays,
                   prefix="eval_stacked")


def segment_arrays(arrays, spacing, lr_axis, models, keep=None, **kwargs):
    """The scored backend's segmentation (see :data:`BACKEND`)."""
    return BACKEND["segment"](arrays, spacing, lr_axis, models, keep, **kwargs)


def _out(k: int) -> Path:
    return CACHE / f"{BACKEND['prefix']}_fold{k}.json"


def scores(pred: np.ndarray, ref: np.ndarray, voxel_mm3: float) -> dict[str, float]:
    """Dice per region and the volumes (cm³) of prediction and reference."""
    out = {}
    for region, a, b in (("WT", pred > 0, ref > 0), ("CE", pred == 1, ref == 1),
                         ("NE", pred == 2, ref == 2)):
        out[f"dice_{region}"] = round(dice(a, b), 4)
        out[f"pred_{region}_cm3"] = round(float(a.sum()) * voxel_mm3 / 1000, 2)
        out[f"ref_{region}_cm3"] = round(float(b.sum()) * voxel_mm3 / 1000, 2)
    return out


def keep_prediction(case: str, pred: np.ndarray, kept: dict) -> None:
    """Keep a held-out prediction and its crop's class probabilities
    (``$LEARNED_CACHE/pred/<prefix>_<case>.npz``), to study its errors without re-running it."""
    folder = CACHE / "pred"
    folder.mkdir(parents=True, exist_ok=True)
    box = np.array([[b.start, b.stop] for b in kept["box"]])
    np.savez_compressed(folder / f"{BACKEND['prefix']}_{case}.npz", pred=pred.astype(np.uint8),
                        prob=kept["prob"].astype(np.float16), box=box)


def _fold_models(k: int) -> ModelPair:
    """Fold ``k``'s models, checked against the manifest when it exists (it is written once
    every model is fitted; the folds can be evaluated before the final model is done)."""
    import joblib

    model_dir = BACKEND["model_dir"]
    if (model_dir / "manifest.json").is_file():
        return load_models(f"fold{k}", model_dir)
    return ModelPair(*(joblib.load(model_dir / f"fold{k}_{kind}.joblib")
                       for kind in ("full", "noflair")))


def evaluate_fold(k: int, degraded: bool = True, n_degraded: int = 2,
                  baseline: bool = True, recorded: dict[str, dict] | None = None) -> None:
    """Score fold ``k``'s model on its two held-out cases: clean and the baseline first, then
    each degradation (on the first ``n_degraded`` of them); written after every step to
    ``$LEARNED_CACHE/eval_fold<k>.json``. ``recorded``: case -> the rule baseline's figures
    recorded by an earlier run (the rules did not change), instead of re-running them."""
    from gliocore.segment.baseline import segment_arrays as baseline_arrays

    dirs = {d.name: d for d in case_dirs()}
    models = _fold_models(k)
    out = _out(k)
    rows, cases = [], {}
    for case in folds(sorted(dirs))[k]:
        arrays, ref, spacing, lr_axis = load_case(dirs[case])
        cases[case] = (arrays, ref, spacing, lr_axis)
        vox = float(np.prod(spacing))
        t0 = time.perf_counter()
        kept: dict = {}
        pred, _ = segment_arrays(arrays, spacing, lr_axis, models, kept)
        keep_prediction(case, pred, kept)
        row = {"case": case, "fold": f"fold{k}",
               "seconds": round(time.perf_counter() - t0, 1), **scores(pred, ref, vox)}
        row["degraded"] = {}
        rows.append(row)
        print(json.dumps({k2: v for k2, v in row.items() if k2 != "degraded"}), flush=True)
        out.write_text(json.dumps(rows, indent=1))
    for row in rows if baseline else ():
        if recorded and row["case"] in recorded:
            row["baseline"] = recorded[row["case"]]
            out.write_text(json.dumps(rows, indent=1))
            continue
        arrays, ref, spacing, lr_axis = cases[row["case"]]
        t0 = time.perf_counter()
        base = baseline_arrays(*arrays, spacing=spacing, lr_axis=lr_axis)
        row["baseline"] = {**scores(base, ref, float(np.prod(spacing))),
                           "seconds": round(time.perf_counter() - t0, 1)}
        print(row["case"], "baseline", row["baseline"]["dice_WT"], flush=True)
        out.write_text(json.dumps(rows, indent=1))
    for j, (name, fn) in enumerate(degrade.DEGRADATIONS.items() if degraded else ()):
        for row in rows[:n_degraded]:
            arrays, ref, spacing, lr_axis = cases[row["case"]]
            rng = np.random.default_rng([EVAL_SEED, j, sum(row["case"].encode())])
            pred, uncovered = segment_arrays(fn(arrays, rng), spacing, lr_axis, models)
            row["degraded"][name] = {**scores(pred, ref, float(np.prod(spacing))),
                                     "uncovered": {s: round(f, 3) for s, f in uncovered.items()}}
            print(row["case"], name, row["degraded"][name]["dice_WT"], flush=True)
            out.write_text(json.dumps(rows, indent=1))


def add_degradations(k: int, names: list[str], n_cases: int = 2) -> None:
    """Add degradations whose name contains one of ``names`` to fold ``k``'s recorded rows."""
    out = _out(k)
    rows = json.loads(out.read_text())
    dirs = {d.name: d for d in case_dirs()}
    models = _fold_models(k)
    for j, (name, fn) in enumerate(degrade.DEGRADATIONS.items()):
        if not any(n in name for n in names):
            continue
        for row in rows[:n_cases]:
            if name in row.get("degraded", {}):
                continue  # recorded by an earlier run (same seeded draw)
            arrays, ref, spacing, lr_axis = load_case(dirs[row["case"]])
            rng = np.random.default_rng([EVAL_SEED, j, sum(row["case"].encode())])
            pred, uncovered = segment_arrays(fn(arrays, rng), spacing, lr_axis, models)
            row.setdefault("degraded", {})[name] = {
                **scores(pred, ref, float(np.prod(spacing))),
                "uncovered": {s: round(f, 3) for s, f in uncovered.items()}}
            print(row["case"], name, row["degraded"][name]["dice_WT"], flush=True)
            out.write_text(json.dumps(rows, indent=1))


def evaluate(fold_ids: list[int], degraded: bool = True, n_degraded: int = 2,
             baseline: bool = True, baseline_from: Path | None = None) -> None:
    """Evaluate the given folds, each into ``$LEARNED_CACHE/eval_fold<k>.json``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    recorded = None
    if baseline_from is not None:
        recorded = {r["case"]: r["baseline"] for r in
                    json.loads(Path(baseline_from).read_text())["cases"] if "baseline" in r}
    for k in fold_ids:
        evaluate_fold(k, degraded, n_degraded, baseline, recorded)


def rules_degraded() -> None:
    """Score the rule baseline under every degradation (the model's seeded draws) and
    record it beside the model's figures in the merged ``cv.json`` (``baseline.degraded``)."""
    from gliocore.segment.baseline import segment_arrays as baseline_arrays

    path = BACKEND["model_dir"] / "cv.json"
    cv = json.loads(path.read_text())
    dirs = {d.name: d for d in case_dirs()}
    for row in cv["cases"]:
        base = row.setdefault("baseline", {})
        done = base.setdefault("degraded", {})
        arrays, ref, spacing, lr_axis = load_case(dirs[row["case"]])
        for j, (name, fn) in enumerate(degrade.DEGRADATIONS.items()):
            if name in done:
                continue
            rng = np.random.default_rng([EVAL_SEED, j, sum(row["case"].encode())])
            pred = baseline_arrays(*fn(arrays, rng), spacing=spacing, lr_axis=lr_axis)
            done[name] = scores(pred, ref, float(np.prod(spacing)))
            print(row["case"], "rules", name, done[name]["dice_WT"], flush=True)
            path.write_text(json.dumps(cv, indent=1) + "\n")


def majority_vote(folder: Path) -> np.ndarray:
    """Canonical labels voted by the five algorithms' masks of TCGA-DU-7294 (a voxel is tumour
    where at least three say so; CE where at least three say enhancing)."""
    import nibabel as nib

    from gliocore.imaging.labels import BRATS

    masks = [BRATS.to_canonical(np.asarray(nib.load(f).dataobj))
             for f in sorted((folder / "algorithm_segmentations").glob("*.nii.gz"))]
    tumour = sum((m > 0).astype(np.int8) for m in masks) >= 3
    ce = sum((m == 1).astype(np.int8) for m in masks) >= 3
    return np.where(tumour, np.where(ce, 1, 2), 0).astype(np.uint8)


def evaluate_external(shared: Path) -> None:
    """Score the shipped (final) model and the rules on TCGA-DU-7294, a case from another
    source (TCGA-LGG, BraTS Toolkit preprocessing) that no model was trained or tuned on,
    against the majority vote of five BraTS-2020 algorithms (a weak reference, not an
    expert's); recorded as ``external`` in the merged ``cv.json``."""
    import nibabel as nib

    from gliocore.segment.baseline import segment_arrays as baseline_arrays

    folder = shared / "cases" / "TCGA-DU-7294"
    imgs = [nib.load(folder / f"TCGA-DU-7294_{s}_bet.nii.gz") for s in ("t1", "t1c", "t2", "fla")]
    arrays = [i.get_fdata(dtype=np.float32) for i in imgs]
    spacing = tuple(float(z) for z in imgs[0].header.get_zooms()[:3])
    lr_axis = int(np.argmax(np.abs(imgs[0].affine[0, :3])))
    ref = majority_vote(folder)
    vox = float(np.prod(spacing))
    t0 = time.perf_counter()
    kept: dict = {}
    decision = learned.Decision.from_manifest(learned.load_manifest(BACKEND["model_dir"]))
    pred, _ = segment_arrays(arrays, spacing, lr_axis, load_models("final", BACKEND["model_dir"]),
                             kept, decision=decision)
    keep_prediction("TCGA-DU-7294", pred, kept)
    row = {"case": "TCGA-DU-7294", "model": "final", "decision": vars(decision),
           "reference": "majority vote (>= 3 of 5) of five BraTS-2020 algorithms, not manual",
           "seconds": round(time.perf_counter() - t0, 1), **scores(pred, ref, vox),
           "baseline": scores(baseline_arrays(*arrays, spacing=spacing, lr_axis=lr_axis), ref, vox)}
    path = BACKEND["model_dir"] / "cv.json"
    cv = json.loads(path.read_text())
    cv["external"] = [row]
    path.write_text(json.dumps(cv, indent=1) + "\n")
    print(json.dumps(row), flush=True)


def merge() -> None:
    """Collect the six folds' results into ``models/learned/cv.json``."""
    rows = []
    for k in range(N_FOLDS):
        rows += json.loads(_out(k).read_text())
    path = BACKEND["model_dir"] / "cv.json"
    before = json.loads(path.read_text()) if path.is_file() else {}
    by_case = {r["case"]: r for r in before.get("cases", [])}
    for r in rows:  # keep the rules' degraded figures recorded by --rules-degraded
        old = by_case.get(r["case"], {}).get("baseline", {}).get("degraded")
        if old and "baseline" in r:
            r["baseline"]["degraded"] = old
    out = {"note": "every figure from the fold model that never saw the case (leave-two-cases-"
                   "out, 6 folds); written by scripts/train_learned_eval.py",
           "seed": EVAL_SEED, "cases": sorted(rows, key=lambda r: r["case"])}
    if "external" in before:
        out["external"] = before["external"]
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacked", action="store_true",
                        help="score the stacked backend (rules + trees)")
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(N_FOLDS)))
    parser.add_argument("--merge", action="store_true", help="only merge the folds' results")
    parser.add_argument("--n-degraded", type=int, default=2,
                        help="held-out cases per fold to degrade (2 = both)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the rule baseline")
    parser.add_argument("--baseline-from", type=Path,
                        help="a cv.json whose recorded rule-baseline figures to reuse")
    parser.add_argument("--clean-only", action="store_true", help="skip the degradations")
    parser.add_argument("--add-degradations", nargs="*",
                        help="only add these degradations (name substrings) to recorded folds")
    parser.add_argument("--rules-degraded", action="store_true",
                        help="score the rules under each degradation the model was scored on")
    parser.add_argument("--external", action="store_true",
                        help="score the final model and the rules on TCGA-DU-7294")
    args = parser.parse_args()
    if args.stacked:
        use_stacked()
    if args.rules_degraded or args.external:
        if args.rules_degraded:
            rules_degraded()
        if args.external:
            evaluate_external(ROOT.parent / "shared")
        sys.exit(0)
    if args.add_degradations:
        for k in args.folds:
            add_degradations(k, args.add_degradations, args.n_degraded)
    elif not args.merge:
        evaluate(args.folds, degraded=not args.clean_only, n_degraded=args.n_degraded,
                 baseline=not args.no_baseline, baseline_from=args.baseline_from)
    merge()
