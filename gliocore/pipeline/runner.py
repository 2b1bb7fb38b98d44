"""Processing: segmentation, radiomics and QC of every scan of a cohort, cached in the store.

:func:`process_cohort` is what the CLI's ``process`` and the dashboard's "Process" button call.
The unit of work is a **scan** (one timepoint of a subject; a cohort without timepoints has one
scan per subject). For each scan it computes content keys first and does only the work whose
key is missing from the store; each finished scan is written in one transaction, so a killed
run resumes. A failing scan is recorded with its error (subject, scan, stage, file, message)
and the others go on.
"""
from __future__ import annotations

import functools
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gliocore.segment import qc

from gliocore.features import radiomics
from gliocore.features.params import load_params, params_fingerprint
from gliocore.cohort.loading import Cohort, Scan, load_subject_images, safe_name, scan_label
from gliocore.errors import GlioError, SubjectError
from gliocore.pipeline.executor import Executor, make_executor
from gliocore.imaging.io import Volume, file_sha256, load_volume, save_mask, text_sha256
from gliocore.location.localise import LocationConfig, locate_cohort
from gliocore.segment import Segmenter, get_segmenter
from gliocore.imaging.labels import LabelMap, get_label_map
from gliocore.store.database import Store
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
    executor : {"local", "dask"}
        Where the work runs (:mod:`gliocore.pipeline.executor`): processes on this machine, or a Dask
        cluster whose workers share the images' and masks' storage with this machine.
    scheduler : str, optional
        The Dask scheduler's address (``tcp://HOST:PORT``) for ``executor="dask"``.
    location : LocationConfig or None
        Locate tumours in an atlas (:mod:`gliocore.location.localise`); None = skip that stage.
    """

    backend: str = "baseline"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    params: Any = None
    workers: int = 1
    output_dir: Path | None = None
    compute_qc: bool = True
    reference_label_map: Any = "glioscope"
    executor: str = "local"
    scheduler: str | None = None
    location: LocationConfig | None = None


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
    #: Cohort-level warnings (e.g. no enhancing voxel in any subject), also stored with the run.
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        unit = "scans" if any("/" in x for x in self.computed + self.cached) else "subjects"
        lines = [f"{self.n_subjects} {unit}: {len(self.computed)} computed, "
                 f"{len(self.cached)} from cache, {len(self.errors)} with errors "
                 f"({self.seconds:.1f} s)"]
        for err in self.errors:
            lines.append(f"  ERROR [{err.stage}] {err}")
        for warning in self.warnings:
            lines.append(f"WARNING: {warning}")
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
    # the current references' content: QC scores are shown against it only (one lookup for all)
    refs = [Path(s.reference_mask) for s in (*cohort.subjects, *cohort.scans)
            if s.reference_mask and Path(s.reference_mask).is_file()]
    ref_shas = FileHasher(store).hash_many(list(dict.fromkeys(refs)), pending)

    def sha_of(path: Path | None) -> str | None:
        return ref_shas.get(str(Path(path).resolve())) if path else None

    for rec in cohort.clinical.to_dict(orient="records"):
        sid = str(rec["SUBJECT ID"])
        subj = by_id.get(sid)
        rows.append({"subject_id": sid, "folder": str(subj.folder) if subj else None,
                     "has_images": subj is not None,
                     "reference_mask": str(subj.reference_mask) if subj and subj.reference_mask else None,
                     "reference_sha256": sha_of(subj.reference_mask) if subj else None,
                     "clinical": {k: _plain(v) for k, v in rec.items()},
                     "sequences": {k: str(v) for k, v in subj.sequences.items()} if subj else {},
                     "scans": [{"scan_id": sc.scan_id, "days": sc.days, "folder": str(sc.folder),
                                "reference_mask": str(sc.reference_mask) if sc.reference_mask
                                else None,
                                "reference_sha256": sha_of(sc.reference_mask),
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
    return FileHasher(store).hash_many([path], pending)[str(Path(path).resolve())]


class FileHasher:
    """Content hashes of files, re-hashing only files whose size or mtime changed.

    The store is asked once per batch of files (not once per file); new hashes are collected
    in ``pending`` for one write at the end.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def hash_many(self, paths: list[Path], pending: list[tuple[str, int, int, str]]
                  ) -> dict[str, str]:
        """``{resolved path: sha256}``; raises OSError for a file that cannot be read."""
        stats = {}
        for p in paths:
            key = str(Path(p).resolve())
            st = Path(p).stat()
            stats[key] = (st.st_size, st.st_mtime_ns)
        known = self.store.cached_file_hashes([(k, s, m) for k, (s, m) in stats.items()])
        for key, (size, mtime) in stats.items():
            if key not in known:
                known[key] = file_sha256(key)
                pending.append((key, size, mtime, known[key]))
        return known


