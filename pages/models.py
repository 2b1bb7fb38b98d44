"""Models: harmonised radiomic signatures (elastic-net Cox / random survival forest) validated by
nested cross-validation, beside a clinical model; external validation and model cards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from gliocore.cohort.scans import SCANS_FILE
from gliocore.errors import CohortError
from pages import _context as page_context
from pages import _display as ui

ARMS = {"clinical": "Clinical", "signature": "Signature", "combined": "Clinical + signature"}
METRICS = {"harrell": "Harrell's C", "uno": "Uno's C", "ibs": "Integrated Brier",
           "ibs_km": "Integrated Brier, Kaplan–Meier"}

ctx = page_context.context()
ui.page_header("Models", ctx)
if not ui.require_cohort(ctx) or not ui.require_features(ctx, "a survival model"):
    st.stop()
ui.event_notice(ctx)

from gliocore.models import plots  # noqa: E402
from gliocore.models.card import card_json, card_markdown, forest_file, make_card  # noqa: E402
from gliocore.models.combat import ComBat, site_effect_test  # noqa: E402
from gliocore.models.data import (FAMILIES, SITE_CANDIDATES, family_columns,  # noqa: E402
                                  find_site_column, prepare)
from gliocore.models.estimators import ModelSpec, Preprocessor, fit_arm  # noqa: E402
from gliocore.models.synthetic import demo_table  # noqa: E402
from gliocore.models.split import date_columns, date_split, first_scan_dates, table_dates  # noqa: E402
from gliocore.models.validate import (CVConfig, StopRequested, cross_validate,  # noqa: E402
                                      external_validation, permutation_gain, summarise)

@st.cache_data(show_spinner=False)
def _synthetic(variant: str):
    return demo_table(variant)


SOURCES = {"cohort": "this cohort", "signal": "synthetic table: a modest radiomic signal "
           "(262 × 400)", "noise": "synthetic table: noise-only features (262 × 400)"}
source = st.radio("Data", list(SOURCES), horizontal=True, format_func=SOURCES.get, key="mod_source",
                  help="The synthetic tables have three sites with scanner effects and survival "
                       "driven by age and IDH; in the first, 5 of the 400 features add a modest "
                       "signal (log hazard ratio 0.5 per SD), in the second none does. The image "
                       "demo (30 subjects) is too small for a modest signal to show beyond age "
                       "and IDH under nested CV.")
if source == "cohort":
    data = ui.processed(ctx, ui.outcome_analysis_rows(ctx, "mod_outcome_filters",
                                                             "the Models page"))
    endpoint, time_col, event_col, _word = ui.endpoint_picker(ctx, "mod_endpoint")
    table_columns = list(ctx.table.columns)
    clin_all = ctx.clinical_columns()
else:
    data = _synthetic(source)
    time_col, event_col = "Survival(months)", "event"
    table_columns = clin_all = list(data.columns[:8])
a, b, c = st.columns(3)
family = a.selectbox("Feature family", list(FAMILIES), index=1, format_func=FAMILIES.get,
                     key="mod_family")
clin_opts = [col for col in clin_all if col not in (time_col, event_col)
             and col not in SITE_CANDIDATES and col != "SUBJECT ID"]
clinical = b.multiselect("Clinical model columns", clin_opts, key=f"mod_clinical_{source != 'cohort'}",
                         default=[x for x in ("age", "IDH-status", "sex") if x in clin_opts])
sites = [x for x in table_columns if x in SITE_CANDIDATES or x.lower().startswith("site")]
auto = find_site_column(data)
site_col = c.selectbox("Site / scanner column (ComBat)", ["none", *sites],
                       index=(["none", *sites].index(auto) if auto in sites else 0), key="mod_site")
site_col = None if site_col == "none" else site_col
o = st.columns(6)
kind = o[0].selectbox("Signature model", ["coxnet", "rsf"], key="mod_kind",
                      format_func={"coxnet": "Elastic-net Cox", "rsf": "Random survival forest"}.get)
l1 = o[1].number_input("L1 ratio", 0.05, 1.0, 0.5, 0.05, key="mod_l1",
                       help="1 = lasso, towards 0 = ridge; the penalty is chosen by inner CV")
outer = o[2].number_input("Outer folds", 2, 10, 5, key="mod_outer")
inner = o[3].number_input("Inner folds", 2, 10, 5, key="mod_inner")
repeats = o[4].number_input("Repeats", 1, 10, 1, key="mod_repeats")
n_perm = o[5].number_input("Permutations", 0, 200, 0, 5, key="mod_perm",
                           help="Permutation test of the gain over the clinical model; each one "
                                "re-runs the combined model's nested CV.")
h_text = st.text_input("Horizons (months)", "12, 24", key="mod_horizons")
try:
    horizons = tuple(sorted({float(x) for x in h_text.replace(";", ",").split(",") if x.strip()}))
except ValueError:
    horizons = ()
features = family_columns(data, family)
covars = [x for x in clinical if x in ("age", "sex", "IDH-status")] if site_col else []
problems = [] if horizons else ["Horizons: give months separated by commas, e.g. 12, 24."]
if not features:
    problems.append(f"No column of the family '{family}' has values; pick another family.")
if not clinical:
    problems.append("Pick at least one clinical column (the clinical model and the comparison).")
try:
    d = prepare(data, time_col, event_col, features, clinical, site_col, covars) if not problems else None
except CohortError as exc:
    problems.append(str(exc))
    d = None
for p in problems:
    st.info(p)
if d is None:
    st.stop()
st.caption(f"{len(d)} subjects, {int(d.event.sum())} events, {d.X.shape[1]} features; "
           f"{d.n_dropped} left out for a missing outcome" + (f" or site; sites: "
           f"{', '.join(f'{s} ({n})' for s, n in zip(*np.unique(d.site, return_counts=True)))}"
           if site_col else "."))
if len(d) < 100:
    st.caption(f"With {len(d)} subjects the held-out C varies by about ±0.1 between folds: only a "
               "strong signal shows a gain over the clinical model. The synthetic tables (Data, "
               "above; 262 subjects) show a modest signal found and a noise-only one not.")

# -- harmonisation: before / after (fitted on all shown subjects, for this view only) ------------
if site_col:
    with st.expander("Harmonisation: site effects before and after ComBat", expanded=False):
        pre = Preprocessor(harmonise=False)
        Xb = pre.fit_transform(d)
        try:
            Xa = ComBat(tuple(x for x in covars if x != "age"), ("age",) if "age" in covars else ()
                        ).fit(Xb, d.site, d.covars).transform(Xb, d.site, d.covars)
        except ValueError as exc:
            st.warning(f"ComBat: {exc}")
            Xa = Xb
        kb, ka = site_effect_test(Xb, d.site)["p"], site_effect_test(Xa, d.site)["p"]
        st.markdown(f"Features with a site effect (Kruskal–Wallis p < 0.05): **{(kb < .05).mean():.0%}"
                    f"** before, **{(ka < .05).mean():.0%}** after ComBat (covariates kept: "
                    f"{', '.join(covars) or 'none'}). This view fits ComBat on all shown subjects; "
                    "inside the models it is fitted on each training part only.")
        names = pre.feature_names_
        strongest = int(np.argmin(np.nan_to_num(kb.to_numpy(), nan=1.0)))
        feat = st.selectbox("Feature", names, index=strongest, key="mod_hfeat")
        j = names.index(feat)
        h1, h2 = st.columns(2)
        h1.plotly_chart(plots.site_boxes(Xb[:, j], Xa[:, j], d.site, feat), key="mod_box")
        h2.plotly_chart(plots.site_projection(Xb, Xa, d.site), key="mod_pca")


def _labelled(table):
    """A metric × arm table in reading order, with readable metric and arm names."""
    order = ["harrell", "uno", *[m for m in table.index if m.startswith("auc_")], "ibs", "ibs_km"]
    table = table.reindex([m for m in order if m in table.index])
    table = table[[x for x in ARMS if x in table.columns]].rename(columns=ARMS)
    table.index = [METRICS.get(m, m.replace("auc_", "AUC at ") + (" months" if "auc" in m else ""))
                   for m in table.index]
    return table


def _date_sources(data) -> dict:
    """Where subjects' dates can come from: date columns of the table, the cohort's scans table."""
    sources = {f"column {c}": ("column", c) for c in date_columns(data)}
    csv = (ctx.cohort or {}).get("clinical_csv") if source == "cohort" else None
    scans = Path(csv).parent / SCANS_FILE if csv else None
    if scans is not None and scans.is_file():
        sources[f"first scan date ({SCANS_FILE})"] = ("scans", scans)
    return sources


def _external_section(d, data, spec: ModelSpec, cfg: CVConfig) -> None:
    """Train on some sites or on the earlier subjects; test on the rest, with intervals."""
    sources = _date_sources(data)
    ways = (["site"] if d.site is not None else []) + (["date"] if sources else [])
    if not ways:
        st.caption("Needs a site column (train on some sites, test on the others) or a date "
                   "(a date column such as diagnosis_date, or dates in the cohort's scans.csv).")
        return
    way = st.radio("Split by", ways, horizontal=True, key="mod_ext_way",
                   format_func={"site": "site", "date": "date (temporal)"}.get)
    if way == "site":
        chosen = st.multiselect("Train on site(s); test on the others", sorted(set(d.site)),
                                key="mod_ext")
        if not chosen:
            return
        train = np.isin(d.site, chosen)
        parts, what = (train, ~train), f"trained on {', '.join(chosen)}, tested on the other sites"
    else:
        e1, e2 = st.columns(2)
        label = e1.selectbox("Subjects' date", list(sources), key="mod_ext_src")
        kind, where = sources[label]
        try:
            dates = (first_scan_dates(where) if kind == "scans" else table_dates(data, where))
        except CohortError as exc:
            st.warning(str(exc))
            return
        known = dates.reindex(list(d.ids)).dropna()
        if known.empty:
            st.warning("None of the analysed subjects has a readable date there.")
            return
        cut = e2.date_input("Train before (test on and after)", known.median().date(),
                            min_value=known.min().date(), max_value=known.max().date(),
                            key="mod_ext_cut")
        try:
            dsplit = date_split(d.ids, dates, cut)
        except ValueError as exc:
            st.warning(str(exc))
            return
        parts, what = (dsplit.train, dsplit.test), dsplit.describe(str(dates.name))
    st.caption(what.capitalize() + ".")
    if st.button("Run external validation", key="mod_ext_run"):
        try:
            ext, _ = external_validation(d, parts[0], spec, cfg, test_mask=parts[1])
        except ValueError as exc:
            st.warning(str(exc))
            return
        ext["shown"] = ext.apply(lambda r: f"{r['value']:.3f}" + (
            f" [{r['lo']:.3f}, {r['hi']:.3f}]" if np.isfinite(r["lo"]) else ""), axis=1)
        table = _labelled(ext.pivot(index="metric", columns="arm", values="shown"))
        st.dataframe(table, key="mod_ext_table")
        st.caption("On the test subjects; C indices with a 95 % bootstrap interval over them "
                   "(the model fixed). Compare with the held-out performance above.")


@st.cache_resource(show_spinner=False)
def _results() -> dict:
    """Finished runs keyed by every input (shared by sessions; the progress bar cannot live in
    st.cache_data, which replays elements)."""
    return {}


def _run(key: tuple, d, spec: ModelSpec, cfg: CVConfig, n_perm: int, bar):
    cache = _results()
    if (key, spec, cfg, n_perm) in cache:
        return cache[(key, spec, cfg, n_perm)]

    def progress(i, n, what):
        bar.progress(min(i / max(n, 1), 1.0), text=f"Nested CV: {what}")
    res = cross_validate(d, spec, cfg, progress=progress)
    perm = permutation_gain(d, spec, cfg, n_perm, observed=res, progress=progress) if n_perm else None
    if len(cache) >= 16:
        cache.pop(next(iter(cache)))
    cache[(key, spec, cfg, n_perm)] = (res, perm)
    return res, perm


spec = ModelSpec(kind=kind, l1_ratio=float(l1), inner_splits=int(inner))
cfg = CVConfig(int(outer), int(repeats), horizons, 0)
key = (ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key, ui.ids_key(list(d.ids)), time_col,
       family, tuple(clinical), site_col, d.data_hash())


def _stop() -> None:
    st.session_state.pop("mod_ran", None)
    st.session_state["mod_stopped"] = True


r1, r2, r3 = st.columns([1, 1, 5])
run = r1.button("Run nested CV", type="primary", key="mod_run")
r2.button("Stop", key="mod_stop", on_click=_stop, help="Interrupts a running cross-validation "
          "(nothing partial is kept).")
r3.caption(f"{cfg.describe(spec)}; everything that learns (imputation, ComBat, scaling, the "
           "penalty) is fitted inside each training part"
           + (". A forest takes minutes: Stop interrupts it." if kind == "rsf" else "."))
inputs = (key, spec, cfg, int(n_perm))
if run:
    st.session_state["mod_ran"] = inputs
if st.session_state.get("mod_ran") != inputs:
    if st.session_state.pop("mod_stopped", False):
        st.warning("Stopped. Press **Run nested CV** to start again.")
    st.info("Press **Run nested CV** (results are cached per set of inputs).")
    st.stop()
bar = st.progress(0.0, text="Nested CV…")
try:
    res, perm = _run(key, d, spec, cfg, int(n_perm), bar)
except (StopRequested, ValueError, CohortError) as exc:
    st.warning(f"The cross-validation did not finish: {exc}")
    st.stop()
bar.empty()

summ = summarise(res.folds)
summ["shown"] = summ.apply(lambda r: f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]", axis=1)
table = _labelled(summ.pivot(index="metric", columns="arm", values="shown"))
st.subheader("Held-out performance")
st.dataframe(table, key="mod_summary")
st.caption(f"Mean over the {len(res.folds) // len(res.arms)} outer test folds [2.5th, 97.5th "
           f"percentile over folds]. {res.scheme}. C and AUC: 0.5 = chance, higher is better; "
           "Brier: lower is better, Kaplan–Meier's is the no-information reference.")
for note in res.notes:
    st.warning(note)
gain_text = f"Gain of clinical + signature over clinical (Harrell's C): **{res.gain():+.3f}**"
if perm is not None:
    gain_text += f", permutation p = **{perm[1]:.3g}** ({len(perm[2])} permutations)"
st.markdown(gain_text)

arm = st.radio("Arm for the plots and the model card", list(ARMS), index=2, horizontal=True,
               format_func=ARMS.get, key="mod_arm")
k1, k2 = st.columns(2)
groups = res.risk_groups(arm)
k1.plotly_chart(plots.risk_group_km(groups, f"Risk groups ({ARMS[arm]}), out of fold"),
                key="mod_km")
k1.caption(f"Cut at each training part's median risk; log-rank p = "
           f"{plots.logrank_p(groups['time'], groups['event'], groups['group']):.3g}.")
hz = k2.selectbox("Calibration horizon", horizons, key="mod_hz", format_func=lambda h: f"{h:g} months")
k2.plotly_chart(plots.calibration_figure(res.calibration(arm, hz), hz), key="mod_cal")
k2.caption("Out-of-fold predicted survival in five groups against each group's Kaplan–Meier "
           "estimate, with its 95 % bootstrap interval (200 resamples of the group's subjects); "
           "on the dashed line the model is calibrated.")
if kind == "coxnet" or arm == "clinical":
    st.plotly_chart(plots.coefficient_bars(res.coefficients, arm), key="mod_coef")
    st.caption("Standardised coefficients, mean over the outer folds' models, with the share of "
               "folds whose model kept the predictor (clinical columns are never penalised).")

st.subheader("External validation")
_external_section(d, data, spec, cfg)

st.subheader("Model card")
if st.button("Fit on all subjects and prepare the card", key="mod_card"):
    fitted = fit_arm(d, arm, spec)
    card = make_card(fitted, d, time_col=time_col, event_col=event_col, site_col=site_col,
                     feature_family=family, cv_scheme=res.scheme, cv_summary=summ.drop(
                         columns="shown"), horizons=horizons,
                     cohort=str((ctx.cohort or {}).get("name") or ctx.cohort_id)
                     if source == "cohort" else f"synthetic-{source}")
    forest = forest_file(card, "model_card.forest.joblib") if "_forest" in card else None
    c1, c2, c3 = st.columns(3)
    c1.download_button("Model card (JSON, for `gliocore model apply`)", card_json(card),
                       "model_card.json", key="mod_dl_json")
    c2.download_button("Summary (Markdown, TRIPOD items)", card_markdown(card), "model_card.md",
                       key="mod_dl_md")
    if forest is not None:
        c3.download_button("Forest (joblib; keep beside the card)", forest,
                           "model_card.forest.joblib", key="mod_dl_forest")
        st.caption("`model apply` reads the forest from beside the card and refuses it if its "
                   "SHA-256 is not the card's. Keep both names as downloaded.")
