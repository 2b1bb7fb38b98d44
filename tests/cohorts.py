"""Tiny synthetic cohorts shared by the pipeline, QC, export and location tests.

A module-scoped *source* cohort is generated once per test module; each test that modifies files
works on its own :func:`private_copy`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

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
