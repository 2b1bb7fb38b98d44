"""Train the stacked learned segmenter (version 3.0): the 2.0 features plus the rules' output.

    python scripts/train_stacked_segmenter.py --samples-only   # rule features per case (cached)
    python scripts/train_stacked_segmenter.py                  # fold models + final, manifest
    python scripts/train_learned_eval.py --stacked             # held-out Dice

Same cases, folds, seed, hyperparameters, inner early stopping and sampled voxels as
``train_learned_segmenter.py`` (version 2.0): the 2.0 per-case samples are reused, and for
each sampled voxel the five :data:`gliocore.segment.rule_features.RULE_FEATURES` are added,
computed from the rule baseline run on the same (clean or degraded) copy of the case. The rules
are deterministic and learn nothing from the case, so no held-out case informs a fold model.
The voxel positions are recovered by replaying the 2.0 sampling with its seed (the degradations
and the voxel draws use the same generator in the same order; features do not draw), checked
against the cached classes and the cached ``mid_mm`` column.

The FLAIR-free twin (used where FLAIR does not cover the brain) stays without the rule
features: the rules need FLAIR.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import train_learned_segmenter as t2  # noqa: E402
from gliocore.segment.baseline import segment_arrays as rule_arrays  # noqa: E402
from gliocore.segment.learned import file_sha256  # noqa: E402
from gliocore.segment.learned_features import FEATURES, NO_FLAIR, brain_mask  # noqa: E402
from gliocore.segment.rule_features import RULE_FEATURES, rule_feature_volume  # noqa: E402
from gliocore.segment.stacked import MODEL_DIR, STACKED  # noqa: E402

VERSION = "3.0"


def _sample_masks(arrays, labels, spacing, rng):
    """Replay :func:`t2.sample`'s draws: the boolean masks per stratum (in its order), the
    classes and the crop box, without computing the 2.0 features (they do not draw)."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    arrays = [a if np.isfinite(a).all() else np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
              for a in arrays]
    full = brain_mask(arrays)
    box = ndi.find_objects(full.astype(np.uint8))[0]
    brain = full[box]
    lab = labels[box]
    tumour = lab > 0
    ring = ndi.distance_transform_edt(~tumour, sampling=spacing) <= 10.0
    strata = [brain & (lab == 1), brain & (lab == 2), brain & ring & ~tumour,
              brain & ~ring & ~tumour]
    masks = []
    for where in strata:
        idx = np.flatnonzero(where)
        if idx.size == 0:
            continue
        pick = rng.choice(idx, size=min(t2.PER_STRATUM, idx.size), replace=False)
        mask = np.zeros(brain.size, dtype=bool)
        mask[pick] = True
        masks.append(mask.reshape(brain.shape))
    return masks, lab, brain, box


def build_rule_samples(folder: Path) -> Path:
    """The rule features at the 2.0 sampled voxels of one case (cached, checked)."""
    out = t2.CACHE / f"{folder.name}_rules_v{VERSION}.npz"
    if out.is_file():
        return out
    cached = np.load(t2.CACHE / f"{folder.name}_v{t2.VERSION}.npz")
    arrays, labels, spacing, lr_axis = t2.load_case(folder)
    rng = np.random.default_rng(t2.SEED + sum(folder.name.encode()))
    R, y, mids = [], [], []
    for version in t2.augmented(arrays, rng):
        masks, lab, brain, box = _sample_masks(version, labels, spacing, rng)
        rules = rule_arrays(*version, spacing=spacing, lr_axis=lr_axis)[box]
        vol = rule_feature_volume(rules, brain, spacing)
        sp_lr = float(spacing[lr_axis])
        n_lr = brain.shape[lr_axis]
        mid = np.abs(np.arange(n_lr) - (n_lr - 1) / 2.0) * sp_lr
        shape = [1, 1, 1]
        shape[lr_axis] = -1
        mid = np.broadcast_to(mid.astype(np.float32).reshape(shape), brain.shape)
        for m in masks:
            R.append(np.stack([c[m] for c in vol], axis=1))
            y.append(lab[m])
            mids.append(mid[m])
    R, y, mids = np.concatenate(R), np.concatenate(y), np.concatenate(mids)
    mid = cached["X"][:, FEATURES.index("mid_mm")]
    if not np.array_equal(y, cached["y"]) or not np.allclose(mids, mid, atol=1e-3):
        raise RuntimeError(f"{folder.name}: replayed samples differ from the cached 2.0 ones")
    tmp = out.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, R=R.astype(np.float32))
    tmp.replace(out)
    return out


def stacked_files(names: list[str]) -> dict[str, Path]:
    """Case -> an ``.npz`` holding X (2.0 features + rule features), y, w (written once)."""
    files = {}
    for n in names:
        out = t2.CACHE / f"{n}_stacked_v{VERSION}.npz"
        if not out.is_file():
            base = np.load(t2.CACHE / f"{n}_v{t2.VERSION}.npz")
            rules = np.load(t2.CACHE / f"{n}_rules_v{VERSION}.npz")["R"]
            np.savez(out, X=np.concatenate([base["X"], rules], axis=1), y=base["y"],
                     w=base["w"])
        files[n] = out
    return files


