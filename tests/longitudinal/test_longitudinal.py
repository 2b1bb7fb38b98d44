"""Several scans per subject: scans table and folder convention, per-scan processing and
caching, errors naming the scan, the one-scan cohort unchanged, and migrating a store made
before scans existed."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from gliocore.cohort import synth
from gliocore.types import BASELINE_SCAN
from gliocore.cohort.loading import load_cohort
from gliocore.cohort.scans import read_scans, timepoint_days
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

SHAPE = (40, 40, 28)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return Path(synth.make_tiny_cohort(tmp_path_factory.mktemp("tinylong"), n=3, shape=SHAPE,
                                       seed=5))


@pytest.fixture
def cohort_dir(tiny_source, tmp_path) -> Path:
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_source.parent, dst)
    return dst


def _copy_scan(src: Path, dst: Path, gain: float = 1.0) -> None:
    """A follow-up: the baseline's files, intensities scaled (different content)."""
    import nibabel as nib
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not f.is_file():
            continue
        if gain != 1.0 and "truth" not in f.name:
            img = nib.load(str(f))
            data = np.asarray(img.dataobj).astype(np.float32) * gain
            nib.save(nib.Nifti1Image(np.rint(data).astype(np.int16), img.affine), str(dst / f.name))
        else:
            shutil.copy2(f, dst / f.name)


def _write_scans_table(cohort_dir: Path) -> pd.DataFrame:
    """DEMO-001: baseline + 2 follow-ups; DEMO-002: baseline + 1; DEMO-003: baseline only."""
    rows = []
    for sid, n_fu in (("DEMO-001", 2), ("DEMO-002", 1), ("DEMO-003", 0)):
        base = cohort_dir / "TCGA" / sid
        rows.append({"SUBJECT ID": sid, "scan_id": "pre", "days": 0, "img_dir": f"TCGA/{sid}"})
        for k in range(1, n_fu + 1):
            _copy_scan(base, base / "fu" / f"fu{k}", gain=1.0 + 0.05 * k)
            rows.append({"SUBJECT ID": sid, "scan_id": f"fu{k}", "days": 90 * k,
                         "img_dir": f"TCGA/{sid}/fu/fu{k}"})
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    table.to_csv(cohort_dir / "scans.csv", index=False)
    return table


def test_timepoint_days_from_names():
    assert timepoint_days(["2001-05-01", "2001-08-01", "2000-12-31"]) == [121.0, 213.0, 0.0]
    assert timepoint_days(["05-01-2001-MRI BRAIN", "06-01-2001-MRI"]) == [0.0, 31.0]
    assert timepoint_days(["day0", "day_90", "d180"]) == [0.0, 90.0, 180.0]
    assert timepoint_days(["week0", "week12"]) == [0.0, 84.0]
    assert timepoint_days(["pre", "post"]) == [None, None]      # unknown: ordered by name
    assert timepoint_days(["2001-05-01", "post"]) == [None, None]


def test_read_scans_dates_relative_to_first_scan(tmp_path):
    csv = tmp_path / "scans.csv"
    pd.DataFrame({"SUBJECT ID": ["A", "A", "B", "A"],
                  "date": ["2020-03-01", "2020-01-01", "2021-06-01", "2020-01-01"],
                  "img_dir": ["a2", "a1", "b1", "dup"]}).to_csv(csv, index=False)
    scans, problems = read_scans(csv)
    a = scans[scans["subject_id"] == "A"]
    assert list(a["scan_id"]) == ["2020-01-01", "2020-03-01"]
    assert list(a["days"]) == [0.0, 60.0]
    assert list(scans.loc[scans["subject_id"] == "B", "days"]) == [0.0]
    assert len(problems) == 1 and problems[0].scan_id == "2020-01-01" and "duplicate" in str(problems[0])


def test_scans_table_builds_scans_in_time_order(cohort_dir):
    _write_scans_table(cohort_dir)
    cohort = load_cohort(cohort_dir / "clinical.csv")  # scans.csv found beside it
    assert cohort.is_longitudinal and not cohort.problems
    assert [s.scan_id for s in cohort.scans_of("DEMO-001")] == ["pre", "fu1", "fu2"]
    assert [s.days for s in cohort.scans_of("DEMO-001")] == [0.0, 90.0, 180.0]
    assert len(cohort.scans) == 6
    # the subject's own entry is its first scan
    assert [s.scan_id for s in cohort.subjects] == ["pre", "pre", "pre"]
    assert cohort.scans_of("DEMO-001")[1].label == "DEMO-001/fu1"
    assert load_cohort(cohort_dir / "clinical.csv", scans=False).is_longitudinal is False


