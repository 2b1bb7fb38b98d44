"""Model card: a fitted survival model as JSON (features, coefficients, preprocessing, ComBat
parameters, CV scheme and results, versions, data hash), applied to another cohort by
:func:`apply_card`, and a one-page Markdown summary of the TRIPOD items that apply.

A Cox card holds numbers only (no pickle), so it can be read, diffed and applied by any version
of GlioScope that knows this format. A random survival forest (thousands of trees) is saved
beside the card with joblib (``<card>.forest.joblib``); the card holds the file's name and
SHA-256, and :func:`load_card` refuses a file whose checksum differs. joblib files are pickles:
load only forests you made or trust, with the scikit-survival version the card records.
"""
from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from gliocore.models.combat import ComBat
from gliocore.models.data import ClinicalEncoder, SurvivalData
from gliocore.models.estimators import (FittedArm, ForestSurvival, LinearSurvival, ModelSpec,
                                        Preprocessor)

__all__ = ["FORMAT", "make_card", "save_card", "load_card", "apply_card", "score_applied",
           "card_markdown", "card_json", "forest_file"]

FORMAT = "glioscope-survival-model/1"
_PACKAGES = ("numpy", "scipy", "scikit-learn", "scikit-survival", "pandas")


def _versions() -> dict[str, str]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def make_card(fitted: FittedArm, d: SurvivalData, *, time_col: str, event_col: str,
              site_col: str | None, feature_family: str, cv_scheme: str,
              cv_summary: pd.DataFrame | None, horizons: Sequence[float], cohort: str = "") -> dict:
    """Everything needed to apply ``fitted`` elsewhere and to report how it was made."""
    pre = fitted.pre
    card = {
        "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cohort": cohort, "arm": fitted.arm, "kind": fitted.spec.kind if fitted.arm != "clinical"
        else "cox", "spec": {k: getattr(fitted.spec, k) for k in fitted.spec.__dataclass_fields__},
        "outcome": {"time": time_col, "event": event_col, "units": "months"},
        "n_subjects": len(d), "n_events": int(d.event.sum()),
        "follow_up_median": float(np.median(d.time)), "data_hash": d.data_hash(),
        "feature_family": feature_family, "input_features": list(d.X.columns),
        "clinical_columns": list(d.clinical.columns), "site_column": site_col,
        "combat_covariates": list(d.covars.columns),
        "sites": sorted(set(d.site.tolist())) if d.site is not None else [],
        "clinical_encoder": fitted.clinical.to_dict() if fitted.clinical else None,
        "preprocessing": None if pre is None else {
            "columns": pre.columns_, "medians": pre.medians_.tolist(),
            "combat": pre.combat_.to_dict() if pre.combat_ is not None else None,
            "mean": pre.mean_.tolist(), "scale": pre.scale_.tolist(),
            "selected": pre.selected_.tolist(), "harmonise": pre.harmonise, "k_best": pre.k_best},
        "penalty": fitted.penalty, "train_risk_median": fitted.train_risk_median,
        "horizons": [float(h) for h in horizons], "cv_scheme": cv_scheme,
        "cv_summary": [] if cv_summary is None else cv_summary.to_dict("records"),
        "versions": _versions(),
    }
    card["predictors"] = list(fitted.names)
    if isinstance(fitted.model, LinearSurvival):
        card["coefficients"] = dict(zip(fitted.names, fitted.model.coef.tolist()))
        card["baseline"] = {"times": fitted.model.base_times.tolist(),
                            "cumhaz": fitted.model.base_cumhaz.tolist()}
    elif isinstance(fitted.model, ForestSurvival):
        card["_forest"] = fitted.model.forest  # written beside the card by save_card
    return card


def forest_file(card: dict, name: str) -> bytes:
    """The card's forest as joblib bytes; records ``name``, the SHA-256 and the size in the
    card's ``forest`` entry (so the JSON written afterwards names this exact file)."""
    import joblib
    if "_forest" not in card:
        raise ValueError("the card holds no fitted forest")
    buf = io.BytesIO()
    joblib.dump(card["_forest"], buf, compress=3)
    data = buf.getvalue()
    card["forest"] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                      "format": "joblib (pickle) of sksurv.ensemble.RandomSurvivalForest"}
    return data


def card_json(card: dict) -> str:
    """The card as JSON (private entries, such as the in-memory forest, left out)."""
    return json.dumps({k: v for k, v in card.items() if not k.startswith("_")}, indent=1,
                      default=float)


