"""Plotly figure builders for survival and classification results (no Streamlit here).

Each builder takes a result object from :mod:`gliocore.analysis.kaplan_meier`, :mod:`gliocore.analysis.cox` or :mod:`gliocore.analysis.classify` and
returns a :class:`plotly.graph_objects.Figure`; the dashboard composes and shows them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gliocore.analysis.classify import ClassifierResult
from gliocore.analysis.cox import CoxResult
from gliocore.analysis.kaplan_meier import KMResult

__all__ = ["km_figure", "forest_figure", "roc_figure", "confusion_figure", "survival_rank_figure"]

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
    sd = result.sd_tpr
    fig.add_trace(go.Scatter(x=x, y=np.minimum(m + sd, 1), mode="lines", line=dict(width=0),
                             hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=np.maximum(m - sd, 0), mode="lines", line=dict(width=0),
                             fill="tonexty", fillcolor="rgba(31,119,180,0.2)", name="± 1 SD"))
    label = f"mean ROC (AUC {result.auc_mean:.3f} ± {result.auc_sd:.3f})"
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


# --------------------------------------------------------------------------------------------
# MRI slice viewer and the intensity data check (used by the dashboard's Viewer and QC pages)
# --------------------------------------------------------------------------------------------
PLANES = ("axial", "coronal", "sagittal")
#: Overlay colours of the canonical labels (1 = contrast-enhancing, 2 = non-enhancing).
LABEL_COLOURS = {1: (255, 40, 40), 2: (255, 210, 0)}
REFERENCE_COLOUR = (0, 230, 255)
#: Outline colours of atlas regions, by label (1-based; gliocore.location.localise.DISPLAY_REGIONS order).
REGION_COLOURS = ((66, 133, 244), (52, 168, 83), (171, 71, 188), (255, 112, 67), (0, 188, 212),
                  (240, 98, 146), (124, 179, 66), (255, 193, 7), (141, 110, 99), (92, 107, 192))


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorder a volume's axes to the closest RAS+ orientation (no resampling).

    Returns
    -------
    data : (x, y, z) ndarray
        Axis 0 runs left -> right, axis 1 posterior -> anterior, axis 2 inferior -> superior.
    spacing : (3,) tuple of float
        Voxel size (mm) along the new axes.
    """
    import nibabel as nib
    ornt = nib.orientations.io_orientation(np.asarray(affine, float))
    out = nib.orientations.apply_orientation(np.asarray(data), ornt)
    vox = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
    spacing = [0.0, 0.0, 0.0]
    for i, (out_axis, _flip) in enumerate(ornt):
        spacing[int(out_axis)] = float(vox[i])
    return np.ascontiguousarray(out), tuple(spacing)  # type: ignore[return-value]


def _plane_axis(plane: str) -> int:
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; use one of {', '.join(PLANES)}")
    return {"sagittal": 0, "coronal": 1, "axial": 2}[plane]


def n_slices(shape: Sequence[int], plane: str) -> int:
    """Number of slices of a RAS volume in ``plane``."""
    return int(shape[_plane_axis(plane)])


