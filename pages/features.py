"""Features: the seed's wide table (pick, sort, search, download), distributions, correlations,
and a univariable survival screen with Benjamini–Hochberg q-values."""
from __future__ import annotations

import io

import pandas as pd
import plotly.express as px
import streamlit as st

from gliocore.analysis import export, plots
from pages._columns import EVENT, ID, SURVIVAL
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("Features", ctx)
if not ui.require_cohort(ctx):
    st.stop()

table = ctx.filtered
features = ctx.feature_columns()
clinical = [ID] + ctx.clinical_columns()
if not ui.require_features(ctx, "the feature table"):
    st.subheader("Clinical table")
    st.dataframe(table[[c for c in clinical if c in table.columns]], hide_index=True)
    st.stop()

ui.empty_features_note(ctx)
tab_table, tab_dist, tab_corr, tab_screen = st.tabs(
    ["Table", "Distribution by group", "Correlation", "Survival screen (FDR)"])

# -- the wide table -------------------------------------------------------------------------------
with tab_table:
    st.caption("The seed's table: one row per subject; `label1` = contrast-enhancing, `label2` = "
               "non-enhancing tumour; `tumor_volume` = both, in mm³. An empty label has volume "
               "and diameter 0; its intensity and texture values are missing (nothing to measure), "
               "as are all values of a subject not processed.")
    default_cols = [c for c in clinical if c in table.columns and c != "img_dir"] + \
        [c for c in ("Volume_label1", "Volume_label2", "tumor_volume", "Max3DDiameter_label1",
                     "flair_MeanIntensity_label2") if c in table.columns]
    c1, c2, c3 = st.columns([4, 2, 2])
    cols = c1.multiselect("Columns", list(table.columns), default=default_cols, key="feat_cols")
    sort_by = c2.selectbox("Sort by", ["(table order)", *cols], key="feat_sort")
    descending = c3.toggle("Descending", value=False, key="feat_desc")
    search = st.text_input("Search", placeholder="subject ID or any text value (e.g. mutant)",
                           key="feat_search")
    view = table[cols] if cols else table
    if search.strip():
        text_cols = [c for c in view.columns if view[c].dtype == object]
        hit = pd.Series(False, index=view.index)
        for c in text_cols:
            hit |= view[c].astype(str).str.contains(search.strip(), case=False, regex=False, na=False)
        view = view[hit]
    if sort_by != "(table order)" and sort_by in view.columns:
        view = view.sort_values(sort_by, ascending=not descending, na_position="last")
    fmt = {c: st.column_config.NumberColumn(format="%.4g") for c in view.columns
           if c in features}
    st.dataframe(view, hide_index=True, height=min(38 + 35 * len(view), 460), column_config=fmt)
    st.caption(f"{len(view)} rows × {view.shape[1]} columns shown.")
    d1, d2, _ = st.columns([1, 1, 4])
    # the files are written when a button is pressed, not on every run (a wide table of 1,000+
    # subjects takes a noticeable part of a second to serialise twice)
    def as_parquet(frame: pd.DataFrame = view) -> bytes:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()

    d1.download_button("Download CSV", lambda frame=view: export.csv_text(frame).encode(),
                       "glioscope_features.csv", "text/csv", key="dl_csv")
    d2.download_button("Download Parquet", as_parquet, "glioscope_features.parquet",
                       "application/vnd.apache.parquet", key="dl_parquet")

# -- distribution by group ------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def _distribution(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
                  feature: str, group: str, kind: str, threshold: float, table: pd.DataFrame):
    """The distribution figure, its per-group counts and the grouping rule; cached by store
    stamp, results configuration, subject set and the choices and the table itself (hashed by content: no argument that changes
    the result is left out of the key), so a
    page change or another tab's widget never rebuilds it."""
    data = table.copy()
    rule = None
    if group.startswith("Short"):
        from gliocore.analysis.groups import make_groups
        g = make_groups(data, SURVIVAL, "short_long", threshold=threshold,
                        event_col=EVENT)
        data["group"] = g.labels.astype(object)
        rule = g.rule
    else:
        data["group"] = data[group].astype(object).where(data[group].notna(), "unknown").astype(str)
    data = data.dropna(subset=["group", feature])
    if data.empty:
        return None, None, rule
    hover = [ID, SURVIVAL]
    points = plots.box_points(int(data["group"].value_counts().max()))
    if kind == "Histogram":
        fig = px.histogram(data, x=feature, color="group", barmode="overlay", opacity=0.65,
                           hover_data=hover)
    elif kind == "Violin":
        fig = px.violin(data, x="group", y=feature, color="group", box=True, points=points,
                        hover_data=hover)
    else:
        fig = px.box(data, x="group", y=feature, color="group", points=points, hover_data=hover)
    fig.update_layout(showlegend=kind == "Histogram", height=420,
                      title=f"{feature} by {group} (n = {len(data)})")
    counts = data.groupby("group", observed=True)[feature].describe()[["count", "mean", "50%", "std"]]
    return fig, counts.rename(columns={"50%": "median"}), rule


