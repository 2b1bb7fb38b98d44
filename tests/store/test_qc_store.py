"""QC in the pipeline and the store: which reference, read how, scored by which definition
(issue 8 points 3, 5 and 15)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import nibabel as nib
import numpy as np
import pytest

from gliocore.cli import main as cli_main
from gliocore.cohort.loading import load_cohort
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.plan import register_cohort
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

from cohorts import private_copy, tiny_cohort

N = 3


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny"), n=N, shape=(48, 48, 32), seed=5)


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    return private_copy(tiny_source, tmp_path)


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


# -- point 3: reference masks declare a label map ---------------------------------------------
def write_brats_references(cohort, transform=None):
    """Each subject's truth (1 = CE, 2 = NE) rewritten in BraTS labels (4 = CE, 2 = oedema) as
    ``<subject>_seg.nii.gz``; ``transform(i, array)`` may alter it."""
    for i, subj in enumerate(cohort.subjects):
        truth = nib.load(str(subj.reference_mask))
        t = np.asarray(truth.dataobj)
        brats = np.where(t == 1, 4, np.where(t == 2, 2, 0)).astype(np.uint8)
        if transform is not None:
            brats = transform(i, brats)
        nib.save(nib.Nifti1Image(brats, truth.affine),
                 str(subj.folder / f"{subj.subject_id}_seg.nii.gz"))


def test_brats_references_are_scored_through_the_brats_map_from_the_cli(cohort_csv, tmp_path,
                                                                         capsys):
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    write_brats_references(cohort)
    db = tmp_path / "cli.duckdb"
    rc = cli_main(["--db", str(db), "-q", "process", "--no-location", "--csv", str(cohort_csv),
                   "--backend", "import", "--mask-pattern", "{subject}_truth.nii.gz",
                   "--label-map", "glioscope", "--reference-suffix", "_seg",
                   "--reference-label-map", "brats"])
    assert rc == 0, capsys.readouterr().out
    store = Store(db)
    qc = store.qc_metrics(store.cohorts().iloc[0]["cohort_id"])
    assert len(qc) == 3 * N and np.allclose(qc["dice"], 1.0)  # the same masks, two label maps
    assert set(qc["reference_label_map"]) == {"brats"}


def test_reference_in_unknown_labels_is_a_per_subject_error(cohort_csv, tmp_path):
    """Declared as GlioScope's own map, a BraTS reference has value 4, which that map does not
    know: each subject gets a clear QC error, no silent score."""
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    write_brats_references(cohort)
    summary = process_cohort(load_cohort(cohort_csv, cohort_csv.parent, reference_suffix="_seg"),
                             Store(tmp_path / "g.duckdb"), ProcessingConfig(
                                 backend="import", reference_label_map="glioscope",
                                 backend_options={"pattern": "{subject}_truth.nii.gz",
                                                  "label_map": "glioscope"}))
    assert len(summary.errors) == N
    for err in summary.errors:
        assert err.stage == "qc" and "[4]" in err.message and "_seg" in str(err.path)
    assert Store(tmp_path / "g.duckdb").qc_metrics(summary.cohort_id).empty


def _no_enhancement(i, arr):
    """A lower-grade BraTS reference: the enhancing part is necrosis/non-enhancing core (1)."""
    return np.where(arr == 4, 1, arr).astype(np.uint8)


def test_brats_reference_without_label_4_is_read_as_brats_not_glioscope(cohort_csv, tmp_path):
    """Issue 18 point 7: only labels {1, 2} in a BraTS ``_seg`` file are necrosis and oedema, not
    GlioScope's 1 = contrast-enhancing; the undeclared map comes from the cohort's naming."""
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    write_brats_references(cohort, _no_enhancement)
    db = tmp_path / "g.duckdb"
    summary = process_cohort(load_cohort(cohort_csv, cohort_csv.parent, reference_suffix="_seg"),
                             Store(db), ProcessingConfig(
                                 backend="import",
                                 backend_options={"pattern": "{subject}_truth.nii.gz",
                                                  "label_map": "glioscope"}))
    assert not summary.errors, summary.describe()
    qc = Store(db).qc_metrics(summary.cohort_id)
    assert set(qc["reference_label_map"]) == {"brats"}
    ce = qc[qc["region"] == "contrast_enhancing"]
    assert len(ce) == N and not np.allclose(ce["dice"].fillna(0.0), 1.0)
    whole = qc[qc["region"] == "whole_tumour"]
    assert np.allclose(whole["dice"], 1.0)


def test_scores_read_with_the_old_default_are_redone_under_auto(cohort_csv, tmp_path):
    """A store whose BraTS ``_seg`` references (no label 4) were read with GlioScope's map, as the
    old default did, has them rescored as BraTS under ``auto``; nothing else is recomputed."""
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    write_brats_references(cohort, _no_enhancement)
    db = tmp_path / "g.duckdb"
    opts = {"pattern": "{subject}_truth.nii.gz", "label_map": "glioscope"}
    seg_cohort = load_cohort(cohort_csv, cohort_csv.parent, reference_suffix="_seg")
    process_cohort(seg_cohort, Store(db), ProcessingConfig(
        backend="import", reference_label_map="glioscope", backend_options=opts))
    again = process_cohort(seg_cohort, Store(db), ProcessingConfig(backend="import",
                                                                   backend_options=opts))
    assert not again.errors, again.describe()
    qc = Store(db).qc_metrics(again.cohort_id)
    assert set(qc["reference_label_map"]) == {"brats"}
    third = process_cohort(seg_cohort, Store(db), ProcessingConfig(backend="import",
                                                                   backend_options=opts))
    assert not third.computed and len(third.cached) == N


def test_ambiguous_reference_is_a_per_subject_error_naming_the_flag(cohort_csv, tmp_path):
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    for subj in cohort.subjects:   # GlioScope labels {1, 2} under a name that says nothing
        truth = nib.load(str(subj.reference_mask))
        nib.save(truth, str(subj.folder / f"{subj.subject_id}_ref.nii.gz"))
    summary = process_cohort(load_cohort(cohort_csv, cohort_csv.parent, reference_suffix="_ref"),
                             Store(tmp_path / "g.duckdb"), ProcessingConfig(
                                 backend="import",
                                 backend_options={"pattern": "{subject}_truth.nii.gz",
                                                  "label_map": "glioscope"}))
    assert len(summary.errors) == N
    for err in summary.errors:
        assert err.stage == "qc" and "--reference-label-map" in err.message
        assert "_ref" in str(err.path)


def test_float_reference_is_rounded_only_near_integers(cohort_csv, tmp_path):
    def soften(i, arr):
        out = arr.astype(np.float32)
        if i == 0:
            out[arr == 2] = 2 - 1e-6  # a float artefact of 2: read as 2, never truncated to 1
        if i == 1:
            out[arr == 2] = 1.5       # an interpolated mask: refused
        return out
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    write_brats_references(cohort, soften)
    db = tmp_path / "g.duckdb"
    summary = process_cohort(load_cohort(cohort_csv, cohort_csv.parent, reference_suffix="_seg"),
                             Store(db), ProcessingConfig(
                                 backend="import", reference_label_map="brats",
                                 backend_options={"pattern": "{subject}_truth.nii.gz",
                                                  "label_map": "glioscope"}))
    ids = sorted(s.subject_id for s in cohort.subjects)
    (err,) = summary.errors
    assert err.subject_id == ids[1] and err.stage == "qc" and "non-integer" in err.message
    qc = Store(db).qc_metrics(summary.cohort_id)
    first = qc[qc["subject_id"] == ids[0]]
    assert len(first) == 3 and np.allclose(first["dice"], 1.0)


# -- point 4: mask import needs a label map; a cohort without enhancement warns ----------------
def test_mask_import_has_no_default_label_map(cohort_csv, tmp_path, capsys):
    from gliocore.segment import get_segmenter
    with pytest.raises(ValueError, match="label map"):
        get_segmenter("import", pattern="{subject}_seg.nii.gz")
    with pytest.raises(SystemExit, match="--label-map"):
        cli_main(["--db", str(tmp_path / "x.duckdb"), "-q", "process", "--no-location", "--csv", str(cohort_csv),
                  "--backend", "import", "--mask-pattern", "{subject}_truth.nii.gz"])


def test_run_without_any_enhancing_voxel_warns_loudly(cohort_csv, tmp_path, capsys):
    """HD-GLIO-style masks read with the wrong map: every enhancing voxel becomes
    non-enhancing. The CLI prints a warning and the run record keeps it for the dashboard."""
    db = tmp_path / "cli.duckdb"
    rc = cli_main(["--db", str(db), "-q", "process", "--no-location", "--csv", str(cohort_csv),
                   "--backend", "import", "--mask-pattern", "{subject}_truth.nii.gz",
                   "--label-map", "1:ne,2:ne"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "WARNING: No subject has any contrast-enhancing voxel" in out
    store = Store(db)
    runs = store.runs(store.cohorts().iloc[0]["cohort_id"])
    assert "label map is probably wrong" in runs.iloc[0]["warnings"]
    # with the right map there is enhancement and no warning
    rc = cli_main(["--db", str(db), "-q", "process", "--no-location", "--csv", str(cohort_csv),
                   "--backend", "import", "--mask-pattern", "{subject}_truth.nii.gz",
                   "--label-map", "glioscope"])
    assert "WARNING" not in capsys.readouterr().out


def test_store_made_before_the_qc_columns_keeps_working(cohort_csv, tmp_path):
    """The new columns (subjects.reference_sha256, qc_metrics.hd95_pooled_mm /
    reference_label_map / qc_version, runs.warnings) arrive by additive migrations: a store
    without them opens, processes and scores."""
    db = tmp_path / "old.duckdb"
    Store(db)
    with duckdb.connect(str(db)) as con:
        for table, column in (("subjects", "reference_sha256"), ("qc_metrics", "hd95_pooled_mm"),
                              ("qc_metrics", "reference_label_map"),
                              ("qc_metrics", "qc_version"), ("runs", "warnings")):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    summary, store, cohort = run(cohort_csv, db)
    assert not summary.errors
    qc = store.qc_metrics(summary.cohort_id)
    assert set(qc["subject_id"]) == {s.subject_id for s in cohort.subjects}
    assert qc["hd95_pooled_mm"].notna().any()
