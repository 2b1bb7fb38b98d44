"""Atlas anatomy (the demo's default): subjects on the SRI24 reference brain, tumour centred in
a lobe drawn by IDH status.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage as ndi

from .params import BG, CSF, DEEP_GM, GM, REFERENCE_SHAPE, WM, SyntheticSubject, _Params
from .tumour import _subject, _tumour_and_images

#: Lobe of the tumour centre by IDH status. Overall shares follow the population distribution of
#: glioma location (Larjavaara et al., Neuro-Oncology 2007;9:319-325: frontal 40 %, temporal
#: 29 %, parietal 14 %, occipital 3 %); IDH-mutant tumours are drawn more often frontal (and
#: insular), mimicking Lai et al., J Clin Oncol 2011;29:4482-4490 (IDH1-mutant glioblastomas
#: were predominantly frontal). This is the demo's location signal.
LOBE_WEIGHTS: dict[str, dict[str, float]] = {
    "mutant": {"frontal": 0.60, "temporal": 0.14, "parietal": 0.10, "occipital": 0.04,
               "insula": 0.12},
    "wildtype": {"frontal": 0.30, "temporal": 0.34, "parietal": 0.26, "occipital": 0.06,
                 "insula": 0.04},
}


@dataclass(frozen=True, eq=False)
class AtlasAnatomy:
    """Tissue field of the SRI24 reference brain, in RAS voxel order (the order the atlas
    package stores it; subjects are flipped to the BraTS LPS grid when written).

    ``labels`` holds the phantom's tissue codes: CSF / GM / WM from the reference T1's intensity
    quantiles within the brain (:data:`ATLAS_TISSUE_QUANTILES`), ventricles from the atlas's
    ventricle mask, deep grey matter from its thalamus mask. ``depth`` is the distance (mm) to
    the brain surface; ``regions`` maps region keys to boolean masks (RAS order).
    """

    labels: np.ndarray
    brain: np.ndarray
    depth: np.ndarray
    regions: Mapping[str, np.ndarray]


#: Reference-T1 quantiles (within the brain) below which a voxel is CSF, then grey matter.
ATLAS_TISSUE_QUANTILES = (0.12, 0.52)


@functools.lru_cache(maxsize=1)
def atlas_anatomy() -> AtlasAnatomy:
    """The SRI24 anatomy of the demo (cached per process)."""
    from gliocore.imaging.atlas import load_atlas

    at = load_atlas("sri24")
    ref = np.ascontiguousarray(np.flip(at.reference, (0, 1)))   # LPS grid -> RAS voxel order
    brain = ref > 0
    q_csf, q_gm = np.quantile(ref[brain], ATLAS_TISSUE_QUANTILES)
    labels = np.full(ref.shape, BG, dtype=np.uint8)
    labels[brain] = WM
    labels[brain & (ref < q_gm)] = GM
    labels[brain & (ref < q_csf)] = CSF
    regions = {k: np.ascontiguousarray(np.flip(at.region_mask(k), (0, 1))) for k in at.regions}
    labels[regions["ventricles"] & brain] = CSF
    labels[regions["thalamus"] & brain] = DEEP_GM
    depth = ndi.distance_transform_edt(brain).astype(np.float32)
    return AtlasAnatomy(labels, brain, depth, regions)

def _atlas_tumour_centre(seed: int, p: _Params, anat: AtlasAnatomy, centre_vox: np.ndarray
                         ) -> tuple[np.ndarray, str]:
    """A tumour centre (reference mm from the grid centre, RAS) in a lobe drawn by IDH status,
    on the subject's side, deep enough for most of the oedema to stay in the brain."""
    rng = np.random.default_rng([seed, 9])      # its own stream: the phantom's draws stay as they were
    weights = LOBE_WEIGHTS[p.idh_status]
    lobes = list(weights)
    lobe = lobes[int(rng.choice(len(lobes), p=np.array([weights[k] for k in lobes])))]
    need = min(0.7 * p.r_oedema, 28.0)
    side_mask = np.zeros(anat.brain.shape, dtype=bool)
    mid = int(round(centre_vox[0]))
    if p.side < 0:
        side_mask[:mid - 3] = True    # RAS voxel order: low first index = left
    else:
        side_mask[mid + 3:] = True
    region = anat.regions[lobe] & side_mask
    for _ in range(8):
        cand = np.argwhere(region & (anat.depth >= need))
        if len(cand):
            break
        need *= 0.75
    else:
        cand = np.argwhere(region)
    v = cand[int(rng.integers(len(cand)))]
    return (v - centre_vox).astype(float), lobe


def _generate_on_atlas(subject_id: str, seed: int, p: _Params, irng: np.random.Generator
                       ) -> SyntheticSubject:
    """A subject on the SRI24 atlas anatomy, written on the BraTS grid (SRI24 affine)."""
    from dataclasses import replace

    from gliocore.imaging.atlas import SRI24_AFFINE

    anat = atlas_anatomy()
    shape = REFERENCE_SHAPE
    centre_vox = (np.asarray(shape) - 1.0) / 2.0
    centre, _lobe = _atlas_tumour_centre(seed, p, anat, centre_vox)
    p = replace(p, centre=centre)
    idx = np.argwhere(anat.brain)
    lo = np.maximum(idx.min(axis=0) - 2, 0)
    hi = np.minimum(idx.max(axis=0) + 3, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi))
    ref_step = np.ones(3)
    bext = np.asarray(bshape, dtype=float)
    X, Y, Z = ((np.arange(lo[a], hi[a], dtype=np.float32) - centre_vox[a]) for a in range(3))
    X, Y, Z = X[:, None, None], Y[None, :, None], Z[None, None, :]
    labels = anat.labels[box].copy()
    brain = anat.brain[box]
    truth, images, r_core, r_nec = _tumour_and_images(p, irng, labels, brain, X, Y, Z, lo, box,
                                                      bshape, bext, ref_step, centre_vox, shape)
    # RAS voxel order -> the BraTS / TCGA LPS grid
    truth = np.ascontiguousarray(np.flip(truth, (0, 1)))
    images = {k: np.ascontiguousarray(np.flip(v, (0, 1))) for k, v in images.items()}
    c_lps = np.array([shape[0] - 1 - (centre[0] + centre_vox[0]),
                      shape[1] - 1 - (centre[1] + centre_vox[1]), centre[2] + centre_vox[2]])
    centre_world = SRI24_AFFINE[:3, :3] @ c_lps + SRI24_AFFINE[:3, 3]
    return _subject(subject_id, seed, p, images, truth, SRI24_AFFINE.copy(), centre_world, 1.0,
                    1.0, r_core, r_nec)
