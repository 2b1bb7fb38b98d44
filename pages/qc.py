"""Segmentation QC: each scan's segmentation against its reference mask (Dice, HD95, volumes),
baseline and follow-up scans alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from gliocore.analysis import plots
from gliocore.segment.qc import summarise
from gliocore.longitudinal.response import DAYS_PER_MONTH
from pages import _loaders as loaders
from pages import _context as page_context
from pages import _display as ui

#: Which scans the page scores (offered when the cohort has follow-up scans).
SCANS_SHOWN = ("All scans", "Baseline scans", "Follow-up scans")
REGIONS = {"contrast_enhancing": "Contrast-enhancing", "non_enhancing": "Non-enhancing",
           "whole_tumour": "Whole tumour", "whole_tumor": "Whole tumour", "tumour": "Whole tumour"}

ctx = page_context.context()
ui.page_header("Segmentation QC", ctx)
if not ui.require_cohort(ctx):
    st.stop()

# -- two backends (or two settings of one) against each other --------------------------------------
if len(ctx.configs) >= 2:
    with st.expander("Compare two segmentations of this cohort (baseline scans)", expanded=False):
        keys = ctx.configs["config_key"].astype(str).tolist()
        labels = {str(r.config_key): page_context.config_label(r) for r in ctx.configs.itertuples()}
        c1, c2 = st.columns(2)
        def name(k: str) -> str:
            return labels.get(k, k)

        key_a = c1.selectbox("A", keys, index=0, format_func=name, key="qc_cmp_a")
        key_b = c2.selectbox("B (plays the reference)", keys, index=1, format_func=name,
                             key="qc_cmp_b")
        if key_a == key_b:
            st.info("Pick two different configurations.")
        else:
            cmp = loaders.compare_configs(ctx.db, ctx.stamp, ctx.cohort_id, key_a, key_b)
            cmp = cmp[cmp["subject_id"].isin(ctx.subject_ids)].copy()
            failed = cmp[cmp["region"].isna()]
            cmp = cmp.dropna(subset=["region"])
            if cmp.empty:
                st.info("No filtered subject has a segmentation under both configurations.")
            else:
                cmp["region"] = cmp["region"].map(lambda r: REGIONS.get(r, r))
                st.dataframe(summarise(cmp.rename(columns={"volume_a_mm3": "volume_pred_mm3",
                                                           "volume_b_mm3": "volume_ref_mm3"}))
                             .drop(columns=["dice_mean"]), key="qc_cmp_summary")
                fig = px.box(cmp, x="region", y="dice", hover_data=["subject_id"],
                             points=plots.box_points(int(cmp["region"].value_counts().max())),
                             title="Dice between A and B per region")
                fig.update_yaxes(range=[0, 1.05])
                st.plotly_chart(fig, key="qc_cmp_dice")
            for row in failed.itertuples():
                st.warning(f"{row.subject_id}: {row.note}")


@st.cache_data(show_spinner=False, max_entries=16)
def _qc_views(db: str, stamp: str, cohort_id: str, config_key: str | None, ids: str, shown: str,
              per_scan: bool, table: pd.DataFrame):
    """The summary, the two figures, the per-subject (or per-scan) table and the scans ranked
    worst Dice first; cached by store stamp, results configuration, subject set and scans shown
    and the table itself (hashed by content), so a page change or a slice move rebuilds none of them."""
    qc = table.copy()
    qc["region"] = qc["region"].map(lambda r: REGIONS.get(r, r))
    region_order = [r for r in dict.fromkeys(REGIONS.values()) if r in set(qc["region"])] + \
        sorted(set(qc["region"]) - set(REGIONS.values()))
    hover = ["subject_id", "scan_id"] if per_scan else ["subject_id"]
    summary = summarise(qc if per_scan else qc.drop(columns=["scan_id"], errors="ignore")
                        ).reindex(region_order)
    per_region = int(qc["region"].value_counts().max())
    dice = px.box(qc, x="region", y="dice", points=plots.box_points(per_region),
                  hover_data=hover, category_orders={"region": region_order},
                  title="Dice per region" + (", one point per scan" if per_scan else ""))
    dice.update_yaxes(range=[0, 1.05])
    lim = float(np.nanmax([qc["volume_ref_mm3"].max(), qc["volume_pred_mm3"].max(), 1.0]))
    volumes = px.scatter(qc, x="volume_ref_mm3", y="volume_pred_mm3", color="region",
                         hover_data=[*hover, "dice"], category_orders={"region": region_order},
                         title="Predicted vs reference volume",
                         labels={"volume_ref_mm3": "reference (mm³)",
                                 "volume_pred_mm3": "segmentation (mm³)"})
    if len(qc) > plots.BOX_POINTS_MAX:  # many points: small and translucent, overlaps visible
        volumes.update_traces(marker=dict(size=5, opacity=0.55))
    volumes.add_trace(go.Scatter(x=[0, lim], y=[0, lim], mode="lines", name="identity",
                                 line=dict(color="grey", dash="dash")))
    index = ["subject_id", "scan_id"] if per_scan else ["subject_id"]
    wide = qc.pivot_table(index=index, columns="region",
                          values=["dice", "hd95_mm", "volume_diff_mm3"], aggfunc="first")
    names = {"hd95_mm": "HD95 BraTS (mm)", "volume_diff_mm3": "volume diff (mm³)"}
    wide.columns = [f"{names.get(metric, metric)} · {region}" for metric, region in wide.columns]
    wide = wide.reset_index()
    if per_scan:  # time order within a subject, and when
        when = qc.drop_duplicates(index).set_index(index)[["scan_order", "days"]]
        wide = wide.join(when, on=index).sort_values(["subject_id", "scan_order"])
        wide.insert(2, "months", wide.pop("days") / DAYS_PER_MONTH)
        wide = wide.drop(columns=["scan_order"])
    first = qc[qc["region"] == region_order[0]].sort_values("dice", kind="stable")
    ranked = list(zip(first["subject_id"], first["scan_id"]))
    return summary, dice, volumes, wide, ranked, region_order


qc = loaders.load_scan_qc(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
if qc.empty:
    seg = loaders.load_segmentations(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    if seg.empty:
        st.info("Nothing to check yet: the cohort is not segmented. Press **Process cohort** on the "
                "Cohort page.")
    else:
        st.info("No QC metrics: QC compares each segmentation with a reference mask, and none of "
                "the subjects has one. Put a reference segmentation in GlioScope's labels "
                "(1 = contrast-enhancing, 2 = non-enhancing) next to the images as "
                "`<SUBJECT ID>_truth.nii.gz` (in each scan's folder for follow-up scans) and "
                "process the cohort again (only QC is computed; segmentations and features come "
                "from the cache). The demo cohort ships with reference masks.")
    st.stop()

per_scan = bool((qc["scan_order"] > 0).any())  # follow-up scans have QC: show every scan
qc = qc[qc["subject_id"].isin(ctx.subject_ids)]
if qc.empty:
    st.warning("None of the filtered subjects has QC metrics; widen the filters.")
    st.stop()
shown = SCANS_SHOWN[0]
if per_scan:
    c1, c2 = st.columns([2, 3])
    shown = c1.radio("Scans", SCANS_SHOWN, horizontal=True, key="qc_scans",
                     help="Every scan with a reference mask is scored against its own reference "
                          "(follow-ups too); the summary and plots pool the scans shown.")
    if shown == "Baseline scans":
        qc = qc[qc["scan_order"] == 0]
    elif shown == "Follow-up scans":
        qc = qc[qc["scan_order"] > 0]
    c2.caption(f"{qc[['subject_id', 'scan_id']].drop_duplicates().shape[0]} scans of "
               f"{qc['subject_id'].nunique()} subjects scored. Timepoints as on the Progression "
               "page; the Viewer's **Timepoints** tab shows a subject's scans side by side.")
    if qc.empty:
        st.warning(f"No filtered subject has QC metrics for its {shown.lower()}; pick other scans "
                   "or widen the filters.")
        st.stop()

summary, fig_dice, fig_volumes, wide, ranked, region_order = _qc_views(
    ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key, ui.ids_key(ctx.subject_ids), shown,
    per_scan, qc)
unit = "scans" if per_scan else "subjects"
st.caption("Reference masks are the cohort's own (for the demo: the phantom's ground truth), read "
           "with their declared label map; scores are shown only against each "
           + ("scan's" if per_scan else "subject's") + " current reference. Dice: overlap, 1 = "
           "identical. **HD95 is the BraTS definition** (the larger "
           "of the two directed 95th-percentile surface distances, in mm; what BraTS papers "
           "report); *HD95 pooled* is the 95th percentile of both directions' distances together "
           "(MedPy's hd95), shown for comparison. An empty region in both masks has Dice 1; in one "
           "only, Dice 0 and no HD95: such a **missed** segmentation (or false positive) is "
           f"counted, not hidden, and the HD95 medians are over the scored {unit} only.")

st.dataframe(summary, key="qc_summary", column_config={
    "scans": st.column_config.NumberColumn("scans", help="scans scored (a subject's baseline "
                                           "and follow-ups each count)"),
    "n_scored": st.column_config.NumberColumn("scored", help="both masks non-empty"),
    "n_missed": st.column_config.NumberColumn("missed", help="reference non-empty, segmentation "
                                              "empty: Dice 0, no HD95"),
    "n_false_positive": st.column_config.NumberColumn("false positive", help="reference empty, "
                                                      "segmentation not"),
    "n_both_empty": st.column_config.NumberColumn("both empty"),
    "dice_median": st.column_config.NumberColumn("Dice (median)", format="%.3f"),
    "dice_mean": st.column_config.NumberColumn("Dice (mean)", format="%.3f"),
    "hd95_median_mm": st.column_config.NumberColumn("HD95 BraTS median (mm)", format="%.1f",
                                                    help=f"over the scored {unit}"),
    "hd95_pooled_median_mm": st.column_config.NumberColumn("HD95 pooled median (mm)",
                                                           format="%.1f"),
    "volume_diff_median_mm3": st.column_config.NumberColumn("volume diff median (mm³)",
                                                             format="%.0f")})
missed = summary["n_missed"].sum() if "n_missed" in summary else 0
if missed:
    st.warning(f"{int(missed)} region(s) missed: the reference has tumour there, the segmentation "
               "none (Dice 0, no HD95). They are counted in the table above, not left out.")

a, b = st.columns(2)
a.plotly_chart(fig_dice, key="qc_dice")
b.plotly_chart(fig_volumes, key="qc_volumes")
if len(qc) > plots.BOX_POINTS_MAX:
    st.caption(f"{len(qc)} values: the box plot draws outliers only (the boxes summarise every "
               f"{unit[:-1]}); hover a point for its subject.")

st.subheader("Per scan" if per_scan else "Per subject")
st.dataframe(wide, hide_index=True, key="qc_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f" if c.startswith("dice")
                                                             else "%.1f")
                            for c in wide.columns if "·" in c or c == "months"})

# -- one scan: reference outline over the prediction's fill ---------------------------------------
st.subheader("Compare masks")


def _label(item: tuple[str, str]) -> str:
    return item[0] if not per_scan else f"{item[0]} · {item[1]}"


choices = {_label(item): item for item in ranked}
c1, c2 = st.columns([2, 3])
pick = c1.selectbox(("Scan" if per_scan else "Subject") + " (worst Dice first)", list(choices),
                    key="qc_subject")
sid, scan_id = choices[pick]
plane = c2.radio("Plane", plots.PLANES, horizontal=True, key="qc_plane")
scans = loaders.load_scans(ctx.db, ctx.stamp, ctx.cohort_id)
results = loaders.load_scan_results(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
scan_row = scans[(scans["subject_id"] == sid) & (scans["scan_id"] == scan_id)]
result_row = results[(results["subject_id"] == sid) & (results["scan_id"] == scan_id)]
files = loaders.load_scan_files(ctx.db, ctx.stamp, ctx.cohort_id, sid, scan_id)
ref_path = None if scan_row.empty else scan_row["reference_mask"].iloc[0]
mpath = None if result_row.empty else result_row["path"].iloc[0]
what = sid if not per_scan else f"{sid}, scan {scan_id}"
if not (files.get("flair") and isinstance(ref_path, str) and isinstance(mpath, str)):
    st.info(f"{what}: image, segmentation or reference file not recorded.")
    st.stop()
try:
    img, spacing = loaders.load_volume_array(files["flair"], loaders.file_mtime(files["flair"]))
    pred = loaders.load_volume_array(mpath, loaders.file_mtime(mpath), is_mask=True)[0]
    ref = loaders.load_volume_array(ref_path, loaders.file_mtime(ref_path), is_mask=True)[0]
except Exception as exc:
    st.warning(f"Cannot read {what}'s files: {exc}")
    st.stop()
n = plots.n_slices(img.shape, plane)
index = st.slider("Slice", 0, n - 1, plots.best_slice(ref, plane),
                  key=f"qc_slice_{sid}_{scan_id}_{plane}")
stats = loaders.load_image_stats(ctx.db, ctx.stamp, ctx.cohort_id)  # the baseline scans' images
row = stats[(stats["subject_id"] == sid) & (stats["sequence"] == "flair")]
if not row.empty and int(scan_row["scan_order"].iloc[0]) == 0:
    p01, p99 = float(row["brain_p01"].iloc[0]), float(row["brain_p99"].iloc[0])
else:  # a follow-up: its own brain intensities (a sample is enough for a display window)
    brain = img[img > 0].ravel()[::50].astype(np.float32)
    p01, p99 = (float(np.quantile(brain, q)) for q in (0.01, 0.99)) if brain.size else \
        (float(img.min()), float(img.max()))
window = plots.window_bounds(p01, p99)
img2d = plots.extract_slice(img, plane, index)
panels = [("Segmentation (fill) + reference (cyan outline)",
           plots.slice_rgb(img2d, window, plots.extract_slice(pred, plane, index), (1, 2), 0.45,
                           plots.extract_slice(ref, plane, index), max_pixels=400)),
          ("Reference (fill)", plots.slice_rgb(img2d, window, plots.extract_slice(ref, plane, index),
                                               (1, 2), 0.45, max_pixels=400))]
st.plotly_chart(plots.slices_figure(panels, height=440), key="qc_slices",
                config={"displayModeBar": False})
st.caption(f"{what}: FLAIR; red = contrast-enhancing, yellow = non-enhancing; the cyan line is "
           "the reference whole-tumour boundary.")
