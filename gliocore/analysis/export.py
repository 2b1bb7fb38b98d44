"""The seed-style wide table: one row per subject, clinical columns + features + tumour_volume.

A cohort with several scans per subject: the wide table is each subject's baseline (first)
scan, plus PFS and best response (:func:`add_longitudinal_endpoints`); :func:`scan_table` is the
long per-scan table (times, volumes, changes from baseline and nadir, volumetric RANO 2.0
category, and the scan's features).

Column names follow the seed notebook, with label 1 = contrast-enhancing and label 2 =
non-enhancing (GlioScope's canonical numbers, whatever the segmentation source called them):

=========================================  ===============================================
PyRadiomics feature                         wide column
=========================================  ===============================================
``original_shape_MeshVolume``               ``Volume_label{n}``
``original_shape_Maximum3DDiameter``        ``Max3DDiameter_label{n}``
``original_firstorder_Mean`` (sequence s)   ``{s}_MeanIntensity_label{n}``
``original_firstorder_Variance``            ``{s}_IntensityVariance_label{n}``
``original_gldm_GrayLevelNonUniformity``    ``{s}_GrayLevelNonUniformity_label{n}``
any other shape feature ``X``               ``{X}_label{n}`` (image type prefix kept if not original)
any other feature ``X`` of sequence s       ``{s}_{X}_label{n}``
=========================================  ===============================================

``tumor_volume`` = ``Volume_label1 + Volume_label2``.

``resegmentShape``. With PyRadiomics' ``resegmentShape: true`` (and a ``resegmentRange``)
shape depends on each sequence's intensities, so shape columns are per sequence
(``{seq}_Volume_label{n}``, ``{seq}_Max3DDiameter_label{n}``: the resegmented ROI). The seed
columns ``Volume_label{n}`` and ``tumor_volume`` then describe the segmentation mask itself
(voxel count x voxel volume), never one sequence's resegmented ROI; there is no
sequence-independent ``Max3DDiameter_label{n}`` in that mode.

Degenerate labels. A label PyRadiomics cannot measure (one voxel, a 1-D line) keeps missing
shape, intensity and texture values with the reason in the store, but its ``Volume_label{n}``
is its voxel-count volume (voxels x voxel volume, from the segmentation record), so the subject
keeps ``tumor_volume`` and the other class's features.

Empty labels. A class the segmentation did not find (its label is empty) has size 0: its
``Volume_label{n}`` is 0 mm³, its ``Max3DDiameter_label{n}`` 0 mm, and so are its other
size-type shape features (:data:`SIZE_FEATURES`). Its intensity and texture features stay
missing, and the store keeps the reason (``"label empty"``). So a tumour without enhancement
has ``Volume_label1`` 0, not missing, and every page and analysis (filters, Kaplan–Meier
splits, Cox, the survival screen, classifiers) sees that 0; a processed subject with no tumour
found has ``tumor_volume`` 0.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gliocore.location import vasari
from gliocore.location.localise import CODE_VERSION as LOCATION_VERSION
from gliocore.longitudinal.response import (DAYS_PER_MONTH, PFS_EVENT_COLUMN, PFS_TIME_COLUMN,
                               RANO2_VOLUMETRIC, CohortResponse, ResponseCriteria,
                               cohort_response)
from gliocore.store import Store
from gliocore.types import SEQUENCES, TumourClass

SEED_NAMES: dict[str, str] = {
    "original_shape_MeshVolume": "Volume",
    "original_shape_Maximum3DDiameter": "Max3DDiameter",
    "original_firstorder_Mean": "MeanIntensity",
    "original_firstorder_Variance": "IntensityVariance",
    "original_gldm_GrayLevelNonUniformity": "GrayLevelNonUniformity",
}
CLINICAL_FIRST = ("SUBJECT ID", "img_dir", "Survival(months)", "IDH-status", "age", "sex", "event")

#: The reason :mod:`gliocore.features.radiomics` gives for a label with no voxel.
EMPTY_LABEL = "label empty"
#: PyRadiomics shape features that measure size (volume, area, lengths): 0 for an empty label.
#: Ratios (Sphericity, Elongation, Flatness, SurfaceVolumeRatio) are undefined and stay missing.
SIZE_FEATURES = frozenset({
    "MeshVolume", "VoxelVolume", "SurfaceArea", "Maximum3DDiameter", "Maximum2DDiameterSlice",
    "Maximum2DDiameterColumn", "Maximum2DDiameterRow", "MajorAxisLength", "MinorAxisLength",
    "LeastAxisLength"})


def wide_column(tumour_class: str, sequence: str, feature: str) -> str:
    """The wide-table column name of one long-form feature row."""
    n = TumourClass(tumour_class).canonical_label
    short = SEED_NAMES.get(feature)
    if short is None:
        short = feature[len("original_"):] if feature.startswith("original_") else feature
        short = short.replace("shape_", "", 1) if not sequence else short
    return f"{sequence}_{short}_label{n}" if sequence else f"{short}_label{n}"


def _column_order(columns: list[str]) -> list[str]:
    """Seed order: per label, shape (Volume, Max3DDiameter, others), then per sequence
    (flair, t1, t1c, t2 as in the seed) Mean, Variance, GLNU, others."""
    seq_rank = {s: i for i, s in enumerate(sorted(SEQUENCES))}
    seed_rank = {name: i for i, name in enumerate(SEED_NAMES.values())}

    def key(col: str) -> tuple:
        head, _, label = col.rpartition("_label")
        seq, _, rest = head.partition("_")
        if seq in seq_rank:
            return (label, 1, seq_rank[seq], seed_rank.get(rest, 99), rest)
        return (label, 0, 0, seed_rank.get(head, 99), head)

    return sorted(columns, key=key)


def is_size_feature(feature: str) -> bool:
    """Whether a PyRadiomics key is a size-type shape feature (see :data:`SIZE_FEATURES`)."""
    head, sep, name = feature.rpartition("shape_")
    return bool(sep) and (head == "" or head.endswith("_")) and name in SIZE_FEATURES


def fill_empty_label_sizes(long: pd.DataFrame) -> pd.DataFrame:
    """Long-form features with the size features of empty labels set to 0.

    Rows whose value is missing because the label is empty (``reason == "label empty"``) and
    whose feature measures size (:func:`is_size_feature`) get ``value`` 0.0; the reason is
    kept. Every other row is returned unchanged (intensity/texture of an empty label stay
    missing).
    """
    if long.empty:
        return long
    empty = (long["value"].isna() & (long["reason"] == EMPTY_LABEL)
             & long["feature"].map(is_size_feature))
    if not empty.any():
        return long
    out = long.copy()
    out["value"] = out["value"].astype(float)
    out.loc[empty, "value"] = 0.0
    return out


def features_wide(long: pd.DataFrame, mask_volumes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pivot long-form features (subject_id, tumour_class, sequence, feature, value) to wide.

    Parameters
    ----------
    long : DataFrame
        Columns subject_id, tumour_class, sequence, feature, value, reason.
    mask_volumes : DataFrame, optional
        Per subject (index ``subject_id``) and class (columns: :class:`TumourClass` values),
        the segmentation's voxel-count volume in mm³ (voxels x voxel volume), as the store
        records it. Used where a class's ``MeshVolume`` could not be computed.

    Notes
    -----
    * Size features of an empty label become 0 (:func:`fill_empty_label_sizes`).
    * A degenerate label (one voxel, a 1-D line: PyRadiomics cannot build its mesh) keeps its
      missing shape and texture values, but its ``Volume_label{n}`` is the voxel-count volume
      from ``mask_volumes`` (a volume it has), so the subject keeps ``tumor_volume``.
    * With ``resegmentShape`` (shape per sequence, see :func:`per_sequence_shape`) the
      resegmented shape features stay per sequence (``{seq}_Volume_label{n}``,
      ``{seq}_Max3DDiameter_label{n}``), and ``Volume_label{n}`` is the mask's own voxel-count
      volume from ``mask_volumes``; there is then no sequence-independent ``Max3DDiameter``.
    * ``tumor_volume`` = ``Volume_label1 + Volume_label2`` (missing when either is).
    """
    if long.empty:
        return pd.DataFrame(columns=["SUBJECT ID"])
    long = fill_empty_label_sizes(long)
    cols = [wide_column(c, s, f) for c, s, f in zip(long["tumour_class"], long["sequence"],
                                                     long["feature"])]
    frame = long.assign(column=cols)
    wide = frame.pivot_table(index="subject_id", columns="column", values="value",
                             aggfunc="first", dropna=False)
    wide = wide.reindex(columns=_column_order(list(wide.columns)))
    wide.columns.name = None
    volumes = [f"Volume_label{c.canonical_label}" for c in TumourClass]
    if per_sequence_shape(long) and mask_volumes is not None:
        # resegmentShape: each sequence has its own resegmented shape ({seq}_Volume_label{n});
        # the seed columns are the mask's own, so they do not depend on a sequence.
        for cls, col in zip(TumourClass, volumes):
            if cls.value in mask_volumes:
                wide[col] = pd.to_numeric(mask_volumes[cls.value],
                                          errors="coerce").reindex(wide.index)
        wide = wide.reindex(columns=_column_order(list(wide.columns)))
    elif mask_volumes is not None:
        for cls, col in zip(TumourClass, volumes):
            if col in wide and cls.value in mask_volumes:
                voxels = pd.to_numeric(mask_volumes[cls.value], errors="coerce")
                wide[col] = wide[col].fillna(voxels.reindex(wide.index))
    if all(c in wide for c in volumes):
        wide["tumor_volume"] = wide[volumes].sum(axis=1, min_count=len(volumes)).where(
            wide[volumes].notna().all(axis=1))
    return wide.reset_index().rename(columns={"subject_id": "SUBJECT ID"})


