"""Cached reads of atlas location results for the Viewer and the Location page (page edge only)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages._loaders import get_store


@st.cache_data(show_spinner=False, max_entries=8)
def load_location_sets(db: str, stamp: str, cohort_id: str, config_key: str | None = None
                       ) -> pd.DataFrame:
    """Per subject: atlas, space, registration quality, atlas-space mask path."""
    from gliocore.location.localise import CODE_VERSION
    return get_store(db).location_sets_of(cohort_id, config_key, CODE_VERSION)


@st.cache_data(show_spinner=False, max_entries=4)
def load_location_long(db: str, stamp: str, cohort_id: str, config_key: str | None = None
                       ) -> pd.DataFrame:
    from gliocore.location.localise import CODE_VERSION
    return get_store(db).location_long(cohort_id, config_key, CODE_VERSION)


@st.cache_data(show_spinner="Placing the atlas regions on this subject…", max_entries=16)
def load_region_labels(atlas: str, space: str, mask_path: str, transforms_json: str | None
                       ) -> np.ndarray:
    """Atlas region labels on the subject's grid, RAS+ oriented like the viewer's volumes."""
    import nibabel as nib

    from gliocore.location.localise import subject_region_labels
    from gliocore.analysis.plots import to_ras
    labels = subject_region_labels(atlas, space, mask_path, transforms_json)
    return to_ras(labels, nib.load(mask_path).affine)[0]


@st.cache_data(show_spinner="Building the lesion-frequency map…", max_entries=8)
def load_frequency_map(paths: tuple[str, ...], tumour_class: str, factor: int
                       ) -> tuple[np.ndarray, int]:
    from gliocore.analysis.lesion_map import frequency_map
    return frequency_map(list(paths), tumour_class, factor)


@st.cache_resource(show_spinner="Loading the atlas…")
def load_atlas(name: str):
    from gliocore.imaging.atlas import load_atlas as _load
    return _load(name)
