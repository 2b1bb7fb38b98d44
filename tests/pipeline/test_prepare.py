"""The preprocessing stage in the pipeline: pass-through of BraTS-style scans, per-scan errors
naming the DICOM series, and no patient identifier in the store, the export or the logs."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preprocess"))
from cohorts import tiny_cohort  # noqa: E402
from dicom_writer import FAKE_PATIENT, FAKE_PATIENT_ID, PROTOCOLS, uid, write_series  # noqa: E402

from gliocore.cohort.loading import load_cohort  # noqa: E402
from gliocore.imaging.io import file_sha256  # noqa: E402
from gliocore.pipeline.prepare import describe, needs_preprocessing, prepare_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny"), n=2, shape=(24, 24, 16), seed=3)


def _copy(source: Path, tmp_path: Path) -> Path:
    shutil.copytree(source.parent, tmp_path / "cohort")
    return tmp_path / "cohort" / source.name


def test_brats_style_cohort_passes_through_untouched(source, tmp_path):
    csv = _copy(source, tmp_path)
    before = {p: file_sha256(p) for p in csv.parent.rglob("*.nii.gz")}
    assert not needs_preprocessing(csv, csv.parent)  # `--preprocess auto` keeps today's path
    prepared = prepare_cohort(csv, csv.parent, tmp_path / "prep")
    assert sorted(prepared.passthrough) == ["DEMO-001", "DEMO-002"]
    assert not prepared.results and not prepared.problems
    assert "passed through" in describe(prepared)
    cohort = load_cohort(csv, csv.parent, scans=prepared.scans_csv)
    original = load_cohort(csv, csv.parent)
    for a, b in zip(cohort.scans, original.scans):  # same files, same contents
        assert a.sequences == b.sequences
    assert {p: file_sha256(p) for p in csv.parent.rglob("*.nii.gz")} == before
    assert not list((tmp_path / "prep").rglob("*.nii.gz"))


def _dicom_subject(folder: Path, rng, break_flair: bool) -> None:
    """Four plausible series (small random volumes), FLAIR optionally with a missing slice."""
    for n, (desc, tr, te, ti, sc, acq, con) in enumerate(PROTOCOLS.values()):
        img = sitk.GetImageFromArray(rng.integers(0, 1000, size=(8, 20, 20)).astype(np.int16))
        img.SetSpacing((1.0, 1.0, 3.0))
        files = write_series(img, folder / f"series{n}", uid(900 + n), n + 2, desc, tr, te, ti,
                             sc, acq, con)
    if break_flair:
        files[4].unlink()


def test_a_raw_subject_is_detected_and_its_broken_series_named(source, tmp_path, rng):
    csv = _copy(source, tmp_path)
    s1 = csv.parent / "TCGA" / "DEMO-001"
    shutil.rmtree(s1)
    _dicom_subject(s1, rng, break_flair=True)
    assert needs_preprocessing(csv, csv.parent)
    prepared = prepare_cohort(csv, csv.parent, tmp_path / "prep")
    assert prepared.passthrough == ["DEMO-002"]
    (err,) = prepared.problems
    assert err.subject_id == "DEMO-001" and err.stage == "preprocess"
    assert "FLAIR series 5 'AX FLAIR' (7 files) cannot be read: 1 missing slice" in str(err)


def test_cli_reports_the_series_and_leaks_no_identifier(source, tmp_path, rng):
    """`process --csv --root` on a cohort with a DICOM subject: the DICOM subject fails on its
    broken series, the other is processed; the fake patient name and ID appear nowhere."""
    csv = _copy(source, tmp_path)
    s1 = csv.parent / "TCGA" / "DEMO-001"
    shutil.rmtree(s1)
    _dicom_subject(s1, rng, break_flair=True)
    data = tmp_path / "data"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data),
                               *args], cwd=REPO, capture_output=True, text=True, timeout=600)

    proc = cli("process", "--csv", str(csv), "--root", str(csv.parent), "--no-location")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "1 missing slice" in proc.stdout and "DEMO-001" in proc.stdout
    status = cli("status")
    export = cli("export", str(data / "features.csv"))
    assert export.returncode == 0, export.stderr
    assert "FLAIR series 5 'AX FLAIR'" in status.stdout
    texts = [proc.stdout, proc.stderr, status.stdout, status.stderr, export.stdout]
    blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    for needle in (FAKE_PATIENT, FAKE_PATIENT_ID, "ST ELSEWHERE"):
        assert not any(needle in t for t in texts), needle
        assert not any(needle.encode() in b for b in blobs), needle
    assert any(line.startswith("DEMO-002,") for line in (data / "features.csv").read_text().splitlines())


@pytest.mark.shared
@pytest.mark.slow
def test_dicom_study_in_segmented_out(shared_dir, tmp_path):
    """A real BraTS case written as a DICOM study (with decoys and a fake patient name) goes in
    with `process --csv --root` and comes out preprocessed, segmented and exported, cached on a
    second run, with no identifier anywhere."""
    pytest.importorskip("deepbet", reason="optional brain-extraction weights not installed")
    from dicom_writer import write_study
    case = "Brats18_TCIA10_628_1"
    base = shared_dir / "cases" / "brats18-dev" / case / case
    names = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
    vols = {s: sitk.ReadImage(f"{base}_{n}.nii.gz") for s, n in names.items()}
    root = tmp_path / "cohort"
    write_study(vols, root / "P01")
    (root / "clinical.csv").write_text("SUBJECT ID,Survival(months),IDH-status,event\n"
                                       "P01,14.0,wildtype,1\n")
    data = tmp_path / "data"
    args = [sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data), "process", "--csv",
            str(root / "clinical.csv"), "--root", str(root), "--no-location",
            "--brain-model", "deepbet"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "P01/baseline: done; N4, rigid to T1c" in proc.stdout, proc.stdout
    assert re.search(r"1 (subjects|scans): 1 computed, 0 from cache, 0 with errors", proc.stdout)
    assert "QC:" not in proc.stdout, proc.stdout  # aligned input: no similarity drop flagged
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert "P01/baseline: cached" in again.stdout and "1 from cache" in again.stdout, again.stdout
    out = data / "preprocessed" / "cohort" / "P01" / "baseline"
    t1ce = sitk.ReadImage(str(out / "P01_t1ce.nii.gz"))
    assert t1ce.GetSize() == vols["t1c"].GetSize()
    export = subprocess.run([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data),
                             "export", str(data / "f.csv")], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert export.returncode == 0, export.stderr
    texts = [proc.stdout, proc.stderr, again.stdout, again.stderr, export.stdout]
    blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    for needle in (FAKE_PATIENT, FAKE_PATIENT_ID, "ST ELSEWHERE"):
        assert not any(needle in t for t in texts), needle
        assert not any(needle.encode() in b for b in blobs), needle
