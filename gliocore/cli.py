"""Command line: ``python -m gliocore {demo,process,export,status,validate,model}``."""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any, Sequence

from gliocore.cli_model import add_model_commands
from gliocore.errors import GlioError, StoreBusyError
from gliocore.settings import Settings


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise SystemExit(f"--backend-option expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        low = v.lower()
        out[k] = True if low == "true" else False if low == "false" else _number(v)
    return out


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


class _Bars:
    """One tqdm progress bar per pipeline stage."""

    def __init__(self, disable: bool = False) -> None:
        from tqdm import tqdm
        self._tqdm = tqdm
        self.bars: dict[str, Any] = {}
        self.disable = disable

    def __call__(self, stage: str, done: int, total: int, subject: str | None) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            unit = "subj" if stage in ("generate", "followup", "prep") else "scan"  # pipeline: per scan
            bar = self._tqdm(total=total, desc=f"{stage:>8}", unit=unit, position=len(self.bars),
                             leave=True, disable=self.disable, dynamic_ncols=True)
            self.bars[stage] = bar
        bar.n = done
        if subject:
            bar.set_postfix_str(subject, refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def ensure_demo(settings: Settings, n_subjects: int | None = None, workers: int = 1,
                quiet: bool = False) -> Path:
    """Generate the demo cohort if absent (resumes a partial one); return its CSV."""
    from gliocore.cohort import synth
    n = n_subjects or settings.demo_n_subjects
    bars = _Bars(disable=quiet)
    try:
        csv = synth.generate_demo_cohort(settings.demo_dir, n_subjects=n, seed=settings.demo_seed,
                                         progress=lambda d, t: bars("generate", d, t, None),
                                         workers=workers)
        if settings.demo_followups:  # follow-up scans for the Progression page
            synth.generate_followups(settings.demo_dir, seed=settings.demo_seed, workers=workers,
                                     progress=lambda d, t: bars("followup", d, t, None))
    finally:
        bars.close()
    return Path(csv)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    csv = ensure_demo(settings, args.n_subjects, args.workers, args.quiet)
    print(f"demo cohort: {csv}")
    return 0


def _load_cohort_from_args(args: argparse.Namespace, settings: Settings):
    from gliocore.cohort.loading import load_cohort
    if args.demo or not args.csv:
        csv = ensure_demo(settings, getattr(args, "n_subjects", None), args.workers, args.quiet)
        return load_cohort(csv, csv.parent, name="demo"), "tcga"
    suffix = getattr(args, "reference_suffix", "_truth")
    prepared = _preprocess_from_args(args, settings)
    scans = getattr(args, "scans", None) if prepared is None else prepared.scans_csv
    naming = args.naming if prepared is None or not prepared.results else None
    cohort = load_cohort(args.csv, args.root, naming=naming, id_column=args.id_column,
                         name=args.name, scans=scans,
                         reference_suffix=None if suffix in ("", "none") else suffix)
    if prepared is not None:
        cohort.problems.extend(prepared.problems)
    return cohort, naming


def _preprocess_from_args(args: argparse.Namespace, settings: Settings):
    """The preprocessing stage (DICOM import, N4, co-registration, brain extraction), or None.

    ``--preprocess auto`` runs it only when a subject folder holds DICOM or NIfTI on several
    grids (headers only), so BraTS-style cohorts and the demo take exactly today's path.
    """
    mode = getattr(args, "preprocess", "off")
    if mode == "off":
        return None
    from gliocore.pipeline.prepare import describe, needs_preprocessing, prepare_cohort
    from gliocore.preprocess.decisions import MAPPING_FILE
    from gliocore.preprocess.identify import read_mapping
    from gliocore.preprocess.scan import PreprocessOptions
    root = args.root or str(Path(args.csv).resolve().parent)
    if mode == "auto" and not needs_preprocessing(args.csv, root, args.id_column, args.naming):
        return None
    options = PreprocessOptions(brain_backend=args.brain_model,
                                folds=5 if args.brain_accurate else 1,
                                space=getattr(args, "preprocess_space", "native"))
    name = args.name or Path(args.csv).resolve().parent.name
    out_root = settings.data_dir / "preprocessed" / name
    map_file = args.sequence_map
    if not map_file and (out_root / MAPPING_FILE).is_file():  # decided on the dashboard
        map_file = str(out_root / MAPPING_FILE)
        print(f"sequence decisions from {map_file} (made on the Cohort page)")
    mappings = read_mapping(map_file, args.id_column) if map_file else None
    from gliocore.pipeline.executor import make_executor
    executor = make_executor(getattr(args, "executor", "local"), getattr(args, "workers", 1),
                             getattr(args, "scheduler", None))
    bars = _Bars(disable=args.quiet)
    try:
        prepared = prepare_cohort(args.csv, root, out_root, id_column=args.id_column,
                                  naming=args.naming, mappings=mappings, options=options,
                                  progress=bars, executor=executor)
    finally:
        bars.close()
    print(f"preprocessing ({out_root}):\n{describe(prepared)}")
    return prepared


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = _parse_kv(args.backend_option)
    if args.label_map:
        opts["label_map"] = args.label_map
    if args.mask_pattern:
        opts["pattern"] = args.mask_pattern
    if args.weights_dir:
        opts["weights_dir"] = args.weights_dir
    if args.model_dir:
        opts["model_dir"] = args.model_dir
    if args.no_mirroring:
        opts["mirroring"] = False
    return opts


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store
    from gliocore.imaging.labels import get_label_map
    if args.backend is None:
        args.backend = (settings.demo_backend if args.demo or not args.csv
                        else settings.default_backend)
    if args.backend == "import" and not args.label_map:
        raise SystemExit("--backend import needs --label-map: which integers of the mask files "
                         "are contrast-enhancing and non-enhancing (brats, brats2023, hdglio-v2, "
                         "seed, glioscope, or a mapping such as '4:ce,1:ne,2:ne'); GlioScope does "
                         "not guess it")
    try:
        if args.reference_label_map != "auto":
            get_label_map(args.reference_label_map)
    except ValueError as exc:
        raise SystemExit(f"--reference-label-map: {exc}") from None
    if args.executor == "dask" and not args.scheduler:
        raise SystemExit("--executor dask needs --scheduler tcp://HOST:PORT (the address "
                         "`dask scheduler` prints)")
    cohort, _naming = _load_cohort_from_args(args, settings)
    store = Store(args.db or settings.db, run_wait=args.wait)
    from gliocore.location.localise import LocationConfig
    location = None if args.no_location else LocationConfig(
        space=args.space, atlas=args.atlas, transform=args.registration)
    config = ProcessingConfig(backend=args.backend, backend_options=_backend_options(args),
                              params=args.params, workers=args.workers,
                              output_dir=Path(args.output_dir) if args.output_dir else None,
                              executor=args.executor, scheduler=args.scheduler,
                              reference_label_map=args.reference_label_map,
                              location=location)
    bars = _Bars(disable=args.quiet)
    try:
        summary = process_cohort(cohort, store, config, progress=bars,
                                 subject_ids=args.subjects or None)
    finally:
        bars.close()
    print(f"cohort {cohort.name!r} ({summary.cohort_id}), backend {args.backend}, "
          f"store {store.path}")
    print(summary.describe())
    return 0 if not summary.errors else 2


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from gliocore.analysis.export import seed_table, write_table
    from gliocore.store import Store
    store = Store(args.db or settings.db)
    cohort_id = _pick_cohort(store, args.cohort)
    df = seed_table(store, cohort_id, args.config, only_processed=args.only_processed)
    path = write_table(df, Path(args.output))
    print(f"wrote {len(df)} rows x {df.shape[1]} columns to {path}")
    if args.scans_output or store.has_followups(cohort_id):
        from gliocore.analysis.export import scan_table
        out = Path(args.scans_output) if args.scans_output else \
            path.with_name(f"{path.stem}_scans{path.suffix}")
        scans = scan_table(store, cohort_id, args.config)
        write_table(scans, out)
        print(f"wrote the per-scan table ({len(scans)} scans x {scans.shape[1]} columns, "
              f"volumetric RANO 2.0 categories) to {out}")
    return 0


def _pick_cohort(store: Any, name_or_id: str | None) -> str:
    cohorts = store.cohorts()
    if cohorts.empty:
        raise SystemExit("the store has no cohort yet; run `python -m gliocore process` first")
    if name_or_id is None:
        return str(cohorts.iloc[0]["cohort_id"])
    hit = cohorts[(cohorts["cohort_id"] == name_or_id) | (cohorts["name"] == name_or_id)]
    if hit.empty:
        raise SystemExit(f"no cohort {name_or_id!r}; known: "
                         + ", ".join(f"{n} ({c})" for n, c in zip(cohorts["name"], cohorts["cohort_id"])))
    return str(hit.iloc[0]["cohort_id"])


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd
    from gliocore.store import Store
    store = Store(args.db or settings.db)
    cohort_id = _pick_cohort(store, args.cohort)
    info = store.cohort(cohort_id)
    st = store.status(cohort_id)
    print(f"cohort {info['name']!r} ({cohort_id}): {info['clinical_csv']}")
    print(f"{len(st)} subjects: {int(st['segmented'].sum())} segmented, "
          f"{int(st['features'].sum())} with features, {int(st['error'].notna().sum())} with errors")
    scans = store.scan_results(cohort_id)
    if (scans["scan_order"] > 0).any():
        print(f"{len(scans)} scans ({int((scans['scan_order'] > 0).sum())} follow-ups), "
              f"{int(scans['seg_key'].notna().sum())} with results; the table shows each "
              "subject's baseline scan, errors of other scans are prefixed with their scan")
    with pd.option_context("display.max_rows", None, "display.width", 160,
                           "display.max_colwidth", 80):
        cols = ["subject_id", "has_images", "segmented", "features", "backend", "error_stage", "error"]
        print(st[cols].fillna("").to_string(index=False))
    return 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from gliocore.validation.report import find_shared, run_validation
    shared = Path(args.shared) if args.shared else find_shared()
    if shared is None:
        print("no reference data found: pass --shared PATH (the folder with reference/ and cases/)")
        return 1
    report = run_validation(shared, parts=args.parts or None)
    text = report.to_markdown()
    print(text)
    out = Path(args.output) if args.output else settings.data_dir / "validation" / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"\nreport written to {out}")
    return 0 if report.ok else 3


def _process_parser(sub: Any) -> None:
    """The ``process`` sub-command's options."""
    pr = sub.add_parser("process", help="segment, extract features and cache a cohort")
    pr.add_argument("--csv", help="clinical CSV (SUBJECT ID, Survival(months), IDH-status, ...)")
    pr.add_argument("--root", help="image root (default: the CSV's folder)")
    pr.add_argument("--demo", action="store_true", help="the demo cohort (generated if absent)")
    pr.add_argument("--n-subjects", type=int, default=None, help="demo size")
    pr.add_argument("--name", help="cohort name (default: the CSV's folder name)")
    pr.add_argument("--naming", default=None,
                    help="file naming: tcga, brats, brats2023, nnunet, bet, or "
                         "'t1=_t1,t1c=_t1ce,t2=_t2,flair=_flair' (default: try all)")
    pr.add_argument("--id-column", default="SUBJECT ID")
    pr.add_argument("--scans", help="scans table, one row per scan: SUBJECT ID, scan_id and/or "
                    "days or date, img_dir (default: scans.csv beside the CSV if present, else "
                    "<subject>/<timepoint>/ folders, else one scan per subject)")
    pr.add_argument("--preprocess", default="auto", choices=["auto", "on", "off"],
                    help="raw scans (DICOM folders, NIfTI on several grids): N4, rigid "
                         "co-registration to T1c, brain extraction; auto: only when needed")
    pr.add_argument("--sequence-map", help="CSV deciding ambiguous DICOM series: SUBJECT ID, "
                                           "[scan_id,] series (number or description), sequence")
    pr.add_argument("--brain-model", default="auto", choices=["auto", "hdbet", "deepbet"],
                    help="brain extraction model (requirements-preprocess.txt); auto: HD-BET "
                         "on a GPU, deepbet on CPU")
    pr.add_argument("--brain-accurate", action="store_true",
                    help="HD-BET's five folds instead of fold 0 (slower)")
    pr.add_argument("--preprocess-space", default="native", choices=["native", "sri24"],
                    help="sri24: also register each preprocessed scan affinely to SRI24 (the "
                         "BraTS space); segmentation runs there, masks come back to native space "
                         "(volumes are native) and the location stage reuses the transform")
    pr.add_argument("--backend", default=None,
                    help="segmentation backend: stacked, baseline, learned, import, hdglio, nnunetv2 "
                         "(default: stacked for a cohort CSV, baseline for the demo)")
    pr.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    pr.add_argument("--label-map", help="label map of the backend's output, e.g. brats, "
                    "hdglio-v2, seed, or '4:ce,1:ne,2:ne' (required with --backend import)")
    pr.add_argument("--reference-suffix", default="_truth",
                    help="reference (ground-truth) masks for QC: <subject><SUFFIX>.nii.gz beside "
                         "the images (default _truth; _seg for BraTS cases; 'none' for no QC)")
    pr.add_argument("--reference-label-map", default="auto",
                    help="label map of the reference masks: auto (default: from the values and "
                         "the file naming where unambiguous — _truth = GlioScope's 1 = CE, "
                         "2 = NE; _seg or label 4 = BraTS; else a per-subject error asking for "
                         "this flag), glioscope, brats, brats2023, hdglio-v2, seed, or "
                         "'4:ce,1:ne,2:ne'")
    pr.add_argument("--mask-pattern", help="import backend: mask file relative to each scan's "
                    "folder, e.g. '{subject}_seg.nii.gz' or 'seg/{subject}_{scan}.nii.gz' (plain "
                    "{subject}/{scan} only; no absolute path, no '..')")
    pr.add_argument("--weights-dir", help="hdglio: folder with HD-GLIO's parameter files")
    pr.add_argument("--model-dir", help="nnunetv2: trained model folder")
    pr.add_argument("--no-mirroring", action="store_true", help="hdglio/nnunetv2: no test-time "
                    "mirroring (faster, slightly different masks)")
    pr.add_argument("--params", help="PyRadiomics YAML params (default: the seed's feature set)")
    pr.add_argument("--workers", type=int, default=1,
                    help="local executor: worker processes on this machine")
    pr.add_argument("--executor", choices=["local", "dask"], default="local",
                    help="where the work runs: processes on this machine (default) or a Dask "
                         "cluster that shares the images' and output folder's storage")
    pr.add_argument("--scheduler", help="dask executor: scheduler address, tcp://HOST:PORT")
    pr.add_argument("--output-dir", help="where masks are written (default data/segmentations)")
    pr.add_argument("--subjects", nargs="*", help="only these subject IDs")
    pr.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="when another run is processing into the same store, wait up to this "
                         "long for it to finish (default: refuse at once, saying who holds it)")
    pr.add_argument("--space", default="auto", choices=["auto", "sri24", "mni152", "native"],
                    help="atlas space of the images: auto = detect from grid + affine, else "
                         "register to --atlas (default auto)")
    pr.add_argument("--atlas", default="sri24", choices=["sri24", "mni152"],
                    help="template native-space subjects are registered to (default sri24)")
    pr.add_argument("--registration", default="SyN", choices=["Rigid", "Affine", "SyN"],
                    help="ANTs transform for native-space subjects (default SyN)")
    pr.add_argument("--no-location", action="store_true",
                    help="skip the atlas location stage")
    pr.set_defaults(func=cmd_process)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gliocore", description="GlioScope batch processing")
    p.add_argument("--db", help="DuckDB file (default data/gliocore.duckdb or $GLIOSCOPE_DB)")
    p.add_argument("--data-dir", help="data folder (default data/ or $GLIOSCOPE_DATA)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="generate the synthetic demo cohort (if absent)")
    d.add_argument("--n-subjects", type=int, default=None)
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=cmd_demo)

    _process_parser(sub)

    e = sub.add_parser("export", help="write the seed's wide table (CSV or Parquet)")
    e.add_argument("output", help="file ending in .csv or .parquet")
    e.add_argument("--cohort", help="cohort name or ID (default: the latest)")
    e.add_argument("--config", help="configuration key (default: the latest)")
    e.add_argument("--only-processed", action="store_true")
    e.add_argument("--scans-output", help="the long per-scan table (default, for a cohort with "
                   "follow-up scans: OUTPUT's name + _scans)")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("status", help="per-subject state and errors")
    s.add_argument("--cohort", help="cohort name or ID (default: the latest)")
    s.set_defaults(func=cmd_status)

    v = sub.add_parser("validate", help="check features, statistics and segmentation against "
                       "external references; print and write a Markdown report")
    v.add_argument("--shared", help="reference data folder (default ../shared beside the repo)")
    v.add_argument("--output", help="Markdown file (default data/validation/report.md)")
    v.add_argument("--parts", nargs="*", choices=["ibsi", "pyradiomics", "survival", "segmentation",
                                                 "real_gliomas", "learned_cv", "location"])
    v.set_defaults(func=cmd_validate)
    add_model_commands(sub, _pick_cohort)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    settings = Settings.from_env(**overrides)
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished subjects are saved, a re-run resumes", file=sys.stderr)
        return 130
    except StoreBusyError as exc:  # another run holds the store: say who, change nothing
        print(f"error: {exc}", file=sys.stderr)
        return 75
    except GlioError as exc:  # a cohort, file or setting GlioScope cannot use: say why, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder that cannot be written: say which, no traceback
        hint = (" — free space and run again; a processing run is recorded as failed and its "
                "finished subjects are kept") if exc.errno == errno.ENOSPC else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    except Exception as exc:  # the store's own errors (DuckDB: "No space left on device")
        if type(exc).__module__.split(".")[0] != "duckdb":
            raise
        print(f"error: the store could not be written ({exc}); free space and run again, "
              "finished subjects are kept", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
