"""Cohort zip uploads: a good zip loads like a path-given cohort; every attack is refused with a
clear message and leaves nothing behind."""
from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cohorts import CSV, SUFFIXES, cohort_entries, make_zip, nifti_bytes  # noqa: E402,F401

from gliocore.cohort.loading import load_cohort
from gliocore.cohort.uploads import (
    COMPLETE_MARKER,
    load_uploaded_cohort,
    unpack_cohort_zip,
)
from gliocore.errors import UploadError
from gliocore.settings import UploadLimits


def assert_nothing_left(uploads: Path) -> None:
    left = [p for p in uploads.rglob("*")] if uploads.exists() else []
    assert left == [], left


def refused(tmp_path: Path, data: bytes, match: str, limits: UploadLimits | None = None) -> str:
    uploads = tmp_path / "uploads"
    with pytest.raises(UploadError, match=match) as exc:
        load_uploaded_cohort(io.BytesIO(data), uploads, limits=limits)
    assert_nothing_left(uploads)
    return str(exc.value)


# -- a good upload ------------------------------------------------------------------------------
def test_good_zip_loads_like_a_path_given_cohort(tmp_path):
    uploads = tmp_path / "data" / "uploads"
    data = make_zip(cohort_entries())
    up = load_uploaded_cohort(io.BytesIO(data), uploads)
    assert up.folder.parent == uploads and (up.folder / COMPLETE_MARKER).exists()
    assert up.cohort.subject_ids == ["S1", "S2"] and not up.cohort.problems
    for s in up.cohort.subjects:
        assert all(uploads.resolve() in Path(p).resolve().parents for p in s.sequences.values())
    # the same as loading the unpacked files by path
    by_path = load_cohort(up.folder / "cohort" / "clinical.csv", up.folder / "cohort" / "images")
    assert by_path.subject_ids == up.cohort.subject_ids
    assert by_path.clinical.equals(up.cohort.clinical)
    # the same zip again: same folder (so the same cohort and cache), nothing rewritten
    again = load_uploaded_cohort(io.BytesIO(data), uploads)
    assert again.reused and again.folder == up.folder
    assert [p.name for p in uploads.iterdir()] == [up.upload_id]


def test_flat_zip_with_macos_clutter_and_a_path_on_disk(tmp_path):
    entries = {k.replace("cohort/images/", "").replace("cohort/", ""): v
               for k, v in cohort_entries().items()}
    entries["__MACOSX/._clinical.csv"] = b"\x00\x05\x16\x07 resource fork"
    entries[".DS_Store"] = b"\x00\x00\x00\x01Bud1"
    z = tmp_path / "my cohort.zip"
    z.write_bytes(make_zip(entries))
    up = load_uploaded_cohort(z, tmp_path / "uploads", name="mine")
    assert up.cohort.subject_ids == ["S1", "S2"] and up.cohort.name == "mine"
    assert not (up.folder / "__MACOSX").exists() and not (up.folder / ".DS_Store").exists()


# -- attacks: one test each ---------------------------------------------------------------------
@pytest.mark.parametrize("name, match", [
    ("../evil.csv", "zip slip"),
    ("cohort/../../evil.csv", "zip slip"),
    ("..\\evil.csv", "zip slip"),
    ("/etc/evil.csv", "absolute path"),
    ("C:\\Windows\\evil.csv", "absolute path"),
    ("C:evil.csv", "absolute path"),
])
def test_zip_slip_and_absolute_paths(tmp_path, name, match):
    entries = list(cohort_entries().items())
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo would normalise some of these; a hostile zip does not
    entries.append((info, b"SUBJECT ID\n"))
    msg = refused(tmp_path, make_zip(entries), match)
    assert "refused" in msg
    assert not (tmp_path / "evil.csv").exists() and not (tmp_path.parent / "evil.csv").exists()


def test_symlink_entry(tmp_path):
    entries = list(cohort_entries().items())
    link = zipfile.ZipInfo("cohort/images/S1/S1_seg.nii.gz")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    link.create_system = 3
    entries.append((link, b"/etc/passwd"))
    refused(tmp_path, make_zip(entries), "symbolic link")


def test_special_file_and_encrypted_entry(tmp_path):
    fifo = zipfile.ZipInfo("cohort/pipe.csv")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    refused(tmp_path, make_zip([*cohort_entries().items(), (fifo, b"")]), "special file")
    data = bytearray(make_zip([*cohort_entries().items(), ("cohort/secret.csv", b"x")]))
    central = data.rfind(b"PK\x01\x02")  # the last entry's record: set 'encrypted' (bit 0)
    struct.pack_into("<H", data, central + 8, struct.unpack_from("<H", data, central + 8)[0] | 1)
    refused(tmp_path, bytes(data), "encrypted")


