"""A segmenter learned from real labelled gliomas: gradient-boosted trees over voxel features.

Method
------
A :class:`sklearn.ensemble.HistGradientBoostingClassifier` predicts, per brain voxel,
background / non-enhancing / contrast-enhancing from the relative, multi-scale features of
:mod:`.learned_features` (each sequence bias-flattened, then robust z-scores of T1, T1c, T2,
FLAIR smoothed at 1, 3 and 8 mm, local contrast at two scales, local texture, left-right
asymmetry at two scales, T1c - T1, FLAIR - T2, distances to the brain's edge and midline). Where FLAIR does not cover part of the brain (an older protocol's partial field
of view, found per slice), a second model trained without the FLAIR features predicts those
voxels, and the scan says so (:attr:`LearnedSegmenter.input_warnings_`).

Inference runs coarse to fine: every second voxel first, then every voxel next to a voxel
where the coarse pass saw tumour (probability > 0.05). Labels are decided nested, as the
regions are scored (:func:`decide`): tumour where P(tumour) > 1/2, then CE or NE. Post-processing, fixed before any
evaluation: tumour components under 500 mm³ dropped (the largest is always kept), holes
filled in 3-D (a necrotic core inside its rim is non-enhancing tumour).

Training (``scripts/train_learned_segmenter.py``, seeded) uses the twelve BraTS 2018 training
cases in ``../shared/cases/brats18-{dev,train}`` (TCIA, images CC BY 3.0, expert labels of the
BraTS challenge), each clean and in three degraded copies (:mod:`.degrade`), with the number
of boosting rounds chosen by early stopping on inner validation cases, and leaves cases
out for cross-validation: the figures it records (``models/learned/cv.json``) each come from
a fold model that never saw that case. The shipped model is trained on all twelve.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from gliocore.cohort.loading import Subject
from gliocore.imaging.io import Volume
from gliocore.imaging.labels import CANONICAL, LabelMap
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.segment.checks import record_input_warnings
from gliocore.segment.learned_features import (NO_FLAIR, SEQUENCES, FeatureVolume,
                                               compute_features)

MODEL_DIR = Path(__file__).with_name("models") / "learned"
#: Coarse pass: voxels whose tumour probability exceeds this are refined at full resolution.
CANDIDATE_P = 0.05
MIN_COMPONENT_MM3 = 500.0


@dataclass(frozen=True)
class Decision:
    """How class probabilities become labels (:func:`labels_from_probabilities`).

    Attributes
    ----------
    ce_share : float
        A tumour voxel is contrast-enhancing where P(CE) > ``ce_share`` x (P(CE) + P(NE))
        (0.5: the larger of the two).
    min_ce_mm3 : float
        Enhancing components smaller than this become non-enhancing (0: none).
    """

    ce_share: float = 0.5
    min_ce_mm3: float = 0.0

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "Decision":
        """The decision a model's manifest records (the default where it records none)."""
        return cls(**manifest.get("decision", {}).get("chosen", {}))


@dataclass
class ModelPair:
    """The model on all four sequences and the one without FLAIR."""

    full: Any
    no_flair: Any


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(model_dir: Path = MODEL_DIR) -> dict[str, Any]:
    """The manifest of the shipped models (version, checksums, training cases, CV figures)."""
    path = Path(model_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"learned segmenter: no model manifest at {path}; run "
                                "scripts/train_learned_segmenter.py")
    return json.loads(path.read_text())


def load_models(prefix: str, model_dir: Path = MODEL_DIR) -> ModelPair:
    """Load ``<prefix>_full`` and ``<prefix>_noflair``, refusing a file whose checksum differs.

    Parameters
    ----------
    prefix : str
        ``"final"`` (the shipped model) or ``"fold<k>"`` (a cross-validation fold's model).
    """
    import joblib

    manifest = load_manifest(model_dir)
    pair = []
    for kind in ("full", "noflair"):
        name = f"{prefix}_{kind}.joblib"
        path = Path(model_dir) / name
        want = manifest["files"].get(name)
        if want is None or not path.is_file():
            raise FileNotFoundError(f"learned segmenter: model file {path} missing")
        got = file_sha256(path)
        if got != want:
            raise ValueError(f"learned segmenter: {path} has checksum {got[:12]}, the manifest "
                             f"says {want[:12]}; retrain or restore the file")
        pair.append(joblib.load(path))
    return ModelPair(*pair)


@lru_cache(maxsize=4)
def _cached_models(prefix: str, model_dir: str) -> ModelPair:
    return load_models(prefix, Path(model_dir))