# -- worker side -------------------------------------------------------------------------------
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
            with _RADIOMICS_LOCK:  # PyRadiomics is not thread-safe (multi-threaded Dask workers)
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
@dataclass
class RunContext:
    """One processing run: what it computes, under which keys, and where results go."""

    store: Store
    config: ProcessingConfig
    cohort_id: str
    config_key: str
    run_id: str
    segmenter: Segmenter
    token: str
    params: dict[str, Any]
    params_fp: str
    out_root: Path
    summary: ProcessingSummary
    #: (subject_id, scan_id) of each subject's baseline scan, whose result is also the subject's
    baselines: set[tuple[str, str]] = field(default_factory=set)

    def mask_path(self, scan: Scan) -> Path:
        return _mask_path(self.out_root, scan)

    @property
    def needs_gpu(self) -> bool:
        """A model backend that should run on a GPU worker when the executor schedules by
        resources (Dask ``--resources GPU=1``); ``device=cpu`` opts out."""
        device = str(dict(self.config.backend_options).get("device", "auto")).lower()
        return not self.segmenter.parallel_safe and device != "cpu"


def start_run(cohort: Cohort, store: Store, config: ProcessingConfig,
              subject_ids: list[str] | None) -> tuple[RunContext, list[Scan]]:
    """Register the cohort and the configuration, open a run; return it and its scans."""
    params = load_params(config.params)
    params_fp = params_fingerprint(params)
    segmenter = get_segmenter(config.backend, **dict(config.backend_options))
    get_label_map(config.reference_label_map)  # a bad reference label map fails before the run
    token = segmenter.cache_token()
    config_key = text_sha256(f"{token}|{params_fp}")[:16]
    wanted = None if subject_ids is None else set(subject_ids)
    subjects = [s for s in cohort.scans if wanted is None or s.subject_id in wanted]
    # the scan whose result is also the subject's (cross-sectional analyses): its first one
    baselines = {(s.subject_id, getattr(s, "scan_id", BASELINE_SCAN)) for s in cohort.subjects}
    # one run per store: wait for (or refuse) another one before writing anything, and before
    # batch() opens the file, which the running one needs
    lock = store.acquire_run_lock(f"processing cohort {cohort.name!r} with {segmenter.name}")
    try:
        with store.batch():
            cid = register_cohort(store, cohort)
            store.put_config(config_key, segmenter.name, segmenter.version, token, params_fp,
                             json.dumps(params, sort_keys=True, default=str))
            run_id = store.start_run(cid, config_key, segmenter.name, config.workers,
                                     len(subjects), lock=lock)
    except BaseException:
        lock.release()
        raise
    out_root = (config.output_dir or store.path.parent / "segmentations") / safe_name(cohort.name) \
        / f"{segmenter.name}-{text_sha256(token)[:8]}"
    ctx = RunContext(store, config, cid, config_key, run_id, segmenter, token, params, params_fp,
                     out_root, ProcessingSummary(run_id, cid, config_key, len(subjects)),
                     baselines)
    return ctx, subjects


