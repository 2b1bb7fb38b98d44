"""Mask import: use existing segmentation files (expert masks, another tool's output)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import InvalidVolumeError, SubjectError
from gliocore.imaging.io import file_sha256, load_volume
from gliocore.imaging.volume import AFFINE_ATOL, Volume
from gliocore.imaging.labels import LabelMap, get_label_map
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.types import BASELINE_SCAN


@register_segmenter
class MaskImportSegmenter(Segmenter):
    """Read each subject's mask from a file and translate its labels.

    Parameters
    ----------
    pattern : str
        Where the mask lies, relative to the subject's folder, with ``{subject}`` replaced by
        the subject ID; e.g. ``"{subject}_seg.nii.gz"`` (BraTS) or
        ``"seg/{subject}_seg.nii.gz"`` (the seed's HD-GLIO output). An absolute pattern is
        allowed too (``/masks/{subject}.nii.gz``).
    label_map : str or LabelMap
        Required (no default): a preset name (``brats``, ``brats2023``, ``hdglio-v2``, ``seed``,
        ``glioscope``) or a mapping such as ``"4:ce,1:ne,2:ne"``.

    Notes
    -----
    The mask must lie on the images' grid (same shape and affine); it is not resampled.
    The mask file's content hash is part of the cache key, so an edited mask is re-read.
    """

    name: ClassVar[str] = "import"
    title: ClassVar[str] = "Import existing masks"

    def __init__(self, pattern: str = "{subject}_seg.nii.gz",
                 label_map: str | LabelMap | None = None, **options: Any) -> None:
        if label_map is None or (isinstance(label_map, str) and not label_map.strip()):
            # No default: the same integers mean different classes in different sources (HD-GLIO's
            # enhancing label 2 is BraTS' oedema), and a wrong guess gives wrong numbers silently.
            raise ValueError("mask import needs the masks' label map: which integers are "
                             "contrast-enhancing and which non-enhancing. Give a preset (brats, "
                             "brats2023, hdglio-v2, seed, glioscope) or a mapping such as "
                             "'4:ce,1:ne,2:ne' (CLI: --label-map)")
        self._label_map = get_label_map(label_map)
        super().__init__(pattern=pattern, label_map=self._label_map.name
                         if isinstance(label_map, str) else label_map, **options)
        self.pattern = pattern

    @property
    def version(self) -> str:
        return "1"

    @property
    def label_map(self) -> LabelMap:
        return self._label_map

    def mask_path(self, subject: Subject) -> Path:
        # ``{scan}``: the scan ID (``baseline`` for the only scan of a cross-sectional cohort)
        rel = Path(self.pattern.format(subject=subject.subject_id,
                                       scan=getattr(subject, "scan_id", BASELINE_SCAN)))
        return rel if rel.is_absolute() else subject.folder / rel

    def input_fingerprint(self, subject: Subject) -> str:
        """Content hash of the subject's mask file (enters the cache key)."""
        path = self.mask_path(subject)
        if not path.exists():
            raise SubjectError(subject.subject_id, f"mask file not found (pattern "
                               f"{self.pattern!r})", path=str(path), stage="segment")
        return file_sha256(path)

    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        path = self.mask_path(subject)
        try:
            vol = load_volume(path, dtype=None)
        except InvalidVolumeError as exc:
            raise SubjectError(subject.subject_id, str(exc), path=str(path), stage="segment") from exc
        ref = next(iter(images.values()))
        if vol.shape != ref.shape:
            raise SubjectError(subject.subject_id, f"mask shape {vol.shape} != image shape "
                               f"{ref.shape}; resample the mask to the image grid first",
                               path=str(path), stage="segment")
        if not np.allclose(vol.affine, ref.affine, atol=AFFINE_ATOL):
            raise SubjectError(subject.subject_id, "mask affine differs from the images' affine; "
                               "resample the mask to the image grid first", path=str(path),
                               stage="segment")
        data = np.asarray(vol.data)
        if not np.issubdtype(data.dtype, np.integer):  # float-stored masks: labels must be whole
            rounded = np.rint(data)
            if not np.allclose(data, rounded, atol=1e-3):
                raise SubjectError(subject.subject_id, "mask has non-integer values; is it a "
                                   "probability map or an interpolated mask? Export integer "
                                   "labels (nearest-neighbour resampling)", path=str(path),
                                   stage="segment")
            data = rounded.astype(np.int32)
        values = set(np.unique(data).tolist()) - {0}
        unknown = sorted(v for v in values if v not in self._label_map.classes)
        if unknown:
            raise SubjectError(subject.subject_id, f"mask has label value(s) {unknown} that label "
                               f"map {self._label_map.name!r} does not know "
                               f"({dict((k, v.value) for k, v in self._label_map.classes.items())}); "
                               "give a label mapping such as '4:ce,1:ne,2:ne'", path=str(path),
                               stage="segment")
        return np.asarray(data)
