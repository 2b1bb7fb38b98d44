"""A scan's affine transform into an atlas space, as preprocessing leaves it beside the scan.

With ``--preprocess-space sri24`` the preprocessing stage registers each scan's brain to the
SRI24 template and writes, in the scan's folder (beside its native-space images):

* ``atlas_space.json`` (this module's record), naming
* the forward transform, an ITK affine file ``*.mat`` written by ANTs: it maps *atlas* points to
  *native* points, so it resamples native images onto the atlas grid (ANTs ``fwdtransforms``);
  ANTs applies it inverted (``whichtoinvert``) to bring atlas images into the subject,
* the inverse, an ITK ``.tfm``: native points to atlas points (resamples atlas images, e.g. a
  segmentation made in SRI24, onto the native grid), and
* the four sequences and the brain mask resampled onto the atlas grid (sub-folder ``sri24/``).

The record lives in ``imaging`` because three layers read it: the pipeline (segmentation runs on
the atlas-space images and its mask comes back to native space), the location stage (reuses the
transform instead of registering again) and the preprocessing that writes it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gliocore.types import PathType

#: The record's file name in a scan folder.
ATLAS_SPACE_FILE = "atlas_space.json"


@dataclass(frozen=True)
class AtlasTransform:
    """A scan's affine registration to an atlas space (paths resolved against its folder).

    Attributes
    ----------
    space : str
        Atlas space name (``sri24``).
    forward : Path
        ITK affine (ANTs ``.mat``): atlas point -> native point.
    inverse : Path
        ITK affine (``.tfm``): native point -> atlas point.
    images : dict of str -> Path
        ``t1``, ``t1c``, ``t2``, ``flair`` (and ``brainmask``) on the atlas grid.
    key : str
        Content key (the preprocessing cache key, which covers the space option).
    jacobian : float
        ``|det|`` of the native-to-atlas linear part: atlas-space volume / native volume.
    brain_dice : float
        Dice of the scan's brain mask, on the atlas grid, with the atlas brain.
    seconds : float
        Registration time.
    moving : str
        The sequence registered (``t1c``).
    """

    space: str
    forward: Path
    inverse: Path
    images: dict[str, Path]
    key: str
    jacobian: float
    brain_dice: float
    seconds: float
    moving: str = "t1c"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """What a segmentation key adds for a scan segmented in this space."""
        return f"|atlas-space:{self.space}:{self.key}"

    def files(self) -> list[Path]:
        return [self.forward, self.inverse, *self.images.values()]


def write_atlas_transform(folder: PathType, record: AtlasTransform) -> Path:
    """Write ``record`` as ``folder/atlas_space.json`` with paths relative to ``folder``."""
    folder = Path(folder)
    data = asdict(record)

    def rel(p: Path) -> str:
        p = Path(p)
        return str(p.relative_to(folder)) if p.is_absolute() and p.is_relative_to(folder) \
            else str(p)

    data["forward"], data["inverse"] = rel(record.forward), rel(record.inverse)
    data["images"] = {k: rel(v) for k, v in record.images.items()}
    out = folder / ATLAS_SPACE_FILE
    out.write_text(json.dumps(data, indent=1, sort_keys=True))
    return out


def read_atlas_transform(folder: PathType) -> AtlasTransform | None:
    """The atlas transform recorded in a scan folder, or None (none recorded, unreadable, or a
    file it names is missing: the scan is then treated as native-only)."""
    folder = Path(folder)
    f = folder / ATLAS_SPACE_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
        record = AtlasTransform(
            space=str(data["space"]), forward=folder / data["forward"],
            inverse=folder / data["inverse"],
            images={k: folder / v for k, v in data["images"].items()}, key=str(data["key"]),
            jacobian=float(data["jacobian"]), brain_dice=float(data["brain_dice"]),
            seconds=float(data["seconds"]), moving=str(data.get("moving", "t1c")),
            extra={k: float(v) for k, v in (data.get("extra") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if all(p.is_file() for p in record.files()) else None


def atlas_fingerprint(folder: PathType) -> str:
    """``''`` for a scan without an atlas transform, else its :attr:`AtlasTransform.fingerprint`
    (so switching a scan to atlas-space segmentation gives it a new segmentation key)."""
    record = read_atlas_transform(folder)
    return "" if record is None else record.fingerprint
