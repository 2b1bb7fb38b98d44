"""Processing runs (with the store's run lock), per-subject errors and the status table."""
from __future__ import annotations

import json
import uuid
from typing import Sequence

import pandas as pd

from gliocore.store.locking import RunLock
from gliocore.store.rows import _insert, _now


#: Recorded with a run that a later one found still 'running' (its process had ended).
STALE_RUN_NOTE = ("closed by a later run: the process running it ended without recording how "
                  "(killed, or the disk was full)")


class RunsMixin:
    """Processing runs (with the store's run lock), per-subject errors and the status table.

    A mixin of :class:`gliocore.store.database.Store` (uses its connections).
    """

    def acquire_run_lock(self, what: str) -> RunLock:
        """Take the store's run lock (waiting up to ``run_wait`` seconds); pass it to
        :meth:`start_run`. Take it before opening a connection (e.g. before :meth:`batch`):
        a run waiting for the lock must not hold the file the running one writes.

        Raises
        ------
        StoreBusyError
            When another run holds the store for longer than ``run_wait`` seconds.
        StoreReadOnlyError
            When the store was opened read-only (its folder or file cannot be written).
        """
        self._refuse_if_read_only()
        lock = RunLock(self.path)
        lock.acquire(what, wait=self.run_wait)
        return lock

    def start_run(self, cohort_id: str, config_key: str, backend: str, workers: int,
                  n_subjects: int, lock: RunLock | None = None) -> str:
        """Record a new run, holding the store's run lock until :meth:`finish_run`.

        A run still recorded as ``running`` cannot be alive (the lock is held here): it is
        closed as ``interrupted`` with :data:`STALE_RUN_NOTE`.

        ``lock``: from :meth:`acquire_run_lock`; without it the lock is taken here.

        Raises
        ------
        StoreBusyError
            When another run holds the store for longer than ``run_wait`` seconds.
        """
        run_id = uuid.uuid4().hex[:12]
        if lock is None:
            lock = self.acquire_run_lock(f"processing cohort {cohort_id} with {backend}")
        try:
            with self.transaction() as con:
                # holding the run lock, no other run is alive: one still 'running' ended without
                # recording how (killed, or the disk was full when it tried)
                con.execute("UPDATE runs SET status = 'interrupted', finished_at = ?, "
                            "warnings = COALESCE(warnings, ?) WHERE status = 'running'",
                            [_now(), json.dumps([STALE_RUN_NOTE])])
                con.execute("INSERT INTO runs (run_id, cohort_id, config_key, backend, workers, "
                            "started_at, finished_at, status, n_subjects, n_computed, n_cached, "
                            "n_errors) VALUES (?, ?, ?, ?, ?, ?, NULL, 'running', ?, 0, 0, 0)",
                            [run_id, cohort_id, config_key, backend, workers, _now(), n_subjects])
        except BaseException:
            lock.release()
            raise
        self._run_locks[run_id] = lock
        return run_id

    def finish_run(self, run_id: str, status: str, n_computed: int, n_cached: int,
                   n_errors: int, warnings: Sequence[str] | None = None) -> None:
        """Close a run with its counts and cohort-level warnings (JSON list, or NULL), and
        release the run lock."""
        try:
            with self.transaction() as con:
                con.execute("UPDATE runs SET finished_at = ?, status = ?, n_computed = ?, "
                            "n_cached = ?, n_errors = ?, warnings = ? WHERE run_id = ?",
                            [_now(), status, n_computed, n_cached, n_errors,
                             json.dumps(list(warnings)) if warnings else None, run_id])
        finally:
            lock = self._run_locks.pop(run_id, None)
            if lock is not None:
                lock.release()

    def add_error(self, run_id: str, cohort_id: str, subject_id: str, stage: str | None,
                  path: str | None, message: str, scan_id: str | None = None) -> None:
        """Record a subject's (scan's, when ``scan_id`` is given) error in a run."""
        self.add_errors([(run_id, cohort_id, subject_id, stage, path, message, scan_id)])

    def add_errors(self, rows: Sequence[tuple]) -> None:
        """Record (run_id, cohort_id, subject_id, stage, path, message[, scan_id]) rows in one
        transaction."""
        rows = [(*r[:6], _now(), r[6] if len(r) > 6 else None) for r in rows]
        if not rows:
            return
        with self.transaction() as con:
            _insert(con, "subject_errors", ["run_id", "cohort_id", "subject_id", "stage", "path",
                                            "message", "created_at", "scan_id"], rows)

    def runs(self, cohort_id: str) -> pd.DataFrame:
        return self._df("SELECT * FROM runs WHERE cohort_id = ? ORDER BY started_at DESC",
                        [cohort_id])

    def errors(self, cohort_id: str, run_id: str | None = None) -> pd.DataFrame:
        """Per-subject errors of a run (default: the latest run of the cohort)."""
        if run_id is None:
            runs = self.runs(cohort_id)
            if runs.empty:
                return pd.DataFrame(columns=["subject_id", "stage", "path", "message"])
            run_id = str(runs.iloc[0]["run_id"])
        return self._df("SELECT subject_id, scan_id, stage, path, message, created_at "
                        "FROM subject_errors WHERE cohort_id = ? AND run_id = ? "
                        "ORDER BY subject_id, scan_id NULLS FIRST", [cohort_id, run_id])

    def status(self, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
        """Per subject: has images, segmented, features, input warnings (JSON list) of the
        segmentation backend, and the latest run's error (stage and message)."""
        with self.reading():  # one connection for the three queries
            return self._status(cohort_id, config_key)

    def _status(self, cohort_id: str, config_key: str | None) -> pd.DataFrame:
        config_key = config_key or self.latest_config(cohort_id) or ""
        runs = self.runs(cohort_id)
        run_id = "" if runs.empty else str(runs.iloc[0]["run_id"])
        return self._df("""
            SELECT s.subject_id, s.has_images,
                   r.seg_key IS NOT NULL AS segmented,
                   fs.feature_key IS NOT NULL AS features,
                   seg.backend, seg.seconds AS segment_seconds, fs.seconds AS feature_seconds,
                   fs.n_missing AS missing_features,
                   CASE WHEN seg.warnings IS NULL OR seg.warnings = '[]' THEN NULL
                        ELSE seg.warnings END AS input_warnings,
                   e.stage AS error_stage, e.message AS error
            FROM subjects s
            LEFT JOIN subject_results r ON r.cohort_id = s.cohort_id
                 AND r.subject_id = s.subject_id AND r.config_key = ?
            LEFT JOIN segmentations seg ON seg.seg_key = r.seg_key
            LEFT JOIN feature_sets fs ON fs.feature_key = r.feature_key
            LEFT JOIN (SELECT subject_id, first(stage) AS stage,
                              string_agg(CASE WHEN scan_id IS NULL THEN message
                                         ELSE 'scan ' || scan_id || ': ' || message END,
                                         ' | ') AS message
                       FROM subject_errors WHERE cohort_id = ? AND run_id = ?
                       GROUP BY subject_id) e ON e.subject_id = s.subject_id
            WHERE s.cohort_id = ? ORDER BY s.subject_id""",
                        [config_key, cohort_id, run_id, cohort_id])

