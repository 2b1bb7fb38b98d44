"""LoG images on a box: ITK's Laplacian of recursive Gaussians, the same values, only where used.

PyRadiomics' ``LoG`` image type (``imageoperations.getLoGImage``) runs SimpleITK's
``LaplacianRecursiveGaussianImageFilter`` on the whole image it is given, although features only
read it inside the ROI's bounding box. ITK (5.4) computes it as the sum over the axes ``d`` of

    second derivative along d  ->  smoothing along the 1st other axis  ->  smoothing along the 2nd

(nine one-dimensional recursive Gaussian passes, each on float32 images, each line computed on
its own), accumulated in float32 as ``cum = float(cum + term * (1.0 / spacing[d]**2))`` for
``d = 0, 1, 2``. A pass along one axis never mixes values of different positions along the other
axes, so once a pass is done, its output can be cut to the box along the axis just filtered
(no later pass of that term looks across it) without changing a single value of the box:

* first pass (along ``d``) on the whole image, then cut along ``d`` to the box;
* second pass on that, cut along its axis; third pass on that, cut along its axis.

:func:`log_on_box` does this with SimpleITK's ``RecursiveGaussianImageFilter`` (the very filter
ITK's Laplacian runs inside, same sigma, order, direction and normalisation), about a third of
the work with a box much smaller than the image, and the same float32 values (tested against
``LaplacianRecursiveGaussianImageFilter`` bit for bit, anisotropic spacing included).
:func:`log_images` is ``getLoGImage`` with its checks and names, yielding the box only.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import SimpleITK as sitk

__all__ = ["log_images", "log_on_box"]

_LOG = logging.getLogger("radiomics.imageoperations")  # PyRadiomics' warnings, same logger


def _recursive_gaussian(image: sitk.Image, sigma: float, order: int, direction: int) -> sitk.Image:
    f = sitk.RecursiveGaussianImageFilter()
    f.SetSigma(float(sigma))
    f.SetNormalizeAcrossScale(True)
    f.SetOrder(order)
    f.SetDirection(int(direction))
    return f.Execute(image)


def _cut(image: sitk.Image, axis: int, lower: int, upper: int) -> sitk.Image:
    """``image`` restricted to indices ``lower..upper`` (inclusive) along ``axis``."""
    size = list(image.GetSize())
    index = [0] * image.GetDimension()
    index[axis] = int(lower)
    size[axis] = int(upper - lower + 1)
    return sitk.RegionOfInterest(image, size, index)


def log_on_box(image: sitk.Image, sigma: float, lower: Sequence[int], upper: Sequence[int]
               ) -> sitk.Image:
    """``LaplacianRecursiveGaussian(image)`` (sigma in mm, normalised across scale) on a box.

    Parameters
    ----------
    image : sitk.Image
        3-D image of any scalar type.
    sigma : float
        Gaussian sigma in physical units (mm), > 0.
    lower, upper : sequence of 3 int
        Inclusive index bounds of the box, in SimpleITK's (x, y, z) index order.

    Returns
    -------
    sitk.Image
        float32 image covering the box (origin, spacing, direction of that region of
        ``image``), holding the values the filter gives on the whole of ``image`` there.
    """
    lower = [int(v) for v in lower]
    upper = [int(v) for v in upper]
    nd = image.GetDimension()
    total = None
    info = None
    for d in range(nd):
        term = _cut(_recursive_gaussian(image, sigma, sitk.RecursiveGaussianImageFilter.SecondOrder,
                                        d), d, lower[d], upper[d])
        for axis in (a for a in range(nd) if a != d):
            term = _cut(_recursive_gaussian(term, sigma, sitk.RecursiveGaussianImageFilter.ZeroOrder,
                                            axis), axis, lower[axis], upper[axis])
        values = sitk.GetArrayViewFromImage(term).astype(np.float64)
        scale = 1.0 / (float(image.GetSpacing()[d]) ** 2)
        start = np.zeros(values.shape, np.float32) if total is None else total
        # ITK's accumulation: float(a + b * (1 / spacing^2)), a and b float32, computed in double
        total = (start.astype(np.float64) + values * scale).astype(np.float32)
        info = term
    out = sitk.GetImageFromArray(total)
    out.CopyInformation(info)
    return out


def log_images(image: sitk.Image, lower: Sequence[int], upper: Sequence[int], **kwargs
               ) -> Iterator[tuple[sitk.Image, str, dict]]:
    """PyRadiomics 3.0.1's ``getLoGImage(image, mask, **kwargs)``, each LoG image on the box only.

    Same checks (image at least 4 voxels along each axis, sigma > 0 and the image at least
    ``ceil(sigma / spacing) + 1`` voxels along each axis, else a warning and no image), same
    names (``log-sigma-<sigma>-mm-3D``) and ``kwargs``; the images cover the box
    ``lower..upper`` (see :func:`log_on_box`).

    Parameters
    ----------
    image : sitk.Image
        3-D image the LoG is taken of (the whole image: the filter looks beyond the box).
    lower, upper : sequence of 3 int
        Inclusive index bounds of the box, in SimpleITK's (x, y, z) index order.
    **kwargs
        PyRadiomics' settings; ``sigma`` (list of float, mm) is read.

    Yields
    ------
    (image, name, kwargs)
        The LoG image on the box, its PyRadiomics name and ``kwargs``, per valid sigma.
    """
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    if np.min(size) < 4:
        _LOG.warning("Image too small to apply LoG filter, size: %s", size)
        return
    for sigma in kwargs.get("sigma", []):
        if sigma > 0.0:
            if np.all(size >= np.ceil(sigma / spacing) + 1):
                name = f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D"
                yield log_on_box(image, sigma, lower, upper), name, kwargs
            else:
                _LOG.warning("applyLoG: sigma(%g)/spacing(%s) + 1 must be greater than the "
                             "size(%s) of the inputImage", sigma, spacing, size)
        else:
            _LOG.warning("applyLoG: sigma must be greater than 0.0: %g", sigma)
