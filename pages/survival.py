"""Survival: the seed's plots, Kaplan–Meier by a chosen grouping and a Cox model."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from gliocore.analysis import plots
from gliocore.errors import CohortError
from pages._columns import EVENT, ID, IDH, LONGITUDINAL_COLUMNS, OUTCOME_COLUMNS, SURVIVAL
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("Survival", ctx)
if not ui.require_cohort(ctx):
    st.stop()
ui.event_notice(ctx)

def event_label(time_col: str) -> str:
    """An event of the endpoint: a death (overall survival), a progression or death (PFS)."""
    return "died" if time_col == SURVIVAL else "progressed or died"


data = ui.outcome_analysis_rows(ctx, "survival_outcome_filters", "the Survival page").copy()
endpoint, time_col, event_col, event_word = ui.endpoint_picker(ctx, "survival_endpoint")
threshold = ctx.settings.short_survival_months
data = data[data[time_col].notna()]
if data.empty:
    st.warning(f"No filtered subject has a `{time_col}` value; check the clinical table.")
    st.stop()
data["IDH"] = data[IDH].fillna("unknown") if IDH in data else "unknown"
data["status"] = np.where(data[event_col] == 1, event_label(time_col), "censored")
n_events = int((data[event_col] == 1).sum())
st.caption(f"{endpoint}: {len(data)} subjects with a time, {n_events} {event_word} observed, "
           f"{len(data) - n_events} censored"
           + (" (alive at last follow-up)." if time_col == SURVIVAL else
              " (no progression and no death counted within the follow-up; why, per subject: "
              "`pfs_reason` on the Progression page)."))


@st.cache_data(show_spinner=False, max_entries=16)
def _seed_figures(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
                  time_col: str, event_col: str, threshold: float, table: pd.DataFrame):
    """The seed tab's figures, cached by store stamp, results, subject set and endpoint (a page
    change or a rerun never rebuilds them; the table is hashed by content too)."""
    from gliocore.analysis.groups import make_groups
    data = table
    event = event_label(time_col)
    ordered = data.sort_values(time_col).reset_index(drop=True)
    if len(ordered) > plots.SURVIVAL_BARS_MAX:  # bars and labels unreadable: a dot per subject
        bars = plots.survival_rank_figure(ordered[time_col], ordered["IDH"],
                                          ordered["status"] != "censored", ordered[ID],
                                          threshold=threshold, colours=COLOURS)
    else:
        bars = px.bar(ordered, x=ID, y=time_col, color="IDH", pattern_shape="status",
                      pattern_shape_map={event: "", "censored": "/"},
                      color_discrete_map=COLOURS,
                      hover_data=["age", "sex"] if {"age", "sex"} <= set(ordered.columns) else None,
                      title="Survival by subject (sorted); hatched = censored")
        bars.add_hline(y=threshold, line_dash="dash", line_color="grey",
                       annotation_text=f"short-survival threshold ({threshold:g} months)",
                       annotation_position="top left",
                       annotation_bgcolor="rgba(255,255,255,0.8)")
        bars.update_xaxes(categoryorder="array", categoryarray=ordered[ID].tolist(),
                          showticklabels=len(ordered) <= 40)
        bars.update_layout(height=380)
    processed = data[data["tumor_volume"].notna()] if "tumor_volume" in data else data.iloc[0:0]
    if processed.empty:
        return bars, None, None, None
    scatter = px.scatter(processed, x="tumor_volume", y=time_col, color="IDH",
                         symbol="status", symbol_map={event: "circle", "censored": "circle-open"},
                         color_discrete_map=COLOURS, hover_data=[ID],
                         title="Tumour volume vs survival",
                         labels={"tumor_volume": "tumour volume (mm³)"})
    scatter.update_traces(marker=dict(size=10 if len(processed) <= 300 else 5))
    g = make_groups(processed, time_col, "short_long", threshold=threshold, event_col=event_col)
    grouped = processed.assign(group=g.labels.astype(object)).dropna(subset=["group"])
    box = None
    if "Volume_label1" in grouped:
        box = px.box(grouped, x="group", y="Volume_label1", color="IDH",
                     points="all" if len(grouped) <= 300 else "outliers",
                     color_discrete_map=COLOURS, hover_data=[ID],
                     title="Contrast-enhancing volume by survival group",
                     labels={"Volume_label1": "Volume_label1 (mm³)", "group": ""})
    return bars, scatter, box, g.rule


COLOURS = {"mutant": "#1f77b4", "wildtype": "#d62728", "unknown": "#7f7f7f"}
tab_seed, tab_km, tab_cox = st.tabs(["Seed plots", "Kaplan–Meier", "Cox model"])
data_key = ui.ids_key(data[ID].astype(str).tolist())

# -- the seed's plots ------------------------------------------------------------------------------
with tab_seed:
    bars, scatter, box, rule = _seed_figures(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                             data_key, time_col, event_col, float(threshold),
                                             data)
    st.plotly_chart(bars, key="seed_bars")
    if scatter is None:
        ui.require_features(ctx, "the volume plots")
    else:
        a, b = st.columns(2)
        a.plotly_chart(scatter, key="seed_scatter")
        if box is not None:
            b.plotly_chart(box, key="seed_box")
        st.caption(rule + ". Open circles = censored.")


# -- Kaplan–Meier ---------------------------------------------------------------------------------
def _run_quiet(fn, *args, **kwargs):
    """Call a gliocore analysis; its warnings are returned as text, not printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in caught]


