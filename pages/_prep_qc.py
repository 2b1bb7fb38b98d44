"""The Viewer's preprocessing tab: per step a QC picture of one preprocessed scan, and its flags."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gliocore.analysis import plots
from gliocore.preprocess import qc
from pages import _context as page_context
from pages import _loaders as loaders

STEP_TITLES = {"brain": "Brain extraction", "registration": "Co-registration to T1c",
               "bias": "Bias field (N4)"}
STEP_HELP = {
    "brain": "The brain mask (green outline) on T1c as acquired (with skull and scalp) and after "
             "N4. The outline should follow the brain surface: no skull inside, no brain outside.",
    "registration": "Each sequence and T1c in alternating tiles (a checkerboard), in scanner "
                    "coordinates before registration and after it. Edges that run on across tile "
                    "borders mean the two line up. Orange: brain outside the sequence's field of "
                    "view (zero in that sequence).",
    "bias": "Each sequence before and after N4 bias-field correction, and the field removed "
            "(before / after, divided by its median; mid-grey = the median, window 0.7-1.3). "
            "After N4 the same tissue should be equally bright across the slice.",
}
#: Panels per figure row for each step.
PER_ROW = {"brain": 2, "registration": 2, "bias": 3}


@st.cache_data(show_spinner=False, max_entries=16)
def _scan_qc(folder: str, mtime_ns: int) -> qc.ScanQc | None:
    return qc.read_scan_qc(folder)


def _folders(ctx: page_context.Context, sid: str) -> dict[str, str]:
    """Scan ID -> folder of each preprocessed scan of ``sid`` (its T1c file's folder)."""
    from pathlib import Path
    scans = loaders.load_scans(ctx.db, ctx.stamp, ctx.cohort_id)
    out = {}
    for scan_id in scans.loc[scans["subject_id"].astype(str) == sid, "scan_id"]:
        files = loaders.load_scan_files(ctx.db, ctx.stamp, ctx.cohort_id, sid, scan_id)
        folder = Path(files["t1c"]).parent if files.get("t1c") else None
        if folder is not None and (folder / "preprocess.json").is_file():
            out[str(scan_id)] = str(folder)
    return out


def render(ctx: page_context.Context, subject_id: str | None) -> None:
    """Flags, figures and per-step QC pictures of ``subject_id``'s preprocessed scans."""
    if not subject_id:
        return
    folders = _folders(ctx, subject_id)
    if not folders:
        st.info(f"{subject_id} was not preprocessed here: its images were already preprocessed "
                "(BraTS-style: one grid, skull-stripped) and passed through untouched. Raw scans "
                "(DICOM, NIfTI as acquired) are preprocessed when the cohort is processed "
                "(README: From the scanner).")
        return
    c1, c2, c3 = st.columns([2, 3, 3])
    scan_id = c1.selectbox("Scan", list(folders), key="prep_scan")
    step = c2.radio("Step", qc.STEPS, horizontal=True, format_func=STEP_TITLES.get,
                    key="prep_step")
    plane = c3.radio("Plane", qc.PLANES, horizontal=True, key="prep_plane")
    folder = folders[scan_id]
    try:
        scan = _scan_qc(folder, loaders.file_mtime(f"{folder}/preprocess.json"))
    except ValueError as exc:
        st.error(f"{subject_id}, scan {scan_id}: {exc}")
        return
    _flags(scan.result, subject_id, scan_id)
    if scan.slices is None:
        st.info("No QC pictures for this scan: it was preprocessed before the stage kept them. "
                f"Delete `{folder}/preprocess.json` and process the cohort again to make them.")
    else:
        st.caption(STEP_HELP[step])
        panels = qc.qc_panels(scan.slices, step, plane)
        size = PER_ROW[step]
        for i in range(0, len(panels), size):
            st.plotly_chart(plots.slices_figure(panels[i:i + size], height=300,
                                                pixel_aspect=scan.slices.pixel_aspect(plane)),
                            key=f"prep_{step}_{plane}_{i}", config={"displayModeBar": False})
    st.dataframe(pd.DataFrame(qc.summary_rows(scan.result)), hide_index=True,
                 column_config={"MI before": st.column_config.NumberColumn(format="%.3f"),
                                "MI after": st.column_config.NumberColumn(format="%.3f")})


def _flags(result: dict, sid: str, scan_id: str) -> None:
    brain = result.get("brain_ml")
    secs = " · ".join(f"{k} {v:.0f} s" for k, v in (result.get("seconds") or {}).items())
    st.caption(f"{sid}, scan {scan_id}: brain "
               + ("?" if brain is None else f"{brain:.0f} ml") + f" ({result.get('model')}); "
               f"{secs}. Below: mutual information (higher is better) in scanner coordinates and "
               "after rigid registration, the motion found, and the share of the brain inside "
               "each sequence's field of view.")
    flags = result.get("flags") or []
    for flag in flags:
        st.warning(f"QC flag: {flag}")
    if not flags:
        st.success("No QC flag: brain volume plausible, registration similarity up, every "
                   "sequence covers the brain.")
