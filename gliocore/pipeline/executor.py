"""Executors: where the per-subject work runs.

The pipeline plans the work (what is missing from the cache) and writes results to the store; an
executor only runs a picklable function over a list of tasks and hands results back as they
finish, so that the pipeline's code path is the same whatever runs the work:

* :class:`LocalExecutor` (default): worker processes on this machine (``spawn``), or in-process
  for one worker / one task / a backend that must stay in one process (a GPU model). Worker
  processes stop within seconds when the driver dies, even by SIGKILL: each holds the read end
  of a pipe whose only write end is the driver's (EOF = driver gone), and on Linux also asks the
  kernel for SIGKILL on parent death (``PR_SET_PDEATHSIG``).
* :class:`DaskExecutor`: an existing Dask cluster (``dask scheduler`` + ``dask worker``,
  dask-jobqueue, Kubernetes) given by its scheduler address. Workers read images and write masks
  on storage they share with the driver and return rows; only the driver writes DuckDB. Tasks
  that need a GPU request the ``GPU`` resource, so they run only on workers started with
  ``--resources GPU=1``; a worker that dies has its tasks rescheduled on others by Dask.

Both yield ``(task, result)`` pairs where ``result`` is either the function's return value or the
exception that stopped the task from producing one (a dead worker).
"""
from __future__ import annotations

import abc
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

T = TypeVar("T")

#: The executors :func:`make_executor` knows.
EXECUTORS = ("local", "dask")


class Executor(abc.ABC):
    """Runs a function over tasks and yields ``(task, result_or_exception)`` as they finish."""

    name: str = "executor"

    def runs_in_process(self, n_tasks: int, parallel_safe: bool) -> bool:
        """Whether the tasks run in the calling process (the caller may then pass objects it
        already holds, such as a loaded model, instead of letting each worker load its own)."""
        return False

    @abc.abstractmethod
    def map_unordered(self, fn: Callable[[T], Any], tasks: Sequence[T],
                      resources: Callable[[T], Mapping[str, float] | None] | None = None,
                      parallel_safe: bool = True) -> Iterator[tuple[T, Any]]:
        """Run ``fn(task)`` for every task; yield ``(task, result)`` in completion order.

        Parameters
        ----------
        fn : callable
            Picklable (a module-level function or a ``functools.partial`` of one).
        tasks : sequence
            Picklable task objects.
        resources : callable, optional
            ``resources(task)`` -> abstract resources the task needs (``{"GPU": 1}``), honoured
            by executors that schedule on declared resources (Dask).
        parallel_safe : bool
            False when the work must not run in several processes of this machine at once
            (a model that fills the GPU or the memory); the local executor then runs in-process.

        Yields
        ------
        (task, result)
            ``result`` is ``fn(task)``'s value, or the exception raised when no value could be
            produced (the worker died).
        """

    def describe(self) -> str:
        return self.name