class ResultWriter:
    """The driver's only way into the store during a run: buffers results, errors and file
    hashes and writes them in batches (one connection and transaction each, every
    ``flush_seconds`` — or ``cost_ratio`` times the last write's duration when that is longer —
    or ``max_batch`` scans), so bookkeeping costs a few statements per batch rather than several
    connections per subject. A crash loses at most the unflushed subjects, whose work a re-run
    redoes; nothing is ever half-written.
    """

    def __init__(self, ctx: RunContext, flush_seconds: float = 5.0, max_batch: int = 500,
                 cost_ratio: float = 10.0) -> None:
        self.ctx = ctx
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self.cost_ratio = cost_ratio
        self._interval = flush_seconds
        self._results: list[dict[str, Any]] = []
        self._errors: list[tuple] = []
        self._stale: list[tuple] = []
        self.hashes: list[tuple[str, int, int, str]] = []
        self._last = time.monotonic()

    def result(self, scan: Scan, input_key: str, seg_key: str, feature_key: str,
               **parts: Any) -> None:
        """Queue one scan's result (``parts``: see :meth:`Store.save_subject_results`)."""
        c = self.ctx
        self._results.append({"cohort_id": c.cohort_id, "subject_id": scan.subject_id,
                              "config_key": c.config_key, "input_key": input_key,
                              "seg_key": seg_key, "feature_key": feature_key,
                              "scan_id": scan.scan_id,
                              "baseline": (scan.subject_id, scan.scan_id) in c.baselines,
                              **parts})
        self.maybe_flush()

    def error(self, err: SubjectError, scan: Scan | None = None, drop_stale: bool = False,
              keep_input_key: str | None = None) -> None:
        """Queue a subject's (``scan``'s) error; ``drop_stale``: also forget its result under
        this configuration (the scan's; every scan's without ``scan``) unless computed from
        ``keep_input_key``."""
        c = self.ctx
        if scan is not None and err.scan_id is None and scan_label(scan):
            err = SubjectError(err.subject_id, err.message, path=err.path, stage=err.stage,
                               scan_id=scan_label(scan))
        self._errors.append((c.run_id, c.cohort_id, err.subject_id, err.stage, err.path,
                             err.message, getattr(err, "scan_id", None)))
        if drop_stale:
            stale_scan = scan.scan_id if scan is not None else getattr(err, "scan_id", None)
            self._stale.append((c.cohort_id, err.subject_id, c.config_key, keep_input_key,
                                stale_scan))
        c.summary.errors.append(err)
        self.maybe_flush()

    def maybe_flush(self) -> None:
        n = len(self._results) + len(self._errors)
        if n >= self.max_batch or (n and time.monotonic() - self._last >= self._interval):
            self.flush()

    def flush(self) -> None:
        store = self.ctx.store
        started = time.monotonic()
        if self.hashes or self._stale or self._results or self._errors:
            with store.batch():  # one connection, one transaction
                store.put_image_hashes(self.hashes)
                store.drop_stale_results(self._stale)
                store.save_subject_results(self._results)
                store.add_errors(self._errors)
        self.hashes, self._stale, self._results, self._errors = [], [], [], []
        now = time.monotonic()
        # a slow store (a loaded machine, a big file) is written less often: flushing stays
        # under ~1/(1 + cost_ratio) of the run, at the price of more work redone after a crash
        self._interval = max(self.flush_seconds, self.cost_ratio * (now - started))
        self._last = now


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def plan_subjects(ctx: RunContext, subjects: list[Scan], writer: ResultWriter,
                  progress: ProgressCallback) -> list[dict[str, Any]]:
    """Stage "hash": content keys of every scan, to find what is cached.

    The store is asked once per kind of lookup for the whole cohort (file hashes, cached
    segmentations, mask files, feature sets, QC scores), not once per scan. Scans with
    nothing missing are recorded as cached through ``writer``; the others come back as tasks.
    """
    store, summary, config = ctx.store, ctx.summary, ctx.config
    n = len(subjects)

    def fail(i: int, subj: Scan, err: SubjectError) -> None:
        writer.error(err, subj, drop_stale=True)
        progress("hash", i + 1, n, subj.label)

    def load_error(subj: Scan, exc: OSError) -> SubjectError:
        return SubjectError(subj.subject_id, str(exc), path=getattr(exc, "filename", None),
                            stage="load")

    # 1. stat every input file; their known hashes in one query
    stats: dict[str, dict[str, tuple[str, int, int]]] = {}
    for i, subj in enumerate(subjects):
        try:
            stats[subj.label] = {seq: _stat_key(subj.path(seq))
                                      for seq in sorted(subj.sequences)}
        except SubjectError as err:
            fail(i, subj, err)
        except OSError as exc:
            fail(i, subj, load_error(subj, exc))
    known = store.cached_file_hashes([k for per in stats.values() for k in per.values()])

    # 2. input and segmentation keys (hashing only new or changed files)
    fingerprint = getattr(ctx.segmenter, "input_fingerprint", None)
    keyed: list[tuple[int, Scan, str, str]] = []
    for i, subj in enumerate(subjects):
        if subj.label not in stats:
            continue
        try:
            hashes = {}
            for seq, (path, size, mtime) in stats[subj.label].items():
                sha = known.get(path)
                if sha is None:
                    sha = known[path] = file_sha256(path)
                    writer.hashes.append((path, size, mtime, sha))
                hashes[seq] = sha
            input_key = text_sha256(json.dumps(hashes, sort_keys=True))
            extra = fingerprint(subj) if fingerprint is not None else ""
            seg_key = text_sha256(f"{input_key}|{ctx.token}|{extra}")
        except SubjectError as err:
            fail(i, subj, err)
            continue
        except OSError as exc:
            fail(i, subj, load_error(subj, exc))
            continue
        keyed.append((i, subj, input_key, seg_key))

    # 3. cached segmentations whose mask file is intact, and reference masks' hashes
    records = store.segmentations([k[3] for k in keyed])
    files: dict[str, Path] = {}
    for _, subj, _, seg_key in keyed:
        rec = records.get(seg_key)
        if rec is not None and Path(rec.path).exists():
            files[seg_key] = Path(rec.path)
        if config.compute_qc and subj.reference_mask and Path(subj.reference_mask).exists():
            files[str(subj.reference_mask)] = Path(subj.reference_mask)
    file_sha = _hash_files(store, files, writer)

    # 4. feature sets and QC scores present, one query each
    plans = []
    for i, subj, input_key, seg_key in keyed:
        rec = records.get(seg_key)
        need_seg, mask_path, mask_sha = True, ctx.mask_path(subj), None
        if rec is not None and file_sha.get(seg_key) == rec.mask_sha256:
            need_seg, mask_path, mask_sha = False, Path(rec.path), rec.mask_sha256
        feature_key = text_sha256(f"{mask_sha}|{input_key}|{ctx.params_fp}") if mask_sha else None
        ref_mask = str(subj.reference_mask) if (config.compute_qc and subj.reference_mask) else None
        plans.append((i, subj, input_key, seg_key, need_seg, mask_path, mask_sha, feature_key,
                      ref_mask))
    have_features = store.existing_feature_sets([p[7] for p in plans if p[7]])
    reference_map = get_label_map(config.reference_label_map)
    have_qc = store.existing_qc([(p[3], file_sha.get(p[8])) for p in plans
                                 if p[8] and not p[4] and file_sha.get(p[8])],
                                reference_map.name, qc.QC_VERSION)

    tasks: list[dict[str, Any]] = []
    for i, subj, input_key, seg_key, need_seg, mask_path, mask_sha, feature_key, ref_mask in plans:
        need_features = feature_key is None or feature_key not in have_features
        need_qc = False
        if ref_mask is not None:
            # score a new segmentation, or a cached one whose reference is new or was edited
            need_qc = need_seg or (seg_key, file_sha.get(ref_mask)) not in have_qc
        if not need_seg and not need_features and not need_qc:
            writer.result(subj, input_key, seg_key, feature_key)
            summary.cached.append(subj.label)
        else:
            tasks.append({"subject": subj, "input_key": input_key, "seg_key": seg_key,
                          "need_segmentation": need_seg, "mask_path": str(mask_path),
                          "mask_sha256": mask_sha, "need_features": need_features,
                          "feature_key": feature_key, "params": ctx.params,
                          "params_fingerprint": ctx.params_fp, "backend": config.backend,
                          "backend_options": dict(config.backend_options),
                          "reference_mask": ref_mask if need_qc else None,
                          "reference_label_map": reference_map.to_json(),
                          "baseline": (subj.subject_id, subj.scan_id) in ctx.baselines})
        progress("hash", i + 1, n, subj.label)
    return tasks


