"""Plotly figure builders for survival and classification results (no Streamlit here).

Each builder takes a result object from :mod:`gliocore.survival` or :mod:`gliocore.classify` and
returns a :class:`plotly.graph_objects.Figure`; the dashboard composes and shows them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gliocore.classify import ClassifierResult
from gliocore.survival import CoxResult, KMResult

__all__ = ["km_figure", "forest_figure", "roc_figure", "confusion_figure"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _rgba(hex_colour: str, a: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 1e-3 else f"p = {p:.3f}"


def km_figure(result: KMResult, *, show_ci: bool = True, title: str | None = None,
              time_label: str | None = None) -> go.Figure:
    """Kaplan–Meier curves with confidence bands, censoring ticks and a number-at-risk table.

    Parameters
    ----------
    result : KMResult
    show_ci : bool, default True
        Draw the pointwise confidence band of each curve.
    title : str, optional
        Defaults to "Kaplan–Meier" plus the log-rank result.
    time_label : str, optional
        x-axis title; defaults to the duration column.
    """
    groups = list(result.curves)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22],
                        vertical_spacing=0.06)
    level = int(round(100 * (1 - result.alpha)))
    for i, (g, c) in enumerate(result.curves.items()):
        col = _COLOURS[i % len(_COLOURS)]
        name = f"{g} (n={c.n}, events={c.n_events})"
        if show_ci:
            fig.add_trace(go.Scatter(x=c.timeline, y=c.ci_upper, mode="lines", line=dict(width=0, shape="hv"),
                                     hoverinfo="skip", showlegend=False, legendgroup=g), row=1, col=1)
            fig.add_trace(go.Scatter(x=c.timeline, y=c.ci_lower, mode="lines", line=dict(width=0, shape="hv"),
                                     fill="tonexty", fillcolor=_rgba(col, 0.15), hoverinfo="skip",
                                     name=f"{level}% CI", showlegend=False, legendgroup=g), row=1, col=1)
        fig.add_trace(go.Scatter(x=c.timeline, y=c.survival, mode="lines", name=name, legendgroup=g,
                                 line=dict(color=col, shape="hv", width=2),
                                 hovertemplate="t=%{x:.3g}<br>S=%{y:.3f}<extra>" + str(g) + "</extra>"),
                      row=1, col=1)
        if c.censor_times.size:
            fig.add_trace(go.Scatter(x=c.censor_times, y=c.censor_survival, mode="markers",
                                     marker=dict(symbol="line-ns-open", size=9, color=col),
                                     name="censored", legendgroup=g, showlegend=False,
                                     hovertemplate="censored at %{x:.3g}<extra>" + str(g) + "</extra>"),
                          row=1, col=1)
    # number-at-risk table: one text row per group
    times = list(result.at_risk.columns)
    for i, g in enumerate(groups):
        fig.add_trace(go.Scatter(x=times, y=[g] * len(times), mode="text",
                                 text=[str(int(v)) for v in result.at_risk.loc[g].to_numpy()],
                                 textfont=dict(color=_COLOURS[i % len(_COLOURS)]), showlegend=False,
                                 hoverinfo="skip"), row=2, col=1)
    if title is None:
        title = "Kaplan–Meier"
        lr = result.logrank
        if lr is not None:
            title += f" — log-rank χ² = {lr.statistic:.2f} (df {lr.dof}), {_p_text(lr.p_value)}"
    fig.update_yaxes(title_text="Survival probability", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="At risk", type="category", categoryorder="array",
                     categoryarray=groups[::-1], showgrid=False, row=2, col=1)
    fig.update_xaxes(title_text=time_label or result.duration_col, row=2, col=1,
                     tickvals=times)
    fig.update_layout(title=title, hovermode="closest", legend=dict(orientation="h", y=1.02,
                      yanchor="bottom", x=0), margin=dict(t=90))
    return fig


def forest_figure(result: CoxResult, *, title: str | None = None) -> go.Figure:
    """Hazard ratios with confidence intervals on a log axis (one row per model term)."""
    s = result.summary.iloc[::-1]
    level = int(round(100 * (1 - result.alpha)))
    labels = [f"{t} (per SD)" if t in result.standardized else str(t) for t in s.index]
    fig = go.Figure(go.Scatter(
        x=s["HR"], y=labels, mode="markers", marker=dict(size=9, color="#1f77b4"),
        error_x=dict(type="data", symmetric=False, array=s["HR_upper"] - s["HR"],
                     arrayminus=s["HR"] - s["HR_lower"]),
        customdata=np.c_[s["HR_lower"], s["HR_upper"], s["p"]],
        hovertemplate=("HR %{x:.3f} (" + f"{level}" + "% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})"
                       "<br>p = %{customdata[2]:.3g}<extra>%{y}</extra>")))
    fig.add_vline(x=1.0, line_dash="dash", line_color="grey")
    refs = "; ".join(f"{k}: reference {v}" for k, v in result.reference_levels.items())
    fig.update_layout(
        title=title or (f"Cox PH ({result.ties} ties), n = {result.n}, events = {result.n_events}, "
                        f"C = {result.concordance:.3f}"),
        xaxis=dict(type="log", title=f"Hazard ratio ({level}% CI)"), yaxis=dict(title=""),
        annotations=[dict(text=(refs + " — " if refs else "") + result.ph_verdict, xref="paper",
                          yref="paper", x=0, y=-0.2, showarrow=False, xanchor="left")],
        margin=dict(b=90))
    return fig


def roc_figure(result: ClassifierResult, *, title: str | None = None) -> go.Figure:
    """Cross-validated ROC: mean curve, ±1 SD band over folds (k-fold) and the chance line."""
    x, m = result.fpr_grid, result.mean_tpr
    fig = go.Figure()
    if not result.is_loo:
        sd = result.sd_tpr
        fig.add_trace(go.Scatter(x=x, y=np.minimum(m + sd, 1), mode="lines", line=dict(width=0),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=np.maximum(m - sd, 0), mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(31,119,180,0.2)", name="± 1 SD"))
        label = f"mean ROC (AUC {result.auc_mean:.3f} ± {result.auc_sd:.3f})"
    else:
        label = f"pooled out-of-fold ROC (AUC {result.pooled_auc:.3f})"
    fig.add_trace(go.Scatter(x=x, y=m, mode="lines", name=label, line=dict(color="#1f77b4", width=2)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line=dict(color="grey", dash="dash")))
    sub = result.cv_scheme
    if not np.isnan(result.permutation_pvalue):
        sub += f"; permutation {_p_text(result.permutation_pvalue)}"
    fig.update_layout(title=title or f"ROC — {result.model}<br><sup>{sub}</sup>",
                      xaxis=dict(title="False positive rate", range=[0, 1]),
                      yaxis=dict(title="True positive rate", range=[0, 1.02], scaleanchor="x"),
                      legend=dict(x=0.4, y=0.05))
    return fig


def confusion_figure(result: ClassifierResult | np.ndarray,
                     class_names: Sequence[str] | None = None, *, title: str | None = None) -> go.Figure:
    """Heatmap of an out-of-fold confusion matrix (rows = true, columns = predicted)."""
    if isinstance(result, ClassifierResult):
        cm = np.asarray(result.confusion_matrix)
        names = list(class_names or result.class_names)
        note = result.confusion_note
    else:
        cm = np.asarray(result)
        names = list(class_names or [str(i) for i in range(cm.shape[0])])
        note = ""
    fig = go.Figure(go.Heatmap(z=cm, x=[f"pred {n}" for n in names], y=[f"true {n}" for n in names],
                               colorscale="Blues", showscale=False, text=cm.astype(int).astype(str),
                               texttemplate="%{text}", hovertemplate="%{y}, %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title or ("Confusion matrix" + (f"<br><sup>{note}</sup>" if note else "")))
    return fig
