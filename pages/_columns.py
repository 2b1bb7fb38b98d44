"""Column vocabulary of the dashboard: the clinical columns every page names, the survival
endpoints, and which columns are outcomes, identifiers or atlas-location results."""
from __future__ import annotations

import pandas as pd

from gliocore.analysis import filters as _filters

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
LONGITUDINAL_COLUMNS = ("n_scans", "followup_months", "response_target", "response_rule",
                        "best_response", "best_pct_change", "progression_months", "pfs_reason",
                        "pfs_detail", "os_origin_to_baseline_days")
#: The outcome: a filter on these selects subjects by what the survival analyses study — the
#: survival and PFS columns and every column known only after baseline (guarantee-time bias;
#: gliocore.analysis.filters.OUTCOME_COLUMNS).
OUTCOME_COLUMNS = _filters.OUTCOME_COLUMNS
#: Clinical columns that are identifiers or paths, never filters or features.
NON_DATA_COLUMNS = (ID, "img_dir", "has_images")
#: Wide-table columns written by the location stage (gliocore.analysis.export.location_wide).
LOCATION_PREFIXES = ("loc_", "vasari_")


def empty_columns(table: pd.DataFrame, columns: list[str] | None = None) -> list[str]:
    """The columns of ``table`` (or of ``columns``) without a value in any row."""
    cols = list(table.columns) if columns is None else [c for c in columns if c in table.columns]
    if table.empty:
        return cols
    has = table[cols].notna().any(axis=0)
    return [c for c in cols if not bool(has[c])]