def _hash_files(store: Store, files: Mapping[str, Path], writer: ResultWriter) -> dict[str, str]:
    """``{name: sha256}`` of files, from the store's hash cache where size and mtime match."""
    stats = {}
    for name, path in files.items():
        try:
            stats[name] = _stat_key(path)
        except OSError:
            continue
    known = store.cached_file_hashes(list(stats.values()))
    out = {}
    for name, (path, size, mtime) in stats.items():
        sha = known.get(path)
        if sha is None:
            try:
                sha = known[path] = file_sha256(path)
            except OSError:
                continue
            writer.hashes.append((path, size, mtime, sha))
        out[name] = sha
    return out


def collect_result(ctx: RunContext, writer: ResultWriter, task: dict[str, Any],
                   result: dict[str, Any]) -> None:
    """Queue a finished task's rows (or its error) for the store."""
    summary = ctx.summary
    scan: Scan = task["subject"]
    sid = scan.subject_id
    if "error" in result:
        e = result["error"]
        # a result from other (older) inputs must not stand in for these failing ones
        writer.error(SubjectError(sid, e["message"], path=e.get("path"), stage=e.get("stage")),
                     scan, drop_stale=True, keep_input_key=task["input_key"])
        return
    seg = result.get("segmentation")
    if seg:
        summary.stage_seconds["segment_cpu"] += seg["seconds"]
        try:  # the new mask's hash, so that a re-run need not read it again
            path, size, mtime = _stat_key(Path(seg["path"]))
            writer.hashes.append((path, size, mtime, seg["mask_sha256"]))
        except OSError:
            pass
    rows = result.get("feature_rows")
    if rows is not None:
        summary.stage_seconds["features_cpu"] += result.get("feature_seconds", 0.0)
    summary.computed.append(scan.label)
    writer.result(scan, task["input_key"], task["seg_key"], result["feature_key"],
                  segmentation=seg, feature_rows=rows,
                  feature_meta={"params_fingerprint": ctx.params_fp,
                                "seconds": result.get("feature_seconds")},
                  image_stats=result.get("image_stats"), qc_rows=result.get("qc_rows"))
    if "qc_error" in result:
        e = result["qc_error"]
        writer.error(SubjectError(sid, e["message"], path=e.get("path"), stage=e.get("stage")),
                     scan)


