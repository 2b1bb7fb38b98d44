"""Cohort location statistics: lesion-frequency maps and region involvement by group.

* :func:`frequency_map` — the share of subjects with tumour at each atlas voxel (the classic
  figure of glioma-location papers), from each subject's atlas-space mask;
* :func:`involvement` — which regions each subject's tumour involves (a region is involved when
  at least ``min_pct`` % of the class lies in it);
* :func:`region_association` — per region, Fisher's exact test of involvement against a
  two-level grouping (e.g. IDH mutant vs wildtype), with Benjamini–Hochberg q-values.
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


def region_association(involved: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Fisher's exact test of involvement per region between the two levels of ``groups``.

    Parameters
    ----------
    involved : DataFrame of bool
        Subjects x regions (from :func:`involvement`).
    groups : Series
        Group label per subject (same index); exactly two levels after dropping missing.

    Returns
    -------
    DataFrame
        One row per region: region, title, n and % involved per group, odds ratio, p, q (BH).
    """
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
        odds, p = stats.fisher_exact(table)
        na, nb = sum(table[0]), sum(table[1])
        rows.append({"region": region, "title": REGION_TITLES.get(region, region),
                     f"involved {a}": table[0][0], f"n {a}": na,
                     f"% {a}": 100.0 * table[0][0] / na if na else np.nan,
                     f"involved {b}": table[1][0], f"n {b}": nb,
                     f"% {b}": 100.0 * table[1][0] / nb if nb else np.nan,
                     "odds ratio": float(odds), "p": float(p)})
    out = pd.DataFrame(rows)
    out["q (BH)"] = benjamini_hochberg(out["p"].to_numpy()) if len(out) else []
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
