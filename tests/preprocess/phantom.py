"""A small skull-bearing head phantom, each sequence on its own grid, for the stage's fast tests.

Nested ellipsoids in scanner (LPS) millimetres: scalp (bright fat), bone (dark), CSF, grey and
white matter, and a tumour with an enhancing rim; contrasts differ per sequence (T2's CSF is
bright, FLAIR's dark), so registration works on mutual information. T1c is on one grid; T1, T2
and FLAIR on another, coarser and rotated a few degrees; a smooth multiplicative bias field and
noise are added. About 1.1 litres of brain, so the brain-volume check passes.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

RADII = np.array([75.0, 90.0, 70.0])  # head (scalp surface), mm
#: Shells as fractions of the head radii: scalp, bone, CSF, then brain.
SCALP, BONE, CSF, WM = 0.95, 0.88, 0.83, 0.6
TUMOUR = (np.array([22.0, -15.0, 12.0]), 14.0)  # centre (mm), radius (mm)
#: tissue -> intensity per sequence
CONTRAST = {
    "t1c": {"scalp": 0.9, "bone": 0.05, "csf": 0.1, "gm": 0.55, "wm": 0.8, "rim": 1.0, "core": 0.3},
    "t1": {"scalp": 0.9, "bone": 0.05, "csf": 0.1, "gm": 0.55, "wm": 0.8, "rim": 0.45, "core": 0.3},
    "t2": {"scalp": 0.7, "bone": 0.05, "csf": 1.0, "gm": 0.6, "wm": 0.4, "rim": 0.85, "core": 0.95},
    "flair": {"scalp": 0.6, "bone": 0.05, "csf": 0.05, "gm": 0.6, "wm": 0.45, "rim": 1.0,
              "core": 0.8},
}


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _grid(size, spacing, angle_deg: float = 0.0, shift=(0.0, 0.0, 0.0)) -> sitk.Image:
    """An empty image centred on the head (plus ``shift``), rotated ``angle_deg`` about z."""
    rot = _rotation(angle_deg)
    img = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection(rot.ravel().tolist())
    half = rot @ ((np.asarray(size) - 1) * np.asarray(spacing) / 2)
    img.SetOrigin((np.asarray(shift, float) - half).tolist())
    return img


def _points(img: sitk.Image) -> np.ndarray:
    """Physical (LPS mm) coordinates of every voxel, shape (z, y, x, 3)."""
    size = img.GetSize()
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(float)
    m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    return idx @ m.T + np.asarray(img.GetOrigin())


def _tissue_map(p: np.ndarray, seq: str) -> np.ndarray:
    c = CONTRAST[seq]
    r = np.sqrt(((p / RADII) ** 2).sum(-1))
    out = np.zeros(p.shape[:-1], np.float32)
    out[r < SCALP] = c["scalp"]
    out[r < BONE] = c["bone"]
    out[r < CSF] = c["csf"]
    out[r < CSF - 0.03] = c["gm"]
    out[r < WM] = c["wm"]
    centre, radius = TUMOUR
    d = np.linalg.norm(p - centre, axis=-1)
    out[d < radius] = c["rim"]
    out[d < radius * 0.6] = c["core"]
    return out


def phantom_scan(seed: int = 0, moving_angle: float = 6.0, moving_shift=(4.0, -3.0, 2.0)
                 ) -> dict[str, sitk.Image]:
    """T1, T1c, T2 and FLAIR of the phantom head: T1c 3 mm isotropic (56 x 64 x 50), the others
    on a 3.5 x 3.5 x 4.5 mm grid tilted 10 degrees, with the head moved between the sequences:
    rotated ``moving_angle`` degrees about z and shifted ``moving_shift`` mm (so registration has
    something to find)."""
    rng = np.random.default_rng(seed)
    out = {}
    for seq in ("t1", "t1c", "t2", "flair"):
        if seq == "t1c":
            grid = _grid((56, 64, 50), (3.0, 3.0, 3.0))
        else:
            grid = _grid((46, 54, 34), (3.5, 3.5, 4.5), 10.0)
        p = _points(grid)
        # the anatomy at scanner point p: the head moved by (R, t) shows at R^T (p - t)
        anatomy = p if seq == "t1c" else (p - np.asarray(moving_shift)) @ _rotation(moving_angle)
        data = _tissue_map(anatomy, seq)
        bias = np.exp(0.25 * p[..., 0] / RADII[0] - 0.15 * p[..., 2] / RADII[2])
        data = data * bias + rng.normal(0, 0.01, data.shape) * (data > 0)
        img = sitk.GetImageFromArray(np.clip(data * 1000, 0, None).astype(np.float32))
        img.CopyInformation(grid)
        out[seq] = sitk.SmoothingRecursiveGaussian(img, 1.0)
    return out
