"""Bookkeeping at scale and memory per worker: GlioScope before (a git commit) and now, one run.

Usage::

    python benchmarks/bench_scale.py [--n 1000] [--subset 262] [--workers 2]
                                     [--before e73415c] [--skip-before] [--memory-only]

Builds (once, under ``data/bench_scale/``) a cohort of ``--n`` small synthetic subjects
(32x32x24), then for each code version — *before* = the given commit checked out in a temporary
``git worktree``, *after* = this checkout — in a fresh process and a fresh store:

1. first processing of the whole cohort with ``--workers`` local workers: wall time, and the
   driver's bookkeeping (time inside store calls + hashing decisions) and its share of the run;
2. re-run of the unchanged cohort (everything cached): wall time;
3. re-run of a ``--subset``-subject cohort (same images, its own CSV; processed once, timed on
   the re-run).

Then the peak resident memory of a worker processing one 240x240x155 subject (baseline
segmentation + seed features + QC), for both versions.

The "after" run's processed store is kept as ``<data>/store-<n>/`` for
``bench_dashboard.py --store``. Every figure is printed side by side with the ratio. Timings are noisy on a shared machine:
before and after run in the same invocation, one after the other.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL_SHAPE = (32, 32, 24)


# -- child: runs with PYTHONPATH pointing at one code version ----------------------------------
def _instrument_bookkeeping() -> dict[str, float]:
    """Accumulate the driver's time inside Store methods (outermost call only) and in the
    pipeline's own hashing (``gliocore.pipeline.plan.file_sha256``)."""
    import functools

    try:  # the package layout (issue 17)
        import gliocore.pipeline.plan as plan
        import gliocore.pipeline.runner as pipeline
        from gliocore.store import Store
    except ImportError:  # a 'before' commit from the flat layout
        import gliocore.pipeline as pipeline  # type: ignore[no-redef]
        from gliocore.store import Store  # type: ignore[no-redef]
        plan = pipeline

    acc = {"seconds": 0.0, "calls": 0}
    depth = [0]

    def timed(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            if depth[0]:
                return fn(*a, **k)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc["seconds"] += time.perf_counter() - t
                acc["calls"] += 1
                depth[0] -= 1
        return wrapper

    def timed_context(cm_factory):
        """A context manager (a batch of store calls) timed from enter to exit as one call."""
        @functools.wraps(cm_factory)
        @contextlib.contextmanager
        def wrapper(*a, **k):
            outer = depth[0] == 0
            depth[0] += 1
            t = time.perf_counter()
            try:
                with cm_factory(*a, **k):
                    yield
            finally:
                depth[0] -= 1
                if outer:
                    acc["seconds"] += time.perf_counter() - t
                    acc["calls"] += 1
        return wrapper

    # the Store's own methods and its mixins' (one class per table family since the split)
    methods = {name: attr for klass in reversed(Store.__mro__[:-1])
               for name, attr in vars(klass).items()}
    for name, attr in methods.items():
        if name == "batch":  # newer code: several calls in one connection
            setattr(Store, name, timed_context(attr))
        elif callable(attr) and not name.startswith("__") and name not in ("connect",
                                                                             "transaction"):
            setattr(Store, name, timed(attr))
    plan.file_sha256 = timed(plan.file_sha256)  # the planner's hashing (FileHasher, keys)
    pipeline.register_cohort = timed(pipeline.register_cohort)  # the name start_run calls
    return acc


def child_bookkeeping(csv: str, subset_csv: str, workers: int, tmp: str) -> dict:
    acc = _instrument_bookkeeping()
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store

    store = Store(Path(tmp) / "bench.duckdb")
    cfg = ProcessingConfig(workers=workers, output_dir=Path(tmp) / "seg")
    cohort = load_cohort(csv, Path(csv).parent, name="scale")
    out = {}
    t = time.perf_counter()
    s1 = process_cohort(cohort, store, cfg)
    out["first_s"] = time.perf_counter() - t
    out["first_bookkeeping_s"] = acc["seconds"]
    out["first_store_calls"] = acc["calls"]
    out["first_hash_stage_s"] = s1.stage_seconds.get("hash", 0.0)
    out["first_computed"] = len(s1.computed)
    out["first_errors"] = len(s1.errors)
    acc.update(seconds=0.0, calls=0)
    t = time.perf_counter()
    s2 = process_cohort(load_cohort(csv, Path(csv).parent, name="scale"), store, cfg)
    out["rerun_s"] = time.perf_counter() - t
    out["rerun_store_calls"] = acc["calls"]
    out["rerun_cached"] = len(s2.cached)
    keep = os.environ.get("BENCH_SCALE_KEEP_STORE")
    if keep and not Path(keep).exists():  # the processed store, for bench_dashboard.py --store
        shutil.copytree(tmp, keep)
        import duckdb
        con = duckdb.connect(str(Path(keep) / "bench.duckdb"))
        con.execute("UPDATE segmentations SET path = replace(path, ?, ?)", [str(Path(tmp)), keep])
        con.close()
    sub = load_cohort(subset_csv, Path(subset_csv).parent, name="scale-subset")
    process_cohort(sub, store, cfg)  # segmentations and features come from the cache
    t = time.perf_counter()
    s3 = process_cohort(load_cohort(subset_csv, Path(subset_csv).parent, name="scale-subset"),
                        store, cfg)
    out["subset_rerun_s"] = time.perf_counter() - t
    out["subset_cached"] = len(s3.cached)
    return out


def child_memory(csv: str, tmp: str) -> dict:
    """Process one full-size subject in this process (what one worker does) and report its
    peak resident memory."""
    import resource

    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = Store(Path(tmp) / "mem.duckdb")
    s = process_cohort(load_cohort(csv, Path(csv).parent, name="mem"), store,
                       ProcessingConfig(workers=1, output_dir=Path(tmp) / "seg"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_rss_mib": peak, "rss_after_imports_mib": rss_imports,
            "computed": len(s.computed), "errors": len(s.errors)}


# -- parent ------------------------------------------------------------------------------------
def _run_child(code_root: Path, mode: str, *args: str, keep_store: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code_root)
    env.pop("BENCH_SCALE_KEEP_STORE", None)
    if keep_store:
        env["BENCH_SCALE_KEEP_STORE"] = keep_store
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, *args],
                          env=env, capture_output=True, text=True, cwd=str(code_root))
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child ({code_root}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cohort(root: Path, n: int, subset: int) -> tuple[Path, Path]:
    from gliocore.cohort import synth
    import pandas as pd
    folder = root / f"cohort-{n}"
    t = time.perf_counter()
    csv = Path(synth.generate_demo_cohort(folder, n_subjects=n, seed=1, shape=SMALL_SHAPE,
                                          workers=2))
    print(f"cohort of {n} subjects at {SMALL_SHAPE}: ready in {time.perf_counter() - t:.1f} s "
          f"({folder})")
    subset_csv = folder / f"clinical-first{subset}.csv"
    pd.read_csv(csv).head(subset).to_csv(subset_csv, index=False)
    return csv, subset_csv


def _memory_cohort(root: Path) -> Path:
    from gliocore.cohort import synth
    return Path(synth.generate_demo_cohort(root / "cohort-memory", n_subjects=1, seed=2))


def _before_tree(commit: str, tmp: Path) -> Path:
    path = tmp / f"glioscope-{commit[:8]}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)
    return path


def _fmt_ratio(before: float | None, after: float) -> str:
    if before is None or after <= 0:
        return ""
    return f"{before / after:6.1f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--subset", type=int, default=262)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", default="e73415c", help="commit measured as 'before'")
    ap.add_argument("--skip-before", action="store_true")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--data", default=str(REPO / "data" / "bench_scale"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "bookkeeping":
            res = child_bookkeeping(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            res = child_memory(rest[0], rest[1])
        print(json.dumps(res))
        return

    sys.path.insert(0, str(REPO))
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(shared with other work: figures are noisy; before and after run back to back)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    versions: dict[str, Path] = {}
    try:
        if not args.skip_before:
            versions["before"] = _before_tree(args.before, tmp)
        versions["after"] = REPO
        results: dict[str, dict] = {v: {} for v in versions}
        if not args.memory_only:
            csv, subset_csv = _cohort(root, args.n, args.subset)
            for v, code in versions.items():
                work = tmp / f"run-{v}"
                work.mkdir()
                t = time.perf_counter()
                keep = str(root / f"store-{args.n}") if v == "after" else None
                results[v].update(_run_child(code, "bookkeeping", str(csv), str(subset_csv),
                                             str(args.workers), str(work), keep_store=keep))
                print(f"  {v}: measured in {time.perf_counter() - t:.0f} s")
                shutil.rmtree(work, ignore_errors=True)
        mem_csv = _memory_cohort(root)
        for v, code in versions.items():
            work = tmp / f"mem-{v}"
            work.mkdir()
            results[v].update(_run_child(code, "memory", str(mem_csv), str(work)))
        _report(results, args)
    finally:
        if "before" in versions:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(versions["before"])], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _report(results: dict[str, dict], args: argparse.Namespace) -> None:
    b, a = results.get("before"), results["after"]

    def row(label: str, key: str, unit: str = "s", digits: int = 2) -> None:
        bv = None if b is None or key not in b else b[key]
        av = a.get(key)
        if av is None:
            return
        bs = "" if bv is None else f"{bv:10.{digits}f} {unit}"
        print(f"  {label:<52} {bs:>14}  {av:10.{digits}f} {unit}  {_fmt_ratio(bv, av)}")

    print(f"\n{'':<54} {'before':>14}  {'after':>12}   ratio")
    if "first_s" in a:
        row(f"first processing, {args.n} subjects, {args.workers} workers", "first_s", digits=1)
        row("  driver bookkeeping (store calls + hashing)", "first_bookkeeping_s", digits=1)
        row("  'hash' stage (keys, cache lookups)", "first_hash_stage_s", digits=1)
        for name, r in (("before", b), ("after", a)):
            if r:
                print(f"  {name}: bookkeeping = {100 * r['first_bookkeeping_s'] / r['first_s']:.1f} % "
                      f"of the first run ({r['first_store_calls']} store calls; "
                      f"{r['first_computed']} computed, {r['first_errors']} errors)")
        row(f"re-run, unchanged {args.n}-subject cohort", "rerun_s")
        row(f"re-run, unchanged {args.subset}-subject cohort", "subset_rerun_s")
        for name, r in (("before", b), ("after", a)):
            if r:
                print(f"  {name}: re-run {r['rerun_cached']} cached with {r['rerun_store_calls']} "
                      f"store calls; subset re-run {r['subset_cached']} cached")
    row("peak RSS of one worker, one 240x240x155 subject", "peak_rss_mib", "MiB", 0)
    row("  (RSS after imports)", "rss_after_imports_mib", "MiB", 0)


if __name__ == "__main__":
    main()
