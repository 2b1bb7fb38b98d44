"""Label maps: how a mask source's integers translate into GlioScope's named tumour classes.

Every mask source (a segmentation backend, an imported expert mask) declares a
:class:`LabelMap`. Masks are converted to GlioScope's canonical integer mask
(1 = contrast-enhancing, 2 = non-enhancing; see :attr:`TumourClass.canonical_label`)
right after they are produced, and the store keeps classes by name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from gliocore.types import TUMOUR_CLASSES, TumourClass


#: How far from an integer a float-stored label may be and still be read as that integer
#: (float32 storage of 4 is exact, 3.9999999 is an artefact; 1.5 or 2 - 0.01 is not a label).
LABEL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LabelMap:
    """Map from source integers to tumour classes.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"hdglio-v2"``.
    classes : mapping of int to TumourClass
        Source label value -> class. Several source values may map to one class
        (BraTS: 1 and 2 -> non-enhancing). Source values absent from the map are
        treated as background.
    description : str
        Where the convention comes from.
    """

    name: str
    classes: Mapping[int, TumourClass]
    description: str = ""

    def __post_init__(self) -> None:
        for value, cls in self.classes.items():
            if int(value) <= 0:
                raise ValueError(f"label map {self.name!r}: source value {value} must be > 0 "
                                 "(0 is background)")
            if not isinstance(cls, TumourClass):
                raise TypeError(f"label map {self.name!r}: {cls!r} is not a TumourClass")

    def source_values(self, cls: TumourClass) -> list[int]:
        """Source integers that make up ``cls``."""
        return sorted(int(v) for v, c in self.classes.items() if c is cls)

    def to_canonical(self, mask: np.ndarray) -> np.ndarray:
        """Convert a source mask to GlioScope's canonical uint8 mask (1 = CE, 2 = NE)."""
        mask = np.asarray(mask)
        if not np.issubdtype(mask.dtype, np.integer):
            rounded = np.rint(mask)
            if not np.allclose(mask, rounded):
                raise ValueError(f"label map {self.name!r}: mask has non-integer values")
            mask = rounded.astype(np.int32)
        out = np.zeros(mask.shape, dtype=np.uint8)
        for cls in TUMOUR_CLASSES:
            values = self.source_values(cls)
            if values:
                out[np.isin(mask, values)] = cls.canonical_label
        return out

    def checked_to_canonical(self, mask: np.ndarray, what: str = "mask") -> np.ndarray:
        """Convert a mask from outside (an imported or reference mask), refusing bad values.

        Float-stored labels are rounded only when every value lies within
        :data:`LABEL_TOLERANCE` of an integer (never truncated: 2 - 1e-6 is 2). Every non-zero
        value must be one this map knows.

        Parameters
        ----------
        mask : (I, J, K) array-like
        what : str
            How to name the mask in messages (``"reference mask"``).

        Returns
        -------
        (I, J, K) uint8 ndarray
            GlioScope's canonical mask (1 = CE, 2 = NE).

        Raises
        ------
        ValueError
            Non-integer values (a probability map, an interpolated mask), or values unknown to
            the map (the message lists them and the map, and says how to give another map).
        """
        data = np.asarray(mask)
        if not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
            if not np.all(np.isfinite(data)):
                raise ValueError(f"{what} has non-finite values (NaN or infinity)")
            rounded = np.rint(data)
            off = float(np.max(np.abs(data - rounded))) if data.size else 0.0
            if off > LABEL_TOLERANCE:
                raise ValueError(f"{what} has non-integer values (up to {off:.3g} from a whole "
                                 "number); is it a probability map or an interpolated mask? "
                                 "Export integer labels (nearest-neighbour resampling)")
            data = rounded.astype(np.int64)
        values = {int(v) for v in np.unique(data)} - {0}
        unknown = sorted(v for v in values if v not in self.classes)
        if unknown:
            known = ", ".join(f"{k} = {c.value}" for k, c in sorted(self.classes.items()))
            raise ValueError(f"{what} has label value(s) {unknown} that label map {self.name!r} "
                             f"does not know ({known}); declare the mask's label map (a preset: "
                             f"{', '.join(PRESETS)}, or a mapping such as '4:ce,1:ne,2:ne')")
        return self.to_canonical(data)

    def to_json(self) -> str:
        return json.dumps({"name": self.name,
                           "classes": {str(k): v.value for k, v in sorted(self.classes.items())},
                           "description": self.description}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LabelMap":
        data = json.loads(text)
        return cls(data["name"], {int(k): TumourClass(v) for k, v in data["classes"].items()},
                   data.get("description", ""))

    @classmethod
    def parse(cls, spec: str, name: str = "custom") -> "LabelMap":
        """Parse a mapping such as ``"4:ce,1:ne,2:ne"`` or ``"4->1,1+2->2"``.

        The targets may be class names (``ce``/``enhancing``/``contrast_enhancing``,
        ``ne``/``non_enhancing``) or canonical numbers (1 = CE, 2 = NE).
        """
        aliases = {"ce": TumourClass.ENHANCING, "enhancing": TumourClass.ENHANCING,
                   "contrast_enhancing": TumourClass.ENHANCING, "1": TumourClass.ENHANCING,
                   "ne": TumourClass.NON_ENHANCING, "non_enhancing": TumourClass.NON_ENHANCING,
                   "nonenhancing": TumourClass.NON_ENHANCING, "2": TumourClass.NON_ENHANCING}
        classes: dict[int, TumourClass] = {}
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            sep = "->" if "->" in part else ":"
            if sep not in part:
                raise ValueError(f"label mapping {spec!r}: expected 'SOURCE:CLASS' items, got {part!r}")
            src, dst = part.split(sep, 1)
            target = aliases.get(dst.lower())
            if target is None:
                raise ValueError(f"label mapping {spec!r}: unknown class {dst!r}; use ce or ne")
            for value in src.split("+"):
                classes[int(value)] = target
        if not classes:
            raise ValueError(f"label mapping {spec!r} is empty")
        return cls(name, classes, f"user mapping {spec}")


CANONICAL = LabelMap("glioscope", {1: TumourClass.ENHANCING, 2: TumourClass.NON_ENHANCING},
                     "GlioScope's own mask files and the seed notebook: 1 = contrast-enhancing, "
                     "2 = non-enhancing")
HDGLIO_V2 = LabelMap("hdglio-v2", {1: TumourClass.NON_ENHANCING, 2: TumourClass.ENHANCING},
                     "HD-GLIO v2 as read by published integrations: 1 = non-enhancing T2/FLAIR "
                     "abnormality, 2 = contrast-enhancing tumour")
SEED = LabelMap("seed", {1: TumourClass.ENHANCING, 2: TumourClass.NON_ENHANCING},
                "the seed notebook's reading of HD-GLIO output: 1 = contrast-enhancing")
BRATS = LabelMap("brats", {4: TumourClass.ENHANCING, 1: TumourClass.NON_ENHANCING,
                           2: TumourClass.NON_ENHANCING},
                 "BraTS 2012-2021: 4 = enhancing tumour, 1 = necrosis/non-enhancing core, "
                 "2 = oedema; 1+2 -> non-enhancing")
BRATS2023 = LabelMap("brats2023", {3: TumourClass.ENHANCING, 1: TumourClass.NON_ENHANCING,
                                   2: TumourClass.NON_ENHANCING},
                     "BraTS 2023: 3 = enhancing tumour, 1 = necrotic core, 2 = oedema")

PRESETS: dict[str, LabelMap] = {m.name: m for m in (CANONICAL, HDGLIO_V2, SEED, BRATS, BRATS2023)}


def get_label_map(spec: str | LabelMap) -> LabelMap:
    """Return a preset by name, or parse a custom ``"src:class,..."`` mapping."""
    if isinstance(spec, LabelMap):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    if ":" in spec or "->" in spec:
        return LabelMap.parse(spec)
    raise ValueError(f"unknown label map {spec!r}; presets: {', '.join(PRESETS)} "
                     "or a mapping such as '4:ce,1:ne,2:ne'")


#: ``--reference-label-map auto`` (the default): a reference's map from its values and naming.
AUTO = "auto"
#: GlioScope's own reference masks (the demo, ``make_tiny_cohort``): ``<subject>_truth``.
GLIOSCOPE_REFERENCE_SUFFIX = "_truth"
#: BraTS ground truth: ``<subject>_seg``.
BRATS_REFERENCE_SUFFIX = "_seg"


def _stem(name: str) -> str:
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def infer_reference_map(values: set[int] | list[int], file_name: str) -> LabelMap:
    """The label map of a reference mask that did not declare one, when values and naming agree.

    A reference is unambiguous when:

    * it is named like GlioScope's own references (``<subject>_truth``): GlioScope's map;
    * it is named like BraTS ground truth (``<subject>_seg``): BraTS 2012–2021 (4 = enhancing,
      1 = necrosis/non-enhancing core, 2 = oedema), or BraTS 2023 when it has 3 and no 4. A BraTS
      reference without enhancing tumour (only 1 and 2, common in lower-grade gliomas) is read
      as non-enhancing throughout, never as GlioScope's 1 = contrast-enhancing;
    * otherwise, its values name the convention: 4 with only 1/2 besides (BraTS), 3 with only
      1/2 besides (BraTS 2023), or no tumour at all.

    Parameters
    ----------
    values : set of int
        The non-zero label values the reference holds.
    file_name : str
        The reference's file name (its suffix is the cohort's naming).

    Returns
    -------
    LabelMap

    Raises
    ------
    ValueError
        The values fit more than one convention (e.g. only 1 and 2: GlioScope's CE + NE, or
        BraTS necrosis + oedema): the message says which flag to pass
        (``--reference-label-map``).
    """
    vals = {int(v) for v in values} - {0}
    stem = _stem(file_name)
    if stem.endswith(GLIOSCOPE_REFERENCE_SUFFIX):
        return CANONICAL
    brats_named = stem.endswith(BRATS_REFERENCE_SUFFIX)
    if not (3 in vals and 4 in vals):
        if 4 in vals and vals <= {1, 2, 4}:
            return BRATS
        if 3 in vals and vals <= {1, 2, 3}:
            return BRATS2023
        if brats_named and vals <= {1, 2}:
            return BRATS
        if not vals:
            return CANONICAL
    raise ValueError(
        f"reference mask {file_name} has label values {sorted(vals)}, which do not say its label "
        "map: GlioScope's (1 = contrast-enhancing, 2 = non-enhancing) and BraTS's (4 = enhancing, "
        "1 = necrosis/non-enhancing core, 2 = oedema; a BraTS mask without label 4 has only 1 "
        "and 2) read them differently. Declare it: --reference-label-map glioscope, brats or "
        "brats2023 (or a mapping such as '4:ce,1:ne,2:ne'; on the Cohort page, 'Reference label "
        "map')")


def reference_values(data: np.ndarray) -> set[int]:
    """The non-zero whole-number values of a reference mask (float storage rounded; a value
    further than :data:`LABEL_TOLERANCE` from a whole number is refused as
    :meth:`LabelMap.checked_to_canonical` refuses it)."""
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        if not np.all(np.isfinite(arr)):
            raise ValueError("reference mask has non-finite values (NaN or infinity)")
        rounded = np.rint(arr)
        off = float(np.max(np.abs(arr - rounded))) if arr.size else 0.0
        if off > LABEL_TOLERANCE:
            raise ValueError(f"reference mask has non-integer values (up to {off:.3g} from a "
                             "whole number); is it a probability map or an interpolated mask? "
                             "Export integer labels (nearest-neighbour resampling)")
        arr = rounded
    return {int(v) for v in np.unique(arr)} - {0}


def inferable_map_names(file_name: str) -> tuple[str, ...]:
    """The label maps :func:`infer_reference_map` can give a reference of this name (a stored
    score read with another map, e.g. a BraTS ``_seg`` file read with GlioScope's map by an
    older default, is not reused)."""
    stem = _stem(file_name)
    if stem.endswith(GLIOSCOPE_REFERENCE_SUFFIX):
        return (CANONICAL.name,)
    if stem.endswith(BRATS_REFERENCE_SUFFIX):
        return (BRATS.name, BRATS2023.name)
    return (BRATS.name, BRATS2023.name, CANONICAL.name)


def declared_reference_map(spec: "str | LabelMap | None") -> "LabelMap | None":
    """The declared label map of the reference masks, or None for ``auto`` (per file, by
    :func:`infer_reference_map`)."""
    if spec is None or spec == AUTO:
        return None
    return get_label_map(spec)


def read_reference(data: np.ndarray, declared_json: str | None, file_name: str
                   ) -> tuple[np.ndarray, LabelMap]:
    """A reference mask in GlioScope's canonical labels, and the label map it was read with.

    Parameters
    ----------
    data : (I, J, K) ndarray
        The reference as stored.
    declared_json : str or None
        The declared map (:meth:`LabelMap.to_json`); None: inferred from the values and
        ``file_name`` (:func:`infer_reference_map`).
    file_name : str

    Raises
    ------
    ValueError
        Non-integer values, values the map does not know, or an undeclared map the values and
        naming do not decide (the message names ``--reference-label-map``).
    """
    ref_map = (LabelMap.from_json(declared_json) if declared_json
               else infer_reference_map(reference_values(data), file_name))
    return ref_map.checked_to_canonical(data, what="reference mask"), ref_map
