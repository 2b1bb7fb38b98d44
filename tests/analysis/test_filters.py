"""Tests for gliocore.analysis.filters: filters as data, and which of them condition on the outcome."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.analysis.filters import Filter, apply_filters, outcome_filters

DUR, EV = "Survival(months)", "event"


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "SUBJECT ID": ["a", "b", "c", "d", "e", "f"],
        DUR: [2.0, 4.0, 8.0, 12.0, 30.0, np.nan],
        EV: [1, 0, 1, 1, 0, 1],
        "IDH-status": ["mutant", "wildtype", None, "wildtype", "mutant", "wildtype"],
        "age": [40.0, 55.0, 61.0, "n/a", 70.0, 35.0],
    })


def test_each_kind_keeps_the_right_rows(table):
    ids = lambda f: apply_filters(table, [f])["SUBJECT ID"].tolist()  # noqa: E731
    assert ids(Filter(DUR, "Survival", "range", low=4, high=12)) == ["b", "c", "d"]  # inclusive, NaN out
    assert ids(Filter(EV, "event", "equals", value=1)) == ["a", "c", "d", "f"]
    assert ids(Filter("IDH-status", "IDH", "in", values=("unknown", "mutant"))) == ["a", "c", "e"]
    assert ids(Filter("age", "age", "range", low=50, high=100)) == ["b", "c", "e"]  # text -> dropped
    both = apply_filters(table, [Filter(EV, "event", "equals", value=1),
                                 Filter("IDH-status", "IDH", "in", values=("wildtype",))])
    assert both["SUBJECT ID"].tolist() == ["d", "f"] and both.index.tolist() == [0, 1]


def test_outcome_filters_are_found_and_can_be_skipped(table):
    survival = Filter(DUR, "Survival", "range", low=0, high=10)
    died = Filter(EV, "event", "equals", value=1)
    idh = Filter("IDH-status", "IDH", "in", values=("wildtype",))
    active = [idh, survival, died]
    assert outcome_filters(active, (DUR, EV)) == [survival, died]
    assert outcome_filters([idh], (DUR, EV)) == []
    # the analysis of survival keeps the IDH filter but not the outcome filters
    kept = apply_filters(table, active, skip_columns=(DUR, EV))
    assert kept["SUBJECT ID"].tolist() == ["b", "d", "f"]
    assert apply_filters(table, active)["SUBJECT ID"].tolist() == []  # d: 12 > 10, f: no time


def test_a_filter_checks_itself_and_a_missing_column_keeps_nothing(table):
    with pytest.raises(ValueError, match="needs low and high"):
        Filter(DUR, "Survival", "range", low=1)
    with pytest.raises(ValueError, match="needs values"):
        Filter("sex", "sex", "in")
    with pytest.raises(ValueError, match="unknown filter kind"):
        Filter("sex", "sex", "like", values=("F",))
    assert apply_filters(table, [Filter("sex", "sex", "in", values=("F",))]).empty


def test_post_baseline_columns_are_outcome_columns_with_the_guarantee_time_warning():
    """Issue 18 point 9: a column known only after baseline (number of scans, follow-up, best
    response, PFS reason...) selects subjects by how long they lived without progression."""
    from gliocore.analysis import filters as flt
    from gliocore.analysis.export import ENDPOINT_COLUMNS
    known_at_baseline = {"response_rule", "os_origin_to_baseline_days"}
    for col in set(ENDPOINT_COLUMNS) - known_at_baseline:
        assert col in flt.OUTCOME_COLUMNS, col
    for col in ("n_scans", "followup_months", "best_response", "best_pct_change",
                "progression_months", "pfs_reason", "response_target", DUR, EV):
        assert col in flt.OUTCOME_COLUMNS
    scans = Filter("n_scans", "n_scans", "range", low=2, high=5)
    idh = Filter("IDH-status", "IDH", "in", values=("wildtype",))
    assert outcome_filters([idh, scans]) == [scans]  # the default: every outcome column
    assert flt.guarantee_time_filters([idh, scans, Filter(EV, "event", "equals", value=1)]) == [scans]
    assert "Anderson" in flt.GUARANTEE_TIME_BIAS and "Giobbie-Hurder" in flt.GUARANTEE_TIME_BIAS
    assert "guarantee-time bias" in flt.GUARANTEE_TIME_BIAS
