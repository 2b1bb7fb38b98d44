"""Cross-validated figures of the stacked segmenter (rules + trees), as its scripts recorded them.

Recomputing the cross-validation (six fold models, twelve cases, the degradations) takes hours
on two cores, so the report reads what ``scripts/train_learned_eval.py --stacked`` (and
``scripts/tune_stacked_decision.py``) recorded in ``gliocore/segment/models/stacked/cv.json`` —
every per-case figure from the fold model that never saw that case, with the enhancement
decision chosen without it — beside the rule baseline on the same cases and learned 2.0
(``models/learned/cv.json``). When the cases are at hand it re-runs one fold model on one
held-out case to show that the recorded figure is reproduced.

:func:`readme_block` is the Markdown that ``scripts/readme_segmentation.py`` writes into the
README between :data:`README_START` and :data:`README_END`; a test checks that the README's
block is what the recorded files give, so its figures cannot drift from them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gliocore.validation.cv_figures import (case_table, decision_note, default_verdict,
                                            degradation_table, external_note, external_table,
                                            group_means, verdict, with_summary)
from gliocore.validation.tables import md_table

#: The README block written by ``scripts/readme_segmentation.py`` lies between these lines.
README_START = "<!-- learned-cv:start -->"
README_END = "<!-- learned-cv:end -->"
_SEGMENT_MODELS = Path(__file__).resolve().parents[1] / "segment" / "models"
#: The recorded held-out figures: the stacked backend's (the report's subject) and 2.0's.
STACKED_CV = _SEGMENT_MODELS / "stacked" / "cv.json"
LEARNED_CV = _SEGMENT_MODELS / "learned" / "cv.json"


@dataclass
class LearnedCVReport:
    """The stacked backend's held-out figures, the rules and 2.0 beside them, and the verdicts.

    Attributes
    ----------
    table, degraded, groups : DataFrame
        Per case (with mean, SD, min rows); per degradation; means by case group.
    external : DataFrame or None
        TCGA-DU-7294 (stacked final model and the rules) when recorded.
    ok : bool
        Whether issue 21's targets are met (:func:`verdict`); ``note`` says which are missed.
    default_ok : bool
        Whether the stacked backend may replace the rules as the default
        (:func:`default_verdict`); ``default_note`` says why not.
    """

    table: pd.DataFrame
    degraded: pd.DataFrame
    groups: pd.DataFrame
    external: pd.DataFrame | None = None
    reproduced: str = "Recorded figures not re-checked (cases absent)."
    seconds: float = 0.0
    ok: bool = True
    note: str = ""
    default_ok: bool = False
    default_note: str = ""
    decision_note: str = ""
    external_note: str = ""
    learned_note: str = ""

    def to_markdown(self, title: bool = True, recheck: bool = True) -> str:
        """The report as Markdown (``title``: with its heading; ``recheck``: with the re-check
        line, which depends on the machine and is left out of the README block)."""
        lines = (["### Segmentation: stacked backend, cross-validated on 12 BraTS 2018 cases", ""]
                 if title else [])
        lines += ["Stacked backend (the rules' mask as features of gradient-boosted trees), "
                  "leave-two-cases-out over 6 folds: every row comes from the fold model that "
                  "never saw that case. *rules* = the intensity rules (2.6) on the same case; "
                  "their constants were chosen on the five `brats18-dev` cases (marked *dev*), "
                  "so the rules' figures there, and the stacked model's (which takes the rules' "
                  "mask as input), are not held out. *2.0* = learned 2.0 (the trees without the "
                  "rules), same folds.", "", md_table(self.table), ""]
        if self.decision_note:
            lines += [self.decision_note, ""]
        if len(self.degraded) > 1:
            lines += ["Whole-tumour Dice under each degradation (held out, same fold models; "
                      "n = cases degraded; the rules' figures on the same degraded cases):", "",
                      md_table(self.degraded), ""]
        else:
            lines += ["Degradations: **not measured** in the recorded run.", ""]
        lines += ["Means by case group: on the seven `brats18-train` cases both the rules and "
                  "the trees are held out; that is the figure to compare.", "",
                  md_table(self.groups), ""]
        if self.external is not None:
            lines += [self.external_note, "", md_table(self.external), ""]
        lines += [self.learned_note, "", self.note, "", self.default_note, ""]
        if recheck:
            lines += [self.reproduced, ""]
        return "\n".join(lines)


def _learned_note(learned: dict) -> str:
    wt = [r["dice_WT"] for r in learned["cases"]]
    ok, misses = verdict(learned)
    return (f"Learned 2.0 (the trees without the rules, `--backend learned`), same folds: WT "
            f"mean {np.mean(wt):.3f} (SD {np.std(wt, ddof=1):.3f}, min {min(wt):.3f}), CE mean "
            f"{np.mean([r['dice_CE'] for r in learned['cases']]):.3f}; issue 21's targets "
            + ("met." if ok else f"missed: {len(misses)}."))


def build_report(stacked: dict, learned: dict) -> LearnedCVReport:
    """The report of the recorded figures (no re-check): the stacked ``cv.json`` and 2.0's."""
    ok, misses = verdict(stacked)
    d_ok, d_misses = default_verdict(stacked)
    note = ("Issue 21 targets (mean WT ≥ 0.88; CE Dice ≥ 0.75 where the expert's enhancement "
            "is ≥ 5 cm³; ≤ 2× the expert's CE volume where it is < 2 cm³; WT within 0.05 of "
            "clean under each degradation): " + ("met." if ok else "NOT met: " + "; ".join(misses)
                                                 + "."))
    default_note = ("Stacked as the default backend instead of the rules (`default_verdict`: "
                    "mean WT ≥ 0.88 over the twelve; above the rules on the seven brats18-train "
                    "cases; no more enhancement misses than the rules there; under each "
                    "degradation both were run on, a WT drop no larger than the rules' or "
                    "within 0.05): " + ("met." if d_ok else "NOT met: " + "; ".join(d_misses)
                                        + "."))
    return LearnedCVReport(
        table=with_summary(case_table(stacked, learned)), degraded=degradation_table(stacked),
        groups=group_means(stacked, learned), external=external_table(stacked), ok=ok,
        note=note, default_ok=d_ok, default_note=default_note,
        decision_note=decision_note(stacked), external_note=external_note(stacked),
        learned_note=_learned_note(learned))


