"""Issue 19 (red team), the processing side: writes stay inside their roots (3), masks are placed
by something unique and a collision is loud (4), a dead worker takes only its subject (5), a
full disk fails the run with its reason (12)."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from gliocore.cohort.loading import load_cohort
from gliocore.cohort.subjects import Scan, safe_name
from gliocore.imaging.io import file_sha256
from gliocore.pipeline.context import ProcessingConfig, mask_path
from gliocore.pipeline.executor import LocalExecutor
from gliocore.pipeline.runner import process_cohort
from gliocore.store import Store

from cohorts import tiny_cohort

SHAPE = (24, 24, 16)
#: The reference masks as the segmentation: distinct per subject and seed, and fast.
IMPORT = ProcessingConfig(backend="import", backend_options={"pattern": "{subject}_truth.nii.gz",
                                                             "label_map": "glioscope"})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("tiny"), n=2, shape=SHAPE, seed=5)


def _copy(source: Path, dst: Path) -> Path:
    shutil.copytree(source.parent, dst)
    return dst / source.name


def _renamed(source: Path, dst: Path, ids: dict[str, str]) -> Path:
    """A copy of the cohort with its subjects renamed (folders, files and the CSV)."""
    csv = _copy(source, dst)
    text = csv.read_text()
    for old, new in ids.items():
        folder = dst / "TCGA" / old
        for f in folder.iterdir():
            f.rename(folder / f.name.replace(old, new))
        folder.rename(dst / "TCGA" / new)
        text = text.replace(old, new)
    csv.write_text(text)
    return csv


# -- 3: names that become paths ------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "...", "../..", "a/../../b", "/", "..\\..", " .. "])
def test_safe_name_never_gives_a_dot_component_or_a_separator(name):
    out = safe_name(name)
    assert out not in ("", ".", "..") and "/" not in out and "\\" not in out
    assert not out.startswith(".")


def test_mask_of_subject_and_scan_named_dotdot_stays_inside_the_output_root(tmp_path):
    root = tmp_path / "segmentations" / "c" / "b"
    scan = Scan("..", {s: tmp_path / f"{s}.nii.gz" for s in ("t1", "t1c", "t2", "flair")},
                tmp_path, scan_id="..")
    p = mask_path(root, scan, "0" * 64)
    assert root.resolve() in p.resolve().parents


def test_cohort_named_dotdot_writes_inside_the_data_folder(source, tmp_path):
    csv = _copy(source, tmp_path / "in")
    data = tmp_path / "data"
    data.mkdir()
    summary = process_cohort(load_cohort(csv, csv.parent, name=".."), Store(data / "g.duckdb"))
    assert not summary.errors
    seg = Store(data / "g.duckdb").segmentations_of(summary.cohort_id, summary.config_key)
    assert len(seg) == 2
    for p in seg["path"]:
        assert (data / "segmentations").resolve() in Path(p).resolve().parents


# -- 4: masks placed by something unique ---------------------------------------------------
def _masks_intact(store: Store, summary) -> None:
    seg = store.segmentations_of(summary.cohort_id, summary.config_key)
    assert len(seg) == summary.n_subjects
    for rec in store.segmentations(list(seg["seg_key"])).values():
        assert file_sha256(rec.path) == rec.mask_sha256, \
            f"{rec.path} was overwritten by another cohort's mask"


def test_two_cohorts_with_the_same_name_and_subject_ids_keep_their_own_masks(tmp_path):
    a = tiny_cohort(tmp_path / "a", n=2, shape=SHAPE, seed=11)
    b = tiny_cohort(tmp_path / "b", n=2, shape=SHAPE, seed=12)  # same IDs, other images
    store = Store(tmp_path / "g.duckdb")
    sa = process_cohort(load_cohort(a, a.parent, name="cohort"), store, IMPORT)
    sb = process_cohort(load_cohort(b, b.parent, name="cohort"), store, IMPORT)
    shas = {r.mask_sha256 for s in (sa, sb) for r in store.segmentations(
        list(store.segmentations_of(s.cohort_id, s.config_key)["seg_key"])).values()}
    assert len(shas) == 4  # four different masks
    _masks_intact(store, sa)
    _masks_intact(store, sb)
    again = process_cohort(load_cohort(a, a.parent, name="cohort"), store, IMPORT)
    assert again.computed == [] and len(again.cached) == 2  # nothing flipped, nothing redone


def test_subjects_p_space_1_and_p_underscore_1_keep_their_own_masks(source, tmp_path):
    csv = _renamed(source, tmp_path / "in", {"DEMO-001": "P 1", "DEMO-002": "P_1"})
    store = Store(tmp_path / "g.duckdb")
    summary = process_cohort(load_cohort(csv, csv.parent, name="c"), store, IMPORT)
    assert not summary.errors and sorted(summary.computed) == ["P 1", "P_1"]
    _masks_intact(store, summary)


def test_a_mask_path_collision_is_reported_not_silent(source, tmp_path, monkeypatch):
    import gliocore.pipeline.context as context
    csv = _copy(source, tmp_path / "in")
    same = tmp_path / "data" / "segmentations" / "same_seg.nii.gz"
    monkeypatch.setattr(context.RunContext, "mask_path", lambda self, scan, seg_key: same)
    store = Store(tmp_path / "data" / "g.duckdb")
    summary = process_cohort(load_cohort(csv, csv.parent, name="c"), store, IMPORT)
    assert len(summary.computed) == 1
    assert len(summary.errors) == 1 and "collision" in summary.errors[0].message
    _masks_intact_subset = store.segmentations_of(summary.cohort_id, summary.config_key)
    assert len(_masks_intact_subset) == 1


# -- 5: a dead worker takes only its own task -----------------------------------------------
def _square_but_die_on_3(x: int) -> int:
    if x == 3:
        os._exit(1)  # as the out-of-memory killer would
    return x * x


@pytest.mark.slow
def test_local_executor_rebuilds_the_pool_after_a_worker_dies():
    got = dict(LocalExecutor(2).map_unordered(_square_but_die_on_3, [1, 2, 3, 4, 5, 6]))
    assert {k: v for k, v in got.items() if k != 3} == {1: 1, 2: 4, 4: 16, 5: 25, 6: 36}
    assert isinstance(got[3], BaseException)


# -- 12: a full disk ------------------------------------------------------------------------
def _disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_marks_the_run_failed_with_the_reason(source, tmp_path, monkeypatch):
    csv = _copy(source, tmp_path / "in")
    store = Store(tmp_path / "g.duckdb")
    monkeypatch.setattr(Store, "save_subject_results", _disk_full)
    with pytest.raises(OSError):
        process_cohort(load_cohort(csv, csv.parent, name="c"), store)
    monkeypatch.undo()
    runs = Store(tmp_path / "g.duckdb").runs(
        __import__("gliocore.pipeline.plan", fromlist=["x"]).cohort_key(
            load_cohort(csv, csv.parent, name="c")))
    assert runs.iloc[0]["status"] == "failed"
    assert "No space left on device" in str(runs.iloc[0]["warnings"])


def test_full_disk_in_the_cli_is_a_clear_message(source, tmp_path, monkeypatch, capsys):
    from gliocore.cli import main
    csv = _copy(source, tmp_path / "in")
    monkeypatch.setattr(Store, "save_subject_results", _disk_full)
    rc = main(["--data-dir", str(tmp_path / "data"), "process", "--csv", str(csv)])
    err = capsys.readouterr().err
    assert rc != 0 and "No space left on device" in err and "Traceback" not in err


def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next_one(source, tmp_path):
    csv = _copy(source, tmp_path / "in")
    store = Store(tmp_path / "g.duckdb")
    cohort = load_cohort(csv, csv.parent, name="c")
    first = process_cohort(cohort, store)
    with store.transaction() as con:  # as if finish_run could not write (disk full, kill -9)
        con.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?",
                    [first.run_id])
    process_cohort(cohort, store)
    runs = store.runs(first.cohort_id).set_index("run_id")
    assert runs.loc[first.run_id, "status"] == "interrupted"


def test_an_unexpected_error_is_stored_without_a_traceback(source, tmp_path, monkeypatch):
    from gliocore.segment.base import Segmenter

    def boom(self, *a, **k):
        raise RuntimeError("boom")
    csv = _copy(source, tmp_path / "in")
    monkeypatch.setattr(Segmenter, "segment", boom)
    summary = process_cohort(load_cohort(csv, csv.parent, name="c"), Store(tmp_path / "g.duckdb"))
    messages = [e.message for e in summary.errors]
    assert len(messages) == 2
    assert all("boom" in m and "Traceback" not in m and 'File "' not in m for m in messages)
