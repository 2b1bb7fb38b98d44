"""Page furniture shared by the pages: the header ("n of N subjects" and the segmentation
provenance line), the notes and guards a page shows when something is missing, the endpoint
picker and the rows an analysis of survival uses."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from gliocore.analysis.filters import GUARANTEE_TIME_BIAS, guarantee_time_filters

from pages._columns import ENDPOINTS, ID
from pages._context import Context
from pages._filters import clear_filters
from pages._loaders import load_segmentations

COHORT_PAGE = "pages/cohort.py"


def endpoint_picker(ctx: Context, key: str, dg: Any = None) -> tuple[str, str, str, str]:
    """Overall or progression-free survival (PFS is offered when the cohort has follow-up
    scans). Returns (label, time column, event column, event word)."""
    table = ctx.table
    options = [k for k, (t, e, _) in ENDPOINTS.items()
               if t in table.columns and e in table.columns and table[t].notna().any()]
    if len(options) <= 1:
        label = options[0] if options else "Overall survival"
    else:
        label = (dg or st).radio("Endpoint", options, horizontal=True, key=key,
                                 help="Progression-free survival: time from the baseline scan to "
                                      "the first volumetric RANO 2.0 progression or death, censored "
                                      "at the last scan, also when death follows two or more "
                                      "missed assessments (see the Progression page).")
    return (label, *ENDPOINTS[label])


def empty_features_note(ctx: Context, dg: Any = None) -> None:
    """Say which feature columns the pickers leave out because no subject has a value."""
    empty = ctx.empty_feature_columns()
    if empty:
        shown = ", ".join(f"`{c}`" for c in empty[:12]) + (" …" if len(empty) > 12 else "")
        (dg or st).caption(f"Not offered: {len(empty)} feature column(s) without a value in any "
                           f"of the cohort's {ctx.n_total} subjects ({shown}).")


def backend_line(ctx: Context) -> str | None:
    """Which segmentation backend/version produced the results, in one line."""
    if not ctx.cohort_id:
        return None
    seg = load_segmentations(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
    if seg.empty:
        return None
    if ctx.subject_ids:
        sub = seg[seg["subject_id"].isin(ctx.subject_ids)]
        seg = sub if not sub.empty else seg
    parts = []
    cols = ["backend", "backend_version", "weights_checksum", "device"]
    for (backend, version, weights, device), g in seg.groupby(cols, dropna=False):
        w = "no weights" if not isinstance(weights, str) or not weights else f"weights {weights[:10]}"
        dev = f" on {device}" if isinstance(device, str) and device else ""
        parts.append(f"{backend} v{version} ({w}){dev}: {len(g)} subjects")
    return "Segmentation: " + "; ".join(parts)


def page_header(title: str, ctx: Context) -> None:
    """Title, "n of N subjects" and the segmentation provenance line."""
    st.title(title)
    if ctx.cohort_id is None:
        return
    bits = [f"**{ctx.n} of {ctx.n_total} subjects**"
            + (f" (filters: {', '.join(ctx.filters_active)})" if ctx.filters_active else "")]
    name = (ctx.cohort or {}).get("name")
    if name:
        bits.append(f"cohort **{name}**")
    line = backend_line(ctx)
    bits.append(line or "not segmented yet")
    st.caption(" · ".join(bits))


def require_cohort(ctx: Context) -> bool:
    """Say what is missing (no store, no cohort, filters empty) and return False, else True."""
    if ctx.store_error:
        st.error(ctx.store_error)
        return False
    if ctx.cohort_id is None:
        st.info("No cohort in the store yet. Open the **Cohort** page to load a clinical CSV and "
                "image folder, or to generate and process the demo cohort "
                "(`python -m gliocore process --demo`).")
        st.page_link(COHORT_PAGE, label="Go to the Cohort page", icon=":material/folder_open:")
        return False
    if ctx.n == 0:
        st.warning(f"No subject matches the filters (0 of {ctx.n_total}). Widen or clear them in "
                   "the sidebar.")
        st.button("Clear filters", on_click=clear_filters, key="clear_filters_empty")
        return False
    return True


def event_notice(ctx: Context) -> None:
    """Warn when the clinical table had no event column (every subject counted as a death)."""
    if bool((ctx.cohort or {}).get("event_assumed")):
        st.warning("The clinical table has no `event` column, so every subject is treated as a "
                   "death observed at its survival time (as the seed notebook did). If some "
                   "subjects were alive at last follow-up, add `event` (1 = death, 0 = censored) "
                   "to the CSV and reload the cohort: censoring changes Kaplan–Meier, log-rank, "
                   "Cox and the short/long labels.")


def require_features(ctx: Context, what: str = "this page") -> bool:
    """False (with how to get them) when the cohort has no radiomics features yet."""
    if ctx.has_features and not processed(ctx).empty:
        return True
    if ctx.has_features:
        st.warning(f"None of the {ctx.n} filtered subjects has features; {what} needs processed "
                   "subjects. Widen the filters or process the remaining subjects on the Cohort page.")
    else:
        st.info(f"The cohort has no segmentation or features yet, which {what} needs. Press "
                "**Process cohort** on the Cohort page, or run "
                "`python -m gliocore process --csv CLINICAL.csv --root IMAGES/`.")
        st.page_link(COHORT_PAGE, label="Go to the Cohort page", icon=":material/folder_open:")
    return False


def processed(ctx: Context, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Filtered subjects (or those of ``rows``) that have features (what the store's status says,
    so a subject whose ``tumor_volume`` is missing for one degenerate label is still processed)."""
    rows = ctx.filtered if rows is None else rows
    if rows.empty or ID not in rows.columns:
        return rows.iloc[0:0]
    ids = ctx.processed_ids()
    return rows[rows[ID].astype(str).isin(ids)].reset_index(drop=True)


