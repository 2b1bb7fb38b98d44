"""Dashboard at 1,000 subjects: every page's time, cold and warm, and a filter change.

Usage::

    python benchmarks/bench_dashboard.py [--n 1000] [--before e73415c] [--skip-before]
                                         [--store data/bench_scale/store-1000/bench.duckdb]
                                         [--no-browser]

Builds (once, under ``data/bench_scale/``) an ``--n``-subject synthetic cohort of small volumes
(32x32x24) processed with the baseline backend into its own store, then drives the app with
Streamlit's ``AppTest`` (the script runs exactly as for a browser; the browser's own drawing is
not included) for each code version — *before* = the given commit in a temporary ``git
worktree``, *after* = this checkout — in a fresh process:

* each page visited once (cold: the cached loaders fill) and again (warm);
* a filter change (IDH status) on the Survival and Features pages;
* the number of store queries made during the warm visits (0 = nothing per subject recomputed on
  a page change: every read is served by the loaders' cache).

Then, unless ``--no-browser``, the same in a **real browser** (headless Chromium through
Playwright, ``/usr/bin/chromium``; see scripts/install_browser.sh) against ``streamlit run`` of
each version: from the click on the page's sidebar link (or on the filter) until the server has
sent the run's end (its ``script_finished`` message, read off the websocket) *and* every plotly
chart on the page is drawn — the time a user waits.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ("cohort", "viewer", "features", "survival", "classifiers", "progression", "location",
         "qc", "about")
#: The pages' titles in the sidebar navigation (app.py).
NAV_TITLES = {"cohort": "Cohort", "viewer": "Viewer", "features": "Features",
              "survival": "Survival", "classifiers": "Classifiers", "progression": "Progression",
              "location": "Location", "qc": "Segmentation QC", "about": "About / Validation"}
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def build_store(root: Path, n: int, workers: int) -> Path:
    """The ``n``-subject cohort processed into ``root/dashboard-<n>/gliocore.duckdb`` (once)."""
    from gliocore.cohort import synth
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store

    folder = root / f"dashboard-{n}"
    db = folder / "gliocore.duckdb"
    done = folder / ".processed"
    if done.exists():
        return db
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    csv = synth.generate_demo_cohort(root / f"cohort-{n}", n_subjects=n, seed=1,
                                     shape=(32, 32, 24), workers=workers)
    summary = process_cohort(load_cohort(csv, name=f"scale-{n}"), Store(db),
                             ProcessingConfig(workers=workers, output_dir=folder / "seg"))
    print(f"store with {n} subjects built in {time.perf_counter() - t:.0f} s "
          f"({len(summary.errors)} errors)")
    done.write_text(summary.cohort_id)
    return db


# -- child: one code version --------------------------------------------------------------------
def child(code_root: str, db: str) -> dict:
    from streamlit.testing.v1 import AppTest

    from gliocore.store import Store

    queries = {"n": 0}
    for name in ("_df", "connect"):
        orig = getattr(Store, name)

        def counted(*a, __orig=orig, **k):
            queries["n"] += 1
            return __orig(*a, **k)
        setattr(Store, name, counted)

    os.environ["GLIOSCOPE_DB"] = db
    os.environ["GLIOSCOPE_DATA"] = str(Path(db).parent)
    at = AppTest.from_file(str(Path(code_root) / "app.py"), default_timeout=600)
    out: dict = {"cold": {}, "warm": {}, "filter": {}, "errors": {}}
    t = time.perf_counter()
    at.run()
    out["first_load"] = time.perf_counter() - t

    def visit(page: str) -> float:
        t0 = time.perf_counter()
        at.switch_page(f"pages/{page}.py").run()
        dt = time.perf_counter() - t0
        if at.exception:
            out["errors"][page] = str(at.exception[0].value)[:200]
        return dt

    pages = [p for p in PAGES if (Path(code_root) / "pages" / f"{p}.py").exists()]
    for page in pages:
        out["cold"][page] = visit(page)
    queries["n"] = 0
    for page in pages:
        out["warm"][page] = visit(page)
    out["warm_queries"] = queries["n"]

    for page in ("survival", "features"):
        visit(page)
        radios = [r for r in at.radio if "IDH" in str(r.label)]
        if not radios:
            continue
        for value in ("mutant", "all"):
            t0 = time.perf_counter()
            radios[0].set_value(value).run()
            out["filter"][f"{page}: IDH -> {value}"] = time.perf_counter() - t0
            radios = [r for r in at.radio if "IDH" in str(r.label)]
    return out


# -- browser child: one code version served by `streamlit run`, driven by Chromium ---------------
def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(code_root: Path, db: Path, port: int) -> subprocess.Popen:
    import urllib.request
    env = {**os.environ, "GLIOSCOPE_DB": str(db), "GLIOSCOPE_DATA": str(db.parent),
           "PYTHONPATH": os.pathsep.join([*filter(None, [os.environ.get("BENCH_EXTRA_PATH")]),
                                         str(code_root)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(code_root / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=str(code_root), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("streamlit exited early")
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("streamlit did not start within 120 s")


def browser_child(code_root: str, db: str) -> dict:
    """Page and filter times in headless Chromium against ``streamlit run`` of ``code_root``."""
    from playwright import sync_api
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    finished: list[float] = []  # perf_counter times of completed script runs

    def on_websocket(ws) -> None:
        def frame(payload) -> None:
            if not isinstance(payload, (bytes, bytearray)):
                return
            try:
                msg = ForwardMsg.FromString(bytes(payload))
            except Exception:  # noqa: BLE001 - not a ForwardMsg
                return
            if msg.WhichOneof("type") == "script_finished" and \
                    msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                finished.append(time.perf_counter())
        ws.on("framereceived", frame)

    drawn_js = """() => {
        if (document.querySelectorAll('[data-testid="stStatusWidget"]').length) return false;
        for (const p of document.querySelectorAll('.js-plotly-plot'))
            if (!p.querySelector('.main-svg')) return false;
        return true; }"""

    def settle(page, t0: float, what: str | None = None, timeout: float = 180.0) -> float:
        """Seconds from ``t0`` until a run finished after it and every chart is drawn (the
        run's own end is kept in ``out["ran"][what]``)."""
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            page.wait_for_timeout(15)
            ends = [t for t in finished if t > t0]
            if ends and page.evaluate(drawn_js):
                if what:
                    out["ran"][what] = ends[0] - t0
                return time.perf_counter() - t0
        raise RuntimeError(f"page not settled after {timeout:.0f} s")

    out: dict = {"cold": {}, "warm": {}, "filter": {}, "errors": {}, "ran": {}}
    root = Path(code_root)
    port = _free_port()
    server = _serve(root, Path(db), port)
    try:
        with sync_api.sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = chromium.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(180_000)
            page.on("websocket", on_websocket)
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.get_by_test_id("stSidebarNav").wait_for()
            out["first_load"] = settle(page, t0)
            nav = page.get_by_test_id("stSidebarNav")

            def visit(name: str, what: str | None = None) -> float:
                link = nav.get_by_role("link", name=NAV_TITLES[name])
                t = time.perf_counter()
                link.first.click()
                dt = settle(page, t, what)
                if page.locator('[data-testid="stException"]').count():
                    out["errors"][name] = "exception shown"
                return dt

            names = [p for p in PAGES if (root / "pages" / f"{p}.py").exists()]
            for name in names:
                out["cold"][name] = visit(name)
            for name in names:
                out["warm"][name] = visit(name, f"warm {name}")
            sidebar = page.get_by_test_id("stSidebar")
            for name in ("survival", "features"):
                visit(name)
                for value in ("mutant", "all"):
                    radio = sidebar.get_by_test_id("stRadio").filter(has_text="IDH status")
                    option = radio.get_by_text(value, exact=True).first
                    t = time.perf_counter()
                    option.click()
                    key = f"{name}: IDH -> {value}"
                    out["filter"][key] = settle(page, t, f"filter {key}")
            chromium.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return out


def _run_child(code_root: Path, db: Path, browser: bool = False) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code_root)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                           "--browser-child" if browser else "--child",
                           str(code_root), str(db)], env=env, capture_output=True, text=True,
                          cwd=str(code_root))
    if proc.returncode != 0:
        return {"failed": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", default="e73415c")
    ap.add_argument("--skip-before", action="store_true")
    ap.add_argument("--data", default=str(REPO / "data" / "bench_scale"))
    ap.add_argument("--store", help="an existing processed store (e.g. the one bench_scale.py "
                    "keeps in data/bench_scale/store-1000/bench.duckdb) instead of building one")
    ap.add_argument("--no-browser", action="store_true",
                    help="skip the real-browser timings (headless Chromium)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--browser-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.browser_child:
        print(json.dumps(browser_child(*args.browser_child)))
        return
    sys.path.insert(0, str(REPO))
    db = Path(args.store) if args.store else build_store(Path(args.data), args.n, args.workers)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared: "
          "noisy figures; before and after measured back to back on the same store)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_dash_"))
    versions: dict[str, Path] = {}
    try:
        if not args.skip_before:
            before = tmp / "before"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before),
                            args.before], check=True, capture_output=True)
            versions["before"] = before
        versions["after"] = REPO
        results, browser = {}, {}
        for v, code in versions.items():
            work_db = tmp / f"{v}.duckdb"  # a copy: old code may migrate or lock the file
            shutil.copy(db, work_db)
            results[v] = _run_child(code, work_db)
        _report(results, args.n, "server time per page (AppTest)")
        if not args.no_browser:
            if not Path(CHROMIUM).exists():
                print(f"\nno {CHROMIUM}: real-browser timings skipped (scripts/install_browser.sh)")
            else:
                for v, code in versions.items():
                    work_db = tmp / f"{v}-browser" / "gliocore.duckdb"
                    work_db.parent.mkdir()
                    shutil.copy(db, work_db)
                    browser[v] = _run_child(code, work_db, browser=True)
                _report(browser, args.n, "time a user waits per page (headless Chromium: click "
                        "to run finished and every chart drawn)")
        print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
    finally:
        if "before" in versions:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(versions["before"])], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _report(results: dict, n: int, what: str) -> None:
    for v, r in results.items():
        if "failed" in r:
            print(f"{v}: failed\n{r['failed']}")
    ok = {v: r for v, r in results.items() if "failed" not in r}
    if not ok:
        return
    names = list(ok)
    print(f"\n{what}, {n} subjects, seconds")
    print(f"  {'page':<34}" + "".join(f"{v + ' cold':>13}{v + ' warm':>13}" for v in names))
    pages = sorted({p for r in ok.values() for p in r["cold"]}, key=lambda p: PAGES.index(p))
    for p in pages:
        cells = "".join(f"{r['cold'].get(p, float('nan')):13.2f}{r['warm'].get(p, float('nan')):13.2f}"
                        for r in ok.values())
        print(f"  {p:<34}{cells}")
    keys = sorted({k for r in ok.values() for k in r["filter"]})
    for k in keys:
        cells = "".join(f"{r['filter'].get(k, float('nan')):26.2f}" for r in ok.values())
        print(f"  filter change, {k:<19}{cells}")
    for v, r in ok.items():
        if r.get("ran"):
            print(f"  {v}: of which until the run's end reached the browser: "
                  + ", ".join(f"{k} {t:.2f}" for k, t in r["ran"].items()))
    for v, r in ok.items():
        worst = max(r["warm"].values()) if r["warm"] else float("nan")
        print(f"  {v}: first load {r['first_load']:.2f} s; worst warm page {worst:.2f} s"
              + (f"; store queries during the warm visits: {r['warm_queries']}"
                 if "warm_queries" in r else "")
              + (f"; page errors: {r['errors']}" if r["errors"] else ""))


if __name__ == "__main__":
    main()
