"""The Viewer's timepoint strip: one subject's scans side by side at the same slice."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gliocore.analysis import plots
from gliocore.longitudinal.response import DAYS_PER_MONTH
from gliocore.types import SEQUENCE_TITLES, SEQUENCES
from pages import _loaders as loaders
from pages import _context as page_context

#: Timepoints shown at once; a slider steps through the rest.
SHOWN = 4


def render(ctx: page_context.Context, subject_id: str | None) -> None:
    """Step through ``subject_id``'s timepoints at one slice, side by side, with each scan's
    segmentation overlay and volumes."""
    scans = loaders.load_scan_results(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    multi = scans.groupby("subject_id")["scan_id"].count()
    multi = [s for s in ctx.subject_ids if multi.get(s, 0) > 1]
    if not multi:
        st.info("No filtered subject has more than one scan: the cohort has one scan per "
                "subject (see the Progression page for how to add timepoints).")
        return
    default = subject_id if subject_id in multi else multi[0]
    c1, c2, c3 = st.columns([2, 2, 2])
    sid = c1.selectbox("Subject", multi, index=multi.index(default), key="tp_subject")
    seq = c2.selectbox("Sequence", SEQUENCES, index=SEQUENCES.index("flair"),
                       format_func=SEQUENCE_TITLES.get, key="tp_sequence")
    plane = c3.radio("Plane", plots.PLANES, horizontal=True, key="tp_plane")
    own = scans[scans["subject_id"] == sid].sort_values("scan_order")
    vols, masks = [], []
    for r in own.itertuples():
        files = loaders.load_scan_files(ctx.db, ctx.stamp, ctx.cohort_id, sid, r.scan_id)
        if seq not in files:
            continue
        try:
            data, spacing = loaders.load_volume_array(files[seq], loaders.file_mtime(files[seq]))
        except Exception as exc:
            st.warning(f"{sid}, scan {r.scan_id}: image unreadable ({exc})")
            continue
        mask = None
        if isinstance(r.path, str) and r.path:
            try:
                mask = loaders.load_volume_array(r.path, loaders.file_mtime(r.path), is_mask=True)[0]
            except Exception:
                mask = None
        vols.append((r, data, spacing))
        masks.append(mask)
    if not vols:
        st.warning(f"{sid}: no readable {SEQUENCE_TITLES[seq]} image in any scan.")
        return
    shape = vols[0][1].shape
    n = plots.n_slices(shape, plane)
    first_mask = next((m for m in masks if m is not None), None)
    default_slice = plots.best_slice(first_mask, plane) if first_mask is not None else n // 2
    o1, o2 = st.columns([3, 2])
    index = o1.slider(f"{plane.capitalize()} slice (the same for every timepoint)", 0, n - 1,
                      default_slice, key=f"tp_slice_{sid}_{plane}")
    overlay = o2.checkbox("Segmentation overlay", value=True, key="tp_overlay")
    start = 0
    if len(vols) > SHOWN:
        start = st.slider("Step through timepoints (first shown)", 0, len(vols) - SHOWN, 0,
                          key=f"tp_start_{sid}")
    panels = []
    for (r, data, spacing), mask in list(zip(vols, masks))[start:start + SHOWN]:
        if data.shape != shape:
            st.warning(f"{sid}, scan {r.scan_id}: grid {data.shape} differs from the first scan's "
                       f"{shape}; shown at its own slice {min(index, plots.n_slices(data.shape, plane) - 1)}.")
        k = min(index, plots.n_slices(data.shape, plane) - 1)
        img2d = plots.extract_slice(data, plane, k)
        brain = data[data > 0]
        lo, hi = (float(pd.Series(brain.ravel()[::50]).quantile(q)) for q in (0.01, 0.99)) \
            if brain.size else (0.0, 1.0)
        m2d = plots.extract_slice(mask, plane, k) if (mask is not None and overlay) else None
        when = "" if pd.isna(r.days) else f" · {r.days / DAYS_PER_MONTH:.1f} mo"
        vol = "" if pd.isna(r.volume_ce_mm3) else \
            f" · CE {r.volume_ce_mm3 / 1000:.1f}, NE {r.volume_ne_mm3 / 1000:.1f}"
        panels.append((f"{r.scan_id}{when}{vol}",
                       plots.slice_rgb(img2d, plots.window_bounds(lo, hi), m2d, (1, 2), 0.4,
                                       None, max_pixels=256)))
    spacing = vols[0][2]
    rows_mm = {"axial": spacing[1], "coronal": spacing[2], "sagittal": spacing[2]}[plane]
    cols_mm = {"axial": spacing[0], "coronal": spacing[0], "sagittal": spacing[1]}[plane]
    st.plotly_chart(plots.slices_figure(panels, height=380, pixel_aspect=rows_mm / cols_mm),
                    key="tp_slices", config={"displayModeBar": False})
    st.caption(f"{sid}: {len(vols)} scans; showing {start + 1}–{start + len(panels)}. Titles: scan, "
               "months from baseline, contrast-enhancing (CE) and non-enhancing (NE) volume in cm³. Red = "
               "contrast-enhancing, yellow = non-enhancing (each scan's own segmentation). The "
               "slice index is the same on every scan: scans of one subject are compared on "
               "their common grid (no registration between timepoints is done).")
