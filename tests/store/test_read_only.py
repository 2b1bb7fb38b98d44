"""A store in a read-only folder is viewed and exported, not written (issue 19 point 10).

The store always opened read-write to check its schema, so ``status``, ``export`` and the
dashboard failed with "Read-only file system". The test mounts the data folder read-only (a bind
mount inside a private mount namespace, ``unshare -m``; skipped where that is not allowed) and
runs the CLI and the dashboard there, as a user with an archived, read-only cohort would.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cohorts import tiny_cohort

REPO = Path(__file__).resolve().parents[2]


def _can_mount_read_only(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {tmp} {tmp} && "
                            f"mount -o remount,ro,bind {tmp} && ! touch {tmp}/x"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def in_read_only(folder: Path, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` (shell) with ``folder`` mounted read-only, in a private mount namespace."""
    script = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && "
              f"cd {REPO} && {command}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("ro_data")
    if not _can_mount_read_only(tmp_path_factory.mktemp("probe")):
        pytest.skip("cannot bind-mount a folder read-only here (needs root or user namespaces)")
    csv = tiny_cohort(data / "cohort", n=3, shape=(32, 32, 24), seed=5)
    proc = subprocess.run([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data),
                           "process", "--csv", str(csv), "--workers", "1", "--no-location"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data


def test_status_and_export_work_and_process_is_refused_clearly(processed, tmp_path):
    py = f"{sys.executable} -m gliocore --data-dir {processed}"
    status = in_read_only(processed, f"{py} status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "P" in status.stdout or "DEMO" in status.stdout or "S" in status.stdout
    out = tmp_path / "features.csv"
    export = in_read_only(processed, f"{py} export {out}")
    assert export.returncode == 0, export.stdout + export.stderr
    assert out.exists() and len(out.read_text().splitlines()) == 4  # header + 3 subjects
    csv = next(processed.glob("cohort/**/clinical.csv"))
    again = in_read_only(processed, f"{py} process --csv {csv} --no-location")
    assert again.returncode == 2, again.stdout + again.stderr
    assert "read-only" in again.stderr and "Traceback" not in again.stderr


def test_the_dashboard_reads_a_read_only_store(processed):
    script = ("from streamlit.testing.v1 import AppTest; "
              "at = AppTest.from_file('app.py', default_timeout=120).run(); "
              "assert not at.exception, at.exception; "
              "at.switch_page('pages/features.py').run(); "
              "assert not at.exception, at.exception; "
              "assert not at.error, [e.value for e in at.error]; "
              "print('subjects:', [c.value for c in at.caption if 'subjects' in c.value][:1])")
    env = f"GLIOSCOPE_DATA={processed} GLIOSCOPE_DB={processed}/gliocore.duckdb"
    proc = in_read_only(processed, f"{env} {sys.executable} -c \"{script}\"")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 of 3 subjects" in proc.stdout, proc.stdout


@pytest.mark.parametrize("content", [b"DUCK" * 3000, bytes(range(256)) * 16])
def test_a_corrupt_store_is_reported_as_corrupt_not_as_in_use(tmp_path, content):
    """Issue 19 point 12: the text "block" contains "lock", so a corrupt file ("... in block at
    location 0") was reported as a store in use by another process."""
    from gliocore.errors import StoreError
    from gliocore.store import Store
    from gliocore.store.database import is_busy_error

    db = tmp_path / "gliocore.duckdb"
    db.write_bytes(content)
    with pytest.raises(StoreError, match="corrupt") as exc:
        Store(db, lock_timeout=1)
    assert not is_busy_error(exc.value.__cause__)
    assert is_busy_error(RuntimeError('IO Error: Could not set lock on file "x.duckdb": '
                                      "Conflicting lock is held"))
    proc = subprocess.run([sys.executable, "-m", "gliocore", "--db", str(db), "status"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr
