"""Tumour segmentation behind one small interface.

Every backend is a :class:`~gliocore.segment.base.Segmenter`: a name, a version, the label map of
its raw output, an optional weights checksum, ``load()`` once per batch and ``segment()`` per
subject returning GlioScope's canonical mask (1 = contrast-enhancing, 2 = non-enhancing).
Backends register themselves by name; :func:`get_segmenter` builds one.

``baseline`` (intensity rules) is the default. ``learned`` (:mod:`.learned`: gradient-boosted
trees over the voxel features of :mod:`.learned_features`, trained on twelve expert-labelled BraTS
cases, model shipped in ``models/learned``) is available by name; held out it scores below the
rules, so it is not the default yet. ``stacked`` (:mod:`.stacked`: the same trees given the
rules' mask as features, model in ``models/stacked``) is a third variant, available by name.
:mod:`.degrade` degrades scans the way other centres' differ.

Torch is imported only inside the deep-learning backends, lazily. Mask QC (Dice, HD95 against a
reference) is :mod:`.qc`; input and output checks of the backends are :mod:`.checks`.

May import: ``cohort``, ``imaging`` and the vocabulary; never the store or the pipeline.
"""
from __future__ import annotations

from gliocore.segment.base import (SEGMENTERS, Segmenter, available_segmenters, get_segmenter,
                                   register_segmenter)

# Importing the backend modules registers them.
from gliocore.segment import baseline as _baseline  # noqa: F401,E402
from gliocore.segment import learned as _learned  # noqa: F401,E402
from gliocore.segment import maskimport as _maskimport  # noqa: F401,E402
from gliocore.segment import stacked as _stacked  # noqa: F401,E402

try:  # deep-learning backends register even when their packages are absent (they report why)
    from gliocore.segment import hdglio as _hdglio  # noqa: F401
except ImportError:  # pragma: no cover - module not written yet in some checkouts
    pass
try:
    from gliocore.segment import nnunetv2 as _nnunetv2  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["SEGMENTERS", "Segmenter", "available_segmenters", "get_segmenter",
           "register_segmenter"]
