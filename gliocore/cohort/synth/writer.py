"""Writing the demo cohort: deterministic NIfTI files in TCGA layout and the clinical table,
resumable, optionally in a process pool.
"""
from __future__ import annotations

import concurrent.futures as cf
import gzip
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from gliocore.types import SEQUENCES, PathType

from .clinical import simulate_clinical
from .params import (
    FILE_SUFFIX,
    REFERENCE_SHAPE,
    TRUTH_SUFFIX,
    SyntheticSubject,
    _check_seed,
    _check_shape,
    _check_spacing,
    _draw_params,
    _subject_rng,
)
from .phantom import generate_subject
from .sites import read_site, scanner_score, site_of

#: Beside ``clinical.csv``: the same subjects with survival drawn without the tumour-volume
#: effect (age and IDH only), a noise-only outcome on which an image signature has nothing to add.
NOISE_CSV = "clinical_noise.csv"

# -- cohort writing ------------------------------------------------------------------------

def subject_ids(n_subjects: int) -> list[str]:
    """Demo subject IDs: DEMO-001, DEMO-002, ..."""
    width = max(3, len(str(n_subjects)))
    return [f"DEMO-{i + 1:0{width}d}" for i in range(n_subjects)]


def _subject_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def _file_names(sid: str) -> dict[str, str]:
    names = {seq: f"{sid}_{FILE_SUFFIX[seq]}.nii.gz" for seq in SEQUENCES}
    names[TRUTH_SUFFIX] = f"{sid}_{TRUTH_SUFFIX}.nii.gz"
    return names


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write gzip NIfTI deterministically (no time stamp or name in the gzip header), atomically."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    payload = gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, path)


def write_subject(subject: SyntheticSubject, folder: PathType) -> dict[str, Path]:
    """Write a subject's four sequences (int16) and truth mask (uint8) in TCGA naming."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = _file_names(subject.subject_id)
    paths: dict[str, Path] = {}
    for seq in SEQUENCES:
        paths[seq] = folder / names[seq]
        _write_nifti(subject.images[seq].astype(np.int16), subject.affine, paths[seq])
    paths[TRUTH_SUFFIX] = folder / names[TRUTH_SUFFIX]
    _write_nifti(subject.truth.astype(np.uint8), subject.affine, paths[TRUTH_SUFFIX])
    return paths


def _subject_complete(folder: Path, sid: str) -> bool:
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0
               for name in _file_names(sid).values())


def _make_one(sid: str, sub_seed: int, shape: tuple[int, int, int], spacing: float,
              folder: str) -> tuple[str, float, float, str, float, str, str]:
    """Generate and write one subject (top level so a process pool can run it)."""
    try:  # one BLAS thread per worker process: the pool already uses the cores
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        s = generate_subject(sid, sub_seed, shape, spacing)
    else:
        with threadpool_limits(limits=1):
            s = generate_subject(sid, sub_seed, shape, spacing)
    write_subject(s, folder)
    return (sid, s.volume_ce_mm3, s.volume_ne_mm3, s.idh_status, s.age, s.sex,
            site_of(scanner_score(s.images)))


def _read_existing(sid: str, sub_seed: int, folder: Path, site: str | None = None
                   ) -> tuple[str, float, float, str, float, str, str]:
    """Volumes from an existing truth file; patient parameters redrawn (cheap, deterministic);
    the site from the clinical table already written, else from the images."""
    img = nib.load(str(folder / _file_names(sid)[TRUTH_SUFFIX]))
    truth = np.asarray(img.dataobj)
    vox = float(abs(np.linalg.det(img.affine[:3, :3])))
    p = _draw_params(_subject_rng(sub_seed)[0])
    return sid, float((truth == 1).sum()) * vox, float((truth == 2).sum()) * vox, \
        p.idh_status, p.age, p.sex, site or read_site(folder, sid)


def generate_demo_cohort(out_dir: PathType, n_subjects: int = 30, seed: int = 0,
                         shape: Sequence[int] = REFERENCE_SHAPE,
                         progress: Callable[[int, int], None] | None = None,
                         workers: int = 1, spacing: float = 1.0) -> Path:
    """Write a synthetic cohort in TCGA layout and return its clinical CSV.

    Layout: ``out_dir/TCGA/<subject>/<subject>_{flair,t1,t1Gd,t2,truth}.nii.gz`` and
    ``out_dir/clinical.csv`` (columns ``SUBJECT ID``, ``img_dir``, ``Survival(months)``,
    ``IDH-status``, ``age``, ``sex``, ``event``, ``site``: the scanner, see
    :mod:`~gliocore.cohort.synth.sites`). Load it with
    ``gliocore.cohort.loading.load_cohort(csv)``. Beside it, ``clinical_noise.csv``
    (:data:`NOISE_CSV`) holds the same subjects with a noise-only outcome for the images.

    Idempotent and resumable: subjects whose five files exist are not regenerated (files are
    written to a temporary name and renamed), and the CSV is written last, atomically. The same
    seed and shape give byte-identical files.

    Parameters
    ----------
    out_dir : path
    n_subjects : int
        >= 1.
    seed : int
    shape : 3 ints
        Grid shape; anatomy scales with it (see :func:`generate_subject`).
    progress : callable(done, total), optional
        Called after each subject.
    workers : int
        Processes to use (1 = in this process). Worker processes are *spawned*, so a script
        that calls this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.
    spacing : float
        Voxel size in mm.

    Returns
    -------
    Path
        ``out_dir/clinical.csv``.
    """
    _check_counts(n_subjects, workers)
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    _check_spacing(spacing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = subject_ids(int(n_subjects))
    seeds = {sid: _subject_seed(seed, i) for i, sid in enumerate(ids)}
    folders = {sid: out / "TCGA" / sid for sid in ids}
    results = _write_subjects(ids, seeds, folders, shape, spacing, workers, progress,
                              _known_sites(out / "clinical.csv"))
    return _write_clinical(out, ids, [results[sid] for sid in ids], seed)


def _check_counts(n_subjects: int, workers: int) -> None:
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) \
            or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")


def _known_sites(csv: Path) -> dict[str, str]:
    """Sites of a clinical table written earlier (none when absent or older than the column)."""
    try:
        old = pd.read_csv(csv, dtype={"SUBJECT ID": str, "site": str})
    except (OSError, ValueError):
        return {}
    return dict(zip(old["SUBJECT ID"], old["site"])) if "site" in old else {}


def _write_subjects(ids: list[str], seeds: dict[str, int], folders: dict[str, Path],
                    shape: tuple[int, int, int], spacing: float, workers: int,
                    progress: Callable[[int, int], None] | None,
                    sites: dict[str, str] | None = None) -> dict[str, tuple]:
    """Write the subjects not yet complete (in a spawned pool when ``workers > 1``) and return
    each subject's (id, CE volume, NE volume, IDH status, age, sex, site)."""
    results: dict[str, tuple] = {}
    todo = []
    for sid in ids:
        if _subject_complete(folders[sid], sid):
            results[sid] = _read_existing(sid, seeds[sid], folders[sid], (sites or {}).get(sid))
        else:
            todo.append(sid)
    total = len(ids)

    def report() -> None:
        if progress is not None:
            progress(len(results), total)

    if results:
        report()
    if workers == 1 or len(todo) <= 1:
        for sid in todo:
            results[sid] = _make_one(sid, seeds[sid], shape, spacing, str(folders[sid]))
            report()
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(int(workers), len(todo)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_make_one, sid, seeds[sid], shape, spacing,
                                   str(folders[sid])) for sid in todo]
            for fut in cf.as_completed(futures):
                res = fut.result()
                results[res[0]] = res
                report()
    return results


