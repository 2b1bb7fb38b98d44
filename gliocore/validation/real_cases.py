"""Validation of a segmentation backend on real gliomas with expert labels.

Cases: the five BraTS 2018 training cases in ``../shared/cases/brats18-dev`` (four sequences in
SRI24 space, BraTS naming, expert labels 1 = necrosis / non-enhancing core, 2 = oedema,
4 = enhancing). The labels are read through the ``brats`` label map, so they are scored in
GlioScope's two classes: contrast-enhancing = 4, non-enhancing = 1 + 2, whole tumour = all.
Dice and HD95 (BraTS definition: the larger of the two directed 95th percentiles) per region
and case come from :func:`gliocore.segment.qc.compare_masks`, the same code as the Segmentation QC page.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BRATS_DIR = ("cases", "brats18-dev")
#: Targets of issue 13: whole tumour on every case; enhancement where it is large enough to
#: be scored fairly (a few cm³ of patchy rim is below what intensity rules resolve).
WT_TARGET = 0.85
CE_TARGET = 0.75
CE_MIN_MM3 = 5000.0


def brats_cases(shared_root: Path) -> list[Path]:
    """The case folders of ``cases/brats18-dev`` (each holding ``<case>_seg.nii.gz``).

    Raises
    ------
    FileNotFoundError
        When the folder or its cases are absent.
    """
    folder = Path(shared_root).joinpath(*BRATS_DIR)
    cases = sorted(p for p in folder.glob("*") if p.is_dir()
                   and (p / f"{p.name}_seg.nii.gz").is_file())
    if not cases:
        raise FileNotFoundError(f"no BraTS cases with _seg labels under {folder}")
    return cases


@dataclass
class RealGliomaReport:
    """Per-case, per-region agreement of a backend with the expert labels."""

    backend: str
    version: str
    table: pd.DataFrame  # case, region, dice, hd95_mm, volume_pred_cm3, volume_ref_cm3, seconds
    seconds: float = 0.0
    ok: bool = True
    note: str = ""

    def wide(self) -> pd.DataFrame:
        """One row per case: Dice and HD95 per region (WT, CE, NE) and the volumes."""
        short = {"whole_tumour": "WT", "contrast_enhancing": "CE", "non_enhancing": "NE"}
        t = self.table.assign(r=self.table["region"].map(short))
        dice = t.pivot(index="case", columns="r", values="dice").add_prefix("Dice ")
        hd = t.pivot(index="case", columns="r", values="hd95_mm").add_prefix("HD95 mm ")
        vol = t.pivot(index="case", columns="r", values="volume_ref_cm3")
        out = pd.concat([dice[["Dice WT", "Dice CE", "Dice NE"]],
                         hd[["HD95 mm WT", "HD95 mm CE", "HD95 mm NE"]]], axis=1)
        out["WT cm³ (pred / ref)"] = [
            f"{p:.0f} / {r:.0f}" for p, r in zip(
                t[t["r"] == "WT"].set_index("case").loc[out.index, "volume_pred_cm3"],
                vol.loc[out.index, "WT"])]
        out["CE cm³ (ref)"] = vol.loc[out.index, "CE"].round(1)
        return out.reset_index()

    def to_markdown(self) -> str:
        from gliocore.validation.tables import md_table as _md_table
        lines = [f"### Segmentation: baseline on real gliomas ({len(self.wide())} BraTS 2018 cases)",
                 "",
                 f"Backend `{self.backend}` version {self.version} against the BraTS experts' "
                 "labels read with the `brats` label map (contrast-enhancing = 4; "
                 "non-enhancing = 1 + 2; whole tumour = all). HD95 by the BraTS definition "
                 "(max of the two directed 95th percentiles), mm; empty where a mask is empty.",
                 ""]
        lines.append(_md_table(self.wide().round(3)))
        lines += ["", self.note, ""]
        return "\n".join(lines)


def validate_real_gliomas(shared_root: Path, backend: str = "baseline") -> RealGliomaReport:
    """Run a backend on the BraTS development cases and score it against the expert labels.

    Parameters
    ----------
    shared_root : Path
        The ``../shared`` folder (holding ``cases/brats18-dev``).
    backend : str
        A registered segmentation backend.

    Returns
    -------
    RealGliomaReport
        ``ok`` when whole-tumour Dice ≥ :data:`WT_TARGET` on every case and CE Dice ≥
        :data:`CE_TARGET` on every case whose reference enhancement is ≥ :data:`CE_MIN_MM3`.
    """
    from gliocore.segment import qc
    from gliocore.cohort.naming import find_sequences, get_naming
    from gliocore.cohort.subjects import Subject, load_subject_images
    from gliocore.imaging.io import load_volume
    from gliocore.imaging.labels import BRATS
    from gliocore.segment import get_segmenter

    t0 = time.perf_counter()
    seg = get_segmenter(backend)
    rows = []
    with seg:
        for folder in brats_cases(shared_root):
            case = folder.name
            paths, _ = find_sequences(folder, case, get_naming("brats"))
            subject = Subject(case, paths, folder)
            images = load_subject_images(subject)
            affine = next(iter(images.values())).affine
            t_case = time.perf_counter()
            pred = seg.segment(subject, images)
            seconds = time.perf_counter() - t_case
            ref = BRATS.to_canonical(load_volume(folder / f"{case}_seg.nii.gz", dtype=None).data)
            for r in qc.compare_masks(pred, ref, affine):
                region = getattr(r.region, "value", r.region)
                rows.append({"case": case, "region": region, "dice": r.dice,
                             "hd95_mm": r.hd95_mm, "volume_pred_cm3": r.volume_pred_mm3 / 1000,
                             "volume_ref_cm3": r.volume_ref_mm3 / 1000, "seconds": seconds})
    table = pd.DataFrame(rows)
    wt = table[table["region"] == "whole_tumour"]
    ce = table[(table["region"] == "contrast_enhancing")
               & (table["volume_ref_cm3"] * 1000 >= CE_MIN_MM3)]
    wt_ok, ce_ok = bool((wt["dice"] >= WT_TARGET).all()), bool((ce["dice"] >= CE_TARGET).all())
    # Four decimals: a miss by less than 0.0005 (e.g. 0.8496) would read as the target.
    missed = [f"{c} (WT {d:.4f})" for c, d in zip(wt["case"], wt["dice"]) if d < WT_TARGET]
    missed += [f"{c} (CE {d:.4f})" for c, d in zip(ce["case"], ce["dice"]) if d < CE_TARGET]
    note = (f"Targets: whole-tumour Dice ≥ {WT_TARGET} on every case; CE Dice ≥ {CE_TARGET} where "
            f"the reference enhancement is ≥ {CE_MIN_MM3 / 1000:g} cm³ — "
            + ("met." if wt_ok and ce_ok else f"NOT met: {', '.join(missed)}.")
            + f" Median whole-tumour Dice {np.median(wt['dice']):.3f}; "
            f"{table.groupby('case')['seconds'].first().mean():.1f} s per case.")
    return RealGliomaReport(seg.name, seg.version, table, time.perf_counter() - t0,
                            wt_ok and ce_ok, note)