def run_tasks(ctx: RunContext, tasks: list[dict[str, Any]], executor: Executor,
              writer: ResultWriter, on_done: Callable[[str], None]) -> None:
    """Stage "work": the missing work, on the executor; results collected as they finish.

    In-process runs share the driver's segmenter, loaded once for the batch; worker processes
    (local or Dask) load one each, once.
    """
    segmenter = ctx.segmenter
    in_process = executor.runs_in_process(len(tasks), segmenter.parallel_safe)
    fn: Callable[[dict[str, Any]], dict[str, Any]] = process_subject
    if in_process:
        if any(t["need_segmentation"] for t in tasks):
            try:
                segmenter.load()  # once per batch
            except GlioError as exc:
                for t in tasks:
                    writer.error(SubjectError(t["subject"].subject_id, str(exc), stage="segment"),
                                 t["subject"], drop_stale=True, keep_input_key=t["input_key"])
                    on_done(t["subject"].label)
                return
        fn = functools.partial(process_subject, segmenter=segmenter)
    needs_gpu = ctx.needs_gpu

    def resources(task: dict[str, Any]) -> dict[str, float] | None:
        return {"GPU": 1} if needs_gpu and task["need_segmentation"] else None

    try:
        for task, result in executor.map_unordered(fn, tasks, resources=resources,
                                                   parallel_safe=segmenter.parallel_safe):
            if isinstance(result, BaseException):  # the worker died (OOM, a crash in C code)
                result = {"subject_id": task["subject"].subject_id,
                          "error": {"stage": "worker", "path": None,
                                    "message": f"worker process died ({type(result).__name__}: "
                                               f"{result}); re-run to resume, or use fewer "
                                               "workers if memory is short"}}
            collect_result(ctx, writer, task, result)
            on_done(task["subject"].label)
    finally:
        if in_process:
            segmenter.close()


