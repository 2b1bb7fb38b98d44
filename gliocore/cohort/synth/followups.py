"""Follow-up scans of the demo: planned from each subject's survival and made from its written
baseline files by a radial deformation that scales the tumour.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from gliocore.types import SEQUENCES, PathType

from .params import CONTRAST, ENHANCING, SOLID, TRUTH_SUFFIX
from .writer import _file_names, _subject_complete, _subject_seed, _write_nifti

# -- follow-up scans -------------------------------------------------------------------------
# Kept apart from the anatomy above: a follow-up is made from a subject's written baseline
# files (whatever anatomy produced them) by a radial deformation that scales the tumour.

#: Follow-up scans per subject with follow-up (the baseline comes on top): 1-4.
MAX_FOLLOWUPS = 4
#: Share of subjects with only their baseline scan (also keeps the demo quick to process).
BASELINE_ONLY_FRACTION = 0.4
FOLLOWUP_DIR = "followup"
SCANS_CSV = "scans.csv"


@dataclass(frozen=True)
class FollowUp:
    """One planned follow-up scan.

    Attributes
    ----------
    scan_id : str
    days : float
        Days from the baseline scan.
    volume_ratio : float
        Whole-tumour volume relative to baseline (the tumour is scaled by its cube root).
    enhancement_gone : bool
        The enhancing part has stopped enhancing (a complete response of the enhancing tumour).
    """

    scan_id: str
    days: float
    volume_ratio: float
    enhancement_gone: bool = False


def plan_followups(survival_months: float, event: int, idh_status: str,
                   rng: np.random.Generator) -> list[FollowUp]:
    """Follow-up scans of one subject, consistent with their survival.

    Scans come at a regular interval (jittered ± 15 %) until death or censoring, at most
    :data:`MAX_FOLLOWUPS`: every survival/5 days, between 6 weeks and a year (about every 3
    months for a median glioblastoma survival; less often for long survivors). The tumour first responds to treatment (IDH-wildtype: a volume
    ratio falling to 0.1-0.8 of baseline; IDH-mutant: 0.6-1.1, mostly stable), then, for a
    subject who dies (and for half of those censored), progresses at 45-85 % of the survival
    time: at the first scan after that it is >= 1.6x its nadir and keeps growing. About one in
    six deep responders loses its enhancement (complete response of the enhancing tumour).
    """
    if rng.random() < BASELINE_ONLY_FRACTION:
        return []
    horizon_days = float(survival_months) * 30.4375
    progresses = bool(event) or rng.random() < 0.5
    t_prog = horizon_days * rng.uniform(0.45, 0.85) if progresses else np.inf
    # every ~3 months; long survivors less often (the 4 follow-ups span ~4/5 of the survival)
    interval = float(np.clip(horizon_days / 5.0, 42.0, 365.0))
    if idh_status == "mutant":
        floor = rng.uniform(0.6, 1.1)
    else:
        floor = rng.uniform(0.1, 0.8)
    loses_enhancement = floor < 0.3 and rng.random() < 0.35
    plan: list[FollowUp] = []
    day = 0.0
    nadir = 1.0
    for k in range(1, MAX_FOLLOWUPS + 1):
        day += interval + rng.uniform(-0.15, 0.15) * interval
        if day >= horizon_days:
            break
        if day < t_prog:
            ratio = floor + (1.0 - floor) * math.exp(-day / interval)
            nadir = min(nadir, ratio)
            gone = loses_enhancement and k >= 2
        else:
            ratio = nadir * (1.6 + 0.6 * (day - t_prog) / interval)
            gone = False
        plan.append(FollowUp(f"fu{k}", round(day), float(ratio), gone))
    return plan


def scale_tumour(images: Mapping[str, np.ndarray], truth: np.ndarray, affine: np.ndarray,
                 factor: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scale the tumour by ``factor`` (linear) about its centroid with a radial deformation.

    Inside the scaled tumour the image is the baseline's, magnified; between it and a margin
    around it, the surrounding brain is pushed out (growth, mass effect) or drawn in (shrinkage);
    beyond the margin nothing moves, and the brain's outline (non-zero voxels) never moves.
    Images are resampled trilinearly, the truth by nearest neighbour.
    """
    if not np.any(truth):
        return {k: np.asarray(v) for k, v in images.items()}, truth
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    idx = np.argwhere(truth > 0)
    centre = idx.mean(axis=0)
    radius_mm = float(np.sqrt((((idx - centre) * spacing) ** 2).sum(axis=1)).max()) + 2.0
    outer = max(radius_mm, factor * radius_mm) + 12.0
    lo = np.maximum(np.floor(centre - outer / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre + outer / spacing).astype(int) + 1, truth.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    axes = [(np.arange(a, b, dtype=np.float32) - c) * sp
            for a, b, c, sp in zip(lo, hi, centre, spacing)]
    r = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                + axes[2][None, None, :] ** 2)
    moving = r < outer                       # only voxels inside the outer sphere move
    rm = r[moving]
    inner = factor * radius_mm
    r_src = np.where(rm <= inner, rm / factor,
                     radius_mm + (rm - inner) * (outer - radius_mm) / max(outer - inner, 1e-6))
    ratio = np.where(rm > 0, r_src / np.maximum(rm, 1e-6), 1.0 / factor).astype(np.float32)
    pos = np.nonzero(moving)
    # (p_ + a) is the voxel index; the source is centre + (index - centre) * ratio
    coords = np.stack([c + (p_ + a - c) * ratio for p_, a, c in zip(pos, lo, centre)])
    # the brain's outline stays where it was (the skull does not move): nothing is drawn in
    # from outside the brain, and a brain voxel the warp would leave empty keeps its value
    brain = np.zeros(truth.shape, dtype=bool)
    for img in images.values():
        brain |= np.asarray(img) > 0
    # a voxel whose source straddles the brain's edge (partly background) keeps its own value,
    # so no dark seam of half-background intensities appears along the outline
    clean = ndi.map_coordinates(brain.astype(np.float32), coords, order=1,
                                mode="nearest") >= 0.999
    out_images: dict[str, np.ndarray] = {}
    for seq, img in images.items():
        src = np.asarray(img, dtype=np.float32)
        full = np.array(src, copy=True)
        sub = full[box]
        sub[moving] = np.where(clean, ndi.map_coordinates(src, coords, order=1, mode="nearest"),
                               sub[moving])
        hole = brain & (full <= 0)
        full[hole] = src[hole]
        full[~brain] = 0.0
        out_images[seq] = full
    new_truth = np.array(truth, copy=True)
    sub = new_truth[box]
    sub[moving] = ndi.map_coordinates(truth, coords, order=0, mode="nearest")
    new_truth[~brain] = 0
    return out_images, new_truth


