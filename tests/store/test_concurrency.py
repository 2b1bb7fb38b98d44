"""Concurrent use of one store: the dashboard keeps answering while a CLI run writes; two runs
take turns (the second refuses, or waits), never corrupting each other's results.

The writer is a real ``python -m gliocore process --workers 2`` subprocess, as in production.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gliocore.cohort import synth
from gliocore.cohort.loading import load_cohort
from gliocore.errors import StoreBusyError
from gliocore.analysis.export import seed_table
from gliocore.store.locking import RunLock
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.plan import register_cohort
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

REPO = Path(__file__).resolve().parents[2]
#: While a 2-worker CLI run writes the same store, a dashboard read (cohorts, status, the seed
#: table) waits for the file (connecting included) at most WAIT_BOUND_S, WAIT_MEDIAN_BOUND_S in
#: the median (before: 0.5 s median, 4.1 s worst). The whole read's time is printed, not bounded:
#: beyond the wait it is CPU time, which a loaded CI machine stretches at will.
WAIT_BOUND_S = 1.5
WAIT_MEDIAN_BOUND_S = 0.5


@pytest.fixture(scope="module")
def cohort_src(tmp_path_factory) -> Path:
    return Path(synth.make_tiny_cohort(tmp_path_factory.mktemp("conc"), n=8, shape=(48, 48, 32),
                                       seed=11))


def cli_run(csv: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "gliocore", "--db", str(db), "-q", "process",
                             "--csv", str(csv), "--root", str(csv.parent), "--name", "conc",
                             "--workers", "2", "--no-location", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_lock_holder(db: Path, pid: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while RunLock(db).holder().get("pid") != pid:
        assert time.monotonic() < deadline, "the CLI run never took the run lock"
        time.sleep(0.05)


@pytest.mark.slow
def test_dashboard_reads_answer_within_the_bound_while_a_cli_run_writes(cohort_src, tmp_path):
    db = tmp_path / "g.duckdb"
    store = Store(db, lock_timeout=30.0)
    cohort = load_cohort(cohort_src, cohort_src.parent, name="conc")
    cid = register_cohort(store, cohort)
    proc = cli_run(cohort_src, db)
    wait_for_lock_holder(db, proc.pid)
    latencies: list[float] = []
    waits: list[float] = []
    while proc.poll() is None:
        for read in (store.cohorts, lambda: store.status(cid), lambda: seed_table(store, cid)):
            t0 = time.perf_counter()
            read()  # each of these uses one connection: last_read_wait is its wait
            latencies.append(time.perf_counter() - t0)
            waits.append(store.last_read_wait)
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    med, worst = statistics.median(latencies), max(latencies)
    p95 = sorted(latencies)[int(0.95 * len(latencies))]
    print(f"\n{len(latencies)} reads during a 2-worker run: median {med * 1000:.0f} ms, p95 "
          f"{p95 * 1000:.0f} ms, worst {worst * 1000:.0f} ms; waiting for the file (connect "
          f"included): median {statistics.median(waits) * 1000:.0f} ms, worst "
          f"{max(waits) * 1000:.0f} ms (bounds {WAIT_BOUND_S * 1000:.0f} ms worst, "
          f"{WAIT_MEDIAN_BOUND_S * 1000:.0f} ms median; machine shared)")
    assert len(latencies) >= 20
    assert max(waits) < WAIT_BOUND_S and statistics.median(waits) < WAIT_MEDIAN_BOUND_S
    assert len(seed_table(store, cid)) == 8  # and the run's results are all there


@pytest.mark.slow
def test_a_second_run_refuses_or_waits_and_nothing_is_corrupted(cohort_src, tmp_path):
    db = tmp_path / "g.duckdb"
    Store(db)
    first = cli_run(cohort_src, db)
    wait_for_lock_holder(db, first.pid)
    cohort = load_cohort(cohort_src, cohort_src.parent, name="conc")
    # in-process (the dashboard's Process button): refused at once, naming the holder
    with pytest.raises(StoreBusyError, match=rf"another processing run is using the store .*\(pid {first.pid} on "):
        process_cohort(cohort, Store(db), ProcessingConfig(workers=1))
    # a second CLI run: refused with the message and exit code 75, nothing written
    second = cli_run(cohort_src, db)
    _out, err = second.communicate(timeout=600)
    assert second.returncode == 75 and "another processing run is using the store" in err
    # queued behind the first (--wait): runs when the first has finished, from the cache
    third = cli_run(cohort_src, db, "--wait", "1500")
    out1, err1 = first.communicate(timeout=1500)
    assert first.returncode == 0, err1
    out3, err3 = third.communicate(timeout=1600)
    assert third.returncode == 0, err3
    assert "0 computed, 8 from cache" in out3
    store = Store(db)
    cid = store.cohorts()["cohort_id"].iloc[0]
    runs = store.runs(cid)
    assert sorted(runs["status"]) == ["finished", "finished"]  # the refused run left no row
    # the results equal an undisturbed run's (same command) into a fresh store
    alone = tmp_path / "alone.duckdb"
    solo = cli_run(cohort_src, alone)
    _out, err_solo = solo.communicate(timeout=1500)
    assert solo.returncode == 0, err_solo
    a = seed_table(store, cid).sort_values("SUBJECT ID").reset_index(drop=True)
    b = seed_table(Store(alone), cid).sort_values("SUBJECT ID").reset_index(drop=True)
    assert a.equals(b)


def test_run_lock_released_when_the_holder_dies(tmp_path):
    db = tmp_path / "g.duckdb"
    code = ("import sys, time; from gliocore.store.locking import RunLock; "
            f"RunLock({str(db)!r}).acquire('test'); print('held', flush=True); time.sleep(60)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):
            RunLock(db).acquire("second", wait=0.3)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    lock = RunLock(db)
    lock.acquire("after the holder died", wait=5)
    assert lock.held and lock.holder()["what"] == "after the holder died"
    lock.release()
