"""Tests of the synthetic demo cohort generator (tiny grids, so they run in seconds)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliocore.cohort import synth
from gliocore.cohort.loading import load_cohort
from gliocore.cohort.subjects import load_subject_images
from gliocore.imaging.io import load_volume

TINY = (48, 48, 32)
SMALL = (96, 96, 62)  # 2.5 mm: anatomy at real size, coarse grid


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_determinism_byte_identical(tmp_path):
    a = synth.make_tiny_cohort(tmp_path / "a", n=3, shape=TINY, seed=5)
    b = synth.make_tiny_cohort(tmp_path / "b", n=3, shape=TINY, seed=5)
    ha, hb = _hashes(a.parent), _hashes(b.parent)
    assert len(ha) == 3 * 5 + 2  # five files per subject, clinical.csv and clinical_noise.csv
    assert ha == hb
    c = synth.make_tiny_cohort(tmp_path / "c", n=3, shape=TINY, seed=6)
    assert _hashes(c.parent) != ha


def test_generate_subject_deterministic_in_memory():
    s1 = synth.generate_subject("X", 11, TINY)
    s2 = synth.generate_subject("X", 11, TINY)
    for seq in ("t1", "t1c", "t2", "flair"):
        np.testing.assert_array_equal(s1.images[seq], s2.images[seq])
    np.testing.assert_array_equal(s1.truth, s2.truth)


def test_layout_loads_through_load_cohort(tmp_path):
    csv = synth.make_tiny_cohort(tmp_path, n=4)
    assert csv == tmp_path / "clinical.csv"
    cohort = load_cohort(csv, tmp_path)
    assert cohort.problems == []
    assert cohort.subject_ids == ["DEMO-001", "DEMO-002", "DEMO-003", "DEMO-004"]
    df = pd.read_csv(csv)
    assert list(df.columns) == ["SUBJECT ID", "img_dir", "Survival(months)", "IDH-status",
                                "age", "sex", "event", "site"]
    assert set(df["site"]) <= set(synth.SITES)
    assert set(df["IDH-status"]) <= {"mutant", "wildtype"}
    assert set(df["event"]) <= {0, 1}
    assert set(df["sex"]) <= {"M", "F"}
    for subject in cohort.subjects:
        assert subject.folder == tmp_path / "TCGA" / subject.subject_id
        assert subject.reference_mask is not None
        images = load_subject_images(subject)
        assert images["t1"].shape == TINY
        truth = load_volume(subject.reference_mask, dtype=None)
        assert truth.data.dtype == np.uint8
        assert set(np.unique(truth.data)) <= {0, 1, 2}
        assert (truth.data == 2).any()
        assert np.allclose(truth.affine, images["flair"].affine)


def test_resume_skips_complete_subjects(tmp_path):
    csv = synth.make_tiny_cohort(tmp_path, n=3)
    before = _hashes(tmp_path)
    victim = tmp_path / "TCGA" / "DEMO-002" / "DEMO-002_t2.nii.gz"
    victim.unlink()
    kept = tmp_path / "TCGA" / "DEMO-001" / "DEMO-001_t1.nii.gz"
    mtime = kept.stat().st_mtime_ns
    calls: list[tuple[int, int]] = []
    csv2 = synth.generate_demo_cohort(tmp_path, n_subjects=3, seed=0, shape=TINY,
                                      progress=lambda d, t: calls.append((d, t)))
    assert csv2 == csv
    assert kept.stat().st_mtime_ns == mtime          # not rewritten
    assert _hashes(tmp_path) == before               # the regenerated file is identical
    assert calls[-1] == (3, 3)
    assert not list(tmp_path.rglob("*.tmp"))


def test_workers_give_the_same_files(tmp_path):
    synth.generate_demo_cohort(tmp_path / "a", n_subjects=2, shape=TINY, workers=1)
    synth.generate_demo_cohort(tmp_path / "b", n_subjects=2, shape=TINY, workers=2)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_subjects=0), "n_subjects"),
    (dict(workers=0), "workers"),
    (dict(seed=-1), "seed"),
    (dict(shape=(48, 48)), "shape"),
])
def test_cohort_argument_checks(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synth.generate_demo_cohort(tmp_path, **{"shape": TINY, **kwargs})


def test_subject_argument_checks():
    with pytest.raises(ValueError, match="subject_id"):
        synth.generate_subject("", 0, TINY)
    with pytest.raises(ValueError, match="spacing"):
        synth.generate_subject("X", 0, TINY, spacing=0)


def test_affine_is_ras_and_centred():
    s = synth.generate_subject("X", 3, TINY, spacing=2.0)
    assert np.allclose(np.diag(s.affine)[:3], 2.0)
    centre = s.affine @ np.r_[(np.array(TINY) - 1) / 2.0, 1.0]
    assert np.allclose(centre[:3], 0.0)
    brain_centre = np.argwhere(s.images["t1"] > 0).mean(axis=0)
    assert np.allclose(brain_centre, (np.array(TINY) - 1) / 2.0, atol=2.0)


def test_contrasts_and_lesion():
    # Real-size anatomy on a coarse grid; pick a subject with an enhancing rim.
    for seed in range(20):
        s = synth.generate_subject("X", seed, SMALL, spacing=2.5)
        if s.idh_status == "wildtype" and (s.truth == 1).sum() > 30:
            break
    else:  # pragma: no cover
        pytest.fail("no wildtype subject with an enhancing rim in 20 seeds")
    from scipy import ndimage as ndi
    truth = s.truth
    brain = s.images["t1"] > 0
    rim = truth == 1
    tumour = truth > 0
    around = ndi.binary_dilation(tumour, iterations=3) & ~tumour & brain
    normal = brain & ~ndi.binary_dilation(tumour, iterations=3)
    t1c, flair, t2 = s.images["t1c"], s.images["flair"], s.images["t2"]
    # Enhancing rim brighter on T1c than the surrounding brain, and than on T1 (relative).
    assert t1c[rim].mean() > 1.3 * t1c[around].mean()
    assert t1c[rim].mean() / np.median(t1c[normal]) > 1.3 * s.images["t1"][rim].mean() \
        / np.median(s.images["t1"][normal])
    # FLAIR lesion bright: the non-enhancing region (oedema) above normal brain.
    assert np.median(flair[truth == 2]) > 1.4 * np.median(flair[normal])
    # CSF (T2-brightest normal voxels) dark on FLAIR.
    csf = normal & (t2 > np.percentile(t2[normal], 97))
    assert np.median(flair[csf]) < 0.6 * np.median(flair[normal])
    # T1: white matter (brightest normal T1) > grey matter.
    assert np.percentile(s.images["t1"][normal], 90) > 1.2 * np.percentile(s.images["t1"][normal], 30)
    # Zero background, int-valued images.
    assert (s.images["flair"][~brain] == 0).all()
    assert np.array_equal(s.images["t2"], np.rint(s.images["t2"]))


def test_tumour_parameters_and_volume_range():
    subjects = [synth.generate_subject(f"S{i}", 100 + i, SMALL, spacing=2.5) for i in range(12)]
    wt = np.array([s.volume_wt_mm3 for s in subjects]) / 1e3
    assert wt.min() > 4 and wt.max() < 200
    assert wt.max() / wt.min() > 3
    hemis = {s.hemisphere for s in subjects}
    assert hemis == {"left", "right"}
    for s in subjects:
        vox = 2.5 ** 3
        assert s.volume_ce_mm3 == pytest.approx((s.truth == 1).sum() * vox)
        assert s.volume_ne_mm3 == pytest.approx((s.truth == 2).sum() * vox)
        side = np.sign(s.centre_mm[0])
        assert (side < 0) == (s.hemisphere == "left")
    # Mutant tumours enhance less (relative to their size).
    frac = {st: [s.volume_ce_mm3 / s.volume_wt_mm3 for s in subjects if s.idh_status == st]
            for st in ("mutant", "wildtype")}
    if frac["mutant"] and frac["wildtype"]:
        assert np.mean(frac["mutant"]) < np.mean(frac["wildtype"])


def test_per_subject_intensity_scale_varies():
    # Raw intensities differ between subjects (why the dashboard normalises).
    means = []
    for i in range(6):
        images = synth.generate_subject(f"S{i}", i, TINY).images
        means.append([images[seq][images[seq] > 0].mean() for seq in ("t1", "flair")])
    means = np.asarray(means)
    cv = means.std(axis=0) / means.mean(axis=0)
    assert (cv > 0.1).all()


def test_survival_depends_on_idh_and_volume(rng):
    n = 400
    volumes = np.exp(rng.uniform(np.log(10e3), np.log(150e3), n))
    df = synth.simulate_clinical(volumes, rng)
    assert list(df.columns[:5]) == ["IDH-status", "age", "sex", "Survival(months)", "event"]
    mutant = df["IDH-status"] == "mutant"
    assert 0.25 < mutant.mean() < 0.45
    assert df.loc[mutant, "age"].mean() < df.loc[~mutant, "age"].mean()
    t = df["true_survival(months)"]
    assert t[mutant].median() > 2 * t[~mutant].median()
    big = volumes > np.median(volumes)
    assert t[~mutant & ~big].median() > t[~mutant & big].median()
    censored = 1 - df["event"].mean()
    assert 0.1 < censored < 0.3
    assert (df["Survival(months)"] <= 5).mean() > 0.03
    assert (df["Survival(months)"] > 0).all()


def test_simulate_clinical_checks(rng):
    with pytest.raises(ValueError, match="positive"):
        synth.simulate_clinical([1.0, -1.0], rng)
    with pytest.raises(ValueError, match="idh_status"):
        synth.simulate_clinical([1.0, 2.0], rng, idh_status=["mutant"])
    with pytest.raises(TypeError, match="Generator"):
        synth.simulate_clinical([1.0], 3)


def test_demo_sites_come_from_the_scanner_gain_and_survive_a_resume(tmp_path):
    """Issue 22: the site column groups subjects by the scanner gain their images already had
    (no voxel changes); a resumed demo (clinical table gone) reads the same sites off the files,
    and a resume with the table keeps them without reading the images."""
    from gliocore.cohort.synth.sites import read_site
    csv = synth.make_tiny_cohort(tmp_path, n=6)
    df = pd.read_csv(csv)
    for sid, site in zip(df["SUBJECT ID"], df["site"]):
        assert read_site(tmp_path / "TCGA" / sid, sid) == site
    before = _hashes(tmp_path)
    csv.unlink()
    again = pd.read_csv(synth.make_tiny_cohort(tmp_path, n=6))
    assert list(again["site"]) == list(df["site"]) and _hashes(tmp_path) == before
    assert synth.site_of(-1.0) == "A" and synth.site_of(0.0) == "C"
    brighter = {"t1": np.full((4, 4, 4), 900.0), "t2": np.full((4, 4, 4), 1050.0)}  # 1.5x base
    assert synth.scanner_score(brighter) == pytest.approx(np.log(1.5))


def test_noise_only_outcome_keeps_everything_but_the_volume_effect(tmp_path):
    csv = synth.make_tiny_cohort(tmp_path, n=5)
    real, noise = pd.read_csv(csv), pd.read_csv(tmp_path / synth.NOISE_CSV)
    assert list(noise.columns) == list(real.columns)
    same = ["SUBJECT ID", "img_dir", "IDH-status", "age", "sex", "site"]
    assert noise[same].equals(real[same])
    vols = np.array([10e3, 50e3, 200e3])
    rng = lambda: np.random.default_rng(1)  # noqa: E731
    a = synth.simulate_clinical(vols, rng(), idh_status=["mutant"] * 3, age=[50] * 3)
    b = synth.simulate_clinical(vols, rng(), idh_status=["mutant"] * 3, age=[50] * 3,
                                log_hr_per_log_volume=0.0)
    assert a["true_survival(months)"].iloc[1] == pytest.approx(b["true_survival(months)"].iloc[1], rel=1e-3)
    assert a["true_survival(months)"].iloc[2] < b["true_survival(months)"].iloc[2]
