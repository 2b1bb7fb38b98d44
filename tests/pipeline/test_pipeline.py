"""Processing pipeline and store: cache hits, partial recompute, resume after a crash, errors,
mask import, export columns."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliocore.features import radiomics
from gliocore.cli import main as cli_main
from gliocore.cohort.loading import load_cohort
from gliocore.analysis.export import seed_table, wide_column
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.segment.base import Segmenter
from gliocore.store import Store

from cohorts import private_copy, tiny_cohort

N = 4
SHAPE = (48, 48, 32)
SEED_COLUMNS = (["Volume_label1", "Max3DDiameter_label1"]
                + [f"{s}_{f}_label1" for s in ("flair", "t1", "t1c", "t2")
                   for f in ("MeanIntensity", "IntensityVariance", "GrayLevelNonUniformity")]
                + ["Volume_label2", "Max3DDiameter_label2"]
                + [f"{s}_{f}_label2" for s in ("flair", "t1", "t1c", "t2")
                   for f in ("MeanIntensity", "IntensityVariance", "GrayLevelNonUniformity")]
                + ["tumor_volume"])


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny"), n=N, shape=SHAPE, seed=3)


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    return private_copy(tiny_source, tmp_path)


def run(csv: Path, db: Path, **kw):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(db)
    return process_cohort(cohort, store, ProcessingConfig(**kw)), store


class CallCounter:
    def __init__(self, monkeypatch):
        self.segment = 0
        self.features = 0
        orig_seg = Segmenter.segment
        orig_feat = radiomics.extract_features

        def seg(this, *a, **k):
            self.segment += 1
            return orig_seg(this, *a, **k)

        def feat(*a, **k):
            self.features += 1
            return orig_feat(*a, **k)

        monkeypatch.setattr(Segmenter, "segment", seg)
        monkeypatch.setattr(radiomics, "extract_features", feat)


def test_first_run_computes_everything_and_stores_it(cohort_csv, tmp_path):
    summary, store = run(cohort_csv, tmp_path / "g.duckdb")
    assert len(summary.computed) == N and not summary.cached and not summary.errors
    long = store.features_long(summary.cohort_id)
    assert set(long["subject_id"]) == set(summary.computed)
    assert set(long["tumour_class"]) == {"contrast_enhancing", "non_enhancing"}
    st = store.status(summary.cohort_id)
    assert st["segmented"].all() and st["features"].all() and st["error"].isna().all()
    segs = store.segmentations_of(summary.cohort_id)
    assert (segs["backend"] == "baseline").all()
    for p in segs["path"]:
        mask = np.asarray(nib.load(p).dataobj)
        assert set(np.unique(mask)) <= {0, 1, 2} and mask.shape == SHAPE
    # QC against the generator's truth was stored
    qc = store.qc_metrics(summary.cohort_id)
    assert set(qc["region"]) >= {"contrast_enhancing", "non_enhancing"}
    # image statistics for the data-check box plot
    stats = store.image_stats(summary.cohort_id)
    assert len(stats) == N * 4 and stats["brain_mean"].notna().all()


def test_rerun_recomputes_nothing(cohort_csv, tmp_path, monkeypatch):
    db = tmp_path / "g.duckdb"
    run(cohort_csv, db)
    calls = CallCounter(monkeypatch)
    summary, _ = run(cohort_csv, db)
    assert len(summary.cached) == N and not summary.computed
    assert calls.segment == 0 and calls.features == 0


def test_changed_file_recomputes_only_that_subject(cohort_csv, tmp_path, monkeypatch):
    db = tmp_path / "g.duckdb"
    first, store = run(cohort_csv, db)
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    victim = cohort.subjects[1]
    img = nib.load(str(victim.path("flair")))
    data = np.asanyarray(img.dataobj).astype(np.float32) * 1.1
    nib.save(nib.Nifti1Image(data, img.affine), str(victim.path("flair")))
    calls = CallCounter(monkeypatch)
    summary, _ = run(cohort_csv, db)
    assert summary.computed == [victim.subject_id]
    assert calls.segment == 1 and calls.features == 1


def test_changed_params_recompute_features_but_not_segmentation(cohort_csv, tmp_path, monkeypatch):
    db = tmp_path / "g.duckdb"
    run(cohort_csv, db)
    params = tmp_path / "p.yaml"
    params.write_text("setting:\n  binWidth: 10\nfeatureClass:\n  firstorder: [Mean, Median]\n")
    calls = CallCounter(monkeypatch)
    summary, store = run(cohort_csv, db, params=str(params))
    assert len(summary.computed) == N
    assert calls.segment == 0 and calls.features == N
    long = store.features_long(summary.cohort_id)
    assert set(long["feature"]) == {"original_firstorder_Mean", "original_firstorder_Median"}
    # both configurations remain in the store
    assert len(store.configs(summary.cohort_id)) == 2


def test_resume_after_simulated_crash(cohort_csv, tmp_path, monkeypatch):
    db = tmp_path / "g.duckdb"
    orig = radiomics.extract_features
    state = {"n": 0}

    def crash_on_third(*a, **k):
        state["n"] += 1
        if state["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return orig(*a, **k)

    monkeypatch.setattr(radiomics, "extract_features", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(cohort_csv, db)
    store = Store(db)
    cid = store.cohorts().iloc[0]["cohort_id"]
    assert int(store.status(cid)["features"].sum()) == 2  # finished subjects were kept
    assert store.runs(cid).iloc[0]["status"] == "interrupted"  # the stopped run never finished
    monkeypatch.setattr(radiomics, "extract_features", orig)
    calls = CallCounter(monkeypatch)
    summary, _ = run(cohort_csv, db)
    assert len(summary.cached) == 2 and len(summary.computed) == N - 2
    assert calls.segment == N - 2


def test_bad_subject_is_reported_and_others_go_on(cohort_csv, tmp_path):
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    victim = cohort.subjects[0]
    Path(victim.path("t2")).write_bytes(b"not a nifti at all")
    summary, store = run(cohort_csv, tmp_path / "g.duckdb")
    assert len(summary.computed) == N - 1
    (err,) = summary.errors
    assert err.subject_id == victim.subject_id and err.stage == "load"
    assert "not a gzip file" in str(err) and str(victim.path("t2")) in str(err)
    st = store.status(summary.cohort_id).set_index("subject_id")
    assert st.loc[victim.subject_id, "error_stage"] == "load"
    assert not st.loc[victim.subject_id, "features"]


def test_parallel_workers_give_the_same_features(cohort_csv, tmp_path):
    s1, st1 = run(cohort_csv, tmp_path / "a.duckdb", workers=1)
    s2, st2 = run(cohort_csv, tmp_path / "b.duckdb", workers=2)
    a = st1.features_long(s1.cohort_id).sort_values(["subject_id", "tumour_class", "sequence", "feature"])
    b = st2.features_long(s2.cohort_id).sort_values(["subject_id", "tumour_class", "sequence", "feature"])
    np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())


def test_mask_import_with_brats_labels(cohort_csv, tmp_path):
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    for subj in cohort.subjects:  # write BraTS-style masks from the truth: 4 = CE, 2 = oedema
        truth = nib.load(str(subj.reference_mask))
        t = np.asarray(truth.dataobj)
        brats = np.where(t == 1, 4, np.where(t == 2, 2, 0)).astype(np.uint8)
        nib.save(nib.Nifti1Image(brats, truth.affine), str(subj.folder / f"{subj.subject_id}_seg.nii.gz"))
    summary, store = run(cohort_csv, tmp_path / "g.duckdb", backend="import",
                         backend_options={"pattern": "{subject}_seg.nii.gz", "label_map": "brats"})
    assert len(summary.computed) == N
    qc = store.qc_metrics(summary.cohort_id)
    assert np.allclose(qc["dice"].dropna(), 1.0)  # imported truth scores perfectly against truth
    segs = store.segmentations_of(summary.cohort_id)
    assert (segs["label_map"].str.contains("brats")).all()


def test_export_has_the_seed_columns(cohort_csv, tmp_path):
    summary, store = run(cohort_csv, tmp_path / "g.duckdb")
    df = seed_table(store, summary.cohort_id)
    assert list(df.columns[:4]) == ["SUBJECT ID", "img_dir", "Survival(months)", "IDH-status"]
    assert [c for c in df.columns if c in SEED_COLUMNS] == SEED_COLUMNS
    assert len(df) == N
    ok = df[["Volume_label1", "Volume_label2"]].notna().all(axis=1)
    np.testing.assert_allclose(df.loc[ok, "tumor_volume"],
                               df.loc[ok, "Volume_label1"] + df.loc[ok, "Volume_label2"])
    # CLI export writes the same table as CSV and Parquet
    for ext in ("csv", "parquet"):
        out = tmp_path / f"wide.{ext}"
        assert cli_main(["--db", str(store.path), "-q", "export", str(out)]) == 0
        back = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
        assert list(back.columns) == list(df.columns) and len(back) == N


def test_wide_column_names():
    assert wide_column("contrast_enhancing", "", "original_shape_MeshVolume") == "Volume_label1"
    assert wide_column("non_enhancing", "t1c", "original_firstorder_Mean") == "t1c_MeanIntensity_label2"
    assert wide_column("non_enhancing", "", "original_shape_Sphericity") == "Sphericity_label2"
    assert wide_column("contrast_enhancing", "flair", "wavelet-LLH_glcm_Contrast") == \
        "flair_wavelet-LLH_glcm_Contrast_label1"


def test_cli_process_and_status(cohort_csv, tmp_path, capsys):
    db = tmp_path / "cli.duckdb"
    rc = cli_main(["--db", str(db), "-q", "process", "--csv", str(cohort_csv), "--workers", "1",
                   "--no-location"])  # location: tests/location/test_localise.py
    assert rc == 0
    out = capsys.readouterr().out
    assert f"{N} subjects: {N} computed, 0 from cache, 0 with errors" in out
    assert cli_main(["--db", str(db), "status"]) == 0
    out = capsys.readouterr().out
    assert f"{N} subjects: {N} segmented, {N} with features, 0 with errors" in out


def test_backend_input_warnings_are_stored_with_the_result(cohort_csv, tmp_path):
    from gliocore.segment import register_segmenter
    from gliocore.segment.baseline import BaselineSegmenter

    @register_segmenter
    class WarningBaseline(BaselineSegmenter):  # a backend that flags every input
        name = "test-warning-baseline"

        def segment_images(self, subject, images):
            self.input_warnings_[subject.subject_id] = [f"{subject.subject_id}: not skull-stripped"]
            return super().segment_images(subject, images)

    summary, store = run(cohort_csv, tmp_path / "g.duckdb", backend="test-warning-baseline")
    st = store.status(summary.cohort_id).set_index("subject_id")
    for sid in summary.computed:
        assert "not skull-stripped" in st.loc[sid, "input_warnings"]


def test_bad_reference_mask_does_not_discard_the_subjects_results(cohort_csv, tmp_path, monkeypatch):
    """QC is optional: a reference mask on another grid is reported, but the segmentation and
    features already computed are kept (and not recomputed on the next run)."""
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    victim = cohort.subjects[0]
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), str(victim.reference_mask))
    db = tmp_path / "g.duckdb"
    summary, store = run(cohort_csv, db)
    assert victim.subject_id in summary.computed
    assert [e.stage for e in summary.errors] == ["qc"]
    st = store.status(summary.cohort_id).set_index("subject_id")
    assert st.loc[victim.subject_id, "segmented"] and st.loc[victim.subject_id, "features"]
    calls = CallCounter(monkeypatch)
    again, _ = run(cohort_csv, db)
    # nothing is recomputed; the unscored reference is tried again and its error reported again
    assert calls.segment == 0 and calls.features == 0
    assert [(e.subject_id, e.stage) for e in again.errors] == [(victim.subject_id, "qc")]
    assert set(again.cached) == {s.subject_id for s in cohort.subjects} - {victim.subject_id}


def test_export_clinical_columns_named_like_features_do_not_split_them(cohort_csv, tmp_path):
    """A clinical CSV that already carries feature columns (e.g. an earlier export fed back in)
    must not turn tumor_volume into tumor_volume_x / tumor_volume_y: the computed values win."""
    df = pd.read_csv(cohort_csv)
    df["tumor_volume"] = -1.0
    df["Volume_label1"] = -1.0
    df.to_csv(cohort_csv, index=False)
    summary, store = run(cohort_csv, tmp_path / "g.duckdb")
    out = seed_table(store, summary.cohort_id)
    assert not [c for c in out.columns if c.endswith(("_x", "_y"))]
    assert [c for c in out.columns if c in SEED_COLUMNS] == SEED_COLUMNS
    assert (out["tumor_volume"].dropna() >= 0).all() and (out["Volume_label1"].dropna() >= 0).all()


def test_subject_whose_changed_input_fails_loses_its_stale_results(cohort_csv, tmp_path):
    """Features of images that were replaced must not be shown once the new images fail:
    the export and the status then say the subject has no features (with the error)."""
    db = tmp_path / "g.duckdb"
    first, store = run(cohort_csv, db)
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    broken, gone = cohort.subjects[0], cohort.subjects[1]
    Path(broken.path("t2")).write_bytes(b"not a nifti at all")
    Path(gone.path("flair")).unlink()
    summary, store = run(cohort_csv, db)
    assert {e.subject_id for e in summary.errors} == {broken.subject_id, gone.subject_id}
    st = store.status(summary.cohort_id).set_index("subject_id")
    df = seed_table(store, summary.cohort_id).set_index("SUBJECT ID")
    for sid in (broken.subject_id, gone.subject_id):
        assert not st.loc[sid, "features"]
        assert pd.isna(df.loc[sid, "tumor_volume"])
    others = [s.subject_id for s in cohort.subjects[2:]]
    assert st.loc[others, "features"].all() and df.loc[others, "tumor_volume"].notna().all()


def test_tumour_volume_counts_empty_labels_as_zero_but_not_failures():
    from gliocore.analysis.export import features_wide
    rows = [  # S1: no enhancement found; S2: nothing found; S3: CE one voxel (not computable)
        ("S1", "contrast_enhancing", None, "label empty"), ("S1", "non_enhancing", 500.0, None),
        ("S2", "contrast_enhancing", None, "label empty"), ("S2", "non_enhancing", None, "label empty"),
        ("S3", "contrast_enhancing", None, "label has 1 voxel"), ("S3", "non_enhancing", 700.0, None),
        ("S4", "contrast_enhancing", 100.0, None), ("S4", "non_enhancing", 900.0, None),
    ]
    long = pd.DataFrame([{"subject_id": s, "tumour_class": c, "sequence": "",
                          "feature": "original_shape_MeshVolume", "value": v, "reason": r}
                         for s, c, v, r in rows])
    wide = features_wide(long).set_index("SUBJECT ID")
    assert wide.loc["S1", "tumor_volume"] == 500.0
    assert wide.loc["S2", "tumor_volume"] == 0.0
    assert np.isnan(wide.loc["S3", "tumor_volume"])
    assert wide.loc["S4", "tumor_volume"] == 1000.0
    assert wide.loc["S1", "Volume_label1"] == 0.0  # an empty label's volume is 0 (issue 8.1)


def test_mask_import_reads_float_stored_labels_by_rounding(cohort_csv, tmp_path):
    """A float mask holding 3.9999999 means label 4 (not 3, which BraTS would not know)."""
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    for i, subj in enumerate(cohort.subjects):
        truth = nib.load(str(subj.reference_mask))
        t = np.asarray(truth.dataobj)
        brats = np.where(t == 1, 3.9999999, np.where(t == 2, 2.0000001, 0.0)).astype(np.float64)
        if i == 0:
            brats[t == 2] = 1.5  # a soft/interpolated mask: refused with a clear error
        nib.save(nib.Nifti1Image(brats, truth.affine), str(subj.folder / f"{subj.subject_id}_seg.nii.gz"))
    summary, store = run(cohort_csv, tmp_path / "g.duckdb", backend="import",
                         backend_options={"pattern": "{subject}_seg.nii.gz", "label_map": "brats"})
    (err,) = summary.errors
    assert err.subject_id == cohort.subjects[0].subject_id and "non-integer" in str(err)
    qc = store.qc_metrics(summary.cohort_id)
    assert np.allclose(qc["dice"].dropna(), 1.0)


def test_edited_reference_mask_is_rescored_without_recomputing(cohort_csv, tmp_path, monkeypatch):
    db = tmp_path / "g.duckdb"
    first, store = run(cohort_csv, db)
    cohort = load_cohort(cohort_csv, cohort_csv.parent)
    subj = cohort.subjects[2]
    truth = nib.load(str(subj.reference_mask))
    edited = np.zeros(truth.shape, np.uint8)  # an expert says: no tumour at all
    nib.save(nib.Nifti1Image(edited, truth.affine), str(subj.reference_mask))
    calls = CallCounter(monkeypatch)
    summary, store = run(cohort_csv, db)
    assert calls.segment == 0 and calls.features == 0
    assert summary.computed == [subj.subject_id] and len(summary.cached) == N - 1
    qc = store.qc_metrics(summary.cohort_id)
    mine = qc[qc["subject_id"] == subj.subject_id]
    assert len(mine) == 3  # one row per region: the old scores were replaced, not duplicated
    assert (mine["volume_ref_mm3"] == 0).all()
    again, _ = run(cohort_csv, db)  # and now everything is cached
    assert not again.computed


def test_dead_worker_process_is_reported_per_subject_and_the_run_finishes(cohort_csv, tmp_path,
                                                                          monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import gliocore.pipeline.executor as executor

    class DyingPool:  # every worker "dies", as after an out-of-memory kill
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, task):
            fut = Future()
            fut.set_exception(BrokenProcessPool("A process in the pool was terminated abruptly"))
            return fut

    monkeypatch.setattr(executor, "ProcessPoolExecutor", DyingPool)
    summary, store = run(cohort_csv, tmp_path / "g.duckdb", workers=2)
    assert len(summary.errors) == N and {e.stage for e in summary.errors} == {"worker"}
    assert "worker process died" in str(summary.errors[0])
    assert store.runs(summary.cohort_id).iloc[0]["status"] == "finished"