def test_folder_convention_subject_timepoint(tmp_path, tiny_source):
    root = tmp_path / "tcia"
    src = tiny_source.parent / "TCGA" / "DEMO-002"
    for tp in ("06-15-2001-MRI", "01-10-2001-MRI"):
        dst = root / "DEMO-002" / tp
        dst.mkdir(parents=True)
        for f in src.iterdir():  # files not named for the subject: the folder says whose
            shutil.copy2(f, dst / f.name.replace("DEMO-002_", "mr_"))
    pd.DataFrame({"SUBJECT ID": ["DEMO-002"], "Survival(months)": [10.0],
                  "IDH-status": ["wildtype"]}).to_csv(root / "clinical.csv", index=False)
    cohort = load_cohort(root / "clinical.csv", naming="tcga")
    assert not cohort.problems, cohort.problems
    scans = cohort.scans_of("DEMO-002")
    assert [s.scan_id for s in scans] == ["01-10-2001-MRI", "06-15-2001-MRI"]
    assert scans[1].days == 156.0
    assert scans[0].path("t1c").name == "mr_t1Gd.nii.gz"


def test_missing_scan_folder_names_subject_and_scan(cohort_dir):
    _write_scans_table(cohort_dir)
    shutil.rmtree(cohort_dir / "TCGA" / "DEMO-002" / "fu" / "fu1")
    cohort = load_cohort(cohort_dir / "clinical.csv")
    assert len(cohort.problems) == 1
    err = cohort.problems[0]
    assert err.subject_id == "DEMO-002" and err.scan_id == "fu1"
    assert "scan fu1" in str(err) and "DEMO-002" in str(err)
    assert [s.scan_id for s in cohort.scans_of("DEMO-002")] == ["pre"]


def test_pipeline_processes_every_scan_and_caches_by_content(cohort_dir, tmp_path):
    _write_scans_table(cohort_dir)
    cohort = load_cohort(cohort_dir / "clinical.csv")
    store = Store(tmp_path / "s.duckdb")
    seen: list[tuple[str, str | None]] = []
    summary = process_cohort(cohort, store, progress=lambda st, d, t, lab: seen.append((st, lab)))
    assert not summary.errors, summary.describe()
    assert summary.n_subjects == 6 and len(summary.computed) == 6
    assert ("hash", "DEMO-001/fu2") in seen  # progress per scan
    res = store.scan_results(summary.cohort_id)
    assert len(res) == 6 and res["seg_key"].notna().all()
    assert list(res.loc[res["subject_id"] == "DEMO-001", "days"]) == [0.0, 90.0, 180.0]
    # the subject's own result is its baseline scan's: cross-sectional tables unchanged
    feats = store.features_long(summary.cohort_id)
    assert set(feats["subject_id"]) == {"DEMO-001", "DEMO-002", "DEMO-003"}
    base = res[res["scan_id"] == "pre"].set_index("subject_id")["feature_key"]
    subj = store._df("SELECT subject_id, feature_key, scan_id FROM subject_results")
    assert (subj.set_index("subject_id")["feature_key"] == base.reindex(subj["subject_id"]).values).all()
    assert set(subj["scan_id"]) == {"pre"}
    # per-scan features
    fl = store.features_long_scans(summary.cohort_id)
    assert set(zip(fl["subject_id"], fl["scan_id"])) == set(zip(res["subject_id"], res["scan_id"]))
    # a re-run recomputes nothing
    again = process_cohort(load_cohort(cohort_dir / "clinical.csv"), store)
    assert again.computed == [] and len(again.cached) == 6


