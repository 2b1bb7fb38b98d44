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
import time
from typing import Any, Callable

from gliocore.cohort.subjects import Cohort, Scan, safe_name
from gliocore.errors import GlioError, SubjectError
from gliocore.features.params import load_params, params_fingerprint
from gliocore.imaging.io import text_sha256
from gliocore.imaging.labels import declared_reference_map
from gliocore.location.localise import locate_cohort
from gliocore.pipeline.context import (ProcessingConfig, ProcessingSummary, ProgressCallback,
                                       RunContext)
from gliocore.pipeline.executor import Executor, make_executor
from gliocore.pipeline.plan import plan_subjects, register_cohort
from gliocore.pipeline.task import process_subject
from gliocore.pipeline.writer import ResultWriter, collect_result
from gliocore.segment import get_segmenter
from gliocore.store import Store
from gliocore.types import BASELINE_SCAN


def start_run(cohort: Cohort, store: Store, config: ProcessingConfig,
              subject_ids: list[str] | None) -> tuple[RunContext, list[Scan]]:
    """Register the cohort and the configuration, open a run; return it and its scans."""
    params = load_params(config.params)
    params_fp = params_fingerprint(params)
    segmenter = get_segmenter(config.backend, **dict(config.backend_options))
    declared_reference_map(config.reference_label_map)  # a bad label map fails before the run
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
