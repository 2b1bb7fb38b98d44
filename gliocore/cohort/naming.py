"""Naming presets: how a subject's four sequence files are named (:class:`NamingScheme`,
TCGA, BraTS 2020/21, BraTS 2023, nnU-Net/HD-GLIO, skull-stripped, or a custom spec), and
finding them in a folder (:func:`find_sequences`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from gliocore.errors import SubjectError
from gliocore.imaging.volume import image_suffix
from gliocore.types import SEQUENCES


@dataclass(frozen=True)
class NamingScheme:
    """How a subject's sequence files are named: one file-name suffix per sequence.

    A file ``<anything><suffix>.nii[.gz]`` (or ``.nrrd``) is that sequence. Matching is
    case-insensitive.

    Parameters
    ----------
    name : str
    suffixes : mapping of canonical sequence -> suffix
        Keys are ``t1``, ``t1c``, ``t2``, ``flair``.
    """

    name: str
    suffixes: Mapping[str, str]

    def __post_init__(self) -> None:
        missing = [s for s in SEQUENCES if s not in self.suffixes]
        if missing:
            raise ValueError(f"naming scheme {self.name!r} lacks suffixes for {missing}")

    def match(self, filename: str) -> str | None:
        """The canonical sequence a file name belongs to under this scheme, or None."""
        stem = strip_image_suffix(filename)
        if stem is None:
            return None
        low = stem.lower()
        for seq in SEQUENCES:
            if low.endswith(self.suffixes[seq].lower()):
                return seq
        return None

    @classmethod
    def parse(cls, spec: str, name: str = "custom") -> "NamingScheme":
        """Parse ``"t1=_t1_bet,t1c=_t1c_bet,t2=_t2_bet,flair=_fla_bet"``."""
        suffixes: dict[str, str] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"naming spec {spec!r}: expected SEQ=SUFFIX items, got {part!r}")
            seq, suffix = (x.strip() for x in part.split("=", 1))
            seq = seq.lower()
            if seq not in SEQUENCES:
                raise ValueError(f"naming spec {spec!r}: unknown sequence {seq!r}; "
                                 f"use {', '.join(SEQUENCES)}")
            suffixes[seq] = suffix
        return cls(name, suffixes)


TCGA = NamingScheme("tcga", {"t1": "_t1", "t1c": "_t1Gd", "t2": "_t2", "flair": "_flair"})
BRATS = NamingScheme("brats", {"t1": "_t1", "t1c": "_t1ce", "t2": "_t2", "flair": "_flair"})
BRATS2023 = NamingScheme("brats2023", {"t1": "-t1n", "t1c": "-t1c", "t2": "-t2w", "flair": "-t2f"})
NNUNET = NamingScheme("nnunet", {"t1": "_0000", "t1c": "_0001", "t2": "_0002", "flair": "_0003"})
SKULLSTRIPPED = NamingScheme("bet", {"t1": "_t1_bet", "t1c": "_t1c_bet", "t2": "_t2_bet",
                                     "flair": "_fla_bet"})
NAMING_SCHEMES: dict[str, NamingScheme] = {s.name: s for s in (TCGA, BRATS, BRATS2023, NNUNET,
                                                               SKULLSTRIPPED)}


def get_naming(spec: str | NamingScheme | None) -> list[NamingScheme]:
    """Naming schemes to try: all presets (None/"auto"), one preset, or a custom spec."""
    if spec is None or spec == "auto":
        return list(NAMING_SCHEMES.values())
    if isinstance(spec, NamingScheme):
        return [spec]
    if spec in NAMING_SCHEMES:
        return [NAMING_SCHEMES[spec]]
    if "=" in spec:
        return [NamingScheme.parse(spec)]
    raise ValueError(f"unknown naming scheme {spec!r}; presets: {', '.join(NAMING_SCHEMES)}, "
                     "or a spec such as 't1=_t1,t1c=_t1ce,t2=_t2,flair=_flair'")


def strip_image_suffix(filename: str) -> str | None:
    """``filename`` without its image ending (NIfTI or NRRD), or None for other files."""
    ext = image_suffix(filename)
    return None if ext is None else filename[: -len(ext)]


def find_sequences(folder: Path, subject_id: str, schemes: Sequence[NamingScheme],
                   own_folder: bool | None = None, scan_id: str | None = None
                   ) -> tuple[dict[str, Path], str]:
    """Find the four sequence files of one subject in ``folder``.

    Files are considered when their name starts with the subject ID or when the folder is the
    subject's own (its name is the subject ID, or ``own_folder`` is true: a timepoint folder of
    the subject, or an ``img_dir`` of a scans table). The first scheme that finds all four
    sequences wins. ``scan_id`` names the scan in errors.

    Returns
    -------
    paths : dict of sequence -> Path
    scheme : str
        Name of the scheme that matched.

    Raises
    ------
    SubjectError
        When no scheme finds all four; the message lists what was found and missing.
    """
    if not folder.is_dir():
        raise SubjectError(subject_id, "image folder not found", path=str(folder), stage="load",
                           scan_id=scan_id)
    own_folder = bool(own_folder) or folder.name == subject_id
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and strip_image_suffix(p.name) is not None
                   and (own_folder or _named_for(p.name, subject_id, schemes)))
    best: tuple[dict[str, Path], str] = ({}, "")
    for scheme in schemes:
        found: dict[str, Path] = {}
        dupes: list[str] = []
        for p in files:
            seq = scheme.match(p.name)
            if seq is None:
                continue
            if seq in found:
                dupes.append(f"{seq}: {found[seq].name} and {p.name}")
            found[seq] = p
        if len(found) == len(SEQUENCES):
            if dupes:
                raise SubjectError(subject_id, f"more than one file for a sequence under naming "
                                   f"{scheme.name!r}: {'; '.join(dupes)}", path=str(folder),
                                   stage="load", scan_id=scan_id)
            return found, scheme.name
        if len(found) > len(best[0]):
            best = (found, scheme.name)
    found, name = best
    missing = [s for s in SEQUENCES if s not in found]
    detail = (f"found {', '.join(f'{k}={v.name}' for k, v in found.items())} under naming "
              f"{name!r}; missing {', '.join(missing)}") if found else "no sequence file recognised"
    raise SubjectError(subject_id, f"cannot find all four sequences ({detail}); "
                       f"tried naming {', '.join(s.name for s in schemes)}", path=str(folder),
                       stage="load", scan_id=scan_id)


def _named_for(filename: str, subject_id: str, schemes: Sequence[NamingScheme]) -> bool:
    """Whether a file in a shared folder is named for ``subject_id``: the ID followed by a
    separator or directly by a sequence suffix (so ``P10_t1`` is not a file of ``P1``)."""
    if not filename.startswith(subject_id):
        return False
    rest = (strip_image_suffix(filename) or "")[len(subject_id):]
    if not rest or not rest[0].isalnum():
        return True
    return any(rest.lower() == suffix.lower() for s in schemes for suffix in s.suffixes.values())
