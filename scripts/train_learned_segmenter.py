"""Train the learned segmenter and cross-validate it, leaving cases out (seeded, reproducible).

    python scripts/train_learned_segmenter.py           # fold models + final model, manifest
    python scripts/train_learned_eval.py                # held-out Dice (clean, degraded, baseline)

Cases: the twelve BraTS 2018 training cases in ``../shared/cases/brats18-dev`` and
``../shared/cases/brats18-train`` (TCIA; images CC BY 3.0; expert labels of the BraTS challenge;
cite Menze et al. 2015, Bakas et al. 2017 and 2018; see their PROVENANCE.md). Six folds of two
cases, drawn once by a seeded permutation of the sorted case names. Every hyperparameter below
was fixed before any evaluation and none was changed after looking at a fold's result.

Each training case is used clean and in three degraded copies, one per family the robustness
test checks (bias field + contrast + noise; thick slices + 1.5 mm resolution + bias + noise;
1.6-2.4 mm resolution + contrast + noise: :mod:`gliocore.segment.degrade`, other random draws
than the robustness test). Voxels are sampled stratified (tumour classes, the 10 mm ring around
the tumour, the rest of the brain) and weighted back to their true numbers, so the trees learn
the real class balance. Every second sample is used (48 000 per case; version 1.0 used 12 000
and 60 rounds).

The number of boosting rounds is chosen per model by early stopping on an inner validation
split of its own training cases (two of them, drawn by seed; never a held-out case): a probe
is fitted on the others until the inner cases' loss has not improved for ``N_ITER_NO_CHANGE``
rounds; the best round (at least ``MIN_ROUNDS``) is kept, and the model and its FLAIR-free twin
are fitted on all the training cases with that many rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gliocore.segment import degrade  # noqa: E402
from gliocore.segment.learned import MODEL_DIR, ModelPair, file_sha256  # noqa: E402
from gliocore.segment.learned_features import FEATURES, NO_FLAIR, compute_features  # noqa: E402

SEED = 20260521
N_FOLDS = 6
PER_STRATUM = 6000
VERSION = "2.0"
#: Every THIN-th cached sample is used (48 000 per case, four times version 1.0's; all of
#: them did not fit the loaded machine's time).
THIN = 2
N_INNER_VAL = 2
N_ITER_NO_CHANGE = 20
MIN_ROUNDS = 20
SHARED = ROOT.parent / "shared"
CACHE = Path(os.environ.get("LEARNED_CACHE", ROOT.parent / "learned_seg_cache"))
SEQ_FILES = ("t1", "t1ce", "t2", "flair")
#: ``max_iter`` is the ceiling; early stopping on inner validation cases picks the rounds.
HGB = dict(max_iter=150, learning_rate=0.15, max_leaf_nodes=31, min_samples_leaf=40,
           l2_regularization=1.0)


def case_dirs(shared: Path = SHARED) -> list[Path]:
    """The twelve labelled case folders, sorted by name."""
    out = []
    for sub in ("brats18-dev", "brats18-train"):
        out += [p for p in (shared / "cases" / sub).iterdir() if p.is_dir()]
    return sorted(out, key=lambda p: p.name)


def folds(names: list[str]) -> list[list[str]]:
    """Six folds of two cases from a seeded permutation of the sorted names."""
    order = np.random.default_rng(SEED).permutation(len(names))
    return [sorted(names[i] for i in order[k::N_FOLDS]) for k in range(N_FOLDS)]


def load_case(folder: Path) -> tuple[list[np.ndarray], np.ndarray, tuple, int]:
    """Arrays (T1, T1c, T2, FLAIR), canonical labels, spacing, left-right axis."""
    import nibabel as nib

    from gliocore.imaging.labels import BRATS

    imgs = [nib.load(folder / f"{folder.name}_{s}.nii.gz") for s in SEQ_FILES]
    arrays = [i.get_fdata(dtype=np.float32) for i in imgs]
    seg = np.asarray(nib.load(folder / f"{folder.name}_seg.nii.gz").dataobj)
    spacing = tuple(float(z) for z in imgs[0].header.get_zooms()[:3])
    lr_axis = int(np.argmax(np.abs(imgs[0].affine[0, :3])))
    return arrays, BRATS.to_canonical(seg), spacing, lr_axis


def augmented(arrays: list[np.ndarray], rng: np.random.Generator) -> list[list[np.ndarray]]:
    """The clean case and three degraded copies (training draws)."""
    a1 = degrade.noise(degrade.contrast(degrade.bias_field(arrays, rng, 0.3), rng), rng, 0.06)
    a2 = degrade.thick_slices(arrays, int(rng.integers(0, 3)), int(rng.integers(3, 7)))
    a2 = degrade.noise(degrade.bias_field(degrade.low_resolution(a2, 1.5), rng, 0.2), rng, 0.04)
    a3 = degrade.low_resolution(arrays, float(rng.uniform(1.6, 2.4)))
    a3 = degrade.noise(degrade.contrast(a3, rng), rng, 0.04)
    return [arrays, a1, a2, a3]


def sample(fv, labels: np.ndarray, spacing, rng: np.random.Generator):
    """Stratified voxel sample of one scan: features, classes and weights (true counts / drawn)."""
    lab = labels[fv.box]
    brain = fv.brain
    tumour = lab > 0
    ring = ndi.distance_transform_edt(~tumour, sampling=spacing) <= 10.0
    strata = [brain & (lab == 1), brain & (lab == 2), brain & ring & ~tumour,
              brain & ~ring & ~tumour]
    X, y, w = [], [], []
    for where in strata:
        idx = np.flatnonzero(where)
        if idx.size == 0:
            continue
        pick = rng.choice(idx, size=min(PER_STRATUM, idx.size), replace=False)
        mask = np.zeros(brain.size, dtype=bool)
        mask[pick] = True
        mask = mask.reshape(brain.shape)
        X.append(fv.columns(fv.names, mask))
        y.append(lab[mask])
        w.append(np.full(pick.size, idx.size / pick.size, dtype=np.float32))
    return np.concatenate(X), np.concatenate(y), np.concatenate(w)


def build_samples(folder: Path) -> Path:
    """Features sampled from one case and its degraded copies (cached on disk)."""
    out = CACHE / f"{folder.name}_v{VERSION}.npz"
    if out.is_file():
        return out
    arrays, labels, spacing, lr_axis = load_case(folder)
    seed = SEED + sum(folder.name.encode())
    rng = np.random.default_rng(seed)
    parts = []
    for version in augmented(arrays, rng):
        fv = compute_features(version, spacing, lr_axis)
        parts.append(sample(fv, labels, spacing, rng))
    X, y, w = (np.concatenate(p) for p in zip(*parts))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, X=X, y=y, w=w)
    tmp.replace(out)  # atomic: another process building samples never sees half a file
    return out


def _stack(cases: list[str], files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    """Every ``THIN``-th cached sample of ``cases`` (weights scaled back by ``THIN``)."""
    data = [np.load(files[c]) for c in cases]
    X, y, w = (np.concatenate([d[k][::THIN] for d in data]) for k in ("X", "y", "w"))
    return X, y, w * THIN


def inner_split(cases: list[str]) -> tuple[list[str], list[str]]:
    """(fit, validation) cases for early stopping: ``N_INNER_VAL`` drawn by seed."""
    order = np.random.default_rng([SEED, len(cases), sum(map(len, cases))]).permutation(
        len(cases))
    val = sorted(cases[i] for i in order[:N_INNER_VAL])
    return [c for c in cases if c not in val], val


def fit(cases: list[str], files: dict[str, Path],
        columns: Sequence[str] = FEATURES) -> tuple[ModelPair, int]:
    """Fit the full and the FLAIR-free model on the samples of ``cases`` (whose columns are
    ``columns``; the FLAIR-free model takes their :data:`NO_FLAIR` ones).

    Rounds: a probe is fitted on all but ``N_INNER_VAL`` of ``cases`` until the loss on those
    inner validation cases has not improved for ``N_ITER_NO_CHANGE`` rounds; the best round
    (at least ``MIN_ROUNDS``: two cases are a noisy judge) is kept. Both models are then
    fitted on all of ``cases`` with that many rounds. Returns the pair and the rounds.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    fit_cases, val_cases = inner_split(cases)
    X, y, w = _stack(fit_cases, files)
    Xv, yv, wv = _stack(val_cases, files)
    probe = HistGradientBoostingClassifier(random_state=SEED, early_stopping=True,
                                           scoring="loss", n_iter_no_change=N_ITER_NO_CHANGE,
                                           **HGB)
    probe.fit(X, y, sample_weight=w, X_val=Xv, y_val=yv, sample_weight_val=wv)
    scores = np.asarray(probe.validation_score_)  # minus the loss; index 0 = before round 1
    n_iter = max(int(np.argmax(scores[1:])) + 1, MIN_ROUNDS)
    X, y, w = (np.concatenate(p) for p in zip((X, y, w), (Xv, yv, wv)))
    params = {**HGB, "max_iter": n_iter, "early_stopping": False}
    cols = [list(columns).index(n) for n in NO_FLAIR]
    full = HistGradientBoostingClassifier(random_state=SEED, **params).fit(X, y, sample_weight=w)
    nofl = HistGradientBoostingClassifier(random_state=SEED, **params).fit(X[:, cols], y,
                                                                           sample_weight=w)
    return ModelPair(full, nofl), n_iter