def test_qc_of_every_scan_follows_each_scans_reference(cohort_dir, tmp_path):
    """Every scan with a reference mask is scored (follow-ups too, not only the baseline), each
    against its own current reference; a store made before scans.reference_sha256 still shows
    its baseline scores, and the follow-ups' once the cohort is registered again."""
    import nibabel as nib

    from gliocore.pipeline.plan import register_cohort
    _write_scans_table(cohort_dir)
    cohort = load_cohort(cohort_dir / "clinical.csv")
    assert all(s.reference_mask for s in cohort.scans)
    db = tmp_path / "s.duckdb"
    store = Store(db)
    summary = process_cohort(cohort, store)
    assert not summary.errors, summary.describe()
    qc = store.scan_qc_metrics(summary.cohort_id)
    pairs = set(zip(qc["subject_id"], qc["scan_id"]))
    assert pairs == {(s.subject_id, s.scan_id) for s in cohort.scans}
    assert len(qc) == 3 * len(pairs) and qc["dice"].between(0, 1).all()
    # the baseline rows are the cross-sectional QC
    base = qc[qc["scan_order"] == 0].set_index(["subject_id", "region"])["dice"].sort_index()
    cross = store.qc_metrics(summary.cohort_id).set_index(["subject_id", "region"])["dice"]
    assert base.equals(cross.sort_index())
    assert qc.loc[qc["scan_id"] == "fu2", "days"].eq(180.0).all()
    # an edited follow-up reference takes that scan's scores off until it is scored again
    ref = next(s for s in cohort.scans_of("DEMO-001") if s.scan_id == "fu1").reference_mask
    img = nib.load(str(ref))
    data = np.asarray(img.dataobj).copy()
    data[data == 1] = 2
    nib.save(nib.Nifti1Image(data, img.affine), str(ref))
    register_cohort(store, load_cohort(cohort_dir / "clinical.csv"))
    pairs = set(zip(*(store.scan_qc_metrics(summary.cohort_id)[c] for c in ("subject_id", "scan_id"))))
    assert ("DEMO-001", "fu1") not in pairs and ("DEMO-001", "fu2") in pairs
    again = process_cohort(load_cohort(cohort_dir / "clinical.csv"), store)
    assert not again.errors
    qc = store.scan_qc_metrics(summary.cohort_id)
    fu1 = qc[(qc["subject_id"] == "DEMO-001") & (qc["scan_id"] == "fu1")].set_index("region")
    assert fu1.loc["contrast_enhancing", "volume_ref_mm3"] == 0.0  # the edited reference's
    # a store made before the column: every scan's scores at once (the baseline's by the
    # subject's reference hash, follow-ups' by their reference file's recorded hash)
    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE scans DROP COLUMN reference_sha256")
    old = Store(db)
    assert old.scan_qc_metrics(summary.cohort_id).equals(qc)
    register_cohort(old, load_cohort(cohort_dir / "clinical.csv"))
    assert old.scan_qc_metrics(summary.cohort_id).equals(qc)
    assert old._df("SELECT count(*) AS n FROM scans WHERE reference_sha256 IS NULL")["n"][0] == 0


def test_a_broken_scan_fails_alone_and_is_named(cohort_dir, tmp_path):
    _write_scans_table(cohort_dir)
    victim = cohort_dir / "TCGA" / "DEMO-001" / "fu" / "fu2" / "DEMO-001_t2.nii.gz"
    victim.write_bytes(b"not a nifti")
    cohort = load_cohort(cohort_dir / "clinical.csv")
    store = Store(tmp_path / "s.duckdb")
    summary = process_cohort(cohort, store)
    assert len(summary.errors) == 1
    err = summary.errors[0]
    assert (err.subject_id, err.scan_id) == ("DEMO-001", "fu2") and str(victim) in str(err)
    assert len(summary.computed) == 5
    errors = store.errors(summary.cohort_id)
    assert list(zip(errors["subject_id"], errors["scan_id"])) == [("DEMO-001", "fu2")]
    status = store.status(summary.cohort_id).set_index("subject_id")
    assert status.at["DEMO-001", "error"].startswith("scan fu2: ")  # the subject's row names it
    assert bool(status.at["DEMO-001", "segmented"])  # its baseline is fine


def test_one_scan_cohort_unchanged(tiny_source, tmp_path):
    cohort = load_cohort(tiny_source)
    assert not cohort.is_longitudinal
    assert [s.scan_id for s in cohort.scans] == [BASELINE_SCAN] * 3
    store = Store(tmp_path / "s.duckdb")
    summary = process_cohort(cohort, store)
    assert sorted(summary.computed) == ["DEMO-001", "DEMO-002", "DEMO-003"]  # same IDs as before
    assert "subjects:" in summary.describe()
    res = store.scan_results(summary.cohort_id)
    assert list(res["scan_id"]) == [BASELINE_SCAN] * 3
    segs = store.segmentations_of(summary.cohort_id)
    mask = Path(segs["path"].iloc[0])
    # a cross-sectional layout: <subject>/seg/<subject>_<content key>_seg.nii.gz (issue 19.4
    # put the content key in the name; no scan folder for the only scan)
    assert mask.name == f"DEMO-001_{segs['seg_key'].iloc[0][:16]}_seg.nii.gz"
    assert mask.parent.name == "seg" and mask.parent.parent.name == "DEMO-001"


