"""Mask import: use existing segmentation files (expert masks, another tool's output).

The mask's place is a pattern relative to the scan's folder (:func:`check_pattern`): plain
``{subject}`` / ``{scan}`` placeholders only, no absolute path, no ``..``; the file it names must
resolve inside that folder (a link out of it is refused) and be a regular file no larger than an
image may be (:data:`MAX_MASK_FILE_BYTES`), so that a typed pattern can neither read another
folder nor hang the run on a FIFO or ``/dev/zero``.
"""
from __future__ import annotations

import os
import re
import stat
import string
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import InvalidVolumeError, SubjectError
from gliocore.imaging.io import file_sha256, load_volume
from gliocore.imaging.volume import AFFINE_ATOL, Volume
from gliocore.imaging.labels import LabelMap, get_label_map
from gliocore.segment.base import Segmenter, register_segmenter
from gliocore.settings import InputLimits
from gliocore.types import BASELINE_SCAN

#: The placeholders a mask pattern may hold (no format spec, no conversion, no attribute).
PATTERN_FIELDS = ("subject", "scan")
#: Largest mask file read: the largest volume plus its header (InputLimits' defaults).
MAX_MASK_FILE_BYTES = InputLimits().max_volume_bytes + InputLimits().max_header_bytes
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_pattern(pattern: str) -> str:
    """Check a mask pattern: relative to the scan's folder, unable to leave it, plain fields.

    Raises
    ------
    ValueError
        Saying what is wrong (the message contains "pattern").
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("the mask pattern is empty; give a file name relative to each scan's "
                         "folder, e.g. '{subject}_seg.nii.gz'")
    if pattern.startswith(("/", "~")) or "\\" in pattern or "\x00" in pattern \
            or _DRIVE.match(pattern):
        raise ValueError(f"mask pattern {pattern!r} must be relative to each scan's folder (no "
                         "absolute path, drive, '~' or backslash), e.g. 'seg/{subject}_seg.nii.gz'")
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"mask pattern {pattern!r}: {exc} (write a literal brace as "
                         "{{ or }})") from exc
    for _text, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PATTERN_FIELDS or spec or conversion:
            raise ValueError(f"mask pattern {pattern!r}: only the plain placeholders "
                             f"{', '.join('{' + f + '}' for f in PATTERN_FIELDS)} are allowed "
                             f"(found {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}})")
    if any(part in ("..", ".") for part in pattern.split("/")):
        raise ValueError(f"mask pattern {pattern!r} may not climb out of the scan's folder ('..')")
    return pattern


@register_segmenter
class MaskImportSegmenter(Segmenter):
    """Read each subject's mask from a file and translate its labels.

    Parameters
    ----------
    pattern : str
        Where the mask lies, relative to the scan's folder, with ``{subject}`` replaced by
        the subject ID and ``{scan}`` by the scan ID; e.g. ``"{subject}_seg.nii.gz"`` (BraTS)
        or ``"seg/{subject}_seg.nii.gz"`` (the seed's HD-GLIO output). Absolute patterns,
        ``..`` and format specs are refused (:func:`check_pattern`); the mask must be a regular
        file inside the scan's folder.
    label_map : str or LabelMap
        Required (no default): a preset name (``brats``, ``brats2023``, ``hdglio-v2``, ``seed``,
        ``glioscope``) or a mapping such as ``"4:ce,1:ne,2:ne"``.

    Notes
    -----
    The mask must lie on the images' grid (same shape and affine); it is not resampled.
    The mask file's content hash is part of the cache key, so an edited mask is re-read.
    """

    name: ClassVar[str] = "import"
    #: An imported mask was not made from these images: a sequence's missing part says nothing
    #: about it, so it is kept whole.
    handles_partial_coverage: ClassVar[bool] = True
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
        check_pattern(pattern)
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
        """The scan's mask file, checked to lie inside the scan's folder (links resolved).

        Raises
        ------
        SubjectError
            When the subject or scan ID makes the path leave the folder.
        """
        # ``{scan}``: the scan ID (``baseline`` for the only scan of a cross-sectional cohort)
        text = self.pattern.format(subject=subject.subject_id,
                                   scan=getattr(subject, "scan_id", BASELINE_SCAN))
        folder = Path(subject.folder)
        path = folder / text
        base = folder.resolve()
        if text.startswith("/") or ".." in text.split("/") or base not in path.resolve().parents:
            raise SubjectError(subject.subject_id, f"the mask file of pattern {self.pattern!r} "
                               "lies outside the scan's folder (an ID or a link that climbs out); "
                               "refused", path=str(path), stage="segment")
        return path

    def _checked_mask(self, subject: Subject) -> Path:
        """The mask file: inside the folder, a regular file, not larger than an image may be."""
        path = self.mask_path(subject)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise SubjectError(subject.subject_id, f"mask file not found (pattern "
                               f"{self.pattern!r})", path=str(path), stage="segment") from None
        except OSError as exc:
            raise SubjectError(subject.subject_id, f"mask file cannot be read: {exc}",
                               path=str(path), stage="segment") from exc
        if not stat.S_ISREG(st.st_mode):
            raise SubjectError(subject.subject_id, "the mask is not a regular file (a folder, "
                               "FIFO or device); refused", path=str(path), stage="segment")
        if st.st_size > MAX_MASK_FILE_BYTES:
            raise SubjectError(subject.subject_id, f"the mask file has {st.st_size} bytes, beyond "
                               f"the limit of {MAX_MASK_FILE_BYTES} (Settings.input_limits); "
                               "refused unread", path=str(path), stage="segment")
        return path

    def input_fingerprint(self, subject: Subject) -> str:
        """Content hash of the subject's mask file (enters the cache key)."""
        return file_sha256(self._checked_mask(subject))

    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        path = self._checked_mask(subject)
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