def make_followup(images: Mapping[str, np.ndarray], truth: np.ndarray, affine: np.ndarray,
                  followup: FollowUp, rng: np.random.Generator
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A follow-up scan from a baseline: the tumour scaled to ``followup.volume_ratio``,
    enhancement removed if ``followup.enhancement_gone`` (the rim takes the T1c intensity of
    solid non-enhancing tumour and becomes label 2), and a new per-sequence scanner gain."""
    imgs, tr = scale_tumour(images, truth, affine, followup.volume_ratio ** (1.0 / 3.0))
    if followup.enhancement_gone:
        rim = tr == 1
        imgs["t1c"][rim] *= float(CONTRAST["t1c"][SOLID] / CONTRAST["t1c"][ENHANCING])
        tr = tr.copy()
        tr[rim] = 2
    out = {}
    for seq, img in imgs.items():
        gain = float(np.exp(rng.normal(0.0, 0.08)))
        out[seq] = np.clip(np.rint(img * gain), 0, 32767).astype(np.float32)
    return out, tr


def _followup_folder(subject_folder: Path, scan_id: str) -> Path:
    return subject_folder / FOLLOWUP_DIR / scan_id


def _write_followups_one(sid: str, folder: str, plan: Sequence[FollowUp], seed: int) -> str:
    """Write one subject's planned follow-ups from its baseline files (top level for a pool)."""
    base = Path(folder)
    todo = [f for f in plan if not _subject_complete(_followup_folder(base, f.scan_id), sid)]
    if not todo:
        return sid
    names = _file_names(sid)
    ref = nib.load(str(base / names[TRUTH_SUFFIX]))
    affine = ref.affine
    truth = np.asarray(ref.dataobj).astype(np.uint8)
    images = {seq: np.asarray(nib.load(str(base / names[seq])).dataobj).astype(np.float32)
              for seq in SEQUENCES}
    for fu in todo:
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(fu.days), len(fu.scan_id)]))
        imgs, tr = make_followup(images, truth, affine, fu, rng)
        dst = _followup_folder(base, fu.scan_id)
        dst.mkdir(parents=True, exist_ok=True)
        for seq in SEQUENCES:
            _write_nifti(imgs[seq].astype(np.int16), affine, dst / names[seq])
        _write_nifti(tr.astype(np.uint8), affine, dst / names[TRUTH_SUFFIX])
    return sid


def generate_followups(out_dir: PathType, seed: int = 0, workers: int = 1,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Add follow-up scans to a demo cohort written by :func:`generate_demo_cohort`.

    Plans each subject's scans from its clinical row (:func:`plan_followups`), writes them
    to ``TCGA/<subject>/followup/<scan>/`` (same naming, with a truth mask) and writes
    ``scans.csv`` (``SUBJECT ID``, ``scan_id``, ``days``, ``img_dir``; the baseline is scan
    ``baseline``, day 0), which :func:`gliocore.cohort.loading.load_cohort` finds beside
    ``clinical.csv``. Idempotent and resumable like the baseline; deterministic in ``seed``.

    Returns
    -------
    Path
        ``out_dir/scans.csv``.
    """
    out = Path(out_dir)
    clinical = pd.read_csv(out / "clinical.csv", dtype={"SUBJECT ID": str})
    rows = []
    plans: dict[str, list[FollowUp]] = {}
    for i, r in enumerate(clinical.itertuples(index=False)):
        sid = str(r[0])
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7919, i]))
        plans[sid] = plan_followups(float(r[2]), int(r[6]), str(r[3]), rng)
        img_dir = f"TCGA/{sid}"
        rows.append({"SUBJECT ID": sid, "scan_id": "baseline", "days": 0, "img_dir": img_dir})
        for fu in plans[sid]:
            rows.append({"SUBJECT ID": sid, "scan_id": fu.scan_id, "days": int(fu.days),
                         "img_dir": f"{img_dir}/{FOLLOWUP_DIR}/{fu.scan_id}"})
    todo = [sid for sid in plans if plans[sid]]
    total = len(todo)
    done = 0
    seeds = {sid: _subject_seed(seed, 10_000 + i) for i, sid in enumerate(plans)}
    if workers == 1 or len(todo) <= 1:
        for sid in todo:
            _write_followups_one(sid, str(out / "TCGA" / sid), plans[sid], seeds[sid])
            done += 1
            if progress:
                progress(done, total)
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(int(workers), len(todo)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_write_followups_one, sid, str(out / "TCGA" / sid),
                                   plans[sid], seeds[sid]) for sid in todo]
            for fut in cf.as_completed(futures):
                fut.result()
                done += 1
                if progress:
                    progress(done, total)
    csv = out / SCANS_CSV
    tmp = csv.with_name(f".{csv.name}.{os.getpid()}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, csv)
    return csv