def per_sequence_shape(long: pd.DataFrame) -> bool:
    """Whether shape was computed per sequence (PyRadiomics' ``resegmentShape`` with a
    ``resegmentRange``: the shape ROI then depends on each sequence's intensities)."""
    shape = long["feature"].str.contains("shape_", regex=False)
    return bool((long.loc[shape, "sequence"] != "").any())


def class_voxel_volumes(store: Store, cohort_id: str, config_key: str | None = None) -> pd.DataFrame:
    """Each subject's voxel-count class volumes (mm³) from the store's segmentation records.

    Returns
    -------
    DataFrame
        Index ``subject_id``; one column per :class:`TumourClass` value.
    """
    seg = store.segmentations_of(cohort_id, config_key)
    cols = {TumourClass.ENHANCING.value: "volume_ce_mm3",
            TumourClass.NON_ENHANCING.value: "volume_ne_mm3"}
    if seg.empty or not set(cols.values()) <= set(seg.columns):
        return pd.DataFrame(columns=list(cols))
    return pd.DataFrame({cls: pd.to_numeric(seg[col], errors="coerce").to_numpy()
                         for cls, col in cols.items()}, index=seg["subject_id"].astype(str))


#: Wide-table prefix of each location class (gliocore.location.regions / gliocore.location.vasari).
LOCATION_PREFIX = {"contrast_enhancing": "loc_ce_", "non_enhancing": "loc_ne_",
                   "whole_tumour": "loc_wt_", "vasari": "vasari_"}
