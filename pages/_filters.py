"""The shared sidebar filters (IDH status first) and widgets whose value persists across
pages (Streamlit drops a widget's value when another page is shown)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from gliocore.analysis.filters import Filter, apply_filters, guarantee_time_filters
from pages._columns import EVENT, IDH, NON_DATA_COLUMNS, SURVIVAL, empty_columns

FILTER_PREFIX = "flt_"


def persistent(key: str) -> str:
    """Widget key for a value kept in ``st.session_state[key]`` across pages.

    Streamlit gives widgets on different pages different identities and drops a widget's value
    when it is not rendered, so the value lives under a plain key, copied into the widget's key
    before it is drawn and back by :func:`_sync` when the user changes it.
    """
    wkey = f"_w_{key}"
    if key in st.session_state:
        st.session_state[wkey] = st.session_state[key]
    return wkey


def _sync(key: str) -> None:
    st.session_state[key] = st.session_state[f"_w_{key}"]


def kept(dg: Any, widget: str, label: str, key: str, **kwargs: Any) -> Any:
    """Draw ``dg.<widget>`` whose value persists under ``key`` (see :func:`persistent`)."""
    if key in st.session_state:  # the remembered value wins over the default
        for default in ("value", "default", "index"):
            kwargs.pop(default, None)
    value = getattr(dg, widget)(label, key=persistent(key), on_change=_sync, args=(key,), **kwargs)
    st.session_state[key] = value
    return value


def _clamp_range(key: str, lo: float, hi: float) -> None:
    """Keep a remembered (low, high) inside the slider's bounds (the data may have changed).

    A range left at the previous bounds (the user never narrowed it) follows the new bounds;
    clamping it would turn it into a filter that silently drops subjects outside the old range.
    """
    bounds_key = f"_bounds_{key}"
    previous = st.session_state.get(bounds_key)
    st.session_state[bounds_key] = (lo, hi)
    value = st.session_state.get(key)
    if value is None:
        return
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        st.session_state.pop(key, None)
        return
    if previous is not None and (min(a, b), max(a, b)) == tuple(previous):
        st.session_state[key] = (lo, hi)
        return
    a, b = (min(max(v, lo), hi) for v in (a, b))
    st.session_state[key] = (min(a, b), max(a, b))


def clear_filters() -> None:
    for k in [k for k in st.session_state
              if str(k).startswith(FILTER_PREFIX) or str(k).startswith(f"_w_{FILTER_PREFIX}")]:
        del st.session_state[k]


def _numeric_range(box, table: pd.DataFrame, active: list[Filter], col: str, label: str,
                   key: str) -> None:
    """A range slider over a numeric column; a narrowed range becomes a filter."""
    if col not in table.columns:
        return
    values = pd.to_numeric(table[col], errors="coerce")
    if values.notna().sum() < 2 or values.min() == values.max():
        return
    lo, hi = float(np.floor(values.min())), float(np.ceil(values.max()))
    _clamp_range(f"{FILTER_PREFIX}{key}", lo, hi)
    sel = kept(box, "slider", label, f"{FILTER_PREFIX}{key}", min_value=lo, max_value=hi,
               value=(lo, hi))
    if tuple(sel) != (lo, hi):
        active.append(Filter(col, label.split(" (")[0], "range", low=sel[0], high=sel[1]))


def _clinical_filters(box, table: pd.DataFrame, active: list[Filter]) -> None:
    """IDH status first, then survival, age, sex, event and tumour volume."""
    if IDH in table.columns:
        idh = table[IDH].fillna("unknown").astype(str)
        options = ["all"] + sorted(idh.unique())
        choice = kept(box, "radio", "IDH status", f"{FILTER_PREFIX}idh", options=options,
                      horizontal=True)
        if choice != "all":
            active.append(Filter(IDH, "IDH", "in", values=(choice,)))
    _numeric_range(box, table, active, SURVIVAL, "Survival (months)", "survival")
    _numeric_range(box, table, active, "age", "Age (years)", "age")
    if "sex" in table.columns:
        sexes = sorted(table["sex"].fillna("unknown").astype(str).unique())
        if len(sexes) > 1:
            sel = kept(box, "multiselect", "Sex", f"{FILTER_PREFIX}sex", options=sexes,
                       default=sexes)
            if set(sel) != set(sexes):
                active.append(Filter("sex", "sex", "in", values=tuple(sel)))
    if EVENT in table.columns:
        ev = kept(box, "radio", "Event", f"{FILTER_PREFIX}event",
                  options=["all", "died", "censored"], horizontal=True,
                  help="died = death observed (event 1); censored = alive at last follow-up")
        if ev != "all":
            active.append(Filter(EVENT, "event", "equals", value=1 if ev == "died" else 0))
    _numeric_range(box, table, active, "tumor_volume", "Tumour volume (mm³)", "volume")


def _column_filters(box, table: pd.DataFrame, active: list[Filter]) -> None:
    """"More filters": a slider or a multiselect on any other clinical or feature column."""
    used = {SURVIVAL, IDH, "age", "sex", EVENT, "tumor_volume", *NON_DATA_COLUMNS}
    empty = set(empty_columns(table))  # nothing to filter on (e.g. VASARI F19-F22 unset)
    others = [c for c in table.columns if c not in used and c not in empty]
    remembered = st.session_state.get(f"{FILTER_PREFIX}more")
    if isinstance(remembered, list) and not set(remembered) <= set(others):
        st.session_state[f"{FILTER_PREFIX}more"] = [c for c in remembered if c in others]
    more = kept(box, "multiselect", "More filters (any column)", f"{FILTER_PREFIX}more",
                options=others, help="Add a filter on any clinical or feature column.")
    for col in more:
        if pd.api.types.is_numeric_dtype(table[col]):
            values = table[col]
            if values.notna().sum() < 2 or values.min() == values.max():
                box.caption(f"{col}: fewer than two distinct values, no filter")
                continue
            lo, hi = float(values.min()), float(values.max())
            _clamp_range(f"{FILTER_PREFIX}col_{col}", lo, hi)
            sel = kept(box, "slider", col, f"{FILTER_PREFIX}col_{col}", min_value=lo,
                       max_value=hi, value=(lo, hi))
            if tuple(sel) != (lo, hi):
                active.append(Filter(col, col, "range", low=sel[0], high=sel[1]))
        else:
            vals = sorted(table[col].fillna("unknown").astype(str).unique())
            sel = kept(box, "multiselect", col, f"{FILTER_PREFIX}col_{col}", options=vals,
                       default=vals)
            if set(sel) != set(vals):
                active.append(Filter(col, col, "in", values=tuple(sel)))


def filter_widgets(table: pd.DataFrame, cohort_id: str) -> tuple[pd.DataFrame, list[Filter]]:
    """The filter widgets (IDH status first), the rows they keep and the active filters."""
    previous = st.session_state.get("_flt_cohort")
    if previous is not None and previous != cohort_id:  # another cohort: its own filters
        clear_filters()
    st.session_state["_flt_cohort"] = cohort_id
    if table.empty:
        return table, []
    active: list[Filter] = []
    box = st.sidebar.container(border=True)
    box.markdown("**Filters** (apply on every page; analyses of survival leave the outcome "
                 "filters out unless asked)")
    _clinical_filters(box, table, active)
    _column_filters(box, table, active)
    post = guarantee_time_filters(active)
    if post:
        box.caption(", ".join(f"`{f.column}`" for f in post) + " is known only after baseline: an "
                    "outcome filter (guarantee-time bias); the survival analyses leave it out "
                    "unless asked.")
    return apply_filters(table, active), active
