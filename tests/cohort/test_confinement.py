"""Issue 19.2: an uploaded cohort stays confined to its folder through every later step."""
from __future__ import annotations

from pathlib import Path

from cohorts import SUFFIXES, cohort_entries, make_zip, nifti_bytes

from gliocore.cohort.loading import load_cohort
from gliocore.cohort.uploads import load_uploaded_cohort
from gliocore.pipeline.plan import register_cohort
from gliocore.store import Store


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "elsewhere" / "S2"
    outside.mkdir(parents=True)
    for suffix in SUFFIXES:
        (outside / f"S2{suffix}.nii.gz").write_bytes(nifti_bytes(1))
    return outside


def test_reloading_an_upload_as_process_does_keeps_outside_subjects_out(tmp_path):
    outside = _outside(tmp_path)
    csv = ("SUBJECT ID,Survival(months),IDH-status,img_dir\nS1,12.5,mutant,\n"
           f"S2,7,wildtype,{outside}\n")
    zpath = tmp_path / "c.zip"
    zpath.write_bytes(make_zip(cohort_entries(csv)))
    up = load_uploaded_cohort(zpath, tmp_path / "uploads")
    assert up.cohort.subject_ids == ["S1"]
    store = Store(tmp_path / "g.duckdb")
    cid = register_cohort(store, up.cohort)
    info = store.cohort(cid)
    # what the Process button and the CLI do: a plain load from the stored paths
    again = load_cohort(info["clinical_csv"], info["image_root"], name=info["name"])
    assert again.subject_ids == ["S1"]
    assert any(p.subject_id == "S2" and "outside the uploaded folder" in p.message
               for p in again.problems)


def test_an_upload_scans_table_pointing_outside_is_kept_out_too(tmp_path):
    outside = _outside(tmp_path)
    entries = cohort_entries()
    entries["cohort/scans.csv"] = (f"SUBJECT ID,scan_id,days,img_dir\nS1,a,0,images/S1\n"
                                   f"S2,b,0,{outside}\n").encode()
    zpath = tmp_path / "c.zip"
    zpath.write_bytes(make_zip(entries))
    up = load_uploaded_cohort(zpath, tmp_path / "uploads")
    again = load_cohort(up.cohort.clinical_csv, up.cohort.image_root)
    for cohort in (up.cohort, again):
        assert all(outside not in s.folder.parents and s.folder != outside for s in cohort.scans)


def test_a_path_given_cohort_may_still_use_an_absolute_img_dir(tmp_path):
    outside = _outside(tmp_path)
    (tmp_path / "c").mkdir()
    csv = tmp_path / "c" / "clinical.csv"
    csv.write_text(f"SUBJECT ID,Survival(months),IDH-status,img_dir\nS2,7,wildtype,{outside}\n")
    assert load_cohort(csv).subject_ids == ["S2"]


def test_a_reference_mask_that_is_a_fifo_or_a_device_is_not_used(tmp_path):
    """Found by name, it would be hashed while the run lock is held: a FIFO blocks forever."""
    import os
    root = tmp_path / "c"
    (root / "S1").mkdir(parents=True)
    for suffix in SUFFIXES:
        (root / "S1" / f"S1{suffix}.nii.gz").write_bytes(nifti_bytes(0))
    os.mkfifo(root / "S1" / "S1_truth.nii.gz")
    (root / "S2").mkdir()
    for suffix in SUFFIXES:
        (root / "S2" / f"S2{suffix}.nii.gz").write_bytes(nifti_bytes(1))
    os.symlink("/dev/zero", root / "S2" / "S2_truth.nii.gz")
    csv = root / "clinical.csv"
    csv.write_text("SUBJECT ID,Survival(months),IDH-status\nS1,12.5,mutant\nS2,7,wildtype\n")
    cohort = load_cohort(csv)
    assert cohort.subject_ids == ["S1", "S2"]
    assert all(s.reference_mask is None for s in cohort.scans)
