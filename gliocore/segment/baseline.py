"""A baseline tumour segmenter from intensity rules: no weights, no network, offline.

This is a *baseline*, not a validated clinical method. It exists so that GlioScope works
end to end without model weights (the embedded demo, CI, a first look at a new cohort) and
as a yardstick for the deep-learning backends. It assumes four co-registered,
skull-stripped sequences (zero outside the brain) and a single, mostly contiguous lesion.

Method
------
1. **Brain mask**: voxels where any sequence is above 2 % of its 99th percentile (the largest
   connected part); the work is cropped to it.
2. **Robust normalisation**: each sequence is z-scored inside the brain with its median and
   MAD (scaled to a standard deviation), after light Gaussian smoothing (``smooth_mm``).
3. **Lesion core**: clearly FLAIR-hyperintense (``z_flair > flair_z``) and not T2-dark
   (``z_t2 > t2_z``) voxels, opened (1 mm); the strongest component (largest summed FLAIR z)
   and those at least ``keep_fraction`` as strong are kept.
4. **Margin level**: half-way rule: ``margin_level`` x the core's median z (a blurred sharp
   edge lies half-way between lesion and brain), never below ``flair_grow_z``.
5. **Growth, in two tiers, by geodesic distance in mm** (:func:`~gliocore.segment.rule_ops.grow_by_distance`, the same in
   every direction whatever the voxel size): first up to ``reach_mm`` through tissue that is
   clearly abnormal — core-bright FLAIR, necrosis/cysts (T2-bright ``> cyst_t2_z``, T1-dark
   ``< cyst_t1_z``, FLAIR not suppressed ``> cyst_flair_z`` unlike CSF, bulky: opened by
   ``cyst_open_mm``) and enhancing tissue (a necrotic core lies behind its rim); then at
   most ``grow_mm`` into the fainter margin (above the margin level and T2 above the brain
   median), opened by ``margin_open_mm`` so that growth does not run along the cortex/sulci.
   **Hemispheric asymmetry** (when the left-right axis is known, from the affine): FLAIR
   hyperintensity too faint for the half-way rule (its local mean, Gaussian ``asym_local_mm``,
   above ``asym_level`` x the core's median z and ``asym_flair_z``) joins the margin where the voxel is ``asym_z`` brighter than the
   smoothed mirror-image place across the midline (:func:`hemispheric_asymmetry`; gliomas are
   mostly unilateral, normal anatomy is roughly symmetric) and FLAIR is a *plateau*, not a
   *shoulder*: its slope (:func:`flair_slope`) below ``asym_max_slope`` z per mm (oedema
   infiltrating white matter is flat on FLAIR; the blurred edge of a bright lesion, already
   placed by the half-way rule, and cortex pushed against the lesion fall off steeply);
   only bands opened by ``asym_open_mm`` (not noise nor a thin ribbon).
6. **Enhancement**: T1c markedly brighter than T1 after each is normalised
   (``z_t1c - z_t1 > enhance_z``) and T1c bright in itself (``z_t1c > t1c_z``). Bulky
   enhancement (what survives a 1-voxel opening) counts anywhere; thin enhancement (a rim
   one or two voxels thick around necrosis, which the opening removes) only inside the lesion
   and within ``adjacent_mm`` of it (farther out, thin enhancing lines are vessels or dura).
   Whole enhancing structures are kept when they touch the zone within ``adjacent_mm`` of the
   lesion, up to ``enhance_reach_mm`` from it (vessels, choroid plexus and dura far from it
   enhance too).
7. **Clean-up**: closing (``close_mm``), holes filled in 3-D and in each slice across the
   thickest axis (a necrotic core inside its rim is tumour: non-enhancing in GlioScope's
   label map), components below ``min_component_mm3`` dropped.
8. **Labels**: 1 = contrast-enhancing (step 6, inside the tumour), 2 = the rest.

Thresholds are in robust z units, so they do not depend on scanner intensity scale; sizes
and distances are in mm. The morphology runs on a crop around the lesion (a few seconds per
240 x 240 x 155 subject).

How good is it? Five real BraTS 2018 gliomas (expert labels; ``../shared/cases/brats18-dev``),
whole-tumour / contrast-enhancing Dice (version 2.6; 2.2 in brackets): TCIA01_201 0.95 / 0.80
(0.96 / 0.80), TCIA01_378 0.86 / 0.88 (0.72 / 0.89), TCIA02_606 0.89 / 0.76 (0.87 / 0.72),
TCIA10_628 0.851 / 0.41 (0.850 / 0.37; 2 cm³ of enhancement), TCIA13_623 0.91 / 0.00
(0.90 / 0.00; 4.7 cm³ of faint enhancement). TCGA-DU-7294 (majority vote of five BraTS
algorithms): 0.916 (0.920), no enhancement, as in the reference. Synthetic demo: unchanged (seeds
1000-1004 with enhancement and the IDH-mutant 2000-2012 at 2 mm). Version 2.3 keeps thin
enhancing rims next to the lesion (606's CE 0.72 -> 0.76); 2.4 lets the asymmetry cue take
faint FLAIR plateaus, 2.5 judges them by their local mean and 2.6 opens them by 1 mm instead
of 2 (378's WT 0.72 -> 0.86). It fails where oedema is only faintly
FLAIR-hyperintense and patchy (TCIA01_378: about half the oedema is at FLAIR z 1.0-2.1, the
level of normal grey matter, and the faint tissue the expert left out around TCIA01_201's
lesion looks the same voxel by voxel), where a lesion crosses the midline or is bilateral (no
asymmetry cue), on faint or patchy enhancement, on multifocal disease, on images that are not
skull-stripped, and where strong bias fields or artefacts outshine the lesion. The defaults
were chosen once for all these cases together, not per case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from gliocore.cohort.subjects import Subject
from gliocore.imaging.volume import Volume
from gliocore.imaging.labels import CANONICAL, LabelMap
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.segment.rule_ops import (  # noqa: F401  (the public ones re-exported)
    _ball, _fill_holes_2d, _keep_components, _local_mean, _robust_z, flair_slope,
    grow_by_distance, hemispheric_asymmetry)

#: Default options; every one changes the output, so all enter the cache key.
DEFAULTS: dict[str, float] = {
    "flair_z": 2.5,           # FLAIR hyperintensity of the lesion's core (robust z)
    "t2_z": 0.5,              # T2 must be at least this bright in the core (robust z)
    "keep_fraction": 0.25,    # keep lesion components at least this fraction of the strongest
    "flair_grow_z": 1.25,     # the lesion grows from its core into voxels above this ...
    "margin_level": 0.4,      # ... or above this fraction of the core's median z, if higher
    "grow_mm": 25.0,          # ... by at most this (geodesic) distance
    "reach_mm": 90.0,         # clearly abnormal tissue connected to the core, up to this far
    "margin_open_mm": 2.0,    # thin ribbons (cortex, sulci) narrower than this are not grown into
    "cyst_t2_z": 1.0,         # necrotic/cystic parts: T2 above this ...
    "cyst_t1_z": -0.5,        # ... and T1 below this ...
    "cyst_flair_z": -0.5,     # ... and FLAIR above this (not suppressed, unlike CSF)
    "cyst_open_mm": 3.0,      # ... in a bulky region (thinner structures are opened away)
    "enhance_z": 1.5,         # z(T1c) - z(T1) threshold for enhancement
    "t1c_z": 0.5,             # T1c itself must be at least this bright (robust z)
    "adjacent_mm": 4.0,       # enhancing structures must touch this zone around the lesion ...
    "enhance_reach_mm": 15.0, # ... and are kept up to this distance from it
    "close_mm": 3.0,          # gaps in the tumour's rim up to about twice this are closed
    "smooth_mm": 1.0,         # Gaussian sigma before thresholding
    "min_component_mm3": 500.0,   # drop lesion components smaller than this
    "min_enhancing_mm3": 50.0,    # drop enhancing specks smaller than this
    "asym_z": 0.5,            # FLAIR this much brighter than the mirrored hemisphere ...
    "asym_flair_z": 1.0,      # ... and above this itself joins the margin (0 = cue off) ...
    "asym_level": 0.25,       # ... or above this fraction of the core's median z, if higher,
    "asym_max_slope": 0.4,    # ... where FLAIR is flat (slope below this, z per mm; 0 = any)
    "asym_smooth_mm": 3.0,    # Gaussian sigma of the mirrored side (a local mean)
    "asym_local_mm": 2.0,     # Gaussian sigma of the FLAIR the cue judges (its local mean)
    "asym_open_mm": 1.0,      # asymmetric bands thinner than about 2x this are not taken
}


def segment_arrays(t1: np.ndarray, t1c: np.ndarray, t2: np.ndarray, flair: np.ndarray,
                   spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                   lr_axis: int | None = None, **options: float) -> np.ndarray:
    """Segment a tumour from four co-registered, skull-stripped arrays.

    Parameters
    ----------
    t1, t1c, t2, flair : (I, J, K) array-like
        The four sequences on one grid, zero (or near zero) outside the brain.
    spacing : 3 floats
        Voxel size in mm along each axis.
    lr_axis : int, optional
        The array axis that runs left-right (from the affine); enables the hemispheric
        asymmetry cue (:func:`hemispheric_asymmetry`). ``None``: the cue is off.
    **options
        Overrides of :data:`DEFAULTS`.

    Returns
    -------
    (I, J, K) uint8 ndarray
        Canonical labels: 0 background, 1 contrast-enhancing, 2 non-enhancing.
    """
    arrays, sp, opt = _checked_inputs((t1, t1c, t2, flair), spacing, options)
    shape = arrays[0].shape
    out = np.zeros(shape, dtype=np.uint8)
    voxel_mm3 = float(np.prod(sp))
    maps = _brain_maps(arrays, sp, opt, voxel_mm3, lr_axis)  # steps 1-2
    if maps is None:
        return out
    core = _abnormal_core(maps, sp, opt, voxel_mm3)  # step 3
    if not core.any():
        return out
    lbox = _lesion_box(core, sp, opt)
    maps = maps.cropped(lbox)
    core = core[lbox]
    found = _abnormal_and_enhancing(maps, core, sp, opt)
    if found is None:
        return out
    abnormal, margin, enh, enh_any = found
    enh = _enhancement_near(abnormal, enh, enh_any, sp, opt, voxel_mm3)  # step 4
    tumour = _whole_tumour(abnormal & margin, enh, maps.brain, sp, opt, voxel_mm3)  # step 5
    # 6. Labels, pasted back through both crops.
    lesion = np.where(tumour, np.uint8(2), np.uint8(0))
    lesion[tumour & enh] = 1
    crop_out = np.zeros(tuple(sl.stop - sl.start for sl in maps.box), dtype=np.uint8)
    crop_out[lbox] = lesion
    out[maps.box] = crop_out
    return out


def _checked_inputs(arrays: Sequence[np.ndarray], spacing: Sequence[float],
                    options: dict[str, float]) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """The four arrays as finite float32 on one 3-D grid, the spacing and the options."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown baseline option(s) {sorted(unknown)}; "
                         f"known: {', '.join(DEFAULTS)}")
    opt = {**DEFAULTS, **{k: float(v) for k, v in options.items()}}
    out = [np.asarray(a, dtype=np.float32) for a in arrays]
    out = [a if np.isfinite(a).all() else np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
           for a in out]
    shape = out[0].shape
    if len(shape) != 3:
        raise ValueError(f"expected 3-D arrays, got shape {shape}")
    for a in out[1:]:
        if a.shape != shape:
            raise ValueError(f"sequence shapes differ: {a.shape} != {shape}; "
                             "co-register and resample all sequences to one grid first")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or np.any(sp <= 0) or not np.all(np.isfinite(sp)):
        raise ValueError(f"spacing must be three positive numbers, got {spacing!r}")
    return out, sp, opt


