"""Executors: the Dask executor gives the local executor's results; local workers die with
their driver."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from gliocore.cohort import synth
from gliocore.cohort.loading import load_cohort
from gliocore.pipeline.executor import DaskExecutor, LocalExecutor, make_executor
from gliocore.analysis.export import seed_table
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

N = 3
SHAPE = (40, 40, 28)


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory) -> Path:
    out = Path(synth.make_tiny_cohort(tmp_path_factory.mktemp("tiny"), n=N, shape=SHAPE, seed=5))
    return out if out.suffix == ".csv" else out / "clinical.csv"


def _run(csv: Path, tmp: Path, name: str, executor=None, **kw):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(tmp / f"{name}.duckdb")
    summary = process_cohort(cohort, store, ProcessingConfig(output_dir=tmp / name, **kw),
                             executor=executor)
    return summary, seed_table(store, summary.cohort_id)


def test_dask_local_cluster_gives_the_local_executors_results(cohort_csv, tmp_path):
    distributed = pytest.importorskip("distributed")
    local, local_table = _run(cohort_csv, tmp_path, "local", workers=1)
    seen = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        cohort = load_cohort(cohort_csv, cohort_csv.parent, name="tiny")
        store = Store(tmp_path / "dask.duckdb")
        summary = process_cohort(cohort, store, ProcessingConfig(output_dir=tmp_path / "dask"),
                                 executor=DaskExecutor(client),
                                 progress=lambda st, d, t, s: seen.append((st, d, t)))
        dask_table = seed_table(store, summary.cohort_id)
        # a re-run through the cluster finds everything cached
        again = process_cohort(cohort, store, ProcessingConfig(output_dir=tmp_path / "dask"),
                               executor=DaskExecutor(client))
    assert not summary.errors, summary.describe()
    assert sorted(summary.computed) == sorted(local.computed) and len(summary.computed) == N
    assert not again.computed and len(again.cached) == N
    pd.testing.assert_frame_equal(dask_table, local_table)
    assert ("features", N, N) in seen and ("segment", N, N) in seen  # progress as locally


def test_make_executor_names():
    assert isinstance(make_executor("local", 2), LocalExecutor)
    with pytest.raises(ValueError, match="scheduler address"):
        make_executor("dask")
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("spark")


def _square(x: int) -> int:
    return x * x


def test_local_executor_runs_tasks_in_worker_processes():
    got = dict(LocalExecutor(2).map_unordered(_square, [1, 2, 3]))
    assert got == {1: 1, 2: 4, 3: 9}


def _square_but_kill_the_worker_once(x: int, marker: str) -> int:
    """Kills its worker process the first time it sees 2 (as an out-of-memory kill would)."""
    if x == 2 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return x * x


@pytest.mark.slow
def test_dask_reschedules_a_killed_workers_task_elsewhere(tmp_path):
    distributed = pytest.importorskip("distributed")
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not on workers' path
    marker = tmp_path / "died"
    fn = functools.partial(_square_but_kill_the_worker_once, marker=str(marker))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = dict(DaskExecutor(client).map_unordered(fn, [1, 2, 3]))
    assert marker.exists(), "the worker was never killed"
    assert got == {1: 1, 2: 4, 3: 9}