def plan(names: list[str]) -> dict[str, list[str]]:
    """Model prefix -> its training cases: one model per fold (all but the held-out two),
    and the final model on all twelve."""
    out = {f"fold{k}": [n for n in names if n not in held] for k, held in enumerate(folds(names))}
    out["final"] = list(names)
    return out


def fit_and_save(names: list[str], files: dict[str, Path], only: list[str] | None,
                 model_dir: Path, version: str, columns: Sequence[str] = FEATURES) -> None:
    """Fit the models of :func:`plan` named in ``only`` (default all), save them in
    ``model_dir`` and record the rounds early stopping chose (``rounds_v<version>.json``)."""
    import joblib

    model_dir.mkdir(parents=True, exist_ok=True)
    for prefix, train_cases in plan(names).items():
        if only and prefix not in only:
            continue
        t0 = time.perf_counter()
        pair, n_iter = fit(train_cases, files, columns)
        for kind, model in (("full", pair.full), ("noflair", pair.no_flair)):
            joblib.dump(model, model_dir / f"{prefix}_{kind}.joblib", compress=3)
        record = CACHE / f"rounds_v{version}.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        done[prefix] = n_iter
        record.write_text(json.dumps(done, indent=1, sort_keys=True))
        print(f"{prefix}: {n_iter} rounds, {time.perf_counter() - t0:.0f} s", flush=True)