def extract_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2-D slice of a RAS volume oriented for display (radiological convention).

    Rows run top to bottom of the screen: anterior at the top (axial), superior at the top
    (coronal, sagittal). Columns: the patient's right on the viewer's left (axial, coronal),
    anterior on the left (sagittal).
    """
    axis = _plane_axis(plane)
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    if axis == 2:       # (x, y) -> rows = y descending, cols = x descending
        return volume[::-1, ::-1, index].T
    if axis == 1:       # (x, z) -> rows = z descending, cols = x descending
        return volume[::-1, index, ::-1].T
    return volume[index, ::-1, ::-1].T   # (y, z) -> rows = z descending, cols = y descending


def best_slice(mask: np.ndarray | None, plane: str) -> int:
    """The slice with the most tumour voxels (the middle slice without a tumour or a mask)."""
    axis = _plane_axis(plane)
    if mask is None:
        return 0
    counts = (np.asarray(mask) > 0).sum(axis=tuple(a for a in range(3) if a != axis))
    if counts.max(initial=0) == 0:
        return int(mask.shape[axis] // 2)
    return int(np.argmax(counts))


def window_bounds(p01: float, p99: float, level: float = 0.5, width: float = 1.0) -> tuple[float, float]:
    """Display window from a relative level/width on the brain's 1st–99th percentile range.

    ``level = 0.5, width = 1`` maps p01 to black and p99 to white.
    """
    span = max(float(p99) - float(p01), 1e-6)
    centre = float(p01) + level * span
    half = max(width, 1e-3) * span / 2
    return centre - half, centre + half


def _outline(mask2d: np.ndarray) -> np.ndarray:
    """Pixels of a binary 2-D mask that touch the background (4-neighbourhood)."""
    m = np.asarray(mask2d, bool)
    if not m.any():
        return m
    pad = np.pad(m, 1)
    inner = pad[1:-1, 1:-1] & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~inner


def slice_rgb(image2d: np.ndarray, window: tuple[float, float], mask2d: np.ndarray | None = None,
              labels: Sequence[int] = (1, 2), opacity: float = 0.4,
              reference2d: np.ndarray | None = None, max_pixels: int = 320,
              regions2d: np.ndarray | None = None) -> np.ndarray:
    """Grey-scale slice with label fills (and a reference outline) blended in, as uint8 RGB.

    Parameters
    ----------
    image2d : (rows, cols) ndarray
    window : (low, high)
        Intensities mapped to black and white.
    mask2d : (rows, cols) ndarray of int, optional
        Canonical labels (1 = contrast-enhancing, 2 = non-enhancing), drawn filled.
    labels : sequence of int
        Which labels to draw.
    opacity : float
        Opacity of the fills.
    reference2d : (rows, cols) ndarray of int, optional
        A reference mask, drawn as an outline of the whole tumour in cyan (labels > 0).
    max_pixels : int
        Larger slices are subsampled (by a whole stride) to keep the figure light.
    regions2d : (rows, cols) ndarray of int, optional
        Atlas region labels (1-based), drawn as outlines in :data:`REGION_COLOURS`.
    """
    lo, hi = window
    stride = max(1, int(np.ceil(max(image2d.shape) / max_pixels)))
    img = np.asarray(image2d, np.float32)[::stride, ::stride]
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mask2d is not None:
        m = np.asarray(mask2d)[::stride, ::stride]
        for lab in labels:
            sel = m == lab
            if sel.any():
                colour = np.asarray(LABEL_COLOURS.get(int(lab), (0, 255, 0)), np.float32)
                rgb[sel] = (1 - opacity) * rgb[sel] + opacity * colour
    if reference2d is not None:
        ref = _outline(np.asarray(reference2d)[::stride, ::stride] > 0)
        rgb[ref] = REFERENCE_COLOUR
    if regions2d is not None:
        reg = np.asarray(regions2d)[::stride, ::stride]
        for lab in np.unique(reg[reg > 0]):
            rgb[_outline(reg == lab)] = REGION_COLOURS[(int(lab) - 1) % len(REGION_COLOURS)]
    return rgb.astype(np.uint8)


def slices_figure(panels: Sequence[tuple[str, np.ndarray]], *, height: int = 340,
                  pixel_aspect: float = 1.0) -> go.Figure:
    """Side-by-side RGB slices (one subplot each), sent to the browser as PNG images.

    Parameters
    ----------
    panels : sequence of (title, (rows, cols, 3) uint8 array)
    height : int
        Figure height in pixels.
    pixel_aspect : float
        Row spacing / column spacing of the slices (1 for isotropic voxels).
    """
    import base64
    import io

    from PIL import Image

    n = max(len(panels), 1)
    fig = make_subplots(rows=1, cols=n, subplot_titles=[t for t, _ in panels],
                        horizontal_spacing=0.01)
    for i, (_title, rgb) in enumerate(panels, start=1):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG", compress_level=1)
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        rows, cols = rgb.shape[:2]
        fig.add_trace(go.Image(source=src, dy=pixel_aspect, hoverinfo="skip"), row=1, col=i)
        fig.update_xaxes(visible=False, range=[-0.5, cols - 0.5], row=1, col=i)
        fig.update_yaxes(visible=False, range=[rows * pixel_aspect - 0.5, -0.5],
                         scaleanchor=f"x{'' if i == 1 else i}", row=1, col=i)
    # pad=0: Streamlit's chart theme pads the plot area by 8 px, and the black background then
    # covered the lower half of the panel titles
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=28, b=0, pad=0), plot_bgcolor="black")
    return fig


def intensity_check_table(table, image_stats, label: int = 2):
    """The seed's data check, long form: per subject and sequence, raw and normalised intensity.

    Parameters
    ----------
    table : DataFrame
        The seed's wide table (``SUBJECT ID``, ``{seq}_MeanIntensity_label{label}``, ...).
    image_stats : DataFrame
        :meth:`gliocore.store.database.Store.image_stats` (``subject_id``, ``sequence``, ``brain_mean``,
        ``brain_std``).
    label : int
        Tumour label whose mean intensity is normalised (2 = non-enhancing, present in most
        subjects).

    Returns
    -------
    DataFrame
        Columns ``subject_id``, ``sequence``, ``raw`` (mean brain intensity of the image),
        ``tumour_raw`` and ``normalised`` (``(tumour mean - brain mean) / brain SD``: the tumour's
        brightness in brain-SD units, comparable across scanners and subjects).
    """
    import pandas as pd
    if image_stats is None or image_stats.empty:
        return pd.DataFrame(columns=["subject_id", "sequence", "raw", "tumour_raw", "normalised"])
    out = image_stats[["subject_id", "sequence", "brain_mean", "brain_std"]].rename(
        columns={"brain_mean": "raw"}).copy()
    tumour = []
    by_id = table.set_index("SUBJECT ID") if "SUBJECT ID" in table.columns else None
    for sid, seq in zip(out["subject_id"], out["sequence"]):
        col = f"{seq}_MeanIntensity_label{label}"
        v = np.nan
        if by_id is not None and col in by_id.columns and sid in by_id.index:
            v = by_id.at[sid, col]
        tumour.append(v)
    out["tumour_raw"] = pd.to_numeric(pd.Series(tumour, index=out.index), errors="coerce")
    std = out["brain_std"].where(out["brain_std"] > 0)
    out["normalised"] = (out["tumour_raw"] - out["raw"]) / std
    return out.drop(columns=["brain_std"])


#: Up to this many subjects a per-subject chart (survival by subject, location shares) draws one
#: bar per subject; above it, bars are thinner than a pixel and their labels unreadable, so each
#: subject becomes a dot (survival) or a heat-map row (location).
SURVIVAL_BARS_MAX = 60


def region_share_figure(share, *, title: str, bars_max: int = SURVIVAL_BARS_MAX) -> go.Figure:
    """Each subject's share of a tumour class in each atlas region, readable at any cohort size.

    Parameters
    ----------
    share : DataFrame
        Index: subject IDs; columns: region titles; values: % of the class in the region.
    title : str
        The figure's title.
    bars_max : int
        Up to this many subjects, one stacked bar per subject; above it a heat map (a row per
        subject, sorted by its main region and share; no tick labels, hover names the subject),
        where 1,000 bars would be slivers.

    Returns
    -------
    plotly Figure
    """
    import pandas as pd
    share = share.astype(float)
    if len(share) <= bars_max:
        import plotly.express as px
        long = share.rename_axis("subject").reset_index().melt(
            id_vars="subject", var_name="region", value_name="%")
        fig = px.bar(long, x="subject", y="%", color="region", title=title,
                     labels={"%": "% of the class volume", "subject": "SUBJECT ID"})
        fig.update_layout(height=460, legend_title_text="")  # room for ten regions' legend
        fig.update_xaxes(showticklabels=len(share) <= 40)
        return fig
    filled = share.fillna(0.0)
    main = filled.idxmax(axis=1).where(filled.max(axis=1) > 0, "")
    order = pd.DataFrame({"main": [list(share.columns).index(m) if m else len(share.columns)
                                   for m in main],
                          "top": -filled.max(axis=1).to_numpy()}, index=share.index)
    sorted_ids = order.sort_values(["main", "top"], kind="stable").index
    z = share.loc[sorted_ids].to_numpy()
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in share.columns], y=[str(s) for s in sorted_ids],
        colorscale="Reds", zmin=0, zmax=100, colorbar=dict(title="%"),
        hovertemplate="%{y}<br>%{x}: %{z:.0f} %<extra></extra>"))
    fig.update_layout(title=title, height=520)
    fig.update_yaxes(showticklabels=False, autorange="reversed",
                     title=f"{len(share)} subjects, grouped by their main region")
    return fig


#: Box and violin plots draw every subject as a point up to this many points; beyond, the
#: points would only blur into a band (and weigh on the browser), so only outliers are drawn
#: and the box summarises everyone.
BOX_POINTS_MAX = 300


def box_points(n: int) -> str:
    """Plotly's ``points`` for a box/violin plot of ``n`` values: ``"all"`` or ``"outliers"``."""
    return "all" if n <= BOX_POINTS_MAX else "outliers"