@st.cache_data(show_spinner=False, max_entries=32)
def _correlation(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
                 features: tuple[str, ...], method: str, table: pd.DataFrame):
    """The correlation heat map (cached as :func:`_distribution`)."""
    corr = table[list(features)].corr(method=method, min_periods=3)
    fig = px.imshow(corr, zmin=-1, zmax=1, color_continuous_scale="RdBu_r", text_auto=".2f",
                    aspect="auto", title=f"{method.capitalize()} correlation (n = {len(table)})")
    fig.update_layout(height=max(380, 60 * len(features)))
    return fig


processed = ui.processed(ctx)
processed_key = ui.ids_key(processed[ID].astype(str).tolist())
with tab_dist:
    c1, c2, c3 = st.columns([3, 2, 2])
    feature = c1.selectbox("Feature", features,
                           index=features.index("tumor_volume") if "tumor_volume" in features else 0,
                           key="dist_feature")
    threshold = ctx.settings.short_survival_months
    group_options = ["IDH-status", f"Short/long survival (≤ {threshold:g} months)", "sex", "event"]
    group_options = [g for g in group_options
                     if g.startswith("Short") or g in processed.columns]
    group = c2.selectbox("Group by", group_options, key="dist_group")
    kind = c3.radio("Plot", ["Box", "Violin", "Histogram"], horizontal=True, key="dist_kind")
    fig, counts, rule = _distribution(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                      processed_key, feature, group, kind, float(threshold),
                                      processed)
    if rule:
        st.caption(rule)
    if fig is None:
        st.warning(f"No processed subject has a value for {feature}; pick another feature.")
    else:
        st.plotly_chart(fig, key="dist_fig")
        if kind != "Histogram" and int(counts["count"].max()) > plots.BOX_POINTS_MAX:
            st.caption("Many subjects per group: outliers are drawn as points, the boxes "
                       "summarise everyone (the Table tab lists every value).")
        st.dataframe(counts, key="dist_counts")

# -- correlation ------------------------------------------------------------------------------------
with tab_corr:
    default_corr = [c for c in ("Volume_label1", "Volume_label2", "tumor_volume",
                                "Max3DDiameter_label1", "Max3DDiameter_label2",
                                "flair_MeanIntensity_label2", "t1c_MeanIntensity_label1")
                    if c in features]
    chosen = st.multiselect("Features", features, default=default_corr, key="corr_features")
    method = st.radio("Method", ["spearman", "pearson"], horizontal=True, key="corr_method",
                      help="Spearman (rank) is robust to the skew of volumes and intensities.")
    usable = [c for c in chosen if processed[c].notna().sum() >= 3]
    if len(usable) < 2:
        st.info("Pick at least two features with values in three or more subjects.")
    else:
        st.plotly_chart(_correlation(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                     processed_key, tuple(usable), method, processed),
                        key="corr_fig")
        if len(usable) < len(chosen):
            st.caption("Left out (fewer than 3 values): "
                       + ", ".join(c for c in chosen if c not in usable))


# -- survival screen --------------------------------------------------------------------------------
@st.cache_data(show_spinner="Screening features…", max_entries=16)
def _screen(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
            feats: tuple[str, ...], table: pd.DataFrame) -> pd.DataFrame:
    """Cached by cohort, store stamp, results configuration, subject set and features (the
    table follows from those)."""
    from gliocore.analysis.screens import screen_features
    return screen_features(table, SURVIVAL, EVENT, list(feats))


with tab_screen:
    processed = ui.processed(ctx, ui.outcome_analysis_rows(
        ctx, "screen_outcome_filters", "the survival screen"))
    st.markdown("Each feature alone in a Cox model (standardised: hazard ratio per SD). With many "
                "features some look significant by chance, so read the **q-value** "
                "(Benjamini–Hochberg false-discovery rate over the features screened), not p.")
    picked = st.multiselect(f"Features to screen (empty = all {len(features)})", features,
                            default=[], key="screen_features")
    screen_feats = picked or features
    events = int(processed[EVENT].fillna(0).sum()) if EVENT in processed else 0
    if not screen_feats:
        st.info("Pick features to screen.")
    elif events < 2:
        st.warning(f"Only {events} death(s) among the {len(processed)} processed subjects: a Cox "
                   "screen needs events. Widen the filters.")
    else:
        res = _screen(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                      ui.ids_key(processed[ID].tolist()),
                      tuple(screen_feats), processed)
        n_sig = int((res["q"] < 0.05).sum())
        st.caption(f"{len(processed)} subjects, {events} deaths; {n_sig} feature(s) with q < 0.05.")
        st.dataframe(
            res.reset_index(), hide_index=True, key="screen_table",
            column_config={"HR_per_SD": st.column_config.NumberColumn("HR per SD", format="%.2f"),
                           "HR_lower": st.column_config.NumberColumn("95% CI low", format="%.2f"),
                           "HR_upper": st.column_config.NumberColumn("95% CI high", format="%.2f"),
                           "p": st.column_config.NumberColumn("p", format="%.3g"),
                           "q": st.column_config.NumberColumn("q (BH FDR)", format="%.3g")})