def _write_clinical(out: Path, ids: list[str], rows: list[tuple], seed: int) -> Path:
    """Draw the clinical table from the subjects' volumes and write ``clinical.csv`` (and the
    noise-only :data:`NOISE_CSV`) atomically; returns ``clinical.csv``."""
    volumes = np.maximum(np.array([ce + ne for _, ce, ne, *_ in rows]), 1.0)
    for name, volume_effect in ((NOISE_CSV, 0.0), ("clinical.csv", None)):
        kw = {} if volume_effect is None else {"log_hr_per_log_volume": volume_effect}
        clinical = simulate_clinical(volumes,
                                     np.random.default_rng(np.random.SeedSequence([seed, 104729])),
                                     idh_status=[r[3] for r in rows], age=[r[4] for r in rows],
                                     sex=[r[5] for r in rows], **kw)
        table = pd.DataFrame({"SUBJECT ID": ids,
                              "img_dir": [f"TCGA/{sid}" for sid in ids],
                              "Survival(months)": clinical["Survival(months)"],
                              "IDH-status": clinical["IDH-status"],
                              "age": clinical["age"], "sex": clinical["sex"],
                              "event": clinical["event"], "site": [r[6] for r in rows]})
        csv = out / name
        tmp = csv.with_name(f".{csv.name}.{os.getpid()}.tmp")
        table.to_csv(tmp, index=False)
        os.replace(tmp, csv)
    return csv


def make_tiny_cohort(tmp_dir: PathType, n: int = 4, shape: Sequence[int] = (48, 48, 32),
                     seed: int = 0) -> Path:
    """A small demo cohort for tests (same code path as :func:`generate_demo_cohort`)."""
    return generate_demo_cohort(tmp_dir, n_subjects=n, seed=seed, shape=shape)
