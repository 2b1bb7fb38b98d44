"""Real BraTS sequences moved by known rigid transforms and resampled to other grids."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: (rotation angles in degrees about x, y, z; translation in mm) per sequence: up to 15 deg, 20 mm.
MOTIONS = {"t1": ((8.0, -5.0, 12.0), (12.0, -9.0, 6.0)),
           "t2": ((-15.0, 4.0, -6.0), (-7.0, 14.0, -10.0)),
           "flair": ((5.0, 11.0, -9.0), (4.0, 6.0, 20.0))}
#: Voxel size of the moved sequence: FLAIR thick-slice, the others near 1 mm.
SPACINGS = {"t1": (1.0, 1.0, 1.2), "t2": (0.9, 0.9, 2.0), "flair": (0.9, 0.9, 5.0)}


def rigid(center, angles_deg, translation) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(map(float, center)))
    t.SetRotation(*np.radians(angles_deg))
    t.SetTranslation(tuple(map(float, translation)))
    return t


def moved(image: sitk.Image, truth: sitk.Transform, spacing, pad_mm: float = 25.0) -> sitk.Image:
    """``image`` seen through ``truth`` (moved(y) = image(truth(y))) on a padded grid of ``spacing``."""
    size = np.asarray(image.GetSize()) * np.asarray(image.GetSpacing())
    new_size = [int(np.ceil((s + 2 * pad_mm) / sp)) for s, sp in zip(size, spacing)]
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) - d @ np.full(3, pad_mm)
    ref = sitk.Image(new_size, sitk.sitkFloat32)
    ref.SetSpacing(tuple(map(float, spacing)))
    ref.SetOrigin(tuple(origin))
    ref.SetDirection(image.GetDirection())
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, truth, sitk.sitkLinear, 0.0)


def brain_points(image: sitk.Image, n: int = 3000, seed: int = 0) -> np.ndarray:
    """``n`` physical points (mm) of the non-zero region of ``image``."""
    arr = sitk.GetArrayFromImage(image)
    idx = np.argwhere(arr > 0)[:, ::-1]
    pick = np.random.default_rng(seed).choice(len(idx), size=min(n, len(idx)), replace=False)
    return np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i)))
                     for i in idx[pick]])
