"""Dashboard at 1,000 subjects: every page's server time, cold and warm, and a filter change.

Usage::

    python benchmarks/bench_dashboard.py [--n 1000] [--before e73415c] [--skip-before]

Builds (once, under ``data/bench_scale/``) an ``--n``-subject synthetic cohort of small volumes
(32x32x24) processed with the baseline backend into its own store, then drives the app with
Streamlit's ``AppTest`` (the script runs exactly as for a browser; the browser's own drawing is
not included) for each code version — *before* = the given commit in a temporary ``git
worktree``, *after* = this checkout — in a fresh process:

* each page visited once (cold: the cached loaders fill) and again (warm);
* a filter change (IDH status) on the Survival and Features pages;
* the number of store queries made during the warm visits (0 = nothing per subject recomputed on
  a page change: every read is served by the loaders' cache).
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
PAGES = ("cohort", "viewer", "features", "survival", "classifiers", "progression", "qc", "about")


def build_store(root: Path, n: int, workers: int) -> Path:
    """The ``n``-subject cohort processed into ``root/dashboard-<n>/gliocore.duckdb`` (once)."""
    from gliocore import synth
    from gliocore.cohort import load_cohort
    from gliocore.pipeline import ProcessingConfig, process_cohort
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


def _run_child(code_root: Path, db: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code_root)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
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
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
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
        results = {}
        for v, code in versions.items():
            work_db = tmp / f"{v}.duckdb"  # a copy: old code may migrate or lock the file
            shutil.copy(db, work_db)
            results[v] = _run_child(code, work_db)
        _report(results, args.n)
    finally:
        if "before" in versions:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(versions["before"])], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _report(results: dict, n: int) -> None:
    for v, r in results.items():
        if "failed" in r:
            print(f"{v}: failed\n{r['failed']}")
    ok = {v: r for v, r in results.items() if "failed" not in r}
    if not ok:
        return
    names = list(ok)
    print(f"\nserver time per page, {n} subjects (AppTest), seconds")
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
        worst = max(r["warm"].values()) if r["warm"] else float("nan")
        print(f"  {v}: first load {r['first_load']:.2f} s; worst warm page {worst:.2f} s; "
              f"store queries during the warm visits: {r['warm_queries']}"
              + (f"; page errors: {r['errors']}" if r["errors"] else ""))


if __name__ == "__main__":
    main()