@dataclass
class _Maps:
    """The brain crop's mask, the four robust z-maps and the asymmetry cue (or None)."""

    box: tuple[slice, ...]
    brain: np.ndarray
    z_t1: np.ndarray
    z_t1c: np.ndarray
    z_t2: np.ndarray
    z_flair: np.ndarray
    asym: np.ndarray | None
    z_local: np.ndarray | None

    def cropped(self, lbox: tuple[slice, ...]) -> "_Maps":
        """The same maps inside ``lbox`` (a box within the brain crop)."""
        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[lbox]
        return _Maps(self.box, self.brain[lbox], self.z_t1[lbox], self.z_t1c[lbox],
                     self.z_t2[lbox], self.z_flair[lbox], crop(self.asym), crop(self.z_local))


def _brain_maps(arrays: list[np.ndarray], sp: np.ndarray, opt: dict, voxel_mm3: float,
                lr_axis: int | None) -> _Maps | None:
    """1. Brain mask and crop; 2. robust z-maps (smoothed) and the asymmetry cue.

    None when the brain is smaller than 1 cm³ (nothing to segment).
    """
    shape = arrays[0].shape
    brain = np.zeros(shape, dtype=bool)
    for a in arrays:
        pos = a[a > 0]
        if pos.size == 0:
            continue
        brain |= a > 0.02 * float(np.percentile(pos, 99))
    if brain.sum() * voxel_mm3 < 1000.0:  # less than 1 cm³: nothing to segment
        return None
    lab, n = ndi.label(brain)
    if n > 1:
        brain = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    box = ndi.find_objects(brain.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, dim)) for s, dim in zip(box, shape))
    brain = brain[box]
    sigma = opt["smooth_mm"] / sp
    z = []
    for a in arrays:
        crop = a[box]
        if opt["smooth_mm"] > 0:
            crop = ndi.gaussian_filter(crop, sigma, truncate=2.5)
        z.append(_robust_z(crop, brain))
    z_t1, z_t1c, z_t2, z_flair = z
    asym = z_local = None
    if lr_axis is not None and opt["asym_flair_z"] > 0:
        # Faint oedema is patchy voxel by voxel: the cue judges FLAIR's local mean, taken over
        # the tissue that is not clearly hyperintense (so that a bright lesion does not spill
        # into the mean of the faint tissue next to it).
        z_local = _local_mean(z_flair, brain & (z_flair <= opt["flair_z"]),
                              opt["asym_local_mm"] / sp)
        asym = hemispheric_asymmetry(z_local, brain, int(lr_axis), sp, opt["asym_smooth_mm"])
    return _Maps(box, brain, z_t1, z_t1c, z_t2, z_flair, asym, z_local)


