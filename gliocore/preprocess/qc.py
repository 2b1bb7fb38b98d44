"""QC pictures of one preprocessed scan: small slices kept by the stage, drawn as RGB panels.

The stage keeps, beside ``preprocess.json``, a compressed ``qc.npz`` of three orthogonal slices
through the brain's centre (on the T1c grid, oriented for display like
:func:`gliocore.analysis.plots.extract_slice`: radiological convention, anterior / superior at
the top): T1c before and after N4; T1, T2 and FLAIR before N4, after N4 and registration, and
after N4 in scanner coordinates (before registration); the brain mask; and each sequence's
field-of-view coverage. About a megabyte a scan (float16, compressed, at most 256 pixels a side);
nothing of it goes into the store.

The drawing functions return ``(title, (rows, cols, 3) uint8)`` panels (no plotting library):

* ``"brain"``: the brain-mask outline on T1c (before N4, i.e. as acquired, with the skull);
* ``"registration"``: a checkerboard of each sequence and T1c, before and after registration;
* ``"bias"``: each sequence before and after N4 and the field removed (before / after).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliocore.types import PathType

#: File name of the QC slices, beside ``preprocess.json``.
QC_FILE = "qc.npz"
PLANES = ("axial", "coronal", "sagittal")
MOVING = ("t1", "t2", "flair")
STEPS = ("brain", "registration", "bias")
TITLES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
MASK_COLOUR = (0, 230, 120)
FOV_COLOUR = (255, 150, 0)
#: Longest side of a kept slice (a side of a larger T1c grid, e.g. 512, is subsampled by a whole
#: step; the other side keeps its own step, so thick slices are never dropped).
MAX_PIXELS = 256
#: Checkerboard tiles along the longer side of a slice.
CHECKER_TILES = 8


def _oriented(image):
    """``image`` resampled (exactly: a permutation/flip of axes) to LPS index order."""
    import SimpleITK as sitk
    return sitk.DICOMOrient(image, "LPS")


def _slab(reference, plane: str, centre: tuple[int, int, int]):
    """The one-voxel-thick slab of ``reference`` (LPS-ordered) through ``centre`` (i, j, k)."""
    i, j, k = centre
    if plane == "axial":
        return reference[:, :, k:k + 1]
    if plane == "coronal":
        return reference[:, j:j + 1, :]
    return reference[i:i + 1, :, :]


def _as_display(slab, plane: str) -> np.ndarray:
    """Array of a slab, rows top to bottom of the screen (see the module docstring)."""
    import SimpleITK as sitk
    arr = sitk.GetArrayFromImage(slab)  # (z, y, x) with x -> patient left, y -> posterior
    if plane == "axial":
        return arr[0]
    if plane == "coronal":
        return arr[::-1, 0, :]
    return arr[::-1, :, 0]


def _pixel_mm(reference, plane: str) -> tuple[float, float]:
    sx, sy, sz = reference.GetSpacing()
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def brain_centre(mask) -> tuple[int, int, int]:
    """Index (i, j, k) of the brain mask's centroid in the LPS-ordered T1c grid (the grid's
    centre when the mask is empty)."""
    import SimpleITK as sitk
    oriented = _oriented(mask)  # kept alive: a view of a temporary image reads freed memory
    idx = np.argwhere(sitk.GetArrayFromImage(oriented) > 0)
    if not len(idx):
        return tuple(int(n // 2) for n in oriented.GetSize())
    z, y, x = np.round(idx.mean(axis=0)).astype(int)
    return int(x), int(y), int(z)


def qc_slices(raw: Mapping[str, object], corrected: Mapping[str, object],
              transforms: Mapping[str, object], mask, coverage: Mapping[str, object]
              ) -> dict[str, np.ndarray]:
    """The QC slices of one scan (SimpleITK images in, arrays out; see the module docstring).

    Parameters
    ----------
    raw, corrected : mapping
        ``t1``, ``t1c``, ``t2``, ``flair`` -> the image before / after N4, each on its own grid.
    transforms : mapping
        ``t1``, ``t2``, ``flair`` -> the fixed(T1c)-to-moving rigid transform.
    mask : SimpleITK.Image
        The brain mask on the T1c grid.
    coverage : mapping
        ``t1``, ``t2``, ``flair`` -> uint8 field-of-view image on the T1c grid.

    Returns
    -------
    dict
        ``"<plane>.<name>"`` -> 2-D float16 array, and ``"<plane>.pixel_mm"`` -> (row, col) mm.
        Each sequence's arrays share one scale (its 99.9th percentile), so before/after compare.
    """
    import SimpleITK as sitk
    reference = _oriented(sitk.Cast(corrected["t1c"], sitk.sitkFloat32))
    centre = brain_centre(mask)
    identity = sitk.Transform()
    out: dict[str, np.ndarray] = {}
    for plane in PLANES:
        slab = _slab(reference, plane, centre)

        def on(img, tfm=identity, nearest=False, slab=slab, plane=plane):
            interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
            return _as_display(sitk.Resample(img, slab, tfm, interp, 0.0, sitk.sitkFloat32), plane)

        out[f"{plane}.t1c_before"] = on(raw["t1c"])
        out[f"{plane}.t1c"] = on(corrected["t1c"])
        for seq in MOVING:
            out[f"{plane}.{seq}_before"] = on(raw[seq], transforms[seq])
            out[f"{plane}.{seq}"] = on(corrected[seq], transforms[seq])
            out[f"{plane}.{seq}_unregistered"] = on(corrected[seq])
            out[f"{plane}.{seq}_fov"] = on(coverage[seq], nearest=True)
        out[f"{plane}.mask"] = on(mask, nearest=True)
        rows, cols = (max(1, int(np.ceil(n / MAX_PIXELS))) for n in out[f"{plane}.mask"].shape)
        for key in [k for k in out if k.startswith(f"{plane}.")]:
            out[key] = out[key][::rows, ::cols]
        out[f"{plane}.pixel_mm"] = (np.asarray(_pixel_mm(reference, plane), np.float32)
                                    * np.asarray([rows, cols], np.float32))
    return _scaled(out)


def _scaled(slices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each sequence's slices divided by one scale, as float16 (masks and sizes unchanged)."""
    out = dict(slices)
    for seq in ("t1c", *MOVING):
        keys = [k for k in slices if k.split(".", 1)[1].split("_")[0] == seq
                and not k.endswith("_fov")]
        values = np.concatenate([np.abs(slices[k]).ravel() for k in keys])
        scale = float(np.percentile(values, 99.9)) if values.size else 1.0
        for k in keys:
            out[k] = (slices[k] / max(scale, 1e-6)).astype(np.float16)
    for k in slices:
        if k.endswith((".mask", "_fov")):
            out[k] = slices[k].astype(np.uint8)
    return out


