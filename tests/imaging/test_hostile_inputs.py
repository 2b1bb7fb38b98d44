"""Hostile and broken inputs: each is a clear error naming the file (and subject), never a crash,
never a huge allocation; the other subjects are processed. Tiny crafted files only."""
from __future__ import annotations

import gzip
import shutil
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocore.cohort import synth
from gliocore.cohort.clinical import read_clinical
from gliocore.cohort.loading import load_cohort
from gliocore.errors import CohortError, InvalidVolumeError
from gliocore.imaging.io import load_volume
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.settings import InputLimits, MiB
from gliocore.store import Store


# -- crafted NIfTI files ------------------------------------------------------------------------
def header_bytes(shape: tuple[int, ...], dtype=np.float32, affine=None) -> bytes:
    """A valid NIfTI-1 single-file header (+ the 4 extension bytes) announcing ``shape``."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    aff = np.eye(4) if affine is None else affine
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00" * 4


def write_gzip_stream(path: Path, head: bytes, zero_bytes: int, chunk: int = 8 * MiB) -> Path:
    """``head`` followed by ``zero_bytes`` zeros, gzip-compressed chunk by chunk (never in memory)."""
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head)
        block = b"\x00" * chunk
        left = zero_bytes
        while left > 0:
            fh.write(block[:min(chunk, left)])
            left -= chunk
    return path


def peak_mib(fn) -> float:
    """Run ``fn`` (expected to raise InvalidVolumeError); return the peak traced memory in MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidVolumeError) as exc:
            fn()
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    peak_mib.last_error = str(exc.value)
    return peak


def test_huge_shape_in_a_tiny_file_is_refused_without_allocating(tmp_path):
    p = tmp_path / "huge.nii"
    p.write_bytes(header_bytes((30000, 30000, 30000)))  # 100 TB announced in 352 bytes
    assert peak_mib(lambda: load_volume(p)) < 5
    assert "huge.nii" in peak_mib.last_error and "more than the limit" in peak_mib.last_error
    # under the per-volume limit but not in the file: truncated, still nothing allocated
    p2 = tmp_path / "short.nii"
    p2.write_bytes(header_bytes((512, 512, 512), np.int16) + b"\x00" * 1000)
    assert peak_mib(lambda: load_volume(p2)) < 5
    assert "truncated" in peak_mib.last_error and "short.nii" in peak_mib.last_error


def test_huge_shape_in_a_tiny_gzip_is_refused_before_decompressing(tmp_path):
    p = write_gzip_stream(tmp_path / "huge.nii.gz", header_bytes((1024, 1024, 256), np.int16), 0)
    assert peak_mib(lambda: load_volume(p)) < 5  # 512 MiB announced in ~100 bytes
    assert "cannot hold" in peak_mib.last_error and "huge.nii.gz" in peak_mib.last_error


def test_gzip_bomb_disguised_as_nifti(tmp_path):
    # 1. no NIfTI header at all: only the first 540 bytes are ever decompressed
    bomb = write_gzip_stream(tmp_path / "bomb.nii.gz", b"", 64 * MiB)
    t0 = time.perf_counter()
    assert peak_mib(lambda: load_volume(bomb)) < 5
    assert time.perf_counter() - t0 < 1.0
    assert "no NIfTI-1/2 header" in peak_mib.last_error
    # 2. a valid header announcing 64 MiB of zeros that compress ~1000:1 (within deflate's
    #    limit, so only the size limit can stop it): refused before decompressing
    bomb2 = write_gzip_stream(tmp_path / "bomb2.nii.gz", header_bytes((256, 256, 256)), 64 * MiB)
    limits = InputLimits(max_volume_bytes=16 * MiB)
    assert peak_mib(lambda: load_volume(bomb2, limits=limits)) < 5
    assert "more than the limit" in peak_mib.last_error
    # 3. a small volume followed by a long stream of zeros: decompression stops at the
    #    announced size, the trailing bomb is never inflated
    trailing = write_gzip_stream(tmp_path / "trail.nii.gz", header_bytes((4, 4, 4))
                                 + np.ones(64, np.float32).tobytes(), 256 * MiB)
    tracemalloc.start()
    t0 = time.perf_counter()
    vol = load_volume(trailing)
    peak = tracemalloc.get_traced_memory()[1] / MiB
    tracemalloc.stop()
    assert vol.shape == (4, 4, 4) and float(vol.data.sum()) == 64.0
    assert peak < 5 and time.perf_counter() - t0 < 1.0


