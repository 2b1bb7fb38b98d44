"""The ``learned_cv`` validation part: the stacked backend's recorded held-out figures, the rules
and learned 2.0 beside them, the verdicts, and the README block generated from them."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from gliocore.validation.cv_figures import (DEV_CASES, default_verdict, degradation_table,
                                            group_means, verdict)
from gliocore.validation.learned_cv import (README_END, README_START, load_recorded,
                                            readme_block, replace_block, validate_learned_cv)
from gliocore.validation.report import PARTS

ROOT = Path(__file__).resolve().parents[2]
CASES = ["Brats18_" + c for c in ("TCIA01_201_1", "TCIA01_378_1", "TCIA01_425_1", "TCIA01_499_1",
                                  "TCIA02_135_1", "TCIA02_370_1", "TCIA02_606_1", "TCIA03_265_1",
                                  "TCIA10_628_1", "TCIA10_637_1", "TCIA10_639_1", "TCIA13_623_1")]
BIAS, LOWRES = "bias field (±30 %)", "lower resolution (2 mm, re-interpolated)"
REFERENCE = "majority vote (>= 3 of 5) of five BraTS-2020 algorithms, not manual"


def _scores(wt: float, ce: float = 0.8, ref_ce: float = 10.0, pred_ce: float | None = None):
    return {"dice_WT": wt, "dice_CE": ce, "dice_NE": 0.8, "pred_WT_cm3": 50.0,
            "ref_WT_cm3": 52.0, "pred_CE_cm3": ref_ce if pred_ce is None else pred_ce,
            "ref_CE_cm3": ref_ce, "pred_NE_cm3": 40.0, "ref_NE_cm3": 42.0}


def synthetic_cv(wt: float = 0.92, rules_wt: float = 0.88, drop: float = 0.03,
                 rules_drop: float | None = 0.06) -> dict:
    """A cv.json of the stacked 4.0 shape: 12 cases (WT ``wt`` ± 0.01, mean ``wt``), both
    degradations dropping WT by ``drop`` (the rules by ``rules_drop``; None: the rules'
    degraded figures not recorded), a nested CE decision and one external case."""
    cases = []
    for i, case in enumerate(CASES):
        w = wt + 0.01 * (i % 3 - 1)
        base = {**_scores(rules_wt), "seconds": 5.0}
        if rules_drop is not None:
            base["degraded"] = {n: _scores(rules_wt - rules_drop) for n in (LOWRES, BIAS)}
        cases.append({"case": case, "fold": f"fold{i // 2}", "seconds": 10.0, **_scores(w),
                      "degraded": {n: {**_scores(w - drop), "uncovered": {}}
                                   for n in (LOWRES, BIAS)},
                      "baseline": base, "decision": {"ce_share": 0.6, "min_ce_mm3": 100.0},
                      "default_decision": {"dice_CE": 0.7, "pred_CE_cm3": 12.0,
                                           "ref_CE_cm3": 10.0, "dice_NE": 0.78}})
    external = {"case": "TCGA-DU-7294", "model": "final", "reference": REFERENCE,
                "seconds": 9.0, **_scores(0.93, ce=1.0, ref_ce=0.0),
                "baseline": _scores(0.916, ce=1.0, ref_ce=0.0)}
    return {"note": "synthetic", "seed": 0, "cases": cases, "external": [external]}


def _write(tmp_path: Path, cv: dict, name: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(cv))
    return path


def test_report_on_a_stacked_record_gives_every_table_and_both_verdicts(tmp_path):
    stacked, learned = synthetic_cv(), synthetic_cv(wt=0.85)
    report = validate_learned_cv(None, _write(tmp_path, stacked, "s.json"),
                                 _write(tmp_path, learned, "l.json"))
    assert "learned_cv" in PARTS
    t = report.table.set_index("case")
    assert list(t.index[-3:]) == ["mean", "SD", "min"] and len(t) == 15
    assert sum(c.endswith(" (dev)") for c in t.index) == 5
    assert "TCIA01_425_1" in t.index and "TCIA01_201_1 (dev)" in t.index
    assert {"WT", "CE", "NE", "CE cm³ pred", "CE cm³ expert", "rules WT", "rules CE",
            "2.0 WT"} <= set(t.columns)
    assert t.loc["mean", "WT"] == pytest.approx(0.92, abs=1e-3)
    assert t.loc["mean", "2.0 WT"] == pytest.approx(0.85, abs=1e-3)
    assert t.loc["mean", "rules WT"] == pytest.approx(0.88, abs=1e-3)
    assert t.loc["min", "WT"] == pytest.approx(0.91, abs=1e-3)
    d = report.degraded.set_index("condition")
    assert list(d.index) == ["clean", LOWRES, BIAS] and (d["n"] == 12).all()
    assert d.loc[BIAS, "WT drop"] == pytest.approx(0.03, abs=1e-3)
    assert d.loc[BIAS, "rules WT drop"] == pytest.approx(0.06, abs=1e-3)
    assert d.loc[BIAS, "rules WT mean"] == pytest.approx(0.82, abs=1e-3)
    assert list(report.groups["n"]) == [12, 7, 5]
    assert list(report.external["segmenter"]) == ["stacked (final model)", "rules"]
    assert report.external["WT"].tolist() == pytest.approx([0.93, 0.916])
    assert report.default_ok and report.ok, (report.default_note, report.note)
    text = report.to_markdown()
    assert "never saw that case" in text and "not re-checked" in text
    assert "weak reference" in text and REFERENCE in text
    assert "0.6 / 100 mm³ on 12 case(s)" in text and "against 0.700 with the default" in text
    assert "WT mean 0.850" in text  # 2.0's summary line
    block = readme_block(stacked, learned)
    assert block.startswith(README_START) and block.endswith(README_END)
    assert "not re-checked" not in block and "| TCIA01_425_1 | fold1 |" in block


def test_the_rules_columns_are_left_out_where_the_rules_were_not_degraded():
    cv = synthetic_cv(rules_drop=None)
    table = degradation_table(cv)
    assert "rules WT drop" not in table.columns and len(table) == 3
    assert default_verdict(cv) == (True, [])


def test_default_verdict_names_each_failed_condition():
    assert default_verdict(synthetic_cv()) == (True, [])
    ok, misses = default_verdict(synthetic_cv(wt=0.87, rules_wt=0.8))
    assert not ok and misses == ["mean whole-tumour Dice 0.870 over 12 cases (needs >= 0.88 "
                                 "over 12)"]
    eleven = synthetic_cv()
    eleven["cases"].pop()
    assert "over 11 cases" in default_verdict(eleven)[1][0]
    below = synthetic_cv()
    for r in below["cases"]:
        if r["case"].replace("Brats18_", "") not in DEV_CASES:
            r["dice_WT"] = r["baseline"]["dice_WT"] - 0.01
        else:
            r["dice_WT"] = 1.0
    ok, misses = default_verdict(below)
    assert not ok and len(misses) == 1 and "7 brats18-train cases WT 0.870 <= the rules' 0.880" \
        in misses[0]
    ce = synthetic_cv()
    train = [r for r in ce["cases"] if r["case"].replace("Brats18_", "") not in DEV_CASES]
    train[0]["dice_CE"] = 0.5  # a miss for the model, none for the rules
    assert default_verdict(ce)[0] is False and "1 (rules: 0)" in default_verdict(ce)[1][0]
    train[0]["baseline"]["dice_CE"] = 0.5  # as many as the rules: allowed
    assert default_verdict(ce) == (True, [])
    train[1].update(ref_CE_cm3=1.0, pred_CE_cm3=2.5)  # small enhancement over-called
    train[1]["baseline"].update(ref_CE_cm3=1.0, pred_CE_cm3=1.5)
    assert "2 (rules: 1)" in default_verdict(ce)[1][0]


@pytest.mark.parametrize("drop, rules_drop, met", [(0.08, 0.10, True), (0.04, 0.0, True),
                                                     (0.08, 0.02, False), (0.2, None, True)])
def test_default_verdict_compares_each_degradation_with_the_rules(drop, rules_drop, met):
    ok, misses = default_verdict(synthetic_cv(drop=drop, rules_drop=rules_drop))
    assert ok is met
    if not met:
        assert len(misses) == 2 and misses[0].startswith(LOWRES) and "(n = 12)" in misses[0]
        assert f"WT down {drop:.3f} against the rules' {rules_drop:.3f}" in misses[1]


def test_verdict_names_each_missed_target():
    bad = synthetic_cv()
    for r in bad["cases"]:
        r["dice_WT"] = 0.5
    ok, misses = verdict(bad)
    assert not ok and any("mean whole-tumour Dice 0.500" in m for m in misses)
    small = synthetic_cv()
    small["cases"][0].update(ref_CE_cm3=1.0, pred_CE_cm3=2.5)
    assert verdict(small)[1] == ["Brats18_TCIA01_201_1 CE 2.5 cm³ > 2x expert 1.0"]
    assert any(m.startswith(BIAS) for m in verdict(synthetic_cv(drop=0.06))[1])


def test_group_means_split_the_cases_the_rules_were_tuned_on():
    """The 7 brats18-train cases (held out for rules and trees) are reported apart from the 5
    dev cases."""
    cv = synthetic_cv()
    cv["cases"][2]["baseline"]["dice_WT"] = 0.81  # 425, a brats18-train case
    g = group_means(cv, synthetic_cv(wt=0.85)).set_index("cases")
    assert list(g["n"]) == [12, 7, 5]
    assert g.iloc[1]["rules WT"] == pytest.approx((6 * 0.88 + 0.81) / 7, abs=6e-4)
    assert g.iloc[2]["rules WT"] == pytest.approx(0.88, abs=6e-4)
    assert g.iloc[0]["2.0 WT"] == pytest.approx(0.85, abs=6e-4)


def test_reports_the_shipped_record():
    report = validate_learned_cv(None)
    stacked, _ = load_recorded()
    cases = [c for c in report.table["case"] if c not in ("mean", "SD", "min")]
    assert len(cases) == len(stacked["cases"]) == 12 and len(set(cases)) == 12
    assert report.degraded["condition"].iloc[0] == "clean"
    assert report.default_ok == default_verdict(stacked)[0]
    assert "not re-checked" in report.to_markdown()


def test_the_readme_block_is_the_recorded_cross_validation():
    """The README's cross-validated block is exactly what the recorded cv.json files give
    (after a new evaluation: ``python scripts/readme_segmentation.py``)."""
    readme = (ROOT / "README.md").read_text()
    assert readme.count(README_START) == 1 and readme.count(README_END) == 1
    block = readme[readme.index(README_START):readme.index(README_END) + len(README_END)]
    assert block == readme_block(*load_recorded()), \
        "README block stale: run python scripts/readme_segmentation.py"


def test_the_readme_script_rewrites_only_the_block(tmp_path):
    spec = importlib.util.spec_from_file_location("readme_segmentation",
                                                  ROOT / "scripts" / "readme_segmentation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cv, learned = synthetic_cv(), synthetic_cv(wt=0.85)
    paths = ["--cv", str(_write(tmp_path, cv, "s.json")),
             "--learned-cv", str(_write(tmp_path, learned, "l.json"))]
    readme = tmp_path / "README.md"
    readme.write_text(f"prose before\n\n{README_START}\nold figures\n{README_END}\n\nprose after\n")
    args = ["--readme", str(readme)] + paths
    assert script.main(args + ["--check"]) == 1 and "old figures" in readme.read_text()
    assert script.main(args) == 0
    assert readme.read_text() == f"prose before\n\n{readme_block(cv, learned)}\n\nprose after\n"
    assert script.main(args + ["--check"]) == 0
    with pytest.raises(ValueError, match="no <!-- learned-cv:start -->"):
        replace_block("no markers", readme_block(cv, learned))


def test_the_report_leaves_the_record_as_it_was():
    cv, learned = synthetic_cv(), synthetic_cv(wt=0.85)
    before = copy.deepcopy((cv, learned))
    readme_block(cv, learned)
    assert (cv, learned) == before


@pytest.mark.shared
@pytest.mark.slow
def test_recheck_reproduces_the_recorded_figure(shared_dir):
    report = validate_learned_cv(shared_dir)
    assert report.reproduced.endswith("reproduced."), report.reproduced
