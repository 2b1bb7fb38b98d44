"""The worker task: the missing work for one scan (:func:`process_subject`).

Executors send :func:`process_subject` to worker processes (local or Dask) by its module path,
``gliocore.pipeline.task.process_subject``; the task is a plain dict built by
:func:`gliocore.pipeline.plan.plan_subjects`.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gliocore.cohort.subjects import Scan, load_subject_images
from gliocore.errors import GlioError, SubjectError
from gliocore.features import radiomics
from gliocore.imaging.io import file_sha256, load_volume, save_mask, text_sha256
from gliocore.imaging.labels import read_reference
from gliocore.imaging.volume import Volume
from gliocore.preprocess.atlas_space import segment_in_atlas_space
from gliocore.preprocess.field_of_view import brain_of, restrict_to_field_of_view
from gliocore.segment import Segmenter, get_segmenter, qc
from gliocore.types import TumourClass

_log = logging.getLogger(__name__)
_WORKER_SEGMENTERS: dict[str, Segmenter] = {}
_SEGMENTER_LOCK = threading.Lock()
#: PyRadiomics validates parameters with a YAML parser shared by the process, which breaks when
#: two threads extract at once; a Dask worker with several threads extracts one at a time
#: (start workers as processes, ``--nworkers N --nthreads 1``, for parallel extraction).
_RADIOMICS_LOCK = threading.Lock()


def _worker_segmenter(name: str, options: Mapping[str, Any]) -> Segmenter:
    """One loaded segmenter per process and configuration (the model is loaded once per
    worker, also on a multi-threaded Dask worker)."""
    key = json.dumps([name, sorted((k, repr(v)) for k, v in options.items())])
    with _SEGMENTER_LOCK:
        seg = _WORKER_SEGMENTERS.get(key)
        if seg is None:
            seg = get_segmenter(name, **dict(options))
            seg.load()
            _WORKER_SEGMENTERS[key] = seg
    return seg


def brain_statistics(vol: Volume) -> dict[str, Any]:
    """Intensity statistics inside the brain (non-zero voxels) for the data check page."""
    data = vol.data
    brain = data[data != 0]
    if brain.size == 0:
        brain = data.ravel()
    p01, p50, p99 = np.percentile(brain, [1, 50, 99])
    return {"brain_mean": float(brain.mean()), "brain_std": float(brain.std()),
            "brain_median": float(p50), "brain_p01": float(p01), "brain_p99": float(p99),
            "shape": list(vol.shape), "spacing": [round(s, 6) for s in vol.spacing]}


def _class_volumes(mask: np.ndarray, vol: Volume) -> dict[str, float]:
    vox = vol.voxel_volume
    return {"volume_ce_mm3": float((mask == TumourClass.ENHANCING.canonical_label).sum() * vox),
            "volume_ne_mm3": float((mask == TumourClass.NON_ENHANCING.canonical_label).sum() * vox)}


def _segment(seg: Segmenter, subject: Scan, images: Mapping[str, Volume], mask_path: str
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Segment one scan, save its mask and describe the result (the store's row)."""
    ref = next(iter(images.values()))
    t0 = time.perf_counter()
    # in SRI24 when preprocessing registered the scan there; the mask comes back native
    mask = segment_in_atlas_space(seg, subject, images)
    # nothing where a sequence's field of view missed the brain (unless the backend segments
    # that part from the other sequences itself)
    mask, fov_warnings = restrict_to_field_of_view(mask, subject.folder, seg, brain_of(images))
    seconds = time.perf_counter() - t0
    path = save_mask(mask, ref.affine, mask_path)
    warnings = list(seg.input_warnings_.get(subject.subject_id, [])) + fov_warnings
    return mask, {
        "backend": seg.name, "backend_version": seg.version,
        "weights_checksum": seg.weights_checksum, "cache_token": seg.cache_token(),
        "label_map": seg.label_map.to_json(), "device": seg.device, "path": str(path),
        "mask_sha256": file_sha256(path), "seconds": seconds, "warnings": warnings,
        **_class_volumes(mask, ref)}


