"""`python -m gliocore validate`: the combined report (needs ../shared; skips without it)."""
from __future__ import annotations


from gliocore.cli import main as cli_main
from gliocore.validation.report import run_validation, validate_segmentation


def test_cli_validate_writes_markdown(shared_dir, tmp_path, capsys):
    out = tmp_path / "report.md"
    rc = cli_main(["validate", "--shared", str(shared_dir), "--output", str(out),
                   "--parts", "ibsi", "survival"])
    text = out.read_text()
    assert rc == 0, text
    assert "IBSI phase-1 digital phantom" in text and "Verdict: **pass**" in text
    assert "rossi" in text and "g3" in text
    assert "report written to" in capsys.readouterr().out


def test_report_lists_missing_reference_as_skipped(tmp_path):
    (tmp_path / "reference").mkdir()
    report = run_validation(tmp_path, parts=["ibsi"])
    assert "ibsi" in report.skipped and "reference data missing" in report.to_markdown()


def test_segmentation_part_puts_baseline_beside_inter_algorithm_agreement(shared_dir):
    rep = validate_segmentation(shared_dir)
    wt = rep.baseline_vs_consensus.set_index("region").loc["whole_tumour", "dice"]
    assert wt >= 0.85 and rep.ok
    assert len(rep.pairwise) == 10 * 3  # 5 algorithms: 10 pairs x 3 regions
    pair_wt = rep.pairwise[rep.pairwise["region"] == "whole_tumour"]["dice"]
    assert pair_wt.min() > 0.9  # the algorithms agree closely on the whole tumour
    md = rep.to_markdown()
    assert "majority vote" in md and "Pairwise Dice" in md


def test_overall_verdict_follows_each_part(shared_dir):
    import dataclasses
    report = run_validation(shared_dir, parts=["survival"])
    assert report.ok
    survival = report.parts["survival"]
    bad = dataclasses.replace(survival.rows[0], passed=False)
    report.parts["survival"] = dataclasses.replace(survival, rows=(bad, *survival.rows[1:]))
    assert not report.ok
