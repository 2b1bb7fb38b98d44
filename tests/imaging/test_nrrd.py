"""NRRD input (3D Slicer's format): read into the same Volume as NIfTI, discovered in cohorts,
processed to the same numbers; hostile NRRD headers refused before any voxel is read."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from gliocore.cohort.loading import load_cohort
from gliocore.errors import InvalidVolumeError
from gliocore.analysis.export import seed_table
from gliocore.imaging.io import load_volume, read_geometry
from gliocore.pipeline.context import ProcessingConfig
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

from cohorts import private_copy, tiny_cohort


def oblique_affine() -> np.ndarray:
    """RAS affine with anisotropic voxels, a rotation about z and an offset origin."""
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rot @ np.diag([0.9, 1.1, 2.5])
    aff[:3, 3] = [12.0, -30.5, 7.25]
    return aff


def as_nrrd(nifti: Path, nrrd: Path, compress: bool = True) -> Path:
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(nrrd), compress)
    return nrrd


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
@pytest.mark.parametrize("compress", [True, False])
def test_nrrd_reads_as_the_same_volume_as_nifti(tmp_path, rng, dtype, compress):
    data = (rng.random((9, 7, 5)) * 200).astype(dtype)
    nii = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(data, oblique_affine()), nii)
    nrrd = as_nrrd(nii, tmp_path / "x.nrrd", compress)
    a = load_volume(nii, dtype=None)
    b = load_volume(nrrd, dtype=None)
    assert b.data.dtype == a.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(b.data, a.data)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    # a voxel's world position agrees with nibabel's reading of the NIfTI (not just with itself)
    np.testing.assert_allclose(b.affine, oblique_affine(), atol=1e-5)
    shape, affine = read_geometry(nrrd)
    assert shape == a.shape
    np.testing.assert_allclose(affine, a.affine, atol=1e-6)


def test_a_cohort_of_nrrd_files_gives_the_numbers_of_its_nifti_twin(tmp_path_factory):
    source = tiny_cohort(tmp_path_factory.mktemp("nrrd-src"), n=2, shape=(40, 40, 28), seed=1)
    nifti_csv = private_copy(source, tmp_path_factory.mktemp("as-nifti"))
    nrrd_csv = private_copy(source, tmp_path_factory.mktemp("as-nrrd"))
    converted = 0
    for p in sorted(nrrd_csv.parent.rglob("*.nii.gz")):
        if p.name.endswith("_truth.nii.gz"):
            continue   # references stay NIfTI: a mix of formats in one folder must work too
        as_nrrd(p, p.with_name(p.name[:-len(".nii.gz")] + ".nrrd"))
        p.unlink()
        converted += 1
    assert converted == 8
    tables = {}
    for name, csv in (("nifti", nifti_csv), ("nrrd", nrrd_csv)):
        cohort = load_cohort(csv, csv.parent, name="tiny")
        paths = [str(p) for s in cohort.subjects for p in s.sequences.values()]
        assert all(p.endswith(".nrrd") for p in paths) == (name == "nrrd"), paths
        store = Store(csv.parent / "g.duckdb")
        summary = process_cohort(cohort, store, ProcessingConfig(workers=1))
        assert not summary.errors, summary.describe()
        tables[name] = seed_table(store, summary.cohort_id).set_index("SUBJECT ID").sort_index()
    numbers = tables["nifti"].select_dtypes("number")
    assert numbers.notna().any().any()
    pd.testing.assert_frame_equal(tables["nrrd"][numbers.columns], numbers)


# -- hostile NRRD headers ------------------------------------------------------------------------
def nrrd_file(path: Path, fields: dict[str, str], payload: bytes = b"") -> Path:
    head = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n"
    path.write_bytes(head.encode() + payload)
    return path


BASE = {"type": "short", "dimension": "3", "space": "left-posterior-superior",
        "sizes": "4 4 4", "space directions": "(1,0,0) (0,1,0) (0,0,1)", "endian": "little",
        "encoding": "raw", "space origin": "(0,0,0)"}


def test_a_hand_written_nrrd_is_read(tmp_path):
    data = np.arange(64, dtype="<i2").reshape(4, 4, 4)   # NRRD's fastest axis first = i
    p = nrrd_file(tmp_path / "ok.nrrd", BASE, data.transpose(2, 1, 0).tobytes())
    vol = load_volume(p, dtype=None)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))  # LPS -> RAS


@pytest.mark.parametrize("change, payload, message", [
    ({"sizes": "100000 100000 100000"}, b"", "announces"),
    ({"data file": "/etc/passwd"}, b"", "detached"),
    ({"encoding": "bzip2"}, b"\x00" * 128, "encoding"),
    ({"type": "block"}, b"\x00" * 128, "type"),
    ({}, b"\x00" * 10, "truncated"),
    ({"dimension": "4", "sizes": "3 4 4 4", "kinds": "vector domain domain domain",
      "space directions": "none (1,0,0) (0,1,0) (0,0,1)"}, b"\x00" * 384, "3D"),
    ({"sizes": "4 4"}, b"\x00" * 128, "Invalid NRRD header"),
])
def test_hostile_or_unsupported_nrrd_is_refused_naming_the_file(tmp_path, change, payload, message):
    p = nrrd_file(tmp_path / "bad.nrrd", {**BASE, **change}, payload)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidVolumeError, match=message) as err:
            load_volume(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(p) in str(err.value)
    assert peak < 16 * 2**20      # refused from the header: nothing of the announced size


def test_gzip_nrrd_announcing_more_than_it_can_hold_is_refused_unread(tmp_path):
    p = nrrd_file(tmp_path / "bomb.nrrd", {**BASE, "encoding": "gzip", "sizes": "1024 1024 512"},
                  gzip.compress(b"\x00" * 1024))
    with pytest.raises(InvalidVolumeError, match="cannot hold"):
        load_volume(p)


def test_not_an_nrrd_and_no_end_of_header(tmp_path):
    fake = tmp_path / "fake.nrrd"
    fake.write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    with pytest.raises(InvalidVolumeError, match="no NRRD header"):
        load_volume(fake)
    endless = tmp_path / "endless.nrrd"
    endless.write_bytes(b"NRRD0004\n" + b"x: y\n" * 10)
    with pytest.raises(InvalidVolumeError, match="no end of header"):
        load_volume(endless)


def test_importing_io_leaves_simpleitk_unloaded():
    """SimpleITK (~50 ms to import) is loaded when an NRRD is read, not with every import of
    gliocore.imaging.io (the dashboard, the CLI and each worker process import it)."""
    repo = Path(__file__).resolve().parents[2]
    code = "import sys, gliocore.imaging.io; print('SimpleITK' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=repo, timeout=120, check=True)
    assert out.stdout.strip() == "False"
