"""Issue 19 (red team), images: the volume limit counts the bytes held (float32 and copies), a
subject's grids are checked from the headers before any voxel is read, and pixdim must be
positive where the affine comes from it (12)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import gliocore.cohort.subjects as subjects
from gliocore.cohort.subjects import Subject, load_subject_images
from gliocore.errors import InvalidVolumeError, SubjectError
from gliocore.imaging.io import load_volume
from gliocore.settings import InputLimits, MiB
from gliocore.types import SEQUENCES


def _save(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_the_limit_counts_float32_bytes_not_the_stored_uint8(tmp_path):
    p = _save(tmp_path / "u8.nii.gz", np.zeros((64, 64, 64), np.uint8))  # 256 KiB stored
    limits = InputLimits(max_volume_bytes=MiB)  # 1 MiB: uint8 fits, float32 (1 MiB + the uint8) not
    assert load_volume(p, dtype=None, limits=limits).data.dtype == np.uint8
    with pytest.raises(InvalidVolumeError, match="float32"):
        load_volume(p, limits=limits)


def test_the_peak_of_a_scaled_uint8_volume_stays_near_the_counted_bytes(tmp_path):
    import tracemalloc
    img = nib.Nifti1Image(np.ones((64, 64, 64), np.uint8), np.eye(4))
    img.header.set_slope_inter(2.0, 1.0)  # scaled data: nibabel would make float64 first
    nib.save(img, str(tmp_path / "s.nii"))
    tracemalloc.start()
    vol = load_volume(tmp_path / "s.nii")
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert vol.data.dtype == np.float32 and float(vol.data[0, 0, 0]) == 3.0
    n = 64 ** 3
    assert peak <= n * (1 + 4) * 1.2, f"peak {peak / n:.1f} bytes per voxel"


def _subject(tmp_path: Path, flair_shape=(8, 8, 8)) -> Subject:
    paths = {}
    for seq in SEQUENCES:
        shape = flair_shape if seq == "flair" else (8, 8, 8)
        paths[seq] = _save(tmp_path / f"S_{seq}.nii.gz", np.ones(shape, np.float32))
    return Subject("S", paths, tmp_path)


def test_grids_are_checked_from_headers_before_any_voxel_is_read(tmp_path, monkeypatch):
    subj = _subject(tmp_path, flair_shape=(8, 8, 9))
    loaded = []
    real = subjects.load_volume
    monkeypatch.setattr(subjects, "load_volume", lambda p, **k: loaded.append(p) or real(p, **k))
    with pytest.raises(SubjectError, match="shape"):
        load_subject_images(subj)
    assert loaded == []


def test_a_subject_whose_four_volumes_exceed_the_worker_budget_is_refused_unread(tmp_path,
                                                                                  monkeypatch):
    subj = _subject(tmp_path)
    loaded = []
    real = subjects.load_volume
    monkeypatch.setattr(subjects, "load_volume", lambda p, **k: loaded.append(p) or real(p, **k))
    # each volume 2 KiB as float32; four of them with the working copies exceed 8 KiB
    limits = InputLimits(max_subject_bytes=8 * 1024)
    with pytest.raises(SubjectError, match="max_subject_bytes"):
        load_subject_images(subj, limits=limits)
    assert loaded == []
    assert len(load_subject_images(subj)) == 4  # the default budget holds them


def _pixdim_file(tmp_path: Path, pixdim, qcode=1, scode=0) -> Path:
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    h = img.header
    h.set_qform(np.eye(4), code=qcode)
    h.set_sform(np.eye(4), code=scode)
    pix = h["pixdim"].copy()
    pix[1:4] = pixdim
    h["pixdim"] = pix
    p = tmp_path / "pix.nii.gz"
    nib.save(img, str(p))
    return p


@pytest.mark.parametrize("pixdim", [(0, 1, 1), (1, 0, 1), (-1, 1, 1), (1, 1, np.nan)])
def test_zero_negative_or_nan_pixdim_under_a_qform_is_refused_clearly(tmp_path, pixdim):
    p = _pixdim_file(tmp_path, pixdim)
    with pytest.raises(InvalidVolumeError, match="pixdim"):
        load_volume(p)


def test_pixdim_is_not_used_when_only_the_sform_is_set(tmp_path):
    p = _pixdim_file(tmp_path, (0, 1, 1), qcode=0, scode=1)
    assert load_volume(p).spacing == (1.0, 1.0, 1.0)
