"""Regenerate the README screenshots: docs/screenshots/<page>.png, one per dashboard page.

Usage (after ``make process``, or with any processed store)::

    .venv/bin/python scripts/screenshots.py [--db data/gliocore.duckdb] [--out docs/screenshots]

Starts ``streamlit run app.py`` on a free loopback port against the store, opens each page in
headless Chromium (``/usr/bin/chromium``; see scripts/install_browser.sh), makes the page show
something representative (a subject with a large tumour, the Kaplan–Meier tab, a classifier
run), and saves palette PNGs under 300 KB. The server is stopped at the end.

The Segmentation QC page on the BraTS 2018 QC cohort (``scripts/brats_qc_cohort.py --process``)::

    .venv/bin/python scripts/screenshots.py --db data/brats18-qc/gliocore.duckdb --only qc \
        --suffix _brats18
"""
from __future__ import annotations

import argparse
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_BYTES = 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "GLIOSCOPE_DB": str(db), "GLIOSCOPE_DATA": str(db.parent)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address",
           "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("streamlit exited early; run it by hand to see why")
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("streamlit did not start within 60 s")


def wait_idle(page, timeout: float = 120.0) -> None:
    page.wait_for_timeout(400)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(300)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(250)
    raise RuntimeError(f"the app was still running after {timeout} s")