class LocalExecutor(Executor):
    """Processes on this machine (the default).

    Parameters
    ----------
    workers : int
        Worker processes; 1 runs in-process.
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def runs_in_process(self, n_tasks: int, parallel_safe: bool) -> bool:
        return self.workers == 1 or not parallel_safe or n_tasks <= 1

    def map_unordered(self, fn, tasks, resources=None, parallel_safe=True):
        tasks = list(tasks)
        if self.runs_in_process(len(tasks), parallel_safe):
            for task in tasks:
                yield task, fn(task)
            return
        # spawn, not fork: the dashboard calls this from a threaded Streamlit process, and
        # forking a threaded process can deadlock. The pipe's write end stays here only: when
        # this process dies, however, the workers read EOF and exit.
        ctx = multiprocessing.get_context("spawn")
        lifeline_r, lifeline_w = ctx.Pipe(duplex=False)
        try:
            with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                     initializer=init_worker, initargs=(lifeline_r, os.getpid()),
                                     mp_context=ctx) as pool:
                futures = {pool.submit(fn, task): task for task in tasks}
                try:
                    for fut in as_completed(futures):
                        task = futures[fut]
                        try:
                            yield task, fut.result()
                        except Exception as exc:  # the worker died (out of memory, C crash)
                            yield task, exc
                finally:  # the consumer stopped early (an exception, Ctrl-C): drop queued work
                    for fut in futures:
                        fut.cancel()
        finally:
            lifeline_w.close()
            lifeline_r.close()

    def describe(self) -> str:
        return f"local ({self.workers} worker{'s' if self.workers != 1 else ''})"


class DaskExecutor(Executor):
    """A Dask cluster, given by its scheduler address or by a connected ``distributed.Client``.

    Parameters
    ----------
    scheduler : str or distributed.Client
        ``tcp://HOST:PORT`` of a running scheduler, or a client (tests: a ``LocalCluster``'s).
    allowed_failures : int
        How often a task may lose its worker before it is reported as failed (Dask reschedules
        it on another worker in between). Set on the scheduler (``distributed.scheduler.
        allowed-failures``); this value is used only for the message.
    """

    name = "dask"

    def __init__(self, scheduler: Any, allowed_failures: int = 3) -> None:
        if not scheduler:
            raise ValueError("the dask executor needs a scheduler address (--scheduler "
                             "tcp://HOST:PORT)")
        self.scheduler = scheduler
        self.allowed_failures = allowed_failures

    def _client(self):
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
            raise RuntimeError("the dask executor needs the 'distributed' package "
                               "(pip install -r requirements.txt)") from exc
        if isinstance(self.scheduler, Client):
            return self.scheduler, False
        return Client(self.scheduler, timeout="30s", set_as_default=False), True

    def map_unordered(self, fn, tasks, resources=None, parallel_safe=True):
        from distributed import as_completed as dask_as_completed
        tasks = list(tasks)
        if not tasks:
            return
        client, owned = self._client()
        try:
            batch = uuid.uuid4().hex[:8]
            futures = {}
            for i, task in enumerate(tasks):
                res = resources(task) if resources else None
                fut = client.submit(run_on_dask_worker, fn, task, key=f"glioscope-{batch}-{i}",
                                    pure=False, resources=dict(res) if res else None)
                futures[fut] = task
            try:
                # the client is not the process's default (set_as_default=False, so that a
                # dashboard's or caller's own client is left alone): as_completed must be given
                # its loop, or it looks for a default client and finds none
                for fut in dask_as_completed(list(futures), loop=client.loop):
                    task = futures[fut]
                    try:
                        yield task, fut.result()
                    except Exception as exc:  # KilledWorker after repeated worker deaths
                        yield task, exc
                    fut.release()
            finally:
                client.cancel([f for f in futures if not f.done()])
        finally:
            if owned:
                client.close()

    def describe(self) -> str:
        return f"dask ({self.scheduler if isinstance(self.scheduler, str) else 'client'})"


def make_executor(name: str = "local", workers: int = 1, scheduler: Any = None) -> Executor:
    """The executor called ``name`` (``local`` or ``dask``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "dask":
        return DaskExecutor(scheduler)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


# -- worker side -------------------------------------------------------------------------------
_THREADS_LIMITED = False
_LIMIT_LOCK = threading.Lock()


def limit_threads() -> None:
    """One compute thread per worker: N processes x M threads on N cores only thrash."""
    global _THREADS_LIMITED
    with _LIMIT_LOCK:
        if _THREADS_LIMITED:
            return
        _THREADS_LIMITED = True
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


def init_worker(lifeline: Any = None, parent_pid: int | None = None) -> None:
    """Initialiser of local worker processes: limit threads and die with the driver.

    Parameters
    ----------
    lifeline : multiprocessing connection, optional
        Read end of a pipe whose write end only the driver holds; EOF means the driver is gone.
    parent_pid : int, optional
        The driver's PID, to catch a driver that died before this worker started.
    """
    limit_threads()
    _die_with_parent(parent_pid)
    if lifeline is not None:
        threading.Thread(target=_watch_lifeline, args=(lifeline,), name="glioscope-lifeline",
                         daemon=True).start()


def _die_with_parent(parent_pid: int | None) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - the lifeline pipe still covers it
            pass
    if parent_pid is not None and os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)


def _watch_lifeline(conn: Any) -> None:
    try:
        while True:
            conn.recv()  # the driver never sends; this returns only by EOF/error
    except BaseException:
        pass
    os._exit(1)


def run_on_dask_worker(fn: Callable[[T], Any], task: T) -> Any:
    """What a Dask worker runs: ``fn(task)`` with the worker's threads limited once."""
    limit_threads()
    return fn(task)
