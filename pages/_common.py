"""The dashboard's thin shared layer: cached loaders, the cohort picker, the shared filters.

Every page imports this module; ``gliocore`` never imports Streamlit. What lives here:

* :func:`get_store` — the :class:`~gliocore.store.database.Store`, one per DuckDB file
  (``st.cache_resource``);
* ``load_*`` — cached reads from the store (``st.cache_data``), keyed by the DuckDB path, a
  *stamp* of the file (mtime and size of the file and its WAL, so a write by the CLI or by the
  Process button invalidates them) and the cohort id — never by ``_``-prefixed objects;
* :func:`load_volume_array` — voxel arrays keyed by file path and mtime, so moving a slice
  slider never reloads a volume;
* :func:`sidebar` — the cohort picker and the filters (IDH status first), rendered once per run
  by ``app.py`` (the entry point, so the widgets keep their values on every page), and
  :func:`context` — what a page reads: the whole cohort table and its filtered rows;
* :func:`page_header` — the title, "n of N subjects" and the segmentation backend/version line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from gliocore.analysis.filters import Filter, apply_filters, outcome_filters
from gliocore.settings import Settings
from gliocore.store.database import Store

ID = "SUBJECT ID"
SURVIVAL = "Survival(months)"
IDH = "IDH-status"
EVENT = "event"
#: Progression-free survival (cohorts with follow-up scans; see gliocore.longitudinal.response).
PFS = "PFS(months)"
PFS_EVENT = "PFS_event"
#: Survival endpoints a page can analyse: label -> (time column, event column, event word).
ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "Overall survival": (SURVIVAL, EVENT, "deaths"),
    "Progression-free survival": (PFS, PFS_EVENT, "progressions or deaths"),
}
#: Per-subject columns derived from follow-up scans (outcomes, never covariates).
LONGITUDINAL_COLUMNS = ("n_scans", "followup_months", "response_target", "best_response",
                        "best_pct_change", "progression_months", "pfs_reason")
#: The outcome: a filter on these selects subjects by what the survival analyses study.
OUTCOME_COLUMNS = (SURVIVAL, EVENT, PFS, PFS_EVENT)
#: Clinical columns that are identifiers or paths, never filters or features.
NON_DATA_COLUMNS = (ID, "img_dir", "has_images")
#: Wide-table columns written by the location stage (gliocore.analysis.export.location_wide).
LOCATION_PREFIXES = ("loc_", "vasari_")
CONTEXT_KEY = "_glioscope_context"
FRESH_KEY = "_glioscope_context_fresh"
LEFT_LEGACY_KEY = "_glioscope_left_legacy_navigation"
PENDING_COHORT = "_glioscope_pending_cohort"
FILTER_PREFIX = "flt_"


# -- settings and the store ---------------------------------------------------------------------
def get_settings() -> Settings:
    """The run's :class:`Settings` (built by ``app.py``; from the environment otherwise)."""
    return st.session_state.get("_glioscope_settings") or Settings.from_env()


@st.cache_resource(show_spinner=False)
def get_store(db_path: str) -> Store:
    """One :class:`Store` per DuckDB file, shared by sessions (connections are short-lived)."""
    return Store(db_path, lock_timeout=5.0)


def db_stamp(db_path: str | Path) -> str:
    """Changes whenever the DuckDB file (or its WAL) is written: the key of every cached read."""
    parts = []
    for p in (Path(db_path), Path(f"{db_path}.wal"), Path(f"{db_path}.snapshot")):
        try:
            s = p.stat()
            parts.append(f"{s.st_mtime_ns}:{s.st_size}")
        except FileNotFoundError:
            parts.append("-")
    return "|".join(parts)


# -- cached reads ---------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=8)
def load_cohorts(db: str, stamp: str) -> pd.DataFrame:
    return get_store(db).cohorts()


