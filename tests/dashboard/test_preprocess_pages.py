"""The dashboard on a cohort with raw scans (issue 20): the Viewer's preprocessing QC pictures and
flags, and the Cohort page's table for deciding DICOM series the rules could not identify.

One store per module: three subjects, DEMO-001 raw NIfTI (the skull-bearing phantom, each
sequence on its own grid: preprocessed with the ``threshold`` brain method, ~40 s), DEMO-002
already preprocessed (passed through), DEMO-003 a DICOM study with two T1 series and no contrast
tag (waits for the user's choice).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

st_testing = pytest.importorskip("streamlit.testing.v1")
TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "preprocess"))
from cohorts import tiny_cohort
from dicom_writer import ambiguous_study
from phantom import phantom_scan
from test_app_pages import _open, texts

NAME = "rawcohort"
SUFFIX = {"t1": "_t1", "t1c": "_t1Gd", "t2": "_t2", "flair": "_flair"}


def build_raw_store(root: Path) -> Path:
    """The module's cohort, preprocessed and processed (baseline backend) into a store."""
    import numpy as np

    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.prepare import load_prepared
    from gliocore.pipeline.runner import process_cohort
    from gliocore.preprocess.scan import PreprocessOptions
    from gliocore.store import Store

    csv = tiny_cohort(root / "cohort", n=3, shape=(24, 24, 16), seed=3)
    raw = csv.parent / "TCGA" / "DEMO-001"
    shutil.rmtree(raw)
    raw.mkdir()
    for seq, img in phantom_scan(seed=2).items():
        sitk.WriteImage(img, str(raw / f"DEMO-001{SUFFIX[seq]}.nii.gz"))
    dicom = csv.parent / "TCGA" / "DEMO-003"
    shutil.rmtree(dicom)
    ambiguous_study(dicom, np.random.default_rng(0))
    data = root / "data"
    cohort, prepared = load_prepared(csv, csv.parent, data / "preprocessed" / NAME, name=NAME,
                                     options=PreprocessOptions(brain_backend="threshold"))
    assert prepared is not None and list(prepared.results) == [("DEMO-001", "baseline")]
    assert prepared.passthrough == ["DEMO-002"]
    db = data / "gliocore.duckdb"
    process_cohort(cohort, Store(db), ProcessingConfig(backend="baseline", location=None))
    return db


@pytest.fixture(scope="module")
def raw_store(tmp_path_factory) -> Path:
    return build_raw_store(tmp_path_factory.mktemp("raw_store"))


@pytest.fixture()
def raw_env(raw_store, tmp_path, monkeypatch) -> Path:
    """The app on a private copy of the store (the decision test writes the mapping file)."""
    data = tmp_path / "data"
    shutil.copytree(raw_store.parent, data)
    monkeypatch.setenv("GLIOSCOPE_DATA", str(data))
    monkeypatch.setenv("GLIOSCOPE_DB", str(data / raw_store.name))
    return data


def test_viewer_shows_each_preprocessing_step_and_the_flags(raw_env):
    at = _open("viewer")
    at.selectbox(key="viewer_subject").set_value("DEMO-001").run()
    assert not at.exception, at.exception
    assert at.radio(key="prep_step").options == ["Brain extraction", "Co-registration to T1c",
                                                "Bias field (N4)"]
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert any(i.endswith("-prep_brain_axial_0") for i in charts), charts
    shown = texts(at)
    assert "No QC flag" in shown and "brain 1" in shown and "(threshold)" in shown
    table = next(d.value for d in at.dataframe if "MI after" in d.value.columns)
    assert list(table["sequence"]) == ["T1", "T2", "FLAIR"]
    assert (table["MI after"] > table["MI before"]).all()
    at.radio(key="prep_step").set_value("registration").run()
    at.radio(key="prep_plane").set_value("coronal").run()
    assert not at.exception, at.exception
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert sum(i.rsplit("-", 1)[-1].startswith("prep_registration_coronal") for i in charts) == 3
    at.selectbox(key="viewer_subject").set_value("DEMO-002").run()
    assert "was not preprocessed here" in texts(at)


