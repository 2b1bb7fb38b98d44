"""The preprocessing stage: raw subjects (DICOM or raw NIfTI) become BraTS-style scans.

Runs before :func:`gliocore.pipeline.runner.process_cohort`. Each subject folder is one of:

* a DICOM folder: studies become scans (ordered by day), sequences are identified, and each
  scan is preprocessed (N4, rigid co-registration to T1c, brain extraction);
* four NIfTI files already preprocessed (one grid, zero background): passed through untouched
  (the scans table points at the original folder, so contents and hashes are unchanged);
* four raw NIfTI files (several grids or a skull): preprocessed like DICOM.

Results are cached by content in ``out_root/<subject>/<scan>/preprocess.json`` (see
:func:`gliocore.preprocess.scan.cache_key`). A failure stops only its scan. The output is a
scans table (``out_root/scans.csv``) that :func:`gliocore.cohort.loading.load_cohort` reads.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gliocore.cohort.clinical import ID_COLUMN, IMG_DIR_COLUMN, read_clinical
from gliocore.cohort.naming import find_sequences, get_naming
from gliocore.cohort.scans import subject_folder
from gliocore.errors import GlioError, SubjectError
from gliocore.imaging.io import read_geometry
from gliocore.pipeline.executor import Executor, LocalExecutor
from gliocore.preprocess.decisions import save_identifications, scan_record
from gliocore.preprocess.detect import check_ready
from gliocore.preprocess.dicom import is_dicom_folder
from gliocore.preprocess.importer import (STAGE, RawScan, identify_dicom_scans, read_nifti_scan,
                                          read_raw_scan, undecided_error)
from gliocore.preprocess.scan import (CACHE_FILE, PreprocessOptions, PreprocessResult,
                                      preprocess_scan)
from gliocore.types import BASELINE_SCAN, PathType

Progress = Callable[[str, int, int, "str | None"], None]


@dataclass
class PreparedCohort:
    """What the preprocessing stage made of a cohort.

    Attributes
    ----------
    scans_csv : Path
        Scans table (SUBJECT ID, scan_id, days, img_dir) for ``load_cohort``.
    results : dict
        (subject, scan) -> PreprocessResult, for preprocessed scans.
    passthrough : list of str
        Subjects whose files were already preprocessed and pass through untouched.
    problems : list of SubjectError
        One per scan that failed (the message names the series or file).
    """

    scans_csv: Path
    results: dict[tuple[str, str], PreprocessResult] = field(default_factory=dict)
    passthrough: list[str] = field(default_factory=list)
    problems: list[SubjectError] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


def _folders(csv_path: Path, root: Path, id_column: str) -> list[tuple[str, Path]]:
    clinical, _ = read_clinical(csv_path, id_column=id_column)
    out = []
    for _, row in clinical.iterrows():
        sid = str(row[ID_COLUMN])
        out.append((sid, subject_folder(sid, row.get(IMG_DIR_COLUMN), root, csv_path.parent)))
    return out


def needs_preprocessing(csv_path: PathType, root: PathType, id_column: str = ID_COLUMN,
                        naming: str | None = None) -> bool:
    """Cheap check (headers only): does any subject hold DICOM or NIfTI on several grids?"""
    csv_path, root = Path(csv_path).resolve(), Path(root).resolve()
    schemes = get_naming(naming)
    for sid, folder in _folders(csv_path, root, id_column):
        if folder != root and is_dicom_folder(folder):
            return True
        try:
            paths, _ = find_sequences(folder, sid, schemes)
        except SubjectError:
            continue
        try:
            grids = {(tuple(s), a.round(3).tobytes()) for s, a in map(read_geometry, paths.values())}
        except (GlioError, OSError, ValueError):
            continue
        if len(grids) > 1:
            return True
    return False


@dataclass(frozen=True)
class ScanJob:
    """One scan to preprocess: picklable, so that an executor's worker can run it.

    Attributes
    ----------
    subject_id, scan_id : str
    days : float or None
        Days from the subject's first scan (DICOM study dates); None when unknown.
    dest : Path
        The scan's output folder (its ``preprocess.json`` is the cache).
    source : str
        The subject's folder (named in errors).
    raw : RawScan, optional
        The DICOM series of the scan; None for raw NIfTI.
    paths : dict, optional
        Sequence -> NIfTI file, for raw NIfTI.
    options : PreprocessOptions, optional
    """

    subject_id: str
    scan_id: str
    days: float | None
    dest: Path
    source: str
    raw: RawScan | None = None
    paths: dict[str, Path] | None = None
    options: PreprocessOptions | None = None


@dataclass(frozen=True)
class ScanFailure:
    """Why a scan job failed (a picklable stand-in for its SubjectError)."""

    subject_id: str
    message: str
    path: str | None
    scan_id: str | None

    def error(self) -> SubjectError:
        return SubjectError(self.subject_id, self.message, path=self.path, stage=STAGE,
                            scan_id=self.scan_id)


def run_scan_job(job: ScanJob) -> PreprocessResult | ScanFailure:
    """Preprocess one scan (on a worker): read its images, N4, co-registration, brain
    extraction, outputs in ``job.dest``. A failure is returned, naming the series or file."""
    scan_id = None if job.scan_id == BASELINE_SCAN else job.scan_id
    try:
        if job.raw is not None:
            images, hashes = read_raw_scan(job.raw)
        else:
            images, hashes = read_nifti_scan(job.paths)
        return preprocess_scan(images, job.dest, job.subject_id, hashes, job.options)
    except SubjectError as err:
        return ScanFailure(err.subject_id, err.message, err.path, err.scan_id)
    except (GlioError, OSError, RuntimeError, ValueError) as exc:
        what = "preprocessing failed: " if job.raw is not None else ""
        return ScanFailure(job.subject_id, f"{what}{type(exc).__name__}: {exc}",
                           None if job.raw is not None else job.source, scan_id)


def prepare_cohort(csv_path: PathType, root: PathType, out_root: PathType, *,
                   id_column: str = ID_COLUMN, naming: str | None = None,
                   mappings: Mapping | None = None, options: PreprocessOptions | None = None,
                   progress: Progress | None = None,
                   executor: Executor | None = None) -> PreparedCohort:
    """Preprocess every raw subject of a cohort; pass already preprocessed ones through.

    The scans are found and their sequences identified here (headers only); the preprocessing of
    each scan runs on ``executor`` like the pipeline's other stages.

    Parameters
    ----------
    csv_path, root : path
        The clinical CSV and the image root, as for ``load_cohort``.
    out_root : path
        Where preprocessed scans, the scans table and the identification record
        (:mod:`gliocore.preprocess.decisions`) go (e.g. ``data/preprocessed/<cohort>``).
    mappings : mapping, optional
        The user's sequence decisions, from :func:`gliocore.preprocess.identify.read_mapping`.
    options : PreprocessOptions, optional
    progress : callable, optional
        ``progress(stage, done, total, subject)``: stage ``identify`` per subject, then
        ``prep`` per scan.
    executor : Executor, optional
        Where the scans are preprocessed (default: in this process, one after another).
    """
    csv_path, root, out_root = Path(csv_path).resolve(), Path(root).resolve(), Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    out = PreparedCohort(scans_csv=out_root / "scans.csv")
    jobs, order, records = _plan(csv_path, root, out_root, id_column, naming, mappings,
                                 options or PreprocessOptions(), progress, out)
    save_identifications(out_root, records)
    executor = executor or LocalExecutor(1)
    gpu = bool(jobs) and _wants_gpu(options or PreprocessOptions())
    if progress and jobs:
        progress("prep", 0, len(jobs), None)
    finished = executor.map_unordered(run_scan_job, jobs, parallel_safe=not gpu,
                                      resources=lambda _job: {"GPU": 1} if gpu else None)
    for done, (job, result) in enumerate(finished, start=1):
        if progress:
            progress("prep", done, len(jobs), job.subject_id)
        if isinstance(result, PreprocessResult):
            out.results[(job.subject_id, job.scan_id)] = result
            out.rows.append({"SUBJECT ID": job.subject_id, "scan_id": job.scan_id,
                             "days": "" if job.days is None else job.days,
                             "img_dir": str(job.dest)})
        elif isinstance(result, ScanFailure):
            out.problems.append(result.error())
        else:  # the worker died (an exception from the executor)
            out.problems.append(SubjectError(
                job.subject_id, f"preprocessing failed: {result}", stage=STAGE,
                scan_id=None if job.scan_id == BASELINE_SCAN else job.scan_id))
    if progress:
        progress("prep", len(jobs), len(jobs), None)
    out.rows.sort(key=lambda r: order[(r["SUBJECT ID"], r["scan_id"])])
    out.problems.sort(key=lambda e: order.get((e.subject_id, e.scan_id or BASELINE_SCAN),
                                              order.get((e.subject_id, None), -1)))
    _write_scans(out)
    return out


def identify_cohort(csv_path: PathType, root: PathType, out_root: PathType, *,
                    id_column: str = ID_COLUMN, naming: str | None = None,
                    mappings: Mapping | None = None) -> tuple[list[dict], int, list[SubjectError]]:
    """The stage's first half only (headers, no pixel): find the scans, identify the DICOM
    sequences and record them (``identification.json`` in ``out_root``), e.g. right after a
    cohort is loaded so that the user can decide ambiguous series before processing.

    Returns
    -------
    (records, n_to_preprocess, problems)
        The identification records (:func:`gliocore.preprocess.decisions.scan_record`), how many
        scans the stage would preprocess, and the problems found (undecided scans among them).
    """
    csv_path, root, out_root = Path(csv_path).resolve(), Path(root).resolve(), Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    out = PreparedCohort(scans_csv=out_root / "scans.csv")
    jobs, _order, records = _plan(csv_path, root, out_root, id_column, naming, mappings,
                                  PreprocessOptions(), None, out)
    save_identifications(out_root, records)
    return records, len(jobs), out.problems


def _wants_gpu(options: PreprocessOptions) -> bool:
    """HD-BET on a GPU (``device="cuda"``, or ``"auto"`` where this process sees one): one scan
    at a time on a local machine, and on Dask only on workers started with ``--resources GPU=1``
    (deepbet, the threshold method and HD-BET on CPU run anywhere)."""
    from gliocore.preprocess.brain import resolve_backend
    try:
        if options.device == "cpu" or resolve_backend(options.brain_backend) != "hdbet":
            return False
        import torch
        return options.device == "cuda" or torch.cuda.is_available()
    except (GlioError, ImportError):  # no model installed: each scan's task says so
        return False


def _plan(csv_path: Path, root: Path, out_root: Path, id_column: str, naming, mappings,
          options: PreprocessOptions, progress, out: PreparedCohort
          ) -> tuple[list[ScanJob], dict, list[dict]]:
    """Find each subject's scans (headers only): jobs to run, passed-through rows and problems
    into ``out``; the planned order of (subject, scan) and the DICOM identification records."""
    schemes = get_naming(naming)
    folders = _folders(csv_path, root, id_column)
    jobs: list[ScanJob] = []
    records: list[dict] = []
    order: dict = {}
    for i, (sid, folder) in enumerate(folders):
        if progress:
            progress("identify", i, len(folders), sid)
        order[(sid, None)] = len(order)
        try:
            if folder != root and is_dicom_folder(folder):
                found, problems = identify_dicom_scans(folder, sid, mappings)
                out.problems.extend(problems)
                for scan in found:
                    order[(sid, scan.scan_id)] = len(order)
                    records.append(scan_record(scan))
                    if not scan.identification.complete:
                        out.problems.append(undecided_error(scan, folder))
                        continue
                    jobs.append(ScanJob(sid, scan.scan_id, scan.days,
                                        out_root / sid / scan.scan_id, str(folder), raw=scan,
                                        options=options))
                continue
            paths, _ = find_sequences(folder, sid, schemes, own_folder=folder.name == sid or None)
            order[(sid, BASELINE_SCAN)] = len(order)
            if check_ready(paths).ready:
                out.passthrough.append(sid)
                out.rows.append({"SUBJECT ID": sid, "scan_id": BASELINE_SCAN, "days": 0,
                                 "img_dir": str(folder)})
            else:
                jobs.append(ScanJob(sid, BASELINE_SCAN, 0, out_root / sid / BASELINE_SCAN,
                                    str(folder), paths=dict(paths), options=options))
        except SubjectError as err:
            out.problems.append(err)
        except (GlioError, OSError, RuntimeError, ValueError) as exc:
            out.problems.append(SubjectError(sid, f"{type(exc).__name__}: {exc}", path=str(folder),
                                             stage=STAGE))
    if progress:
        progress("identify", len(folders), len(folders), None)
    return jobs, order, records


def load_prepared(csv_path: PathType, root: PathType | None, out_root: PathType, *,
                  mode: str = "auto", id_column: str = ID_COLUMN, naming: str | None = None,
                  name: str | None = None, mapping_file: PathType | None = None,
                  options: PreprocessOptions | None = None, executor: Executor | None = None,
                  progress: Progress | None = None, reference_suffix: str | None = "_truth"):
    """Load a cohort, preprocessing its raw subjects first when ``mode`` asks (the dashboard's
    path; the CLI's ``--preprocess``).

    Parameters
    ----------
    mode : {"auto", "on", "off"}
        ``auto``: only when a subject holds DICOM or NIfTI on several grids (headers only).
    mapping_file : path, optional
        The user's sequence decisions (``--sequence-map``'s CSV); read when it exists.
    Other parameters as for :func:`prepare_cohort` and ``load_cohort``.

    Returns
    -------
    (cohort, prepared)
        The loaded cohort (the stage's problems added to its own) and the
        :class:`PreparedCohort`, or None when the stage did not run.
    """
    from gliocore.cohort.loading import load_cohort
    from gliocore.preprocess.identify import read_mapping
    root = Path(root) if root else Path(csv_path).resolve().parent
    prepared = None
    if mode == "on" or (mode == "auto" and needs_preprocessing(csv_path, root, id_column, naming)):
        mappings = (read_mapping(mapping_file, id_column)
                    if mapping_file and Path(mapping_file).is_file() else None)
        prepared = prepare_cohort(csv_path, root, out_root, id_column=id_column, naming=naming,
                                  mappings=mappings, options=options, progress=progress,
                                  executor=executor)
    cohort = load_cohort(csv_path, root, naming=None if prepared and prepared.results else naming,
                         id_column=id_column, name=name,
                         scans=None if prepared is None else prepared.scans_csv,
                         reference_suffix=reference_suffix)
    if prepared is not None:
        cohort.problems.extend(prepared.problems)
    return cohort, prepared


def _write_scans(out: PreparedCohort) -> None:
    with open(out.scans_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["SUBJECT ID", "scan_id", "days", "img_dir"])
        w.writeheader()
        w.writerows(out.rows)


def describe(prepared: PreparedCohort) -> str:
    """Per scan, the steps and their figures (for the CLI); no identifier beyond the subject ID."""
    lines = []
    for sid in prepared.passthrough:
        lines.append(f"  {sid}: already preprocessed (one grid, zero background): passed through")
    for (sid, scan), r in sorted(prepared.results.items()):
        sim = ", ".join(f"{s} MI {v['mi_before']:.2f}->{v['mi_after']:.2f}"
                        for s, v in r.similarity.items())
        secs = ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items())
        atlas = "" if not r.atlas else (f", affine to {r.atlas['space']} (brain Dice "
                                        f"{r.atlas['brain_dice']:.2f})")
        lines.append(f"  {sid}/{scan}: {'cached' if r.cached else 'done'}; N4, rigid to T1c "
                     f"({sim}), brain {r.brain_ml:.0f} ml ({r.model}){atlas}; {secs}")
        lines.extend(f"    QC: {flag}" for flag in r.flags)
    for err in prepared.problems:
        lines.append(f"  error: {err}")
    return "\n".join(lines)


def status_table(out_root: PathType) -> list[dict]:
    """One row per preprocessed scan under ``out_root`` (its ``preprocess.json``): brain volume,
    model, similarity after registration, field-of-view coverage and QC flags (for the Cohort page).
    """
    import json
    rows = []
    for f in sorted(Path(out_root).glob(f"*/*/{CACHE_FILE}")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        rows.append({"subject_id": f.parent.parent.name, "scan_id": f.parent.name,
                     "brain_ml": r.get("brain_ml"), "model": r.get("model"),
                     "mi_after": ", ".join(f"{s} {v['mi_after']:.2f}"
                                           for s, v in (r.get("similarity") or {}).items()),
                     "coverage": ", ".join(f"{s} {v:.0%}" for s, v in (r.get("coverage") or {}).items()),
                     "seconds": round(sum((r.get("seconds") or {}).values()), 1),
                     "flags": "; ".join(r.get("flags") or []) or None})
    return rows