def save_qc(path: PathType, slices: Mapping[str, np.ndarray]) -> Path:
    """Write ``slices`` (from :func:`qc_slices`) as a compressed ``.npz``; return its path."""
    path = Path(path)
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in slices.items()})
    return path


@dataclass(frozen=True)
class QcSlices:
    """The QC slices of one scan, read back from ``qc.npz``."""

    arrays: dict[str, np.ndarray]

    def get(self, plane: str, name: str) -> np.ndarray:
        key = f"{plane}.{name}"
        if key not in self.arrays:
            raise KeyError(f"QC slices have no {name!r} for the {plane} plane")
        return np.asarray(self.arrays[key], np.float32)

    def pixel_aspect(self, plane: str) -> float:
        """Row spacing / column spacing of the plane's slices."""
        row_mm, col_mm = self.arrays[f"{plane}.pixel_mm"]
        return float(row_mm) / float(col_mm)


@dataclass(frozen=True)
class ScanQc:
    """One preprocessed scan's record (``preprocess.json``) and its QC slices (None when the
    stage that made it did not keep them)."""

    folder: Path
    result: dict
    slices: QcSlices | None


def read_scan_qc(folder: PathType) -> ScanQc | None:
    """The preprocessing record and QC slices of the scan in ``folder``; None when ``folder`` was
    not made by the preprocessing stage (an already preprocessed, passed-through scan).

    Raises
    ------
    ValueError
        ``preprocess.json`` or ``qc.npz`` exists but cannot be read (the message names it).
    """
    folder = Path(folder)
    record = folder / "preprocess.json"
    if not record.is_file():
        return None
    try:
        result = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{record}: unreadable preprocessing record ({exc})") from None
    qc_path = Path(result.get("outputs", {}).get("qc") or folder / QC_FILE)
    slices = None
    if qc_path.is_file():
        try:
            with np.load(qc_path) as data:
                slices = QcSlices({k: data[k] for k in data.files})
        except (OSError, ValueError) as exc:
            raise ValueError(f"{qc_path}: unreadable QC slices ({exc})") from None
    return ScanQc(folder, result, slices)


def summary_rows(result: Mapping) -> list[dict]:
    """Per sequence: registration similarity before/after, motion found and brain coverage."""
    rows = []
    for seq in MOVING:
        sim = (result.get("similarity") or {}).get(seq) or {}
        tfm = (result.get("transforms") or {}).get(seq) or {}
        cov = (result.get("coverage") or {}).get(seq)
        rows.append({"sequence": TITLES[seq], "MI before": sim.get("mi_before"),
                     "MI after": sim.get("mi_after"), "rotation (deg)": tfm.get("rotation_deg"),
                     "translation (mm)": tfm.get("translation_mm"),
                     "brain covered": None if cov is None else f"{cov:.1%}"})
    return rows


