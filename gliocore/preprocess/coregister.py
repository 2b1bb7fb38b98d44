"""Rigid co-registration of T1, T2 and FLAIR to T1c with ANTs (antspyx).

Images travel as SimpleITK images (LPS world, like ANTs); the conversion to ANTs keeps origin,
spacing and direction. The forward transform maps T1c-grid points into the moving image's space
(the ITK convention), is kept as an ITK ``.mat`` file, and the similarity (Mattes mutual
information, higher is better) is measured before (identity, i.e. scanner coordinates) and after.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Version of the co-registration step; part of the preprocessing cache key.
COREGISTER_VERSION = 2


@dataclass(frozen=True)
class Registration:
    """A rigid registration of one sequence to T1c.

    Attributes
    ----------
    image : SimpleITK.Image
        The moving image resampled on the fixed grid (linear interpolation).
    transform : SimpleITK.Transform
        Fixed-to-moving point transform.
    mi_before, mi_after : float
        Mattes mutual information (higher is better) of the moving image on the fixed grid,
        before (scanner coordinates) and after registration.
    coverage : SimpleITK.Image
        1 where the moving image's field of view covers the fixed grid, 0 elsewhere.
    """

    image: object
    transform: object
    mi_before: float
    mi_after: float
    coverage: object

    @property
    def rotation_deg(self) -> float:
        m = np.asarray(self.transform.GetMatrix()).reshape(3, 3)
        return float(np.degrees(np.arccos(np.clip((np.trace(m) - 1) / 2, -1, 1))))

    @property
    def translation_mm(self) -> float:
        return float(np.linalg.norm(self.transform.GetTranslation()))


def to_ants(image):
    """SimpleITK image -> ANTs image (same world geometry, float32)."""
    import ants
    import SimpleITK as sitk
    arr = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)).transpose(2, 1, 0)
    return ants.from_numpy(np.ascontiguousarray(arr), origin=list(image.GetOrigin()),
                           spacing=list(image.GetSpacing()),
                           direction=np.asarray(image.GetDirection()).reshape(3, 3))


def from_ants(image, reference=None):
    """ANTs image -> SimpleITK image (geometry copied from ``reference`` when given)."""
    import SimpleITK as sitk
    out = sitk.GetImageFromArray(np.ascontiguousarray(image.numpy().transpose(2, 1, 0)))
    if reference is not None:
        out.CopyInformation(reference)
    else:
        out.SetOrigin(tuple(image.origin))
        out.SetSpacing(tuple(image.spacing))
        out.SetDirection(tuple(np.asarray(image.direction).ravel()))
    return out


def mutual_information(fixed, moving_on_fixed) -> float:
    """Mattes mutual information of two images on one grid (higher is better)."""
    import ants
    return float(-ants.image_mutual_information(to_ants(fixed), to_ants(moving_on_fixed)))


#: Voxel size (mm) of the working grids the registration runs on. Both images are smoothed and
#: resampled to it (an axis already coarser, e.g. 5-mm FLAIR slices, keeps its spacing); the
#: transform found is a physical-space transform, valid for the full-resolution images. The finest
#: level of ANTs' pyramid was 2 mm already (the 1-mm level was skipped): on the working grids
#: ANTs no longer smooths and subsamples full-resolution images at every level, which was most
#: of its time.
WORK_MM = 2.0
#: Pyramid on the working grid: shrink 3, 2, 1 (6, 4, 2 mm) with Gaussian smoothing of 1.5, 1,
#: 0.5 working voxels (3, 2, 1 mm, as before on the 1-mm grid). Iterations are maxima: ANTs stops
#: a level when the metric has changed less than 1e-6 over 10 iterations.
SHRINK = (3, 2, 1)
SMOOTHING = (1.5, 1.0, 0.5)
ITERATIONS = (1000, 500, 250)
#: Mattes mutual information with 32 bins on a regular 25 % sample of the fixed working grid's
#: head (:func:`head_mask`).
SAMPLING = 0.25
#: Head for the metric's samples: brighter than this share of the fixed image's 99th percentile
#: (above the noise floor of air), grown by ``HEAD_MARGIN_MM`` so that the head's edge counts.
HEAD_FRACTION = 0.05
HEAD_MARGIN_MM = 6.0


def head_mask(image):
    """uint8 mask of the head in ``image`` (SimpleITK): the voxels above the noise floor
    (:data:`HEAD_FRACTION` of the 99th percentile of the non-zero voxels), holes filled, grown
    by :data:`HEAD_MARGIN_MM`. The registration's metric is sampled there only: on a BraTS-sized
    grid, air is four fifths of the voxels and tells the metric nothing."""
    import SimpleITK as sitk
    from scipy import ndimage as ndi
    arr = sitk.GetArrayFromImage(image)
    positive = arr[arr > 0]
    if positive.size == 0:
        raise ValueError("the fixed image is empty (no voxel above zero)")
    head = ndi.binary_fill_holes(arr > HEAD_FRACTION * float(np.percentile(positive, 99)))
    spacing = image.GetSpacing()[::-1]
    head = ndi.distance_transform_edt(~head, sampling=spacing) <= HEAD_MARGIN_MM
    out = sitk.GetImageFromArray(head.astype(np.uint8))
    out.CopyInformation(image)
    return out


def working_grid(image, mm: float = WORK_MM):
    """``image`` smoothed and resampled to voxels of ``mm`` (axes coarser than that keep theirs).

    The Gaussian's sigma per axis is half the new spacing's excess over the old (anti-aliasing),
    in mm; the origin moves so that the new grid covers the same physical extent.
    """
    import SimpleITK as sitk
    old = np.asarray(image.GetSpacing(), dtype=float)
    new = np.maximum(old, mm)
    if np.allclose(new, old):
        return sitk.Cast(image, sitk.sitkFloat32)
    sigma = 0.5 * np.sqrt(np.maximum(new**2 - old**2, 0.0))
    img = sitk.Cast(image, sitk.sitkFloat32)
    img = sitk.SmoothingRecursiveGaussian(img, [float(max(s, 1e-3)) for s in sigma])
    size = np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(size * old / new)).astype(int)
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    # first voxel centre: half a new voxel in from the old extent's corner
    corner = np.asarray(image.GetOrigin()) - d @ (old / 2)
    origin = corner + d @ (new / 2)
    return sitk.Resample(img, [int(n) for n in new_size], sitk.Transform(), sitk.sitkLinear,
                         tuple(map(float, origin)), tuple(map(float, new)), image.GetDirection(),
                         0.0, sitk.sitkFloat32)


def register_rigid(fixed, moving, seed: int = 1, workdir: Path | None = None,
                   iterations: tuple[int, ...] = ITERATIONS) -> Registration:
    """Rigidly register ``moving`` to ``fixed`` (both SimpleITK images) with ANTs.

    The registration runs on :func:`working_grid` copies of both images (:data:`WORK_MM`), the
    metric sampled in the fixed image's :func:`head_mask`; the moving image is then resampled
    once, linearly, from its full resolution onto ``fixed``'s grid.

    Parameters
    ----------
    fixed, moving : SimpleITK.Image
        T1c and the sequence to bring onto it, each on its own grid.
    seed : int
        ANTs' random seed (for reproducible sampling).
    workdir : Path, optional
        Where ANTs writes its transform file (a temporary folder otherwise; removed after).
    iterations : tuple of int
        Maximum iterations per level of :data:`SHRINK`.
    """
    import ants
    import SimpleITK as sitk
    f_work = working_grid(fixed)
    f, m, f_mask = to_ants(f_work), to_ants(working_grid(moving)), to_ants(head_mask(f_work))
    identity = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    before = mutual_information(fixed, identity)
    out_prefix = None
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        out_prefix = str(Path(workdir) / "rigid_")
    kwargs = {"outprefix": out_prefix} if out_prefix else {}
    ants.config._random_seed = seed  # antspyx 0.6.3 drops random_seed=; it reads this (seeded runs repeat)
    reg = ants.registration(f, m, type_of_transform="Rigid", random_seed=seed,
                            aff_metric="mattes", aff_sampling=32,
                            aff_random_sampling_rate=SAMPLING, aff_iterations=iterations,
                            aff_shrink_factors=SHRINK, aff_smoothing_sigmas=SMOOTHING,
                            mask=f_mask, mask_all_stages=True, **kwargs)
    mat = reg["fwdtransforms"][0]
    transform = sitk.ReadTransform(mat)
    if out_prefix is None:
        # ants writes its transforms as files named by a temporary prefix *directly in* the
        # temp folder: remove those files only (removing their parent removed all of /tmp)
        for path in {*reg["fwdtransforms"], *reg["invtransforms"]}:
            Path(path).unlink(missing_ok=True)
    transform = _as_euler(transform)
    moved = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    after = mutual_information(fixed, moved)
    return Registration(moved, transform, before, after, field_of_view(fixed, moving, transform))


def field_of_view(fixed, moving, transform):
    """uint8 image on ``fixed``'s grid: 1 where ``moving``'s field of view reaches (through the
    fixed-to-moving ``transform``), 0 where the moving sequence saw nothing (e.g. a thick-slab
    FLAIR that covers part of the head)."""
    import SimpleITK as sitk
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    return sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _as_euler(transform):
    """ANTs' AffineTransform (rigid content) as a plain SimpleITK AffineTransform, unwrapped."""
    import SimpleITK as sitk
    if transform.GetName() == "CompositeTransform":
        transform = transform.GetNthTransform(0)
    t = sitk.AffineTransform(3)
    t.SetParameters(transform.GetParameters())
    t.SetFixedParameters(transform.GetFixedParameters())
    return t


def target_registration_error(found, truth, points: np.ndarray) -> float:
    """Mean distance (mm) between where two transforms send ``points`` ((N, 3) LPS mm)."""
    a = np.array([found.TransformPoint(tuple(map(float, p))) for p in points])
    b = np.array([truth.TransformPoint(tuple(map(float, p))) for p in points])
    return float(np.linalg.norm(a - b, axis=1).mean())
