"""The location stage of processing: atlas space, registration when needed, location features.

:func:`locate_cohort` runs after segmentation (``python -m gliocore process`` calls it through
:func:`gliocore.pipeline.runner.process_cohort`). Per segmentation it decides the space:

* ``auto`` (default): a subject whose grid and affine match an atlas space (within
  ``tol_mm``; :func:`gliocore.imaging.atlas.detect_space`) is located directly in that atlas; any other
  is *native* and is registered to the ``atlas`` template (its T1, or ``moving`` sequence);
* ``sri24`` / ``mni152``: the cohort is declared in that space (its grid must be that space's);
* ``native``: always register.

A scan that preprocessing registered to the atlas (``--preprocess-space sri24``: an
``atlas_space.json`` beside its images, :mod:`gliocore.imaging.atlas_transform`) is not registered
again: its affine transform is used (when it is to the ``atlas`` template), recorded as a
registration of transform ``Affine (preprocessing)``.

Results are cached by content: ``location_key`` = hash(seg_key, mask hash, atlas, space,
registration key, code versions) and registrations by ``reg_key`` (image hash, atlas, transform,
code version), so a re-run recomputes nothing, and a new segmentation (a new scan, a new backend)
gets its own location. A failing subject is reported with stage ``location`` and the others go on.
"""
from __future__ import annotations

import json
import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np

from gliocore.imaging import atlas as atlas_mod
from gliocore.errors import SubjectError
from gliocore.imaging.atlas_transform import AtlasTransform, read_atlas_transform
from gliocore.imaging.io import file_sha256, load_volume, text_sha256
from gliocore.location.describe import locate
from gliocore.location.regions import (LOCATION_CODE_VERSION, atlas_bits_on_subject,
                                       frame_in_atlas_space)
from gliocore.types import BASELINE_SCAN
from gliocore.location.registration import (REGISTRATION_CODE_VERSION, REGISTRATION_RESOLUTION_MM,
                                   registration_key)

SPACE_CHOICES = ("auto", "sri24", "mni152", "native")
#: The version stamp stored with every location set (location + atlas code versions).
CODE_VERSION = f"{LOCATION_CODE_VERSION}.{atlas_mod.ATLAS_CODE_VERSION}"


@dataclass(frozen=True)
class LocationConfig:
    """How subjects are located.

    Parameters
    ----------
    space : {'auto', 'sri24', 'mni152', 'native'}
    atlas : {'sri24', 'mni152'}
        The template native subjects are registered to.
    transform : {'Rigid', 'Affine', 'SyN'}
        ANTs transform for native subjects.
    moving : str
        Sequence registered to the template (``t1``; ``t1c`` also works).
    tol_mm : float
        Origin tolerance of the atlas-space detection.
    resolution_mm : float
        Voxel size the registration works at (transforms apply at full resolution).
    register : bool
        Register native-space subjects; False skips them (the dashboard's Process button, which
        runs in the page: registration takes about a minute per subject — use the CLI).
    """

    space: str = "auto"
    atlas: str = "sri24"
    transform: str = "SyN"
    moving: str = "t1"
    tol_mm: float = 1.0
    resolution_mm: float = REGISTRATION_RESOLUTION_MM
    register: bool = True

    def __post_init__(self) -> None:
        if self.space not in SPACE_CHOICES:
            raise ValueError(f"space must be one of {SPACE_CHOICES}, got {self.space!r}")
        if self.atlas not in atlas_mod.SPACES:
            raise ValueError(f"atlas must be one of {sorted(atlas_mod.SPACES)}, got {self.atlas!r}")


def subject_space(shape: tuple[int, ...], affine: np.ndarray, config: LocationConfig) -> str | None:
    """The atlas space a subject lies in, or None when it must be registered."""
    if config.space == "native":
        return None
    if config.space == "auto":
        return atlas_mod.detect_space(shape, affine, config.tol_mm)
    if tuple(shape) != atlas_mod.SPACES[config.space].shape:
        raise ValueError(f"declared space {config.space} but the grid is {tuple(shape)}, not "
                         f"{atlas_mod.SPACES[config.space].shape}; use --space native to register")
    return config.space


def location_key(seg_key: str, mask_sha256: str, atlas: str, space: str, reg_key: str | None) -> str:
    """Content key of one segmentation's location set."""
    return text_sha256(f"{seg_key}|{mask_sha256}|{atlas}|{space}|{reg_key or ''}|{CODE_VERSION}")


