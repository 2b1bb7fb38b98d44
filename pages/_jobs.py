"""Long dashboard work off the script thread: one background job per store, owned by the server.

A click on *Process cohort*, *Upload and load cohort*, *Load cohort* or the demo button starts a
:class:`Job` in a daemon thread of the Streamlit server process, not in the session's script run.
So the click returns at once, other sessions are never held by it, and leaving the page (which
stops the session's script run) does not stop the work: it runs to the end and every page shows
its progress in the sidebar (:func:`status_line`). At most one job runs per store (the store
takes one writer; the CLI's run lock also keeps a CLI run and a dashboard run apart); a second
click while one runs is refused with what is running. A job ends *finished* or *failed* with a
message (type and message of the error; the traceback goes to the server's log only).

A server restart kills the thread; the store then holds the run as ``running`` (or
``interrupted``), which the Cohort page reports with a Resume button.

No Streamlit import: the job thread must never call ``st.*`` (it has no script context).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOG = logging.getLogger("glioscope")

#: Errors a job reports as its message (others too, by type and message, and logged in full).
EXPECTED = (ValueError, OSError)


class JobBusy(RuntimeError):
    """Another job already runs on this store."""


@dataclass
class Job:
    """One piece of background work and its progress (written by the job thread only)."""

    store_key: str
    kind: str  # "process", "upload", "load", "demo"
    label: str  # e.g. "Processing cohort demo"
    stages: tuple[str, ...] = ()
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | finished | failed
    stage: str = "starting"
    done: int = 0
    total: int = 0
    subject: str | None = None
    message: str | None = None  # the summary when finished, the error when failed
    cohort_id: str | None = None  # the cohort the job loaded or processed
    ended: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def progress(self, stage: str, done: int, total: int, subject: str | None = None) -> None:
        """The pipeline's progress callback ``(stage, done, total, subject)``."""
        self.stage, self.done, self.total, self.subject = stage, int(done), int(total), subject

    def fraction(self) -> float:
        """Overall progress in [0, 1], the stages weighted equally."""
        i = self.stages.index(self.stage) if self.stage in self.stages else 0
        part = self.done / self.total if self.total else 0.0
        return min(max((i + part) / max(len(self.stages), 1), 0.0), 1.0)

    def line(self) -> str:
        """One line: what runs, the stage with its counts, and for how long."""
        count = f": {self.done}/{self.total}" if self.total else ""
        who = f" — {self.subject}" if self.subject else ""
        return f"{self.label} · {self.stage}{count}{who} · {time.time() - self.started:.0f} s"


class Jobs:
    """The server's jobs, one slot per store (the latest job, running or ended)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}

    def current(self, store_key: str) -> Job | None:
        """The store's running job, or the last one that ended (None before any)."""
        with self._lock:
            return self._latest.get(store_key)

    def running(self, store_key: str) -> Job | None:
        job = self.current(store_key)
        return job if job is not None and job.running else None

    def start(self, job: Job, work: Callable[[Job], Any]) -> Job:
        """Run ``work(job)`` in a daemon thread; its return value (a str) is the job's message.

        Raises
        ------
        JobBusy
            When a job already runs on ``job.store_key``.
        """
        with self._lock:
            busy = self._latest.get(job.store_key)
            if busy is not None and busy.running:
                raise JobBusy(f"{busy.label} is still running on this store ({busy.stage}); "
                              "wait for it to finish (its progress is in the sidebar)")
            self._latest[job.store_key] = job
            thread = threading.Thread(target=self._run, args=(job, work), daemon=True,
                                      name=f"glioscope-{job.kind}-{job.job_id}")
            self._threads[job.store_key] = thread
        thread.start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], Any]) -> None:
        try:
            result = work(job)
            job.message = result if isinstance(result, str) else job.message
            job.state = "finished"
        except Exception as exc:  # shown as type and message; the traceback stays in the log
            if not isinstance(exc, EXPECTED) and type(exc).__module__.split(".")[0] != "gliocore":
                LOG.exception("background job %s failed", job.label)
            job.message = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
        finally:
            job.ended = time.time()

    def wait(self, store_key: str, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for the store's job to end; True when none runs."""
        with self._lock:
            thread = self._threads.get(store_key)
        if thread is not None:
            thread.join(timeout)
        return self.running(store_key) is None


#: The server's jobs (module state: one per Streamlit server process, shared by its sessions).
JOBS = Jobs()
