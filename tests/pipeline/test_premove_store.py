"""A store made before the package layout moved (issue 17) is read after it, and nothing is lost.

``tests/data/premove_demo3/`` was made with the code as it stood before the move (commit f8cf367):
``python -m gliocore --data-dir D demo --n-subjects 3``, ``process --demo --n-subjects 3`` and
``export D/features.csv`` with ``D`` = :data:`FIXTURE_DATA_DIR`; the store is kept gzipped (12 MB of
mostly empty DuckDB blocks, 85 kB) with the masks it made (``segmentations/``, 456 kB). The store
records each mask by its absolute path: the test puts the masks in its own data folder and points
the store's rows there (what a user does who moves a data folder), so a mask is found, its content
checked against the store, and nothing is recomputed.

The export is a golden file: a change that is *meant* to change the demo export (a new column, a
corrected rule) regenerates it with those three commands and says so in its commit.
"""
from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "premove_demo3"
#: The data folder the fixture was made in (its masks' recorded paths start with it).
FIXTURE_DATA_DIR = "/work/notes/premove_fixture"

pytestmark = pytest.mark.slow


def cli(data_dir: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "gliocore", "-q", "--data-dir", str(data_dir), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def demo3(tmp_path_factory) -> Path:
    """The 3-subject demo cohort, generated once (deterministic: the same files as the fixture's)."""
    data = tmp_path_factory.mktemp("demo3")
    cli(data, "demo", "--n-subjects", "3")
    return data / "demo"


def move_masks_into(data: Path) -> None:
    """The fixture's masks under ``data/segmentations`` and the store's mask paths pointing there."""
    import duckdb

    shutil.copytree(FIXTURE / "segmentations", data / "segmentations")
    con = duckdb.connect(str(data / "gliocore.duckdb"))
    try:
        for table in ("segmentations", "location_sets"):
            column = "path" if table == "segmentations" else "atlas_mask_path"
            columns = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table]).fetchall()}
            if column in columns:
                con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                            [FIXTURE_DATA_DIR, str(data)])
    finally:
        con.close()
    missing = [p for p in (data / "segmentations").rglob("*.nii.gz") if not p.exists()]
    assert not missing


def process_and_export(data: Path, demo: Path) -> tuple[str, Path]:
    shutil.copytree(demo, data / "demo")
    out = cli(data, "process", "--demo", "--n-subjects", "3", "--workers", "1")
    cli(data, "export", str(data / "features.csv"))
    return out, data


def assert_exports_equal_golden(data: Path) -> None:
    for name in ("features.csv", "features_scans.csv"):
        assert (data / name).read_bytes() == (FIXTURE / name).read_bytes(), (
            f"{name} differs from the export made before the layout move")


def test_pre_move_store_serves_every_scan_from_cache_and_exports_the_same(demo3, tmp_path):
    with gzip.open(FIXTURE / "gliocore.duckdb.gz") as src, open(tmp_path / "gliocore.duckdb", "wb") as dst:
        shutil.copyfileobj(src, dst)
    move_masks_into(tmp_path)
    out, data = process_and_export(tmp_path, demo3)
    counts = re.search(r"(\d+) scans: (\d+) computed, (\d+) from cache, (\d+) with errors", out)
    assert counts, out
    assert counts.groups() == ("8", "0", "8", "0"), out  # nothing recomputed because a module moved
    assert_exports_equal_golden(data)


def test_demo_export_computed_afresh_is_byte_identical(demo3, tmp_path):
    out, data = process_and_export(tmp_path, demo3)
    assert "8 computed" in out, out
    assert_exports_equal_golden(data)
