"""Tiny synthetic cohorts shared by the pipeline, QC, export and location tests.

A module-scoped *source* cohort is generated once per test module; each test that modifies files
works on its own :func:`private_copy`.
"""
from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from gliocore.cohort import synth


def clinical_csv(generated: str | Path) -> Path:
    """The clinical table of a generated cohort (generators return the CSV or its folder)."""
    out = Path(generated)
    return out if out.suffix == ".csv" else out / "clinical.csv"


def tiny_cohort(folder: Path, *, n: int, shape: tuple[int, int, int], seed: int) -> Path:
    """A phantom cohort of ``n`` subjects at ``shape`` (:func:`gliocore.cohort.synth.make_tiny_cohort`)."""
    return clinical_csv(synth.make_tiny_cohort(folder, n=n, shape=shape, seed=seed))


def private_copy(source_csv: Path, tmp_path: Path) -> Path:
    """A copy of the cohort folder of ``source_csv`` under ``tmp_path`` (tests edit its files)."""
    dst = tmp_path / "cohort"
    shutil.copytree(source_csv.parent, dst)
    return dst / source_csv.name


# -- cohort zips (uploads) ----------------------------------------------------------------
SUFFIXES = ("_t1", "_t1Gd", "_t2", "_flair")
CSV = ("SUBJECT ID,Survival(months),IDH-status,event\nS1,12.5,mutant,1\nS2,7,wildtype,0\n")


def nifti_bytes(seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).random((6, 7, 5)).astype(np.float32) + 1
    img = nib.Nifti1Image(data, np.eye(4))
    return gzip.compress(img.to_bytes(), mtime=0)


def cohort_entries(csv: str = CSV, prefix: str = "cohort/") -> dict[str, bytes]:
    files = {f"{prefix}clinical.csv": csv.encode()}
    for i, sid in enumerate(("S1", "S2")):
        for suffix in SUFFIXES:
            files[f"{prefix}images/{sid}/{sid}{suffix}.nii.gz"] = nifti_bytes(i)
    return files


def make_zip(entries: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]],
             method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()