def process_cohort(cohort: Cohort, store: Store, config: ProcessingConfig | None = None,
                   progress: ProgressCallback | None = None,
                   subject_ids: list[str] | None = None,
                   executor: Executor | None = None) -> ProcessingSummary:
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
    executor : Executor, optional
        Where the work runs; default from ``config`` (``executor``, ``workers``, ``scheduler``).

    Returns
    -------
    ProcessingSummary
    """
    config = config or ProcessingConfig()
    t_start = time.perf_counter()
    progress = progress or (lambda *a: None)
    executor = executor or make_executor(config.executor, config.workers, config.scheduler)
    ctx, subjects = start_run(cohort, store, config, subject_ids)
    summary = ctx.summary
    summary.stage_seconds.update({"segment_cpu": 0.0, "features_cpu": 0.0})
    writer = ResultWriter(ctx)
    status = "failed"
    try:
        for err in cohort.problems:  # problems found while loading the cohort (files missing, CSV)
            if subject_ids is None or err.subject_id in subject_ids:
                # its images are not there: an earlier result is stale
                writer.error(err, drop_stale=err.stage == "load")

        t0 = time.perf_counter()
        tasks = plan_subjects(ctx, subjects, writer, progress)
        writer.flush()
        summary.stage_seconds["hash"] = time.perf_counter() - t0
        n_cached, n = len(summary.cached), len(subjects)
        done = {"segment": n_cached, "features": n_cached}
        progress("segment", n_cached, n, None)
        progress("features", n_cached, n, None)

        def on_done(label: str) -> None:
            for stage in ("segment", "features"):
                done[stage] += 1
                progress(stage, done[stage], n, label)

        t0 = time.perf_counter()
        run_tasks(ctx, tasks, executor, writer, on_done)
        summary.stage_seconds["work"] = time.perf_counter() - t0
        if config.location is not None:  # atlas location of every scan's segmentation (cached)
            writer.flush()
            t0 = time.perf_counter()
            for err in locate_cohort(store, ctx.cohort_id, ctx.config_key, subject_ids,
                                     config.location, store.path.parent, config.workers, progress):
                writer.error(err)
            summary.stage_seconds["location"] = time.perf_counter() - t0
        writer.flush()
        warning = enhancement_warning(store, ctx.cohort_id, ctx.config_key)
        if warning:
            summary.warnings.append(warning)
        status = "finished"
    finally:
        writer.flush()  # also on Ctrl-C: finished subjects are kept
        summary.seconds = time.perf_counter() - t_start
        store.finish_run(ctx.run_id, status if status == "finished" else "interrupted",
                         len(summary.computed), len(summary.cached), len(summary.errors),
                         warnings=summary.warnings)
    return summary


def enhancement_warning(store: Store, cohort_id: str, config_key: str) -> str | None:
    """A loud warning when no segmented subject has any contrast-enhancing voxel, else None.

    Most glioblastomas enhance; a whole cohort without enhancement usually means the masks'
    label map is wrong (HD-GLIO's enhancing label 2 read with the BraTS map is oedema), so every
    ``Volume_label1`` would silently be 0.
    """
    seg = store.segmentations_of(cohort_id, config_key)
    if seg.empty or "volume_ce_mm3" not in seg:
        return None
    ce = seg["volume_ce_mm3"].fillna(0.0)
    if (ce > 0).any():
        return None
    maps = sorted({_label_map_name(m) for m in seg.get("label_map", []) if m})
    return (f"No subject has any contrast-enhancing voxel ({len(seg)} segmented; backend "
            f"{', '.join(sorted(set(seg['backend'].astype(str))))}"
            + (f", label map {', '.join(maps)}" if maps else "") + "). If the tumours enhance, the "
            "label map is probably wrong (e.g. HD-GLIO writes enhancing tumour as 2: use "
            "hdglio-v2, not brats); every contrast-enhancing volume is 0 until it is fixed.")


def _label_map_name(text: str) -> str:
    try:
        return str(json.loads(text).get("name", text))
    except (ValueError, AttributeError):
        return str(text)


def _mask_path(out_root: Path, scan: Scan) -> Path:
    """Where a scan's new mask is written: ``<subject>/seg/<subject>_seg.nii.gz`` for the only
    scan of a cross-sectional cohort, ``<subject>/<scan>/seg/<subject>_<scan>_seg.nii.gz``
    otherwise (masks are found again by content key, not by this path)."""
    sid = safe_name(scan.subject_id)
    if scan.scan_id == BASELINE_SCAN:
        return out_root / sid / "seg" / f"{sid}_seg.nii.gz"
    tp = safe_name(scan.scan_id)
    return out_root / sid / tp / "seg" / f"{sid}_{tp}_seg.nii.gz"