def locate_subject(task: dict[str, Any]) -> dict[str, Any]:
    """Do one subject's location work (in a worker process or in-process). Never raises."""
    out: dict[str, Any] = {"subject_id": task["subject_id"]}
    try:
        img = nib.load(task["mask_path"])
        mask = np.asarray(img.dataobj).astype(np.uint8)
        affine = img.affine
        spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
        t0 = time.perf_counter()
        atlas = atlas_mod.load_atlas(task["atlas"])
        if task["space"] == "atlas":
            frame = frame_in_atlas_space(atlas, affine, mask.shape)
            atlas_mask_path = task["mask_path"]
            if not frame.same_voxel_order:  # e.g. SRI24 stored in RAS voxel order
                atlas_mask_path = _write_atlas_mask(task, frame.to_atlas(mask), atlas)
        else:
            from gliocore.location import registration as reg_mod
            reg = _registration(task, atlas, reg_mod)
            out["registration"] = reg
            frame = reg_mod.frame_from_registration(reg, atlas, mask.shape, affine)
            atlas_mask_path = _write_atlas_mask(task, frame.to_atlas(mask), atlas)
        result = locate(mask, frame, spacing)
        out["rows"] = [(v.tumour_class, v.feature, v.value, v.label, v.reason) for v in result.values]
        out["atlas_mask_path"] = atlas_mask_path
        out["seconds"] = time.perf_counter() - t0
    except Exception as err:  # keep the batch going; record what happened
        out["error"] = {"message": f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=2)}",
                        "path": task.get("moving_path") if task["space"] != "atlas"
                        else task["mask_path"]}
    return out


def _write_atlas_mask(task: dict[str, Any], mask: np.ndarray, atlas: atlas_mod.Atlas) -> str:
    """The tumour mask on the atlas grid, for the cohort lesion-frequency map."""
    path = Path(task["out_dir"]) / "locations" / f"{task['location_key'][:24]}_atlas.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), atlas.affine), path)
    return str(path)


def _registration(task: dict[str, Any], atlas: atlas_mod.Atlas, reg_mod: Any) -> Any:
    cached = task.get("cached_registration")
    if cached is not None:
        files = json.loads(cached["transforms_json"])
        if all(Path(p).exists() for p in files["fwd"] + files["inv"]):
            return reg_mod.Registration(task["reg_key"], atlas.name, cached["transform"],
                                        tuple(files["fwd"]), tuple(files["inv"]),
                                        float(cached["brain_dice"]), float(cached["seconds"] or 0))
    pre = task.get("preprocess_registration")
    if pre is not None:  # preprocessing registered this scan already: no registration here
        return reg_mod.Registration(task["reg_key"], atlas.name, task["transform"],
                                    tuple(pre["fwd"]), tuple(pre["inv"]),
                                    float(pre["brain_dice"]), float(pre["seconds"]))
    moving = load_volume(task["moving_path"])
    return reg_mod.register_to_atlas(moving.data, moving.affine,
                                     atlas, Path(task["out_dir"]) / "registrations"
                                     / task["reg_key"][:24], transform=task["transform"],
                                     key=task["reg_key"], resolution_mm=task["resolution_mm"])


def locate_cohort(store: Any, cohort_id: str, config_key: str, subject_ids: list[str] | None,
                  config: LocationConfig, out_dir: Path, workers: int = 1,
                  progress: Callable[[str, int, int, str | None], None] | None = None
                  ) -> list[SubjectError]:
    """Compute the missing location sets of a cohort's segmentations under a configuration.

    Parameters
    ----------
    store : gliocore.store.database.Store
    cohort_id, config_key : str
    subject_ids : list of str or None
        Restrict to these subjects.
    config : LocationConfig
    out_dir : Path
        Where registrations and atlas-space masks are written.
    workers : int
    progress : callable, optional
        ``progress('location', done, total, subject_id)``.

    Returns
    -------
    list of SubjectError
        One per subject that failed (stage ``location``).
    """
    progress = progress or (lambda *a: None)
    segs = store.scan_results(cohort_id, config_key)   # every scan: location is per image
    segs = segs[segs["seg_key"].notna()]
    if subject_ids is not None:
        segs = segs[segs["subject_id"].astype(str).isin(set(subject_ids))]
    errors: list[SubjectError] = []
    total, done = len(segs), 0

    def tick(sid: str) -> None:
        nonlocal done
        done += 1
        progress("location", done, total, sid)

    tasks = _plan_locations(store, segs, cohort_id, config, out_dir, errors, tick)

    def collect(task: dict[str, Any], result: dict[str, Any]) -> None:
        _save_location_result(store, task, result, errors)
        tick(task["subject_id"])

    _run_location_tasks(tasks, workers, collect)
    return errors


