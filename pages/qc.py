"""Segmentation QC: the segmentation against each subject's reference mask (Dice, HD95, volumes)."""
from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from gliocore import plots
from gliocore.qc import summarise
from pages import _common as common

REGIONS = {"contrast_enhancing": "Contrast-enhancing", "non_enhancing": "Non-enhancing",
           "whole_tumour": "Whole tumour", "whole_tumor": "Whole tumour", "tumour": "Whole tumour"}

ctx = common.context()
common.page_header("Segmentation QC", ctx)
if not common.require_cohort(ctx):
    st.stop()

# -- two backends (or two settings of one) against each other --------------------------------------
if len(ctx.configs) >= 2:
    with st.expander("Compare two segmentations of this cohort", expanded=False):
        keys = ctx.configs["config_key"].astype(str).tolist()
        labels = {str(r.config_key): common.config_label(r) for r in ctx.configs.itertuples()}
        c1, c2 = st.columns(2)
        def name(k: str) -> str:
            return labels.get(k, k)

        key_a = c1.selectbox("A", keys, index=0, format_func=name, key="qc_cmp_a")
        key_b = c2.selectbox("B (plays the reference)", keys, index=1, format_func=name,
                             key="qc_cmp_b")
        if key_a == key_b:
            st.info("Pick two different configurations.")
        else:
            cmp = common.compare_configs(ctx.db, ctx.stamp, ctx.cohort_id, key_a, key_b)
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
                fig = px.box(cmp, x="region", y="dice", points="all", hover_data=["subject_id"],
                             title="Dice between A and B per region")
                fig.update_yaxes(range=[0, 1.05])
                st.plotly_chart(fig, key="qc_cmp_dice")
            for row in failed.itertuples():
                st.warning(f"{row.subject_id}: {row.note}")

qc = common.load_qc(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
if qc.empty:
    seg = common.load_segmentations(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    if seg.empty:
        st.info("Nothing to check yet: the cohort is not segmented. Press **Process cohort** on the "
                "Cohort page.")
    else:
        st.info("No QC metrics: QC compares each segmentation with a reference mask, and none of "
                "the subjects has one. Put a reference segmentation in GlioScope's labels "
                "(1 = contrast-enhancing, 2 = non-enhancing) next to the images as "
                "`<SUBJECT ID>_truth.nii.gz` and process the cohort again (only QC is computed; "
                "segmentations and features come from the cache). The demo cohort ships with "
                "reference masks.")
    st.stop()

qc = qc[qc["subject_id"].isin(ctx.subject_ids)].copy()
if qc.empty:
    st.warning("None of the filtered subjects has QC metrics; widen the filters.")
    st.stop()
qc["region"] = qc["region"].map(lambda r: REGIONS.get(r, r))
region_order = [r for r in dict.fromkeys(REGIONS.values()) if r in set(qc["region"])] + \
    sorted(set(qc["region"]) - set(REGIONS.values()))

st.caption("Reference masks are the cohort's own (for the demo: the phantom's ground truth), read "
           "with their declared label map; scores are shown only against each subject's current "
           "reference. Dice: overlap, 1 = identical. **HD95 is the BraTS definition** (the larger "
           "of the two directed 95th-percentile surface distances, in mm; what BraTS papers "
           "report); *HD95 pooled* is the 95th percentile of both directions' distances together "
           "(MedPy's hd95), shown for comparison. An empty region in both masks has Dice 1; in one "
           "only, Dice 0 and no HD95: such a **missed** segmentation (or false positive) is "
           "counted, not hidden, and the HD95 medians are over the scored subjects only.")

summary = summarise(qc).reindex(region_order)
st.dataframe(summary, key="qc_summary", column_config={
    "n_scored": st.column_config.NumberColumn("scored", help="both masks non-empty"),
    "n_missed": st.column_config.NumberColumn("missed", help="reference non-empty, segmentation "
                                              "empty: Dice 0, no HD95"),
    "n_false_positive": st.column_config.NumberColumn("false positive", help="reference empty, "
                                                      "segmentation not"),
    "n_both_empty": st.column_config.NumberColumn("both empty"),
    "dice_median": st.column_config.NumberColumn("Dice (median)", format="%.3f"),
    "dice_mean": st.column_config.NumberColumn("Dice (mean)", format="%.3f"),
    "hd95_median_mm": st.column_config.NumberColumn("HD95 BraTS median (mm)", format="%.1f",
                                                    help="over the scored subjects"),
    "hd95_pooled_median_mm": st.column_config.NumberColumn("HD95 pooled median (mm)",
                                                           format="%.1f"),
    "volume_diff_median_mm3": st.column_config.NumberColumn("volume diff median (mm³)",
                                                             format="%.0f")})
missed = summary["n_missed"].sum() if "n_missed" in summary else 0
if missed:
    st.warning(f"{int(missed)} region(s) missed: the reference has tumour there, the segmentation "
               "none (Dice 0, no HD95). They are counted in the table above, not left out.")

a, b = st.columns(2)
fig = px.box(qc, x="region", y="dice", points="all", hover_data=["subject_id"],
             category_orders={"region": region_order}, title="Dice per region")
fig.update_yaxes(range=[0, 1.05])
a.plotly_chart(fig, key="qc_dice")
lim = float(np.nanmax([qc["volume_ref_mm3"].max(), qc["volume_pred_mm3"].max(), 1.0]))
fig = px.scatter(qc, x="volume_ref_mm3", y="volume_pred_mm3", color="region",
                 hover_data=["subject_id", "dice"], category_orders={"region": region_order},
                 title="Predicted vs reference volume",
                 labels={"volume_ref_mm3": "reference (mm³)", "volume_pred_mm3": "segmentation (mm³)"})
fig.add_trace(go.Scatter(x=[0, lim], y=[0, lim], mode="lines", name="identity",
                         line=dict(color="grey", dash="dash")))
b.plotly_chart(fig, key="qc_volumes")

st.subheader("Per subject")
wide = qc.pivot_table(index="subject_id", columns="region",
                      values=["dice", "hd95_mm", "volume_diff_mm3"], aggfunc="first")
metric_names = {"hd95_mm": "HD95 BraTS (mm)", "volume_diff_mm3": "volume diff (mm³)"}
wide.columns = [f"{metric_names.get(metric, metric)} · {region}" for metric, region in wide.columns]
st.dataframe(wide.reset_index(), hide_index=True, key="qc_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f" if c.startswith("dice")
                                                             else "%.1f") for c in wide.columns})

