"""Preprocess one scan: N4, rigid co-registration to T1c, brain extraction, QC, BraTS-style output.

Output (in ``out_dir``): ``<id>_t1.nii.gz``, ``<id>_t1ce.nii.gz``, ``<id>_t2.nii.gz``,
``<id>_flair.nii.gz`` (skull-stripped, on the T1c grid, zero background: the BraTS naming that
``--naming brats`` reads), ``<id>_brainmask.nii.gz``, ``<id>_<seq>_to_t1c.tfm``,
``qc.npz`` (three slices per step for the Viewer's QC pictures, :mod:`gliocore.preprocess.qc`) and
``preprocess.json`` (steps, timings, similarity, QC flags, model and cache key). Nothing in the
output carries a DICOM header. With ``space="sri24"`` the scan is also registered to SRI24
(:mod:`gliocore.preprocess.atlas_space`): ``sri24/`` images, both transforms, ``atlas_space.json``.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gliocore.preprocess.atlas_space import ATLAS_SPACE_VERSION, SPACE_CHOICES, to_atlas_space
from gliocore.preprocess.bias import BIAS_VERSION, n4_correct
from gliocore.preprocess.brain import (BRAIN_VERSION, extract_brain, resolve_backend,
                                      weights_sha256)
from gliocore.preprocess.coregister import COREGISTER_VERSION, register_rigid
from gliocore.preprocess.qc import QC_FILE, qc_slices, save_qc

OUTPUT_SUFFIX = {"t1": "_t1", "t1c": "_t1ce", "t2": "_t2", "flair": "_flair"}
#: Plausible adult brain volume (ml) for the mask; outside it the scan is flagged.
BRAIN_ML_RANGE = (800.0, 2000.0)
#: Share of the brain a sequence's field of view must cover; below it the scan is flagged and
#: the uncovered part is zero in that sequence (recorded in ``<id>_<seq>_fov.nii.gz``).
MIN_COVERAGE = 0.98
#: Mutual information after registration below this, or lower than before by more than
#: ``MI_DROP`` (inputs already aligned keep their MI within a few thousandths), is flagged.
MIN_MI_AFTER = 0.15
MI_DROP = 0.02
CACHE_FILE = "preprocess.json"
#: Brain-mask Dice with the atlas brain after the affine registration below which a scan in
#: atlas space is flagged (BraTS cases reach about 0.9 with the SRI24 reference).
MIN_ATLAS_DICE = 0.8


@dataclass(frozen=True)
class PreprocessOptions:
    """Choices of the preprocessing stage (all part of the cache key)."""

    brain_backend: str = "auto"
    folds: int = 1
    tta: bool = False
    device: str = "auto"  # "auto": CUDA when torch sees a GPU, else CPU (not in the cache key)
    bias_correction: bool = True
    threads: int | None = None
    #: "native" (the T1c grid) or "sri24": also register to SRI24 and segment there
    space: str = "native"

    def __post_init__(self) -> None:
        if self.folds not in (1, 5):
            raise ValueError(f"folds must be 1 (HD-BET fast) or 5 (accurate), got {self.folds}")
        if self.space not in SPACE_CHOICES:
            raise ValueError(f"space must be one of {SPACE_CHOICES}, got {self.space!r}")

    def key_items(self) -> dict:
        items = {"brain_backend": resolve_backend(self.brain_backend), "folds": self.folds,
                 "tta": self.tta,
                 "bias": self.bias_correction}
        if self.space != "native":  # native keys stay as they were: existing caches stay valid
            items["space"] = [self.space, ATLAS_SPACE_VERSION]
        return items


@dataclass
class PreprocessResult:
    """What one scan's preprocessing did; written to ``preprocess.json``."""

    scan_label: str
    key: str
    outputs: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    similarity: dict[str, dict[str, float]] = field(default_factory=dict)
    transforms: dict[str, dict[str, float]] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    brain_ml: float | None = None
    model: str | None = None
    weights_sha256: str | None = None
    flags: list[str] = field(default_factory=list)
    cached: bool = False
    atlas: dict[str, object] | None = None


