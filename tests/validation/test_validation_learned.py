"""The ``learned_cv`` validation part: the learned backend's recorded held-out figures."""
from __future__ import annotations

import copy
import json

import pytest

from gliocore.segment.learned import MODEL_DIR
from gliocore.validation.learned_cv import validate_learned_cv, verdict
from gliocore.validation.report import PARTS


def test_reports_every_case_with_mean_spread_and_the_baseline_beside():
    report = validate_learned_cv(None)
    assert "learned_cv" in PARTS
    cases = [c for c in report.table["case"] if c not in ("mean", "SD", "min")]
    assert 1 <= len(cases) <= 12 and len(set(cases)) == len(cases)
    assert {"WT", "CE", "NE", "baseline WT", "CE cm³ expert"} <= set(report.table.columns)
    assert report.degraded["condition"].iloc[0] == "clean"
    assert (report.degraded["n"] <= 12).all()
    text = report.to_markdown()
    assert "never saw that case" in text and "not re-checked" in text
    if len(report.degraded) == 1:
        assert "not measured" in text and not report.ok


def test_verdict_names_each_missed_target():
    cv = json.loads((MODEL_DIR / "cv.json").read_text())
    bad = copy.deepcopy(cv)
    for r in bad["cases"]:
        r["dice_WT"] = 0.5
    ok, misses = verdict(bad)
    assert not ok and any("mean whole-tumour Dice 0.500" in m for m in misses)
    small = copy.deepcopy(cv)
    row = small["cases"][0]
    row["ref_CE_cm3"], row["pred_CE_cm3"] = 1.0, 2.5
    assert any("> 2x expert" in m for m in verdict(small)[1])


@pytest.mark.shared
@pytest.mark.slow
def test_recheck_reproduces_the_recorded_figure(shared_dir):
    report = validate_learned_cv(shared_dir)
    assert report.reproduced.endswith("reproduced."), report.reproduced


def test_the_readme_table_is_the_recorded_cross_validation():
    """Each case's held-out whole-tumour Dice and the mean in the README are cv.json's."""
    from pathlib import Path

    cv = json.loads((MODEL_DIR / "cv.json").read_text())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("#### Cross-validated figures"):
                     readme.index("Whole-tumour Dice under each degradation")]
    rows = {line.split("|")[1].strip().split(" ")[0]: line.split("|")
            for line in section.splitlines() if line.startswith("| ")}
    assert len(cv["cases"]) == 12
    for r in cv["cases"]:
        cells = rows[r["case"].replace("Brats18_", "")]
        assert cells[2].strip() == r["fold"]
        assert float(cells[3]) == pytest.approx(r["dice_WT"], abs=6e-4)
        assert float(cells[4]) == pytest.approx(r["dice_CE"], abs=6e-4)
    mean = sum(r["dice_WT"] for r in cv["cases"]) / len(cv["cases"])
    assert float(rows["mean"][3]) == pytest.approx(mean, abs=6e-4)


def test_group_means_split_the_cases_the_rules_were_tuned_on():
    """The 7 brats18-train cases (held out for rules and trees) are reported apart from the 5
    dev cases, and the stacked verdict needs the 7-case mean above the rules'."""
    from gliocore.validation.learned_cv import DEV_CASES, group_means, stacked_verdict

    cv = json.loads((MODEL_DIR / "cv.json").read_text())
    g = group_means(cv, cv).set_index("cases")
    assert list(g["n"]) == [12, 7, 5]
    seven = [r for r in cv["cases"] if r["case"].replace("Brats18_", "") not in DEV_CASES]
    assert g.iloc[1]["rules WT"] == pytest.approx(
        sum(r["baseline"]["dice_WT"] for r in seven) / 7, abs=6e-4)
    good = copy.deepcopy(cv)
    for r in good["cases"]:
        r.update(dice_WT=0.95, dice_CE=0.9, pred_CE_cm3=r["ref_CE_cm3"])
    assert stacked_verdict(good, cv) == (True, [])
    worse = copy.deepcopy(good)
    for r in worse["cases"]:
        if r["case"].replace("Brats18_", "") not in DEV_CASES:
            r["dice_WT"] = r["baseline"]["dice_WT"] - 0.01
        else:
            r["dice_WT"] = 1.0
    ok, misses = stacked_verdict(worse, cv)
    assert not ok and any("7 brats18-train" in m for m in misses)


def test_the_readme_stacked_table_is_the_recorded_cross_validation():
    """The stacked section's per-case held-out Dice and its means are models/stacked/cv.json's,
    and its group table's 7-case mean is the recorded one."""
    from pathlib import Path

    from gliocore.segment.stacked import MODEL_DIR as STACKED_DIR
    from gliocore.validation.learned_cv import group_means

    cv = json.loads((STACKED_DIR / "cv.json").read_text())
    learned = json.loads((MODEL_DIR / "cv.json").read_text())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("#### Stacked variant 3.0")
    section = readme[start:readme.index("**Where 3.0 stands", start)]
    rows = {line.split("|")[1].strip().split(" ")[0]: line.split("|")
            for line in section.splitlines() if line.startswith("| ")}
    assert len(cv["cases"]) == 12
    for r in cv["cases"]:
        cells = rows[r["case"].replace("Brats18_", "")]
        assert cells[2].strip() == r["fold"]
        assert float(cells[3]) == pytest.approx(r["dice_WT"], abs=6e-4)
        assert float(cells[6]) == pytest.approx(r["dice_CE"], abs=6e-4)
    mean = sum(r["dice_WT"] for r in cv["cases"]) / len(cv["cases"])
    assert float(rows["mean"][3]) == pytest.approx(mean, abs=6e-4)
    seven = group_means(cv, learned).iloc[1]
    assert float(rows["7"][3]) == pytest.approx(seven["stacked WT"], abs=6e-4)
    assert float(rows["7"][5]) == pytest.approx(seven["rules WT"], abs=6e-4)