def fit(cases: list[str], files: dict[str, Path]):
    """As :func:`t2.fit`, the full model on :data:`STACKED` columns (2.0's plus the rules'),
    the FLAIR-free twin on 2.0's :data:`NO_FLAIR` columns."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from gliocore.segment.learned import ModelPair

    fit_cases, val_cases = t2.inner_split(cases)
    X, y, w = t2._stack(fit_cases, files)
    Xv, yv, wv = t2._stack(val_cases, files)
    probe = HistGradientBoostingClassifier(random_state=t2.SEED, early_stopping=True,
                                           scoring="loss", n_iter_no_change=t2.N_ITER_NO_CHANGE,
                                           **t2.HGB)
    probe.fit(X, y, sample_weight=w, X_val=Xv, y_val=yv, sample_weight_val=wv)
    scores = np.asarray(probe.validation_score_)
    n_iter = max(int(np.argmax(scores[1:])) + 1, t2.MIN_ROUNDS)
    X, y, w = (np.concatenate(p) for p in zip((X, y, w), (Xv, yv, wv)))
    params = {**t2.HGB, "max_iter": n_iter, "early_stopping": False}
    cols = [STACKED.index(n) for n in NO_FLAIR]
    full = HistGradientBoostingClassifier(random_state=t2.SEED, **params).fit(X, y,
                                                                              sample_weight=w)
    nofl = HistGradientBoostingClassifier(random_state=t2.SEED, **params).fit(
        X[:, cols], y, sample_weight=w)
    return ModelPair(full, nofl), n_iter


def train(only: list[str] | None = None, samples_only: bool = False) -> None:
    """Build the rule samples, fit the models named in ``only`` (default all), write the
    manifest."""
    import joblib

    dirs = t2.case_dirs()
    names = [d.name for d in dirs]
    for d in dirs:
        t0 = time.perf_counter()
        build_rule_samples(d)
        print(f"rule samples {d.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if samples_only:
        return
    files = stacked_files(names)
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    for prefix, train_cases in t2.plan(names).items():
        if only and prefix not in only:
            continue
        t0 = time.perf_counter()
        pair, n_iter = fit(train_cases, files)
        for kind, model in (("full", pair.full), ("noflair", pair.no_flair)):
            joblib.dump(model, MODEL_DIR / f"{prefix}_{kind}.joblib", compress=3)
        record = t2.CACHE / f"rounds_v{VERSION}.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        done[prefix] = n_iter
        record.write_text(json.dumps(done, indent=1, sort_keys=True))
        print(f"{prefix}: {n_iter} rounds, {time.perf_counter() - t0:.0f} s", flush=True)
    write_manifest(names)


def write_manifest(names: list[str]) -> None:
    """The manifest (checksums, folds, provenance), once every model file exists."""
    import sklearn

    plan = t2.plan(names)
    want = [f"{p}_{k}.joblib" for p in plan for k in ("full", "noflair")]
    if not all((MODEL_DIR / f).is_file() for f in want):
        print("manifest not written yet: some models are still missing", flush=True)
        return
    manifest = {
        "version": VERSION, "seed": t2.SEED, "sklearn": sklearn.__version__,
        "features": list(STACKED), "rule_features": list(RULE_FEATURES),
        "noflair_features": list(NO_FLAIR), "hyperparameters": t2.HGB,
        "per_stratum": t2.PER_STRATUM, "thin": t2.THIN,
        "early_stopping": {"inner_validation_cases": t2.N_INNER_VAL,
                           "n_iter_no_change": t2.N_ITER_NO_CHANGE, "scoring": "loss",
                           "min_rounds": t2.MIN_ROUNDS,
                           "rounds": json.loads((t2.CACHE / f"rounds_v{VERSION}.json")
                                                .read_text())},
        "augmentation": "clean + 3 degraded copies per case (train_learned_segmenter.augmented);"
                        " the rule baseline run on each copy",
        "classes": {"0": "background", "1": "contrast_enhancing", "2": "non_enhancing"},
        "folds": {f"fold{k}": held for k, held in enumerate(t2.folds(names))},
        "training_cases": names,
        "provenance": "BraTS 2018 training cases from TCIA (TCGA-GBM / TCGA-LGG), "
                      "../shared/cases/brats18-dev and brats18-train; images CC BY 3.0 (TCIA), "
                      "labels: BraTS challenge expert annotations (cite Menze et al. IEEE TMI "
                      "2015; Bakas et al. Sci Data 2017; Bakas et al. arXiv:1811.02629). The "
                      "rule baseline's constants were chosen on the five brats18-dev cases.",
        "files": {f: file_sha256(MODEL_DIR / f) for f in want},
    }
    (MODEL_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="fit only these models (fold0 ... final)")
    parser.add_argument("--samples-only", action="store_true",
                        help="only build (cache) the per-case rule features")
    args = parser.parse_args()
    train(args.only, args.samples_only)
