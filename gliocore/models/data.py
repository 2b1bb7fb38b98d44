"""What a survival model reads: feature families of the wide table, the outcome, the clinical
design and the site column, checked at the boundary."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from gliocore.errors import CohortError

__all__ = ["FAMILIES", "family_columns", "SurvivalData", "prepare", "ClinicalEncoder",
           "SITE_CANDIDATES", "find_site_column"]

#: Feature families offered by the Models page and the CLI (``--features``).
FAMILIES = {
    "seed": "seed set (volume, diameter, mean, variance and GLNU per sequence and label)",
    "radiomics": "full radiomics (every *_label1 / *_label2 column and tumor_volume)",
    "volumes": "volumes (Volume_label*, tumor_volume, atlas volumes)",
    "location": "atlas location (loc_* numeric)",
    "vasari": "VASARI features (vasari_F*)",
}
_SEED_STEMS = ("Volume", "Max3DDiameter", "MeanIntensity", "IntensityVariance",
               "GrayLevelNonUniformity")
_CODES = ("_side", "_epicentre_region", "_name")
#: Clinical column names taken as the site / scanner / centre column, in this order.
SITE_CANDIDATES = ("site", "Site", "scanner", "Scanner", "centre", "center", "Centre", "Center",
                   "institution", "Institution")


def _numeric(table: pd.DataFrame, c: str) -> bool:
    return pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])


def family_columns(table: pd.DataFrame, family: str) -> list[str]:
    """Numeric columns of ``table`` in a feature family (see :data:`FAMILIES`) that have at
    least one value."""
    if family not in FAMILIES:
        raise ValueError(f"unknown feature family {family!r}; choose from {', '.join(FAMILIES)}")
    radiomic = [c for c in table.columns if c.endswith(("_label1", "_label2"))]
    if family == "radiomics":
        cols = radiomic + (["tumor_volume"] if "tumor_volume" in table else [])
    elif family == "seed":
        cols = [c for c in radiomic if c.rsplit("_label", 1)[0].split("_")[-1] in _SEED_STEMS]
        cols += ["tumor_volume"] if "tumor_volume" in table else []
    elif family == "volumes":
        cols = [c for c in table.columns if c.startswith("Volume_label") or c == "tumor_volume"
                or (c.startswith("loc_") and c.endswith("_volume_mm3"))]
    elif family == "location":
        cols = [c for c in table.columns if c.startswith("loc_") and not c.endswith(_CODES)]
    else:
        cols = [c for c in table.columns if c.startswith("vasari_")]
    return [c for c in cols if _numeric(table, c) and table[c].notna().any()]


def find_site_column(table: pd.DataFrame) -> str | None:
    """The first column named like a site / scanner / centre with 2+ distinct values."""
    for c in SITE_CANDIDATES:
        if c in table.columns and table[c].dropna().nunique() >= 2:
            return c
    return None


@dataclass(frozen=True)
class SurvivalData:
    """Subjects with an outcome, their features, clinical columns and site.

    Attributes
    ----------
    ids : (n,) ndarray of str
    time, event : (n,) ndarrays (months; 1 = event)
    X : DataFrame
        Features (n × p), numeric, missing values allowed (imputed inside the folds).
    clinical : DataFrame
        Clinical predictors (n × c), raw (encoded inside the folds).
    site : (n,) ndarray of str, or None
    covars : DataFrame
        Covariates ComBat keeps (subset of the clinical columns), complete.
    n_dropped : int
        Rows left out for a missing or non-positive time or a missing event.
    """

    ids: np.ndarray
    time: np.ndarray
    event: np.ndarray
    X: pd.DataFrame
    clinical: pd.DataFrame
    site: np.ndarray | None
    covars: pd.DataFrame
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> "SurvivalData":
        """The subjects at integer positions (or boolean mask) ``rows``."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return SurvivalData(self.ids[rows], self.time[rows], self.event[rows],
                            self.X.iloc[rows].reset_index(drop=True),
                            self.clinical.iloc[rows].reset_index(drop=True),
                            None if self.site is None else self.site[rows],
                            self.covars.iloc[rows].reset_index(drop=True), 0)

    def with_features(self, X: pd.DataFrame) -> "SurvivalData":
        """The same subjects with other feature values (e.g. permuted rows)."""
        return SurvivalData(self.ids, self.time, self.event, X.reset_index(drop=True),
                            self.clinical, self.site, self.covars, self.n_dropped)

    def data_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of ids, outcome and features: names the training data."""
        h = hashlib.sha256()
        h.update("\n".join(map(str, self.ids)).encode())
        h.update(np.ascontiguousarray(self.time, dtype=float).tobytes())
        h.update(np.ascontiguousarray(self.event, dtype=float).tobytes())
        h.update(",".join(self.X.columns).encode())
        h.update(np.ascontiguousarray(self.X.to_numpy(dtype=float)).tobytes())
        return h.hexdigest()[:16]


def prepare(table: pd.DataFrame, time_col: str, event_col: str, features: Sequence[str],
            clinical: Sequence[str] = (), site_col: str | None = None,
            combat_covariates: Sequence[str] = (), id_col: str = "SUBJECT ID") -> SurvivalData:
    """Check and split a wide table into a :class:`SurvivalData`.

    Rows with a missing or non-positive time or a missing event are dropped (counted); features
    are coerced to numbers. ComBat covariates with a missing value are filled with the median
    (numeric) or the most frequent level, since ComBat cannot use incomplete covariates.

    Raises
    ------
    CohortError
        A column is missing, no feature is given, or fewer than 10 subjects / 3 events remain.
    """
    need = [time_col, event_col, *features, *clinical, *combat_covariates]
    need += [site_col] if site_col else []
    missing = [c for c in dict.fromkeys(need) if c not in table.columns]
    if missing:
        raise CohortError(f"column(s) not in the table: {', '.join(missing)}")
    time = pd.to_numeric(table[time_col], errors="coerce")
    event = pd.to_numeric(table[event_col], errors="coerce")
    ok = time.notna() & event.notna() & (time > 0)
    if site_col:
        ok &= table[site_col].notna()
    rows = table[ok.to_numpy()].reset_index(drop=True)
    if len(rows) < 10 or int(pd.to_numeric(rows[event_col]).sum()) < 3:
        raise CohortError(f"{len(rows)} subjects with a usable outcome and "
                          f"{int(pd.to_numeric(rows[event_col]).sum()) if len(rows) else 0} "
                          "events: a survival model needs at least 10 subjects and 3 events")
    X = rows[list(features)].apply(pd.to_numeric, errors="coerce").astype(float)
    covars = rows[list(combat_covariates)].copy()
    for c in covars.columns:
        if pd.api.types.is_numeric_dtype(covars[c]):
            covars[c] = covars[c].fillna(covars[c].median())
        else:
            covars[c] = covars[c].astype(object).where(covars[c].notna(), covars[c].mode().iloc[0])
    ids = rows[id_col].astype(str).to_numpy() if id_col in rows else np.arange(len(rows)).astype(str)
    return SurvivalData(ids, pd.to_numeric(rows[time_col]).to_numpy(float),
                        pd.to_numeric(rows[event_col]).to_numpy(float) > 0, X,
                        rows[list(clinical)].reset_index(drop=True),
                        rows[site_col].astype(str).to_numpy() if site_col else None,
                        covars, int((~ok).sum()))


class ClinicalEncoder:
    """Clinical columns -> standardised numbers, learnt on the training subjects only:
    numeric columns median-imputed, others one-hot with the first training level dropped (a
    missing value is its own level)."""

    def fit(self, df: pd.DataFrame) -> "ClinicalEncoder":
        self.numeric_ = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        self.medians_ = {c: float(df[c].median()) for c in self.numeric_}
        self.levels_ = {c: sorted(df[c].astype(str).unique())[1:]
                        for c in df.columns if c not in self.numeric_}
        raw = self._raw(df)
        self.mean_ = raw.mean(axis=0)
        sd = raw.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return self

    @property
    def names_(self) -> list[str]:
        return self.numeric_ + [f"{c}={lv}" for c, lvs in self.levels_.items() for lv in lvs]

    def _raw(self, df: pd.DataFrame) -> np.ndarray:
        cols = [pd.to_numeric(df[c], errors="coerce").fillna(self.medians_[c]).to_numpy(float)
                for c in self.numeric_]
        for c, lvs in self.levels_.items():
            v = df[c].astype(str).to_numpy()
            cols += [(v == lv).astype(float) for lv in lvs]
        return np.column_stack(cols) if cols else np.zeros((len(df), 0))

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        return (self._raw(df) - self.mean_) / self.scale_

    def to_dict(self) -> dict:
        return {"numeric": self.numeric_, "medians": self.medians_, "levels": self.levels_,
                "mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalEncoder":
        enc = cls()
        enc.numeric_, enc.medians_, enc.levels_ = d["numeric"], d["medians"], d["levels"]
        enc.mean_, enc.scale_ = np.array(d["mean"]), np.array(d["scale"])
        return enc
