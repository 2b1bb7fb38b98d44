"""Shared domain vocabulary: sequences, tumour classes and type aliases."""
from __future__ import annotations

import enum
from os import PathLike
from typing import Union

import numpy as np
import numpy.typing as npt

PathType = Union[str, "PathLike[str]"]
Array3D = npt.NDArray[np.generic]

#: Scan ID of the only scan of a subject in a cohort without timepoints (cross-sectional).
BASELINE_SCAN = "baseline"

#: Canonical sequence keys, in HD-GLIO's channel order (T1, T1c, T2, FLAIR).
SEQUENCES: tuple[str, ...] = ("t1", "t1c", "t2", "flair")

#: Human-readable sequence names for display.
SEQUENCE_TITLES: dict[str, str] = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}


class TumourClass(str, enum.Enum):
    """The two tumour classes GlioScope keeps, by name.

    Numeric labels differ between sources (HD-GLIO v2 integrations: 1 = non-enhancing,
    2 = contrast-enhancing; the seed notebook: 1 = contrast-enhancing; BraTS: 4 = enhancing),
    so every mask source declares a :class:`gliocore.imaging.labels.LabelMap` and everything
    downstream is keyed by these names.
    """

    ENHANCING = "contrast_enhancing"
    NON_ENHANCING = "non_enhancing"

    @property
    def title(self) -> str:
        return {"contrast_enhancing": "Contrast-enhancing tumour",
                "non_enhancing": "Non-enhancing T2/FLAIR abnormality"}[self.value]

    @property
    def canonical_label(self) -> int:
        """The integer used in GlioScope's own mask files and the seed-style export.

        1 = contrast-enhancing, 2 = non-enhancing (the seed notebook's convention,
        hence the export's ``_label1`` / ``_label2`` column suffixes).
        """
        return 1 if self is TumourClass.ENHANCING else 2


TUMOUR_CLASSES: tuple[TumourClass, ...] = (TumourClass.ENHANCING, TumourClass.NON_ENHANCING)
