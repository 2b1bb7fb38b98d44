"""Plotly figures of tumour progression (no Streamlit here): trajectories, spaghetti, swimmer and
waterfall plots of a :class:`gliocore.longitudinal.response.CohortResponse`'s tables."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gliocore.longitudinal.response import (CATEGORIES, CATEGORY_TITLES, DAYS_PER_MONTH,
                                            RANO2_VOLUMETRIC, ResponseCriteria)

#: One colour per response category (and the baseline).
CATEGORY_COLOURS: dict[str, str] = {"CR": "#1a9850", "PR": "#91cf60", "MR": "#d9ef8b",
                                    "SD": "#4575b4", "PD": "#d73027", "baseline": "#7f7f7f"}
CATEGORY_SYMBOLS: dict[str, str] = {"CR": "star", "PR": "triangle-down", "MR": "diamond",
                                    "SD": "circle", "PD": "triangle-up", "baseline": "square"}
#: Volume series a trajectory can show: label -> (column of the assessment, or a sum).
CLASS_SERIES: dict[str, tuple[str, ...]] = {
    "Contrast-enhancing": ("volume_ce_mm3",),
    "Non-enhancing": ("volume_ne_mm3",),
    "Whole tumour": ("volume_ce_mm3", "volume_ne_mm3"),
}
_LINE = {"Contrast-enhancing": "#d62728", "Non-enhancing": "#1f77b4", "Whole tumour": "#2c2c2c"}
_GROUP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                  "#17becf", "#7f7f7f")


def series_values(scans: pd.DataFrame, series: str, relative: bool) -> pd.Series:
    """A class's volume per scan, in cm³, or in % of the subject's first scan (``relative``)."""
    cols = CLASS_SERIES[series]
    vol = scans[list(cols)].sum(axis=1, min_count=len(cols)) / 1000.0
    if not relative:
        return vol
    first = vol.groupby(scans["subject_id"]).transform(
        lambda v: v.dropna().iloc[0] if v.notna().any() else np.nan)
    return (100.0 * (vol - first) / first).where(first > 0)


def trajectory_figure(scans: pd.DataFrame, relative: bool = False,
                      criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                      title: str | None = None) -> go.Figure:
    """One subject's class volumes over time; the assessed classes drawn thick, the category
    markers on the assessed class (the non-enhancing one when both are assessed, as in
    IDH-mutant gliomas)."""
    s = scans.sort_values("days")
    months = s["days"] / DAYS_PER_MONTH
    fig = go.Figure()
    target = s["target"].dropna().iloc[0] if s["target"].notna().any() else None
    names = {"contrast_enhancing": "Contrast-enhancing", "non_enhancing": "Non-enhancing"}
    thick = [names[t] for t in str(target).split("+") if t in names]
    target_series = thick[-1] if thick else None
    for name in CLASS_SERIES:
        y = series_values(s, name, relative)
        fig.add_trace(go.Scatter(x=months, y=y, mode="lines+markers", name=name,
                                 line={"color": _LINE[name], "width": 3 if name in thick else 1.5},
                                 customdata=s["scan_id"],
                                 hovertemplate="%{customdata}: %{y:.1f}<extra>" + name + "</extra>"))
    if target_series is not None:
        y = series_values(s, target_series, relative)
        cats = s["category"].fillna("")
        for cat in CATEGORY_COLOURS:
            m = cats == cat
            if m.any():
                fig.add_trace(go.Scatter(
                    x=months[m], y=y[m], mode="markers+text", name=cat,
                    text=[cat] * int(m.sum()) if cat != "baseline" else None,
                    textposition="top center",
                    marker={"color": CATEGORY_COLOURS[cat], "size": 14,
                            "symbol": CATEGORY_SYMBOLS[cat], "line": {"width": 1, "color": "white"}},
                    hovertemplate=f"{CATEGORY_TITLES.get(cat, cat)}<extra></extra>"))
    if relative:
        fig.add_hline(y=-100 * criteria.pr_decrease, line_dash="dot", line_color="#1a9850",
                      annotation_text=f"PR −{criteria.pr_decrease:.0%}", annotation_position="bottom left")
        fig.add_hline(y=0, line_color="#bbbbbb")
    fig.update_layout(title=title, height=380, margin={"t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2},
                      xaxis_title="Months from baseline scan",
                      yaxis_title="% change from baseline" if relative else "Volume (cm³)")
    return fig


def spaghetti_figure(scans: pd.DataFrame, groups: pd.Series | None, series: str,
                     relative: bool = False, title: str | None = None) -> go.Figure:
    """Every subject's trajectory as a line, coloured by ``groups`` (index: subject ID)."""
    s = scans.sort_values(["subject_id", "days"]).assign(
        months=lambda d: d["days"] / DAYS_PER_MONTH, y=series_values(scans.sort_values(
            ["subject_id", "days"]), series, relative))
    s = s.dropna(subset=["y", "months"])
    grp = (s["subject_id"].map(groups) if groups is not None else pd.Series("all", index=s.index))
    grp = grp.fillna("unknown").astype(str)
    colours = {g: _GROUP_COLOURS[i % len(_GROUP_COLOURS)] for i, g in enumerate(sorted(grp.unique()))}
    fig = go.Figure()
    shown: set[str] = set()
    for sid, d in s.groupby("subject_id", sort=True):
        g = grp.loc[d.index[0]]
        fig.add_trace(go.Scatter(x=d["months"], y=d["y"], mode="lines+markers", name=g,
                                 legendgroup=g, showlegend=g not in shown,
                                 line={"color": colours[g], "width": 1.3}, marker={"size": 5},
                                 opacity=0.8, customdata=d["scan_id"],
                                 hovertemplate=f"{sid} " + "%{customdata}: %{y:.1f}<extra></extra>"))
        shown.add(g)
    if relative:
        fig.add_hline(y=0, line_color="#bbbbbb")
    fig.update_layout(title=title, height=420, margin={"t": 50},
                      xaxis_title="Months from baseline scan",
                      yaxis_title=f"{series}: % change from baseline" if relative
                      else f"{series} volume (cm³)")
    return fig


