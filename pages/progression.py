"""Progression: tumour volumes over a subject's scans, volumetric RANO 2.0 response and PFS."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gliocore.analysis import export
from gliocore.longitudinal import response_plots as rp
from gliocore.longitudinal.pfs import FDA_2018_SOURCE, PfsRules
from gliocore.longitudinal.response import (DAYS_PER_MONTH, RANO2_SOURCE, RECIST11_SOURCE,
                                            ResponseCriteria)
from pages._columns import EVENT, ID, IDH, SURVIVAL
from pages import _loaders as loaders
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("Progression", ctx)
if not ui.require_cohort(ctx):
    st.stop()

scans_all = loaders.load_scans(ctx.db, ctx.stamp, ctx.cohort_id)
if scans_all.empty or not (scans_all["scan_order"] > 0).any():
    st.info("This cohort has one scan per subject, so there is no progression to show. A "
            "longitudinal cohort lists several scans per subject: a **scans table** "
            "(`scans.csv` beside the clinical table, or `--scans`: one row per scan with "
            "`SUBJECT ID`, `scan_id` and/or `days` / `date`, `img_dir`) or **timepoint folders** "
            "(`<subject>/<timepoint>/…`, timepoints named by date or day). The demo cohort "
            "made by `make run` has follow-up scans.")
    st.stop()

c1, c2 = st.columns([1, 3])
confirm = c1.checkbox("Confirm by the next scan", value=False, key="prog_confirm",
                      help="RANO 2.0 option: a response counts when the next scan shows it "
                           "again, a progression when the next scan is still ≥ 40 % above the "
                           "nadir (otherwise it was pseudo-progression); a progression on the "
                           "last scan stands.")
criteria = ResponseCriteria(confirm=confirm)
pfs_rules = PfsRules()
c2.caption(criteria.describe(rules=False) + f" Sources: {RANO2_SOURCE}; best response up to "
           f"progression: {RECIST11_SOURCE}.")

assessment, subjects, pfs = loaders.load_response(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key,
                                                 confirm)
keep = set(ctx.subject_ids)
assessment = assessment[assessment["subject_id"].isin(keep)]
subjects = subjects[subjects["subject_id"].isin(keep)]
pfs = pfs[pfs["subject_id"].isin(keep)]
if subjects.empty:
    st.warning("No filtered subject has a processed scan yet: process the cohort on the Cohort "
               "page, or widen the filters.")
    st.stop()
n_fu = int((subjects["n_scans"] > 1).sum())
n_scans = int(subjects["n_scans"].sum())
n_prog = int(subjects["progression_days"].notna().sum())
m1, m2, m3, m4 = st.columns(4)
m1.metric("Subjects", len(subjects))
m2.metric("Scans with a volume", n_scans)
m3.metric("Subjects with follow-up", n_fu)
m4.metric("Progressed", n_prog)

clin = ctx.filtered.set_index(ID) if ID in ctx.filtered else pd.DataFrame()
rules = criteria.rules
per_rule = subjects["response_rule"].value_counts()
st.markdown("**What is measured, per tumour type** (from the clinical IDH status; RANO 2.0)")
st.dataframe(pd.DataFrame({
    "tumour type": [r.tumour_type for r in (rules.idh_mutant, rules.idh_wildtype, rules.unknown)],
    "assessed": [r.describe().split(": ", 1)[1]
                 for r in (rules.idh_mutant, rules.idh_wildtype, rules.unknown)],
    "minor response": ["yes (non-enhancing, ≥ 35 % decrease)" if r.non_enhancing == "always"
                       else "when the non-enhancing volume is assessed"
                       for r in (rules.idh_mutant, rules.idh_wildtype, rules.unknown)],
    "subjects": [int(per_rule.get(r.tumour_type, 0))
                 for r in (rules.idh_mutant, rules.idh_wildtype, rules.unknown)]}),
    hide_index=True, key="prog_rules")
has_offset = pfs_rules.offset_column in clin.columns and clin[pfs_rules.offset_column].notna().any()
st.caption(pfs_rules.describe() + " " + (
    f"This cohort's clinical table gives `{pfs_rules.offset_column}`." if has_offset else
    f"This cohort's clinical table has no `{pfs_rules.offset_column}`: its survival is "
    "**assumed to be measured from the baseline scan**; add the column if it is measured from "
    "diagnosis or surgery.") + f" Source: {FDA_2018_SOURCE}.")
tab_subj, tab_cohort, tab_swim, tab_fall, tab_table = st.tabs(
    ["Subject trajectory", "Cohort trajectories", "Swimmer plot", "Waterfall", "Tables"])

with tab_subj:
    # subjects who progressed first, then by number of scans: the most telling trajectories
    ids = subjects.assign(_p=subjects["progression_days"].notna()).sort_values(
        ["_p", "n_scans", "subject_id"], ascending=[False, False, True])["subject_id"].tolist()
    s1, s2 = st.columns([2, 1])
    sid = s1.selectbox("Subject", ids, key="prog_subject",
                       format_func=lambda i: f"{i} ({int(subjects.set_index('subject_id').at[i, 'n_scans'])} scans)")
    relative = s2.radio("Scale", ["Volume (cm³)", "% from baseline"], horizontal=True,
                        key="prog_scale") != "Volume (cm³)"
    one = assessment[assessment["subject_id"] == sid]
    st.plotly_chart(rp.trajectory_figure(one, relative, criteria,
                                         title=f"{sid}: tumour volumes over time"),
                    key="prog_traj")
    info = subjects.set_index("subject_id").loc[sid]
    names = {"contrast_enhancing": "contrast-enhancing", "non_enhancing": "non-enhancing"}
    target = " and ".join(names[t] for t in str(info["target"]).split("+") if t in names) or "—"
    st.caption(f"Response assessed on the **{target}** volume (thick line; rule "
               f"{info['response_rule']}). Best response (up to the first progression): "
               f"**{info['best_response'] or '—'}**; first progression: "
               + (f"**{info['progression_days'] / DAYS_PER_MONTH:.1f} months** ({info['progression_scan']})"
                  if pd.notna(info["progression_days"]) else "none"))
    cols = ["scan_id", "days", "volume_ce_mm3", "volume_ne_mm3", "pct_from_baseline_ce",
            "pct_from_nadir_ce", "pct_from_baseline_ne", "pct_from_nadir_ne", "category_ce",
            "category_ne", "new_enhancement", "category", "confirmed"]
    st.dataframe(one[[c for c in cols if c in one]].round(1), hide_index=True, key="prog_subject_table")

with tab_cohort:
    g1, g2, g3 = st.columns(3)
    series = g1.selectbox("Class", list(rp.CLASS_SERIES), index=2, key="prog_series")
    rel2 = g2.radio("Scale", ["Volume (cm³)", "% from baseline"], horizontal=True,
                    key="prog_scale_cohort", index=1) != "Volume (cm³)"
    group_options = ["none", "best response"] + [c for c in (IDH, "sex", "event")
                                                 if c in clin.columns]
    group = g3.selectbox("Colour by", group_options, index=min(2, len(group_options) - 1),
                         key="prog_group")
    if group == "none":
        groups = None
    elif group == "best response":
        groups = subjects.set_index("subject_id")["best_response"].fillna("no follow-up")
    else:
        groups = clin[group]
    multi = assessment[assessment["subject_id"].isin(subjects.loc[subjects["n_scans"] > 1, "subject_id"])]
    st.plotly_chart(rp.spaghetti_figure(multi, groups, series, rel2,
                                        title=f"{series}: every subject with follow-up"),
                    key="prog_spaghetti")

with tab_swim:
    survival = None
    if {SURVIVAL, EVENT} <= set(clin.columns):
        offset = (pd.to_numeric(clin[pfs_rules.offset_column], errors="coerce")
                  .fillna(pfs_rules.default_offset_days) if has_offset
                  else pfs_rules.default_offset_days)  # survival origin -> baseline scan
        survival = pd.DataFrame({"months": clin[SURVIVAL] - offset / DAYS_PER_MONTH,
                                 "died": clin[EVENT]})
    shown = subjects
    per_page = rp.SWIMMER_PER_PAGE
    if len(subjects) > per_page:  # a page at a time, longest follow-up first
        ranked = rp.follow_up_end(subjects, survival).sort_values(ascending=False).index.tolist()
        lo = st.select_slider(
            f"Subjects (by follow-up, longest first; {per_page} at a time)",
            list(range(0, len(ranked), per_page)),
            format_func=lambda i: f"{i + 1}–{min(i + per_page, len(ranked))}",
            key=f"prog_swim_page_{len(ranked)}")
        hi = min(lo + per_page, len(ranked))
        shown = subjects[subjects["subject_id"].isin(ranked[lo:hi])]
    st.plotly_chart(rp.swimmer_figure(assessment, shown, survival,
                                      title="Swimmer plot: follow-up, responses, progression, death"
                                      + (f" (subjects {lo + 1}–{hi} of {len(subjects)})"
                                         if len(shown) < len(subjects) else "")),
                    key="prog_swimmer")
    st.caption("Bar: baseline scan to death or last contact (overall survival from the clinical "
               "table, minus its origin's offset to the baseline scan"
               + ("" if has_offset else ": none given, so taken as measured from the baseline scan")
               + "). Markers: each scan's category; "
               "✕ first progression; ◆ death; ▶ alive at last contact.")

with tab_fall:
    st.plotly_chart(rp.waterfall_figure(subjects, criteria,
                                        title="Best change from baseline, up to the first progression"),
                    key="prog_waterfall")
    st.dataframe(rp.category_counts(assessment), hide_index=True, key="prog_counts")

with tab_table:
    st.markdown("**Per subject** (PFS: time to the first progression or death; a death after two "
                "or more missed assessments is censored at the last scan. `pfs_reason` and "
                "`pfs_detail` say why each PFS is what it is)")
    per_subject = subjects.merge(pfs, on="subject_id", how="left")
    st.dataframe(per_subject.round(2), hide_index=True, key="prog_subjects_table")
    st.markdown("**Per scan**")
    st.dataframe(assessment.round(1), hide_index=True, key="prog_scans_table")
    st.download_button("Download the per-scan table (CSV)", export.csv_text(assessment),
                       file_name="scans.csv", mime="text/csv", key="prog_download")
