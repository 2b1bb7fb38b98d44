"""Survival by subject stays readable at 1,000 subjects: one marker per subject, ranked."""
from __future__ import annotations

import numpy as np

from gliocore.analysis import plots


def test_survival_rank_figure_has_one_point_per_subject_in_rank_order():
    rng = np.random.default_rng(0)
    n = 1000
    times = rng.exponential(20, n)
    groups = rng.choice(["mutant", "wildtype"], n)
    died = rng.random(n) < 0.7
    ids = [f"S{i:04d}" for i in range(n)]
    fig = plots.survival_rank_figure(times, groups, died, ids, threshold=12.0)
    xs = np.concatenate([np.asarray(t.x) for t in fig.data])
    ys = np.concatenate([np.asarray(t.y) for t in fig.data])
    assert len(xs) == n and len(set(np.concatenate([t.customdata for t in fig.data]))) == n
    # a subject's rank follows its survival time
    order = np.argsort(xs)
    assert np.all(np.diff(ys[order]) >= 0)
    assert all(t.type == "scattergl" for t in fig.data)  # WebGL: responsive at this size
    names = {t.name.split(" (")[0] for t in fig.data}
    assert names == {"mutant · died", "mutant · censored", "wildtype · died", "wildtype · censored"}


def test_region_share_figure_is_a_heat_map_for_large_cohorts():
    import pandas as pd
    rng = np.random.default_rng(1)
    regions = ["Frontal lobe", "Temporal lobe", "Parietal lobe", "Insula"]
    share = pd.DataFrame(rng.uniform(0, 60, (1000, 4)), columns=regions,
                         index=[f"S{i:04d}" for i in range(1000)])
    share.iloc[5] = 0.0  # a tumour outside every region
    fig = plots.region_share_figure(share, title="t", bars_max=60)
    assert [t.type for t in fig.data] == ["heatmap"]
    heat = fig.data[0]
    assert list(heat.x) == regions and sorted(heat.y) == sorted(share.index)
    # rows grouped by main region in column order, the empty subject last
    main = share.loc[list(heat.y)].idxmax(axis=1).tolist()
    assert main[:-1] == sorted(main[:-1], key=regions.index) and heat.y[-1] == "S0005"
    assert np.allclose(np.asarray(heat.z, dtype=float), share.loc[list(heat.y)].to_numpy())
    small = plots.region_share_figure(share.iloc[:20], title="t", bars_max=60)
    assert {t.type for t in small.data} == {"bar"} and len(small.data) == 4