#: Location values that also get a text column (``<column>_name``) with their label.
LOCATION_NAMED = {("whole_tumour", "side"), ("whole_tumour", "epicentre_region")}


#: Whole-tumour location values offered as analysis features (the wide table has them all).
LOCATION_FEATURES = ("fraction_left", "midline_crossing_mm", "contralateral_mm3", "n_foci",
                     "centroid_x_mm", "centroid_y_mm", "centroid_z_mm")


def is_location_feature(column: str) -> bool:
    """Whether a wide-table column is a location feature offered to the analysis pickers:
    VASARI codes and the whole tumour's region shares (%), side fractions, midline crossing,
    foci and centroid — not every class's every mm³ value, which would swamp the pickers and the
    multiple-testing corrections."""
    if column.startswith("vasari_"):
        return True
    if not column.startswith("loc_wt_"):
        return False
    rest = column[len("loc_wt_"):]
    return rest.endswith("_pct") or rest in LOCATION_FEATURES


def location_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Pivot long-form location values to one row per subject.

    Columns ``loc_{ce,ne,wt}_{feature}`` and ``vasari_F<n>`` (numeric; VASARI codes), plus
    ``loc_wt_side_name`` and ``loc_wt_epicentre_region_name`` (text labels). VASARI features that
    are never computed (F6, F7, F14, ...; :data:`gliocore.location.vasari.FEATURES`) are left out rather
    than kept as all-missing columns. Every other feature keeps its column even where no subject
    has a value (F20 is missing wherever only the non-enhancing class touches the cortex): the
    columns depend on the features, never on which subjects happen to have a value.
    """
    if long.empty:
        return pd.DataFrame(columns=["SUBJECT ID"])
    frame = long.copy()
    frame["column"] = [LOCATION_PREFIX.get(c, f"loc_{c}_") + f for c, f in
                       zip(frame["tumour_class"], frame["feature"])]
    wide = frame.pivot_table(index="subject_id", columns="column", values="value",
                             aggfunc="first", dropna=False)
    never = [LOCATION_PREFIX["vasari"] + code for code, (status, _) in vasari.FEATURES.items()
             if status == "not computed"]
    wide = wide.drop(columns=[c for c in never if c in wide.columns])
    for cls, feat in sorted(LOCATION_NAMED):
        sel = frame[(frame["tumour_class"] == cls) & (frame["feature"] == feat)]
        if not sel.empty:
            wide[LOCATION_PREFIX[cls] + feat + "_name"] = sel.set_index("subject_id")["label"]
    wide.columns.name = None
    return wide.reset_index().rename(columns={"subject_id": "SUBJECT ID"})


def seed_table(store: Store, cohort_id: str, config_key: str | None = None,
               only_processed: bool = False) -> pd.DataFrame:
    """The seed's wide table for a cohort: clinical columns, then features, then tumor_volume.

    Parameters
    ----------
    store : Store
    cohort_id : str
    config_key : str, optional
        Which segmentation + params configuration (default: the latest).
    only_processed : bool
        Drop subjects without features.
    """
    with store.reading():  # one connection for the table's several queries
        clinical = store.clinical(cohort_id)
        feats = features_wide(store.features_long(cohort_id, config_key),
                              class_voxel_volumes(store, cohort_id, config_key))
        loc = location_wide(store.location_long(cohort_id, config_key, LOCATION_VERSION))
    if not loc.empty and "SUBJECT ID" in feats.columns:
        feats = feats.merge(loc, on="SUBJECT ID", how="left")
    if clinical.empty:
        return feats
    clinical = clinical.drop(columns=["has_images"], errors="ignore")
    # A clinical column named like a computed feature (an earlier export fed back in) would
    # split both into *_x / *_y on merge; the computed values win.
    clinical = clinical.drop(columns=[c for c in feats.columns if c != "SUBJECT ID"
                                      and c in clinical.columns])
    first = [c for c in CLINICAL_FIRST if c in clinical.columns]
    clinical = clinical[first + [c for c in clinical.columns if c not in first]]
    out = clinical.merge(feats, on="SUBJECT ID", how="inner" if only_processed else "left")
    return add_longitudinal_endpoints(out, store, cohort_id, config_key)


# -- several scans per subject ------------------------------------------------------------------
#: Per-subject columns a longitudinal cohort adds to the wide table (after the features).
#: ``response_rule`` (the tumour type's rule) and ``os_origin_to_baseline_days`` are known at
#: baseline; every other column is known only after it (an outcome: gliocore.analysis.filters).
ENDPOINT_COLUMNS = ("n_scans", "followup_months", "response_target", "response_rule",
                    "best_response", "best_pct_change", "progression_months", PFS_TIME_COLUMN,
                    PFS_EVENT_COLUMN, "pfs_reason", "pfs_detail", "os_origin_to_baseline_days")


def cohort_response_of(store: Store, cohort_id: str, config_key: str | None = None,
                       criteria: ResponseCriteria = RANO2_VOLUMETRIC) -> CohortResponse:
    """Response assessment and PFS of a cohort's scans, from the store."""
    return cohort_response(store.scan_results(cohort_id, config_key), store.clinical(cohort_id),
                           criteria)