def readme_block(stacked: dict, learned: dict) -> str:
    """The README's block between :data:`README_START` and :data:`README_END` (markers
    included) for these recorded figures."""
    body = build_report(stacked, learned).to_markdown(title=False, recheck=False).strip()
    return f"{README_START}\n{body}\n{README_END}"


def replace_block(readme: str, block: str) -> str:
    """``readme`` with its marked block replaced by ``block`` (which carries the markers)."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {README_START} ... {README_END} block")
    return readme[:start] + block + readme[end + len(README_END):]


def load_recorded(cv_path: Path | None = None,
                  learned_path: Path | None = None) -> tuple[dict, dict]:
    """The recorded stacked and 2.0 figures (default: the shipped ``cv.json`` files)."""
    out = []
    for path in (Path(cv_path or STACKED_CV), Path(learned_path or LEARNED_CV)):
        if not path.is_file():
            raise FileNotFoundError(f"no recorded cross-validation at {path}")
        out.append(json.loads(path.read_text()))
    return out[0], out[1]


def validate_learned_cv(shared_root: Path | None, cv_path: Path | None = None,
                        learned_path: Path | None = None) -> LearnedCVReport:
    """Report the recorded cross-validation; re-check one held-out case when the cases exist.

    Parameters
    ----------
    shared_root : Path or None
        ``../shared`` (holding ``cases/brats18-*``); None: report without the re-check.
    cv_path : Path, optional
        The stacked backend's recorded figures (default: the shipped ``cv.json``).
    learned_path : Path, optional
        Learned 2.0's recorded figures, shown beside (default: the shipped ``cv.json``).
    """
    t0 = time.perf_counter()
    stacked, learned = load_recorded(cv_path, learned_path)
    report = build_report(stacked, learned)
    if shared_root is not None:
        report.reproduced = _recheck(Path(shared_root), stacked)
    report.seconds = time.perf_counter() - t0
    return report


def _recheck(shared_root: Path, cv: dict) -> str:
    """Re-run the first case's stacked fold model on it, with the CE decision recorded for
    that case, and compare its whole-tumour and CE Dice with the record."""
    import nibabel as nib

    from gliocore.imaging.labels import BRATS
    from gliocore.segment.learned import Decision, load_models
    from gliocore.segment.qc import dice
    from gliocore.segment.stacked import MODEL_DIR, segment_arrays

    row = cv["cases"][0]
    case = row["case"]
    hits = [p for sub in ("brats18-dev", "brats18-train")
            for p in (shared_root / "cases" / sub).glob(case)]
    if not hits:
        raise FileNotFoundError(f"case {case} not under {shared_root / 'cases'}")
    imgs = [nib.load(hits[0] / f"{case}_{s}.nii.gz") for s in ("t1", "t1ce", "t2", "flair")]
    ref = BRATS.to_canonical(np.asarray(nib.load(hits[0] / f"{case}_seg.nii.gz").dataobj))
    spacing = tuple(float(z) for z in imgs[0].header.get_zooms()[:3])
    lr_axis = int(np.argmax(np.abs(imgs[0].affine[0, :3])))
    decision = Decision(**row.get("decision", {}))
    pred, _ = segment_arrays([i.get_fdata(dtype=np.float32) for i in imgs], spacing, lr_axis,
                             load_models(row["fold"], MODEL_DIR), decision=decision)
    wt, ce = dice(pred > 0, ref > 0), dice(pred == 1, ref == 1)
    same = abs(wt - row["dice_WT"]) <= 1e-4 and abs(ce - row["dice_CE"]) <= 1e-4
    return (f"Re-check: stacked {row['fold']} re-run on {case} (CE decision "
            f"{decision.ce_share:g} / {decision.min_ce_mm3:g} mm³) gives whole-tumour Dice "
            f"{wt:.4f} (recorded {row['dice_WT']:.4f}) and CE Dice {ce:.4f} (recorded "
            f"{row['dice_CE']:.4f}): " + ("reproduced." if same else "DIFFERS."))
