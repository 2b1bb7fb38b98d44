"""The driver's writer: results, errors and file hashes of a run, buffered and written to the
store in batches (:class:`ResultWriter`, :func:`collect_result`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gliocore.cohort.subjects import Scan, scan_label
from gliocore.errors import SubjectError
from gliocore.pipeline.context import RunContext


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


def stat_key(path: Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


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
            path, size, mtime = stat_key(Path(seg["path"]))
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
