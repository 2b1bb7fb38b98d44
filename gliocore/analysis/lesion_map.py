"""Cohort location statistics: lesion-frequency maps and region involvement by group.

* :func:`frequency_map` — the share of subjects with tumour at each atlas voxel (the classic
  figure of glioma-location papers), from each subject's atlas-space mask;
* :func:`involvement` — which regions each subject's tumour involves (a region is involved when
  at least ``min_pct`` % of the class lies in it);
* :func:`region_association` — per region, Fisher's exact test of involvement against a
  two-level grouping (e.g. IDH mutant vs wildtype), with Benjamini–Hochberg q-values over the
  regions that can be tested (involved in at least one subject of the two groups; a region no
  subject's tumour reaches has p = 1 by construction and would only dilute the family);
* :func:`circular_grouping` — a grouping derived from the tumour's own location (its epicentre
  region, its side, a VASARI location feature) is described, never tested against region
  involvement: the grouping and the tested variable are one measurement, so "significance"
  comes by construction (a tumour grouped as temporal involves the temporal lobe).
"""
from __future__ import annotations

from typing import Sequence

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import stats

from gliocore.imaging.atlas import REGION_TITLES
from gliocore.analysis.screens import benjamini_hochberg

#: Default involvement threshold: % of the tumour class lying in a region.
INVOLVED_MIN_PCT = 10.0
#: Regions tested and plotted (cortex overlaps the lobes; it is a VASARI feature, F20).
MAP_REGIONS = ("frontal", "temporal", "parietal", "occipital", "insula", "thalamus",
               "internal_capsule", "corpus_callosum", "brainstem", "ventricles")
CLASS_LABELS = {"whole_tumour": (1, 2), "contrast_enhancing": (1,), "non_enhancing": (2,)}


