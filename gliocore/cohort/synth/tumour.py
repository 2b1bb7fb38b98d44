"""The tumour drawn into a tissue field, and the four sequences rendered from it (shared by
the phantom and atlas anatomies).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from gliocore.types import SEQUENCES

from .params import (
    BASE_SCALE,
    BG,
    CONTRAST,
    CSF,
    ENHANCING,
    NECROSIS,
    OEDEMA,
    SOLID,
    SyntheticSubject,
    _Params,
    _smooth_noise,
)

# -- the tumour and the images ----------------------------------------------------------------

def _tumour_and_images(p: _Params, irng: np.random.Generator, labels: np.ndarray,
                       brain: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray,
                       lo: np.ndarray, box: tuple[slice, ...], bshape: tuple[int, int, int],
                       bext: np.ndarray, ref_step: np.ndarray, centre_vox: np.ndarray,
                       shape: tuple[int, int, int]
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], float, float]:
    """Draw the tumour into ``labels`` (a tissue field over ``box``) and render the four
    sequences; return the full-grid truth and images. Shared by the phantom and atlas anatomies."""
    # Tumour, computed in its own bounding box (reference mm).
    reach = p.r_oedema * p.axes.max() * (1.0 + 3.0 * p.irregularity) + 4.0
    tlo = np.maximum(np.floor((p.centre - reach) / ref_step + centre_vox).astype(int) - lo, 0)
    thi = np.minimum(np.ceil((p.centre + reach) / ref_step + centre_vox).astype(int) + 1 - lo,
                     bshape)
    tbox = tuple(slice(int(a), int(b)) for a, b in zip(tlo, thi))
    tshape = tuple(int(b - a) for a, b in zip(tlo, thi))
    tX, tY, tZ = X[tbox[0], :, :], Y[:, tbox[1], :], Z[:, :, tbox[2]]
    rel = [tX - p.centre[0], tY - p.centre[1], tZ - p.centre[2]]
    rot = p.rotation.T.astype(np.float32)
    u = [rot[k, 0] * rel[0] + rot[k, 1] * rel[1] + rot[k, 2] * rel[2] for k in range(3)]
    dist = np.sqrt(sum((u[k] / p.axes[k]) ** 2 for k in range(3)))  # mm, ellipsoidal
    text = np.asarray(tshape) * ref_step
    n_coarse = _smooth_noise(irng, tshape, text, 14.0)
    n_fine = _smooth_noise(irng, tshape, text, 7.0)
    oed = dist * (1.0 + p.irregularity * (0.8 * n_coarse + 0.5 * n_fine)) < p.r_oedema
    r_core = p.core_fraction * p.r_oedema
    core_dist = dist * (1.0 + 0.6 * p.irregularity * n_coarse)
    core = core_dist < r_core
    r_nec = r_core - p.rim_mm
    tl = labels[tbox]
    tbrain = brain[tbox]
    parenchyma = (tl != CSF) & tbrain
    tl[oed & parenchyma] = OEDEMA
    if p.enhancing_fraction >= 1.0:
        tl[core & tbrain] = ENHANCING
        if r_nec > 1.5:
            tl[(core_dist < r_nec) & tbrain] = NECROSIS
    else:
        tl[core & tbrain] = SOLID
        if p.enhancing_fraction > 0.0:
            rim = core & (core_dist > r_core - p.rim_mm)
            patch = _smooth_noise(irng, tshape, text, 12.0)
            vals = patch[rim]
            if vals.size:
                cut = np.quantile(vals, 1.0 - p.enhancing_fraction)
                tl[rim & (patch >= cut) & tbrain] = ENHANCING
    labels[tbox] = tl
    labels[~brain] = BG

    truth_box = np.zeros(bshape, dtype=np.uint8)
    truth_box[labels == ENHANCING] = 1
    truth_box[(labels == OEDEMA) | (labels == SOLID) | (labels == NECROSIS)] = 2
    truth = np.zeros(shape, dtype=np.uint8)
    truth[box] = truth_box

    images = _render_images(irng, labels, brain, box, bshape, bext, shape)
    return truth, images, r_core, r_nec


def _render_images(irng: np.random.Generator, labels: np.ndarray, brain: np.ndarray,
                   box: tuple[slice, ...], bshape: tuple[int, int, int], bext: np.ndarray,
                   shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The four sequences of a tissue field over ``box``, on the full grid ``shape``."""
    # Images: contrast lookup, tissue texture, partial-volume blur, bias, Rician noise, scale.
    texture = _smooth_noise(irng, bshape, bext, 5.0)
    lesion_var = _smooth_noise(irng, bshape, bext, 10.0)
    is_lesion = labels >= OEDEMA
    blur = 0.6  # voxels: partial-volume / point-spread blur
    images: dict[str, np.ndarray] = {}
    for seq in SEQUENCES:
        img = CONTRAST[seq][labels]
        img *= 1.0 + 0.03 * texture
        img[is_lesion] *= 1.0 + 0.06 * lesion_var[is_lesion]
        img = ndi.gaussian_filter(img, blur, truncate=2.5)
        bias = np.exp(0.10 * _smooth_noise(irng, bshape, bext, 90.0))
        img *= bias
        sigma = 0.03
        n1 = irng.standard_normal(bshape, dtype=np.float32)
        n2 = irng.standard_normal(bshape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
        gain = BASE_SCALE[seq] * float(np.exp(irng.normal(0.0, 0.3)))
        offset = gain * float(irng.uniform(0.0, 0.15))
        img = img * gain + offset
        img[~brain] = 0.0
        full = np.zeros(shape, dtype=np.float32)
        full[box] = np.clip(np.rint(img), 0, 32767)
        images[seq] = full
    return images


def _subject(subject_id: str, seed: int, p: _Params, images: dict[str, np.ndarray],
             truth: np.ndarray, affine: np.ndarray, centre_world: np.ndarray, mean_scale: float,
             vox_mm3: float, r_core: float, r_nec: float) -> SyntheticSubject:
    radii = {"oedema": p.r_oedema * mean_scale, "core": r_core * mean_scale,
             "necrosis": max(r_nec, 0.0) * mean_scale if p.enhancing_fraction >= 1.0 else 0.0}
    return SyntheticSubject(subject_id, seed, images, truth, affine, p.idh_status, p.age, p.sex,
                            "left" if p.side < 0 else "right", np.asarray(centre_world), radii,
                            float((truth == 1).sum()) * vox_mm3,
                            float((truth == 2).sum()) * vox_mm3)
