"""The location part of the validation report: alignment from the data, VASARI side by side with
vasari-auto, and its two known issues (needs ../shared and vasari-auto)."""
from __future__ import annotations

import pytest

pytest.importorskip("vasari_auto")
pytest.importorskip("ants")  # vasari-auto imports it


@pytest.mark.slow
@pytest.mark.shared
def test_location_validation_on_brats_cases_and_demo(shared_dir):
    from gliocore.validation.location import COMPARED, validate_location

    report = validate_location(shared_dir, n_demo=1)
    assert report.ok, report.to_markdown()
    al = report.alignment
    assert len(al) == 6                                  # five BraTS cases + TCGA-DU-7294
    assert (al["axis 1 reversed"] > al["as stored"] + 0.15).all()
    assert (al["axes 0+1 reversed"] >= al["axis 1 reversed"]).all()
    assert len(report.comparison) == 6                   # five cases + one demo subject
    assert set(COMPARED) <= set(report.comparison.columns)
    issues = report.known_issues.set_index("check")
    side, oedema = issues.iloc[0], issues.iloc[1]
    assert side["GlioScope"] == "1" and side["vasari-auto"] == "3"     # issue 1 confirmed
    assert oedema["vasari-auto"] != "2"                                 # issue 2 confirmed
    md = report.to_markdown()
    assert "vasari-auto" in md and "Why values differ" in md
