"""End-to-end: ``streamlit run app.py`` in headless Chromium (Playwright), every page, a few clicks.

Skipped when ``/usr/bin/chromium`` or Playwright is absent (``playwright install`` cannot download
here; ``scripts/install_browser.sh`` installs Debian's Chromium). Screenshots go to
``test-artifacts/`` (git-ignored). Every wait is bounded; the server is killed at the end.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent "
                       "(run scripts/install_browser.sh)"),
]
sync_api = pytest.importorskip("playwright.sync_api")

from test_app_pages import N_SUBJECTS, build_demo_store  # noqa: E402  (tests/ is on sys.path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:port against ``db``; waits (bounded) until healthy."""
    env = {**os.environ, "GLIOSCOPE_DATA": str(db.parent), "GLIOSCOPE_DB": str(db)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
           "--server.address", "127.0.0.1", "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"streamlit did not become healthy in 60 s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "glioscope_demo_store"
    root.mkdir(exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    return build_demo_store(root)


@pytest.fixture(scope="module")
def server(demo_db):
    port = free_port()
    proc = start_server(demo_db, port, ARTIFACTS / "streamlit.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one instance per thread)."""
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def browser_page(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(30_000)
    yield page
    page.close()


def wait_idle(page, timeout: float = 30.0) -> None:
    """Wait until the script run has finished (status widget gone), bounded."""
    page.wait_for_timeout(300)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]')
        if running.count() == 0 or not running.first.is_visible():
            page.wait_for_timeout(200)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(200)
    raise AssertionError(f"the app was still running after {timeout} s")


def open_page(page, base: str, path: str, title: str) -> None:
    page.goto(f"{base}/{path}", wait_until="domcontentloaded")
    page.get_by_role("heading", name=re.compile(title)).first.wait_for()
    page.get_by_text(f"{N_SUBJECTS} of {N_SUBJECTS} subjects").first.wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception on {title}"


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox labelled ``label``."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    wait_idle(page)


NAV_GROUPS = {"Data": ["Cohort", "Viewer", "Features"],
              "Analysis": ["Survival", "Classifiers", "Models", "Progression", "Location"],
              "Quality": ["Segmentation QC", "About / Validation"]}
# what Streamlit's legacy pages/ mode lists instead: one entry per file, named after it
FILE_NAMES = ["app", "about", "atlas", "common", "timepoints", "cohort", "qc", "viewer"]


def assert_titled_navigation(page) -> None:
    """The sidebar lists app.py's titled pages under their groups, never the raw page files."""
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for()
    links = [t.strip() for t in nav.get_by_role("link").all_inner_texts()]
    # a link's text carries its material icon's name on the line before the title
    titles = [t.splitlines()[-1].strip() for t in links]
    expected = [title for group in NAV_GROUPS.values() for title in group]
    assert titles == expected, f"sidebar navigation lists {titles}, expected {expected}"
    text = nav.inner_text()
    for group in NAV_GROUPS:
        assert group in text.splitlines(), f"navigation group {group!r} missing: {text!r}"
    leaked = [name for name in FILE_NAMES if name in titles]
    assert not leaked, f"sidebar lists page files {leaked}"


PAGES = [("", "Cohort"), ("viewer", "Viewer"), ("features", "Features"),
         ("survival", "Survival"), ("classifiers", "Classifiers"), ("qc", "Segmentation QC"),
         ("about", "About"), ("location", "Location"), ("models", "Models")]


@pytest.mark.parametrize("path,title", PAGES)
def test_every_page_renders(browser_page, server, path, title):
    page = browser_page
    open_page(page, server, path, title)
    assert page.get_by_text("Segmentation: baseline v").count() >= 1
    assert_titled_navigation(page)
    if path in ("viewer", "features", "survival", "qc"):
        page.locator(".js-plotly-plot").first.wait_for(state="attached")
    shot(page, path or "cohort")


def test_viewer_pick_subject_and_move_slider(browser_page, server):
    page = browser_page
    open_page(page, server, "viewer", "Viewer")
    page.locator(".js-plotly-plot").first.wait_for()
    pick(page, "Subject", "DEMO-004")
    caption = page.get_by_text(re.compile(r"DEMO-004: contrast-enhancing"))
    caption.wait_for()
    wait_idle(page)  # the pick's rerun must be over, or it replaces the slider under the key presses
    before = re.search(r"slice (\d+)/(\d+)", caption.inner_text()).group(1)
    slider = page.get_by_test_id("stSlider").filter(has_text="Axial slice").get_by_role("slider")
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")

    def shown_slice() -> int:
        text = page.get_by_text(re.compile(r"DEMO-004: contrast-enhancing")).inner_text()
        return int(re.search(r"slice (\d+)/(\d+)", text).group(1))

    deadline = time.monotonic() + 20
    while shown_slice() == int(before) and time.monotonic() < deadline:  # bounded wait for the rerun
        page.wait_for_timeout(250)
    wait_idle(page)
    assert shown_slice() == int(before) - 3
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "viewer_interaction")


def test_survival_change_km_grouping(browser_page, server):
    page = browser_page
    open_page(page, server, "survival", "Survival")
    page.get_by_role("tab", name="Kaplan–Meier").click()
    page.get_by_text("log-rank p").first.wait_for()
    pick(page, "Group by", "Tertile split of a variable")
    page.get_by_text(re.compile("multivariate log-rank")).first.wait_for()
    page.get_by_text("Grouping: tertiles of").first.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "survival_km_tertiles")


def test_filter_applies_across_pages(browser_page, server):
    page = browser_page
    open_page(page, server, "", "Cohort")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stRadio").filter(has_text="IDH status").get_by_text("mutant").click()
    wait_idle(page)
    text = page.get_by_text(re.compile(rf"\d+ of {N_SUBJECTS} subjects")).first.inner_text()
    n = int(re.search(r"(\d+) of", text).group(1))
    assert 0 < n < N_SUBJECTS
    # navigate through the sidebar menu (same session): the filter still applies
    sidebar.get_by_role("link", name="Survival").click()
    page.get_by_role("heading", name="Survival").first.wait_for()
    wait_idle(page)
    page.get_by_text(f"{n} of {N_SUBJECTS} subjects").first.wait_for()
    shot(page, "survival_filtered")


def test_deep_link_to_fresh_server_shows_titled_navigation(demo_db, browser):
    """The first browser to reach a freshly started server opens a page's own URL (a bookmark, a
    tab reconnecting after a restart): it gets that page under the titled navigation groups.
    Streamlit used to run it in its legacy ``pages/`` mode, listing "app", "about", "atlas",
    "common", ... in the sidebar (and kept doing so for deep links until someone opened /)."""
    port = free_port()
    proc = start_server(demo_db, port, ARTIFACTS / "streamlit_deep_link.log")
    try:
        for path, title in (("qc", "Segmentation QC"), ("survival", "Survival")):
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(30_000)
            try:
                open_page(page, f"http://127.0.0.1:{port}", path, title)
                shot(page, f"deep_link_{path}")
                assert_titled_navigation(page)
            finally:
                page.close()
    finally:
        stop_server(proc)


# -- long work in the background (issue 19, points 1 and 11) --------------------------------------
def run_status(db: Path) -> str:
    from gliocore.store import Store
    store = Store(db)
    runs = store.runs(store.cohorts()["cohort_id"].iloc[0])
    return "none" if runs.empty else str(runs["status"].iloc[0])


def test_processing_goes_on_after_leaving_the_page_and_other_sessions_respond(
        demo_db, browser, tmp_path):
    """Session A presses Process cohort and leaves for Features at once; session B opens a page
    meanwhile (served while A's work runs, which B's sidebar shows); the run finishes
    ("finished", not "interrupted") and A finds the result on return. Before, the click held
    A's script run for the whole run and leaving the page stopped it."""
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.plan import register_cohort
    from gliocore.store import Store

    db = tmp_path / "fresh.duckdb"  # the demo's subjects registered, nothing processed
    register_cohort(Store(db), load_cohort(demo_db.parent / "demo" / "clinical.csv",
                                           name="fresh"))
    port = free_port()
    proc = start_server(db, port, ARTIFACTS / "streamlit_background.log")
    base = f"http://127.0.0.1:{port}"
    a = browser.new_page(viewport={"width": 1440, "height": 1000})
    b = browser.new_page(viewport={"width": 1440, "height": 1000})
    for p in (a, b):
        p.set_default_timeout(30_000)
    try:
        # both sessions open their pages once before the run, so that what is timed below is a
        # served page, not the server's first import of a page (a tiny cohort's run is short)
        open_page(a, base, "features", "Features")
        b.goto(f"{base}/survival", wait_until="domcontentloaded")
        b.get_by_role("heading", name="Survival").first.wait_for()
        open_page(a, base, "", "Cohort")
        workers = a.locator(".st-key-workers input")  # one worker: a longer run
        workers.fill("1")
        workers.press("Enter")
        wait_idle(a)
        a.get_by_role("button", name="Process cohort").click()
        a.get_by_test_id("stSidebar").get_by_text(re.compile("Processing cohort fresh")).wait_for()
        a.get_by_test_id("stProgress").first.wait_for()
        shot(a, "cohort_processing")
        a.get_by_test_id("stSidebar").get_by_role("link", name="Features").click()
        a.get_by_role("heading", name="Features").first.wait_for()
        assert run_status(db) == "running", "the run ended before session A left the page"
        # session B is served while the run goes on: its sidebar line only shows while it runs
        b.reload(wait_until="domcontentloaded")
        b.get_by_test_id("stSidebar").get_by_text(re.compile("Processing cohort fresh")).wait_for()
        b.get_by_role("heading", name="Survival").first.wait_for()
        shot(b, "survival_while_processing")
        deadline = time.monotonic() + 300
        while run_status(db) == "running" and time.monotonic() < deadline:
            time.sleep(1)
        assert run_status(db) == "finished"
        a.get_by_test_id("stSidebar").get_by_role("link", name="Cohort").click()
        a.get_by_text(re.compile("Processing finished: 14 subjects")).first.wait_for()
        wait_idle(a)
        shot(a, "cohort_processed")
    finally:
        a.close()
        b.close()
        stop_server(proc)
