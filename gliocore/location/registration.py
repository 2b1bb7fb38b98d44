"""Registration of native-space subjects to an atlas template with ANTs (``antspyx``).

A subject's T1 (or T1c) is registered to the atlas reference brain; the transforms are kept in a
folder named by the registration's content key (image hash + atlas + transform type + code
version), so a re-run reuses them. Atlas regions and atlas coordinates are warped *into the
subject* so that every volume is measured in subject space; the tumour mask is warped *into the
atlas* only for the cohort lesion-frequency map. The quality figure is the Dice of the subject's
brain mask (non-zero voxels), warped to the atlas, with the atlas brain mask.

ANTs is imported lazily: everything else in GlioScope works without it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from gliocore.imaging.atlas import Atlas
from gliocore.imaging.io import text_sha256
from gliocore.location.regions import SubjectFrame

#: Bump when registration settings change results (part of the registration cache key).
REGISTRATION_CODE_VERSION = "2"   # 2: seeded and single-threaded, so repeatable
#: ANTs transform types offered (``antspyx`` names).
TRANSFORMS = ("Rigid", "Affine", "SyN")
DEFAULT_TRANSFORM = "SyN"
#: Registration runs on copies of both images resampled to this voxel size (mm): transforms live in
#: physical space, so they apply at full resolution; 2 mm is ~8x less work than 1 mm and ample
#: for lobe-level localisation.
REGISTRATION_RESOLUTION_MM = 2.0


@dataclass(frozen=True)
class Registration:
    """A subject-to-atlas registration.

    Attributes
    ----------
    key : str
        Content key (moving image hash, atlas, transform, code version).
    atlas : str
    transform : str
    fwd : tuple of str
        Transform files taking subject images into the atlas (ANTs ``fwdtransforms``).
    inv : tuple of str
        Transform files taking atlas images into the subject (ANTs ``invtransforms``).
    brain_dice : float
        Dice of the warped subject brain mask with the atlas brain mask.
    seconds : float
    """

    key: str
    atlas: str
    transform: str
    fwd: tuple[str, ...]
    inv: tuple[str, ...]
    brain_dice: float
    seconds: float

    def to_json(self) -> str:
        return json.dumps({"fwd": list(self.fwd), "inv": list(self.inv)})


def registration_key(moving_sha256: str, atlas_name: str, transform: str) -> str:
    """Content key of a registration."""
    return text_sha256(f"{moving_sha256}|{atlas_name}|{transform}|{REGISTRATION_CODE_VERSION}")


#: ITK threads ANTs uses. One: a multi-threaded metric sums in an order that changes from run to
#: run, and with SyN that drift moves regions by voxels (two runs gave different VASARI codes).
#: Read by ITK when it first starts threads, so it is set before ``ants`` is imported.
ITK_THREADS = "1"


def _ants() -> Any:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = ITK_THREADS
    try:
        import ants
    except ImportError as exc:  # pragma: no cover - antspyx is in requirements-nodeps.txt
        raise ImportError("registration needs antspyx==0.6.3: pip install --no-deps -r "
                          "requirements-nodeps.txt") from exc
    return ants


def to_ants(data: np.ndarray, affine: np.ndarray) -> Any:
    """A numpy volume with its RAS+ affine as an ANTs image (ANTs converts to LPS itself)."""
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")  # else ANTs prints a units warning per image
    return _ants().from_nibabel_nifti(img)


def _which_to_invert(transforms: tuple[str, ...]) -> list[bool]:
    return [t.endswith(".mat") for t in transforms]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    denom = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / denom) if denom else float("nan")


def register_to_atlas(moving: np.ndarray, moving_affine: np.ndarray, atlas: Atlas,
                      out_dir: Path, transform: str = DEFAULT_TRANSFORM, key: str = "",
                      seed: int = 1, resolution_mm: float = REGISTRATION_RESOLUTION_MM
                      ) -> Registration:
    """Register a subject image to the atlas reference brain.

    Parameters
    ----------
    moving : (I, J, K) ndarray
        The subject's skull-stripped T1 (zero outside the brain).
    moving_affine : (4, 4) ndarray
    atlas : Atlas
    out_dir : Path
        Where the transform files are written (one folder per registration).
    transform : {'Rigid', 'Affine', 'SyN'}
    key : str
        The registration's content key (recorded; see :func:`registration_key`).
    seed : int
        ANTs random seed of the metric sampling. ``ants.registration`` ignores its own
        ``random_seed`` argument (it reads ``ants.config._random_seed``), so the seed is set
        there for the call; with one ITK thread (:data:`ITK_THREADS`) the result is then the
        same bit for bit on every run.
    resolution_mm : float
        Voxel size both images are resampled to for the registration itself.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose one of {TRANSFORMS}")
    ants = _ants()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fixed = to_ants(atlas.reference, atlas.affine)
    mov = to_ants(moving, moving_affine)
    res = (float(resolution_mm),) * 3
    import ants.config as ants_config

    previous_seed, ants_config._random_seed = ants_config._random_seed, int(seed)
    try:
        reg = ants.registration(ants.resample_image(fixed, res, use_voxels=False, interp_type=0),
                                ants.resample_image(mov, res, use_voxels=False, interp_type=0),
                                type_of_transform=transform, outprefix=str(out_dir / "xf_"))
    finally:
        ants_config._random_seed = previous_seed
    fwd = tuple(str(p) for p in reg["fwdtransforms"])
    inv = tuple(str(p) for p in reg["invtransforms"])
    brain = ants.apply_transforms(fixed, to_ants((np.asarray(moving) != 0).astype(np.float32),
                                                 moving_affine),
                                  list(fwd), interpolator="nearestNeighbor")
    quality = dice(brain.numpy() > 0.5, atlas.brain)
    return Registration(key, atlas.name, transform, fwd, inv, quality, time.perf_counter() - t0)


