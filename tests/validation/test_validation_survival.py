"""Validation of gliocore.analysis's survival functions (kaplan_meier, cox) against ../shared/reference/survival (skips without it)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from gliocore.validation.survival import REL_P, REL_STAT, SurvivalReport, validate_survival


@pytest.fixture(scope="module")
def report(shared_dir) -> SurvivalReport:
    return validate_survival(shared_dir)


@pytest.mark.shared
def test_every_reference_value_is_matched(report):
    misses = "\n".join(f"{r.quantity}: ours {r.ours!r} vs {r.reference!r}" for r in report.failures)
    assert report.all_passed, misses
    assert report.n_compared >= 60


@pytest.mark.shared
def test_report_covers_required_quantities(report):
    q = [r.quantity for r in report.rows]
    for needle in ("rossi Cox Efron: coef fin", "rossi Cox Efron: se prio", "rossi Cox Efron: concordance",
                   "rossi Cox Breslow: coef fin", "rossi KM: S(week 52)", "rossi log-rank race: p",
                   "rossi log-rank fin: statistic", "g3 log-rank RIT vs Control: statistic",
                   "g3 KM Control: median", "g3 KM RIT: median", "g3 Cox RIT vs Control: coef"):
        assert needle in q, needle
    tol = {r.quantity: r.tolerance for r in report.rows}
    assert tol["rossi log-rank race: p"] == f"rel {REL_P:.0e}"
    assert tol["rossi Cox Efron: coef fin"] == f"rel {REL_STAT:.0e}"
    rit = next(r for r in report.rows if r.quantity == "g3 KM RIT: median")
    assert rit.ours == rit.reference == math.inf  # "not reached"


@pytest.mark.shared
def test_uncomparable_entries_are_listed_not_dropped(report):
    skipped = dict(report.skipped)
    assert "veterans_sksurv" in skipped and "waltons_logrank" in skipped
    md = report.to_markdown()
    assert md.startswith(f"**Survival validation: {report.n_passed}/{report.n_compared}")
    assert "| rossi Cox Breslow: coef fin |" in md and "Not compared:" in md
    frame = report.to_frame()
    assert list(frame.columns) == ["quantity", "ours", "reference", "tolerance", "pass"]
    assert len(frame) == report.n_compared


def test_missing_reference_folder_raises(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="REFERENCE_VALUES.json"):
        validate_survival(tmp_path)


@pytest.mark.shared
def test_a_perturbed_reference_is_caught(shared_dir, tmp_path: Path):
    """The comparison has teeth: a reference coefficient moved by 0.1 % fails, the rest still pass."""
    import json
    import shutil

    folder = tmp_path / "reference" / "survival"
    shutil.copytree(shared_dir / "reference" / "survival", folder)  # a scratch copy, outside the repo
    ref_file = folder / "REFERENCE_VALUES.json"
    ref_file.chmod(0o644)
    ref = json.loads(ref_file.read_text())
    ref["rossi_coxph_efron"]["coef"]["fin"] *= 1.001
    ref["g3_glioma_logrank"]["km_RIT"]["median"] = 60
    ref_file.write_text(json.dumps(ref))
    rep = validate_survival(tmp_path)
    assert {r.quantity for r in rep.failures} == {"rossi Cox Efron: coef fin", "g3 KM RIT: median"}