def pick(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    wait_idle(page)


def shoot_preprocessing(page, open_, shoot, subject: str | None) -> None:
    """A store with raw scans: the Viewer's preprocessing QC tab, one shot per step
    (viewer_prep_<step>.png), and the Cohort page's table of series to decide
    (cohort_sequences.png). Nothing when the store has neither."""
    open_("viewer", "Viewer", 1700)
    if subject:
        pick(page, "Subject", subject)
    page.get_by_role("tab", name="Preprocessing QC").click()
    wait_idle(page)
    if not page.get_by_text("was not preprocessed here").count():
        for step, label, height in (("brain", "Brain extraction", 1050),
                                    ("registration", "Co-registration", 1550),
                                    ("bias", "Bias field", 2000)):
            page.set_viewport_size({"width": 1440, "height": height})
            page.locator(".st-key-prep_step").get_by_text(label).click()
            wait_idle(page)
            page.locator(f"[class*='st-key-prep_{step}_']").first.wait_for()
            shoot(f"viewer_prep_{step}")
    open_("", "Cohort", 1300)
    heading = page.get_by_role("heading", name="Sequences to decide")
    if heading.count():
        heading.first.scroll_into_view_if_needed()
        page.mouse.wheel(0, 250)
        shoot("cohort_sequences")


def save(png: bytes, path: Path, width: int = 1400) -> int:
    """Downscale to ``width`` and quantise to a palette until the file is under MAX_BYTES."""
    from PIL import Image
    img = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        w = width
        while True:
            im = img if img.width <= w else img.resize((w, round(img.height * w / img.width)),
                                                       Image.LANCZOS)
            buf = io.BytesIO()
            im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(buf, "PNG",
                                                                             optimize=True)
            if buf.tell() <= MAX_BYTES or w < 900:
                break
            w = int(w * 0.9)
        if buf.tell() <= MAX_BYTES:
            break
    path.write_bytes(buf.getvalue())
    return buf.tell()


def has_followups(db: Path) -> str | None:
    """A subject to show in the timepoint viewer when the store holds follow-up scans, else
    None."""
    import duckdb
    try:
        con = duckdb.connect(str(db), read_only=True)
        try:
            # the subject with >= 3 scans whose tumour volume changed most (else most scans)
            row = con.execute("""
                SELECT r.subject_id, count(*) AS n,
                       max(s.volume_ce_mm3 + s.volume_ne_mm3)
                       / greatest(min(s.volume_ce_mm3 + s.volume_ne_mm3), 1.0) AS change
                FROM scan_results r JOIN segmentations s USING (seg_key)
                GROUP BY r.subject_id HAVING n >= 3 ORDER BY change DESC, n DESC LIMIT 1
                """).fetchone() or con.execute(
                "SELECT subject_id, count(*) AS n FROM scans GROUP BY subject_id "
                "HAVING n > 1 ORDER BY n DESC, subject_id LIMIT 1").fetchone()
            return None if row is None else str(row[0])
        finally:
            con.close()
    except duckdb.Error:
        return None


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from gliocore.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, default=Settings.from_env().db)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--subject", default=None, help="subject shown in the viewer")
    ap.add_argument("--only", nargs="*", default=None,
                    help="only these pages (cohort viewer location progression features "
                    "survival classifiers models preprocess qc about); default all")
    ap.add_argument("--suffix", default="",
                    help="appended to each file name: `--only qc --suffix _brats18 --db "
                    "data/brats18-qc/gliocore.duckdb` makes qc_brats18.png")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found; run scripts/install_browser.sh")
    if not args.db.exists():
        raise SystemExit(f"no store at {args.db}; run `make process` first")
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    longitudinal = has_followups(args.db)
    port = free_port()
    proc = start_server(args.db.resolve(), port)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(60_000)

            def wanted(name: str) -> bool:
                return args.only is None or name in args.only

            def open_(path: str, title: str, height: int) -> None:
                page.set_viewport_size({"width": 1440, "height": height})
                page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                page.get_by_role("heading", name=re.compile(title)).first.wait_for()
                wait_idle(page)

            def shoot(name: str) -> None:
                wait_idle(page)
                page.mouse.move(900, 8)  # no hover tooltips in the pictures
                page.wait_for_timeout(800)  # plotly transitions
                name += args.suffix
                size = save(page.screenshot(), args.out / f"{name}.png")
                print(f"{args.out / name}.png  {size / 1000:.0f} kB")

            open_("", "Cohort", 1500)   # the entry page first: it sets up the navigation
            if wanted("cohort"):
                shoot("cohort")
                # the zip upload panel opened (collapsed on the first shot)
                upload = page.get_by_test_id("stExpander").filter(has_text="Upload a cohort (zip)")
                if upload.count():
                    upload.first.get_by_text("Upload a cohort (zip)").first.click()
                    page.get_by_test_id("stFileUploader").first.wait_for()
                    page.get_by_test_id("stFileUploader").first.scroll_into_view_if_needed()
                    shoot("cohort_upload")
                    page.mouse.wheel(0, -5000)

            if wanted("viewer"):
                open_("viewer", "Viewer", 1100)
                if args.subject:
                    pick(page, "Subject", args.subject)
                page.locator(".js-plotly-plot").first.wait_for()
                shoot("viewer")
                atlas_box = page.get_by_text("Atlas regions (outline)")
                if atlas_box.count():
                    atlas_box.first.click()
                    wait_idle(page)
                    page.locator(".js-plotly-plot").first.wait_for()
                    shoot("viewer_atlas")
                    atlas_box.first.click()
                    wait_idle(page)
                page.get_by_role("tab", name=re.compile("Data check")).click()
                wait_idle(page)
                shoot("viewer_data_check")

            if wanted("location"):
                open_("location", "Location", 1350)
                shoot("location")
                for tab, name in (("Lesion-frequency map", "location_map"),
                                  ("Regions by group", "location_groups")):
                    if page.get_by_role("tab", name=tab).count():  # a store with locations
                        page.get_by_role("tab", name=tab).click()
                        wait_idle(page)
                        shoot(name)
            if longitudinal and wanted("progression"):  # a cohort with follow-up scans
                open_("progression", "Progression", 1400)
                page.locator(".js-plotly-plot").first.wait_for()
                shoot("progression")
                for tab, name in (("Cohort trajectories", "progression_spaghetti"),
                                  ("Swimmer plot", "progression_swimmer"),
                                  ("Waterfall", "progression_waterfall")):
                    page.get_by_role("tab", name=tab).click()
                    shoot(name)
                open_("viewer", "Viewer", 900)
                page.get_by_role("tab", name="Timepoints").click()
                wait_idle(page)
                page.locator(".st-key-tp_subject").get_by_test_id("stSelectbox").click()
                page.get_by_role("option", name=longitudinal, exact=True).first.click()
                wait_idle(page)
                shoot("viewer_timepoints")

            if wanted("features"):
                open_("features", "Features", 1100)
                shoot("features")
                page.get_by_role("tab", name="Survival screen (FDR)").click()
                shoot("features_screen")

            if wanted("survival"):
                open_("survival", "Survival", 1250)
                shoot("survival")
                page.get_by_role("tab", name="Kaplan–Meier").click()
                shoot("survival_km")
                page.get_by_role("tab", name="Cox model").click()
                shoot("survival_cox")

            if wanted("classifiers"):
                open_("classifiers", "Classifiers", 1500)
                page.get_by_role("button", name="Run cross-validation").click()
                page.get_by_text("Held-out performance").first.wait_for(timeout=300_000)
                shoot("classifiers")

            if wanted("models"):
                open_("models", "Models", 2300)
                page.get_by_role("button", name="Run nested CV").click()
                page.get_by_text("Held-out performance").first.wait_for(timeout=300_000)
                shoot("models")
                harm = page.get_by_test_id("stExpander").filter(has_text="Harmonisation")
                if harm.count():  # a cohort with a site column
                    harm.first.get_by_text("Harmonisation").first.click()
                    wait_idle(page)
                    page.set_viewport_size({"width": 1440, "height": 1000})
                    harm.first.scroll_into_view_if_needed()
                    shoot("models_harmonisation")

            if wanted("preprocess"):
                shoot_preprocessing(page, open_, shoot, args.subject)
            if wanted("qc"):
                open_("qc", "Segmentation QC", 1800)
                shoot("qc")
            if wanted("about"):
                open_("about", "About", 1100)
                shoot("about")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
