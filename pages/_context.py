"""The page context: the cohort picker and results picker in the sidebar, rendered once per
run by ``app.py`` (so the widgets keep their values on every page), and :class:`Context`, what a
page reads (settings, store, the whole cohort table and its filtered rows)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from gliocore.analysis.filters import Filter, apply_filters, outcome_filters
from gliocore.settings import Settings
from gliocore.store.database import Store, is_busy_error
from pages._columns import ID, LOCATION_PREFIXES, NON_DATA_COLUMNS, OUTCOME_COLUMNS, empty_columns
from pages._filters import clear_filters, filter_widgets, kept
from pages._loaders import (
    db_stamp,
    get_settings,
    get_store,
    load_cohorts,
    load_configs,
    load_status,
    load_table,
)

CONTEXT_KEY = "_glioscope_context"
FRESH_KEY = "_glioscope_context_fresh"
LEFT_LEGACY_KEY = "_glioscope_left_legacy_navigation"
PENDING_COHORT = "_glioscope_pending_cohort"


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
        """Active filters on the outcome (survival, PFS, and every post-baseline column)."""
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
    cid = kept(st.sidebar, "selectbox", "Cohort", "active_cohort", options=ids,
                format_func=names.get,
                help="Switch between the cohorts in the store; load a new one on the Cohort page.")
    ctx.cohort_id = cid
    ctx.cohort = cohorts.set_index("cohort_id").loc[cid].to_dict()
    ctx.configs = load_configs(db, stamp, cid)
    ctx.config_key = _results_picker(ctx.configs)
    ctx.table = load_table(db, stamp, cid, ctx.config_key)
    ctx.filtered, ctx.filters = filter_widgets(ctx.table, cid)
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
    return kept(st.sidebar, "selectbox", "Results from", "active_config", options=keys,
                 format_func=lambda k: labels.get(k, k),
                 help="The cohort was processed with more than one segmentation backend or "
                      "radiomics parameter set; every page shows the one chosen here.")


def _remember(ctx: Context) -> Context:
    st.session_state[CONTEXT_KEY] = ctx
    st.session_state[FRESH_KEY] = True
    return ctx


def _store_problem(db: str, exc: Exception) -> str:
    text = str(exc)
    if is_busy_error(exc):  # the word "lock", not the letters: a corrupt file's "block" is not busy
        return (f"The store {db} is in use by another process (a `gliocore process` run?). "
                "Reload the page when it has finished.")
    return f"Cannot read the store {db}: {text}"
