"""QC in the pipeline and the store: which reference, read how, scored by which definition
(issue 8 points 3, 5 and 15)."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import nibabel as nib
import numpy as np
import pytest

from gliocore import synth
from gliocore.cohort import load_cohort
from gliocore.pipeline import ProcessingConfig, process_cohort, register_cohort
from gliocore.store import Store

N = 3


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    out = Path(synth.make_tiny_cohort(tmp_path_factory.mktemp("tiny"), n=N, shape=(48, 48, 32),
                                      seed=5))
    return out if out.suffix == ".csv" else out / "clinical.csv"


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_source.parent, dst)
    return dst / tiny_source.name


def run(csv: Path, db: Path, **kw):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(db)
    return process_cohort(cohort, store, ProcessingConfig(**kw)), store, cohort


# -- point 5: scores follow the current reference ----------------------------------------------
def test_removed_or_changed_reference_takes_its_scores_off_screen(cohort_csv, tmp_path):
    db = tmp_path / "g.duckdb"
    summary, store, cohort = run(cohort_csv, db)
    qc = store.qc_metrics(summary.cohort_id)
    assert set(qc["subject_id"]) == {s.subject_id for s in cohort.subjects}
    gone, edited = cohort.subjects[0], cohort.subjects[1]
    Path(gone.reference_mask).unlink()
    img = nib.load(str(edited.reference_mask))
    data = np.asarray(img.dataobj).copy()
    data[data == 1] = 2  # the reference now says there is no enhancement
    nib.save(nib.Nifti1Image(data, img.affine), str(edited.reference_mask))
    # loading the cohort again (dashboard "load", or the next run) is enough to hide old scores
    register_cohort(store, load_cohort(cohort_csv, cohort_csv.parent, name="tiny"))
    qc = store.qc_metrics(summary.cohort_id)
    assert gone.subject_id not in set(qc["subject_id"])
    assert edited.subject_id not in set(qc["subject_id"])
    # processing again scores the edited reference (only QC is recomputed)
    summary, store, _ = run(cohort_csv, db)
    qc = store.qc_metrics(summary.cohort_id).set_index(["subject_id", "region"])
    assert gone.subject_id not in qc.index.get_level_values(0)
    assert qc.loc[(edited.subject_id, "contrast_enhancing"), "volume_ref_mm3"] == 0.0


# -- point 15: both HD95 definitions are stored; older scores are recomputed ------------------
def test_qc_rows_carry_both_hd95_definitions_and_old_scores_are_redone(cohort_csv, tmp_path):
    db = tmp_path / "g.duckdb"
    summary, store, cohort = run(cohort_csv, db)
    qc = store.qc_metrics(summary.cohort_id)
    scored = qc.dropna(subset=["hd95_mm"])
    assert not scored.empty and scored["hd95_pooled_mm"].notna().all()
    assert (scored["hd95_mm"] >= scored["hd95_pooled_mm"] - 1e-9).all()
    # a store scored by the old definition (no version): not shown, and recomputed by a run
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE qc_metrics SET qc_version = NULL, hd95_pooled_mm = NULL")
    assert store.qc_metrics(summary.cohort_id).empty
    again, store, _ = run(cohort_csv, db)
    assert not again.errors
    assert len(store.qc_metrics(again.cohort_id)) == len(qc)