@st.cache_data(show_spinner=False, max_entries=8)
def load_table(db: str, stamp: str, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
    """The seed's wide table (clinical + features + tumor_volume), every clinical subject."""
    from gliocore.analysis.export import seed_table
    return seed_table(get_store(db), cohort_id, config_key)


@st.cache_data(show_spinner=False, max_entries=8)
def load_response(db: str, stamp: str, cohort_id: str, config_key: str | None = None,
                  confirm: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-scan assessment, per-subject summary and PFS (volumetric RANO 2.0)."""
    from gliocore.analysis.export import cohort_response_of
    from gliocore.longitudinal.response import ResponseCriteria
    r = cohort_response_of(get_store(db), cohort_id, config_key, ResponseCriteria(confirm=confirm))
    return r.scans, r.subjects, r.pfs


@st.cache_data(show_spinner=False, max_entries=8)
def load_scans(db: str, stamp: str, cohort_id: str) -> pd.DataFrame:
    """Every scan of a cohort (subject_id, scan_id, days, scan_order, folder)."""
    return get_store(db).scans(cohort_id)


@st.cache_data(show_spinner=False, max_entries=64)
def load_scan_files(db: str, stamp: str, cohort_id: str, subject_id: str, scan_id: str
                    ) -> dict[str, str]:
    return get_store(db).scan_images(cohort_id, subject_id, scan_id)


def endpoint_picker(ctx: "Context", key: str, dg: Any = None) -> tuple[str, str, str, str]:
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
                                      "at the last scan (see the Progression page).")
    return (label, *ENDPOINTS[label])


@st.cache_data(show_spinner=False, max_entries=8)
def load_status(db: str, stamp: str, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
    return get_store(db).status(cohort_id, config_key)


@st.cache_data(show_spinner=False, max_entries=8)
def load_errors(db: str, stamp: str, cohort_id: str) -> pd.DataFrame:
    return get_store(db).errors(cohort_id)


@st.cache_data(show_spinner=False, max_entries=8)
def load_runs(db: str, stamp: str, cohort_id: str) -> pd.DataFrame:
    return get_store(db).runs(cohort_id)


@st.cache_data(show_spinner=False, max_entries=8)
def load_segmentations(db: str, stamp: str, cohort_id: str, config_key: str | None = None
                       ) -> pd.DataFrame:
    return get_store(db).segmentations_of(cohort_id, config_key)


@st.cache_data(show_spinner=False, max_entries=8)
def load_image_stats(db: str, stamp: str, cohort_id: str) -> pd.DataFrame:
    return get_store(db).image_stats(cohort_id)


@st.cache_data(show_spinner=False, max_entries=8)
def load_scan_qc(db: str, stamp: str, cohort_id: str, config_key: str | None = None
                 ) -> pd.DataFrame:
    """QC metrics of every scan (baseline and follow-ups), per scan and region."""
    return get_store(db).scan_qc_metrics(cohort_id, config_key)


@st.cache_data(show_spinner=False, max_entries=8)
def load_scan_results(db: str, stamp: str, cohort_id: str, config_key: str | None
                      ) -> pd.DataFrame:
    """Per scan: keys, mask path and class volumes under a configuration."""
    return get_store(db).scan_results(cohort_id, config_key)


@st.cache_data(show_spinner=False, max_entries=8)
def load_configs(db: str, stamp: str, cohort_id: str) -> pd.DataFrame:
    """Configurations (backend + radiomics params) with results in the cohort, newest first."""
    return get_store(db).configs(cohort_id)


@st.cache_data(show_spinner="Comparing segmentations…", max_entries=16)
def compare_configs(db: str, stamp: str, cohort_id: str, config_a: str, config_b: str
                    ) -> pd.DataFrame:
    """Per subject and region: configuration A's masks scored against configuration B's."""
    from gliocore.segment.qc import compare_mask_files
    a = load_segmentations(db, stamp, cohort_id, config_a)
    b = load_segmentations(db, stamp, cohort_id, config_b)
    pairs = dict(zip(a["subject_id"], a["path"]))
    return compare_mask_files({sid: (pairs[sid], path) for sid, path in zip(b["subject_id"], b["path"])
                               if sid in pairs})


@st.cache_data(show_spinner=False, max_entries=64)
def load_subject_files(db: str, stamp: str, cohort_id: str, subject_id: str
                       ) -> tuple[dict[str, str], str | None]:
    """A subject's sequence files and its reference mask (or None)."""
    store = get_store(db)
    return store.subject_images(cohort_id, subject_id), store.reference_mask(cohort_id, subject_id)


@st.cache_data(ttl=300, show_spinner=False)
def available_backends() -> dict[str, str | None]:
    """Segmentation backend -> None when it can run here, else why not (checked every 5 min)."""
    from gliocore.segment import available_segmenters
    return available_segmenters()


def file_mtime(path: str | None) -> int:
    try:
        return os.stat(path).st_mtime_ns if path else 0
    except OSError:
        return 0


@st.cache_data(show_spinner=False, max_entries=30)
def load_volume_array(path: str, mtime_ns: int, is_mask: bool = False
                      ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A volume in RAS+ orientation and its spacing, for display.

    Masks are uint8; images float16 (ample for an 8-bit display, half the memory and copy time
    of float32) unless their values exceed float16's range. Keyed by path and mtime: a slice
    slider re-reads the cache, never the file.
    """
    from gliocore.imaging.io import load_volume
    from gliocore.analysis.plots import to_ras
    vol = load_volume(path, dtype=np.uint8 if is_mask else np.float32)
    data, spacing = to_ras(vol.data, vol.affine)
    if not is_mask and data.size and float(np.abs(data).max()) < 6e4:
        data = data.astype(np.float16)
    return data, spacing


def empty_columns(table: pd.DataFrame, columns: list[str] | None = None) -> list[str]:
    """The columns of ``table`` (or of ``columns``) without a value in any row."""
    cols = list(table.columns) if columns is None else [c for c in columns if c in table.columns]
    if table.empty:
        return cols
    has = table[cols].notna().any(axis=0)
    return [c for c in cols if not bool(has[c])]


def empty_features_note(ctx: "Context", dg: Any = None) -> None:
    """Say which feature columns the pickers leave out because no subject has a value."""
    empty = ctx.empty_feature_columns()
    if empty:
        shown = ", ".join(f"`{c}`" for c in empty[:12]) + (" …" if len(empty) > 12 else "")
        (dg or st).caption(f"Not offered: {len(empty)} feature column(s) without a value in any "
                           f"of the cohort's {ctx.n_total} subjects ({shown}).")


# -- the shared context ---------------------------------------------------------------------------
@dataclass
class Context:
    """What a page reads: the active cohort's table, its filtered rows and provenance."""

    settings: Settings
    db: str
    stamp: str
    cohorts: pd.DataFrame
    cohort_id: str | None = None
    cohort: dict[str, Any] | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    filtered: pd.DataFrame = field(default_factory=pd.DataFrame)
    filters_active: list[str] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    store_error: str | None = None
    config_key: str | None = None
    configs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n(self) -> int:
        return len(self.filtered)

    @property
    def n_total(self) -> int:
        return len(self.table)

    @property
    def subject_ids(self) -> list[str]:
        return [] if self.filtered.empty else self.filtered[ID].astype(str).tolist()

    @property
    def has_features(self) -> bool:
        """Whether any subject of the cohort has a feature set in the store."""
        return bool(self.processed_ids())

    def processed_ids(self) -> set[str]:
        """Subjects the store has features for under the shown configuration (its status), not
        whether a value such as ``tumor_volume`` is present."""
        if not self.cohort_id:
            return set()
        status = load_status(self.db, self.stamp, self.cohort_id, self.config_key)
        if status.empty or "features" not in status:
            return set()
        return set(status.loc[status["features"].fillna(False).astype(bool), "subject_id"]
                   .astype(str))

    def _feature_like_columns(self) -> list[str]:
        """Every feature column of the wide table, the all-empty ones included."""
        from gliocore.analysis.export import is_location_feature
        return [c for c in self.table.columns
                if (c.endswith("_label1") or c.endswith("_label2") or c == "tumor_volume"
                    or is_location_feature(c))  # atlas location (gliocore.analysis.export)
                and (pd.api.types.is_numeric_dtype(self.table[c])
                     or self.table[c].isna().all())]

    def feature_columns(self) -> list[str]:
        """Numeric radiomics columns of the wide table (``*_label1``, ``*_label2``, tumor_volume)
        and the atlas-location features (:func:`gliocore.analysis.export.is_location_feature`) that
        have a value in at least one subject of the cohort: a column empty in every subject
        (e.g. VASARI F19–F22 when no subject's segmentation decides them) is no use to a picker
        and is listed by :meth:`empty_feature_columns` instead."""
        columns = self._feature_like_columns()
        empty = set(empty_columns(self.table, columns))
        return [c for c in columns if c not in empty]

    def empty_feature_columns(self) -> list[str]:
        """Feature columns without a value in any subject of the cohort (hidden from pickers)."""
        return empty_columns(self.table, self._feature_like_columns())

    def outcome_filters(self) -> list[Filter]:
        """Active filters on the outcome (survival range, event)."""
        return outcome_filters(self.filters, OUTCOME_COLUMNS)

    def without_outcome_filters(self) -> pd.DataFrame:
        """The rows every active filter keeps, the outcome filters left out."""
        return apply_filters(self.table, self.filters, skip_columns=OUTCOME_COLUMNS)

    def clinical_columns(self) -> list[str]:
        """The clinical table's columns (and per-subject follow-up summaries): not features,
        not identifiers, and not the atlas-location results (``loc_*``, ``vasari_*``: about a
        hundred per subject, of which the pickers offer :meth:`feature_columns`' selection)."""
        feats = set(self._feature_like_columns())
        return [c for c in self.table.columns if c not in feats and c not in NON_DATA_COLUMNS
                and not c.startswith(LOCATION_PREFIXES)]

    def store(self) -> Store:
        return get_store(self.db)


def context() -> Context:
    """The context computed by this run's :func:`sidebar` (rendering it when a page runs alone)."""
    # ``app.py`` renders the sidebar before running the page and leaves a flag; a page run on its
    # own (AppTest reruns a page file directly) renders it here instead.
    if st.session_state.pop(FRESH_KEY, False) and CONTEXT_KEY in st.session_state:
        return st.session_state[CONTEXT_KEY]
    _leave_legacy_navigation()
    ctx = sidebar(get_settings())
    st.session_state.pop(FRESH_KEY, None)
    return ctx


def _leave_legacy_navigation() -> None:
    """Rerun through ``app.py`` when Streamlit ran this page in its legacy ``pages/`` mode.

    Streamlit (1.67) decides per process, before any script runs, that an entry script with a
    ``pages/`` folder beside it is a legacy multipage app; it drops that mode only once
    ``st.navigation`` has been called. So the first browser to reach a freshly started server on
    a deep link (``/qc``, a bookmark, a tab reconnecting after a restart) got the page file run
    alone under a sidebar listing the raw files ("app", "about", "atlas", "common", ...), and so
    did every deep link after it until someone opened the root URL. Here the page notices that
    (the legacy flag is still set, ``app.py`` did not run), turns the legacy mode off and reruns:
    the rerun goes through ``app.py``'s ``st.navigation`` and lands on the same page (both modes
    key a page by its URL path), with the titled navigation groups.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the legacy mode
        return
    # Once per session: AppTest runs a page file directly on every rerun after ``switch_page`` (and
    # sets the flag again), where a rerun would swallow a widget event such as a button click.
    if PagesManager.uses_pages_directory and not st.session_state.get(LEFT_LEGACY_KEY):
        st.session_state[LEFT_LEGACY_KEY] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


def sidebar(settings: Settings) -> Context:
    """Render the cohort picker and the filters in the sidebar; return the page context."""
    st.session_state["_glioscope_settings"] = settings
    db = str(settings.db)
    stamp = db_stamp(db)
    try:
        cohorts = load_cohorts(db, stamp)
    except Exception as exc:  # locked by another process, unreadable file, old schema
        ctx = Context(settings, db, stamp, pd.DataFrame(), store_error=_store_problem(db, exc))
        st.sidebar.error(ctx.store_error)
        return _remember(ctx)
    ctx = Context(settings, db, stamp, cohorts)
    if cohorts.empty:
        st.sidebar.info("No cohort yet: open **Cohort** to load one or generate the demo.")
        return _remember(ctx)

    ids = cohorts["cohort_id"].astype(str).tolist()
    pending = st.session_state.pop(PENDING_COHORT, None)
    if pending in ids:
        st.session_state["active_cohort"] = pending
    elif st.session_state.get("active_cohort") not in ids:
        st.session_state["active_cohort"] = ids[0]
    names = {r.cohort_id: f"{r.name} · {r.n_subjects} subjects" for r in cohorts.itertuples()}
    cid = _kept(st.sidebar, "selectbox", "Cohort", "active_cohort", options=ids,
                format_func=names.get,
                help="Switch between the cohorts in the store; load a new one on the Cohort page.")
    ctx.cohort_id = cid
    ctx.cohort = cohorts.set_index("cohort_id").loc[cid].to_dict()
    ctx.configs = load_configs(db, stamp, cid)
    ctx.config_key = _results_picker(ctx.configs)
    ctx.table = load_table(db, stamp, cid, ctx.config_key)
    ctx.filtered, ctx.filters = _filters(ctx.table, cid)
    ctx.filters_active = [f.label for f in ctx.filters]
    n, total = ctx.n, ctx.n_total
    st.sidebar.markdown(f"**{n} of {total} subjects**"
                        + (f" · filtered by {', '.join(ctx.filters_active)}" if ctx.filters_active else ""))
    if ctx.filters_active:
        st.sidebar.button("Clear filters", on_click=clear_filters, key="clear_filters")
    return _remember(ctx)


def config_label(row: Any) -> str:
    """One line naming a configuration: backend, version, radiomics params, subjects."""
    return (f"{row.backend} v{row.backend_version} · params {str(row.params_fingerprint)[:8]} · "
            f"{row.n_subjects} subjects")


def _results_picker(configs: pd.DataFrame) -> str | None:
    """Which results to show when the cohort was processed more than one way (default: newest)."""
    if len(configs) < 2:
        st.session_state.pop("active_config", None)
        return None if configs.empty else str(configs.iloc[0]["config_key"])
    keys = configs["config_key"].astype(str).tolist()
    if st.session_state.get("active_config") not in keys:
        st.session_state["active_config"] = keys[0]
    labels = {str(r.config_key): config_label(r) for r in configs.itertuples()}
    return _kept(st.sidebar, "selectbox", "Results from", "active_config", options=keys,
                 format_func=lambda k: labels.get(k, k),
                 help="The cohort was processed with more than one segmentation backend or "
                      "radiomics parameter set; every page shows the one chosen here.")


def _remember(ctx: Context) -> Context:
    st.session_state[CONTEXT_KEY] = ctx
    st.session_state[FRESH_KEY] = True
    return ctx


def _store_problem(db: str, exc: Exception) -> str:
    text = str(exc)
    if "lock" in text.lower():
        return (f"The store {db} is in use by another process (a `gliocore process` run?). "
                "Reload the page when it has finished.")
    return f"Cannot read the store {db}: {text}"


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


def _kept(dg: Any, widget: str, label: str, key: str, **kwargs: Any) -> Any:
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


def _filters(table: pd.DataFrame, cohort_id: str) -> tuple[pd.DataFrame, list[Filter]]:
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

    if IDH in table.columns:
        idh = table[IDH].fillna("unknown").astype(str)
        options = ["all"] + sorted(idh.unique())
        choice = _kept(box, "radio", "IDH status", f"{FILTER_PREFIX}idh", options=options,
                       horizontal=True)
        if choice != "all":
            active.append(Filter(IDH, "IDH", "in", values=(choice,)))

    def numeric_range(col: str, label: str, key: str) -> None:
        if col not in table.columns:
            return
        values = pd.to_numeric(table[col], errors="coerce")
        if values.notna().sum() < 2 or values.min() == values.max():
            return
        lo, hi = float(np.floor(values.min())), float(np.ceil(values.max()))
        _clamp_range(f"{FILTER_PREFIX}{key}", lo, hi)
        sel = _kept(box, "slider", label, f"{FILTER_PREFIX}{key}", min_value=lo, max_value=hi,
                    value=(lo, hi))
        if tuple(sel) != (lo, hi):
            active.append(Filter(col, label.split(" (")[0], "range", low=sel[0], high=sel[1]))

    numeric_range(SURVIVAL, "Survival (months)", "survival")
    numeric_range("age", "Age (years)", "age")
    if "sex" in table.columns:
        sexes = sorted(table["sex"].fillna("unknown").astype(str).unique())
        if len(sexes) > 1:
            sel = _kept(box, "multiselect", "Sex", f"{FILTER_PREFIX}sex", options=sexes,
                        default=sexes)
            if set(sel) != set(sexes):
                active.append(Filter("sex", "sex", "in", values=tuple(sel)))
    if EVENT in table.columns:
        ev = _kept(box, "radio", "Event", f"{FILTER_PREFIX}event",
                   options=["all", "died", "censored"], horizontal=True,
                   help="died = death observed (event 1); censored = alive at last follow-up")
        if ev != "all":
            active.append(Filter(EVENT, "event", "equals", value=1 if ev == "died" else 0))
    numeric_range("tumor_volume", "Tumour volume (mm³)", "volume")

    used = {SURVIVAL, IDH, "age", "sex", EVENT, "tumor_volume", *NON_DATA_COLUMNS}
    empty = set(empty_columns(table))  # nothing to filter on (e.g. VASARI F19-F22 unset)
    others = [c for c in table.columns if c not in used and c not in empty]
    remembered = st.session_state.get(f"{FILTER_PREFIX}more")
    if isinstance(remembered, list) and not set(remembered) <= set(others):
        st.session_state[f"{FILTER_PREFIX}more"] = [c for c in remembered if c in others]
    more = _kept(box, "multiselect", "More filters (any column)", f"{FILTER_PREFIX}more",
                 options=others, help="Add a filter on any clinical or feature column.")
    for col in more:
        if pd.api.types.is_numeric_dtype(table[col]):
            values = table[col]
            if values.notna().sum() < 2 or values.min() == values.max():
                box.caption(f"{col}: fewer than two distinct values, no filter")
                continue
            lo, hi = float(values.min()), float(values.max())
            _clamp_range(f"{FILTER_PREFIX}col_{col}", lo, hi)
            sel = _kept(box, "slider", col, f"{FILTER_PREFIX}col_{col}", min_value=lo,
                        max_value=hi, value=(lo, hi))
            if tuple(sel) != (lo, hi):
                active.append(Filter(col, col, "range", low=sel[0], high=sel[1]))
        else:
            vals = sorted(table[col].fillna("unknown").astype(str).unique())
            sel = _kept(box, "multiselect", col, f"{FILTER_PREFIX}col_{col}", options=vals,
                        default=vals)
            if set(sel) != set(vals):
                active.append(Filter(col, col, "in", values=tuple(sel)))
    return apply_filters(table, active), active


# -- page furniture -------------------------------------------------------------------------------
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

    A filter on the outcome (survival range, event) conditions the analysis on its own result:
    a Kaplan–Meier curve of deaths only has no censoring and falls to 0, a survival range
    truncates the curves and makes short/long classes trivially separable. So, on the pages that
    analyse survival, such filters are **left out by default** (the other filters apply), with a
    visible warning and a toggle (``key``) to apply them anyway, e.g. for a deliberate
    conditional analysis.
    """
    active = ctx.outcome_filters()
    if not active:
        return ctx.filtered
    names = ", ".join(f"**{f.label}**" for f in active)
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
                   "never shows censoring; a survival range truncates the curves).",
                   icon=":material/warning:")
    else:
        box.warning(f"Outcome filter(s) {names} **not applied** on {what}: they select subjects "
                   "by the outcome analysed here, which biases every estimate (a Kaplan–Meier "
                   "curve of deaths only never shows censoring; a survival range truncates the "
                   f"curves). Using {len(rows)} subjects (the other filters apply) instead of the "
                   f"{ctx.n} the sidebar selects.", icon=":material/warning:")
    return rows


def ids_key(ids: list[str]) -> str:
    """A compact, hashable key of a subject list (for cached analyses)."""
    from hashlib import sha1
    return sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]


COHORT_PAGE = "pages/cohort.py"
