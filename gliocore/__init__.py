"""gliocore: the processing package behind GlioScope.

Glioma MRI cohorts (four co-registered sequences per subject plus a clinical table) are
segmented into two tumour classes kept by name, described with PyRadiomics features, cached
in DuckDB and analysed for survival. This package never imports Streamlit; the dashboard
(``app.py`` and ``pages/``) composes calls into it.

One sub-package per concept; imports run one way (pages/CLI -> pipeline, validation, analysis ->
store and the steps ``segment``, ``features``, ``location``, ``longitudinal`` -> ``cohort`` ->
``imaging`` -> the vocabulary ``types``, ``errors``, ``settings``, ``versions``), checked by
``tests/test_layout.py``.
"""
from __future__ import annotations

__version__ = "0.1.0"