def cache_key(input_hashes: Mapping[str, str], options: PreprocessOptions) -> str:
    """Content key: the inputs' hashes, the step versions, the options and the weights' checksum."""
    items = {"inputs": dict(sorted(input_hashes.items())), "options": options.key_items(),
             "versions": [COREGISTER_VERSION, BIAS_VERSION, BRAIN_VERSION],
             "weights": weights_sha256(resolve_backend(options.brain_backend), options.folds)}
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:24]


def load_cached(out_dir: Path, key: str) -> PreprocessResult | None:
    """The stored result in ``out_dir`` when its key is ``key`` and its outputs exist."""
    f = Path(out_dir) / CACHE_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or not all(Path(p).is_file() for p in data["outputs"].values()):
        return None
    data["cached"] = True
    return PreprocessResult(**data)


def preprocess_scan(images: Mapping[str, object], out_dir: Path, scan_label: str,
                    input_hashes: Mapping[str, str],
                    options: PreprocessOptions | None = None) -> PreprocessResult:
    """Run N4, rigid co-registration to T1c and brain extraction on one scan; write the outputs.

    Parameters
    ----------
    images : mapping
        ``t1``, ``t1c``, ``t2``, ``flair`` -> SimpleITK image (each on its own grid).
    out_dir : Path
        The scan's output folder (its ``preprocess.json`` is the cache).
    scan_label : str
        Subject ID (and scan), used for file names; never a DICOM identifier.
    input_hashes : mapping
        Content hash of each input (files or DICOM series), for the cache key.
    options : PreprocessOptions, optional
    """
    import SimpleITK as sitk
    options = options or PreprocessOptions()
    out_dir = Path(out_dir)
    key = cache_key(input_hashes, options)
    if (hit := load_cached(out_dir, key)) is not None:
        return hit
    out_dir.mkdir(parents=True, exist_ok=True)
    res = PreprocessResult(scan_label=scan_label, key=key, outputs={})
    clock = time.perf_counter()
    imgs = {s: sitk.Cast(images[s], sitk.sitkFloat32) for s in ("t1", "t1c", "t2", "flair")}
    raw = imgs  # kept for the QC pictures (before/after N4)
    if options.bias_correction:
        imgs = {s: n4_correct(im)[0] for s, im in imgs.items()}
    res.seconds["bias"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    fixed = imgs["t1c"]
    on_t1c = {"t1c": fixed}
    coverage_maps, transforms = {}, {}
    for seq in ("t1", "t2", "flair"):
        reg = register_rigid(fixed, imgs[seq])
        on_t1c[seq] = reg.image
        coverage_maps[seq] = reg.coverage
        transforms[seq] = reg.transform
        res.similarity[seq] = {"mi_before": round(reg.mi_before, 4), "mi_after": round(reg.mi_after, 4)}
        res.transforms[seq] = {"rotation_deg": round(reg.rotation_deg, 2),
                               "translation_mm": round(reg.translation_mm, 2)}
        tfm = out_dir / f"{scan_label}_{seq}_to_t1c.tfm"
        sitk.WriteTransform(reg.transform, str(tfm))
        res.outputs[f"{seq}_transform"] = str(tfm)
    res.seconds["coregister"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    brain = extract_brain(fixed, resolve_backend(options.brain_backend), options.folds,
                          options.device,
                          options.tta, options.threads)
    res.seconds["brain"] = round(time.perf_counter() - clock, 2)
    res.brain_ml, res.model, res.weights_sha256 = round(brain.volume_ml, 1), brain.model, \
        brain.weights_sha256
    _write_outputs(res, on_t1c, brain.mask, coverage_maps, out_dir, scan_label)
    clock = time.perf_counter()
    res.outputs["qc"] = str(save_qc(out_dir / QC_FILE, qc_slices(raw, imgs, transforms, brain.mask,
                                                                  coverage_maps)))
    res.seconds["qc"] = round(time.perf_counter() - clock, 2)
    if options.space != "native":
        _atlas_step(res, out_dir, scan_label)
    _flag(res)
    (out_dir / CACHE_FILE).write_text(json.dumps(asdict(res), indent=1, sort_keys=True))
    return res


def _atlas_step(res: PreprocessResult, out_dir: Path, label: str) -> None:
    """Register the brain to the atlas space; record its files, time and quality in ``res``."""
    record = to_atlas_space(res.outputs, out_dir, label, res.key)
    res.seconds["atlas"] = record.seconds
    res.outputs.update({f"{record.space}_{k}": str(v) for k, v in record.images.items()})
    res.outputs[f"to_{record.space}"] = str(record.forward)
    res.outputs[f"from_{record.space}"] = str(record.inverse)
    res.atlas = {"space": record.space, "brain_dice": record.brain_dice,
                 "jacobian": record.jacobian}
    if record.brain_dice < MIN_ATLAS_DICE:
        res.flags.append(f"{record.space}: poor registration to the atlas (brain Dice "
                         f"{record.brain_dice:.2f})")


def brain_coverage(fov, brain: np.ndarray) -> float:
    """Share of the ``brain`` voxels (bool array on the T1c grid) inside ``fov`` (SimpleITK)."""
    import SimpleITK as sitk
    c = sitk.GetArrayFromImage(fov).astype(bool)
    return round(float((c & brain).sum()) / max(1, int(brain.sum())), 4)


def _write_outputs(res: PreprocessResult, on_t1c: dict, mask, coverage_maps: dict, out_dir: Path,
                   label: str) -> None:
    import SimpleITK as sitk
    m = sitk.GetArrayFromImage(mask).astype(bool)
    for seq, cov in coverage_maps.items():
        res.coverage[seq] = brain_coverage(cov, m)
        if res.coverage[seq] < MIN_COVERAGE:
            fov = out_dir / f"{label}_{seq}_fov.nii.gz"
            sitk.WriteImage(sitk.Cast(cov, sitk.sitkUInt8), str(fov), True)
            res.outputs[f"{seq}_fov"] = str(fov)
    for seq, img in on_t1c.items():
        arr = sitk.GetArrayFromImage(img).astype(np.float32)
        arr[~m] = 0.0
        arr[arr < 0] = 0.0  # linear interpolation and N4 can leave tiny negatives
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        path = out_dir / f"{label}{OUTPUT_SUFFIX[seq]}.nii.gz"
        sitk.WriteImage(out, str(path), True)
        res.outputs[seq] = str(path)
    mpath = out_dir / f"{label}_brainmask.nii.gz"
    sitk.WriteImage(sitk.Cast(mask, sitk.sitkUInt8), str(mpath), True)
    res.outputs["brainmask"] = str(mpath)


def _flag(res: PreprocessResult) -> None:
    """Add the QC flags of ``res`` (brain volume, registration similarity, field of view)."""
    lo, hi = BRAIN_ML_RANGE
    if res.brain_ml is not None and not lo <= res.brain_ml <= hi:
        res.flags.append(f"brain volume {res.brain_ml:.0f} ml outside {lo:.0f}-{hi:.0f} ml")
    for seq, sim in res.similarity.items():
        if sim["mi_after"] < MIN_MI_AFTER or sim["mi_after"] < sim["mi_before"] - MI_DROP:
            res.flags.append(f"{seq}: poor registration similarity (MI {sim['mi_before']:.3f} -> "
                             f"{sim['mi_after']:.3f})")
    for seq, cov in res.coverage.items():
        if cov < MIN_COVERAGE:
            res.flags.append(f"{seq}: field of view covers {cov:.0%} of the brain; the rest is "
                             f"zero in {seq} (see {seq}_fov)")