def outcome_analysis_rows(ctx: Context, key: str, what: str = "this page") -> pd.DataFrame:
    """The rows an analysis of survival uses, with a warning when outcome filters are active.

    A filter on the outcome (survival range, event, or a column known only after baseline such
    as ``n_scans`` or ``best_response``: guarantee-time bias) conditions the analysis on its own
    result: a Kaplan–Meier curve of deaths only has no censoring and falls to 0, a survival range
    truncates the curves and makes short/long classes trivially separable. So, on the pages that
    analyse survival, such filters are **left out by default** (the other filters apply), with a
    visible warning and a toggle (``key``) to apply them anyway, e.g. for a deliberate
    conditional analysis.
    """
    active = ctx.outcome_filters()
    if not active:
        return ctx.filtered
    names = ", ".join(f"**{f.label}**" for f in active)
    post = guarantee_time_filters(active)
    bias = (" " + ", ".join(f"**{f.label}**" for f in post) + ": " + GUARANTEE_TIME_BIAS + "."
            if post else "")
    ignored = ctx.without_outcome_filters()
    box = st.container()  # the warning goes above the toggle that changes it
    apply = st.toggle(f"Apply the outcome filter(s) on {what} anyway", value=False, key=key,
                      help="Only for a deliberate conditional analysis: the results then describe "
                           "subjects selected by their own survival.")
    rows = ctx.filtered if apply else ignored
    if apply:
        box.warning(f"Outcome filter(s) {names} applied on {what}: the {len(rows)} subjects are "
                   "selected by their own survival time or event, so curves, hazard ratios and "
                   "AUCs here describe that selection, not the cohort (a curve of deaths only "
                   "never shows censoring; a survival range truncates the curves)." + bias,
                   icon=":material/warning:")
    else:
        box.warning(f"Outcome filter(s) {names} **not applied** on {what}: they select subjects "
                   "by the outcome analysed here, which biases every estimate (a Kaplan–Meier "
                   "curve of deaths only never shows censoring; a survival range truncates the "
                   f"curves). Using {len(rows)} subjects (the other filters apply) instead of the "
                   f"{ctx.n} the sidebar selects." + bias, icon=":material/warning:")
    return rows


def ids_key(ids: list[str]) -> str:
    """A compact, hashable key of a subject list (for cached analyses)."""
    from hashlib import sha1
    return sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]
