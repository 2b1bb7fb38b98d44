"""Long work off the script thread (issue 19, points 1 and 11) and what "Load a cohort" may read
and say (point 7), with AppTest sessions.

Processing and unpacking an upload run in a background thread owned by the server
(:mod:`pages._jobs`), not in the session's script run: the click returns at once with a progress
line, other sessions and other pages keep working, and leaving the page does not stop the work.
The slow step is held on a :class:`threading.Event` (a *gate*) so that each test sees the work
while it is still running, without timing anything.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from test_app_pages import _open, build_demo_store, sidebar_widget, texts

GATE_S = 60.0  # a gate left closed by a failing test opens by itself after this


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """The processed demo store of test_app_pages (the same folder: built once a session)."""
    root = tmp_path_factory.getbasetemp() / "glioscope_demo_store"
    root.mkdir(exist_ok=True)
    return build_demo_store(root)


@pytest.fixture
def unprocessed(demo_store, tmp_path, monkeypatch) -> Path:
    """A fresh store with three of the demo's subjects registered and nothing processed."""
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.plan import register_cohort
    from gliocore.store import Store

    csv = tmp_path / "clinical.csv"
    pd.read_csv(demo_store.parent / "demo" / "clinical.csv").head(3).to_csv(csv, index=False)
    db = tmp_path / "fresh.duckdb"
    register_cohort(Store(db), load_cohort(csv, demo_store.parent / "demo", name="unprocessed"))
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.setenv("GLIOSCOPE_DB", str(db))
    return db


@pytest.fixture
def gate(monkeypatch) -> threading.Event:
    """Hold ``process_cohort`` after its first progress report until the test opens the gate."""
    from gliocore.pipeline import runner

    opened = threading.Event()
    real = runner.process_cohort

    def held(cohort, store, config=None, progress=None, **kw):
        if progress is not None:
            progress("segment", 1, 3, "first")
        opened.wait(GATE_S)
        return real(cohort, store, config, progress=progress, **kw)

    monkeypatch.setattr(runner, "process_cohort", held)
    yield opened
    opened.set()


def wait_for_work(db: Path, timeout: float = 120.0) -> bool:
    """Wait for the store's background work to end; False when there is no background work."""
    try:
        from pages import _jobs
    except ImportError:  # before the work moved off the script thread it ended with the click
        return False
    _jobs.JOBS.wait(str(db), timeout)
    return True


def wait_for_stage(db: Path, stage: str, timeout: float = 60.0) -> None:
    """Wait (bounded) until the store's running job reports ``stage``."""
    import time

    from pages import _jobs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _jobs.JOBS.current(str(db))
        if job is not None and job.stage == stage:
            return
        time.sleep(0.05)
    raise AssertionError(f"the background job never reached {stage!r}")


def latest_run_status(db: Path) -> str:
    from gliocore.store import Store
    store = Store(db)
    cid = store.cohorts()["cohort_id"].iloc[0]
    return str(store.runs(cid)["status"].iloc[0])


def test_processing_runs_in_the_background_and_survives_leaving_the_page(unprocessed, gate):
    """Point 11: the click returns with progress; another page shows it in the sidebar; back on
    the Cohort page the run has finished (not 'interrupted')."""
    at = _open("cohort")
    at.button(key="process").click().run()  # returns while the work is held at the gate
    assert not at.exception, at.exception
    wait_for_stage(unprocessed, "segment and features")
    at.run()
    assert "segment and features: 1/3" in texts(at), texts(at)
    assert at.button(key="process").disabled  # one run per store
    at.switch_page("pages/features.py").run()  # leave the page mid-run
    assert not at.exception, at.exception
    assert any("Processing" in c.value and "1/3" in c.value for c in at.sidebar.caption), \
        [c.value for c in at.sidebar.caption]
    gate.set()
    wait_for_work(unprocessed)
    at.switch_page("pages/cohort.py").run()
    assert not at.exception, at.exception
    assert "Processing finished: 3 subjects: 3 computed" in texts(at), texts(at)
    assert next(m for m in at.metric if m.label == "Segmented").value == "3"
    assert latest_run_status(unprocessed) == "finished"


def test_a_second_session_works_while_one_processes(unprocessed, gate):
    """Point 1 (second half): a session's long work does not hold the others."""
    alice, bob = _open("cohort"), _open("cohort")
    alice.button(key="process").click().run()
    wait_for_stage(unprocessed, "segment and features")
    assert "segment and features: 1/3" in texts(alice.run())
    bob.switch_page("pages/survival.py").run()  # bob's page renders while alice's work runs
    assert not bob.exception, bob.exception
    assert any("Processing" in c.value for c in bob.sidebar.caption)  # and he sees it
    gate.set()
    wait_for_work(unprocessed)
    alice.run()
    assert "Processing finished" in texts(alice)


