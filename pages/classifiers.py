"""Classifiers: short vs long survival from features, with honest cross-validation only."""
from __future__ import annotations

import warnings

import pandas as pd
import plotly.express as px
import streamlit as st

from gliocore.analysis import plots
from gliocore.errors import CohortError
from pages._columns import ID, SURVIVAL
from pages import _context as page_context
from pages import _display as ui

MODELS = {"logreg": "Logistic regression", "random_forest": "Random forest", "svm": "SVM (RBF)"}

ctx = page_context.context()
ui.page_header("Classifiers", ctx)
if not ui.require_cohort(ctx) or not ui.require_features(ctx, "a classifier"):
    st.stop()
ui.event_notice(ctx)

from gliocore.analysis.classify import (  # noqa: E402
    IMPUTATION_METHOD, SMALL_MINORITY, SMALL_N, evaluate_classifier, make_short_long_labels,
    missing_values,
)

data = ui.processed(ctx, ui.outcome_analysis_rows(ctx, "clf_outcome_filters",
                                                         "the Classifiers page"))
endpoint, time_col, event_col, _word = ui.endpoint_picker(ctx, "clf_endpoint")
c1, c2 = st.columns([1, 3])
threshold = c1.number_input("Short survival: death at or before (months)"
                            if time_col == SURVIVAL else
                            "Early progression: progression or death at or before (months)",
                            0.5, 120.0, float(ctx.settings.short_survival_months), 0.5,
                            key="clf_threshold")
try:
    labels = make_short_long_labels(data, time_col, event_col, threshold)
except CohortError as exc:
    st.warning(f"Cannot label subjects: {exc}")
    st.stop()
y = labels.y
n_short, n_long = int((y == 1).sum()), int((y == 0).sum())
c2.markdown(f"**{len(y)} subjects labelled**: {n_short} short, {n_long} long. "
            f"**{labels.n_excluded} excluded** — censored at or before {threshold:g} months (alive "
            "when last seen, so their class is unknown) or missing survival data.")
st.caption("Rule: " + labels.rule)

features = [c for c in ctx.feature_columns() if data.loc[y.index, c].notna().any()]
extra = [c for c in ("age",) if c in data.columns]
default = [c for c in ("Volume_label1", "Volume_label2", "tumor_volume",
                       "flair_MeanIntensity_label2", "t1c_MeanIntensity_label1") if c in features]
f1, f2 = st.columns([3, 2])
chosen = f1.multiselect("Features", features + extra, default=default, key="clf_features")
ui.empty_features_note(ctx, f1)
models = f2.multiselect("Models", list(MODELS), default=["logreg", "svm"],
                        format_func=MODELS.get, key="clf_models")
o1, o2, o3, o4 = st.columns(4)
n_splits = o1.number_input("Folds (k)", 2, 10, 5, key="clf_folds",
                           help="Stratified k-fold, repeated. When the smaller class has fewer "
                                "than k subjects, k is reduced to its size (at least 2) so every "
                                "test fold holds both classes; the CV column says so.")
n_repeats = o2.number_input("Repeats", 1, 20, 3, key="clf_repeats")
n_perm = o3.number_input("Permutations", 0, 1000, 50, 10, key="clf_perm",
                         help="Label shuffles for the permutation test; 0 skips it. Each one "
                              "repeats the whole cross-validation, so random forests are slow.")
k_best = o4.number_input("Keep k best features (0 = all)", 0, 50, 0, key="clf_k",
                         help="ANOVA-F selection, fitted inside each training fold.")

# -- missing values: counted and shown before anything is fitted, never imputed silently -------
X = data.loc[y.index, list(chosen)].apply(pd.to_numeric, errors="coerce")
if chosen:
    miss = missing_values(X)
    n_imputed = int(miss["n_imputed"].sum())
    if n_imputed:
        hit = miss[miss["n_imputed"] > 0]
        st.warning(f"**{n_imputed} missing value(s) will be imputed** in {len(hit)} of the "
                   f"{len(chosen)} chosen feature(s) ({', '.join(hit.index)}), with the "
                   f"{IMPUTATION_METHOD}. Imputed subjects get a typical value, which can hide "
                   "what makes them different; check why the values are missing (table below).",
                   icon=":material/warning:")
    else:
        st.caption(f"No missing value in the {len(chosen)} chosen feature(s) among the "
                   f"{len(y)} labelled subjects: nothing is imputed.")
    with st.expander(f"Missing values per chosen feature ({n_imputed} imputed)",
                     expanded=bool(n_imputed)):
        st.dataframe(miss.assign(share=100 * miss["share"]).reset_index(), hide_index=True,
                     key="clf_imputed", column_config={
                         "n": st.column_config.NumberColumn("subjects"),
                         "n_imputed": st.column_config.NumberColumn("values imputed"),
                         "share": st.column_config.NumberColumn("% imputed", format="%.0f%%")})
        st.caption(f"Imputation: {IMPUTATION_METHOD}.")