def warp_to_atlas(mask: np.ndarray, affine: np.ndarray, atlas: Atlas, reg: Registration
                  ) -> np.ndarray:
    """A subject label mask resampled onto the atlas grid (nearest label)."""
    ants = _ants()
    out = ants.apply_transforms(to_ants(atlas.reference, atlas.affine), to_ants(mask, affine),
                                list(reg.fwd), interpolator="nearestNeighbor")
    return np.rint(out.numpy()).astype(np.uint8)


def frame_from_registration(reg: Registration, atlas: Atlas, shape: tuple[int, ...],
                            affine: np.ndarray) -> SubjectFrame:
    """The atlas frame of a registered subject: atlas regions and atlas coordinates warped into
    the subject grid (nearest label for regions, linear for coordinates)."""
    ants = _ants()
    subject = to_ants(np.zeros(shape, dtype=np.float32), affine)
    inv, invert = list(reg.inv), _which_to_invert(reg.inv)

    def into_subject(data: np.ndarray, interpolator: str) -> np.ndarray:
        img = ants.apply_transforms(subject, to_ants(data, atlas.affine), inv,
                                    whichtoinvert=invert, interpolator=interpolator)
        return img.numpy()

    bits = np.rint(into_subject(atlas.bits.astype(np.float32), "nearestNeighbor")).astype(np.uint16)
    idx = np.indices(atlas.shape, dtype=np.float32)
    coords = [into_subject(sum(atlas.affine[a, b] * idx[b] for b in range(3)) + atlas.affine[a, 3],
                           "linear").astype(np.float32) for a in range(3)]
    del idx

    def coords_at(v: np.ndarray) -> np.ndarray:
        return np.stack([c[v[:, 0], v[:, 1], v[:, 2]] for c in coords], axis=1).astype(float)

    def bits_at(v: np.ndarray) -> np.ndarray:
        return bits[v[:, 0], v[:, 1], v[:, 2]]

    return SubjectFrame(atlas, "registered", coords_at, bits_at,
                        lambda m: warp_to_atlas(m, affine, atlas, reg))
