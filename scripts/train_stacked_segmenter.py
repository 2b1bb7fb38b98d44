"""Train the stacked learned segmenter (version 3.0): the 2.0 features plus the rules' output.

    python scripts/train_stacked_segmenter.py --samples-only [--part 0/2]  # per-case samples
    python scripts/train_stacked_segmenter.py                  # fold models + final, manifest
    python scripts/train_learned_eval.py --stacked             # held-out Dice
    python scripts/tune_stacked_decision.py                    # CE decision, nested by case

Same cases, folds, seed, hyperparameters, augmentation (clean + three degraded copies per
case), voxel sampling and inner early stopping as ``train_learned_segmenter.py`` (version 2.0):
each copy goes through :func:`gliocore.segment.stacked.stacked_features`, as at inference (the
rule baseline runs on the copy, and the 36 intensity features plus the rules' five are sampled
at the voxels 2.0 draws). The rules are deterministic and learn nothing from the case, so no
held-out case informs a fold model.

A variant that flattened each sequence (three bias passes) before the rules and the features
was tried in session 6: the rules lost up to 0.27 whole-tumour Dice on flattened images (the
flattening also weakens a large lesion's FLAIR and T2 contrast by 13-16 %), and the fold
models' held-out Dice fell on 4 of 4 cases scored; it was dropped.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import train_learned_segmenter as t2  # noqa: E402
from gliocore.segment.learned_features import NO_FLAIR  # noqa: E402
from gliocore.segment.rule_features import RULE_FEATURES  # noqa: E402
from gliocore.segment.stacked import MODEL_DIR, STACKED, stacked_features  # noqa: E402

VERSION = "3.0"


def build_samples(folder: Path) -> Path:
    """The stacked features sampled from one case and its degraded copies (cached on disk)."""
    out = t2.CACHE / f"{folder.name}_stacked_v{VERSION}.npz"
    if out.is_file():
        return out
    arrays, labels, spacing, lr_axis = t2.load_case(folder)
    rng = np.random.default_rng(t2.SEED + sum(folder.name.encode()))
    parts = []
    for version in t2.augmented(arrays, rng):
        fv = stacked_features(version, spacing, lr_axis)
        parts.append(t2.sample(fv, labels, spacing, rng))
    X, y, w = (np.concatenate(p) for p in zip(*parts))
    t2.CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, X=X, y=y, w=w)
    tmp.replace(out)  # atomic: a parallel builder never sees half a file
    return out


def train(only: list[str] | None = None, samples_only: bool = False,
          part: tuple[int, int] = (0, 1)) -> None:
    """Build the samples (of every ``part[1]``-th case from ``part[0]``), fit the models named
    in ``only`` (default all), write the manifest."""

    dirs = t2.case_dirs()
    names = [d.name for d in dirs]
    files = {}
    for i, d in enumerate(dirs):
        if i % part[1] != part[0]:
            continue
        t0 = time.perf_counter()
        files[d.name] = build_samples(d)
        print(f"samples {d.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if samples_only:
        return
    t2.fit_and_save(names, files, only, MODEL_DIR, VERSION, STACKED)
    write_manifest(names)


def write_manifest(names: list[str]) -> None:
    """The manifest (checksums, folds, provenance), once every model file exists."""
    manifest = t2.manifest_of(
        names, MODEL_DIR, VERSION, STACKED,
        "clean + 3 degraded copies per case (train_learned_segmenter.augmented); the rule "
        "baseline run on each copy",
        ". The rule baseline's constants were chosen on the five brats18-dev cases.")
    if manifest is not None:
        manifest.update(rule_features=list(RULE_FEATURES), noflair_features=list(NO_FLAIR))
        (MODEL_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="fit only these models (fold0 ... final)")
    parser.add_argument("--samples-only", action="store_true",
                        help="only build (cache) the per-case rule features")
    parser.add_argument("--part", default="0/1",
                        help="build the samples of every n-th case from i (i/n; run n at once)")
    args = parser.parse_args()
    i, n = (int(x) for x in args.part.split("/"))
    train(args.only, args.samples_only, (i, n))
