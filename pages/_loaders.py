"""Cached reads for the pages: the store (one per DuckDB file, ``st.cache_resource``) and
``load_*`` wrappers over gliocore calls (``st.cache_data``), keyed by the DuckDB path, a *stamp*
of the file (mtime and size of the file and its WAL, so a write by the CLI or by the Process
button invalidates them) and the cohort id, never by ``_``-prefixed objects;
:func:`load_volume_array` keys voxel arrays by path and mtime, so moving a slice slider never
reloads a volume."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from gliocore.settings import Settings
from gliocore.store.database import Store


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
    from gliocore.analysis.plots import to_ras
    from gliocore.imaging.io import load_volume
    vol = load_volume(path, dtype=np.uint8 if is_mask else np.float32)
    data, spacing = to_ras(vol.data, vol.affine)
    if not is_mask and data.size and float(np.abs(data).max()) < 6e4:
        data = data.astype(np.float16)
    return data, spacing


@st.cache_data(show_spinner=False, max_entries=8)
def load_preprocess_status(out_root: str, stamp: str) -> pd.DataFrame:
    """Preprocessing per scan of a cohort (its ``data/preprocessed/<cohort>/`` folder)."""
    from gliocore.pipeline.prepare import status_table
    return pd.DataFrame(status_table(out_root))
