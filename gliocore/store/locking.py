"""Sharing one store between processes: the run lock and readers' turn.

DuckDB lets one process at a time open a database file for writing (and no reader while it
does). GlioScope keeps connections short, and adds two things on top, both files beside the
store:

* :class:`RunLock` (``<store>.run.lock``): at most one processing run per store. A second run
  waits (``wait`` seconds) or is refused with a :class:`~gliocore.errors.StoreBusyError` that
  says who holds it (pid, host, cohort, since when). It is an ``flock``, released by the
  operating system when the holder exits or is killed, so it never goes stale.
* :class:`ReaderTurns` (``<store>.readers/``): a reader (the dashboard) that finds the file
  locked announces itself with a small file there; a writer about to open the store waits
  while announcements are present (at most :data:`WRITER_YIELD_MAX_S`), so a reader gets the
  file after the writer's current short transaction instead of racing it indefinitely.
  Announcements older than :data:`STALE_ANNOUNCEMENT_S` (a reader that died) are ignored.
* Snapshots (``<store>.snapshot``): once a reader has found the store locked, writers copy the
  store after each commit (for :data:`SNAPSHOT_WINDOW_S`), and a reader that finds the store
  locked reads the snapshot instead of waiting — the data of the last commit, never torn.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gliocore.errors import StoreBusyError

try:  # POSIX; on other systems the run lock is a no-op (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: A writer waits at most this long for announced readers before it opens the store anyway.
WRITER_YIELD_MAX_S = 2.0
#: A reader's announcement older than this is ignored (the reader died without removing it).
STALE_ANNOUNCEMENT_S = 30.0
#: After a reader found the store locked, writers publish a read-only snapshot after each
#: commit for this long (so that the next reads need not wait at all).
SNAPSHOT_WINDOW_S = 300.0
CONTENDED_MARK = ".contended"


class RunLock:
    """An exclusive, process-lifetime lock on a store for one processing run.

    Parameters
    ----------
    store_path : path
        The DuckDB file; the lock is ``<store_path>.run.lock``.
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.path = Path(f"{store_path}.run.lock")
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the current (or last) holder wrote: pid, host, what, since."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, what: str, wait: float = 0.0, poll: float = 0.2) -> None:
        """Take the lock, waiting up to ``wait`` seconds.

        Raises
        ------
        StoreBusyError
            When another run holds it after ``wait`` seconds; the message names the holder.
        """
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    h = self.holder()
                    who = (f"pid {h.get('pid')} on {h.get('host')}, {h.get('what')}, since "
                           f"{h.get('since')}") if h else "another process"
                    raise StoreBusyError(
                        f"another processing run is using the store {str(self.path)[:-9]} "
                        f"({who}); wait for it to finish and run again (or pass --wait SECONDS "
                        "to queue behind it). Runs on one store take turns so that neither "
                        "corrupts the other's results") from None
                time.sleep(poll)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def in_use(self) -> bool:
        """Whether some run (in any process, this one included) holds the lock now; probes
        without keeping it. False on systems without ``flock``."""
        if fcntl is None or not self.path.exists():
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


class ReaderTurns:
    """Readers announce that they wait for the store; writers let them go first (bounded).

    Parameters
    ----------
    store_path : path
        The DuckDB file; announcements go to ``<store_path>.readers/``.
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.folder = Path(f"{store_path}.readers")

    def announce(self) -> Path | None:
        """Leave an announcement; returns its path (remove it with :meth:`withdraw`)."""
        try:
            self.folder.mkdir(exist_ok=True)
            p = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            p.touch()
            return p
        except OSError:  # a read-only data folder: readers simply race as before
            return None

    @staticmethod
    def withdraw(announcement: Path | None) -> None:
        if announcement is not None:
            try:
                announcement.unlink()
            except OSError:
                pass

    def waiting(self) -> bool:
        """Whether a (live) reader is waiting."""
        try:
            entries = [e for e in os.scandir(self.folder) if e.name != CONTENDED_MARK]
        except OSError:
            return False
        now = time.time()
        for e in entries:
            try:
                if now - e.stat().st_mtime < STALE_ANNOUNCEMENT_S:
                    return True
            except OSError:
                continue
        return False

    def mark_contended(self) -> None:
        """Record that a reader found the store locked (writers then publish snapshots)."""
        try:
            self.folder.mkdir(exist_ok=True)
            (self.folder / CONTENDED_MARK).touch()
        except OSError:
            pass

    def contended_recently(self, window: float = SNAPSHOT_WINDOW_S) -> bool:
        """Whether a reader found the store locked within the last ``window`` seconds."""
        try:
            return time.time() - (self.folder / CONTENDED_MARK).stat().st_mtime < window
        except OSError:
            return False

    def let_readers_in(self, poll: float = 0.005) -> None:
        """Called by a writer before it opens the store: wait while readers are announced."""
        deadline = time.monotonic() + WRITER_YIELD_MAX_S
        while self.waiting() and time.monotonic() < deadline:
            time.sleep(poll)
