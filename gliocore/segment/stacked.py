"""Stacked learned segmenter: the learned trees given the intensity rules' output as features.

Method
------
The rule baseline (:mod:`.baseline`, deterministic, nothing learned) segments the scan first;
its mask becomes five more voxel features (:mod:`.rule_features`: its CE and NE classes, the
signed distance to its whole-tumour boundary, and its whole-tumour and CE masks smoothed at
3 mm), appended to the 36 intensity features of :mod:`.learned_features`. The gradient-boosted
trees (same hyperparameters, cases, folds, seed and sampled voxels as the learned backend 2.0)
then learn where the rules' shape is right and where the intensities disagree. Inference,
labels and post-processing are those of :mod:`.learned` (coarse to fine, nested decision,
small components dropped, holes filled). Where FLAIR does not cover part of the brain, the
rules are not run: the covered part is predicted by learned 2.0's model (the trees without
the rule features) and the uncovered part by a FLAIR-free twin (3.0 used the rules' output of
the partial scan, and lost 0.15 whole-tumour Dice on such scans).

Trained by ``scripts/train_stacked_segmenter.py`` (seeded); cross-validated by
``scripts/train_learned_eval.py --stacked`` (figures in ``models/stacked/cv.json``). The
rules' constants were chosen on the five ``brats18-dev`` cases, so held-out figures on those
five inherit that optimism; the seven ``brats18-train`` cases are held out for both parts.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from gliocore.segment.base import register_segmenter
from gliocore.segment.baseline import segment_arrays as rule_arrays
from gliocore.segment.learned import MODEL_DIR as LEARNED_DIR
from gliocore.segment.learned import (Decision, LearnedSegmenter, ModelPair, load_manifest,
                                      load_models, predict_grid)
from gliocore.segment.learned_features import FEATURES, FeatureVolume, compute_features
from gliocore.segment.rule_features import RULE_FEATURES, rule_feature_volume

MODEL_DIR = Path(__file__).with_name("models") / "stacked"
#: Columns of the full stacked model: the 2.0 features, then the rules'.
STACKED: tuple[str, ...] = FEATURES + RULE_FEATURES


def with_rules(fv: FeatureVolume, rules: np.ndarray, spacing: Sequence[float]) -> FeatureVolume:
    """``fv`` with the :data:`RULE_FEATURES` of the rules' full-grid labels ``rules`` appended."""
    extra = rule_feature_volume(np.asarray(rules)[fv.box], fv.brain, spacing)
    return replace(fv, values=np.concatenate([fv.values, extra]), names=STACKED)


def stacked_features(arrays: Sequence[np.ndarray], spacing: Sequence[float],
                     lr_axis: int) -> FeatureVolume:
    """The :data:`STACKED` feature volume of four sequences: the intensity features with the
    rules' appended (training and inference both call this)."""
    rules = rule_arrays(*arrays, spacing=tuple(spacing), lr_axis=lr_axis)
    return with_rules(compute_features(arrays, spacing, lr_axis), rules, spacing)


def segment_arrays(arrays: Sequence[np.ndarray], spacing: Sequence[float], lr_axis: int,
                   models: ModelPair, keep: dict | None = None,
                   decision: Decision = Decision(), without_rules: Any = None
                   ) -> tuple[np.ndarray, dict[str, float]]:
    """Segment four co-registered, skull-stripped sequences (T1, T1c, T2, FLAIR): the rules
    first, then the stacked trees (``keep``, ``decision``: see
    :func:`.learned.predict_grid`).

    Where a sequence does not cover part of the brain (an older protocol's partial FLAIR) the
    rules cannot be trusted anywhere (they normalise and grow over the whole brain), so the
    scan is segmented without them: the covered part by ``without_rules`` (learned 2.0's full
    model, the same trees without the rule features), the uncovered part by the FLAIR-free
    twin in ``models``.

    Returns
    -------
    mask : (I, J, K) uint8 ndarray
        Canonical labels on the input grid.
    uncovered : dict of str -> float
        Fraction of the brain each sequence does not cover (only sequences that miss some).
    """
    shape = np.asarray(arrays[0]).shape
    fv = compute_features(arrays, spacing, lr_axis)
    if fv.uncovered:
        if without_rules is None:
            raise ValueError("a sequence does not cover the whole brain: the stacked backend "
                             "needs learned 2.0's full model (without_rules=) for this scan")
        return predict_grid(ModelPair(without_rules, models.no_flair), fv, spacing, shape, keep)
    rules = rule_arrays(*arrays, spacing=tuple(spacing), lr_axis=lr_axis)
    return predict_grid(models, with_rules(fv, rules, spacing), spacing, shape, keep, decision)


@register_segmenter
class StackedSegmenter(LearnedSegmenter):
    """The learned trees over intensity features plus the rule baseline's output.

    Parameters
    ----------
    model : str
        ``"final"`` (default: trained on all twelve cases) or ``"fold<k>"``.
    """

    name: ClassVar[str] = "stacked"
    title: ClassVar[str] = "Stacked (rules + learned trees, 12 BraTS cases, CPU)"
    code_version: ClassVar[str] = "3"
    model_dir: ClassVar[Path] = MODEL_DIR
    #: Learned 2.0's models: its full model segments a scan a sequence does not fully cover.
    without_rules_dir: ClassVar[Path] = LEARNED_DIR

    @classmethod
    def unavailable_reason(cls) -> str | None:
        for folder in (cls.model_dir, cls.without_rules_dir):
            try:
                load_manifest(folder)
            except FileNotFoundError as exc:
                return str(exc)
        return None

    @property
    def weights_checksum(self) -> str | None:
        """The stacked models' checksum (with the CE decision) and learned 2.0's."""
        manifest = load_manifest(self.without_rules_dir)
        other = manifest["files"][f"{self.options['model']}_full.joblib"]
        return hashlib.sha256((super().weights_checksum + other).encode()).hexdigest()

    def load(self) -> None:
        super().load()
        self._without_rules = load_models(self.options["model"], self.without_rules_dir).full

    def close(self) -> None:
        self._without_rules = None
        super().close()

    def segment_arrays(self, arrays: Sequence[np.ndarray], spacing: Sequence[float],
                       lr_axis: int) -> tuple[np.ndarray, dict[str, float]]:
        """Labels and uncovered fractions of four arrays (see :func:`segment_arrays`)."""
        return segment_arrays(arrays, spacing, lr_axis, self._models, decision=self._decision,
                              without_rules=self._without_rules)
