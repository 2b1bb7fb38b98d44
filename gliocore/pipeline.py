"""Processing: segmentation, radiomics and QC of every scan of a cohort, cached in the store.

:func:`process_cohort` is what the CLI's ``process`` and the dashboard's "Process" button call.
The unit of work is a **scan** (one timepoint of a subject; a cohort without timepoints has one
scan per subject). For each scan it computes content keys first and does only the work whose
key is missing from the store; each finished scan is written in one transaction, so a killed
run resumes. A failing scan is recorded with its error (subject, scan, stage, file, message)
and the others go on.
"""
from __future__ import annotations

import json
import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gliocore import qc, radiomics
from gliocore.cohort import Cohort, Scan, load_subject_images, safe_name, scan_label
from gliocore.errors import GlioError, SubjectError
from gliocore.io import Volume, file_sha256, load_volume, save_mask, text_sha256
from gliocore.segment import Segmenter, get_segmenter
from gliocore.labels import LabelMap, get_label_map
from gliocore.store import Store
from gliocore.types import BASELINE_SCAN, TumourClass

#: Progress callback: (stage, done, total, scan label or None); the label is the subject ID
#: for the only scan of a cross-sectional cohort, else ``subject/scan``.
ProgressCallback = Callable[[str, int, int, "str | None"], None]
STAGES = ("hash", "segment", "features")


@dataclass(frozen=True)
class ProcessingConfig:
    """What to compute.

    Parameters
    ----------
    backend : str
        Segmentation backend name (``baseline``, ``import``, ``hdglio``, ``nnunetv2``).
    backend_options : mapping
        Passed to the backend (e.g. ``pattern`` and ``label_map`` for ``import``).
    params : None, path or dict
        PyRadiomics parameters; None = the seed's default set.
    workers : int
        Worker processes (backends that hold a GPU model always run in one process).
    output_dir : Path or None
        Where masks are written; default: the store's folder / ``segmentations``.
    compute_qc : bool
        Score segmentations against subjects' reference masks when present.
    reference_label_map : str or LabelMap
        Label map of the reference masks (default ``glioscope``: 1 = contrast-enhancing,
        2 = non-enhancing; ``brats`` for BraTS ``_seg`` files). A reference holding a value the
        map does not know, or non-integer values, is a per-subject QC error.
    """

    backend: str = "baseline"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    params: Any = None
    workers: int = 1
    output_dir: Path | None = None
    compute_qc: bool = True
    reference_label_map: Any = "glioscope"


@dataclass
class ProcessingSummary:
    """Outcome of :func:`process_cohort`.

    ``n_subjects`` counts the scans processed (= subjects in a cohort without timepoints);
    ``computed`` and ``cached`` list scan labels (subject IDs for cross-sectional cohorts).
    """

    run_id: str
    cohort_id: str
    config_key: str
    n_subjects: int
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    errors: list[SubjectError] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        unit = "scans" if any("/" in x for x in self.computed + self.cached) else "subjects"
        lines = [f"{self.n_subjects} {unit}: {len(self.computed)} computed, "
                 f"{len(self.cached)} from cache, {len(self.errors)} with errors "
                 f"({self.seconds:.1f} s)"]
        for err in self.errors:
            lines.append(f"  ERROR [{err.stage}] {err}")
        return "\n".join(lines)


def cohort_key(cohort: Cohort) -> str:
    """Stable ID of a cohort: hash of its resolved CSV path and image root."""
    return text_sha256(f"{Path(cohort.clinical_csv).resolve()}|{Path(cohort.image_root).resolve()}")[:16]


