"""The Dask path as a user takes it (issue 18, point 13): real ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1, the CLI pointed at them, the export equal to the local
executor's, one worker killed mid-run, and a re-run that resumes from the cache.

The processes are started by the test on random free ports with bounded timeouts and are always
killed in teardown (by their own process ids).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gliocore.cohort import synth

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
N = 6
SHAPE = (40, 40, 28)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    # the workers must import this checkout's gliocore (the README: same environment on workers)
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture()
def cluster(tmp_path):
    """``dask scheduler`` + ``dask worker ADDRESS --nworkers 2 --nthreads 1``; yields the address."""
    if DASK is None:
        pytest.skip("the dask command is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for args in ([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--dashboard-address", ":0"],
                     [DASK, "worker", address, "--nworkers", "2", "--nthreads", "1",
                      "--host", "127.0.0.1", "--no-dashboard"]):
            log = open(tmp_path / f"{args[1]}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            if args[1] == "scheduler":
                _wait_for_port(port, procs[0], tmp_path / "scheduler.log")
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"scheduler did not listen within {timeout} s: {log.read_text()}")


def cli(data: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data), *args],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def cli_async(data: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data), *args],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_a_busy_worker(address: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """SIGKILL the worker process that runs one of GlioScope's tasks; False if none ran."""
    with distributed.Client(address, timeout="30s", set_as_default=False) as client:
        pids = client.run(os.getpid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for worker, keys in client.processing().items():
                if any(str(k).startswith("glioscope-") for k in keys):
                    os.kill(pids[worker], signal.SIGKILL)
                    return True
            time.sleep(0.05)
    return False


def test_cli_against_a_real_scheduler_and_workers(cluster, tmp_path):
    out = Path(synth.make_tiny_cohort(tmp_path / "cohort", n=N, shape=SHAPE, seed=5))
    csv = out if out.suffix == ".csv" else out / "clinical.csv"
    common = ["--csv", str(csv), "--root", str(csv.parent), "--name", "tiny", "--no-location"]

    local = cli(tmp_path / "local", "process", *common, "--workers", "1",
                "--output-dir", str(tmp_path / "local" / "seg"))
    assert local.returncode == 0, local.stdout + local.stderr

    data = tmp_path / "dask"
    run = cli_async(data, "process", *common, "--executor", "dask", "--scheduler", cluster,
                    "--output-dir", str(data / "seg"))
    try:
        killed = _kill_a_busy_worker(cluster, run)
        text, _ = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, text
    assert "No clients found" not in text
    assert killed, "no GlioScope task was seen running on a worker"
    assert f"{N} scans" in text or f"{N} subjects" in text, text

    again = cli(data, "process", *common, "--executor", "dask", "--scheduler", cluster,
                "--output-dir", str(data / "seg"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 computed" in again.stdout and f"{N} from cache" in again.stdout, again.stdout

    for where in (tmp_path / "local", data):
        exp = cli(where, "export", str(where / "features.csv"))
        assert exp.returncode == 0, exp.stdout + exp.stderr
    assert (data / "features.csv").read_text() == (tmp_path / "local" / "features.csv").read_text()
