"""HD-GLIO (nnU-Net v1) through its Python API: the model is restored once per batch.

``hd_glio_predict`` calls nnU-Net v1's ``predict_cases``, which restores the trainer and reads
the checkpoint for every call, preprocesses in worker processes and writes NIfTI files.
:class:`HDGlioSegmenter` does the same steps for one subject at a time with a trainer restored
once in :meth:`~HDGlioSegmenter.load`:

1. ``restore_model`` from ``fold_0/model_final_checkpoint.model.pkl`` (init arguments, trainer
   class name and plans), ``initialize(training=False)``, then the weights with
   ``torch.load(..., weights_only=False)`` (torch >= 2.6 refuses nnU-Net v1 checkpoints
   otherwise; the argument is passed to that one call, nothing global is changed);
2. per subject, what ``preprocess_patient`` does (crop to the non-zero region, transpose,
   resample to the plans' spacing, normalise), but from the loaded arrays instead of files;
3. ``predict_preprocessed_data_return_seg_and_softmax`` (sliding window, Gaussian weighting,
   mirroring on or off), and
4. what ``save_segmentation_nifti_from_softmax`` does (resample the softmax back, argmax, undo
   the crop), returning the array instead of writing a file; then the model folder's
   ``postprocessing.json`` if it has one, as ``predict_cases`` does.

Device: CUDA when available (or ``device="cuda"``), otherwise CPU. nnU-Net v1 moves tensors to
the GPU whenever ``torch.cuda.is_available()`` is true, so running on the CPU of a CUDA machine
(``device="cpu"``) hides CUDA from nnU-Net for the duration of the restore and of each
prediction. HD-GLIO does not support the CPU officially; on two CPU cores a full-size case takes
tens of minutes with mirroring (8 network passes per tile) and a few minutes without it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import SegmenterUnavailableError, SubjectError
from gliocore.imaging.volume import Volume
from gliocore.imaging.labels import LabelMap, get_label_map
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.segment.checks import record_input_warnings
from gliocore.segment.torch_runtime import (cuda_hidden, package_version, quiet,
                                            resolve_torch_device, torch_threads)
from gliocore.types import SEQUENCES, PathType

#: Environment variable naming the HD-GLIO parameter folder (overrides hd-glio's default).
WEIGHTS_ENV = "GLIOSCOPE_HDGLIO_WEIGHTS"
CHECKPOINT_NAME = "model_final_checkpoint"
FOLD = 0
#: Revision of this adapter; bump when the way it calls nnU-Net changes the output.
ADAPTER_REVISION = "1"

INSTALL_HINT = (
    "HD-GLIO's parameters are downloaded on first use and cannot be fetched here. On a machine "
    "with internet access, run `hd_glio_predict` once (it saves them to ~/hd_glio_params) or "
    "download hd_glio_v2_params.zip as HD-GLIO's README describes "
    "(https://github.com/NeuroAI-HD/HD-GLIO) and unzip it; then copy that folder (it holds "
    "fold_0/model_final_checkpoint.model and .model.pkl) to ~/hd_glio_params on this machine, "
    f"or anywhere and point {WEIGHTS_ENV} at it (or pass it with --weights-dir, the "
    "weights_dir option).")


def default_weights_dir() -> Path:
    """Where the parameters are looked for: ``$GLIOSCOPE_HDGLIO_WEIGHTS``, else hd-glio's folder."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # hd_glio prints citations on import
            from hd_glio.paths import folder_with_parameter_files
    except ImportError:
        return Path.home() / "hd_glio_params"
    return Path(folder_with_parameter_files)


def checkpoint_files(weights_dir: PathType) -> list[Path]:
    """The files that make up the model: checkpoint, its ``.pkl`` and, if present,
    ``postprocessing.json`` (it changes the output too)."""
    d = Path(weights_dir)
    files = [d / f"fold_{FOLD}" / f"{CHECKPOINT_NAME}.model",
             d / f"fold_{FOLD}" / f"{CHECKPOINT_NAME}.model.pkl"]
    if (d / "postprocessing.json").is_file():
        files.append(d / "postprocessing.json")
    return files