def register_cohort(store: Store, cohort: Cohort, naming: str | None = None) -> str:
    """Record a cohort, its clinical table and subjects' scans and files; return its ID."""
    cid = cohort_key(cohort)
    by_id = {s.subject_id: s for s in cohort.subjects}
    scans_by_id: dict[str, list[Scan]] = {}
    for sc in cohort.scans:
        scans_by_id.setdefault(sc.subject_id, []).append(sc)
    rows = []
    pending: list[tuple[str, int, int, str]] = []
    for rec in cohort.clinical.to_dict(orient="records"):
        sid = str(rec["SUBJECT ID"])
        subj = by_id.get(sid)
        ref_sha = None  # the current reference's content: QC scores are shown against it only
        if subj is not None and subj.reference_mask and Path(subj.reference_mask).is_file():
            ref_sha = hash_file_cached(store, Path(subj.reference_mask), pending)
        rows.append({"subject_id": sid, "folder": str(subj.folder) if subj else None,
                     "has_images": subj is not None,
                     "reference_mask": str(subj.reference_mask) if subj and subj.reference_mask else None,
                     "reference_sha256": ref_sha,
                     "clinical": {k: _plain(v) for k, v in rec.items()},
                     "sequences": {k: str(v) for k, v in subj.sequences.items()} if subj else {},
                     "scans": [{"scan_id": sc.scan_id, "days": sc.days, "folder": str(sc.folder),
                                "reference_mask": str(sc.reference_mask) if sc.reference_mask
                                else None,
                                "sequences": {k: str(v) for k, v in sc.sequences.items()}}
                               for sc in scans_by_id.get(sid, [])]})
    store.put_image_hashes(pending)
    store.upsert_cohort(cid, cohort.name, str(cohort.clinical_csv), str(cohort.image_root),
                        naming, rows, event_assumed=bool(cohort.clinical.attrs.get("event_assumed")))
    return cid


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def hash_file_cached(store: Store, path: Path, pending: list[tuple[str, int, int, str]]) -> str:
    """SHA-256 of a file, reusing the store's value when size and mtime are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    sha = store.cached_image_hash(key, st.st_size, st.st_mtime_ns)
    if sha is None:
        sha = file_sha256(path)
        pending.append((key, st.st_size, st.st_mtime_ns, sha))
    return sha


# -- worker side -------------------------------------------------------------------------------
_WORKER_SEGMENTERS: dict[str, Segmenter] = {}


def _init_worker() -> None:
    """One thread per worker process: N processes x M threads on N cores only thrash."""
    try:
        import SimpleITK as sitk
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # pragma: no cover - SimpleITK always present with PyRadiomics
        pass
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except Exception:  # pragma: no cover
        pass


def _worker_segmenter(name: str, options: Mapping[str, Any]) -> Segmenter:
    """One loaded segmenter per process and configuration (the model is loaded once)."""
    key = json.dumps([name, sorted((k, repr(v)) for k, v in options.items())])
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
            t0 = time.perf_counter()
            mask = seg.segment(subject, images)
            seconds = time.perf_counter() - t0
            path = save_mask(mask, ref.affine, task["mask_path"])
            warnings = list(seg.input_warnings_.get(subject.subject_id, []))
            out["segmentation"] = {
                "backend": seg.name, "backend_version": seg.version,
                "weights_checksum": seg.weights_checksum, "cache_token": seg.cache_token(),
                "label_map": seg.label_map.to_json(), "device": seg.device, "path": str(path),
                "mask_sha256": file_sha256(path), "seconds": seconds, "warnings": warnings,
                **_class_volumes(mask, ref)}
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
            values = radiomics.extract_features(images, mask, ref.affine, task["params"])
            out["feature_rows"] = [(v.tumour_class.value, v.sequence, v.feature,
                                    None if v.value is None else float(v.value), v.reason)
                                   for v in values]
            out["feature_seconds"] = time.perf_counter() - t0
        stage = "qc"
        if task.get("reference_mask"):
            # QC is optional: a bad reference mask is reported, the results above are kept.
            try:
                rvol = load_volume(task["reference_mask"], dtype=None)
                ref_sha = file_sha256(task["reference_mask"])
                ref_map = LabelMap.from_json(task["reference_label_map"])
                # the reference in its declared labels: unknown values and non-integers refused
                reference = ref_map.checked_to_canonical(rvol.data, what="reference mask")
                rows = qc.compare_masks(mask, reference, affine)
                out["qc_rows"] = [{"reference_sha256": ref_sha, "reference_label_map": ref_map.name,
                                   "qc_version": qc.QC_VERSION, **_qc_row_dict(r)} for r in rows]
            except Exception as err:
                out["qc_error"] = {"stage": "qc", "path": str(task["reference_mask"]),
                                   "message": f"reference mask not scored: {type(err).__name__}: {err}"}
    except SubjectError as err:
        out["error"] = {"stage": err.stage or stage, "path": err.path, "message": err.message}
    except GlioError as err:
        out["error"] = {"stage": stage, "path": None, "message": str(err)}
    except Exception as err:  # keep the batch going; record what happened
        tb = traceback.format_exc(limit=3)
        out["error"] = {"stage": stage, "path": None,
                        "message": f"{type(err).__name__}: {err}\n{tb}"}
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


# -- driver ------------------------------------------------------------------------------------
def process_cohort(cohort: Cohort, store: Store, config: ProcessingConfig | None = None,
                   progress: ProgressCallback | None = None,
                   subject_ids: list[str] | None = None) -> ProcessingSummary:
    """Segment, extract features and score every scan of a cohort, reusing the cache.

    Parameters
    ----------
    cohort : Cohort
    store : Store
    config : ProcessingConfig, optional
    progress : callable, optional
        Called as ``progress(stage, done, total, scan_label)`` for stages ``hash``,
        ``segment`` and ``features``; totals count scans.
    subject_ids : list of str, optional
        Restrict to these subjects (all their scans).

    Returns
    -------
    ProcessingSummary
    """
    config = config or ProcessingConfig()
    t_start = time.perf_counter()
    progress = progress or (lambda *a: None)
    params = radiomics.load_params(config.params)
    params_fp = radiomics.params_fingerprint(params)
    segmenter = get_segmenter(config.backend, **dict(config.backend_options))
    reference_map = get_label_map(config.reference_label_map)
    token = segmenter.cache_token()
    config_key = text_sha256(f"{token}|{params_fp}")[:16]
    cid = register_cohort(store, cohort)
    store.put_config(config_key, segmenter.name, segmenter.version, token, params_fp,
                     json.dumps(params, sort_keys=True, default=str))
    subjects = [s for s in cohort.scans if subject_ids is None or s.subject_id in subject_ids]
    # the scan whose result is also the subject's (cross-sectional analyses): its first one
    baselines = {(s.subject_id, getattr(s, "scan_id", BASELINE_SCAN)) for s in cohort.subjects}
    run_id = store.start_run(cid, config_key, segmenter.name, config.workers, len(subjects))
    summary = ProcessingSummary(run_id, cid, config_key, len(subjects))
    for err in cohort.problems:  # problems found while loading the cohort (files missing, CSV)
        if subject_ids is None or err.subject_id in subject_ids:
            store.add_error(run_id, cid, err.subject_id, err.stage, err.path, err.message,
                            scan_id=getattr(err, "scan_id", None))
            summary.errors.append(err)
            if err.stage == "load":  # its images are not there: an earlier result is stale
                store.drop_stale_result(cid, err.subject_id, config_key,
                                        scan_id=getattr(err, "scan_id", None))
    out_root = (config.output_dir or store.path.parent / "segmentations") / safe_name(cohort.name) \
        / f"{segmenter.name}-{text_sha256(token)[:8]}"

    # Stage 1: content keys (cheap), to find what is cached.
    t0 = time.perf_counter()
    tasks: list[dict[str, Any]] = []
    pending_hashes: list[tuple[str, int, int, str]] = []
    for i, subj in enumerate(subjects):
        try:
            hashes = {seq: hash_file_cached(store, subj.path(seq), pending_hashes)
                      for seq in sorted(subj.sequences)}
            input_key = text_sha256(json.dumps(hashes, sort_keys=True))
            extra = ""
            fp = getattr(segmenter, "input_fingerprint", None)
            if fp is not None:
                extra = fp(subj)
            seg_key = text_sha256(f"{input_key}|{token}|{extra}")
        except SubjectError as err:
            if err.scan_id is None and scan_label(subj):
                err = SubjectError(err.subject_id, err.message, path=err.path, stage=err.stage,
                                   scan_id=scan_label(subj))
            _record_error(store, summary, err)
            store.drop_stale_result(cid, subj.subject_id, config_key, scan_id=subj.scan_id)
            progress("hash", i + 1, len(subjects), subj.label)
            continue
        except OSError as exc:
            _record_error(store, summary, SubjectError(subj.subject_id, str(exc),
                                                       path=getattr(exc, "filename", None),
                                                       stage="load", scan_id=scan_label(subj)))
            store.drop_stale_result(cid, subj.subject_id, config_key, scan_id=subj.scan_id)
            progress("hash", i + 1, len(subjects), subj.label)
            continue
        mask_path = _mask_path(out_root, subj)
        rec = store.segmentation(seg_key)
        need_seg = True
        mask_sha = None
        if rec is not None and Path(rec.path).exists() and file_sha256(rec.path) == rec.mask_sha256:
            need_seg, mask_path, mask_sha = False, Path(rec.path), rec.mask_sha256
        feature_key = (text_sha256(f"{mask_sha}|{input_key}|{params_fp}") if mask_sha else None)
        need_features = feature_key is None or not store.has_feature_set(feature_key)
        ref_mask = str(subj.reference_mask) if (config.compute_qc and subj.reference_mask) else None
        need_qc = False
        if ref_mask is not None:
            # score a new segmentation, or a cached one whose reference is new or was edited
            need_qc = need_seg or not store.has_qc(
                seg_key, hash_file_cached(store, Path(ref_mask), pending_hashes),
                reference_map.name, qc.QC_VERSION)
        task = {"subject": subj, "input_key": input_key, "seg_key": seg_key,
                "need_segmentation": need_seg, "mask_path": str(mask_path), "mask_sha256": mask_sha,
                "need_features": need_features, "feature_key": feature_key,
                "params": params, "params_fingerprint": params_fp, "backend": config.backend,
                "backend_options": dict(config.backend_options),
                "reference_mask": ref_mask if need_qc else None,
                "reference_label_map": reference_map.to_json()}
        task["baseline"] = (subj.subject_id, subj.scan_id) in baselines
        if not need_seg and not need_features and not need_qc:
            store.save_subject_result(cohort_id=cid, subject_id=subj.subject_id,
                                      config_key=config_key, input_key=input_key,
                                      segmentation=None, seg_key=seg_key,
                                      feature_key=feature_key, feature_rows=None, feature_meta=None,
                                      scan_id=subj.scan_id, baseline=task["baseline"])
            summary.cached.append(subj.label)
        else:
            tasks.append(task)
        progress("hash", i + 1, len(subjects), subj.label)
    store.put_image_hashes(pending_hashes)
    summary.stage_seconds["hash"] = time.perf_counter() - t0
    n_cached = len(summary.cached)
    progress("segment", n_cached, len(subjects), None)
    progress("features", n_cached, len(subjects), None)

    # Stage 2: the missing work, in worker processes where the backend allows it.
    t0 = time.perf_counter()
    done = {"segment": n_cached, "features": n_cached}
    seg_seconds = feat_seconds = 0.0

    def collect(task: dict[str, Any], result: dict[str, Any]) -> None:
        nonlocal seg_seconds, feat_seconds
        scan: Scan = task["subject"]
        sid, err_scan = scan.subject_id, scan_label(scan)
        if "error" in result:
            e = result["error"]
            _record_error(store, summary, SubjectError(sid, e["message"], path=e.get("path"),
                                                       stage=e.get("stage"), scan_id=err_scan))
            # a result from other (older) inputs must not stand in for these failing ones
            store.drop_stale_result(cid, sid, config_key, task["input_key"], scan_id=scan.scan_id)
        else:
            seg = result.get("segmentation")
            if seg:
                seg_seconds += seg["seconds"]
            rows = result.get("feature_rows")
            if rows is not None:
                feat_seconds += result.get("feature_seconds", 0.0)
            store.save_subject_result(
                cohort_id=cid, subject_id=sid, config_key=config_key, input_key=task["input_key"],
                segmentation=seg, seg_key=task["seg_key"], feature_key=result["feature_key"],
                feature_rows=rows,
                feature_meta={"params_fingerprint": params_fp,
                              "seconds": result.get("feature_seconds")},
                image_stats=result.get("image_stats"), qc_rows=result.get("qc_rows"),
                scan_id=scan.scan_id, baseline=task["baseline"])
            summary.computed.append(scan.label)
            if "qc_error" in result:
                e = result["qc_error"]
                _record_error(store, summary, SubjectError(sid, e["message"], path=e.get("path"),
                                                           stage=e.get("stage"), scan_id=err_scan))
        done["segment"] += 1
        done["features"] += 1
        progress("segment", done["segment"], len(subjects), scan.label)
        progress("features", done["features"], len(subjects), scan.label)

    workers = max(1, int(config.workers))
    if workers == 1 or not segmenter.parallel_safe or len(tasks) <= 1:
        if any(t["need_segmentation"] for t in tasks):
            try:
                segmenter.load()  # once per batch
            except GlioError as exc:
                for t in tasks:
                    _record_error(store, summary, SubjectError(t["subject"].subject_id, str(exc),
                                                               stage="segment",
                                                               scan_id=scan_label(t["subject"])))
                    store.drop_stale_result(cid, t["subject"].subject_id, config_key,
                                            t["input_key"], scan_id=t["subject"].scan_id)
                tasks = []
        try:
            for task in tasks:
                collect(task, process_subject(task, segmenter))
        finally:
            segmenter.close()
    else:
        # spawn, not fork: the dashboard calls this from a threaded Streamlit process, and
        # forking a threaded process can deadlock.
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_init_worker,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(process_subject, task): task for task in tasks}
            for fut in as_completed(futures):
                task = futures[fut]
                try:
                    result = fut.result()
                except Exception as exc:  # the worker died (out of memory, a crash in C code)
                    result = {"subject_id": task["subject"].subject_id,
                              "error": {"stage": "worker", "path": None,
                                        "message": f"worker process died ({type(exc).__name__}: "
                                                   f"{exc}); re-run to resume, or use fewer "
                                                   "workers if memory is short"}}
                collect(task, result)
    summary.stage_seconds["work"] = time.perf_counter() - t0
    summary.stage_seconds["segment_cpu"] = seg_seconds
    summary.stage_seconds["features_cpu"] = feat_seconds
    summary.seconds = time.perf_counter() - t_start
    store.finish_run(run_id, "finished", len(summary.computed), len(summary.cached),
                     len(summary.errors))
    return summary


def _record_error(store: Store, summary: ProcessingSummary, err: SubjectError) -> None:
    store.add_error(summary.run_id, summary.cohort_id, err.subject_id, err.stage, err.path,
                    err.message, scan_id=getattr(err, "scan_id", None))
    summary.errors.append(err)


def _mask_path(out_root: Path, scan: Scan) -> Path:
    """Where a scan's new mask is written: ``<subject>/seg/<subject>_seg.nii.gz`` for the only
    scan of a cross-sectional cohort, ``<subject>/<scan>/seg/<subject>_<scan>_seg.nii.gz``
    otherwise (masks are found again by content key, not by this path)."""
    sid = safe_name(scan.subject_id)
    if scan.scan_id == BASELINE_SCAN:
        return out_root / sid / "seg" / f"{sid}_seg.nii.gz"
    tp = safe_name(scan.scan_id)
    return out_root / sid / tp / "seg" / f"{sid}_{tp}_seg.nii.gz"