def test_viewer_flags_a_partial_field_of_view(raw_store, raw_env):
    """A flag the stage computed reaches the Viewer as a warning, with the coverage figure."""
    import json
    record = raw_store.parent / "preprocessed" / NAME / "DEMO-001" / "baseline" / "preprocess.json"
    original = record.read_text()
    data = json.loads(original)
    data["flags"] = ["flair: field of view covers 71% of the brain; the rest is zero in flair"]
    data["coverage"]["flair"] = 0.71
    try:
        record.write_text(json.dumps(data))
        at = _open("viewer")
        at.selectbox(key="viewer_subject").set_value("DEMO-001").run()
    finally:
        record.write_text(original)
    assert any("QC flag: flair: field of view covers 71%" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "brain covered" in d.value.columns)
    assert list(table["brain covered"]) == ["100.0%", "100.0%", "71.0%"]


def test_cohort_page_lets_the_user_decide_ambiguous_series(raw_env):
    from gliocore.preprocess.identify import read_mapping
    at = _open("cohort")
    assert "Sequences to decide" in [h.value for h in at.subheader]
    assert "GlioScope does not guess" in texts(at)
    table = next(d.value for d in at.dataframe if "rules read" in d.value.columns)
    assert list(table["series"]) == ["3", "4", "5", "6"]
    assert list(table["rules read"]) == ["T1", "T1", "T2", "FLAIR"]
    assert {"TR ms", "TE ms", "TI ms", "2-D/3-D", "confidence", "reason"} <= set(table.columns)
    key = "seqmap_DEMO-003_baseline"
    # the confident picks are filled in, the undecided T1c is not
    assert [at.selectbox(key=f"{key}_{s}").value for s in "3456"] == ["—", "t1", "t2", "flair"]
    at.button(key=f"{key}_save").click().run()
    assert any("Not saved" in e.value and "no series chosen for T1C" in e.value for e in at.error)
    map_file = raw_env / "preprocessed" / NAME / "sequence_map.csv"
    assert not map_file.exists()
    at.selectbox(key=f"{key}_3").set_value("t1").run()
    at.selectbox(key=f"{key}_4").set_value("t1c").run()
    at.button(key=f"{key}_save").click().run()
    assert not at.exception, at.exception
    assert any("Saved to" in s.value for s in at.success)
    assert read_mapping(map_file) == {("DEMO-003", "baseline"): {"t1": "3", "t1c": "4",
                                                                 "t2": "5", "flair": "6"}}
    at.run()
    assert any("decided (T1 = series 3, T1c = series 4" in e.label for e in at.expander)
    assert any(f"--sequence-map {map_file}" in c.value for c in at.caption)


def test_a_saved_decision_settles_the_scan(raw_store, raw_env):
    """What the Cohort page's Process button loads with (``load_prepared``'s mapping file, here
    through the stage's identification): the saved choice identifies the DICOM scan, and the
    page stops asking."""
    from gliocore.pipeline.prepare import identify_cohort
    from gliocore.preprocess import decisions
    from gliocore.preprocess.identify import read_mapping
    out = raw_env / "preprocessed" / NAME
    map_file = decisions.write_mapping(out / decisions.MAPPING_FILE, "DEMO-003", "baseline",
                                       {"t1": "3", "t1c": "4", "t2": "5", "flair": "6"})
    csv = raw_store.parent.parent / "cohort" / "clinical.csv"
    records, n_jobs, problems = identify_cohort(csv, csv.parent, out,
                                                mappings=read_mapping(map_file))
    assert not decisions.pending(records) and not problems and n_jobs == 2
    at = _open("cohort")
    assert "Sequences to decide" not in [h.value for h in at.subheader]