problems = []
if min(n_short, n_long) < 2:
    problems.append(f"Only {n_short} short and {n_long} long subjects: both classes need at least "
                    "two members. Change the threshold or widen the filters.")
if not chosen:
    problems.append("Pick at least one feature.")
if not models:
    problems.append("Pick at least one model.")
small = len(y) < SMALL_N or min(n_short, n_long) < SMALL_MINORITY
if small and not problems:
    st.warning(f"Small sample: {len(y)} subjects, minority class {min(n_short, n_long)}. AUCs from "
               f"fewer than {SMALL_N} subjects (or fewer than {SMALL_MINORITY} in a class) vary a lot "
               "between resamplings; read the spread and the permutation p-value, not the point "
               "estimate.", icon=":material/warning:")
for p in problems:
    st.info(p)


@st.cache_data(show_spinner=False, max_entries=32)
def _evaluate(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
              threshold: float,
              features: tuple[str, ...], model: str, n_splits: int, n_repeats: int, n_perm: int,
              k_best: int, endpoint: tuple[str, str], X: pd.DataFrame, y: pd.Series):
    """Cross-validate one model; cached by every input, the features ``X`` and the labels ``y``
    included (hashed by content: labels made under another endpoint or threshold are another
    entry)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate_classifier(X, y, model=model, n_splits=n_splits, n_repeats=n_repeats,
                                  n_permutations=n_perm, random_state=0,
                                  feature_selection_k=k_best or None,
                                  class_names=("long", "short"), n_jobs=2)
    return res, sorted({str(w.message) for w in caught})


inputs = (ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
          ui.ids_key(list(data.loc[y.index, ID])),
          float(threshold), tuple(chosen), int(n_splits), int(n_repeats), int(n_perm),
          min(int(k_best), len(chosen)), (time_col, event_col))
fits = (int(n_perm) + 1) * int(n_splits) * int(n_repeats) * max(len(models), 1)
run = st.button("Run cross-validation", type="primary", disabled=bool(problems), key="clf_run",
                help=f"About {fits} model fits.")
if "random_forest" in models and fits > 2000:
    st.caption(f"About {fits} model fits: a random forest with many permutations takes minutes; "
               "lower the permutations or repeats for a quick look.")
if run:
    st.session_state["clf_ran"] = inputs
if st.session_state.get("clf_ran") != inputs or problems:
    if not problems:
        st.info("Press **Run cross-validation** (results are cached per set of inputs).")
    st.stop()

results = {}
progress = st.progress(0.0, text="Cross-validating…")
for i, m in enumerate(models):
    progress.progress(i / len(models), text=f"Cross-validating {MODELS[m]}…")
    try:
        results[m] = _evaluate(*inputs[:6], inputs[6], m, *inputs[7:], X, y)
    except (CohortError, ValueError) as exc:
        st.warning(f"{MODELS[m]}: {exc}")
progress.empty()
if not results:
    st.stop()

rows = []
for m, (res, _) in results.items():
    rows.append({"model": MODELS[m], "AUC": res.auc,
                 "AUC SD over folds": res.auc_sd,
                 "permutation p": res.permutation_pvalue, "CV": res.cv_scheme, "AUC method": res.auc_method})
st.subheader("Held-out performance")
st.dataframe(pd.DataFrame(rows), hide_index=True, key="clf_summary", column_config={
    "AUC": st.column_config.NumberColumn(format="%.3f"),
    "AUC SD over folds": st.column_config.NumberColumn(format="%.3f"),
    "permutation p": st.column_config.NumberColumn(format="%.3g")})
st.caption("Every number is from subjects the model did not see in training (training-set accuracy "
           "is never shown). Scaling, imputation and feature selection are fitted inside each fold.")

model_notes = {m: list(dict.fromkeys([*res.warnings, *notes])) for m, (res, notes) in results.items()}
shared = [n for n in next(iter(model_notes.values())) if all(n in v for v in model_notes.values())]
for note in shared:  # said once, not once per model
    st.warning(note)
for m, (res, notes) in results.items():
    st.markdown(f"#### {MODELS[m]}")
    for note in model_notes[m]:
        if note not in shared:
            st.warning(note)
    a, b, c = st.columns([5, 3, 4])
    a.plotly_chart(plots.roc_figure(res, title=f"ROC — {MODELS[m]}"), key=f"roc_{m}")
    b.plotly_chart(plots.confusion_figure(res, title="Confusion matrix"), key=f"cm_{m}")
    b.caption(res.confusion_note.capitalize() + ".")
    imp = res.feature_importance.reset_index().rename(columns={"index": "feature"})
    if "importance" in imp and imp["importance"].notna().any():
        imp = imp.sort_values("importance")
        fig = px.bar(imp, x="importance", y=imp.columns[0], orientation="h",
                     error_x="sd" if "sd" in imp else None, title="Feature importance")
        fig.update_layout(yaxis_title="", height=max(300, 40 * len(imp) + 120))
        c.plotly_chart(fig, key=f"imp_{m}")
        c.caption(res.importance_method)