def missing_weights(weights_dir: PathType) -> str | None:
    """Why ``weights_dir`` is not a usable HD-GLIO parameter folder, or None."""
    d = Path(weights_dir)
    if not d.is_dir():
        return f"HD-GLIO parameter folder {d} does not exist. {INSTALL_HINT}"
    absent = [str(p.relative_to(d)) for p in checkpoint_files(d)[:2] if not p.is_file()]
    if absent:
        return f"HD-GLIO parameter folder {d} lacks {', '.join(absent)}. {INSTALL_HINT}"
    return None


_CHECKSUMS: dict[tuple, str] = {}


def weights_sha256(weights_dir: PathType) -> str:
    """SHA-256 over the checkpoint files (names and bytes), memoised on path, size and mtime."""
    files = checkpoint_files(weights_dir)
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _CHECKSUMS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        _CHECKSUMS[key] = h.hexdigest()
    return _CHECKSUMS[key]


@register_segmenter
class HDGlioSegmenter(Segmenter):
    """HD-GLIO v2: contrast-enhancing tumour and non-enhancing T2/FLAIR abnormality.

    Parameters
    ----------
    mirroring : bool
        Test-time mirroring (8 passes per tile), as ``hd_glio_predict`` always does. Off is
        about 8x faster, slightly less accurate. Enters the cache key.
    label_map : str or LabelMap
        Meaning of HD-GLIO's output integers. Default ``"hdglio-v2"`` (1 = non-enhancing,
        2 = contrast-enhancing, as published integrations read v2); ``"seed"`` reads
        1 = contrast-enhancing. Enters the cache key.
    step_size : float
        Sliding-window step as a fraction of the patch (HD-GLIO: 0.5). Enters the cache key.
    postprocessing : bool
        Apply the model folder's ``postprocessing.json`` when present (as ``predict_cases``).
    weights_dir : path, optional
        Parameter folder; default ``$GLIOSCOPE_HDGLIO_WEIGHTS`` or hd-glio's ``~/hd_glio_params``.
        Not in the cache key as such: the weights' checksum is.
    device : {"auto", "cuda", "cpu", "cuda:N"}
        ``auto`` takes CUDA when available. Runtime only.
    mixed_precision : bool
        Autocast to float16 on CUDA. Default False, as ``hd_glio_predict`` (which passes
        ``mixed_precision=None``, i.e. full precision). Runtime only; no effect on the CPU.
    num_threads : int, optional
        Torch CPU threads while predicting (restored afterwards); default: torch's own. On a
        busy machine 1 can be much faster than oversubscribed cores. Runtime only.
    check_inputs : bool
        Run :func:`~gliocore.segment.checks.check_dl_inputs` per subject and warn
        (:class:`~gliocore.segment.checks.DLInputWarning`); the messages are also kept in
        ``input_warnings_``. Runtime only.
    verbose : bool
        Let nnU-Net print its progress. Runtime only.

    Attributes
    ----------
    input_warnings_ : dict of subject ID -> list of str
        Input-check messages of the subjects segmented since :meth:`load`.
    """

    code_version: ClassVar[str] = ADAPTER_REVISION
    name: ClassVar[str] = "hdglio"
    title: ClassVar[str] = "HD-GLIO (nnU-Net v1, GPU recommended)"
    parallel_safe: ClassVar[bool] = False
    runtime_options: ClassVar[tuple[str, ...]] = ("weights_dir", "device", "mixed_precision",
                                                  "num_threads", "check_inputs", "verbose")

    def __init__(self, mirroring: bool = True, label_map: str | LabelMap = "hdglio-v2",
                 step_size: float = 0.5, postprocessing: bool = True,
                 weights_dir: PathType | None = None, device: str = "auto",
                 mixed_precision: bool = False, num_threads: int | None = None,
                 check_inputs: bool = True, verbose: bool = False, **options: Any) -> None:
        self._label_map = get_label_map(label_map)
        super().__init__(mirroring=bool(mirroring), label_map=self._label_map.name
                         if isinstance(label_map, str) else label_map, step_size=float(step_size),
                         postprocessing=bool(postprocessing),
                         weights_dir=None if weights_dir is None else str(weights_dir),
                         device=device, mixed_precision=bool(mixed_precision),
                         num_threads=num_threads, check_inputs=bool(check_inputs),
                         verbose=bool(verbose), **options)
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir else default_weights_dir()
        self.mirroring = bool(mirroring)
        self.step_size = float(step_size)
        self.postprocessing = bool(postprocessing)
        self.mixed_precision = bool(mixed_precision)
        self.check_inputs = bool(check_inputs)
        self.verbose = bool(verbose)
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"hdglio: num_threads must be >= 1, got {num_threads}")
        self.num_threads = None if num_threads is None else int(num_threads)
        self._device_option = str(device)
        self.trainer_: Any = None
        self.input_warnings_: dict[str, list[str]] = {}
        self._scratch: str | None = None
        self._preprocessor: Any = None
        self._pp: tuple[Any, Any] | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return (f"hd-glio {package_version('hd-glio') or 'absent'}; nnunet "
                f"{package_version('nnunet') or 'absent'}; adapter {ADAPTER_REVISION}")

    @property
    def label_map(self) -> LabelMap:
        return self._label_map

    @property
    def weights_checksum(self) -> str | None:
        if missing_weights(self.weights_dir):
            return None
        return weights_sha256(self.weights_dir)

    @property
    def device(self) -> str:
        return self._torch_device().type

    def _torch_device(self):
        return resolve_torch_device(self._device_option, self.name)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls._package_reason() or missing_weights(default_weights_dir())

    @staticmethod
    def _package_reason() -> str | None:
        import importlib.util
        for module, package in (("torch", "torch"), ("nnunet", "nnunet"), ("hd_glio", "hd-glio")):
            if importlib.util.find_spec(module) is None:
                return (f"the {package} package is not installed; install the pinned "
                        "requirements (scripts/setup_env.sh)")
        return None

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        """Restore the trainer and its weights (once; later calls do nothing)."""
        if self._loaded:
            return
        reason = self._package_reason() or missing_weights(self.weights_dir)
        if reason:
            raise SegmenterUnavailableError(f"{self.name}: {reason}")
        device = self._torch_device()
        if device.type == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise SegmenterUnavailableError(f"{self.name}: device {device} was asked for but "
                                                "CUDA is not available; use device='auto' or 'cpu'")
        self._scratch = tempfile.mkdtemp(prefix="glioscope-hdglio-")
        try:
            self._restore(device)
        except Exception:
            self.close()
            raise
        self.input_warnings_ = {}
        self._loaded = True

    def _restore(self, device) -> None:
        import torch
        with quiet(not self.verbose), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # nnU-Net v1 uses torch.cuda.amp
            from nnunet.postprocessing.connected_components import load_postprocessing
            from nnunet.training import model_restore
            from nnunet.training.network_training.nnUNetTrainer import nnUNetTrainer

            fold_dir = self.weights_dir / f"fold_{FOLD}"
            with cuda_hidden(device.type == "cpu" and torch.cuda.is_available()):
                # As load_model_and_checkpoint_files, but the trainer's scratch folder (it
                # creates one and may log there) is a temporary one, not the weights folder.
                trainer = model_restore.restore_model(
                    str(fold_dir / f"{CHECKPOINT_NAME}.model.pkl"), fp16=self.mixed_precision)
                if not isinstance(trainer, nnUNetTrainer):
                    raise SegmenterUnavailableError(f"{self.name}: {fold_dir} does not hold an "
                                                    "nnU-Net v1 trainer checkpoint")
                trainer.output_folder = self._scratch
                trainer.output_folder_base = self._scratch
                trainer.update_fold(FOLD)
                trainer.initialize(False)
                # torch >= 2.6 defaults to weights_only=True, which cannot read nnU-Net v1
                # checkpoints (numpy scalars, OrderedDicts of training curves). These files are
                # the model the user chose to run, so they are trusted like code.
                params = torch.load(str(fold_dir / f"{CHECKPOINT_NAME}.model"),
                                    map_location=torch.device("cpu"), weights_only=False)
                trainer.load_checkpoint_ram(params, False)
            trainer.network.to(device)
            trainer.network.eval()
        if trainer.num_input_channels != len(SEQUENCES):
            raise SegmenterUnavailableError(
                f"{self.name}: the model in {self.weights_dir} takes {trainer.num_input_channels} "
                f"input channels; HD-GLIO takes 4 (T1, T1c, T2, FLAIR)")
        if self.mirroring and not trainer.data_aug_params.get("do_mirror", False):
            raise SegmenterUnavailableError(f"{self.name}: this model was trained without "
                                            "mirroring; set mirroring=False")
        self.trainer_ = trainer
        self._device = device
        self._preprocessor = self._make_preprocessor(trainer)
        pp_file = self.weights_dir / "postprocessing.json"
        self._pp = load_postprocessing(str(pp_file)) if (self.postprocessing
                                                         and pp_file.is_file()) else None

    @staticmethod
    def _make_preprocessor(trainer: Any) -> Any:
        """The preprocessor ``trainer.preprocess_patient`` would build, built once."""
        import nnunet
        from nnunet.training.model_restore import recursive_find_python_class
        name = trainer.plans.get("preprocessor_name") or ("GenericPreprocessor" if trainer.threeD
                                                          else "PreprocessorFor2D")
        cls = recursive_find_python_class([os.path.join(nnunet.__path__[0], "preprocessing")],
                                          name, current_module="nnunet.preprocessing")
        if cls is None:
            raise SegmenterUnavailableError(f"hdglio: preprocessor {name} not found in nnunet")
        return cls(trainer.normalization_schemes, trainer.use_mask_for_norm,
                   trainer.transpose_forward, trainer.intensity_properties)

    def close(self) -> None:
        """Free the model (and the GPU memory it held)."""
        had_cuda = self.trainer_ is not None and getattr(self, "_device", None) is not None \
            and self._device.type == "cuda"
        self.trainer_ = None
        self._preprocessor = None
        self._pp = None
        if had_cuda:
            import torch
            torch.cuda.empty_cache()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        super().close()

    # -- work -----------------------------------------------------------------------------
    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        if self.trainer_ is None:
            self.load()
        sid = subject.subject_id
        if self.check_inputs:
            record_input_warnings(subject, images, self.input_warnings_)
        missing = [s for s in SEQUENCES if s not in images]
        if missing:
            raise SubjectError(sid, f"HD-GLIO needs all four sequences; missing {missing}",
                               stage="segment")
        ref = images[SEQUENCES[0]]
        if any(images[s].shape != ref.shape for s in SEQUENCES):
            raise SubjectError(sid, "the four sequences do not share one grid; co-register and "
                               "resample them first", stage="segment")
        # nnU-Net v1 works in SimpleITK's array order (k, j, i) with spacing reversed.
        data = np.stack([np.asarray(images[s].data, dtype=np.float32).transpose(2, 1, 0)
                         for s in SEQUENCES])
        if not np.any(data):
            raise SubjectError(sid, "all four sequences are zero everywhere", stage="segment")
        spacing_zyx = np.array(ref.spacing[::-1], dtype=float)
        seg_zyx = self.predict_array(data, spacing_zyx, case=sid)
        return seg_zyx.transpose(2, 1, 0)

    def preprocess_array(self, data: np.ndarray, spacing: np.ndarray,
                         case: str = "case") -> tuple[np.ndarray, dict[str, Any]]:
        """What ``trainer.preprocess_patient`` does to files, done to a loaded array.

        Parameters
        ----------
        data : (4, Z, Y, X) float array
            T1, T1c, T2, FLAIR in SimpleITK array order (a nibabel array transposed).
        spacing : (3,) array
            Voxel size (sz, sy, sx) in mm, as SimpleITK's spacing reversed.

        Returns
        -------
        data : (4, z, y, x) float32 ndarray
            Cropped to the non-zero region, transposed, resampled to the plans' spacing and
            normalised.
        properties : dict
            nnU-Net's case properties (crop box, shapes, spacings) for the way back.
        """
        from nnunet.preprocessing.cropping import ImageCropper
        trainer = self.trainer_
        properties: dict[str, Any] = OrderedDict()
        properties["original_size_of_raw_data"] = np.array(data.shape[1:])
        properties["original_spacing"] = np.asarray(spacing, dtype=float)
        properties["list_of_data_files"] = [case]
        properties["seg_file"] = None
        with quiet(not self.verbose):
            d, s, properties = ImageCropper.crop(np.array(data, dtype=np.float32), properties, None)
            tf = [i + 1 for i in trainer.transpose_forward]
            d = d.transpose((0, *tf))
            s = s.transpose((0, *tf))
            stage_plans = trainer.plans["plans_per_stage"][trainer.stage]
            d, s, properties = self._preprocessor.resample_and_normalize(
                d, stage_plans["current_spacing"], properties, s, force_separate_z=None)
        return d.astype(np.float32), properties

    def predict_array(self, data: np.ndarray, spacing: np.ndarray, case: str = "case") -> np.ndarray:
        """Segment a ``(4, Z, Y, X)`` array in SimpleITK order with spacing ``(sz, sy, sx)``.

        Returns the raw label array ``(Z, Y, X)`` in HD-GLIO's integers.
        """
        import torch
        trainer = self.trainer_
        hide = self._device.type == "cpu" and torch.cuda.is_available()
        d, properties = self.preprocess_array(data, spacing, case)
        with quiet(not self.verbose), warnings.catch_warnings(), cuda_hidden(hide), \
                torch_threads(self.num_threads):
            warnings.simplefilter("ignore", FutureWarning)
            softmax = trainer.predict_preprocessed_data_return_seg_and_softmax(
                d, do_mirroring=self.mirroring,
                mirror_axes=trainer.data_aug_params["mirror_axes"], use_sliding_window=True,
                step_size=self.step_size, use_gaussian=True, all_in_gpu=False,
                verbose=self.verbose, mixed_precision=self.mixed_precision)[1]
            if trainer.transpose_backward is not None:
                softmax = softmax.transpose([0] + [i + 1 for i in trainer.transpose_backward])
            seg = _softmax_to_original(softmax, properties, trainer)
        if self._pp is not None:
            from nnunet.postprocessing.connected_components import (
                remove_all_but_the_largest_connected_component)
            for_which_classes, min_valid = self._pp
            seg, _, _ = remove_all_but_the_largest_connected_component(
                seg, for_which_classes, float(np.prod(spacing)), min_valid)
        return seg.astype(np.uint8)


