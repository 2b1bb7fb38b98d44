"""N4 bias-field correction (SimpleITK), fitted on a shrunk image, applied at full resolution."""
from __future__ import annotations

#: Version of the bias-correction step; part of the preprocessing cache key.
BIAS_VERSION = 1


def n4_correct(image, mask=None, shrink: int = 4, iterations: tuple[int, ...] = (50, 50, 30)):
    """Correct the bias field of ``image`` with N4 (Tustison et al., IEEE TMI 2010).

    Parameters
    ----------
    image : SimpleITK.Image
        A scalar 3-D MR image.
    mask : SimpleITK.Image, optional
        Where to fit the field (uint8); the Otsu foreground of ``image`` when None.
    shrink : int
        In-plane shrink factor for the fit (slices thicker than 3 mm are not shrunk along z).
    iterations : tuple of int
        N4 iterations per fitting level.

    Returns
    -------
    (corrected, log_bias) : tuple of SimpleITK.Image
        The corrected image (float32, same grid) and the estimated log bias field.
    """
    import SimpleITK as sitk
    img = sitk.Cast(image, sitk.sitkFloat32)
    # N4 needs positive intensities; shift a little above zero inside the head.
    if mask is None:
        mask = sitk.OtsuThreshold(img, 0, 1, 200)
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    factors = [shrink if sp < 3.0 else 1 for sp in img.GetSpacing()]
    small = sitk.Shrink(img, factors)
    small_mask = sitk.Shrink(mask, factors)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations))
    n4.Execute(small, small_mask)
    log_bias = n4.GetLogBiasFieldAsImage(img)
    corrected = img / sitk.Exp(log_bias)
    return sitk.Cast(corrected, sitk.sitkFloat32), log_bias
