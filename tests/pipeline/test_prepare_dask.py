"""The preprocessing stage under the Dask executor (issue 20): real ``dask scheduler`` and
``dask worker`` processes (the fixture of test_dask_cluster.py), two raw subjects (the
skull-bearing phantom, each sequence on its own grid), results identical to the local executor's:
the same figures in ``preprocess.json``, the same voxels in every output and QC slice, the same
scans table; a second run is read from the cache.

Brain extraction by the ``threshold`` method (no model weights); N4 and co-registration are the
stage's own. About two minutes on 2 busy cores.

Identical means bit for bit, which needs the same threads on both sides: ANTs' multi-threaded
metric sums in a varying order (its rigid result moved by ~0.4 degrees between two runs on two
threads, even seeded), and N4 differs in the last bits between 1 and 2 threads. Both executors'
workers run SimpleITK on one thread (``limit_threads``); here ANTs runs on one too, through
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1`` in the workers' environment (README: the Dask
executor). The local executor runs in spawned worker processes, so that no earlier test of this
process has started ANTs with other settings.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preprocess"))
from phantom import phantom_scan
from test_dask_cluster import cluster  # noqa: F401  (the fixture)

from gliocore.pipeline.executor import DaskExecutor, LocalExecutor
from gliocore.pipeline.prepare import prepare_cohort
from gliocore.preprocess.scan import PreprocessOptions

OPTIONS = PreprocessOptions(brain_backend="threshold")
#: What must match between executors in preprocess.json (timings and paths may differ).
FIGURES = ("similarity", "transforms", "coverage", "brain_ml", "model", "weights_sha256",
           "flags", "key")


@pytest.fixture(autouse=True)
def one_ants_thread(monkeypatch):
    """Before the cluster fixture starts its workers (autouse fixtures come first)."""
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")


def _raw_cohort(root: Path) -> Path:
    """Two subjects as raw NIfTI: the phantom with different head motions between sequences."""
    for sid, seed, angle, shift in (("P1", 1, 6.0, (4.0, -3.0, 2.0)),
                                    ("P2", 2, -8.0, (-5.0, 2.0, 3.0))):
        folder = root / sid
        folder.mkdir(parents=True)
        for seq, img in phantom_scan(seed, angle, shift).items():
            name = {"t1c": "t1ce"}.get(seq, seq)
            sitk.WriteImage(img, str(folder / f"{sid}_{name}.nii.gz"))
    (root / "clinical.csv").write_text("SUBJECT ID,Survival(months),IDH-status,event\n"
                                       "P1,10,wildtype,1\nP2,20,mutant,0\n")
    return root / "clinical.csv"


def _voxels(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def test_stage_results_identical_under_local_and_dask(cluster, tmp_path):  # noqa: F811
    csv_path = _raw_cohort(tmp_path / "cohort")
    root = csv_path.parent
    local = prepare_cohort(csv_path, root, tmp_path / "local", naming="brats", options=OPTIONS,
                           executor=LocalExecutor(2))
    dask = prepare_cohort(csv_path, root, tmp_path / "dask", naming="brats", options=OPTIONS,
                          executor=DaskExecutor(cluster))
    assert not local.problems and not dask.problems, (local.problems, dask.problems)
    assert sorted(local.results) == sorted(dask.results) == [("P1", "baseline"),
                                                             ("P2", "baseline")]
    for key, a in local.results.items():
        b = dask.results[key]
        assert not a.cached and not b.cached
        for name in FIGURES:
            assert getattr(a, name) == getattr(b, name), (key, name)
        assert set(a.outputs) == set(b.outputs)
        for name, path in a.outputs.items():
            if path.endswith(".nii.gz"):
                assert np.array_equal(_voxels(path), _voxels(b.outputs[name])), (key, name)
            elif path.endswith(".npz"):
                with np.load(path) as qa, np.load(b.outputs[name]) as qb:
                    assert qa.files == qb.files
                    for k in qa.files:
                        assert np.array_equal(qa[k], qb[k]), (key, k)
            else:  # transforms: same parameters
                ta, tb = sitk.ReadTransform(path), sitk.ReadTransform(b.outputs[name])
                assert ta.GetParameters() == tb.GetParameters(), (key, name)
        assert a.transforms["t1"]["rotation_deg"] > 3  # the motion was found, not skipped

    def rows(table: Path, prefix: Path) -> list[dict]:
        with open(table) as fh:
            return [{**r, "img_dir": r["img_dir"].replace(str(prefix), "")}
                    for r in csv.DictReader(fh)]
    assert rows(local.scans_csv, tmp_path / "local") == rows(dask.scans_csv, tmp_path / "dask")

    again = prepare_cohort(csv_path, root, tmp_path / "dask", naming="brats", options=OPTIONS,
                           executor=DaskExecutor(cluster))
    assert all(r.cached for r in again.results.values()) and len(again.results) == 2
