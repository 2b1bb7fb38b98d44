"""Model card: export, reload, apply to another cohort; the CLI round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gliocore.models.card import apply_card, load_card, make_card, save_card
from gliocore.models.data import family_columns, prepare
from gliocore.models.estimators import ModelSpec, fit_arm
from gliocore.models.synthetic import feature_table


def _fit(arm="combined", kind="coxnet"):
    t = feature_table(n=120, p=20, signal=1.0, seed=4)
    d = prepare(t, "Survival(months)", "event", family_columns(t, "radiomics"),
                ["age", "IDH-status", "sex"], "site", ["age", "sex", "IDH-status"])
    f = fit_arm(d, arm, ModelSpec(kind=kind, n_alphas=10, inner_splits=3, n_trees=20,
                                  leaf_grid=(10,)))
    card = make_card(f, d, time_col="Survival(months)", event_col="event", site_col="site",
                     feature_family="radiomics", cv_scheme="test", cv_summary=None,
                     horizons=(12.0, 24.0), cohort="synthetic")
    return t, d, f, card


def test_card_round_trip_applies_the_same_model(tmp_path):
    t, d, f, card = _fit()
    path = save_card(card, tmp_path / "m.json")
    again = load_card(path)
    out = apply_card(again, t.sample(frac=1.0, random_state=0))
    out = out.set_index("id").loc[d.ids]
    assert np.allclose(out["risk"], f.risk(d))
    assert np.allclose(out["S_12"], f.survival(d, [12.0])[:, 0])
    md = path.with_suffix(".md").read_text()
    assert "TRIPOD" in md and "ComBat over `site`" in md and card["data_hash"] in md


def test_apply_to_a_new_site_and_missing_columns():
    t, _, _, card = _fit()
    other = feature_table(n=40, p=20, signal=1.0, seed=9).assign(site="siteZ")
    assert len(apply_card(card, other)) == 40
    with pytest.raises(ValueError, match="feat3_label1"):
        apply_card(card, other.drop(columns=["feat3_label1"]))


def test_forest_card_round_trip_gives_identical_risks(tmp_path):
    t, d, f, card = _fit("combined", "rsf")
    assert "coefficients" not in card
    path = save_card(card, tmp_path / "forest.json")
    entry = json.loads(path.read_text())["forest"]
    assert entry["file"] == "forest.forest.joblib" and (tmp_path / entry["file"]).is_file()
    assert "rsf" in path.with_suffix(".md").read_text() and entry["sha256"][:16] in \
        path.with_suffix(".md").read_text()
    again = load_card(path)
    out = apply_card(again, t.sample(frac=1.0, random_state=1)).set_index("id").loc[d.ids]
    assert np.array_equal(out["risk"].to_numpy(), f.risk(d))
    assert np.array_equal(out["S_24"].to_numpy(), f.survival(d, [24.0])[:, 0])


def test_forest_card_refuses_a_changed_or_missing_forest(tmp_path):
    _, _, _, card = _fit("signature", "rsf")
    path = save_card(card, tmp_path / "m.json")
    forest = tmp_path / "m.forest.joblib"
    data = bytearray(forest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    forest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_card(path)
    forest.unlink()
    with pytest.raises(ValueError, match="missing"):
        load_card(path)
    with pytest.raises(ValueError, match="not loaded"):
        apply_card(json.loads(path.read_text()), feature_table(n=20, p=20, seed=2))


def test_cli_fit_then_apply(tmp_path, capsys):
    from gliocore.cli import main
    card = tmp_path / "card.json"
    assert main(["-q", "model", "fit", "--synthetic", "0.8", "--outer", "3", "--inner", "3",
                 "--out", str(card)]) == 0
    printed = capsys.readouterr().out
    assert "harrell" in printed and "combined" in printed
    assert json.loads(card.read_text())["arm"] == "combined"
    pred = tmp_path / "pred.csv"
    assert main(["model", "apply", str(card), "--synthetic", "0.8", "--seed", "5",
                 "--out", str(pred)]) == 0
    assert pred.read_text().startswith("id,risk,group,S_12,S_24")
    assert "external validation on this table: n 262" in capsys.readouterr().out


def test_score_applied_on_a_new_cohort_with_outcome():
    from gliocore.models.card import score_applied
    _, _, _, card = _fit()
    new = feature_table(n=120, p=20, signal=1.0, seed=21)
    scores = score_applied(card, new, apply_card(card, new))
    assert scores["n"] == 120 and 0.6 < scores["harrell"] < 0.95 and "auc_12" in scores
    assert score_applied(card, new.drop(columns=["event"]), apply_card(card, new)) is None


def test_cli_fits_and_applies_a_forest(tmp_path, capsys):
    from gliocore.cli import main
    table = tmp_path / "cohort.csv"
    feature_table(n=80, p=12, signal=1.0, seed=6).to_csv(table, index=False)
    card = tmp_path / "rsf.json"
    assert main(["-q", "model", "fit", "--table", str(table), "--model", "rsf", "--outer", "2",
                 "--inner", "2", "--out", str(card)]) == 0
    assert "forest" in capsys.readouterr().out and card.with_suffix(".forest.joblib").is_file()
    pred = tmp_path / "pred.csv"
    assert main(["model", "apply", str(card), "--table", str(table), "--out", str(pred)]) == 0
    assert "external validation on this table: n 80" in capsys.readouterr().out
    import pandas as pd
    first = pd.read_csv(pred)
    assert main(["model", "apply", str(card), "--table", str(table), "--out", str(pred)]) == 0
    assert pd.read_csv(pred).equals(first)
