"""The DuckDB store: the schema (in this one module) and every query, parameterised.

Everything GlioScope computes is cached here, keyed by content:

* an image's SHA-256 (looked up by path, size and mtime, so unchanged files are not re-hashed);
* ``seg_key`` = hash(input images' hashes + the backend's cache token: name, version, weights
  checksum, options, label map [+ the imported mask's hash]);
* ``feature_key`` = hash(segmentation mask hash + input hashes + radiomics params fingerprint).

Results of one subject are written in one transaction when the subject is done, so a crash
loses at most the subjects in flight and a re-run resumes. Connections are short-lived so
that the CLI and the dashboard can take turns on one file: reads are read-only and go first
(see :meth:`Store.read`), and one processing run at a time holds the store
(:class:`gliocore.store.locking.RunLock`).
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import pandas as pd

from gliocore.store.cohorts import CohortsMixin
from gliocore.store.images import ImageRecord, ImagesMixin
from gliocore.store.location import LocationMixin
from gliocore.store.locking import ReaderTurns, RunLock
from gliocore.store.qc import QCMixin
from gliocore.store.results import ResultsMixin, SegmentationRecord
from gliocore.store.runs import RunsMixin
from gliocore.store.schema import (DATA_MIGRATIONS, MIGRATIONS, SCHEMA, SCHEMA_VERSION,
                                   ensure_schema, schema_problems)
from gliocore.errors import StoreError, StoreReadOnlyError
from gliocore.types import PathType

__all__ = ["DATA_MIGRATIONS", "ImageRecord", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION",
           "SNAPSHOT_MAX_LAG_S", "SegmentationRecord", "Store", "ensure_schema"]

#: A reader uses the writer's snapshot only when it is at most this much older than the store.
SNAPSHOT_MAX_LAG_S = 30.0


class Store(CohortsMixin, ImagesMixin, ResultsMixin, QCMixin, LocationMixin, RunsMixin):
    """A GlioScope DuckDB file.

    Parameters
    ----------
    path : path
        The ``.duckdb`` file (created with its schema if absent).
    lock_timeout : float
        Seconds to keep retrying when another process holds the file.

    The queries live in one mixin per table family (:mod:`gliocore.store.cohorts`, ``images``,
    ``results``, ``qc``, ``location``, ``runs``); this class holds the connections.
    """

    def __init__(self, path: PathType, lock_timeout: float = 30.0,
                 run_wait: float = 0.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.run_wait = run_wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._readers = ReaderTurns(self.path)
        self._run_locks: dict[str, RunLock] = {}
        self._local = threading.local()
        self.last_read_wait = 0.0
        self.read_only = self.path.exists() and not _writable(self.path)
        if self.read_only:
            self._check_read_only_schema()
            return
        try:
            with self.connect() as con:
                ensure_schema(con)
        except duckdb.Error as exc:
            if is_busy_error(exc):
                raise
            raise StoreError(f"the store {self.path} cannot be opened ({exc}); it is not a "
                             "GlioScope store or it is corrupt: restore it from a backup, or move "
                             "it away to start a new one (results are then recomputed)") from exc

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise StoreReadOnlyError(f"the store {self.path} is read-only (its file or folder "
                                     "cannot be written): it can be viewed and exported, not "
                                     "processed into")

    def _check_read_only_schema(self) -> None:
        """A store whose file or folder cannot be written (a read-only mount, an archive copy)
        is served for reading; it must not need a schema change."""
        with self.read() as con:
            problems = schema_problems(con)
        if problems:
            raise StoreReadOnlyError(
                f"the store {self.path} is read-only and was made by an older GlioScope "
                f"({'; '.join(problems[:3])}); open it once from a writable folder to update it")

    # -- connection -----------------------------------------------------------------------
    # Reads open the file read-only (many readers share it) and poll the lock every few ms;
    # a reader kept waiting announces itself and writers let it in after their current short
    # transaction (gliocore.store.locking.ReaderTurns): a read waits at most about one write
    # transaction, not a whole run. Writers: keep transactions short (one subject / one batch).
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the calls inside (on this thread) share one connection and one transaction.

        Opening a DuckDB file costs tens of milliseconds, so several reads and writes that
        belong together (a batch of results, the start of a run) take one connection, and the
        writes commit together or not at all.
        """
        if getattr(self._local, "con", None) is not None:  # already inside a batch
            yield
            return
        with self.transaction() as con:
            self._local.con = con
            try:
                yield
            finally:
                self._local.con = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-write connection; retried while another process (or, in this
        process, a read-only connection) holds the file; waiting readers go first."""
        shared = getattr(self._local, "con", None)
        if shared is not None:  # inside batch(): its connection
            yield shared
            return
        self._refuse_if_read_only()
        deadline = time.monotonic() + self.lock_timeout
        while True:
            self._readers.let_readers_in()
            try:
                con = duckdb.connect(str(self.path))
                break
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Serve every read of this thread inside the block from one read-only connection
        (a page's several queries cost one connection, ~10-80 ms each, not one per query)."""
        if getattr(self._local, "con", None) is not None or \
                getattr(self._local, "read_con", None) is not None:
            yield  # inside batch() or reading() already
            return
        with self.read() as con:
            self._local.read_con = con
            try:
                yield
            finally:
                self._local.read_con = None

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection (see the comment above :meth:`connect`).

        Inside a process that has a read-write connection open (the dashboard processing a
        cohort), reads share that connection's database instead. ``last_read_wait`` says how
        long the last read waited for the file (seconds; 0 when it was free).
        """
        held = getattr(self._local, "con", None)
        if held is None:
            held = getattr(self._local, "read_con", None)
        if held is not None:  # inside batch() (its read-write connection) or reading()
            yield held
            return
        t_start = time.perf_counter()
        deadline = time.monotonic() + self.lock_timeout
        announced: Path | None = None
        try:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=True)
                    break
                except duckdb.ConnectionException as exc:  # this process has it open read-write
                    if "different configuration" not in str(exc):
                        raise
                    try:
                        con = duckdb.connect(str(self.path))
                        break
                    except (duckdb.IOException, duckdb.ConnectionException) as exc2:
                        if not _busy(exc2) or time.monotonic() > deadline:
                            raise
                except duckdb.IOException as exc:
                    if not _busy(exc) or time.monotonic() > deadline:
                        raise
                    snap = self._fresh_snapshot()  # a writer has the file: read its last commit
                    if snap is not None:
                        try:
                            con = duckdb.connect(str(snap), read_only=True)
                            break
                        except duckdb.Error:
                            pass
                if announced is None:
                    self._readers.mark_contended()
                    announced = self._readers.announce()
                time.sleep(0.005)
        finally:
            ReaderTurns.withdraw(announced)
        self.last_read_wait = time.perf_counter() - t_start
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT (ROLLBACK on error); inside :meth:`batch`, its
        connection and transaction. Publishes a snapshot for readers after the commit when
        readers have recently found the store locked."""
        shared = getattr(self._local, "con", None)
        if shared is not None:
            yield shared
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            if self._readers.contended_recently():
                self._publish_snapshot(con)

    @property
    def snapshot_path(self) -> Path:
        """A read-only copy of the store as of a recent commit (see :mod:`gliocore.store.locking`)."""
        return Path(f"{self.path}.snapshot")

    def _publish_snapshot(self, con: duckdb.DuckDBPyConnection) -> None:
        """Checkpoint, then copy the file while still holding it (a consistent copy) and put
        the copy in place atomically. Never fails the write that triggered it."""
        tmp = self.path.with_name(f".{self.path.name}.snapshot.{os.getpid()}.tmp")
        try:
            con.execute("CHECKPOINT")
            shutil.copyfile(self.path, tmp)
            os.replace(tmp, self.snapshot_path)
        except (duckdb.Error, OSError):
            tmp.unlink(missing_ok=True)

    def _fresh_snapshot(self) -> Path | None:
        """The snapshot, if it is at most :data:`SNAPSHOT_MAX_LAG_S` older than the store."""
        try:
            snap = self.snapshot_path.stat().st_mtime
            main = self.path.stat().st_mtime
        except OSError:
            return None
        return self.snapshot_path if snap >= main - SNAPSHOT_MAX_LAG_S else None

    def _df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.read() as con:
            return con.execute(sql, list(params)).df()


def _writable(path: Path) -> bool:
    """Whether DuckDB can write ``path`` (the file and, for its WAL, the folder)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


_LOCK_WORD = re.compile(r"\block\b")


def is_busy_error(exc: Exception) -> bool:
    """Whether a DuckDB error means "someone else has the file open" (worth a retry).

    DuckDB says "Could not set lock on file"; a corrupt file's "... in block at location 0"
    is not a lock (the word, not the letters, decides).
    """
    text = str(exc).lower()
    return bool(_LOCK_WORD.search(text)) or "different configuration" in text


_busy = is_busy_error
