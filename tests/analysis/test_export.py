"""The seed-style wide table: what empty, degenerate and resegmented labels become (issue 8)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliocore.cohort.loading import load_cohort
from gliocore.analysis.export import features_wide, seed_table
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.imaging.labels import CANONICAL
from gliocore.segment import register_segmenter
from gliocore.segment.base import Segmenter
from gliocore.store import Store
from gliocore.analysis.groups import make_groups

from cohorts import private_copy, tiny_cohort

SHAPE = (48, 48, 32)


def long_rows(rows):
    """Long-form features from (subject, class, sequence, feature, value, reason) tuples."""
    return pd.DataFrame([dict(zip(("subject_id", "tumour_class", "sequence", "feature", "value",
                                   "reason"), r)) for r in rows])


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny"), n=4, shape=SHAPE, seed=3)


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    return private_copy(tiny_source, tmp_path)


@register_segmenter
class EditedTruth(Segmenter):
    """The subject's ground-truth mask with one class removed or made degenerate.

    Option ``edits``: ``"SUBJECT=EDIT;..."`` with EDIT one of ``no-enhancement``, ``one-voxel``,
    ``line`` (a 5-voxel 1-D enhancing line) or ``plane`` (a 5x5 enhancing plane); the
    enhancing voxels removed become non-enhancing.
    """

    name = "test-edited-truth"
    title = "truth with edits"

    @property
    def version(self) -> str:
        return "1"

    @property
    def label_map(self):
        return CANONICAL

    def segment_images(self, subject, images):
        mask = np.asarray(nib.load(str(subject.reference_mask)).dataobj).astype(np.uint8)
        edits = dict(item.split("=") for item in self.options.get("edits", "").split(";") if item)
        edit = edits.get(subject.subject_id)
        if edit is None:
            return mask
        mask[mask == 1] = 2
        if edit == "no-enhancement":
            return mask
        i, j, k = np.argwhere(mask == 2).mean(axis=0).round().astype(int)
        if edit == "one-voxel":
            mask[i, j, k] = 1
        elif edit == "line":
            mask[i, j, k - 2:k + 3] = 1
        elif edit == "plane":
            mask[i, j - 2:j + 3, k - 2:k + 3] = 1
        return mask


def run_edited(csv: Path, db: Path, edits: dict[int, str], params=None):
    """Process the cohort with :class:`EditedTruth`; ``edits`` by subject index."""
    cohort = load_cohort(csv, csv.parent, name="tiny")
    ids = sorted(s.subject_id for s in cohort.subjects)
    spec = ";".join(f"{ids[i]}={e}" for i, e in edits.items())
    store = Store(db)
    summary = process_cohort(cohort, store, ProcessingConfig(
        backend="test-edited-truth", backend_options={"edits": spec}, params=params))
    assert not summary.errors, summary.describe()
    return summary, store, ids


# -- point 1: an empty label has size 0 ---------------------------------------------------------
def test_empty_label_has_zero_volume_and_diameter_but_missing_intensity():
    long = long_rows([
        ("S1", "contrast_enhancing", "", "original_shape_MeshVolume", None, "label empty"),
        ("S1", "contrast_enhancing", "", "original_shape_Maximum3DDiameter", None, "label empty"),
        ("S1", "contrast_enhancing", "", "original_shape_Sphericity", None, "label empty"),
        ("S1", "contrast_enhancing", "t1c", "original_firstorder_Mean", None, "label empty"),
        ("S1", "non_enhancing", "", "original_shape_MeshVolume", 500.0, None),
        ("S1", "non_enhancing", "", "original_shape_Maximum3DDiameter", 12.0, None),
        ("S1", "non_enhancing", "", "original_shape_Sphericity", 0.7, None),
        ("S1", "non_enhancing", "t1c", "original_firstorder_Mean", 90.0, None),
    ])
    wide = features_wide(long).set_index("SUBJECT ID")
    assert wide.loc["S1", "Volume_label1"] == 0.0
    assert wide.loc["S1", "Max3DDiameter_label1"] == 0.0
    assert np.isnan(wide.loc["S1", "Sphericity_label1"])      # a ratio of nothing: undefined
    assert np.isnan(wide.loc["S1", "t1c_MeanIntensity_label1"])
    assert wide.loc["S1", "tumor_volume"] == 500.0


def test_subject_without_enhancement_enters_every_analysis_with_zero(cohort_csv, tmp_path):
    """The seed table every page reads gives Volume_label1 = 0 for a tumour without
    enhancement, so median splits and the survival screen keep the subject."""
    summary, store, ids = run_edited(cohort_csv, tmp_path / "g.duckdb", {0: "no-enhancement"})
    long = store.features_long(summary.cohort_id)
    ce = long[(long["subject_id"] == ids[0]) & (long["tumour_class"] == "contrast_enhancing")]
    assert (ce["reason"] == "label empty").all()  # the store keeps why
    df = seed_table(store, summary.cohort_id).set_index("SUBJECT ID")
    assert df.loc[ids[0], "Volume_label1"] == 0.0
    assert df.loc[ids[0], "Max3DDiameter_label1"] == 0.0
    assert np.isnan(df.loc[ids[0], "t1c_MeanIntensity_label1"])
    assert df.loc[ids[0], "tumor_volume"] == df.loc[ids[0], "Volume_label2"] > 0
    groups = make_groups(df.reset_index(), "Volume_label1", "median")
    assert groups.labels.notna().all()



# -- point 2: a degenerate label does not remove the subject ------------------------------------
def test_degenerate_label_keeps_the_subject_with_its_voxel_count_volume(cohort_csv, tmp_path):
    summary, store, ids = run_edited(cohort_csv, tmp_path / "g.duckdb",
                                     {0: "one-voxel", 1: "line", 2: "plane"})
    voxel_mm3 = float(np.prod(nib.load(str(load_cohort(cohort_csv, cohort_csv.parent)
                                            .subjects[0].path("t1"))).header.get_zooms()[:3]))
    long = store.features_long(summary.cohort_id)
    df = seed_table(store, summary.cohort_id).set_index("SUBJECT ID")
    for sid, n_voxels in ((ids[0], 1), (ids[1], 5)):
        ce = long[(long["subject_id"] == sid) & (long["tumour_class"] == "contrast_enhancing")]
        assert ce["value"].isna().all() and ce["reason"].notna().all()  # missing, with a reason
        ne = long[(long["subject_id"] == sid) & (long["tumour_class"] == "non_enhancing")]
        assert ne["value"].notna().all()                                 # the other class survives
        assert df.loc[sid, "Volume_label1"] == pytest.approx(n_voxels * voxel_mm3)
        assert np.isnan(df.loc[sid, "Max3DDiameter_label1"])
        assert np.isnan(df.loc[sid, "t1c_MeanIntensity_label1"])
        assert df.loc[sid, "tumor_volume"] == pytest.approx(n_voxels * voxel_mm3
                                                            + df.loc[sid, "Volume_label2"])
    assert df.loc[ids[2], ["Volume_label1", "Max3DDiameter_label1"]].notna().all()  # a plane works
    assert df["tumor_volume"].notna().all()


def test_pages_call_processed_what_the_store_says(cohort_csv, tmp_path):
    """A subject whose tumor_volume is missing (e.g. PyRadiomics failed on one label) is still
    processed: the pages' subject set comes from the store's status."""
    pytest.importorskip("streamlit")
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from gliocore.settings import Settings
    from pages._columns import ID
    from pages import _loaders as loaders
    from pages import _context as page_context
    from pages import _display as ui

    summary, store, ids = run_edited(cohort_csv, tmp_path / "g.duckdb", {})
    table = seed_table(store, summary.cohort_id)
    table["tumor_volume"] = np.nan  # as if no tumour volume could be computed anywhere
    ctx = page_context.Context(Settings.from_env(), str(store.path), loaders.db_stamp(store.path),
                         store.cohorts(), cohort_id=summary.cohort_id, table=table,
                         filtered=table, config_key=summary.config_key)
    assert ctx.has_features
    assert sorted(ui.processed(ctx)[ID]) == ids


# -- point 10: resegmentShape -------------------------------------------------------------------
def test_resegment_shape_keeps_seed_volumes_from_the_mask(cohort_csv, tmp_path):
    """With resegmentShape the shape ROI differs per sequence; the seed columns Volume_label{n}
    and tumor_volume are the mask's own voxel-count volume, not the first sequence's."""
    params = {"imageType": {"Original": {}},
              "featureClass": {"shape": ["MeshVolume", "Maximum3DDiameter"],
                               "firstorder": ["Mean"]},
              "setting": {"binWidth": 25, "resegmentRange": [-1, 1], "resegmentMode": "sigma",
                          "resegmentShape": True}}
    summary, store, ids = run_edited(cohort_csv, tmp_path / "g.duckdb", {0: "no-enhancement"},
                                     params=params)
    df = seed_table(store, summary.cohort_id).set_index("SUBJECT ID")
    seg = store.segmentations_of(summary.cohort_id).set_index("subject_id")
    np.testing.assert_allclose(df.loc[ids, "Volume_label1"], seg.loc[ids, "volume_ce_mm3"])
    np.testing.assert_allclose(df.loc[ids, "Volume_label2"], seg.loc[ids, "volume_ne_mm3"])
    np.testing.assert_allclose(df.loc[ids, "tumor_volume"],
                               seg.loc[ids, "volume_ce_mm3"] + seg.loc[ids, "volume_ne_mm3"])
    assert df.loc[ids[0], "Volume_label1"] == 0.0
    # the resegmented shape stays per sequence, and differs from the mask's
    for seq in ("flair", "t1", "t1c", "t2"):
        assert f"{seq}_Volume_label2" in df and f"{seq}_Max3DDiameter_label2" in df
    assert (df.loc[ids, "flair_Volume_label2"] < df.loc[ids, "Volume_label2"]).all()
    assert "Max3DDiameter_label2" not in df


# -- issue 19 point 8: formula injection ---------------------------------------------------------
FORMULAS = ["=HYPERLINK(\"http://x\",\"click\")", "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3",
            "\tx", "=1+2"]


def test_csv_output_defuses_formula_cells_and_parquet_keeps_them(tmp_path):
    from gliocore.analysis.export import csv_text, write_table

    df = pd.DataFrame({"SUBJECT ID": ["=1+2", "P2", "P3", "P4", "P5", "P6"], "note": FORMULAS,
                       "value": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0]})
    df["=cmd"] = "ok"
    back = pd.read_csv(write_table(df, tmp_path / "t.csv"), keep_default_na=False)
    assert back["note"].tolist() == ["'" + f for f in FORMULAS]
    assert back["SUBJECT ID"].tolist()[0] == "'=1+2"
    assert back["value"].tolist() == [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0]  # numbers untouched
    assert "'=cmd" in back.columns
    assert csv_text(df) == (tmp_path / "t.csv").read_text()
    pq = pd.read_parquet(write_table(df, tmp_path / "t.parquet"))
    assert pq["note"].tolist() == FORMULAS and pq["SUBJECT ID"][0] == "=1+2"


def test_cli_export_of_a_cohort_with_formula_cells(tiny_source, tmp_path):
    """The path a user takes: a clinical table with formula-like cells, processed and exported."""
    import subprocess
    import sys

    csv = private_copy(tiny_source, tmp_path)
    clinical = pd.read_csv(csv)
    clinical["note"] = (FORMULAS * len(clinical))[: len(clinical)]
    clinical.to_csv(csv, index=False)
    db = tmp_path / "store.duckdb"
    repo = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-m", "gliocore", "-q", "--db", str(db)]
    for args in (["process", "--csv", str(csv), "--workers", "1", "--no-location"],
                 ["export", str(tmp_path / "out.csv")]):
        proc = subprocess.run(run + args, cwd=repo, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["note"].tolist() == ["'" + f for f in clinical["note"]]