def test_an_interrupted_run_is_reported_with_resume(unprocessed):
    """Point 11: a run the server did not finish (it restarted) is named, with a Resume button
    that finishes it."""
    from gliocore.store import Store

    store = Store(unprocessed)
    cid = store.cohorts()["cohort_id"].iloc[0]
    run_id = store.start_run(cid, "cfg", "baseline", 1, 3)  # left 'running' by a dead server,
    store._run_locks.pop(run_id).release()                   # whose lock went with its process
    at = _open("cohort")
    assert "stopped before the end" in texts(at), texts(at)
    at.button(key="resume").click().run()
    assert not at.exception, at.exception
    wait_for_work(unprocessed)
    at.run()
    assert "Processing finished" in texts(at), texts(at)
    assert "stopped before the end" not in texts(at)


def test_upload_unpacks_in_the_background(tmp_path, monkeypatch):
    """Point 1: unpacking an upload is off the script thread, with a progress line."""
    from cohorts import cohort_entries, make_zip

    from gliocore.cohort import uploads

    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.delenv("GLIOSCOPE_DB", raising=False)
    opened = threading.Event()
    real = uploads.load_uploaded_cohort

    def held(*a, **kw):
        opened.wait(GATE_S)
        return real(*a, **kw)

    monkeypatch.setattr(uploads, "load_uploaded_cohort", held)
    at = _open("cohort")
    at.file_uploader(key="cohort_zip").set_value(
        ("my cohort.zip", make_zip(cohort_entries()), "application/zip"))
    try:
        next(b for b in at.button if b.label == "Upload and load cohort").click().run()
        assert not at.exception, at.exception
        assert "Unpacking" in texts(at) + " ".join(c.value for c in at.sidebar.caption), texts(at)
        other = _open("about")  # another session meanwhile
        assert not other.exception
    finally:
        opened.set()
    wait_for_work(tmp_path / "gliocore.duckdb")
    at.run()
    assert "Uploaded cohort **my cohort**: 2 subjects with images" in texts(at), texts(at)
    assert "my cohort · 2 subjects" in sidebar_widget(at, "selectbox", "Cohort").format_func(
        sidebar_widget(at, "selectbox", "Cohort").value)


# -- point 7: what "Load a cohort" reads and says ----------------------------------------------
def _load(at, csv: Path | str, root: str = "") -> tuple:
    """Submit "Load cohort"; the app and what it said (on the click's run and, once the work
    has ended, the next run)."""
    at.text_input(key="load_csv").set_value(str(csv))
    at.text_input(key="load_root").set_value(root)
    next(b for b in at.button if b.label == "Load cohort").click().run()
    shown = texts(at)
    if wait_for_work(Path(at.session_state["_glioscope_settings"].db)):
        shown += "\n" + texts(at.run())
    return at, shown


def test_load_a_cohort_never_echoes_file_contents(tmp_path, monkeypatch):
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.delenv("GLIOSCOPE_DB", raising=False)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHASH:19000:0:99999:7:::\ndaemon:*:19000\n")
    _, shown = _load(_open("cohort"), secret)
    assert "required column" in shown, shown
    assert "s3cr3tHASH" not in shown and "root:" not in shown, shown


def test_allowed_roots_restrict_where_cohorts_load_from(demo_store, tmp_path, monkeypatch):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed, outside):
        folder.mkdir()
        pd.read_csv(demo_store.parent / "demo" / "clinical.csv").head(2).to_csv(
            folder / "clinical.csv", index=False)
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("GLIOSCOPE_DB", raising=False)
    monkeypatch.setenv("GLIOSCOPE_ALLOWED_ROOTS", str(allowed))
    at, shown = _load(_open("cohort"), outside / "clinical.csv", str(demo_store.parent / "demo"))
    assert "outside the folders this dashboard may read" in shown, shown
    at, shown = _load(at, allowed / "clinical.csv", str(demo_store.parent / "demo"))
    assert "outside the folders" in shown  # the image root is outside
    link = allowed / "escape"
    link.symlink_to(outside, target_is_directory=True)  # a link out of the root is outside
    at, shown = _load(at, link / "clinical.csv")
    assert "outside the folders this dashboard may read" in shown, shown
    import shutil
    for sid in ("DEMO-001", "DEMO-002"):  # the images inside the root: loads
        shutil.copytree(demo_store.parent / "demo" / "TCGA" / sid, allowed / "TCGA" / sid)
    at, shown = _load(at, allowed / "clinical.csv")
    assert "outside the folders" not in shown and "Loaded cohort" in shown, shown
    assert "· 2 subjects" in sidebar_widget(at, "selectbox", "Cohort").format_func(
        sidebar_widget(at, "selectbox", "Cohort").value)


def test_allowed_roots_setting(tmp_path, monkeypatch):
    from gliocore.settings import Settings

    monkeypatch.delenv("GLIOSCOPE_ALLOWED_ROOTS", raising=False)
    assert Settings.from_env().allowed_roots == ()
    assert Settings.from_env().may_read("/etc/shadow")  # one local user: anything readable
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("GLIOSCOPE_ALLOWED_ROOTS", f"{a}:{b} ")
    s = Settings.from_env()
    assert s.allowed_roots == (a, b)
    assert s.may_read(a / "x.csv") and s.may_read(b / "sub" / "y.nii.gz")
    assert not s.may_read("/etc/shadow")
    assert not s.may_read(a / ".." / "c" / "x.csv")  # '..' resolved
    assert not s.may_read(tmp_path / "ab" / "x.csv")  # a prefix is not a parent