def longitudinal_endpoints(response: CohortResponse) -> pd.DataFrame:
    """Per subject (``SUBJECT ID``): :data:`ENDPOINT_COLUMNS` (months = days / 30.4375)."""
    s = response.subjects.merge(response.pfs, on="subject_id", how="left")
    return pd.DataFrame({
        "SUBJECT ID": s["subject_id"], "n_scans": s["n_scans"],
        "followup_months": (s["last_scan_days"] / DAYS_PER_MONTH).round(2),
        "response_target": s["target"], "response_rule": s["response_rule"],
        "best_response": s["best_response"],
        "best_pct_change": s["best_pct_change"].round(1),
        "progression_months": (s["progression_days"] / DAYS_PER_MONTH).round(2),
        PFS_TIME_COLUMN: s[PFS_TIME_COLUMN], PFS_EVENT_COLUMN: s[PFS_EVENT_COLUMN],
        "pfs_reason": s["pfs_reason"], "pfs_detail": s["pfs_detail"],
        "os_origin_to_baseline_days": s["os_origin_to_baseline_days"]})


def add_longitudinal_endpoints(table: pd.DataFrame, store: Store, cohort_id: str,
                               config_key: str | None = None,
                               criteria: ResponseCriteria = RANO2_VOLUMETRIC) -> pd.DataFrame:
    """The wide table with PFS and best response per subject when the cohort has follow-up
    scans; unchanged for a cohort with one scan per subject."""
    if not store.has_followups(cohort_id):
        return table
    response = cohort_response_of(store, cohort_id, config_key, criteria)
    if not response.is_longitudinal:
        return table
    ends = longitudinal_endpoints(response)
    table = table.drop(columns=[c for c in ENDPOINT_COLUMNS if c in table.columns])
    return table.merge(ends, on="SUBJECT ID", how="left")