def _score_against_reference(task: dict[str, Any], mask: np.ndarray, affine: Any
                             ) -> dict[str, Any]:
    """QC rows against the scan's reference mask, or a QC error: QC is optional, so a bad
    reference mask is reported and the scan's other results are kept."""
    try:
        rvol = load_volume(task["reference_mask"], dtype=None)
        ref_sha = file_sha256(task["reference_mask"])
        # the reference in its declared (or unambiguous) labels: unknown values, non-integers
        # and an undecidable map refused
        reference, ref_map = read_reference(rvol.data, task["reference_label_map"],
                                            Path(task["reference_mask"]).name)
        rows = qc.compare_masks(mask, reference, affine)
        return {"qc_rows": [{"reference_sha256": ref_sha, "reference_label_map": ref_map.name,
                             "qc_version": qc.QC_VERSION, **_qc_row_dict(r)} for r in rows]}
    except Exception as err:
        return {"qc_error": {"stage": "qc", "path": str(task["reference_mask"]),
                             "message": f"reference mask not scored: {type(err).__name__}: {err}"}}


def process_subject(task: dict[str, Any], segmenter: Segmenter | None = None) -> dict[str, Any]:
    """Do the missing work for one scan (runs in a worker process or in-process).

    Never raises: failures come back as ``{"error": {...}}`` so other scans go on.
    """
    subject: Scan = task["subject"]
    out: dict[str, Any] = {"subject_id": subject.subject_id}
    stage = "load"
    try:
        images: dict[str, Volume] = {}
        affine = None
        if task["need_segmentation"] or task["need_features"]:  # not for a QC-only task
            images = load_subject_images(subject)
            ref = next(iter(images.values()))
            affine = ref.affine
            out["image_stats"] = {str(Path(v.path).resolve()): brain_statistics(v)
                                  for v in images.values()}
        stage = "segment"
        if task["need_segmentation"]:
            seg = segmenter or _worker_segmenter(task["backend"], task["backend_options"])
            mask, out["segmentation"] = _segment(seg, subject, images, task["mask_path"])
            mask_sha = out["segmentation"]["mask_sha256"]
        else:
            mvol = load_volume(task["mask_path"], dtype=None)
            mask = np.asarray(mvol.data).astype(np.uint8)
            mask_sha = task["mask_sha256"]
            affine = mvol.affine if affine is None else affine
        out["mask_sha256"] = mask_sha
        stage = "features"
        feature_key = text_sha256(f"{mask_sha}|{task['input_key']}|{task['params_fingerprint']}")
        out["feature_key"] = feature_key
        if task["need_features"] or feature_key != task.get("feature_key"):
            if not images:
                images = load_subject_images(subject)
                ref = next(iter(images.values()))
            t0 = time.perf_counter()
            with _RADIOMICS_LOCK:  # PyRadiomics is not thread-safe (multi-threaded Dask workers)
                values = radiomics.extract_features(images, mask, ref.affine, task["params"])
            out["feature_rows"] = [(v.tumour_class.value, v.sequence, v.feature,
                                    None if v.value is None else float(v.value), v.reason)
                                   for v in values]
            out["feature_seconds"] = time.perf_counter() - t0
        stage = "qc"
        if task.get("reference_mask"):
            out.update(_score_against_reference(task, mask, affine))
    except SubjectError as err:
        out["error"] = {"stage": err.stage or stage, "path": err.path, "message": err.message}
    except GlioError as err:
        out["error"] = {"stage": stage, "path": None, "message": str(err)}
    except Exception as err:  # keep the batch going; record what happened, not a traceback
        _log.error("subject %s, stage %s: unexpected error\n%s", subject.subject_id, stage,
                   traceback.format_exc())  # the traceback goes to the log, not to the store
        out["error"] = {"stage": stage, "path": None,
                        "message": f"unexpected error ({type(err).__name__}: {err}); the "
                                   "traceback is in the processing log"}
    return out


def _qc_row_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        d = dict(row)
    else:
        d = {k: getattr(row, k) for k in ("region", "dice", "hd95_mm", "hd95_pooled_mm",
                                          "volume_pred_mm3", "volume_ref_mm3", "volume_diff_mm3")}
    region = d.get("region")
    d["region"] = region.value if isinstance(region, TumourClass) else str(region)
    for k in ("dice", "hd95_mm", "hd95_pooled_mm", "volume_pred_mm3", "volume_ref_mm3",
              "volume_diff_mm3"):
        v = d.get(k)
        d[k] = None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
    return d