def save_card(card: dict, path: Path) -> Path:
    """Write the card as JSON, the Markdown summary ``<stem>.md`` and, for a forest, the forest
    ``<stem>.forest.joblib`` (its SHA-256 in the card)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "_forest" in card:
        target = path.with_suffix(".forest.joblib")
        target.write_bytes(forest_file(card, target.name))
    path.write_text(card_json(card))
    path.with_suffix(".md").write_text(card_markdown(card))
    return path


def load_card(path: Path) -> dict:
    """Read a card, checking its format; a forest card's forest is read from beside it after
    its SHA-256 is checked.

    Raises
    ------
    ValueError
        Not a card; or the forest file is missing or its checksum is not the card's.
    """
    path = Path(path)
    card = json.loads(path.read_text())
    if card.get("format") != FORMAT:
        raise ValueError(f"{path}: not a GlioScope survival model card (format "
                         f"{card.get('format')!r}, expected {FORMAT!r})")
    if card.get("forest"):
        card["_forest"] = _read_forest(path.parent / card["forest"]["file"], card["forest"])
    return card


def _read_forest(file: Path, entry: dict):
    import joblib
    if not file.is_file():
        raise ValueError(f"{file}: the forest of this model card is missing (it is saved beside "
                         "the card as <card>.forest.joblib)")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{file}: SHA-256 {digest[:16]}… is not the card's {entry['sha256'][:16]}…"
                         ": refusing to load a forest that is not the one this card was made with")
    return joblib.load(io.BytesIO(data))


def _fitted_from_card(card: dict) -> FittedArm:
    if card["kind"] == "rsf":
        if "_forest" not in card:
            raise ValueError("the card's random survival forest is not loaded: read the card "
                             "with load_card(path), which loads <card>.forest.joblib beside it")
    elif "coefficients" not in card:
        raise ValueError(f"the card's model ({card['kind']}) has no coefficients to apply")
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["spec"].items()})
    enc = ClinicalEncoder.from_dict(card["clinical_encoder"]) if card["clinical_encoder"] else None
    pre = None
    if card["preprocessing"]:
        pp = card["preprocessing"]
        pre = Preprocessor(pp["harmonise"], pp["k_best"])
        pre.columns_, pre.medians_ = pp["columns"], np.array(pp["medians"])
        pre.combat_ = ComBat.from_dict(pp["combat"]) if pp["combat"] else None
        pre.mean_, pre.scale_ = np.array(pp["mean"]), np.array(pp["scale"])
        pre.selected_ = np.array(pp["selected"], dtype=int)
    if card["kind"] == "rsf":
        model = ForestSurvival(card["_forest"])
    else:
        model = LinearSurvival(np.array(list(card["coefficients"].values())),
                               np.array(card["baseline"]["times"]),
                               np.array(card["baseline"]["cumhaz"]))
    names = card.get("predictors") or list(card.get("coefficients", {}))
    return FittedArm(card["arm"], spec, enc, pre, model, names, card["penalty"],
                     card["train_risk_median"])


def apply_card(card: dict, table: pd.DataFrame, id_col: str = "SUBJECT ID",
               horizons: Sequence[float] | None = None) -> pd.DataFrame:
    """Risk score, risk group (the training median's cut) and survival at the horizons for every
    row of ``table`` (no outcome needed).

    Raises
    ------
    ValueError
        A feature, clinical or site column the card needs is missing from ``table``.
    """
    fitted = _fitted_from_card(card)
    need = list(card["input_features"]) + list(card["clinical_columns"])
    combat = (card["preprocessing"] or {}).get("combat")
    site_col = card["site_column"] if combat else None
    need += ([site_col] if site_col else []) + (list(card["combat_covariates"]) if combat else [])
    missing = [c for c in dict.fromkeys(need) if c not in table.columns]
    if missing:
        raise ValueError(f"the model card needs column(s) absent from the table: "
                         f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    d = _rows(table.reset_index(drop=True), card, site_col, combat, id_col)
    hs = list(horizons or card["horizons"])
    risk = fitted.risk(d)
    out = pd.DataFrame({"id": d.ids, "risk": risk,
                        "group": np.where(risk > fitted.train_risk_median, "high", "low")})
    S = fitted.survival(d, hs)
    for k, h in enumerate(hs):
        out[f"S_{h:g}"] = S[:, k]
    return out


def score_applied(card: dict, table: pd.DataFrame, predictions: pd.DataFrame,
                  id_col: str = "SUBJECT ID") -> dict | None:
    """External validation of an applied card: Harrell's C, Uno's C and AUC at the horizons on
    the new cohort, when ``table`` has the card's outcome columns (else None).

    The training subjects are not in the card, so the IPC weights of Uno's C and the AUC use the
    new cohort's own censoring distribution (said in the result's ``weights``).
    """
    from gliocore.models.metrics import harrell_c, time_auc, uno_c
    tcol, ecol = card["outcome"]["time"], card["outcome"]["event"]
    if tcol not in table or ecol not in table or id_col not in table:
        return None
    outcome = table[[id_col, tcol, ecol]].astype({id_col: str}).rename(
        columns={id_col: "id", tcol: "time", ecol: "event"})
    m = predictions.merge(outcome, on="id")
    m["time"], m["event"] = pd.to_numeric(m["time"], errors="coerce"), pd.to_numeric(
        m["event"], errors="coerce")
    m = m.dropna(subset=["time", "event"])
    m = m[m["time"] > 0]
    if len(m) < 5 or m["event"].sum() < 2:
        return None
    t, e, r = m["time"].to_numpy(float), m["event"].to_numpy(float) > 0, m["risk"].to_numpy(float)
    hs = np.asarray(card["horizons"], dtype=float)
    out = {"n": len(m), "events": int(e.sum()), "harrell": harrell_c(t, e, r),
           "uno": uno_c(t, e, t, e, r, float(min(hs.max(), t.max()))),
           "weights": "censoring distribution of the new cohort"}
    out.update({f"auc_{h:g}": a for h, a in zip(hs, time_auc(t, e, t, e, r, hs))})
    return out


def _rows(t: pd.DataFrame, card: dict, site_col, combat, id_col) -> SurvivalData:
    """The table as a :class:`SurvivalData` without an outcome (placeholders)."""
    X = t[card["input_features"]].apply(pd.to_numeric, errors="coerce").astype(float)
    cov = (t[card["combat_covariates"]] if combat else t.iloc[:, :0]).copy()
    for c in cov.columns:  # ComBat needs complete covariates (as in prepare())
        num = pd.api.types.is_numeric_dtype(cov[c])
        cov[c] = cov[c].fillna(cov[c].median() if num else cov[c].mode().iloc[0])
    return SurvivalData(t[id_col].astype(str).to_numpy() if id_col in t else
                        np.arange(len(t)).astype(str), np.ones(len(t)), np.ones(len(t), bool),
                        X.reset_index(drop=True), t[card["clinical_columns"]].reset_index(drop=True),
                        t[site_col].astype(str).to_numpy() if site_col else None,
                        cov.reset_index(drop=True))


def _specification(card: dict, n_nonzero: int) -> str:
    if card["kind"] != "rsf":
        return f"{n_nonzero} non-zero coefficients (below)"
    forest = card.get("forest") or {}
    saved = (f"saved as `{forest['file']}` (SHA-256 `{forest['sha256'][:16]}…`)" if forest
             else "not saved")
    return (f"random survival forest of {card['spec']['n_trees']} trees over "
            f"{len(card.get('predictors', []))} predictors, {saved}")


def card_markdown(card: dict) -> str:
    """One-page summary following the TRIPOD items that apply to a development + internal
    validation study (Collins et al., BMJ 2015)."""
    coefs = card.get("coefficients", {})
    nonzero = {k: v for k, v in coefs.items() if v != 0}
    top = sorted(nonzero.items(), key=lambda kv: -abs(kv[1]))[:20]
    perf = pd.DataFrame(card["cv_summary"])
    lines = [f"# Survival model card: {card['arm']} ({card['kind']})", "",
             f"Created {card['created']} by GlioScope; format `{card['format']}`; training data "
             f"hash `{card['data_hash']}`.", "",
             "| TRIPOD item | |", "|---|---|",
             f"| 4a/5a Source of data | cohort `{card['cohort'] or 'unnamed'}`; sites: "
             f"{', '.join(card['sites']) or 'one'} |",
             f"| 13a Participants | {card['n_subjects']} subjects, {card['n_events']} events, median "
             f"observed time {card['follow_up_median']:.1f} months |",
             f"| 6a Outcome | `{card['outcome']['time']}` (months), event `{card['outcome']['event']}` |",
             f"| 7a Predictors | clinical: {', '.join(card['clinical_columns']) or 'none'}; features: "
             f"{len(card['input_features'])} of family `{card['feature_family']}` |",
             "| 9 Missing data | features: training median, per fold; clinical: training median / "
             "own level |",
             f"| 10a Handling of predictors | ComBat over `{card['site_column']}` fitted on training "
             f"subjects only (covariates kept: {', '.join(card['combat_covariates']) or 'none'}); "
             "standardised with training mean and SD |" if card["site_column"] else
             "| 10a Handling of predictors | standardised with training mean and SD; no harmonisation |",
             f"| 10b Model | {card['kind']}; penalty / leaf size chosen by inner CV: "
             f"{card['penalty']} |",
             f"| 10b Internal validation | {card['cv_scheme']} |",
             f"| 15a Model specification | {_specification(card, len(nonzero))}; risk "
             f"groups cut at the training median risk {card['train_risk_median']:.4f} |",
             "| 18 Limitations | internal validation only unless an external test is reported; "
             "a synthetic or single-centre cohort does not establish transportability |", ""]
    if not perf.empty:
        lines += ["## Cross-validated performance (held-out folds; interval: 2.5–97.5 % over folds)",
                  "", "| arm | metric | mean | interval |", "|---|---|---|---|"]
        lines += [f"| {r['arm']} | {r['metric']} | {r['mean']:.3f} | {r['lo']:.3f}–{r['hi']:.3f} |"
                  for r in perf.to_dict("records")]
        lines.append("")
    if top:
        lines += ["## Coefficients (largest 20 by size, standardised predictors)", "",
                  "| predictor | coefficient |", "|---|---|"]
        lines += [f"| `{k}` | {v:+.4f} |" for k, v in top]
        lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()))
    return "\n".join(lines) + "\n"
