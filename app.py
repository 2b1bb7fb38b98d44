"""GlioScope dashboard: ``streamlit run app.py``.

The entry point only routes: it builds the run's :class:`~gliocore.settings.Settings` (from
``$GLIOSCOPE_DATA`` / ``$GLIOSCOPE_DB``), renders the shared sidebar (cohort picker and filters,
which therefore keep their values on every page) and runs the selected page from ``pages/``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `gliocore` and `pages._*` importable from any cwd
    sys.path.insert(0, str(ROOT))

from gliocore.settings import Settings  # noqa: E402
from pages import _context as page_context  # noqa: E402

LOG = logging.getLogger("glioscope")

PAGES = {
    "Data": [
        st.Page("pages/cohort.py", title="Cohort", icon=":material/folder_open:", default=True),
        st.Page("pages/viewer.py", title="Viewer", icon=":material/visibility:"),
        st.Page("pages/features.py", title="Features", icon=":material/table_chart:"),
    ],
    "Analysis": [
        st.Page("pages/survival.py", title="Survival", icon=":material/monitoring:"),
        st.Page("pages/classifiers.py", title="Classifiers", icon=":material/target:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("pages/progression.py", title="Progression", icon=":material/timeline:"),
        st.Page("pages/location.py", title="Location", icon=":material/location_on:"),
    ],
    "Quality": [
        st.Page("pages/qc.py", title="Segmentation QC", icon=":material/fact_check:"),
        st.Page("pages/about.py", title="About / Validation", icon=":material/info:"),
    ],
}

st.set_page_config(page_title="GlioScope", page_icon=":material/visibility:", layout="wide")
page = st.navigation(PAGES)
settings = Settings.from_env()
page_context.sidebar(settings)
try:
    page.run()
except Exception as exc:  # shown in the page as type and message; the traceback stays in the log
    LOG.exception("page %s failed", getattr(page, "url_path", page))
    st.error(f"This page hit an unexpected error: {type(exc).__name__}: {exc}. "
             "The other pages still work; the details (traceback) are in the server's log.")