# -- drawing ---------------------------------------------------------------------------------------
def _grey(img: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB of ``img``, windowed to its 1st-99th percentile (inside ``region`` if given)."""
    vals = img[region] if region is not None and region.any() else img[img > 0]
    lo, hi = (np.percentile(vals, (1, 99)) if vals.size else (0.0, 1.0))
    g = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


def outline(mask2d: np.ndarray) -> np.ndarray:
    """Pixels of a binary 2-D mask that touch its outside (4-neighbourhood)."""
    m = np.asarray(mask2d, bool)
    pad = np.pad(m, 1)
    inner = pad[1:-1, 1:-1] & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~inner


def _paint(rgb: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = rgb.copy()
    out[where] = colour
    return out


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = CHECKER_TILES) -> np.ndarray:
    """``a`` and ``b`` (same shape, uint8 RGB) in alternating square tiles: ``tiles`` along the
    longer side. Edges that continue across tile borders mean the images line up."""
    rows, cols = a.shape[:2]
    size = max(1, int(np.ceil(max(rows, cols) / tiles)))
    r, c = np.indices((rows, cols)) // size
    pick_b = ((r + c) % 2).astype(bool)
    out = a.copy()
    out[pick_b] = b[pick_b]
    return out


def brain_panels(qc: QcSlices, plane: str) -> list[tuple[str, np.ndarray]]:
    """The brain-mask outline on T1c as acquired (with the skull) and on T1c after N4."""
    mask = qc.get(plane, "mask") > 0
    edge = outline(mask)
    raw = _paint(_grey(qc.get(plane, "t1c_before")), edge, MASK_COLOUR)
    after = _paint(_grey(qc.get(plane, "t1c")), edge, MASK_COLOUR)
    return [("Brain mask on T1c (as acquired)", raw), ("Brain mask on T1c (after N4)", after)]


def registration_panels(qc: QcSlices, plane: str) -> list[tuple[str, np.ndarray]]:
    """Per sequence, a checkerboard with T1c before registration (scanner coordinates) and after;
    the part of the brain outside the sequence's field of view is outlined in orange."""
    mask = qc.get(plane, "mask") > 0
    fixed = _grey(qc.get(plane, "t1c"), mask)
    panels = []
    for seq in MOVING:
        for name, when in ((f"{seq}_unregistered", "before"), (seq, "after")):
            moving = _grey(qc.get(plane, name), mask)
            board = checkerboard(fixed, moving)
            if when == "after":
                missing = mask & (qc.get(plane, f"{seq}_fov") == 0)
                board = _paint(board, outline(missing) & missing, FOV_COLOUR)
            panels.append((f"{TITLES[seq]} / T1c, {when}", board))
    return panels


def bias_panels(qc: QcSlices, plane: str) -> list[tuple[str, np.ndarray]]:
    """Per sequence: before N4, after N4, and the field removed inside the brain (before / after,
    divided by its median, windowed to 0.7-1.3: mid-grey = the median, brighter = the image was
    brighter there before correction)."""
    mask = qc.get(plane, "mask") > 0
    panels = []
    for seq in ("t1c", *MOVING):
        before, after = qc.get(plane, f"{seq}_before"), qc.get(plane, seq)
        ref = _grey(after, mask)
        field = np.ones_like(after)
        ok = mask & (after > 1e-3) & (before > 1e-3)
        if ok.any():
            field[ok] = before[ok] / after[ok]
            field[ok] /= float(np.median(field[ok]))
        g = (np.clip((field - 0.7) / 0.6, 0, 1) * 255).astype(np.uint8)
        field_rgb = np.repeat(g[..., None], 3, axis=2)
        field_rgb[~mask] = 0
        panels += [(f"{TITLES[seq]} before N4", _grey(before, mask)),
                   (f"{TITLES[seq]} after N4", ref), (f"{TITLES[seq]} field", field_rgb)]
    return panels


def qc_panels(qc: QcSlices, step: str, plane: str) -> list[tuple[str, np.ndarray]]:
    """The panels of one preprocessing ``step`` (``brain``, ``registration`` or ``bias``)."""
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    draw = {"brain": brain_panels, "registration": registration_panels, "bias": bias_panels}
    if step not in draw:
        raise ValueError(f"unknown QC step {step!r}; expected one of {STEPS}")
    return draw[step](qc, plane)
