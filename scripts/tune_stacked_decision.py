"""Choose how the stacked model's probabilities become CE / NE labels, nested by case.

    python scripts/tune_stacked_decision.py      # after train_learned_eval.py --stacked

Two settings of :class:`gliocore.segment.learned.Decision` decide the enhancing part of a
tumour the trees found (the whole tumour does not depend on them): the share of P(CE) in
P(CE) + P(NE) above which a voxel is enhancing (``ce_share``) and the smallest enhancing
component kept (``min_ce_mm3``; smaller ones become non-enhancing). They are chosen on the
held-out probability maps that ``train_learned_eval.py`` kept (each from the fold model that
never saw the case), over the grid below, by the issue's enhancement targets: most cases
meeting them (CE Dice >= 0.75 where the expert's enhancement is >= 5 cm³, no more than twice
the expert's volume where it is < 2 cm³), then the mean CE Dice.

Nested, so that no case's figure comes from a setting chosen by looking at it: each case is
scored with the setting chosen on the other eleven (recorded per case in ``cv.json``). The
shipped model uses the setting chosen on all twelve (recorded in its ``manifest.json``).
"""
from __future__ import annotations

import itertools
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gliocore.segment.learned import Decision, labels_from_probabilities  # noqa: E402
from gliocore.segment.stacked import MODEL_DIR  # noqa: E402
from train_learned_eval import scores  # noqa: E402
from train_learned_segmenter import CACHE, case_dirs, load_case  # noqa: E402

CE_SHARES = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_CE_MM3 = (0.0, 100.0, 250.0, 500.0, 1000.0)
GRID = [Decision(t, m) for t, m in itertools.product(CE_SHARES, MIN_CE_MM3)]


def meets(row: dict) -> bool | None:
    """Whether a case meets the enhancement target that applies to it (None: none applies)."""
    if row["ref_CE_cm3"] >= 5.0:
        return row["dice_CE"] >= 0.75
    if row["ref_CE_cm3"] < 2.0:
        return row["pred_CE_cm3"] <= 2.0 * row["ref_CE_cm3"]
    return None


def score_grid(case: str) -> list[dict]:
    """The case's held-out figures under every decision of :data:`GRID`."""
    dirs = {d.name: d for d in case_dirs()}
    _, ref, spacing, _ = load_case(dirs[case])
    kept = np.load(CACHE / "pred" / f"eval_stacked_{case}.npz")
    prob = kept["prob"].astype(np.float32)
    box = tuple(slice(int(a), int(b)) for a, b in kept["box"])
    vox = float(np.prod(spacing))
    out = []
    for d in GRID:
        pred = np.zeros(ref.shape, dtype=np.uint8)
        pred[box] = labels_from_probabilities(prob, spacing, d)
        out.append(scores(pred, ref, vox))
    return out


def choose(table: dict[str, list[dict]], cases: list[str]) -> int:
    """Index into :data:`GRID` of the decision best on ``cases``: most enhancement targets
    met, then the highest mean CE Dice, then the grid's order (default-like first)."""
    def key(i: int) -> tuple:
        rows = [table[c][i] for c in cases]
        return (sum(meets(r) is True for r in rows), float(np.mean([r["dice_CE"] for r in rows])))
    best = max(key(i) for i in range(len(GRID)))
    return next(i for i in range(len(GRID)) if key(i) == best)


def score_table(cases: list[str], processes: int) -> dict[str, list[dict]]:
    """:func:`score_grid` of every case, one case per process (labelling is single-threaded);
    kept in ``$LEARNED_CACHE/decision_grid.json`` for the probability maps of the same run."""
    kept = CACHE / "decision_grid.json"
    grid = [vars(d) for d in GRID]
    if kept.is_file():
        old = json.loads(kept.read_text())
        if old["grid"] == grid and sorted(old["table"]) == sorted(cases):
            return old["table"]
    with Pool(processes) as pool:
        table = dict(zip(cases, pool.map(score_grid, cases)))
    kept.write_text(json.dumps({"grid": grid, "table": table}))
    return table


def main(processes: int = 2) -> None:
    """Score the grid on every case, record the nested choices in ``cv.json`` and the choice
    on all twelve in ``manifest.json``."""
    path = MODEL_DIR / "cv.json"
    cv = json.loads(path.read_text())
    cases = [r["case"] for r in cv["cases"]]
    table = score_table(cases, processes)
    for row in cv["cases"]:
        others = [c for c in cases if c != row["case"]]
        i = choose(table, others)
        got = table[row["case"]][i]
        assert abs(got["dice_WT"] - row["dice_WT"]) < 1e-3, "the decision must not move WT"
        row["default_decision"] = {k: row[k] for k in got if "CE" in k or "NE" in k}
        row.update({k: v for k, v in got.items() if "CE" in k or "NE" in k})
        row["decision"] = vars(GRID[i])
        print(row["case"], row["decision"], row["dice_CE"], flush=True)
    path.write_text(json.dumps(cv, indent=1) + "\n")
    final = choose(table, cases)
    manifest_path = MODEL_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["decision"] = {
        "chosen": vars(GRID[final]),
        "grid": {"ce_share": list(CE_SHARES), "min_ce_mm3": list(MIN_CE_MM3)},
        "method": "scripts/tune_stacked_decision.py: on the 12 held-out probability maps; "
                  "cv.json's figures use the setting chosen without the case (nested)"}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print("shipped:", GRID[final], flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--score-only", action="store_true",
                        help="only score the grid (kept for the next run), record nothing")
    args = parser.parse_args()
    if args.score_only:
        score_table([r["case"] for r in json.loads((MODEL_DIR / "cv.json").read_text())["cases"]],
                    args.processes)
    else:
        main(args.processes)