#: Subjects per swimmer plot: one bar row each (22 px), so a cohort of hundreds is shown a page
#: at a time rather than as one plot thousands of pixels tall.
SWIMMER_PER_PAGE = 50


def follow_up_end(subjects: pd.DataFrame, survival: pd.DataFrame | None) -> pd.Series:
    """Per subject (index), months from the baseline scan to the last scan or, when later, death
    or last contact (the overall-survival time): the length of its swimmer bar.

    Parameters
    ----------
    subjects : DataFrame
        One row per subject: ``subject_id``, ``last_scan_days``.
    survival : DataFrame or None
        Indexed by subject ID, ``months`` (overall survival); None: scans only.

    Returns
    -------
    Series
        Months, indexed by subject ID.
    """
    subj = subjects.set_index("subject_id")
    last = subj["last_scan_days"] / DAYS_PER_MONTH
    os_m = survival["months"].reindex(subj.index) if survival is not None else last * np.nan
    return pd.concat([last, os_m], axis=1).max(axis=1)


def swimmer_figure(scans: pd.DataFrame, subjects: pd.DataFrame, survival: pd.DataFrame | None,
                   title: str | None = None) -> go.Figure:
    """One bar per subject from baseline to death or last contact, with the scans' response
    categories, the first progression and the death (or censoring) marked.

    Parameters
    ----------
    scans : assessment (one row per scan)
    subjects : :func:`gliocore.longitudinal.response.subject_summary`
    survival : DataFrame indexed by subject with ``months`` (overall survival) and ``died``
        (0/1), optional.
    """
    subj = subjects.set_index("subject_id")
    end = follow_up_end(subjects, survival)
    order = end.sort_values().index.tolist()
    fig = go.Figure()
    fig.add_trace(go.Bar(x=end.loc[order], y=order, orientation="h", name="follow-up",
                         marker={"color": "#d9d9d9"}, hovertemplate="%{y}: %{x:.1f} months<extra></extra>"))
    sc = scans[scans["subject_id"].isin(order) & scans["category"].notna()]
    for cat in CATEGORY_COLOURS:
        d = sc[sc["category"] == cat]
        if len(d):
            fig.add_trace(go.Scatter(x=d["days"] / DAYS_PER_MONTH, y=d["subject_id"], mode="markers",
                                     name=CATEGORY_TITLES.get(cat, "Baseline scan"),
                                     marker={"color": CATEGORY_COLOURS[cat], "size": 9,
                                             "symbol": CATEGORY_SYMBOLS[cat]},
                                     customdata=d["scan_id"],
                                     hovertemplate="%{y} %{customdata}: " + cat + "<extra></extra>"))
    prog = subj.loc[order, "progression_days"].dropna() / DAYS_PER_MONTH
    if len(prog):
        fig.add_trace(go.Scatter(x=prog, y=prog.index, mode="markers", name="First progression",
                                 marker={"symbol": "x-thin", "size": 16,
                                         "line": {"width": 3, "color": "#d73027"}}))
    if survival is not None:
        died = survival.reindex(order)
        dd = died[died["died"] == 1]
        if len(dd):
            fig.add_trace(go.Scatter(x=dd["months"], y=dd.index, mode="markers", name="Death",
                                     marker={"symbol": "diamond", "size": 10, "color": "black"}))
        cc = died[died["died"] == 0]
        if len(cc):
            fig.add_trace(go.Scatter(x=cc["months"], y=cc.index, mode="markers",
                                     name="Alive at last contact",
                                     marker={"symbol": "arrow-right", "size": 11, "color": "#555555"}))
    # the legend goes below the axis title, a fixed 60 px under the axis whatever the height
    # (a fraction of the height put it on the axis title for long cohorts)
    height = max(320, 22 * len(order) + 120)
    top, bottom = 50, 130
    fig.update_layout(title=title, height=height, barmode="overlay",
                      xaxis_title="Months from baseline scan",
                      margin={"t": top, "l": 10, "b": bottom},
                      legend={"orientation": "h", "yanchor": "top",
                              "y": -60 / (height - top - bottom)})
    fig.update_yaxes(categoryorder="array", categoryarray=order, title=None)
    return fig


