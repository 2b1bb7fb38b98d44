"""A sequence whose field of view missed part of the brain: no segmentation there (issue 20).

Unit tests of :mod:`gliocore.preprocess.field_of_view` and the pipeline on a tiny phantom cohort
whose one subject carries the preprocessing stage's record of a FLAIR slab covering the lower
half of the brain.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocore.cohort.loading import load_cohort
from gliocore.imaging.io import load_volume
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.preprocess.field_of_view import (fov_fingerprint, fov_maps,
                                               restrict_to_field_of_view)
from gliocore.segment import register_segmenter
from gliocore.segment.baseline import BaselineSegmenter
from gliocore.store import Store

from cohorts import private_copy, tiny_cohort

SHAPE = (48, 48, 32)


class _Backend:
    def __init__(self, handles: bool = False):
        self.name = "rules"
        self.handles_partial_coverage = handles


def _write_record(folder: Path, fov: np.ndarray, affine: np.ndarray = np.eye(4)) -> Path:
    path = folder / "scan_flair_fov.nii.gz"
    nib.save(nib.Nifti1Image(fov.astype(np.uint8), affine), str(path))
    (folder / "preprocess.json").write_text(json.dumps({"outputs": {"flair_fov": str(path)}}))
    return path


def test_mask_is_cleared_where_flair_did_not_image_and_the_scan_says_so(tmp_path):
    fov = np.zeros((10, 10, 8), dtype=bool)
    fov[:, :, :4] = True  # the slab covers the lower half
    _write_record(tmp_path, fov)
    mask = np.zeros((10, 10, 8), dtype=np.uint8)
    mask[3:6, 3:6, 2:7] = 2
    mask[4, 4, 5] = 1
    brain = np.ones((10, 10, 8), dtype=bool)
    out, warnings = restrict_to_field_of_view(mask, tmp_path, _Backend(), brain)
    assert not out[:, :, 4:].any() and (out[:, :, :4] == mask[:, :, :4]).all()
    assert mask[4, 4, 5] == 1  # the input is not changed in place
    assert warnings == ["FLAIR's field of view misses 50% of the brain: no segmentation there "
                        "(rules needs all four sequences)"]


def test_a_backend_that_handles_a_partial_sequence_keeps_its_mask(tmp_path):
    fov = np.zeros((10, 10, 8), dtype=bool)
    fov[:, :, :4] = True
    _write_record(tmp_path, fov)
    mask = np.full((10, 10, 8), 2, dtype=np.uint8)
    out, warnings = restrict_to_field_of_view(mask, tmp_path, _Backend(handles=True),
                                              np.ones_like(fov))
    assert out is mask and warnings == []


def test_no_record_or_full_coverage_changes_nothing(tmp_path):
    mask = np.ones((4, 4, 4), dtype=np.uint8)
    assert fov_maps(tmp_path) == {} and fov_fingerprint(tmp_path) == ""
    out, warnings = restrict_to_field_of_view(mask, tmp_path, _Backend(), mask.astype(bool))
    assert out is mask and warnings == []
    (tmp_path / "preprocess.json").write_text(json.dumps({"outputs": {"t1": "x.nii.gz"}}))
    assert fov_maps(tmp_path) == {}


def test_fingerprint_follows_the_map(tmp_path):
    fov = np.zeros((6, 6, 6), dtype=bool)
    fov[:, :, :3] = True
    _write_record(tmp_path, fov)
    first = fov_fingerprint(tmp_path)
    fov[:, :, 3] = True
    _write_record(tmp_path, fov)
    assert first.startswith("|fov:") and fov_fingerprint(tmp_path) not in ("", first)


def test_a_map_on_another_grid_is_an_error_naming_the_file(tmp_path):
    path = _write_record(tmp_path, np.ones((5, 5, 5), dtype=bool))
    with pytest.raises(ValueError, match=path.name):
        restrict_to_field_of_view(np.ones((4, 4, 4), np.uint8), tmp_path, _Backend(),
                                  np.ones((4, 4, 4), dtype=bool))


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny-fov"), n=2, shape=SHAPE, seed=5)


@register_segmenter
class BoxRules(BaselineSegmenter):
    """The rules' identity and labels, with a tumour every phantom has: a box across the slices
    (the 48-voxel phantoms are too small for the rules to find theirs)."""

    name = "test-box-rules"

    def segment_images(self, subject, images):
        shape = next(iter(images.values())).shape
        mask = np.zeros(shape, dtype=np.uint8)
        mask[20:28, 20:28, 8:24] = 2
        mask[22:26, 22:26, 12:20] = 1
        return mask


def _run(csv: Path, db: Path):
    cohort = load_cohort(csv, csv.parent, name="tiny")
    store = Store(db)
    config = ProcessingConfig(backend="test-box-rules")
    return cohort, store, process_cohort(cohort, store, config)


def test_pipeline_segments_nothing_outside_the_slab_and_resegments_when_it_changes(
        tiny_source, tmp_path):
    csv = private_copy(tiny_source, tmp_path)
    cohort, store, summary = _run(csv, tmp_path / "g.duckdb")
    segs = store.segmentations_of(summary.cohort_id).set_index("subject_id")
    sid = segs.index[0]
    before = np.asarray(load_volume(segs.loc[sid, "path"], dtype=None).data)
    zs = np.nonzero(before.any(axis=(0, 1)))[0]
    cut = int((zs.min() + zs.max() + 1) // 2)  # the slab ends in the middle of the tumour
    scan = next(s for s in cohort.subjects if s.subject_id == sid)
    t1c = nib.load(str(scan.sequences["t1c"]))
    fov = np.zeros(t1c.shape, dtype=bool)
    fov[:, :, :cut] = True
    _write_record(Path(scan.folder), fov, t1c.affine)

    cohort, store, summary = _run(csv, tmp_path / "g.duckdb")
    assert summary.computed == [sid]  # the record entered that scan's key only
    segs = store.segmentations_of(summary.cohort_id).set_index("subject_id")
    after = np.asarray(load_volume(segs.loc[sid, "path"], dtype=None).data)
    assert not after[:, :, cut:].any()
    assert (after[:, :, :cut] == before[:, :, :cut]).all()
    assert "FLAIR's field of view misses" in segs.loc[sid, "warnings"]