# -- one subject: reference outline over the prediction's fill ------------------------------------
st.subheader("Compare masks")
subjects = sorted(qc["subject_id"].unique())
worst = qc[qc["region"] == region_order[0]].sort_values("dice")["subject_id"].tolist()
c1, c2 = st.columns([2, 3])
sid = c1.selectbox("Subject (worst Dice first)", worst or subjects, key="qc_subject")
plane = c2.radio("Plane", plots.PLANES, horizontal=True, key="qc_plane")
files, ref_path = common.load_subject_files(ctx.db, ctx.stamp, ctx.cohort_id, sid)
seg = common.load_segmentations(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
mpath = dict(zip(seg["subject_id"], seg["path"])).get(sid)
if not (files.get("flair") and ref_path and mpath):
    st.info(f"{sid}: image, segmentation or reference file not recorded.")
    st.stop()
try:
    img, spacing = common.load_volume_array(files["flair"], common.file_mtime(files["flair"]))
    pred = common.load_volume_array(mpath, common.file_mtime(mpath), is_mask=True)[0]
    ref = common.load_volume_array(ref_path, common.file_mtime(ref_path), is_mask=True)[0]
except Exception as exc:
    st.warning(f"Cannot read {sid}'s files: {exc}")
    st.stop()
n = plots.n_slices(img.shape, plane)
index = st.slider("Slice", 0, n - 1, plots.best_slice(ref, plane), key=f"qc_slice_{sid}_{plane}")
stats = common.load_image_stats(ctx.db, ctx.stamp, ctx.cohort_id)
row = stats[(stats["subject_id"] == sid) & (stats["sequence"] == "flair")]
p01, p99 = (float(row["brain_p01"].iloc[0]), float(row["brain_p99"].iloc[0])) if not row.empty \
    else (float(img.min()), float(img.max()))
window = plots.window_bounds(p01, p99)
img2d = plots.extract_slice(img, plane, index)
panels = [("Segmentation (fill) + reference (cyan outline)",
           plots.slice_rgb(img2d, window, plots.extract_slice(pred, plane, index), (1, 2), 0.45,
                           plots.extract_slice(ref, plane, index), max_pixels=400)),
          ("Reference (fill)", plots.slice_rgb(img2d, window, plots.extract_slice(ref, plane, index),
                                               (1, 2), 0.45, max_pixels=400))]
st.plotly_chart(plots.slices_figure(panels, height=440), key="qc_slices",
                config={"displayModeBar": False})
st.caption("FLAIR; red = contrast-enhancing, yellow = non-enhancing; the cyan line is the reference "
           "whole-tumour boundary.")