# -- migration of a store made before scans existed ---------------------------------------------
#: The tables a store made by GlioScope before scans existed (commit e73415c) has, verbatim.
OLD_DDL = (
    """CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE cohorts (cohort_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL,
        clinical_csv VARCHAR NOT NULL, image_root VARCHAR NOT NULL, naming VARCHAR,
        updated_at TIMESTAMP, event_assumed BOOLEAN DEFAULT FALSE)""",
    """CREATE TABLE subjects (cohort_id VARCHAR NOT NULL, subject_id VARCHAR NOT NULL,
        folder VARCHAR, has_images BOOLEAN NOT NULL, reference_mask VARCHAR,
        clinical_json VARCHAR NOT NULL, PRIMARY KEY (cohort_id, subject_id))""",
    """CREATE TABLE subject_images (cohort_id VARCHAR NOT NULL, subject_id VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL, path VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id, sequence))""",
    """CREATE TABLE subject_results (cohort_id VARCHAR NOT NULL, subject_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL, input_key VARCHAR NOT NULL, seg_key VARCHAR NOT NULL,
        feature_key VARCHAR NOT NULL, updated_at TIMESTAMP,
        PRIMARY KEY (cohort_id, subject_id, config_key))""",
    """CREATE TABLE subject_errors (run_id VARCHAR NOT NULL, cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL, stage VARCHAR, path VARCHAR, message VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
)


def _old_store(path: Path) -> None:
    con = duckdb.connect(str(path))
    for ddl in OLD_DDL:
        con.execute(ddl)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO cohorts VALUES ('c1', 'old', '/x/clinical.csv', '/x', NULL, NULL, FALSE)")
    for sid, has in (("A", True), ("B", True), ("C", False)):
        con.execute("INSERT INTO subjects VALUES ('c1', ?, ?, ?, NULL, '{}')",
                    [sid, f"/x/{sid}" if has else None, has])
        if has:
            con.execute("INSERT INTO subject_images VALUES ('c1', ?, 't1', ?)", [sid, f"/x/{sid}/t1.nii.gz"])
    con.execute("INSERT INTO subject_results VALUES ('c1', 'A', 'k1', 'inA', 'segA', 'featA', NULL)")
    con.execute("INSERT INTO subject_results VALUES ('c1', 'B', 'k1', 'inB', 'segB', 'featB', NULL)")
    con.execute("INSERT INTO subject_errors VALUES ('r1', 'c1', 'C', 'load', NULL, 'no images', NULL)")
    con.close()


def test_store_made_before_scans_is_migrated_once(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_store(path)
    store = Store(path)
    scans = store.scans("c1")
    assert list(zip(scans["subject_id"], scans["scan_id"], scans["days"])) == \
        [("A", BASELINE_SCAN, 0.0), ("B", BASELINE_SCAN, 0.0)]
    assert store.scan_images("c1", "A", BASELINE_SCAN) == {"t1": "/x/A/t1.nii.gz"}
    res = store._df("SELECT subject_id, scan_id, seg_key FROM scan_results ORDER BY subject_id")
    assert res.values.tolist() == [["A", BASELINE_SCAN, "segA"], ["B", BASELINE_SCAN, "segB"]]
    subj = store._df("SELECT subject_id, scan_id FROM subject_results ORDER BY subject_id")
    assert subj.values.tolist() == [["A", BASELINE_SCAN], ["B", BASELINE_SCAN]]
    assert store.errors("c1", "r1")["scan_id"].isna().all()
    # old queries still work, new writes go to both tables
    store.save_subject_result(cohort_id="c1", subject_id="A", config_key="k1", input_key="inA2",
                              segmentation=None, seg_key="segA2", feature_key="featA2",
                              feature_rows=None, feature_meta=None)
    assert store.subject_result("c1", "A", "k1")["seg_key"] == "segA2"
    # the data migration runs once: a result dropped later does not come back on reopening
    store.drop_stale_result("c1", "B", "k1", scan_id=BASELINE_SCAN)
    again = Store(path)
    res = again._df("SELECT subject_id, seg_key FROM scan_results ORDER BY subject_id")
    assert res.values.tolist() == [["A", "segA2"]]
    assert again._df("SELECT count(*) AS n FROM meta WHERE key LIKE 'migration_scans%'")["n"][0] == 1


# -- demo follow-ups, export ---------------------------------------------------------------------
def test_plan_followups_follow_survival():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        plan = synth.plan_followups(24.0, 1, "wildtype", rng)
        assert len(plan) <= synth.MAX_FOLLOWUPS
        days = [f.days for f in plan]
        assert days == sorted(days) and all(d < 24.0 * 30.4375 for d in days)  # none after death
        ratios = [f.volume_ratio for f in plan]
        for k in range(1, len(ratios)):  # growth after a nadir is >= 1.6x: a volumetric PD
            if ratios[k] > ratios[k - 1] * 1.05:
                assert ratios[k] >= 1.6 * min(ratios[:k]) - 1e-9
    counts = [len(synth.plan_followups(30.0, 0, "mutant", np.random.default_rng(s)))
              for s in range(200)]
    assert 0.3 < counts.count(0) / 200 < 0.5        # some subjects have one scan only
    assert max(counts) == synth.MAX_FOLLOWUPS


def test_scale_tumour_scales_volume_and_leaves_the_rest():
    s = synth.generate_subject("S", 11, shape=(60, 60, 40), spacing=4.0)
    for factor in (0.7, 1.25):
        imgs, truth = synth.scale_tumour(s.images, s.truth, s.affine, factor)
        ratio = (truth > 0).sum() / (s.truth > 0).sum()
        assert ratio == pytest.approx(factor ** 3, rel=0.2)
        # beyond the tumour's radius (scaled) + 12 mm nothing moves
        idx = np.argwhere(s.truth > 0) * 4.0
        c = idx.mean(0)
        radius = np.sqrt(((idx - c) ** 2).sum(1)).max() + 2.0
        grid = np.indices(s.truth.shape).reshape(3, -1).T * 4.0
        far = (np.sqrt(((grid - c) ** 2).sum(1)) > max(1.0, factor) * radius + 16.0).reshape(s.truth.shape)
        assert far.sum() > 0.3 * far.size
        assert np.array_equal(imgs["t1"][far], s.images["t1"][far])
        assert not np.array_equal(imgs["t1"][~far], s.images["t1"][~far])
    fu = synth.FollowUp("fu1", 90, 0.5, enhancement_gone=True)
    imgs, truth = synth.make_followup(s.images, s.truth, s.affine, fu, np.random.default_rng(0))
    assert not (truth == 1).any() and (truth == 2).any()


def test_demo_followups_export_scan_table_and_pfs(tmp_path):
    csv = synth.make_tiny_cohort(tmp_path / "demo", n=6, shape=SHAPE, seed=2)
    scans_csv = synth.generate_followups(tmp_path / "demo", seed=2)
    table = pd.read_csv(scans_csv)
    assert set(table["SUBJECT ID"]) == set(pd.read_csv(csv)["SUBJECT ID"])
    assert (table.groupby("SUBJECT ID")["scan_id"].first() == "baseline").all()
    cohort = load_cohort(csv)
    assert cohort.is_longitudinal and not cohort.problems
    store = Store(tmp_path / "s.duckdb")
    summary = process_cohort(cohort, store)
    assert not summary.errors, summary.describe()
    from gliocore.cli import main as cli_main
    from gliocore.analysis.export import seed_table
    out = tmp_path / "export.csv"
    assert cli_main(["--db", str(store.path), "-q", "export", str(out)]) == 0
    wide = pd.read_csv(out)
    per_scan = pd.read_csv(tmp_path / "export_scans.csv")
    assert len(wide) == 6 and {"PFS(months)", "PFS_event", "best_response"} <= set(wide.columns)
    assert len(per_scan) == len(table)
    assert {"days", "category", "pct_from_nadir_ce", "Volume_label1", "tumor_volume"} <= set(per_scan.columns)
    assert set(per_scan.loc[per_scan["scan_id"] == "baseline", "category"]) == {"baseline"}
    # a censored subject's PFS is its last scan's time (or 0 with the baseline only)
    cens = wide[(wide["PFS_event"] == 0)]
    last = per_scan.groupby("SUBJECT ID")["months"].max()
    assert np.allclose(cens["PFS(months)"], last.reindex(cens["SUBJECT ID"]).to_numpy(), atol=0.01)
    # the same cohort without its scans table: the wide export has no longitudinal columns
    one = load_cohort(csv, scans=False, name="cross")
    store2 = Store(tmp_path / "s2.duckdb")
    s2 = process_cohort(one, store2)
    assert "PFS(months)" not in seed_table(store2, s2.cohort_id).columns