def _plan_locations(store: Any, segs: Any, cohort_id: str, config: LocationConfig,
                    out_dir: Path, errors: list[SubjectError], tick: Callable[[str], None]
                    ) -> list[dict[str, Any]]:
    """The location tasks still to run; cached, skipped and failed scans are ticked off here."""
    tasks: list[dict[str, Any]] = []
    for row in segs.itertuples():
        sid, scan_id = str(row.subject_id), str(row.scan_id)
        err_scan = None if scan_id == BASELINE_SCAN else scan_id  # errors name real timepoints
        try:
            task = _location_task(store, row, cohort_id, config, out_dir, err_scan)
        except SubjectError as err:
            errors.append(err)
            task = None
        except Exception as err:
            errors.append(SubjectError(sid, f"cannot locate: {type(err).__name__}: {err}",
                                       path=str(row.path), stage="location", scan_id=err_scan))
            task = None
        if task is None or store.has_location(task["location_key"]):
            tick(sid)  # failed, native without registration, or cached
        else:
            tasks.append(task)
    return tasks


def _location_task(store: Any, row: Any, cohort_id: str, config: LocationConfig, out_dir: Path,
                   err_scan: str | None) -> dict[str, Any] | None:
    """One scan's location task, or None for a native scan when registration is not wanted."""
    sid, scan_id = str(row.subject_id), str(row.scan_id)
    header = nib.load(row.path)
    rec = store.segmentation(row.seg_key)
    mask_sha = rec.mask_sha256 if rec is not None else file_sha256(row.path)
    space = subject_space(header.shape[:3], header.affine, config)
    task: dict[str, Any] = {"subject_id": sid, "scan_id": err_scan, "seg_key": row.seg_key,
                            "mask_path": row.path, "out_dir": str(out_dir)}
    if space is not None:
        task.update(space="atlas", atlas=space, reg_key=None)
        task["location_key"] = location_key(row.seg_key, mask_sha, space, "atlas", None)
        return task
    if not config.register:   # native subject, registration not wanted here
        return None
    moving = store.scan_images(cohort_id, sid, scan_id).get(config.moving)
    if moving is None:
        raise SubjectError(sid, f"no {config.moving} image recorded to register to the "
                                "atlas", stage="location", scan_id=err_scan)
    moving_sha = _image_sha(store, Path(moving))
    pre = read_atlas_transform(Path(moving).parent)
    if pre is not None and pre.space == config.atlas:
        return _preprocessed_task(task, store, pre, moving, moving_sha, mask_sha)
    reg_key = registration_key(moving_sha, config.atlas,
                               f"{config.transform}@{config.resolution_mm:g}mm")
    task.update(space="registered", atlas=config.atlas, reg_key=reg_key,
                moving_path=moving, moving_sha256=moving_sha,
                transform=config.transform, resolution_mm=config.resolution_mm,
                cached_registration=store.registration(reg_key))
    task["location_key"] = location_key(row.seg_key, mask_sha, config.atlas, "registered", reg_key)
    return task


#: The transform name recorded for a registration taken over from preprocessing.
PREPROCESS_TRANSFORM = "Affine (preprocessing)"


def _preprocessed_task(task: dict[str, Any], store: Any, pre: AtlasTransform, moving: str,
                       moving_sha: str, mask_sha: str) -> dict[str, Any]:
    """A location task that reuses the scan's atlas transform from preprocessing.

    The ANTs affine maps atlas points to subject points; ANTs applies the same file inverted to
    bring the atlas into the subject (``whichtoinvert``, as for its own affine registrations).
    """
    reg_key = registration_key(f"{pre.key}|{file_sha256(pre.forward)}", pre.space,
                               PREPROCESS_TRANSFORM)
    task.update(space="registered", atlas=pre.space, reg_key=reg_key, moving_path=moving,
                moving_sha256=moving_sha, transform=PREPROCESS_TRANSFORM, resolution_mm=None,
                cached_registration=store.registration(reg_key),
                preprocess_registration={"fwd": [str(pre.forward)], "inv": [str(pre.forward)],
                                         "brain_dice": pre.brain_dice, "seconds": pre.seconds})
    task["location_key"] = location_key(task["seg_key"], mask_sha, pre.space, "registered",
                                        reg_key)
    return task


