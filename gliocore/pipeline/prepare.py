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
from gliocore.preprocess.detect import check_ready
from gliocore.preprocess.dicom import is_dicom_folder
from gliocore.preprocess.importer import (STAGE, find_dicom_scans, read_nifti_scan,
                                          read_raw_scan)
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


def prepare_cohort(csv_path: PathType, root: PathType, out_root: PathType, *,
                   id_column: str = ID_COLUMN, naming: str | None = None,
                   mappings: Mapping | None = None, options: PreprocessOptions | None = None,
                   progress: Progress | None = None) -> PreparedCohort:
    """Preprocess every raw subject of a cohort; pass already preprocessed ones through.

    Parameters
    ----------
    csv_path, root : path
        The clinical CSV and the image root, as for ``load_cohort``.
    out_root : path
        Where preprocessed scans and the scans table go (e.g. ``data/preprocessed/<cohort>``).
    mappings : mapping, optional
        The user's sequence decisions, from :func:`gliocore.preprocess.identify.read_mapping`.
    options : PreprocessOptions, optional
    progress : callable, optional
        ``progress(stage, done, total, subject)``.
    """
    csv_path, root, out_root = Path(csv_path).resolve(), Path(root).resolve(), Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    out = PreparedCohort(scans_csv=out_root / "scans.csv")
    schemes = get_naming(naming)
    folders = _folders(csv_path, root, id_column)
    for i, (sid, folder) in enumerate(folders):
        if progress:
            progress("prep", i, len(folders), sid)
        try:
            if folder != root and is_dicom_folder(folder):
                _dicom_subject(sid, folder, out_root, mappings, options, out)
            else:
                _nifti_subject(sid, folder, schemes, out_root, options, out)
        except SubjectError as err:
            out.problems.append(err)
        except (GlioError, OSError, RuntimeError, ValueError) as exc:
            out.problems.append(SubjectError(sid, f"{type(exc).__name__}: {exc}", path=str(folder),
                                             stage=STAGE))
    if progress:
        progress("prep", len(folders), len(folders), None)
    _write_scans(out)
    return out


def _dicom_subject(sid: str, folder: Path, out_root: Path, mappings, options, out: PreparedCohort
                   ) -> None:
    scans, problems = find_dicom_scans(folder, sid, mappings)
    out.problems.extend(problems)
    for scan in scans:
        try:
            images, hashes = read_raw_scan(scan)
            dest = out_root / sid / scan.scan_id
            res = preprocess_scan(images, dest, sid, hashes, options)
        except SubjectError as err:
            out.problems.append(err)
            continue
        except (GlioError, RuntimeError, ValueError) as exc:
            out.problems.append(SubjectError(
                sid, f"preprocessing failed: {type(exc).__name__}: {exc}", stage=STAGE,
                scan_id=None if scan.scan_id == BASELINE_SCAN else scan.scan_id))
            continue
        out.results[(sid, scan.scan_id)] = res
        out.rows.append({"SUBJECT ID": sid, "scan_id": scan.scan_id,
                         "days": "" if scan.days is None else scan.days, "img_dir": str(dest)})


def _nifti_subject(sid: str, folder: Path, schemes, out_root: Path, options, out: PreparedCohort
                   ) -> None:
    paths, _ = find_sequences(folder, sid, schemes, own_folder=folder.name == sid or None)
    ready = check_ready(paths)
    if ready.ready:
        out.passthrough.append(sid)
        out.rows.append({"SUBJECT ID": sid, "scan_id": BASELINE_SCAN, "days": 0,
                         "img_dir": str(folder)})
        return
    images, hashes = read_nifti_scan(paths)
    dest = out_root / sid / BASELINE_SCAN
    out.results[(sid, BASELINE_SCAN)] = preprocess_scan(images, dest, sid, hashes, options)
    out.rows.append({"SUBJECT ID": sid, "scan_id": BASELINE_SCAN, "days": 0, "img_dir": str(dest)})


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
