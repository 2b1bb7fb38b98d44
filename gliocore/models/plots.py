"""Plotly figures of the Models page: site views before/after ComBat, Kaplan–Meier of risk
groups, calibration at a horizon, coefficient bars."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gliocore.models.metrics import KaplanMeier

__all__ = ["site_boxes", "site_projection", "risk_group_km", "calibration_figure",
           "coefficient_bars", "logrank_p"]


def site_boxes(before: np.ndarray, after: np.ndarray, site: np.ndarray, feature: str) -> go.Figure:
    """One feature's distribution per site, before and after harmonisation."""
    fig = go.Figure()
    for label, v in (("before", before), ("after ComBat", after)):
        fig.add_trace(go.Box(x=site, y=v, name=label, boxmean=True))
    fig.update_layout(title=f"{feature} by site", height=340, margin=dict(t=40, b=10),
                      boxmode="group", xaxis={"categoryorder": "category ascending",
                                              "title": "site"},
                      yaxis_title="standardised value")
    return fig


def _pca2(X: np.ndarray) -> np.ndarray:
    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    u, s, _ = np.linalg.svd(Z, full_matrices=False)
    return u[:, :2] * s[:2]


def site_projection(before: np.ndarray, after: np.ndarray, site: np.ndarray) -> go.Figure:
    """First two principal components, coloured by site, before and after harmonisation."""
    from plotly.subplots import make_subplots
    fig = make_subplots(1, 2, subplot_titles=("before", "after ComBat"))
    colours = dict(zip(sorted(set(site)), ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                           "#8c564b", "#e377c2", "#7f7f7f")))
    for col, X in ((1, before), (2, after)):
        P = _pca2(X)
        for s, c in colours.items():
            m = site == s
            fig.add_trace(go.Scatter(x=P[m, 0], y=P[m, 1], mode="markers", name=s,
                                     marker=dict(color=c, size=5), showlegend=col == 1), 1, col)
    fig.update_layout(height=340, margin=dict(t=40, b=10), title="PCA of the features by site")
    return fig


def logrank_p(time, event, group) -> float:
    """Log-rank p-value between the groups (lifelines)."""
    from lifelines.statistics import multivariate_logrank_test
    return float(multivariate_logrank_test(time, group, event).p_value)


def risk_group_km(groups: pd.DataFrame, title: str) -> go.Figure:
    """Kaplan–Meier of out-of-fold high/low risk groups."""
    fig = go.Figure()
    for g, colour in (("high", "#d62728"), ("low", "#1f77b4")):
        sub = groups[groups["group"] == g]
        if sub.empty:
            continue
        km = KaplanMeier.fit(sub["time"], sub["event"])
        fig.add_trace(go.Scatter(x=np.r_[0, km.times], y=np.r_[1, km.values], mode="lines",
                                 line_shape="hv", name=f"{g} risk (n={len(sub)})",
                                 line=dict(color=colour)))
    fig.update_layout(title=title, xaxis_title="months", yaxis_title="survival",
                      yaxis_range=[0, 1.02], height=360, margin=dict(t=40, b=10))
    return fig


def calibration_figure(cal: pd.DataFrame, horizon: float) -> go.Figure:
    """Mean predicted vs Kaplan–Meier observed survival at the horizon per group, with the
    observed survival's interval (``observed_lo``/``observed_hi``) as error bars when present."""
    error = None
    if {"observed_lo", "observed_hi"} <= set(cal.columns) and cal["observed_lo"].notna().any():
        error = dict(type="data", symmetric=False, array=cal["observed_hi"] - cal["observed"],
                     arrayminus=cal["observed"] - cal["observed_lo"], thickness=1.2, width=4)
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal",
                                line=dict(dash="dash", color="grey")),
                     go.Scatter(x=cal["predicted"], y=cal["observed"], mode="markers+lines",
                                name="groups" + (" (95 % bootstrap interval)" if error else ""),
                                error_y=error, text=cal["n"].map(lambda n: f"n={n}"))])
    fig.update_layout(title=f"Calibration at {horizon:g} months",
                      xaxis_title="predicted survival", yaxis_title="observed (Kaplan–Meier)",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=360,
                      margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def coefficient_bars(coefs: pd.DataFrame, arm: str, top: int = 15) -> go.Figure:
    """Mean coefficient over outer folds and how often each predictor was selected."""
    c = coefs[coefs["arm"] == arm]
    n = c["split"].nunique() or 1
    agg = c.groupby("feature")["coef"].agg(mean="mean", selected=lambda v: (v != 0).sum() / n)
    agg = agg[agg["selected"] > 0].reindex(agg["mean"].abs().sort_values().index).tail(top)
    labels = [f"{f} ({s:.0%} of folds)" for f, s in zip(agg.index, agg["selected"])]
    fig = go.Figure(go.Bar(x=agg["mean"], y=labels, orientation="h"))
    fig.update_layout(title=f"Coefficients ({arm}; mean over outer folds)",
                      height=max(300, 28 * len(agg) + 100), margin=dict(t=40, b=10),
                      xaxis_title="coefficient per SD")
    return fig