def test_too_many_files(tmp_path):
    entries = cohort_entries()  # 9 files
    msg = refused(tmp_path, make_zip(entries), "more than the limit of 8",
                  UploadLimits(max_files=8))
    assert "9 entries" in msg


def test_total_uncompressed_size_over_the_limit(tmp_path):
    entries = cohort_entries()
    entries["cohort/notes.csv"] = os.urandom(600_000).hex().encode()[:1_000_000]  # incompressible-ish text
    refused(tmp_path, make_zip(entries), r"unpacks to .* more than the limit",
            UploadLimits(max_total_bytes=1_000_000))


def _patch_sizes(data: bytes, name: str, new_size: int) -> bytes:
    """Rewrite the uncompressed size of one entry in its local header and the central directory
    (a zip whose headers lie)."""
    buf = bytearray(data)
    enc = name.encode()
    i = buf.find(b"PK\x03\x04" + b"")
    while i != -1:
        n = struct.unpack_from("<H", buf, i + 26)[0]
        if bytes(buf[i + 30:i + 30 + n]) == enc:
            struct.pack_into("<I", buf, i + 22, new_size)
        i = buf.find(b"PK\x03\x04", i + 4)
    j = buf.find(b"PK\x01\x02")
    while j != -1:
        n = struct.unpack_from("<H", buf, j + 28)[0]
        if bytes(buf[j + 46:j + 46 + n]) == enc:
            struct.pack_into("<I", buf, j + 24, new_size)
        j = buf.find(b"PK\x01\x02", j + 4)
    return bytes(buf)


def test_headers_that_lie_about_sizes_are_caught_while_unpacking(tmp_path):
    entries = cohort_entries()
    entries["cohort/big.csv"] = b"a,b\n" + b"1,2\n" * 400_000  # 1.6 MB of text, compresses ~500:1
    data = make_zip(entries)
    # declared small: the checks on declared sizes pass, the stream is longer -> refused
    # as soon as the entry passes its declared size (nothing trusted, nothing left behind)
    refused(tmp_path, _patch_sizes(data, "cohort/big.csv", 1000),
            r"big.csv' unpacks to more than the 1000 bytes its header declares",
            UploadLimits(max_total_bytes=100_000))
    # declared larger than the stream: refused as corrupt
    small = make_zip(cohort_entries())
    refused(tmp_path, _patch_sizes(small, "cohort/clinical.csv", 10_000),
            r"clinical.csv' unpacks to 78 bytes .* not the 10000 bytes")


def test_compression_ratio_of_a_zip_bomb(tmp_path):
    entries = cohort_entries()
    entries["cohort/zeros.nii"] = b"\x00" * (8 << 20)  # 8 MiB of zeros -> ~8 KiB
    msg = refused(tmp_path, make_zip(entries), r"zip bomb")
    assert "zeros.nii" in msg
    # many small entries, each under the per-entry threshold, together a bomb
    many = cohort_entries()
    for i in range(12):
        many[f"cohort/z{i}.csv"] = b"0" * (900 << 10)
    refused(tmp_path, make_zip(many), r"the zip expands .* zip bomb")


def test_overlapping_entries(tmp_path):
    data = bytearray(make_zip(cohort_entries()))
    # point the second entry's central-directory record at the first entry's data
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 4)
    offset = struct.unpack_from("<I", data, first + 42)[0]
    struct.pack_into("<I", data, second + 42, offset)
    refused(tmp_path, bytes(data), "overlap")


@pytest.mark.parametrize("name, content, match", [
    ("cohort/run.sh", b"#!/bin/sh\nrm -rf /\n", "file type not allowed"),
    ("cohort/images/S1/tool.exe", b"MZ\x90\x00", "file type not allowed"),
    ("cohort/inner.zip", make_zip({"a.csv": b"x"}), "file type not allowed"),
    ("cohort/images/S1/S1_extra.nii.gz", b"MZ\x90\x00 an executable", "not gzip-compressed"),
    ("cohort/images/S1/S1_extra.nii", b"<html>not nifti</html>", "not a NIfTI file"),
    ("cohort/extra.nrrd", b"\x7fELF", "not an NRRD file"),
    ("cohort/more.csv", b"\x7fELF\x02\x01\x01\x00\x00\x00", "not a text file"),
])
def test_file_types_other_than_csv_nifti_nrrd(tmp_path, name, content, match):
    entries = cohort_entries()
    entries[name] = content
    refused(tmp_path, make_zip(entries), match)