def _save_location_result(store: Any, task: dict[str, Any], result: dict[str, Any],
                          errors: list[SubjectError]) -> None:
    """Store one task's registration (if new) and location rows, or record its error."""
    if "error" in result:
        e = result["error"]
        errors.append(SubjectError(task["subject_id"], f"location failed: {e['message']}",
                                   path=e.get("path"), stage="location", scan_id=task["scan_id"]))
        return
    reg = result.get("registration")
    if reg is not None and task.get("cached_registration") is None:
        store.save_registration(reg.key, task["moving_sha256"], reg.atlas, reg.transform,
                                REGISTRATION_CODE_VERSION, reg.to_json(), reg.brain_dice,
                                reg.seconds)
    store.save_location(location_key=task["location_key"], seg_key=task["seg_key"],
                        atlas=task["atlas"], space=task["space"], reg_key=task["reg_key"],
                        code_version=CODE_VERSION,
                        atlas_mask_path=result["atlas_mask_path"],
                        seconds=result["seconds"], rows=result["rows"])


def _run_location_tasks(tasks: list[dict[str, Any]], workers: int,
                        collect: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Run the tasks here or in spawned worker processes; a dead worker fails only its task."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            collect(task, locate_subject(task))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(locate_subject, t): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # the worker died
                result = {"error": {"message": f"worker process died ({exc})", "path": None}}
            collect(task, result)


def _image_sha(store: Any, path: Path) -> str:
    st = path.stat()
    sha = store.cached_image_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)
    return sha if sha is not None else file_sha256(path)


#: Regions drawn in the viewer overlay, in drawing order (later ones win where they overlap).
DISPLAY_REGIONS = ("frontal", "temporal", "parietal", "occipital", "insula", "internal_capsule",
                   "thalamus", "corpus_callosum", "brainstem", "ventricles")


def subject_region_labels(atlas_name: str | atlas_mod.Atlas, space: str, mask_path: str,
                          transforms_json: str | None = None) -> np.ndarray:
    """Atlas regions on a subject's grid, one label per :data:`DISPLAY_REGIONS` entry (1-based),
    in the subject's voxel order.

    For a subject in the atlas space these are the regions the location numbers use
    (:func:`gliocore.location.regions.atlas_bits_on_subject`: reordered to the subject's voxel
    order when it stores the space in another one, e.g. SRI24 in RAS order); for a registered
    subject the atlas's label map is warped into the subject with the stored inverse transforms
    (nearest label).
    """
    atlas = (atlas_name if isinstance(atlas_name, atlas_mod.Atlas)
             else atlas_mod.load_atlas(atlas_name))
    if space == "atlas":
        header = nib.load(mask_path)
        bits, _ = atlas_bits_on_subject(atlas, header.affine)
        if tuple(header.shape[:3]) != bits.shape:
            raise ValueError(f"{mask_path}: grid {tuple(header.shape[:3])} is not the "
                             f"{atlas.name} grid {bits.shape}")
        return atlas.label_map(DISPLAY_REGIONS, bits=bits)
    labels = atlas.label_map(DISPLAY_REGIONS)
    if not transforms_json:
        raise ValueError(f"{mask_path}: registered subject without stored transforms")
    from gliocore.location import registration as reg_mod

    files = json.loads(transforms_json)
    ants = reg_mod._ants()
    header = nib.load(mask_path)
    subject = reg_mod.to_ants(np.zeros(header.shape[:3], dtype=np.float32), header.affine)
    inv = list(files["inv"])
    out = ants.apply_transforms(subject, reg_mod.to_ants(labels.astype(np.float32), atlas.affine),
                                inv, whichtoinvert=[t.endswith(".mat") for t in inv],
                                interpolator="nearestNeighbor")
    return np.rint(out.numpy()).astype(np.uint8)