@st.cache_data(show_spinner="Testing every split of the family…", max_entries=16)
def _split_family(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
                  time_col: str, event_col: str, kind: str, variables: tuple[str, ...],
                  frame: pd.DataFrame) -> pd.DataFrame:
    """Log-rank p and BH q of every split offered; cached by cohort, store stamp, results
    configuration, subject set, endpoint, split kind and the variables (the frame follows)."""
    from gliocore.analysis.screens import screen_splits
    return screen_splits(frame, time_col, event_col, list(variables), kind=kind)


@st.cache_data(show_spinner=False, max_entries=32)
def _km(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str, grouping: str,
        variable: str | None, time_col: str, event_col: str, threshold: float, show_ci: bool,
        table: pd.DataFrame):
    """Kaplan–Meier and its figure, cached by store stamp, results, subject set, endpoint and
    grouping, and the table itself (hashed by content)."""
    from gliocore.analysis.groups import make_groups
    from gliocore.analysis.kaplan_meier import kaplan_meier
    frame = table.copy()
    if grouping == "IDH status":
        grp = make_groups(frame, IDH, "categorical")
    elif grouping == "Sex":
        grp = make_groups(frame, "sex", "categorical")
    elif grouping.startswith("Short"):
        grp = make_groups(frame, time_col, "short_long", threshold=threshold, event_col=event_col)
    elif variable is not None:
        grp = make_groups(frame, variable, "median" if grouping.startswith("Median") else "tertile")
    else:
        grp = None
    km, notes = _run_quiet(kaplan_meier, frame, time_col, event_col, grp)
    fig = plots.km_figure(km, show_ci=show_ci, time_label="months")
    fig.update_layout(height=560)
    return km, notes, grp.rule if grp is not None else "whole cohort", grp, fig


with tab_km:
    features = [c for c in ctx.feature_columns() if data[c].notna().sum() >= 3]
    numeric_clin = [c for c in ctx.clinical_columns()
                    if pd.api.types.is_numeric_dtype(data[c])
                    and c not in (*OUTCOME_COLUMNS, *LONGITUDINAL_COLUMNS)]
    choices = ["None (whole cohort)", "IDH status", "Sex", f"Short/long (≤ {threshold:g} months)",
               "Median split of a variable", "Tertile split of a variable"]
    c1, c2, c3 = st.columns([3, 3, 1])
    grouping = c1.selectbox("Group by", choices, index=1, key="km_grouping")
    variable = None
    if grouping.endswith("of a variable"):
        options = features + numeric_clin
        if not options:
            st.warning("No numeric variable to split; process the cohort to get features.")
            st.stop()
        variable = c2.selectbox("Variable", options,
                                index=options.index("tumor_volume") if "tumor_volume" in options else 0,
                                key="km_variable")
        ui.empty_features_note(ctx, c2)
    show_ci = c3.toggle("95% CI", value=True, key="km_ci")
    try:
        km, notes, rule, group_col, fig = _km(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                              data_key, grouping, variable, time_col, event_col,
                                              float(threshold), bool(show_ci), data)
    except CohortError as exc:
        st.warning(f"Kaplan–Meier not possible with this grouping: {exc}")
    else:
        lr = km.logrank
        family, title = None, None
        if variable is not None and lr is not None:  # one split out of a family of splits
            kind = "median" if grouping.startswith("Median") else "tertile"
            family = _split_family(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                   data_key, time_col, event_col, kind, tuple(options), data)
            tested = family[family["p"].notna()]
            q = family.loc[variable, "q"] if variable in family.index else float("nan")
            title = (f"Kaplan–Meier — exploratory {kind} split: log-rank p = {lr.p_value:.3g} "
                     f"(raw), BH q = {q:.3g} over {len(tested)} splits")
        if title:  # the cached figure is this run's copy
            fig.update_layout(title=title)
        st.plotly_chart(fig, key="km_fig")
        st.caption(f"Grouping: {rule}. Ticks = censored subjects. The table under the curves is the "
                   "number still at risk at each time.")
        m1, m2 = st.columns([3, 2])
        med = km.medians.reset_index()[["group", "n", "events", "median_text"]]
        m1.dataframe(med.rename(columns={"median_text": "median survival, months (95% CI)"}),
                     hide_index=True, key="km_medians")
        if km.no_test_reason:
            m2.info("**Descriptive only — no log-rank test.** " + km.no_test_reason[0].upper()
                    + km.no_test_reason[1:] + ".", icon=":material/info:")
        elif lr is not None:
            test = "log-rank" if lr.dof == 1 else f"multivariate log-rank ({len(lr.groups)} groups)"
            if variable is not None:
                test += " (raw)"
            m2.metric(f"{test} p", f"{lr.p_value:.3g}", help=f"χ² = {lr.statistic:.2f}, df = {lr.dof}")
        elif group_col is not None:
            m2.info("No log-rank test (see notes).")
        if family is not None:
            m2.metric(f"BH q over {len(tested)} {kind} splits", f"{q:.3g}",
                      help="Benjamini–Hochberg false-discovery rate over every variable this "
                           f"view offers for a {kind} split.")
            m2.caption(f"Smallest raw p in the family: {tested['p'].min():.3g} "
                       f"({tested['p'].idxmin()}).")
            st.info(f"**Exploratory.** This view offers {len(options)} variables for a {kind} "
                    f"split; with {len(tested)} log-rank tests some splits have p < 0.05 by chance "
                    "alone, so read the **q-value** (Benjamini–Hochberg over all of them) beside "
                    "the raw p. The cut-points (sample median or tertiles) are chosen from the "
                    "same data, so even q is optimistic: confirm a split in another cohort, or "
                    "model the variable as continuous in the Cox tab.", icon=":material/science:")
            with st.expander(f"All {len(family)} {kind} splits of this family (p and q)"):
                st.dataframe(family.reset_index(), hide_index=True, key="km_split_family",
                             column_config={
                                 "statistic": st.column_config.NumberColumn("χ²", format="%.2f"),
                                 "p": st.column_config.NumberColumn("raw p", format="%.3g"),
                                 "q": st.column_config.NumberColumn("q (BH FDR)", format="%.3g")})
        for note in notes:
            st.warning(note)
        with st.expander("Number at risk"):
            st.dataframe(km.at_risk, key="km_at_risk")

