"""Any trained nnU-Net v2 model through ``nnUNetPredictor``: loaded once, one subject at a time.

The model folder is what nnU-Net v2 training leaves (``nnUNet_results/DatasetXXX/
<trainer>__<plans>__<configuration>``): ``dataset.json``, ``plans.json`` and
``fold_X/checkpoint_final.pth``. :meth:`NnUNetV2Segmenter.load` calls
``initialize_from_trained_model_folder`` once; each subject goes through
``predict_single_npy_array`` (nnU-Net's own preprocessing, sliding window, resampling back).

Two things cannot be guessed safely and are settings:

* ``label_map``: what the model's output integers mean, e.g. ``"3:ce,1:ne,2:ne"`` for a
  BraTS-2023-style model (required; the message lists the model's labels).
* ``channels``: which of our sequences feeds which input channel. By default it is read from
  ``dataset.json``'s ``channel_names`` (``T1``/``t1n``, ``T1c``/``t1ce``/``T1Gd``, ``T2``/``t2w``,
  ``FLAIR``/``t2f``); give ``"t1c=0,flair=1"`` when the names are not recognised.

Arrays are handed over in the axis order of the model's ``image_reader_writer`` (SimpleITK
order for ``SimpleITKIO`` and ``NibabelIO``; reoriented to RAS first for
``NibabelIOWithReorient``), so the model sees what it saw in training.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import SegmenterUnavailableError, SubjectError
from gliocore.imaging.volume import Volume
from gliocore.imaging.labels import LabelMap, get_label_map
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.segment.checks import record_input_warnings
from gliocore.segment.torch_runtime import (package_version, quiet, resolve_torch_device,
                                            torch_threads)
from gliocore.types import SEQUENCES, PathType

#: Environment variable naming a default model folder.
MODEL_ENV = "GLIOSCOPE_NNUNETV2_MODEL"
ADAPTER_REVISION = "1"

#: Channel names (lower case, without separators) recognised per sequence.
CHANNEL_ALIASES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1n", "t1w", "t1native", "t1pre", "native"),
    "t1c": ("t1c", "t1ce", "t1gd", "t1post", "t1contrast", "t1wce", "ce", "t1cgd"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair", "fla"),
}


def parse_channels(spec: str | Mapping[str, int]) -> dict[str, int]:
    """``"t1=0,t1c=1,t2=2,flair=3"`` (or a mapping) -> ``{sequence: channel index}``."""
    if isinstance(spec, Mapping):
        items = [(str(k), int(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).replace(" ", "").split(","):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"channels {spec!r}: expected SEQ=INDEX items, got {part!r}")
            k, v = part.split("=", 1)
            items.append((k, int(v)))
    out: dict[str, int] = {}
    for seq, idx in items:
        seq = seq.lower()
        if seq not in SEQUENCES:
            raise ValueError(f"channels {spec!r}: unknown sequence {seq!r}; use "
                             f"{', '.join(SEQUENCES)}")
        out[seq] = idx
    if len(set(out.values())) != len(out):
        raise ValueError(f"channels {spec!r}: two sequences feed the same channel")
    if not out:
        raise ValueError(f"channels {spec!r} is empty")
    return out


def channels_from_dataset_json(dataset: Mapping[str, Any]) -> dict[str, int]:
    """Read ``{sequence: channel}`` from ``channel_names`` (or v1-style ``modality``).

    Raises
    ------
    ValueError
        When a channel name is not recognised; the message shows the names and the option.
    """
    names = dataset.get("channel_names") or dataset.get("modality") or {}
    out: dict[str, int] = {}
    unknown = []
    for idx, name in sorted(names.items(), key=lambda kv: int(kv[0])):
        key = re.sub(r"[^a-z0-9]", "", str(name).lower())
        seq = next((s for s, aliases in CHANNEL_ALIASES.items() if key in aliases), None)
        if seq is None or seq in out:
            unknown.append(f"{idx}={name!r}")
        else:
            out[seq] = int(idx)
    if unknown or not out:
        raise ValueError(f"cannot tell which sequence feeds channel(s) {', '.join(unknown) or '?'} "
                         f"(dataset.json channel_names: {dict(names)}); give the channels option, "
                         "e.g. channels='t1=0,t1c=1,t2=2,flair=3'")
    return out


def default_model_dir() -> Path | None:
    env = os.environ.get(MODEL_ENV)
    return Path(env).expanduser() if env else None


@register_segmenter
class NnUNetV2Segmenter(Segmenter):
    """A trained nnU-Net v2 model.

    Parameters
    ----------
    model_dir : path
        The trained model folder (``dataset.json``, ``plans.json``, ``fold_X/``); default
        ``$GLIOSCOPE_NNUNETV2_MODEL``. Runtime only (the checksum of its files is in the key).
    label_map : str or LabelMap
        The model's output integers -> tumour classes, e.g. ``"brats2023"`` or
        ``"3:ce,1:ne,2:ne"``. Required. Enters the cache key.
    channels : str or mapping, optional
        Sequence -> model input channel (``"t1=0,t1c=1,t2=2,flair=3"``); default from
        ``dataset.json``. Enters the cache key.
    folds : "auto" or sequence of int/"all"
        Folds to ensemble; ``auto`` takes every ``fold_*`` with a checkpoint (nnU-Net's
        default). Enters the cache key.
    checkpoint_name : str
        ``checkpoint_final.pth`` (default) or ``checkpoint_best.pth``. Enters the cache key.
    mirroring : bool
        Test-time mirroring along the axes the model allows. Enters the cache key.
    step_size : float
        Sliding-window step as a fraction of the patch (nnU-Net default 0.5). Enters the key.
    device : {"auto", "cuda", "cpu", "cuda:N"}
        Runtime only.
    num_threads : int, optional
        Torch CPU threads while predicting. Runtime only.
    check_inputs, verbose : bool
        As for :class:`~gliocore.segment.hdglio.HDGlioSegmenter`. Runtime only.
    """

    code_version: ClassVar[str] = ADAPTER_REVISION
    name: ClassVar[str] = "nnunetv2"
    title: ClassVar[str] = "nnU-Net v2 model (GPU recommended)"
    parallel_safe: ClassVar[bool] = False
    runtime_options: ClassVar[tuple[str, ...]] = ("model_dir", "device", "num_threads",
                                                  "check_inputs", "verbose")

    def __init__(self, model_dir: PathType | None = None, label_map: str | LabelMap | None = None,
                 channels: str | Mapping[str, int] | None = None, folds: Any = "auto",
                 checkpoint_name: str = "checkpoint_final.pth", mirroring: bool = True,
                 step_size: float = 0.5, device: str = "auto", num_threads: int | None = None,
                 check_inputs: bool = True, verbose: bool = False, **options: Any) -> None:
        md = Path(model_dir).expanduser() if model_dir else default_model_dir()
        if label_map is None:
            labels = ""
            if md is not None and (md / "dataset.json").is_file():
                labels = f" The model's dataset.json labels are {_read_json(md / 'dataset.json').get('labels')}."
            raise ValueError("nnunetv2: label_map is required: say which output values are "
                             "contrast-enhancing (ce) and non-enhancing (ne), e.g. "
                             f"label_map='3:ce,1:ne,2:ne' or 'brats2023'.{labels}")
        self._label_map = get_label_map(label_map)
        self._channels = parse_channels(channels) if channels is not None else None
        if isinstance(folds, str) and folds not in ("auto", "all"):
            folds = [f.strip() for f in folds.split(",") if f.strip()]
        folds_opt = folds if isinstance(folds, str) else [f if f == "all" else int(f) for f in folds]
        super().__init__(model_dir=None if md is None else str(md),
                         label_map=self._label_map.name if isinstance(label_map, str) else label_map,
                         channels=None if self._channels is None else dict(sorted(self._channels.items())),
                         folds=folds_opt, checkpoint_name=checkpoint_name,
                         mirroring=bool(mirroring), step_size=float(step_size), device=device,
                         num_threads=num_threads, check_inputs=bool(check_inputs),
                         verbose=bool(verbose), **options)
        self.model_dir = md
        self.folds = folds_opt
        self.checkpoint_name = checkpoint_name
        self.mirroring = bool(mirroring)
        self.step_size = float(step_size)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.check_inputs = bool(check_inputs)
        self.verbose = bool(verbose)
        self._device_option = str(device)
        self.predictor_: Any = None
        self.channels_: dict[str, int] | None = None
        self.input_warnings_: dict[str, list[str]] = {}
        self._checksum: tuple[tuple, str] | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return f"nnunetv2 {package_version('nnunetv2') or 'absent'}; adapter {ADAPTER_REVISION}"

    @property
    def label_map(self) -> LabelMap:
        return self._label_map

    @property
    def device(self) -> str:
        return self._torch_device().type

    def _torch_device(self):
        return resolve_torch_device(self._device_option, self.name)

    def resolved_folds(self) -> list[int | str]:
        """The folds that will be used (``auto``: every fold folder holding the checkpoint)."""
        if self.model_dir is None:
            return []
        if self.folds == "auto":
            found = []
            for p in sorted(self.model_dir.glob("fold_*")):
                if (p / self.checkpoint_name).is_file():
                    tag = p.name[len("fold_"):]
                    found.append(int(tag) if tag.isdigit() else tag)
            return found
        if self.folds == "all":
            return ["all"]
        return list(self.folds)

    def model_files(self) -> list[Path]:
        assert self.model_dir is not None
        return ([self.model_dir / "dataset.json", self.model_dir / "plans.json"]
                + [self.model_dir / f"fold_{f}" / self.checkpoint_name for f in self.resolved_folds()])

    @property
    def weights_checksum(self) -> str | None:
        if self._model_reason():
            return None
        files = self.model_files()
        key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if self._checksum is None or self._checksum[0] != key:
            h = hashlib.sha256()
            for p in files:
                h.update(str(p.relative_to(self.model_dir)).encode() + b"\0")
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            self._checksum = (key, h.hexdigest())
        return self._checksum[1]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util
        for module in ("torch", "nnunetv2"):
            if importlib.util.find_spec(module) is None:
                return (f"the {module} package is not installed; `pip install nnunetv2==2.8.1` "
                        "(keeping torch==2.13.0) or install the pinned requirements")
        md = default_model_dir()
        if md is None:
            return (f"no model folder given: pass model_dir (--model-dir) or set {MODEL_ENV} to "
                    "a trained nnU-Net v2 results folder (dataset.json, plans.json, fold_X/)")
        return _model_dir_reason(md, "checkpoint_final.pth")

    def _model_reason(self) -> str | None:
        if self.model_dir is None:
            return (f"no model folder given: pass model_dir (--model-dir) or set {MODEL_ENV}")
        reason = _model_dir_reason(self.model_dir, self.checkpoint_name)
        if reason:
            return reason
        if not self.resolved_folds():
            return f"{self.model_dir} has no fold_*/{self.checkpoint_name}"
        missing = [str(p) for p in self.model_files() if not p.is_file()]
        if missing:
            return f"missing model file(s): {', '.join(missing)}"
        return None

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        """Build the predictor and read every fold's weights (once)."""
        if self._loaded:
            return
        import importlib.util
        if importlib.util.find_spec("nnunetv2") is None:
            raise SegmenterUnavailableError(f"{self.name}: {self.unavailable_reason()}")
        reason = self._model_reason()
        if reason:
            raise SegmenterUnavailableError(f"{self.name}: {reason}")
        import torch
        device = self._torch_device()
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SegmenterUnavailableError(f"{self.name}: device {device} was asked for but CUDA "
                                            "is not available; use device='auto' or 'cpu'")
        dataset = _read_json(self.model_dir / "dataset.json")
        try:
            channels = self._channels or channels_from_dataset_json(dataset)
        except ValueError as exc:
            raise SegmenterUnavailableError(f"{self.name}: {exc}") from exc
        n_channels = len(dataset.get("channel_names") or dataset.get("modality") or {})
        bad = sorted(i for i in channels.values() if not 0 <= i < n_channels)
        if bad or len(channels) != n_channels:
            raise SegmenterUnavailableError(
                f"{self.name}: the model takes {n_channels} channels "
                f"({dataset.get('channel_names')}) but channels={channels}; map one sequence to "
                "each channel")
        with quiet(not self.verbose), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
            predictor = nnUNetPredictor(tile_step_size=self.step_size, use_gaussian=True,
                                        use_mirroring=self.mirroring,
                                        perform_everything_on_device=device.type == "cuda",
                                        device=device, verbose=self.verbose,
                                        verbose_preprocessing=self.verbose, allow_tqdm=False)
            # nnU-Net v2 passes weights_only=False to torch.load itself.
            predictor.initialize_from_trained_model_folder(
                str(self.model_dir), use_folds=tuple(self.resolved_folds()),
                checkpoint_name=self.checkpoint_name)
        self.predictor_ = predictor
        self.channels_ = dict(channels)
        self._reader = predictor.plans_manager.plans.get("image_reader_writer", "SimpleITKIO")
        self._device = device
        self.input_warnings_ = {}
        self._loaded = True

    def close(self) -> None:
        cuda = self.predictor_ is not None and self._device.type == "cuda"
        self.predictor_ = None
        if cuda:
            import torch
            torch.cuda.empty_cache()
        super().close()

    # -- work -----------------------------------------------------------------------------
    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        if self.predictor_ is None:
            self.load()
        sid = subject.subject_id
        if self.check_inputs:
            record_input_warnings(subject, images, self.input_warnings_)
        order = sorted(self.channels_.items(), key=lambda kv: kv[1])
        missing = [seq for seq, _ in order if seq not in images]
        if missing:
            raise SubjectError(sid, f"the model needs {', '.join(missing)}", stage="segment")
        ref = images[order[0][0]]
        if any(images[seq].shape != ref.shape for seq, _ in order):
            raise SubjectError(sid, "the sequences do not share one grid; co-register and "
                               "resample them first", stage="segment")
        arrays = [np.asarray(images[seq].data, dtype=np.float32) for seq, _ in order]
        affine = np.asarray(ref.affine, dtype=float)
        ornt = None
        spacing = np.asarray(ref.spacing, dtype=float)
        if self._reader == "NibabelIOWithReorient":
            from nibabel.orientations import apply_orientation, io_orientation
            ornt = io_orientation(affine)  # row i: (output axis, flip) of input axis i
            arrays = [apply_orientation(a, ornt) for a in arrays]
            reoriented = np.empty(3)
            reoriented[ornt[:, 0].astype(int)] = spacing
            spacing = reoriented
        data = np.stack([a.transpose(2, 1, 0) for a in arrays])
        props = {"spacing": [float(s) for s in spacing[::-1]]}
        with quiet(not self.verbose), warnings.catch_warnings(), \
                torch_threads(self.num_threads):
            warnings.simplefilter("ignore", FutureWarning)
            seg = self.predictor_.predict_single_npy_array(data, props, None, None, False)
        seg = np.asarray(seg).transpose(2, 1, 0)
        if ornt is not None:
            from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform
            seg = apply_orientation(seg, ornt_transform(axcodes2ornt("RAS"), ornt))
        return seg


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _model_dir_reason(md: Path, checkpoint_name: str) -> str | None:
    if not md.is_dir():
        return f"nnU-Net v2 model folder {md} does not exist"
    absent = [n for n in ("dataset.json", "plans.json") if not (md / n).is_file()]
    if absent:
        return (f"{md} lacks {', '.join(absent)}; give the trained model folder "
                "(nnUNet_results/DatasetXXX/<trainer>__<plans>__<configuration>)")
    if not any((p / checkpoint_name).is_file() for p in md.glob("fold_*")):
        return f"{md} has no fold_*/{checkpoint_name}"
    return None
