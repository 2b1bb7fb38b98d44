"""Cohort loading: naming conventions and every validation error, on tiny volumes."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliocore.cohort.clinical import read_clinical
from gliocore.cohort.loading import load_cohort
from gliocore.cohort.naming import (BRATS, BRATS2023, NNUNET, TCGA, NamingScheme, find_sequences,
                                   get_naming)
from gliocore.cohort.subjects import load_subject_images
from gliocore.errors import CohortError, InvalidVolumeError, SubjectError
from gliocore.imaging.io import load_volume

SHAPE = (8, 9, 7)


def write_nifti(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(0).random(SHAPE).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def write_subject(folder: Path, sid: str, suffixes: dict[str, str], ext: str = ".nii.gz") -> None:
    for seq, suffix in suffixes.items():
        write_nifti(folder / f"{sid}{suffix}{ext}")


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def clinical_row(sid: str, **kw) -> dict:
    row = {"SUBJECT ID": sid, "Survival(months)": 12.0, "IDH-status": "wildtype", "event": 1,
           "age": 60, "sex": "M"}
    row.update(kw)
    return row


@pytest.mark.parametrize("scheme, names", [
    (TCGA, ["S1_t1.nii.gz", "S1_t1Gd.nii.gz", "S1_t2.nii.gz", "S1_flair.nii.gz"]),
    (BRATS, ["S1_t1.nii.gz", "S1_t1ce.nii.gz", "S1_t2.nii.gz", "S1_flair.nii.gz"]),
    (BRATS2023, ["S1-t1n.nii.gz", "S1-t1c.nii.gz", "S1-t2w.nii.gz", "S1-t2f.nii.gz"]),
    (NNUNET, ["S1_0000.nii.gz", "S1_0001.nii.gz", "S1_0002.nii.gz", "S1_0003.nii.gz"]),
])
def test_naming_conventions_found_automatically(tmp_path, scheme, names):
    folder = tmp_path / "S1"
    for n in names:
        write_nifti(folder / n)
    write_nifti(folder / "S1_seg.nii.gz")  # a mask beside the images is not a sequence
    paths, matched = find_sequences(folder, "S1", get_naming(None))
    assert matched == scheme.name
    assert [paths[s].name for s in ("t1", "t1c", "t2", "flair")] == names


def test_custom_naming_spec(tmp_path):
    folder = tmp_path / "case"
    for suf in ("_t1_bet", "_t1c_bet", "_t2_bet", "_fla_bet"):
        write_nifti(folder / f"case{suf}.nii")
    scheme = NamingScheme.parse("t1=_t1_bet,t1c=_t1c_bet,t2=_t2_bet,flair=_fla_bet")
    paths, _ = find_sequences(folder, "case", [scheme])
    assert paths["flair"].name == "case_fla_bet.nii"
    with pytest.raises(ValueError, match="unknown sequence"):
        NamingScheme.parse("t1=_a,dwi=_b")


def test_flat_layout_files_prefixed_by_subject(tmp_path):
    for sid in ("A", "B"):
        write_subject(tmp_path / "img", sid, dict(TCGA.suffixes))
    csv = write_csv(tmp_path / "c.csv", [clinical_row("A"), clinical_row("B")])
    cohort = load_cohort(csv, tmp_path / "img")
    assert cohort.subject_ids == ["A", "B"]
    assert cohort.subject("B").path("t1c").name == "B_t1Gd.nii.gz"


def test_missing_sequence_names_subject_and_folder(tmp_path):
    write_subject(tmp_path / "S1", "S1", {k: v for k, v in TCGA.suffixes.items() if k != "t2"})
    write_subject(tmp_path / "S2", "S2", dict(TCGA.suffixes))
    csv = write_csv(tmp_path / "c.csv", [clinical_row("S1"), clinical_row("S2")])
    cohort = load_cohort(csv, tmp_path)
    assert cohort.subject_ids == ["S2"]  # the other subject goes on
    (err,) = cohort.problems
    assert err.subject_id == "S1" and "missing t2" in str(err) and str(tmp_path / "S1") in str(err)


def test_subject_without_folder(tmp_path):
    csv = write_csv(tmp_path / "c.csv", [clinical_row("GHOST", img_dir="nowhere/GHOST")])
    cohort = load_cohort(csv, tmp_path)
    assert cohort.subjects == [] and cohort.problems[0].subject_id == "GHOST"


@pytest.mark.parametrize("missing", ["SUBJECT ID", "Survival(months)", "IDH-status"])
def test_missing_required_column_is_a_cohort_error(tmp_path, missing):
    row = clinical_row("S1")
    row.pop(missing)
    csv = write_csv(tmp_path / "c.csv", [row])
    with pytest.raises(CohortError, match=f"required column.*{missing.replace('(', '.').replace(')', '.')}"):
        read_clinical(csv)


def test_missing_csv_and_root(tmp_path):
    with pytest.raises(CohortError, match="not found"):
        read_clinical(tmp_path / "nope.csv")
    csv = write_csv(tmp_path / "c.csv", [clinical_row("S1")])
    with pytest.raises(CohortError, match="image root not found"):
        load_cohort(csv, tmp_path / "no_such_dir")


def test_clinical_types_and_bad_values(tmp_path):
    csv = write_csv(tmp_path / "c.csv", [
        clinical_row("S1", **{"Survival(months)": "abc"}),
        clinical_row("S2", **{"IDH-status": "maybe"}),
        clinical_row("S3", event=7),
        clinical_row("S4", **{"Survival(months)": -3}),
        clinical_row("S5", **{"IDH-status": "WT"}, sex="female"),
    ])
    df, problems = read_clinical(csv)
    msgs = {p.subject_id: str(p) for p in problems}
    assert "not a valid number" in msgs["S1"] and np.isnan(df.loc[0, "Survival(months)"])
    assert "expected mutant or wildtype" in msgs["S2"]
    assert "expected 1" in msgs["S3"]
    assert ">= 0.0" in msgs["S4"]
    assert df.loc[4, "IDH-status"] == "wildtype" and df.loc[4, "sex"] == "F"
    assert df["Survival(months)"].dtype == float and df["age"].dtype == float
    assert all(str(csv) in str(p) for p in problems)


def test_duplicate_ids_are_reported_and_left_out(tmp_path):
    csv = write_csv(tmp_path / "c.csv", [clinical_row("S1"), clinical_row("S1"), clinical_row("S2")])
    df, problems = read_clinical(csv)
    assert list(df["SUBJECT ID"]) == ["S2"]
    assert problems[0].subject_id == "S1" and "duplicate" in str(problems[0])


def test_event_column_absent_assumes_events(tmp_path):
    row = clinical_row("S1")
    row.pop("event")
    df, _ = read_clinical(write_csv(tmp_path / "c.csv", [row]))
    assert df.loc[0, "event"] == 1 and df.attrs["event_assumed"]


# -- volume validation: nibabel's order of failures -------------------------------------------
def test_volume_missing_and_empty(tmp_path):
    with pytest.raises(InvalidVolumeError, match="No such file"):
        load_volume(tmp_path / "x.nii.gz")
    (tmp_path / "e.nii.gz").write_bytes(b"")
    with pytest.raises(InvalidVolumeError, match="Empty file"):
        load_volume(tmp_path / "e.nii.gz")


def test_volume_not_gzip_and_not_nifti(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"hello world, not gzip")
    with pytest.raises(InvalidVolumeError, match="is not a gzip file"):
        load_volume(tmp_path / "a.nii.gz")
    (tmp_path / "b.nii").write_bytes(b"\x00" * 400)
    with pytest.raises(InvalidVolumeError, match="Cannot read"):
        load_volume(tmp_path / "b.nii")


def test_volume_truncated_gzip(tmp_path):
    p = write_nifti(tmp_path / "t.nii.gz")
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidVolumeError, match="t.nii.gz"):
        load_volume(p)


def test_volume_dimensionality_and_finite(tmp_path):
    write_nifti(tmp_path / "4d.nii.gz", np.ones((4, 4, 4, 3), np.float32))
    with pytest.raises(InvalidVolumeError, match="Expected a 3D volume, got 4D"):
        load_volume(tmp_path / "4d.nii.gz")
    write_nifti(tmp_path / "2d.nii.gz", np.ones((4, 4), np.float32))
    with pytest.raises(InvalidVolumeError, match="got 2D"):
        load_volume(tmp_path / "2d.nii.gz")
    one = write_nifti(tmp_path / "4d1.nii.gz", np.ones((4, 4, 4, 1), np.float32))
    assert load_volume(one).shape == (4, 4, 4)
    bad = np.ones(SHAPE, np.float32)
    bad[1, 1, 1] = np.nan
    write_nifti(tmp_path / "nan.nii.gz", bad)
    with pytest.raises(InvalidVolumeError, match="non-finite"):
        load_volume(tmp_path / "nan.nii.gz")


def _subject_with(tmp_path: Path, override: dict[str, np.ndarray | tuple]) -> object:
    write_subject(tmp_path / "S1", "S1", dict(TCGA.suffixes))
    for seq, spec in override.items():
        data, affine = spec
        write_nifti(tmp_path / "S1" / f"S1{TCGA.suffixes[seq]}.nii.gz", data, affine)
    csv = write_csv(tmp_path / "c.csv", [clinical_row("S1")])
    cohort = load_cohort(csv, tmp_path)
    return cohort.subjects[0]


def test_shape_mismatch_names_subject_and_file(tmp_path):
    subj = _subject_with(tmp_path, {"flair": (np.ones((8, 9, 6), np.float32), None)})
    with pytest.raises(SubjectError, match=r"S1.*flair shape \(8, 9, 6\) != t1 shape") as exc:
        load_subject_images(subj)
    assert exc.value.stage == "load" and "S1_flair" in str(exc.value)


def test_affine_mismatch(tmp_path):
    aff = np.eye(4)
    aff[0, 3] = 2.0
    subj = _subject_with(tmp_path, {"t2": (np.ones(SHAPE, np.float32), aff)})
    with pytest.raises(SubjectError, match="t2 affine differs"):
        load_subject_images(subj)


def test_affine_within_tolerance_accepted(tmp_path):
    aff = np.eye(4)
    aff[0, 3] = 1e-5
    subj = _subject_with(tmp_path, {"t2": (np.ones(SHAPE, np.float32), aff)})
    assert set(load_subject_images(subj)) == {"t1", "t1c", "t2", "flair"}


def test_corrupt_file_error_names_subject_and_path(tmp_path):
    subj = _subject_with(tmp_path, {})
    Path(subj.path("t1c")).write_bytes(b"junk")
    with pytest.raises(SubjectError) as exc:
        load_subject_images(subj)
    assert exc.value.subject_id == "S1" and exc.value.path.endswith("S1_t1Gd.nii.gz")


def test_flat_layout_subject_id_that_prefixes_another_id(tmp_path):
    """P1's files are not P10's: in a flat folder, an ID must be followed by a separator."""
    for sid in ("P1", "P10"):
        write_subject(tmp_path / "img", sid, dict(TCGA.suffixes))
    write_subject(tmp_path / "img", "Q10", dict(TCGA.suffixes))
    csv = write_csv(tmp_path / "c.csv", [clinical_row("P1"), clinical_row("P10"), clinical_row("Q1")])
    cohort = load_cohort(csv, tmp_path / "img")
    assert cohort.subject_ids == ["P1", "P10"]
    assert cohort.subject("P1").path("t1").name == "P1_t1.nii.gz"
    # Q1 has no files of its own; Q10's must not be taken for them
    (err,) = cohort.problems
    assert err.subject_id == "Q1"


# -- issue 19 points 5 and 9: typed paths that are not tables, and oversized cells ------------
def test_device_and_fifo_as_the_clinical_table_are_refused_at_once(tmp_path):
    import os
    import threading

    from gliocore.cohort.loading import load_cohort
    from gliocore.errors import CohortError

    fifo = tmp_path / "clinical.csv"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo, tmp_path):
        outcome: dict[str, object] = {}

        def load(path=path, outcome=outcome):
            try:
                load_cohort(path, tmp_path)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcome["error"] = exc

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), f"reading {path} as the clinical table did not return"
        assert isinstance(outcome.get("error"), CohortError), outcome
        assert "regular file" in str(outcome["error"]) and str(path) in str(outcome["error"])


def test_a_cell_over_the_csv_field_limit_is_a_cohort_error_naming_the_line(tmp_path):
    import subprocess
    import sys

    from gliocore.cohort.loading import load_cohort
    from gliocore.errors import CohortError

    csv = tmp_path / "clinical.csv"
    csv.write_text("SUBJECT ID,Survival(months),IDH-status\nP1,12,mutant\nP2,7,\"" + "x" * 200_000
                   + "\"\n")
    with pytest.raises(CohortError, match=r"line \d+.*131,072 characters"):
        load_cohort(csv, tmp_path)
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "gliocore", "-q", "--db", str(tmp_path / "s.duckdb"),
                           "process", "--csv", str(csv)], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "131,072 characters" in proc.stdout + proc.stderr
