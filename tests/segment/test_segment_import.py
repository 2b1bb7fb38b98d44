"""Issue 19.2 and 19.5: the import backend's mask pattern is relative to the scan's folder, cannot
leave it, has plain ``{subject}``/``{scan}`` placeholders only, and names a regular file of
bounded size (a FIFO or ``/dev/zero`` never hangs the run)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocore.cohort.subjects import Scan
from gliocore.errors import SubjectError
from gliocore.segment import get_segmenter
from gliocore.types import SEQUENCES


def _scan(tmp_path: Path) -> Scan:
    folder = tmp_path / "P1"
    folder.mkdir()
    paths = {}
    for seq in SEQUENCES:
        paths[seq] = folder / f"P1_{seq}.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(paths[seq]))
    return Scan("P1", paths, folder)


@pytest.mark.parametrize("pattern", [
    "/masks/{subject}.nii.gz", "../{subject}_seg.nii.gz", "seg/../../{subject}.nii.gz",
    "{subject:>400000000}", "{subject!r}_seg.nii.gz", "{subject.__class__}_seg.nii.gz",
    "{subject[0]}_seg.nii.gz", "{other}_seg.nii.gz", "{0}_seg.nii.gz", "",
    "C:\\masks\\{subject}.nii.gz", "..\\{subject}.nii.gz"])
def test_import_refuses_patterns_that_could_leave_the_folder_or_format_freely(pattern):
    with pytest.raises(ValueError, match="pattern"):
        get_segmenter("import", pattern=pattern, label_map="brats")


@pytest.mark.parametrize("pattern", ["{subject}_seg.nii.gz", "seg/{subject}_{scan}_seg.nii.gz",
                                     "masks/{{literal}}{subject}.nii.gz"])
def test_import_accepts_plain_relative_patterns(pattern):
    get_segmenter("import", pattern=pattern, label_map="brats")


def _finishes(fn, seconds: float = 20.0):
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the call hangs"
    return box


def test_import_mask_that_is_a_link_to_dev_zero_is_refused_without_hanging(tmp_path):
    scan = _scan(tmp_path)
    os.symlink("/dev/zero", scan.folder / "P1_seg.nii.gz")
    seg = get_segmenter("import", pattern="{subject}_seg.nii.gz", label_map="brats")
    box = _finishes(lambda: seg.input_fingerprint(scan))
    assert isinstance(box.get("error"), SubjectError)


def test_import_mask_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    scan = _scan(tmp_path)
    os.mkfifo(scan.folder / "P1_seg.nii.gz")
    seg = get_segmenter("import", pattern="{subject}_seg.nii.gz", label_map="brats")
    box = _finishes(lambda: seg.input_fingerprint(scan))
    assert isinstance(box.get("error"), SubjectError)
    assert "regular file" in str(box["error"])


def test_import_mask_linked_from_outside_the_scan_folder_is_refused(tmp_path):
    scan = _scan(tmp_path)
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(other))
    os.symlink(other, scan.folder / "P1_seg.nii.gz")
    seg = get_segmenter("import", pattern="{subject}_seg.nii.gz", label_map="brats")
    with pytest.raises(SubjectError, match="outside"):
        seg.input_fingerprint(scan)


def test_import_mask_of_a_subject_whose_id_climbs_out_is_refused(tmp_path):
    scan = _scan(tmp_path)
    evil = Scan("../../x", scan.sequences, scan.folder)
    seg = get_segmenter("import", pattern="{subject}_seg.nii.gz", label_map="brats")
    with pytest.raises(SubjectError, match="outside"):
        seg.input_fingerprint(evil)


def test_import_mask_larger_than_the_limit_is_refused_unread(tmp_path):
    scan = _scan(tmp_path)
    big = scan.folder / "P1_seg.nii"
    with open(big, "wb") as fh:
        fh.truncate(3 << 30)  # sparse: 3 GiB, beyond the 2 GiB volume limit
    seg = get_segmenter("import", pattern="{subject}_seg.nii", label_map="brats")
    box = _finishes(lambda: seg.input_fingerprint(scan), 5.0)
    assert isinstance(box.get("error"), SubjectError) and "limit" in str(box["error"])