def waterfall_figure(subjects: pd.DataFrame, criteria: ResponseCriteria = RANO2_VOLUMETRIC,
                     title: str | None = None) -> go.Figure:
    """Best % change of the assessed volume from baseline per subject (up to the first
    progression; the worse compartment where two are assessed), sorted, coloured by the best
    response; the PR, MR and PD thresholds drawn."""
    d = subjects.dropna(subset=["best_pct_change"]).sort_values("best_pct_change", ascending=False)
    fig = go.Figure()
    for cat in CATEGORIES:
        m = d["best_response"] == cat
        if m.any():
            fig.add_trace(go.Bar(x=d.loc[m, "subject_id"], y=d.loc[m, "best_pct_change"],
                                 name=CATEGORY_TITLES[cat], marker={"color": CATEGORY_COLOURS[cat]},
                                 hovertemplate="%{x}: %{y:.0f} %<extra></extra>"))
    fig.add_hline(y=-100 * criteria.pr_decrease, line_dash="dash", line_color="#1a9850",
                  annotation_text=f"PR threshold −{criteria.pr_decrease:.0%}",
                  annotation_position="bottom left")  # the right holds the deepest bars
    fig.add_hline(y=-100 * criteria.mr_decrease, line_dash="dot", line_color="#a6a600",
                  annotation_text=f"MR −{criteria.mr_decrease:.0%} (non-enhancing)",
                  annotation_position="top left")
    fig.add_hline(y=100 * criteria.pd_increase, line_dash="dash", line_color="#d73027",
                  annotation_text=f"+{criteria.pd_increase:.0%} (PD is measured from nadir)",
                  annotation_position="top right")
    fig.update_xaxes(categoryorder="array", categoryarray=d["subject_id"].tolist(),
                     showticklabels=len(d) <= 40)
    fig.update_layout(title=title, height=400, barmode="overlay", margin={"t": 50},
                      yaxis_title="Best change from baseline up to progression (%)",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def category_counts(scans: pd.DataFrame, order: Sequence[str] = CATEGORIES) -> pd.DataFrame:
    """Follow-up scans per response category (a small table for the page)."""
    c = scans["category"].value_counts()
    return pd.DataFrame({"category": list(order), "title": [CATEGORY_TITLES[k] for k in order],
                         "scans": [int(c.get(k, 0)) for k in order]})