def test_qform_and_sform_that_disagree(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = (10.0, 0.0, 0.0)
    img.set_qform(np.eye(4), code=1)
    img.set_sform(shifted, code=2)
    nib.save(img, str(tmp_path / "qs.nii.gz"))
    with pytest.raises(InvalidVolumeError, match=r"qform and sform of .*qs.nii.gz disagree by up to 10"):
        load_volume(tmp_path / "qs.nii.gz")
    # agreeing to float32 precision, or one of them unset: fine
    img.set_sform(np.eye(4) + 1e-6, code=2)
    nib.save(img, str(tmp_path / "ok.nii.gz"))
    assert load_volume(tmp_path / "ok.nii.gz").shape == (4, 4, 4)
    img.set_sform(shifted, code=0)
    nib.save(img, str(tmp_path / "ok2.nii.gz"))
    assert load_volume(tmp_path / "ok2.nii.gz").shape == (4, 4, 4)


def test_non_invertible_affine(tmp_path):
    hdr = nib.Nifti1Header()  # nibabel refuses to build such an image: write the header by hand
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((4, 4, 4))
    hdr.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # a zero column: not invertible
    hdr["vox_offset"] = 352
    (tmp_path / "sing.nii.gz").write_bytes(gzip.compress(
        hdr.binaryblock + b"\x00" * 4 + np.ones(64, np.float32).tobytes()))
    with pytest.raises(InvalidVolumeError, match=r"Invalid affine .*singular.*sing.nii.gz"):
        load_volume(tmp_path / "sing.nii.gz")


@pytest.mark.parametrize("dtype, what", [
    (np.complex64, "complex"),
    (np.complex128, "complex"),
    (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), "RGB"),
    (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")]), "RGB"),
])
def test_unsupported_datatypes(tmp_path, dtype, what):
    p = tmp_path / "odd.nii.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(header_bytes((4, 4, 4), dtype) + np.zeros((4, 4, 4), dtype).tobytes())
    with pytest.raises(InvalidVolumeError, match=rf"Unsupported NIfTI data type {what}.*odd.nii.gz"):
        load_volume(p)


def test_corrupt_deflate_stream_is_an_error(tmp_path):
    p = tmp_path / "c.nii.gz"
    raw = gzip.compress(header_bytes((8, 8, 8)) + np.ones(512, np.float32).tobytes())
    p.write_bytes(raw[:30] + bytes(b ^ 0x5A for b in raw[30:60]) + raw[60:])
    with pytest.raises(InvalidVolumeError, match="c.nii.gz"):
        load_volume(p)


# -- clinical tables as spreadsheets save them --------------------------------------------------
def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_with_utf8_bom(tmp_path):
    p = _write(tmp_path / "bom.csv", "\ufeffSUBJECT ID,Survival(months),IDH-status\nA,12.5,mutant\n")
    df, problems = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["A"] and df["Survival(months)"].tolist() == [12.5]
    assert not problems


def test_csv_utf16_as_excel_unicode_text(tmp_path):
    p = _write(tmp_path / "u16.csv", "SUBJECT ID\tSurvival(months)\tIDH-status\nÄ-1\t3,5\twt\n",
               encoding="utf-16")
    df, problems = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["Ä-1"] and df["Survival(months)"].tolist() == [3.5]
    assert df["IDH-status"].tolist() == ["wildtype"] and not problems


def test_csv_semicolons_decimal_commas_and_blank_lines(tmp_path):
    p = _write(tmp_path / "excel.csv",
               "SUBJECT ID;Survival(months);IDH-status;age;score\n"
               "\n"
               "A;12,5;mutant;61,0;1,25\n"
               ";;;;\n"
               "B;7;wildtype;;2\n"
               "   \n"
               "C;abc;wildtype;50;3,5\n")
    df, problems = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["A", "B", "C"]
    assert df["Survival(months)"].tolist()[:2] == [12.5, 7.0] and np.isnan(df["Survival(months)"][2])
    assert df["age"][0] == 61.0 and np.isnan(df["age"][1]) and df["age"][2] == 50.0
    assert df["score"].tolist() == [1.25, 2.0, 3.5]
    assert [(e.subject_id, "Survival(months) = 'abc'" in e.message) for e in problems] == [("C", True)]


def test_csv_decimal_comma_in_comma_file_quoted_and_ambiguous_thousands(tmp_path):
    p = _write(tmp_path / "q.csv", 'SUBJECT ID,Survival(months),IDH-status\nA,"12,5",mutant\n'
                                   'B,"1,234",mutant\n')
    df, problems = read_clinical(p)
    assert df["Survival(months)"][0] == 12.5 and np.isnan(df["Survival(months)"][1])
    assert [e.subject_id for e in problems] == ["B"]
    assert "q.csv" in str(problems[0])


def test_csv_unquoted_decimal_comma_row_is_reported_and_others_read(tmp_path):
    p = _write(tmp_path / "r.csv", "SUBJECT ID,Survival(months),IDH-status\nA,12,5,mutant\n"
                                   "B,7,wildtype\n")
    df, problems = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["B"]
    assert problems[0].subject_id == "A" and "row 2 has 4 cells" in problems[0].message


def test_csv_duplicated_headers(tmp_path):
    p = _write(tmp_path / "dup.csv",
               "SUBJECT ID,Survival(months),IDH-status,age,age\nA,10,mutant,50,50\n"
               "B,11,mutant,40,41\nC,12,wildtype,,33\n")
    df, problems = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["A", "B", "C"] and list(df.columns).count("age") == 1
    assert df["age"][0] == 50 and np.isnan(df["age"][1]) and df["age"][2] == 33
    msgs = {(e.subject_id, e.message.split(" appears")[0]) for e in problems}
    assert ("B", "column 'age'") in msgs and ("?", "column 'age'") in msgs
    # the ID column twice with different values: that row is left out, named
    p2 = _write(tmp_path / "dup2.csv", "SUBJECT ID,SUBJECT ID,Survival(months),IDH-status\n"
                                       "A,A,1,mutant\nB,X,2,mutant\n")
    df2, problems2 = read_clinical(p2)
    assert df2["SUBJECT ID"].tolist() == ["A"]
    assert any(e.subject_id == "B" and "'B', 'X'" in e.message for e in problems2)


def test_csv_windows_1252_and_binary(tmp_path):
    p = _write(tmp_path / "w.csv", "SUBJECT ID;Survival(months);IDH-status;sex\nJosé;4,5;mut;M\n",
               encoding="cp1252")
    df, _ = read_clinical(p)
    assert df["SUBJECT ID"].tolist() == ["José"] and df["Survival(months)"][0] == 4.5
    (tmp_path / "b.csv").write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(CohortError, match="not a text table"):
        read_clinical(tmp_path / "b.csv")


# -- a whole cohort of hostile files: clear per-subject errors, the rest processed ------------
@pytest.fixture(scope="module")
def good_subject(tmp_path_factory) -> Path:
    csv = Path(synth.make_tiny_cohort(tmp_path_factory.mktemp("good"), n=1, shape=(48, 48, 32),
                                      seed=3))
    return csv.parent


def test_hostile_cohort_with_spaces_and_non_ascii_paths(good_subject, tmp_path):
    root = tmp_path / "my cohort Ünïcødé" / "images ü"
    (t1,) = good_subject.rglob("*_t1.nii.gz")
    sid = t1.name[: -len("_t1.nii.gz")]
    good_files = sorted(t1.parent.glob(f"{sid}_*.nii.gz"))
    assert len(good_files) == 5  # four sequences and the reference mask
    suffix = {"_t1": "_t1", "_t1Gd": "_t1Gd", "_t2": "_t2", "_flair": "_flair"}

    def clone(new_id: str) -> Path:
        folder = root / new_id
        folder.mkdir(parents=True)
        for f in good_files:
            shutil.copy(f, folder / f.name.replace(sid, new_id))
        return folder

    ok_id = "Pätient 1 ok"
    clone(ok_id)
    hostile: dict[str, tuple[str, bytes | None]] = {
        "huge shape": ("_t1", header_bytes((30000, 30000, 30000))),
        "gz bomb": ("_t2", None),
        "complex": ("_flair", header_bytes((48, 48, 32), np.complex64)),
        "qsform": ("_t1Gd", None),
    }
    for hid, (seq, head) in hostile.items():
        folder = clone(hid)
        target = folder / f"{hid}{suffix[seq]}.nii.gz"
        if hid == "gz bomb":
            write_gzip_stream(target, b"", 32 * MiB)
        elif hid == "qsform":
            img = nib.load(str(target))
            aff = img.affine.copy()
            aff[0, 3] += 25.0
            img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine)
            img.set_qform(img.affine, code=1)
            img.set_sform(aff, code=2)
            nib.save(img, str(target))
        else:
            target.write_bytes(gzip.compress(head))
    csv = _write(root.parent / "clinical ü.csv",
                 "\ufeffSUBJECT ID;Survival(months);IDH-status;event;age\n\n"
                 + "".join(f"{s};{10 + i},5;wildtype;1;5{i},5\n"
                           for i, s in enumerate([ok_id, *hostile])))
    cohort = load_cohort(csv, root, name="hostile ü")
    assert sorted(cohort.subject_ids) == sorted([ok_id, *hostile]) and not cohort.problems
    store = Store(tmp_path / "store ü" / "g.duckdb")
    summary = process_cohort(cohort, store, ProcessingConfig(backend="baseline", workers=1))
    assert summary.computed == [ok_id]
    errors = {e.subject_id: e for e in summary.errors}
    assert set(errors) == set(hostile)
    expect = {"huge shape": "more than the limit", "gz bomb": "no NIfTI-1/2 header",
              "complex": "Unsupported NIfTI data type complex", "qsform": "qform and sform"}
    for hid, text in expect.items():
        e = errors[hid]
        assert text in e.message, (hid, e.message)
        assert e.stage == "load" and f"{hid}{suffix[hostile[hid][0]]}.nii.gz" in e.path
        assert "Traceback" not in e.message
    recorded = store.errors(summary.cohort_id)
    assert set(recorded["subject_id"]) == set(hostile)
    table = store.clinical(summary.cohort_id)
    assert table.set_index("SUBJECT ID").loc[ok_id, "Survival(months)"] == 10.5
    assert store.subject_result(summary.cohort_id, ok_id, summary.config_key) is not None
    assert set(store.features_long(summary.cohort_id)["subject_id"]) == {ok_id}
