"""Temporal external validation: dates from the clinical table or a scans table, the split at a
cut-off, and the CLI's --external-before."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gliocore.errors import CohortError
from gliocore.models import split
from gliocore.models.data import family_columns, prepare
from gliocore.models.estimators import ModelSpec
from gliocore.models.synthetic import feature_table
from gliocore.models.validate import CVConfig, external_validation


def test_date_columns_and_table_dates():
    t = pd.DataFrame({"SUBJECT ID": ["a", "b", "c", "d"], "age": [50, 60, 70, 80],
                      "note": ["x", "y", "2020-01-01", "z"],
                      "when": ["2019-03-01", "", "2021-07-15", "not a date"],
                      "diagnosis_date": ["2018-01-02", "2019-05-06", None, "2020-02-03"]})
    assert split.date_columns(t) == ["diagnosis_date"]  # 'when': 2 of 3 dates, under 80 %
    d = split.table_dates(t, "when")
    assert d.index.tolist() == ["a", "b", "c", "d"] and d.isna().tolist() == [False, True, False, True]
    with pytest.raises(CohortError, match="'nope'"):
        split.table_dates(t, "nope")


def test_first_scan_dates(tmp_path):
    f = tmp_path / "scans.csv"
    f.write_text("SUBJECT ID;scan_id;date;img_dir\na;t1;2020-05-01;x\na;t0;2020-01-01;y\n"
                 "b;t0;;z\nc;t0;2021-03-04;w\n")
    d = split.first_scan_dates(f)
    assert d["a"] == pd.Timestamp("2020-01-01") and pd.isna(d["b"]) and d["c"].year == 2021
    f.write_text("SUBJECT ID,scan_id\na,t0\n")
    with pytest.raises(CohortError, match="date column"):
        split.first_scan_dates(f)


def test_date_split_before_and_after():
    ids = np.array(["a", "b", "c", "d", "e"])
    dates = pd.Series(pd.to_datetime(["2018-01-01", "2019-12-31", "2020-01-01", None, "2022-01-01"]),
                      index=["a", "b", "c", "d", "e"])
    s = split.date_split(ids, dates, "2020-01-01")
    assert s.train.tolist() == [True, True, False, False, False]
    assert s.test.tolist() == [False, False, True, False, True] and s.n_undated == 1
    assert "1 without a date" in s.describe("diagnosis_date")
    with pytest.raises(ValueError, match="before"):
        split.date_split(ids, dates, "2000-01-01")
    with pytest.raises(ValueError, match="not a date"):
        split.date_split(ids, dates, "soon")


def test_external_validation_by_date_trains_only_on_earlier_subjects(monkeypatch):
    from gliocore.models import validate
    t = feature_table(n=150, p=15, signal=1.0, seed=3)
    d = prepare(t, "Survival(months)", "event", family_columns(t, "radiomics"),
                ["age", "IDH-status", "sex"], "site", ["age", "sex", "IDH-status"])
    cut = split.date_split(d.ids, split.table_dates(t, "diagnosis_date"), "2017-01-01")
    seen = []
    real = validate.fit_arm
    monkeypatch.setattr(validate, "fit_arm", lambda train, *a, **k: seen.append(set(train.ids))
                        or real(train, *a, **k))
    spec = ModelSpec(n_alphas=8, inner_splits=3)
    summary, pred = external_validation(d, cut.train, spec, CVConfig(horizons=(12.0, 24.0)),
                                        n_boot=20, test_mask=cut.test)
    early = set(d.ids[cut.train])
    assert seen and all(s == early for s in seen)
    assert set(pred["id"]) == set(d.ids[cut.test])
    assert summary.query("arm == 'combined' and metric == 'harrell'")["value"].iloc[0] > 0.6
    with pytest.raises(ValueError, match="both"):
        external_validation(d, cut.train, spec, test_mask=cut.train)


def test_cli_external_before(tmp_path, capsys):
    from gliocore.cli import main
    table = tmp_path / "t.csv"
    feature_table(n=120, p=10, signal=1.0, seed=8).to_csv(table, index=False)
    assert main(["-q", "model", "fit", "--table", str(table), "--outer", "2", "--inner", "2",
                 "--external-before", "2016-06-30"]) == 0
    out = capsys.readouterr().out
    assert "with diagnosis_date before 2016-06-30" in out and "tested on" in out
    with pytest.raises(SystemExit, match="no subject dated before"):
        main(["-q", "model", "fit", "--table", str(table), "--outer", "2", "--inner", "2",
              "--external-before", "1990-01-01"])