def downsample_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Boolean block-maximum of a 3-D mask (a block is set when any voxel in it is)."""
    if factor <= 1:
        return np.asarray(mask, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    pad = [(0, (-n) % factor) for n in m.shape]
    m = np.pad(m, pad)
    s = [n // factor for n in m.shape]
    return m.reshape(s[0], factor, s[1], factor, s[2], factor).any(axis=(1, 3, 5))


def frequency_map(mask_paths: Sequence[str], tumour_class: str = "whole_tumour",
                  factor: int = 2) -> tuple[np.ndarray, int]:
    """Share of subjects with tumour at each voxel of the atlas grid (downsampled by ``factor``).

    Parameters
    ----------
    mask_paths : sequence of str
        Atlas-space label masks (1 = contrast-enhancing, 2 = non-enhancing), one per subject.
    tumour_class : {'whole_tumour', 'contrast_enhancing', 'non_enhancing'}
    factor : int
        Block size of the downsampling (a block counts when any of its voxels is tumour).

    Returns
    -------
    share : (I, J, K) float32 ndarray
        In [0, 1]; the atlas grid's voxel order.
    n : int
        Number of masks read.
    """
    labels = CLASS_LABELS[tumour_class]
    total: np.ndarray | None = None
    n = 0
    for path in mask_paths:
        data = np.asarray(nib.load(path).dataobj)
        sel = downsample_any(np.isin(data, labels), factor)
        total = sel.astype(np.float32) if total is None else total + sel
        n += 1
    if total is None:
        raise ValueError("no subject masks to map")
    return total / n, n


def involvement(location_wide: pd.DataFrame, tumour_class: str = "wt",
                min_pct: float = INVOLVED_MIN_PCT,
                regions: Sequence[str] = MAP_REGIONS) -> pd.DataFrame:
    """Boolean table subject x region: the class has at least ``min_pct`` % in the region.

    ``location_wide`` is the wide table (columns ``loc_<class>_<region>_pct``); subjects without
    location values are dropped.
    """
    cols = {r: f"loc_{tumour_class}_{r}_pct" for r in regions
            if f"loc_{tumour_class}_{r}_pct" in location_wide.columns}
    sub = location_wide[list(cols.values())]
    keep = sub.notna().any(axis=1)
    out = (sub[keep] >= min_pct).rename(columns={v: k for k, v in cols.items()})
    return out


#: Column prefixes of groupings measured from the tumour's location (the tested variable).
LOCATION_DERIVED_PREFIXES = ("loc_", "vasari_")


def circular_grouping(column: str | None) -> str | None:
    """Why a grouping column cannot be tested against region involvement, or None if it can.

    Columns measured from the tumour's location (``loc_*``: epicentre region, side, region
    shares; ``vasari_*``: F1 location, F2 side, …) are derived from the very variable tested:
    grouping by the epicentre region and testing involvement of that region gives significance
    by construction. Such groupings are described (shares per group), not tested.
    """
    if column and str(column).startswith(LOCATION_DERIVED_PREFIXES):
        return (f"'{column}' is measured from the tumour's own location, the variable being "
                "tested: any difference in region involvement between its groups holds by "
                "construction, so it is described, not tested")
    return None


def region_association(involved: pd.DataFrame, groups: pd.Series,
                       grouping: str | None = None) -> pd.DataFrame:
    """Fisher's exact test of involvement per region between the two levels of ``groups``.

    Parameters
    ----------
    involved : DataFrame of bool
        Subjects x regions (from :func:`involvement`).
    groups : Series
        Group label per subject (same index); exactly two levels after dropping missing.
    grouping : str, optional
        The grouping's column name; a location-derived one is refused (:func:`circular_grouping`).

    Returns
    -------
    DataFrame
        One row per region: region, title, n and % involved per group, odds ratio, p, q (BH),
        ``tested`` (False for a region involved in no subject of either group: p and q missing,
        not in the Benjamini–Hochberg family). ``attrs["m"]`` is the family size.

    Raises
    ------
    ValueError
        Not two levels, or a grouping derived from the tumour's location.
    """
    why = circular_grouping(grouping)
    if why:
        raise ValueError(why)
    g = groups.reindex(involved.index).dropna().astype(str)
    levels = sorted(g.unique())
    if len(levels) != 2:
        raise ValueError(f"the grouping must have exactly two levels, got {levels}")
    a, b = levels
    rows = []
    for region in involved.columns:
        inv = involved.loc[g.index, region].astype(bool)
        table = [[int((inv & (g == a)).sum()), int((~inv & (g == a)).sum())],
                 [int((inv & (g == b)).sum()), int((~inv & (g == b)).sum())]]
        tested = table[0][0] + table[1][0] > 0
        odds, p = stats.fisher_exact(table) if tested else (np.nan, np.nan)
        na, nb = sum(table[0]), sum(table[1])
        rows.append({"region": region, "title": REGION_TITLES.get(region, region),
                     f"involved {a}": table[0][0], f"n {a}": na,
                     f"% {a}": 100.0 * table[0][0] / na if na else np.nan,
                     f"involved {b}": table[1][0], f"n {b}": nb,
                     f"% {b}": 100.0 * table[1][0] / nb if nb else np.nan,
                     "odds ratio": float(odds), "p": float(p), "tested": tested})
    out = pd.DataFrame(rows)
    out["q (BH)"] = np.nan
    if len(out) and out["tested"].any():
        out.loc[out["tested"], "q (BH)"] = benjamini_hochberg(
            out.loc[out["tested"], "p"].to_numpy())
    out.attrs["m"] = int(out["tested"].sum()) if len(out) else 0
    return out


def share_rgb(share2d: np.ndarray, brain2d: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """A frequency-map slice as RGB: the atlas brain in grey, the share in a yellow-red scale
    (transparent at 0), ``vmax`` mapped to the darkest red."""
    grey = np.asarray(brain2d, dtype=np.float32)
    hi = float(np.percentile(grey[grey > 0], 99)) if (grey > 0).any() else 1.0
    g = np.clip(grey / max(hi, 1e-6), 0, 1) * 200
    rgb = np.repeat(g[..., None], 3, axis=2)
    t = np.clip(np.asarray(share2d, dtype=np.float32) / max(vmax, 1e-6), 0, 1)
    colour = np.stack([255 - 55 * t, 235 * (1 - t) ** 1.2, 40 * (1 - t)], axis=-1)
    alpha = np.where(share2d > 0, 0.35 + 0.65 * t, 0.0)[..., None]
    return (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)