def _softmax_to_original(softmax: np.ndarray, properties: dict, trainer: Any) -> np.ndarray:
    """``save_segmentation_nifti_from_softmax`` without the file: back to the original grid."""
    from nnunet.preprocessing.preprocessing import (get_do_separate_z, get_lowres_axis,
                                                    resample_data_or_seg)
    export = trainer.plans.get("segmentation_export_params")
    if export is not None:
        force_separate_z = export["force_separate_z"]
        order, order_z = export["interpolation_order"], export["interpolation_order_z"]
    else:
        force_separate_z, order, order_z = None, 1, 0
    shape_cropped = properties["size_after_cropping"]
    if any(i != j for i, j in zip(softmax.shape[1:], shape_cropped)):
        if force_separate_z is None:
            if get_do_separate_z(properties["original_spacing"]):
                do_separate_z, axis = True, get_lowres_axis(properties["original_spacing"])
            elif get_do_separate_z(properties["spacing_after_resampling"]):
                do_separate_z, axis = True, get_lowres_axis(properties["spacing_after_resampling"])
            else:
                do_separate_z, axis = False, None
        else:
            do_separate_z = force_separate_z
            axis = get_lowres_axis(properties["original_spacing"]) if do_separate_z else None
        if axis is not None and len(axis) != 1:
            do_separate_z = False
        softmax = resample_data_or_seg(softmax, shape_cropped, is_seg=False, axis=axis,
                                       order=order, do_separate_z=do_separate_z, order_z=order_z)
    regions = getattr(trainer, "regions_class_order", None)
    if regions is None:
        seg = softmax.argmax(0)
    else:
        seg = np.zeros(softmax.shape[1:])
        for i, c in enumerate(regions):
            seg[softmax[i] > 0.5] = c
    full = np.zeros(properties["original_size_of_raw_data"], dtype=np.uint8)
    bbox = [list(b) for b in properties["crop_bbox"]]
    for c in range(3):
        bbox[c][1] = min(bbox[c][0] + seg.shape[c], full.shape[c])
    full[bbox[0][0]:bbox[0][1], bbox[1][0]:bbox[1][1], bbox[2][0]:bbox[2][1]] = seg
    return full