def _abnormal_core(maps: _Maps, sp: np.ndarray, opt: dict, voxel_mm3: float) -> np.ndarray:
    """3. The clearly hyperintense T2/FLAIR core (the hysteresis high threshold)."""
    core = maps.brain & (maps.z_flair > opt["flair_z"]) & (maps.z_t2 > opt["t2_z"])
    core = ndi.binary_opening(core, _ball(1.0 / sp))
    return _keep_components(core, voxel_mm3, opt["min_component_mm3"], opt["keep_fraction"],
                            weight=maps.z_flair)


def _lesion_box(core: np.ndarray, sp: np.ndarray, opt: dict) -> tuple[slice, ...]:
    """A crop around the lesion, wide enough for every growth step below (morphology is the
    costly part)."""
    pad = np.ceil((opt["reach_mm"] + opt["grow_mm"]
                   + max(opt["adjacent_mm"], opt["enhance_reach_mm"]) + 3.0)
                  / sp).astype(int) + 1
    lbox = ndi.find_objects(core.astype(np.uint8))[0]
    return tuple(slice(max(sl.start - p, 0), min(sl.stop + p, dim))
                 for sl, p, dim in zip(lbox, pad, core.shape))


def _margin(maps: _Maps, core_median: float, sp: np.ndarray, opt: dict
            ) -> tuple[np.ndarray, np.ndarray]:
    """The moderately hyperintense margin (with necrosis/cysts and, where the cue is on, faint
    asymmetric FLAIR), and the cyst map."""
    brain, z_t1, z_t2, z_flair = maps.brain, maps.z_t1, maps.z_t2, maps.z_flair
    # The margin level adapts to the lesion (a fraction of the core's median z) but is never
    # below ``flair_grow_z``; thin ribbons (cortex, sulci) are opened away so that growth does
    # not run along them.
    level = max(opt["flair_grow_z"], opt["margin_level"] * core_median)
    # Necrosis / cysts: T2-bright, T1-dark, FLAIR not suppressed (unlike CSF), and bulky
    # (opened by ``cyst_open_mm``: CSF in sulci, partial-volumed, is thin).
    cyst = brain & (z_t2 > opt["cyst_t2_z"]) & (z_t1 < opt["cyst_t1_z"]) \
        & (z_flair > opt["cyst_flair_z"])
    if opt["cyst_open_mm"] > 0:
        cyst = ndi.binary_opening(cyst, _ball(opt["cyst_open_mm"] / sp))
    margin = brain & (((z_flair > level) & (z_t2 > 0.0)) | cyst)
    if maps.asym is not None:
        # Hemispheric asymmetry: faint FLAIR hyperintensity (above ``faint``, below the margin
        # level) that the other hemisphere does not have joins the margin. Only the band not
        # already in the margin is opened (``asym_open_mm``): the partial-volume ring of a sharp
        # edge, a cortex ribbon displaced by mass effect and noise go; bulky faint oedema stays.
        faint = max(opt["asym_flair_z"], opt["asym_level"] * core_median)
        brighter = brain & (maps.asym > opt["asym_z"]) & (maps.z_local > faint) & ~margin
        if opt["asym_max_slope"] > 0:
            # A plateau, not a shoulder: faint oedema infiltrating white matter is flat on
            # FLAIR, while the blurred edge of a bright lesion (which the half-way rule has
            # already placed) falls off steeply; so is cortex pushed against the lesion.
            brighter &= flair_slope(z_flair, sp) < opt["asym_max_slope"]
        if opt["asym_open_mm"] > 0:
            brighter = ndi.binary_opening(brighter, _ball(opt["asym_open_mm"] / sp))
        margin |= brighter
    if opt["margin_open_mm"] > 0:
        margin = ndi.binary_opening(margin, _ball(opt["margin_open_mm"] / sp))
    return margin, cyst