def scan_table(store: Store, cohort_id: str, config_key: str | None = None,
               criteria: ResponseCriteria = RANO2_VOLUMETRIC) -> pd.DataFrame:
    """The long per-scan table: one row per scan, with its time, class volumes, changes from
    baseline and nadir, response category (``criteria``), then its features (wide, the seed's
    column names).

    Columns: ``SUBJECT ID``, ``scan_id``, ``days``, ``months``, ``volume_ce_mm3``,
    ``volume_ne_mm3``, ``pct_from_baseline_{ce,ne}``, ``nadir_{ce,ne}_mm3``,
    ``pct_from_nadir_{ce,ne}``, ``pct_from_baseline_target``, ``response_target``,
    ``response_rule``, ``category_{ce,ne}``, ``new_enhancement``, ``category``, ``confirmed``,
    features.
    """
    response = cohort_response_of(store, cohort_id, config_key, criteria)
    a = response.scans
    keep = ["subject_id", "scan_id", "days", "volume_ce_mm3", "volume_ne_mm3",
            "pct_from_baseline_ce", "nadir_ce_mm3", "pct_from_nadir_ce",
            "pct_from_baseline_ne", "nadir_ne_mm3", "pct_from_nadir_ne",
            "pct_from_baseline_target", "target", "response_rule", "category_ce", "category_ne",
            "new_enhancement", "category", "confirmed"]
    if a.empty:
        return pd.DataFrame(columns=["SUBJECT ID", "scan_id", "days"])
    out = a[[c for c in keep if c in a.columns]].rename(
        columns={"subject_id": "SUBJECT ID", "target": "response_target"})
    out.insert(3, "months", (out["days"] / DAYS_PER_MONTH).round(2))
    long = store.features_long_scans(cohort_id, config_key)
    if not long.empty:
        sep = "\x1f"
        key = long["subject_id"].astype(str) + sep + long["scan_id"].astype(str)
        vols = a.assign(_k=a["subject_id"].astype(str) + sep + a["scan_id"].astype(str))
        mask_volumes = pd.DataFrame({TumourClass.ENHANCING.value: vols["volume_ce_mm3"].to_numpy(),
                                     TumourClass.NON_ENHANCING.value: vols["volume_ne_mm3"].to_numpy()},
                                    index=vols["_k"])
        wide = features_wide(long.drop(columns=["scan_id"]).assign(subject_id=key), mask_volumes)
        parts = wide["SUBJECT ID"].str.split(sep, n=1, expand=True)
        wide = wide.drop(columns=["SUBJECT ID"]).assign(**{"SUBJECT ID": parts[0],
                                                           "scan_id": parts[1]})
        out = out.merge(wide, on=["SUBJECT ID", "scan_id"], how="left")
    loc_long = store.location_long_scans(cohort_id, config_key, LOCATION_VERSION)
    if not loc_long.empty:  # atlas location per scan (it follows each scan's segmentation)
        sep = "\x1f"
        loc = location_wide(loc_long.assign(subject_id=loc_long["subject_id"].astype(str) + sep
                                            + loc_long["scan_id"].astype(str)))
        parts = loc["SUBJECT ID"].str.split(sep, n=1, expand=True)
        loc = loc.drop(columns=["SUBJECT ID"]).assign(**{"SUBJECT ID": parts[0], "scan_id": parts[1]})
        out = out.merge(loc, on=["SUBJECT ID", "scan_id"], how="left")
    return out.reset_index(drop=True)


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _neutralised(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with text cells (and column names) that a spreadsheet would run as a formula defused.

    OWASP's rule for CSV injection: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading single quote, so Excel, LibreOffice and Google Sheets show it
    as text (``'=HYPERLINK(...)``) instead of evaluating it. Numbers are never touched (``-1.5``
    stays a number). Parquet keeps values as they are; only CSV output goes through this.

    Parameters
    ----------
    df : DataFrame

    Returns
    -------
    DataFrame
        A copy; ``df`` is unchanged.
    """
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_neutralised)
    out.columns = [_neutralised(c) for c in out.columns]
    return out


def csv_text(df: pd.DataFrame) -> str:
    """``df`` as CSV text for a download, formula-like cells defused (:func:`csv_safe`)."""
    return csv_safe(df).to_csv(index=False)


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Write CSV (formula-like text defused, :func:`csv_safe`) or Parquet (values as they are)
    by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        csv_safe(df).to_csv(path, index=False)
    else:
        raise ValueError(f"unknown export format {path.suffix!r}; use .csv or .parquet")
    return path