def test_not_a_zip_and_too_large(tmp_path):
    refused(tmp_path, b"this is not a zip at all", "not a zip file")
    refused(tmp_path, make_zip(cohort_entries()), "more than the upload limit",
            UploadLimits(max_zip_bytes=1000))


def test_unusable_cohort_is_removed_again(tmp_path):
    refused(tmp_path, make_zip(cohort_entries(csv="id,time\nS1,3\n")), "required column")
    no_csv = {k: v for k, v in cohort_entries().items() if not k.endswith(".csv")}
    refused(tmp_path, make_zip(no_csv), "no clinical CSV")
    no_images = {k: v for k, v in cohort_entries().items() if k.endswith(".csv")}
    refused(tmp_path, make_zip(no_images), "no subject's four images")


def test_img_dir_pointing_outside_the_upload_is_left_out(tmp_path):
    outside = tmp_path / "elsewhere" / "S2"
    outside.mkdir(parents=True)
    for suffix in SUFFIXES:
        (outside / f"S2{suffix}.nii.gz").write_bytes(nifti_bytes(1))
    csv = ("SUBJECT ID,Survival(months),IDH-status,img_dir\nS1,12.5,mutant,\n"
           f"S2,7,wildtype,{outside}\n")
    entries = {k: v for k, v in cohort_entries(csv=csv).items() if "/S2/" not in k}
    up = load_uploaded_cohort(io.BytesIO(make_zip(entries)), tmp_path / "uploads")
    assert up.cohort.subject_ids == ["S1"]
    (problem,) = [p for p in up.cohort.problems if p.subject_id == "S2"]
    assert "outside the uploaded folder" in problem.message


def test_unpack_is_atomic_when_interrupted(tmp_path, monkeypatch):
    import gliocore.cohort.uploads as uploads_mod

    calls = {"n": 0}
    real = uploads_mod._check_content

    def boom(*a):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # e.g. the server stopping mid-upload
        return real(*a)

    monkeypatch.setattr(uploads_mod, "_check_content", boom)
    with pytest.raises(KeyboardInterrupt):
        unpack_cohort_zip(io.BytesIO(make_zip(cohort_entries())), tmp_path / "uploads")
    assert_nothing_left(tmp_path / "uploads")


# -- issue 19 point 1: an entry over 1 MiB that compresses well used to hang the server ------
def test_large_well_compressing_entry_unpacks_and_returns(tmp_path):
    """An uncompressed ``.nii`` of 2.4 MB (ratio ~9:1) followed by other entries: the inflater
    reaches the end of its stream with the next entry's bytes still in ``unconsumed_tail``; the
    unpacking used to wait forever for that tail to empty."""
    import threading

    data = np.random.default_rng(0).integers(0, 4, (96, 96, 64)).astype(np.float32)
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    entries = {"cohort/clinical.csv": CSV.encode()}
    for sid in ("S1", "S2"):
        for suffix in SUFFIXES:
            entries[f"cohort/images/{sid}/{sid}{suffix}.nii"] = raw
    blob = make_zip(entries)
    result: dict[str, object] = {}

    def unpack() -> None:
        try:
            result["cohort"] = load_uploaded_cohort(io.BytesIO(blob), tmp_path / "uploads")
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    worker = threading.Thread(target=unpack, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "unpacking a 2.4 MB well-compressing entry did not return"
    assert "error" not in result, result.get("error")
    cohort = result["cohort"].cohort
    assert cohort.subject_ids == ["S1", "S2"] and not cohort.problems
    img = nib.load(cohort.subjects[0].sequences["t1"])
    assert np.array_equal(np.asarray(img.dataobj), data)


def test_a_file_that_is_also_a_folder_of_another_entry(tmp_path):
    """Issue 19 point 12: ``x.csv`` and ``x.csv/y.csv`` gave a bare FileExistsError naming the
    server's path; now a clear refusal from the zip's directory, before anything is unpacked."""
    entries = cohort_entries()
    entries["cohort/x.csv"] = b"a\n"
    entries["cohort/x.csv/y.csv"] = b"b\n"
    msg = refused(tmp_path, make_zip(entries), match="also a folder")
    assert str(tmp_path) not in msg
