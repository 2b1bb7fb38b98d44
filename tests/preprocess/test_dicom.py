"""DICOM import: grouping, geometry round trip, and clear per-series refusals of broken input."""
from __future__ import annotations

import locale
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import FAKE_PATIENT, uid, write_series

from gliocore.preprocess.dicom import DicomSeriesError, group_series, iter_files, read_series

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _volume(rng, shape=(24, 20, 8), spacing=(0.9, 0.9, 5.0), oblique=True) -> sitk.Image:
    img = sitk.GetImageFromArray(rng.integers(0, 3000, size=shape[::-1]).astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin((-100.0, -120.5, 30.25))
    if oblique:
        t = sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3)
        img.SetDirection(t.GetMatrix())
    return img


def test_round_trip_keeps_geometry_and_voxels(tmp_path, rng):
    encoding = locale.getencoding()
    src = _volume(rng)
    write_series(src, tmp_path / "a" / "deep", uid(7), 5, "AX T1")
    (tmp_path / "a" / "README.txt").write_text("not DICOM")
    series, skipped = group_series(tmp_path)
    assert skipped == 1 and len(series) == 1 and series[0].problem is None
    back = read_series(series[0])
    assert back.GetSize() == src.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), src.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(back.GetSpacing(), src.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(back.GetDirection(), src.GetDirection(), atol=1e-4)
    # the writer rescales to 0..4000; the voxel order and relative values survive exactly
    exp = sitk.GetArrayFromImage(sitk.Cast(sitk.RescaleIntensity(src, 0, 4000), sitk.sitkInt16))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), exp)
    assert locale.getencoding() == encoding  # GDCM left the C locale as it found it


def test_no_identifier_is_read(tmp_path, rng):
    write_series(_volume(rng), tmp_path, uid(8), 2, "AX T2")
    series, _ = group_series(tmp_path)
    assert FAKE_PATIENT not in repr(series)
    assert uid(8) not in repr(series)  # the series UID is kept only as a short hash


def test_missing_slice_is_named(tmp_path, rng):
    files = write_series(_volume(rng), tmp_path, uid(9), 4, "AX FLAIR")
    files[3].unlink()
    (s,), _ = group_series(tmp_path)
    assert "1 missing slice" in s.problem
    with pytest.raises(DicomSeriesError, match=r"series 4 'AX FLAIR' \(7 files\): 1 missing slice"):
        read_series(s)


def test_duplicated_slice(tmp_path, rng):
    files = write_series(_volume(rng), tmp_path, uid(10), 4, "AX T1")
    shutil.copy(files[2], tmp_path / "copy_of_slice")
    (s,), _ = group_series(tmp_path)
    assert "1 duplicated slice position" in s.problem


def test_two_orientations_in_one_series(tmp_path, rng):
    write_series(_volume(rng, oblique=False), tmp_path, uid(11), 6, "MIXED", prefix="A")
    write_series(_volume(rng, oblique=True), tmp_path, uid(11), 6, "MIXED", prefix="B")
    (s,), _ = group_series(tmp_path)
    assert "2 slice orientations" in s.problem


def test_uneven_spacing(tmp_path, rng):
    img = _volume(rng)
    write_series(img[:, :, :4], tmp_path, uid(12), 3, "GAPPY", prefix="A")
    shifted = img[:, :, 4:]
    shifted.SetOrigin(img.TransformIndexToPhysicalPoint((0, 0, 4)) + np.asarray(
        img.GetDirection()).reshape(3, 3)[:, 2] * 1.7)
    write_series(shifted, tmp_path, uid(12), 3, "GAPPY", prefix="B")
    (s,), _ = group_series(tmp_path)
    assert "uneven slice spacing" in s.problem


def test_non_image_object_is_set_aside(tmp_path, rng):
    write_series(_volume(rng), tmp_path / "img", uid(13), 2, "AX T1")
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    ds.SOPInstanceUID = uid(14) + ".1"
    ds.SeriesInstanceUID = uid(14)
    ds.SeriesNumber = 99
    ds.SeriesDescription = "DOSE REPORT"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    series, _ = group_series(tmp_path)
    by_num = {s.number: s for s in series}
    assert by_num[2].problem is None
    assert "Structured Report" in by_num[99].problem
    with pytest.raises(DicomSeriesError, match="series 99 'DOSE REPORT'"):
        read_series(by_num[99])


def test_enormous_folder_refused_before_opening(tmp_path):
    """10^5 files: refused while walking, no file opened."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(100_000):
        (many / f"{i}").touch()
    with pytest.raises(DicomSeriesError, match="more than 20000 files"):
        group_series(many)
    assert sum(1 for _ in iter_files(tmp_path, max_files=200_000)) == 100_000


def test_pydicom_mr_files(tmp_path):
    """pydicom's real MR test files: a 1-slice file is no volume, the encodings read as a series."""
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", single)
    (s,), _ = group_series(single)
    assert "only 1 slice" in s.problem
    ref = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    spacing = 5.0
    stack = tmp_path / "stack"
    stack.mkdir()
    names = ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
             "MR_small_expb.dcm"]
    normal = np.cross(np.asarray(ref.ImageOrientationPatient[:3], float),
                      np.asarray(ref.ImageOrientationPatient[3:], float))
    for k, name in enumerate(names):
        ds = pydicom.dcmread(PYDICOM_FILES / name)
        ds.ImagePositionPatient = [float(v) + k * spacing * n for v, n in
                                   zip(ref.ImagePositionPatient, normal)]
        ds.SOPInstanceUID = uid(300 + k)
        ds.InstanceNumber = k + 1
        ds.save_as(stack / f"f{k}")
    (s,), _ = group_series(stack)
    assert s.problem is None, s.problem
    img = read_series(s)
    assert img.GetSize() == (64, 64, 5)
    assert img.GetSpacing()[2] == pytest.approx(spacing, abs=1e-3)
    arr = sitk.GetArrayFromImage(img)
    for k in range(5):  # every encoding decodes to the same pixels as pydicom's reference
        np.testing.assert_array_equal(arr[k], ref.pixel_array)


def test_truncated_file_is_a_series_error(tmp_path):
    stack = tmp_path / "t"
    stack.mkdir()
    ref = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    for k in range(3):
        ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
        ds.ImagePositionPatient = [float(ref.ImagePositionPatient[0]), float(ref.ImagePositionPatient[1]),
                                   float(ref.ImagePositionPatient[2]) + 5 * k]
        ds.SOPInstanceUID = uid(400 + k)
        ds.save_as(stack / f"f{k}")
    data = (stack / "f1").read_bytes()
    (stack / "f1").write_bytes(data[: len(data) - 3000])
    (s,), _ = group_series(stack)
    with pytest.raises(DicomSeriesError, match=r"series \d+ .*GDCM cannot read it"):
        read_series(s)