def _abnormal_and_enhancing(maps: _Maps, core: np.ndarray, sp: np.ndarray, opt: dict
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """3 (cont.). The core grown by a bounded geodesic distance into the margin; enhancing
    candidates. Returns (abnormal, margin, bulky enhancement, any enhancement) or None."""
    brain = maps.brain
    margin, cyst = _margin(maps, float(np.median(maps.z_flair[core])), sp, opt)
    # Enhancing candidates: T1c markedly brighter than T1, and bright in itself. The opening
    # keeps bulky enhancement only; thin enhancement (a rim one or two voxels thick, which
    # the opening removes) is taken back below where it lies next to the lesion.
    enh_any = brain & ((maps.z_t1c - maps.z_t1) > opt["enhance_z"]) & (maps.z_t1c > opt["t1c_z"])
    enh = ndi.binary_opening(enh_any, _ball(1.0 / sp))
    # Two tiers: the lesion first extends far (``reach_mm``) through tissue that is clearly
    # abnormal (core-bright FLAIR, necrosis/cyst, its enhancing rim: a necrotic core lies
    # behind it), then by at most ``grow_mm`` into the fainter margin.
    # The core's own edge is where FLAIR falls below the margin level (half-way between the
    # lesion and normal brain: where a blurred sharp edge lies).
    seed = core & margin
    if not seed.any():
        return None
    clear = brain & (((maps.z_flair > opt["flair_z"]) & (maps.z_t2 > opt["t2_z"])) | cyst) & margin
    bulk = grow_by_distance(seed, clear | enh, opt["reach_mm"], sp)
    abnormal = grow_by_distance(bulk, margin, opt["grow_mm"], sp)
    return abnormal, margin, enh, enh_any


def _enhancement_near(abnormal: np.ndarray, enh: np.ndarray, enh_any: np.ndarray,
                      sp: np.ndarray, opt: dict, voxel_mm3: float) -> np.ndarray:
    """4. Whole enhancing structures that touch the zone within ``adjacent_mm`` of the abnormal
    region (its holes included: a necrotic centre), kept up to ``enhance_reach_mm`` from it
    (vessels, choroid plexus and dura far from it enhance too)."""
    filled = ndi.binary_fill_holes(abnormal & ~enh)
    dist = ndi.distance_transform_edt(~filled, sampling=sp)
    # Thin enhancement counts inside the lesion and within ``adjacent_mm`` of it (the thin
    # enhancing rim around necrosis); farther out thin enhancing lines are vessels or dura.
    enh = enh | (enh_any & (dist <= opt["adjacent_mm"]))
    enh &= dist <= opt["enhance_reach_mm"]
    if enh.any():
        lab, n = ndi.label(enh)
        touching = np.unique(lab[enh & (dist <= opt["adjacent_mm"])])
        enh = np.isin(lab, touching[touching > 0])
        enh = _keep_components(enh, voxel_mm3, opt["min_enhancing_mm3"], 0.0)
    return enh


def _whole_tumour(abnormal: np.ndarray, enh: np.ndarray, brain: np.ndarray, sp: np.ndarray,
                  opt: dict, voxel_mm3: float) -> np.ndarray:
    """5. Whole tumour: abnormal + enhancing, closed, holes (necrotic core) filled in 3-D and
    in-plane (a rim that is open in 3-D is usually closed in its slices)."""
    tumour = abnormal | enh
    if opt["close_mm"] > 0:
        tumour = ndi.binary_closing(tumour, _ball(opt["close_mm"] / sp)) | tumour
    tumour = ndi.binary_fill_holes(tumour)
    tumour = _fill_holes_2d(tumour, 2 - int(np.argmax(sp[::-1]))) & brain
    return _keep_components(tumour, voxel_mm3, opt["min_component_mm3"], 0.0)


@register_segmenter
class BaselineSegmenter(Segmenter):
    """Intensity-rule baseline: FLAIR/T2 hyperintensity plus T1c-over-T1 enhancement.

    Parameters
    ----------
    **options : float
        Overrides of :data:`DEFAULTS` (thresholds in robust z units, sizes in mm / mm³).

    Notes
    -----
    A baseline without weights, not a validated clinical method; see the module docstring.
    """

    name: ClassVar[str] = "baseline"
    title: ClassVar[str] = "Baseline (intensity rules, no weights)"
    #: Method revision; bump when the output changes (it enters cache keys).
    METHOD_VERSION: ClassVar[str] = "2.6"
    code_version: ClassVar[str] = METHOD_VERSION

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown baseline option(s) {sorted(unknown)}; "
                             f"known: {', '.join(DEFAULTS)}")
        for key, value in options.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"baseline option {key}={value!r} must be a number") from None
            if not np.isfinite(value):
                raise ValueError(f"baseline option {key}={value!r} must be finite")
        super().__init__(**options)

    @property
    def version(self) -> str:
        return self.METHOD_VERSION

    @property
    def label_map(self) -> LabelMap:
        return CANONICAL

    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        missing = [s for s in ("t1", "t1c", "t2", "flair") if s not in images]
        if missing:
            raise ValueError(f"baseline needs t1, t1c, t2 and flair; missing {missing} "
                             f"(subject {subject.subject_id})")
        ref = images["flair"]
        # The left-right axis: the voxel axis pointing most along world x (RAS or LPS alike).
        lr_axis = int(np.argmax(np.abs(np.asarray(ref.affine, dtype=float)[0, :3])))
        return segment_arrays(images["t1"].data, images["t1c"].data, images["t2"].data,
                              images["flair"].data, spacing=ref.spacing, lr_axis=lr_axis,
                              **self.options)