def survival_rank_figure(times: Sequence[float], groups: Sequence[str], died: Sequence[bool],
                         ids: Sequence[str], *, threshold: float | None = None,
                         colours: dict[str, str] | None = None, time_label: str = "months",
                         title: str | None = None) -> go.Figure:
    """Survival by subject for cohorts of hundreds or thousands: one dot per subject.

    Subjects are sorted by survival time (x = their rank as a percentage of the cohort, so the
    curve reads like an inverted empirical survival curve), coloured by group; filled dots are
    observed events, open dots censored times. WebGL markers keep 10,000 points responsive.

    Parameters
    ----------
    times : (n,) survival times
    groups : (n,) group of each subject (e.g. IDH status), colours the dots
    died : (n,) bool, event observed
    ids : (n,) subject IDs (hover)
    threshold : float, optional
        A horizontal line (the short-survival threshold).
    """
    t = np.asarray(times, dtype=float)
    order = np.argsort(t, kind="stable")
    n = len(t)
    rank = (np.arange(n) + 0.5) / max(n, 1) * 100.0
    g = np.asarray(groups, dtype=object)[order]
    d = np.asarray(died, dtype=bool)[order]
    sid = np.asarray(ids, dtype=object)[order]
    ts = t[order]
    colours = dict(colours or {})
    fig = go.Figure()
    for i, name in enumerate(sorted({str(x) for x in g})):
        colour = colours.get(name, _COLOURS[i % len(_COLOURS)])
        for observed in (True, False):
            sel = (g.astype(str) == name) & (d == observed)
            if not sel.any():
                continue
            fig.add_trace(go.Scattergl(
                x=rank[sel], y=ts[sel], mode="markers",
                name=f"{name} · {'died' if observed else 'censored'} ({int(sel.sum())})",
                marker=dict(size=5 if n > 300 else 7, color=colour if observed else "white",
                            line=dict(color=colour, width=1), opacity=0.75 if n > 300 else 1.0),
                customdata=sid[sel],
                hovertemplate="%{customdata}<br>%{y:.1f} " + time_label + "<extra></extra>"))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="grey",
                      annotation_text=f"short-survival threshold ({threshold:g} {time_label})",
                      annotation_position="top left", annotation_bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(title=title or f"Survival by subject, sorted ({n} subjects); "
                                      "open dots = censored",
                      xaxis_title="subjects ranked by survival time (% of cohort)",
                      yaxis_title=f"survival ({time_label})", height=380,
                      legend=dict(itemsizing="constant"))
    fig.update_xaxes(range=[0, 100])
    return fig
