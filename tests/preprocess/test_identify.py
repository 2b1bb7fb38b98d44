"""Sequence identification, on real BraTS volumes written as a scanner-like DICOM study."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_writer import FAKE_PATIENT, FAKE_PATIENT_ID, PROTOCOLS, crop, uid, write_series, \
    write_study

from gliocore.preprocess.dicom import group_series
from gliocore.preprocess.identify import classify, pick_sequences, read_mapping
from gliocore.preprocess.importer import find_dicom_scans, read_raw_scan

CASE = "Brats18_TCIA13_623_1"
SLAB = (60, 90)  # 30 axial slices of each sequence: enough for headers and geometry


@pytest.fixture(scope="module")
def brats_study(shared_dir, tmp_path_factory):
    base = shared_dir / "cases" / "brats18-dev" / CASE / CASE
    names = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
    vols = {seq: crop(sitk.ReadImage(f"{base}_{n}.nii.gz"), SLAB) for seq, n in names.items()}
    folder = tmp_path_factory.mktemp("study")
    write_study(vols, folder)
    return folder, vols


@pytest.mark.shared
def test_four_sequences_found_named_and_round_tripped(brats_study):
    folder, vols = brats_study
    scans, problems = find_dicom_scans(folder, "S1")
    assert not problems, problems
    (scan,) = scans
    assert scan.scan_id == "baseline"
    for seq in ("t1", "t1c", "t2", "flair"):
        assert scan.series[seq].description == PROTOCOLS[seq][0], seq
        assert scan.identification.picks[seq].confidence >= 0.6
    images, hashes = read_raw_scan(scan)
    for seq, img in images.items():
        src = vols[seq]
        assert img.GetSize() == src.GetSize()
        np.testing.assert_allclose(img.GetOrigin(), src.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(img.GetSpacing(), src.GetSpacing(), atol=1e-4)
        np.testing.assert_allclose(img.GetDirection(), src.GetDirection(), atol=1e-5)
        exp = sitk.GetArrayFromImage(sitk.Cast(sitk.RescaleIntensity(src, 0, 4000), sitk.sitkInt16))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), exp)
    assert len(set(hashes.values())) == 4
    text = repr(scan) + repr(problems)
    assert FAKE_PATIENT not in text and FAKE_PATIENT_ID not in text


@pytest.mark.shared
def test_decoys_are_set_aside_with_reasons(brats_study):
    folder, _ = brats_study
    series, _ = group_series(folder)
    reasons = {s.description: classify(s) for s in series}
    loc, dwi = reasons["3-PLANE LOC"], reasons["AX DWI b0 b1000"]
    assert loc.sequence is None and "localiser" in loc.reason
    assert "3 slice orientations" in loc.series.problem  # and it could not be read anyway
    assert dwi.sequence is None and "diffusion" in dwi.reason
    assert "duplicated slice position" in dwi.series.problem
    assert reasons["T1 COR MPR"].sequence is None and "MPR" in reasons["T1 COR MPR"].reason


def _plain(rng, folder, number, desc, **tags):
    img = sitk.GetImageFromArray(rng.integers(0, 1000, size=(6, 16, 16)).astype(np.int16))
    write_series(img, folder, uid(500 + number), number, desc, **tags)


def test_two_t1_without_contrast_tags_are_not_guessed(tmp_path, rng):
    for n in (3, 4):
        _plain(rng, tmp_path / f"s{n}", n, "", tr=500.0, te=10.0, scanning="SE")
    _plain(rng, tmp_path / "t2", 5, "", tr=5000.0, te=100.0, scanning="SE")
    _plain(rng, tmp_path / "fl", 6, "", tr=9000.0, te=110.0, ti=2500.0, scanning="SE\\IR")
    scans, problems = find_dicom_scans(tmp_path, "S2")
    assert not scans
    (err,) = problems
    assert "GlioScope does not guess" in str(err) and "--sequence-map" in str(err)
    assert "t1c: no series reads as T1C" in str(err)
    mapping_csv = tmp_path / "map.csv"
    mapping_csv.write_text("SUBJECT ID,series,sequence\nS2,3,t1\nS2,4,t1c\n")
    scans, problems = find_dicom_scans(tmp_path, "S2", read_mapping(mapping_csv))
    assert not problems
    assert scans[0].series["t1c"].number == 4 and scans[0].series["t2"].number == 5
    assert scans[0].identification.picks["flair"].reason.startswith("inversion recovery")


def test_timing_alone_identifies_with_reason(tmp_path, rng):
    _plain(rng, tmp_path, 7, "", tr=9000.0, te=110.0, ti=2500.0, scanning="SE\\IR")
    (s,), _ = group_series(tmp_path)
    c = classify(s)
    assert c.sequence == "flair" and "TI 2500" in c.reason


def test_mapping_rejects_unknown_sequence(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("SUBJECT ID,series,sequence\nS1,3,pd\n")
    with pytest.raises(ValueError, match="line 2: sequence 'pd'"):
        read_mapping(p)


def test_a_broken_pick_is_named_not_replaced(tmp_path, rng):
    """A FLAIR with a missing slice stops the scan with the series named; no other is guessed."""
    for n, (desc, tr, te, ti, sc, acq, con) in enumerate(PROTOCOLS.values()):
        img = sitk.GetImageFromArray(rng.integers(0, 1000, size=(6, 16, 16)).astype(np.int16))
        files = write_series(img, tmp_path / f"s{n}", uid(800 + n), n + 2, desc, tr, te, ti, sc,
                             acq, con)
    files[2].unlink()  # the last written: FLAIR, series 5
    scans, problems = find_dicom_scans(tmp_path, "S4")
    assert not scans
    assert "FLAIR series 5 'AX FLAIR' (5 files) cannot be read: 1 missing slice" in str(problems[0])


def test_studies_become_scans_ordered_by_day(tmp_path, rng):
    for study, date in ((1, "20200110"), (2, "20200410")):
        for n, (desc, tr, te, ti, sc, acq, con) in enumerate(PROTOCOLS.values()):
            img = sitk.GetImageFromArray(rng.integers(0, 1000, size=(6, 16, 16)).astype(np.int16))
            write_series(img, tmp_path / f"st{study}" / f"s{n}", uid(600 + 10 * study + n), n + 2,
                         desc, tr, te, ti, sc, acq, con, study_uid=uid(700 + study), date=date)
    scans, problems = find_dicom_scans(tmp_path, "S3")
    assert not problems
    assert [(s.scan_id, s.days) for s in scans] == [("day0", 0.0), ("day91", 91.0)]
    assert not any("2020" in repr(s.scan_id) for s in scans)
    assert pick_sequences(list(scans[1].series.values())).complete