def train(only: list[str] | None = None, samples_only: bool = False) -> None:
    """Build the samples, fit the models named in ``only`` (default all), write the manifest."""
    dirs = case_dirs()
    names = [d.name for d in dirs]
    files = {}
    for d in dirs:
        t0 = time.perf_counter()
        files[d.name] = build_samples(d)
        print(f"samples {d.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if samples_only:
        return
    fit_and_save(names, files, only, MODEL_DIR, VERSION)
    write_manifest(names)


def manifest_of(names: list[str], model_dir: Path, version: str, features: Sequence[str],
                augmentation: str, provenance_note: str = "") -> dict | None:
    """The manifest of the models in ``model_dir`` (checksums, folds, seed, hyperparameters,
    rounds, provenance), or None while some model file is still missing."""
    import sklearn

    want = [f"{p}_{k}.joblib" for p in plan(names) for k in ("full", "noflair")]
    if not all((model_dir / f).is_file() for f in want):
        print("manifest not written yet: some models are still missing", flush=True)
        return None
    return {
        "version": version, "seed": SEED, "sklearn": sklearn.__version__,
        "features": list(features), "hyperparameters": HGB, "per_stratum": PER_STRATUM,
        "thin": THIN,
        "early_stopping": {"inner_validation_cases": N_INNER_VAL,
                           "n_iter_no_change": N_ITER_NO_CHANGE, "scoring": "loss",
                           "min_rounds": MIN_ROUNDS,
                           "rounds": json.loads((CACHE / f"rounds_v{version}.json").read_text())},
        "augmentation": augmentation,
        "classes": {"0": "background", "1": "contrast_enhancing", "2": "non_enhancing"},
        "folds": {f"fold{k}": held for k, held in enumerate(folds(names))},
        "training_cases": names,
        "provenance": "BraTS 2018 training cases from TCIA (TCGA-GBM / TCGA-LGG), "
                      "../shared/cases/brats18-dev and brats18-train; images CC BY 3.0 (TCIA), "
                      "labels: BraTS challenge expert annotations (cite Menze et al. IEEE TMI "
                      "2015; Bakas et al. Sci Data 2017; Bakas et al. arXiv:1811.02629)"
                      + provenance_note,
        "files": {f: file_sha256(model_dir / f) for f in want},
    }


def write_manifest(names: list[str]) -> None:
    """The manifest (checksums, folds, provenance), once every model file exists."""
    manifest = manifest_of(names, MODEL_DIR, VERSION, FEATURES,
                           "clean + 3 degraded copies per case (see augmented())")
    if manifest is not None:
        (MODEL_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="fit only these models (fold0 ... final)")
    parser.add_argument("--samples-only", action="store_true",
                        help="only build (cache) the per-case samples")
    args = parser.parse_args()
    train(args.only, args.samples_only)
