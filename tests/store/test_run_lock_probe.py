"""``RunLock.in_use``: whether a run holds the store, probed without keeping the lock (the
dashboard's "the latest run stopped before the end" note relies on it; issue 19.11)."""
from __future__ import annotations

import subprocess
import sys

from gliocore.store.locking import RunLock


def test_in_use_follows_the_holder_and_leaves_the_lock_free(tmp_path):
    db = tmp_path / "s.duckdb"
    probe = RunLock(db)
    assert not probe.in_use()  # no lock file yet
    holder = RunLock(db)
    holder.acquire("test")
    assert probe.in_use()
    holder.release()
    assert not probe.in_use()
    other = RunLock(db)
    other.acquire("after the probes")  # probing did not keep it
    other.release()


def test_a_dead_holder_leaves_it_free(tmp_path):
    db = tmp_path / "s.duckdb"
    code = ("import sys; from gliocore.store.locking import RunLock; "
            f"RunLock({str(db)!r}).acquire('dies'); sys.exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert RunLock(db).path.exists()
    assert not RunLock(db).in_use()