def test_loading_a_raw_cohort_lists_its_undecided_scans_at_once(raw_store, tmp_path, monkeypatch):
    """"Load cohort" reads the headers of a raw cohort (no pixel, no preprocessing yet): the
    message counts the raw scans and the table of series to decide is there before processing."""
    from test_app_pages import after_background_work
    data = tmp_path / "fresh"
    data.mkdir()
    monkeypatch.setenv("GLIOSCOPE_DATA", str(data))
    monkeypatch.setenv("GLIOSCOPE_DB", str(data / "gliocore.duckdb"))
    csv = raw_store.parent.parent / "cohort" / "clinical.csv"
    at = _open("cohort")
    at.text_input(key="load_csv").set_value(str(csv))
    at.text_input(key="load_root").set_value(str(csv.parent))
    next(b for b in at.button if b.label == "Load cohort").click().run()
    shown = texts(at)
    at = after_background_work(at, data / "gliocore.duckdb")
    assert not at.exception, at.exception
    shown += texts(at)
    assert "2 raw scan(s) will be preprocessed" in shown, shown
    assert "1 wait for your choice of sequences" in shown, shown
    assert "Sequences to decide" in [h.value for h in at.subheader]
    assert (data / "preprocessed" / "cohort" / "identification.json").is_file()


@pytest.mark.slow
def test_process_button_preprocesses_with_the_saved_decision(tmp_path, monkeypatch):
    """End to end on the page: load a cohort whose DICOM subject has two T1 series and no
    contrast tag (the phantom, skull and all), decide, save, press Process cohort: the subject is
    preprocessed with the user's T1c (the page's default brain model, deepbet), segmented and
    has features; nothing is left to decide."""
    pytest.importorskip("deepbet", reason="the page's default brain model is not installed")
    from dicom_writer import uid, write_series
    from test_app_pages import after_background_work
    csv = tiny_cohort(tmp_path / "cohort", n=2, shape=(24, 24, 16), seed=3)
    folder = csv.parent / "TCGA" / "DEMO-001"
    shutil.rmtree(folder)
    headers = {"t1": ("AX T1 SE", 500.0, 10.0, None, "SE"),
               "t1c": ("AX T1 SE", 500.0, 10.0, None, "SE"),  # the contrast tag forgotten
               "t2": ("AX T2 TSE", 5000.0, 100.0, None, "SE"),
               "flair": ("AX FLAIR", 9000.0, 110.0, 2500.0, "SE\\IR")}
    for n, (seq, img) in enumerate(phantom_scan(seed=4).items()):
        desc, tr, te, ti, scanning = headers[seq]
        write_series(img, folder / seq, uid(800 + n), 3 + n, desc, tr=tr, te=te, ti=ti,
                     scanning=scanning)
    t1c_series = 3 + list(phantom_scan(seed=4)).index("t1c")
    t1_series = 3 + list(phantom_scan(seed=4)).index("t1")
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("GLIOSCOPE_DATA", str(data))
    monkeypatch.setenv("GLIOSCOPE_DB", str(data / "gliocore.duckdb"))
    at = _open("cohort")
    at.text_input(key="load_csv").set_value(str(csv))
    at.text_input(key="load_root").set_value(str(csv.parent))
    next(b for b in at.button if b.label == "Load cohort").click().run()
    at = after_background_work(at, data / "gliocore.duckdb", timeout=300)
    key = "seqmap_DEMO-001_baseline"
    at.selectbox(key=f"{key}_{t1_series}").set_value("t1").run()
    at.selectbox(key=f"{key}_{t1c_series}").set_value("t1c").run()
    at.button(key=f"{key}_save").click().run()
    assert any("Saved to" in s.value for s in at.success)
    at.button(key="process").click().run()
    at = after_background_work(at, data / "gliocore.duckdb", timeout=1200)
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {"Subjects": "2", "With images": "2",
                                                     "Segmented": "2", "With features": "2"}
    assert "Sequences to decide" not in [h.value for h in at.subheader]
    assert "Preprocessing per scan" in [h.value for h in at.subheader]
    out = data / "preprocessed" / "cohort" / "DEMO-001" / "baseline"
    import json
    record = json.loads((out / "preprocess.json").read_text())
    assert record["model"] == "deepbet" and (out / "qc.npz").is_file()