def _predict(model: Any, fv: FeatureVolume, names: Sequence[str], where: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, 3)`` at the voxels ``where`` (columns: background, CE, NE)."""
    if not where.any():
        return np.zeros((0, 3), dtype=np.float32)
    return model.predict_proba(fv.columns(names, where)).astype(np.float32)


def _probabilities(models: ModelPair, fv: FeatureVolume, where: np.ndarray) -> np.ndarray:
    """Probabilities at ``where``: the full model on all of ``fv``'s channels, the FLAIR-free
    model (on :data:`NO_FLAIR`) where FLAIR does not cover the brain."""
    no_flair = fv.uncovered.get("flair")
    if no_flair is None:
        return _predict(models.full, fv, fv.names, where)
    out = np.zeros((int(where.sum()), 3), dtype=np.float32)
    sel = no_flair[where]
    out[~sel] = _predict(models.full, fv, fv.names, where & ~no_flair)
    out[sel] = _predict(models.no_flair, fv, NO_FLAIR, where & no_flair)
    return out


def crop_probabilities(models: ModelPair, fv: FeatureVolume) -> np.ndarray:
    """Class probabilities ``(3, I, J, K)`` (background, CE, NE) on the feature crop, coarse to
    fine: every second voxel first, then every voxel next to a coarse tumour candidate; voxels
    never refined keep P(background) = 1."""
    brain = fv.brain
    coarse = np.zeros_like(brain)
    coarse[::2, ::2, ::2] = brain[::2, ::2, ::2]
    p = _probabilities(models, fv, coarse)
    hit = np.zeros_like(brain)
    hit[coarse] = (1.0 - p[:, 0]) > CANDIDATE_P
    cand = ndi.binary_dilation(hit, np.ones((3, 3, 3), dtype=bool)) & brain
    prob = np.zeros((3,) + brain.shape, dtype=np.float32)
    prob[0] = 1.0
    if cand.any():
        prob[:, cand] = _probabilities(models, fv, cand).T
    return prob


def labels_from_probabilities(prob: np.ndarray, spacing: Sequence[float],
                              decision: Decision = Decision()) -> np.ndarray:
    """Canonical labels (0, 1 = CE, 2 = NE) from :func:`crop_probabilities`, post-processed."""
    tumour = prob[0] < 1.0
    labels = np.zeros(prob.shape[1:], dtype=np.uint8)
    labels[tumour] = decide(prob[:, tumour].T, decision.ce_share)
    return postprocess(labels, spacing, decision.min_ce_mm3)


def decide(p: np.ndarray, ce_share: float = 0.5) -> np.ndarray:
    """Labels from class probabilities ``(n, 3)`` (background, CE, NE), nested as the regions
    are scored: tumour where P(CE) + P(NE) > 1/2 (the whole tumour's own probability, not the
    larger of its two parts against background), then CE where P(CE) > ``ce_share`` x
    (P(CE) + P(NE))."""
    tumour = p[:, 0] < 0.5
    ce = p[:, 1] > ce_share * (p[:, 1] + p[:, 2])
    return np.where(tumour, np.where(ce, 1, 2), 0).astype(np.uint8)


def postprocess(labels: np.ndarray, spacing: Sequence[float],
                min_ce_mm3: float = 0.0) -> np.ndarray:
    """Drop tumour components under :data:`MIN_COMPONENT_MM3` (keeping the largest), fill holes
    (as non-enhancing), and relabel enhancing components under ``min_ce_mm3`` non-enhancing."""
    tumour = labels > 0
    full = np.ones((3, 3, 3), dtype=bool)
    lab, n = ndi.label(tumour, full)
    if n == 0:
        return labels
    sizes = np.bincount(lab.ravel())[1:] * float(np.prod(spacing))
    keep = (sizes >= MIN_COMPONENT_MM3) | (sizes == sizes.max())
    tumour = np.isin(lab, np.flatnonzero(keep) + 1)
    out = np.where(tumour, labels, 0).astype(np.uint8)
    box = ndi.find_objects(tumour.astype(np.uint8))[0]
    holes = ndi.binary_fill_holes(tumour[box]) & ~tumour[box]
    out[box][holes] = 2
    if min_ce_mm3 > 0 and (out == 1).any():
        lab, n = ndi.label(out == 1, full)
        small = np.flatnonzero(np.bincount(lab.ravel())[1:] * float(np.prod(spacing))
                               < min_ce_mm3) + 1
        out[np.isin(lab, small)] = 2
    return out


def segment_arrays(arrays: Sequence[np.ndarray], spacing: Sequence[float], lr_axis: int,
                   models: ModelPair, keep: dict | None = None,
                   decision: Decision = Decision()) -> tuple[np.ndarray, dict[str, float]]:
    """Segment four co-registered, skull-stripped sequences (T1, T1c, T2, FLAIR); ``keep``
    and ``decision`` as in :func:`predict_grid`.

    Returns
    -------
    mask : (I, J, K) uint8 ndarray
        Canonical labels on the input grid.
    uncovered : dict of str -> float
        Fraction of the brain each sequence does not cover (only sequences that miss some).
    """
    fv = compute_features(arrays, spacing, lr_axis)
    return predict_grid(models, fv, spacing, np.asarray(arrays[0]).shape, keep, decision)


def predict_grid(models: ModelPair, fv: FeatureVolume, spacing: Sequence[float],
                 shape: tuple[int, ...], keep: dict | None = None,
                 decision: Decision = Decision()) -> tuple[np.ndarray, dict[str, float]]:
    """The labels of a feature volume's crop placed on the full grid of ``shape``, and the
    fraction of the brain each sequence does not cover (:func:`segment_arrays`' returns).
    ``keep``: a dict that receives the crop's probabilities (``"prob"``) and ``"box"``;
    ``decision``: how the probabilities become labels."""
    prob = crop_probabilities(models, fv)
    if keep is not None:
        keep.update(prob=prob, box=fv.box)
    out = np.zeros(shape, dtype=np.uint8)
    out[fv.box] = labels_from_probabilities(prob, spacing, decision)
    n = max(int(fv.brain.sum()), 1)
    return out, {k: float(v.sum()) / n for k, v in fv.uncovered.items()}


@register_segmenter
class LearnedSegmenter(Segmenter):
    """Gradient-boosted voxel classifier learned from twelve expert-labelled BraTS cases.

    Parameters
    ----------
    model : str
        ``"final"`` (default: trained on all twelve cases) or ``"fold<k>"`` (a
        cross-validation fold's model, for checking the recorded held-out figures).
    """

    name: ClassVar[str] = "learned"
    title: ClassVar[str] = "Learned (gradient-boosted trees, 12 BraTS cases, CPU)"
    code_version: ClassVar[str] = "2"
    #: Where the models and their manifest live.
    model_dir: ClassVar[Path] = MODEL_DIR
    handles_partial_coverage: ClassVar[bool] = True  # the FLAIR-free twin model

    def __init__(self, model: str = "final", **options: Any) -> None:
        if options:
            raise ValueError(f"unknown {self.name} option(s) {sorted(options)}; known: model")
        super().__init__(model=str(model))
        self._models: ModelPair | None = None
        self._decision = Decision()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            load_manifest(cls.model_dir)
        except FileNotFoundError as exc:
            return str(exc)
        return None

    @property
    def version(self) -> str:
        import sklearn

        return f"{load_manifest(self.model_dir)['version']} (scikit-learn {sklearn.__version__})"

    @property
    def weights_checksum(self) -> str | None:
        manifest = load_manifest(self.model_dir)
        prefix = self.options["model"]
        decision = json.dumps(manifest.get("decision", {}).get("chosen", {}), sort_keys=True)
        return hashlib.sha256(("".join(manifest["files"][f"{prefix}_{k}.joblib"]
                                       for k in ("full", "noflair")) + decision).encode()
                              ).hexdigest()

    @property
    def label_map(self) -> LabelMap:
        return CANONICAL

    def load(self) -> None:
        super().load()
        self._models = _cached_models(self.options["model"], str(self.model_dir))
        self._decision = Decision.from_manifest(load_manifest(self.model_dir))

    def close(self) -> None:
        self._models = None
        super().close()

    def segment_arrays(self, arrays: Sequence[np.ndarray], spacing: Sequence[float],
                       lr_axis: int) -> tuple[np.ndarray, dict[str, float]]:
        """Labels and uncovered fractions of four arrays (see :func:`segment_arrays`)."""
        return segment_arrays(arrays, spacing, lr_axis, self._models, decision=self._decision)

    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        missing = [s for s in SEQUENCES if s not in images]
        if missing:
            raise ValueError(f"{self.name} needs t1, t1c, t2 and flair; missing {missing} "
                             f"(subject {subject.subject_id})")
        messages = record_input_warnings(subject, images, self.input_warnings_)
        ref = images["flair"]
        lr_axis = int(np.argmax(np.abs(np.asarray(ref.affine, dtype=float)[0, :3])))
        mask, uncovered = self.segment_arrays([images[s].data for s in SEQUENCES], ref.spacing,
                                              lr_axis)
        messages += [f"{seq.upper()} does not cover {100 * frac:.0f} % of the brain: that part "
                    "was segmented from the other sequences" if seq == "flair" else
                    f"{seq.upper()} does not cover {100 * frac:.0f} % of the brain: that part "
                    "was segmented with it imputed (less reliable)"
                    for seq, frac in uncovered.items() if frac >= 0.01]
        return mask