# -- Cox PH ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Fitting the Cox model…", max_entries=16)
def _cox(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
         covariates: tuple[str, ...], ties: str, standardize: bool, penalizer: float,
         frame: pd.DataFrame, time_col: str = SURVIVAL, event_col: str = EVENT):
    """Cached by cohort, store stamp, results configuration, subject set, endpoint and model
    options (the frame follows)."""
    from gliocore.analysis.cox import cox_ph
    return _run_quiet(cox_ph, frame, time_col, event_col, list(covariates), ties=ties,
                      standardize=standardize, penalizer=penalizer)


with tab_cox:
    candidates = [c for c in [IDH, "age", "sex", *ctx.feature_columns()] if c in data.columns
                  and data[c].notna().sum() >= 3]
    default = [c for c in (IDH, "age", "tumor_volume") if c in candidates]
    c1, c2, c3, c4 = st.columns([5, 2, 2, 2])
    covariates = c1.multiselect("Covariates", candidates, default=default, key="cox_covariates")
    ui.empty_features_note(ctx, c1)
    ties = c2.selectbox("Ties", ["efron", "breslow"], key="cox_ties")
    standardize = c3.toggle("HR per SD", value=True, key="cox_std",
                            help="Rescale numeric covariates to unit SD, so HRs are comparable.")
    penalizer = c4.number_input("Ridge penalty", 0.0, 10.0, 0.0, 0.05, key="cox_pen",
                                help="Small values (0.01–0.1) stabilise fits with few events.")
    if not covariates:
        st.info("Pick at least one covariate.")
    else:
        frame = data.copy()
        try:
            cox, notes = _cox(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                              ui.ids_key(frame[ID].tolist()), tuple(covariates), ties,
                              standardize, float(penalizer), frame, time_col, event_col)
        except (CohortError, ValueError, np.linalg.LinAlgError) as exc:
            st.warning(f"The Cox model could not be fitted: {exc}")
        else:
            k = st.columns(4)
            k[0].metric("Subjects", cox.n, help=f"{cox.n_dropped} dropped for missing values")
            k[1].metric("Deaths" if time_col == SURVIVAL else "Events", cox.n_events)
            k[2].metric("Concordance (C)", f"{cox.concordance:.3f}",
                        help="Harrell's C on the fitting data: optimistic, not cross-validated.")
            k[3].metric("Likelihood-ratio p", f"{cox.lr_test['p']:.3g}")
            st.plotly_chart(plots.forest_figure(cox), key="cox_forest")
            summ = cox.summary.reset_index()[["term", "HR", "HR_lower", "HR_upper", "p"]]
            summ["term"] = [f"{t} (per SD)" if t in cox.standardized else t for t in summ["term"]]
            st.dataframe(summ, hide_index=True, key="cox_table", column_config={
                "HR": st.column_config.NumberColumn("hazard ratio", format="%.3f"),
                "HR_lower": st.column_config.NumberColumn("95% CI low", format="%.3f"),
                "HR_upper": st.column_config.NumberColumn("95% CI high", format="%.3f"),
                "p": st.column_config.NumberColumn("p", format="%.3g")})
            verdict_ok = "violated" not in cox.ph_verdict
            (st.success if verdict_ok else st.warning)(
                f"Proportional-hazards check (scaled Schoenfeld residuals): {cox.ph_verdict}.")
            with st.expander("Proportional-hazards test per term"):
                st.dataframe(cox.ph_test.reset_index(), hide_index=True, key="cox_ph")
            for note in dict.fromkeys([*cox.notes, *notes]):
                st.caption("Note: " + note)
