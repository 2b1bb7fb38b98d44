"""Sequence identification: which DICOM series is T1, T1c, T2 and FLAIR, with a confidence and why.

Rules read SeriesDescription/ProtocolName, ContrastBolusAgent, TR/TE/TI, ScanningSequence,
SequenceVariant, MRAcquisitionType and ImageType. Localisers, diffusion, perfusion, SWI,
derived images and reformats are set aside. A pick that is missing, tied or of low confidence is
never guessed: :func:`pick_sequences` reports it as ambiguous and the user's mapping decides
(:func:`read_mapping`, a CSV for the CLI: ``SUBJECT ID, series, sequence``).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from gliocore.preprocess.dicom import Series
from gliocore.types import PathType

SEQUENCES = ("t1", "t1c", "t2", "flair")
#: Below this confidence a pick is shown as ambiguous and needs the user's mapping.
MIN_CONFIDENCE = 0.6

_EXCLUDE = re.compile(r"locali[sz]er|scout|survey|3[ -]?plane|\btri[ -]?pilot|aahead|"
                      r"\bdwi\b|diffusion|\bdti\b|\badc\b|trace|\bb ?1000\b|perfusion|\bdsc\b|"
                      r"\bdce\b|\bpwi\b|\bswi\b|\bsusc|\bt2\*|\bgre\b.*t2\*|\bmra\b|\btof\b|"
                      r"\bmpr\b|reformat|\bmip\b|\bsub(traction)?\b|calibration|\bcbf\b", re.I)
_FLAIR = re.compile(r"flair|dark[ _-]?fluid|\btirm\b|\bfl\b", re.I)
_T2 = re.compile(r"\bt2(?![*])|t2w|\bt2[ _-]|tse.*t2|\bspace\b", re.I)
_T1 = re.compile(r"\bt1|t1w|mprage|mp[ -]?rage|\bspgr\b|bravo|\btfe\b|\bvibe\b|\bfspgr\b|\bflash\b",
                 re.I)
_POST = re.compile(r"\+ ?c\b|\bgd\b|gado|post|contrast|\bce\b|\bc\+|\bpc\b|\bwith\b", re.I)
_PRE = re.compile(r"\bpre\b|\bnative\b|\bw/?o\b|without|\bnon[ -]?con", re.I)


@dataclass(frozen=True)
class Candidate:
    """One series' reading as one sequence."""

    series: Series
    sequence: str | None
    confidence: float
    reason: str


@dataclass
class Identification:
    """The four picks of one scan, and what could not be decided.

    Attributes
    ----------
    picks : dict
        Sequence -> chosen candidate.
    ambiguous : dict
        Sequence -> why no pick was made (missing, tied, low confidence).
    candidates : list of Candidate
        Every series' reading (for the table shown to the user).
    """

    picks: dict[str, Candidate] = field(default_factory=dict)
    ambiguous: dict[str, str] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.ambiguous and set(self.picks) == set(SEQUENCES)


def classify(series: Series) -> Candidate:
    """Read one series as T1, T1c, T2, FLAIR or nothing, with a confidence in [0, 1] and a reason."""
    desc = series.description
    if "LOCALIZER" in series.image_type or _EXCLUDE.search(desc):
        return Candidate(series, None, 0.9, f"set aside: description {desc!r} (localiser, "
                                            "diffusion, perfusion, SWI or reformat)")
    if {"DERIVED", "SECONDARY"} & set(series.image_type[:2]) or "MPR" in series.image_type \
            or "REFORMATTED" in series.image_type:
        return Candidate(series, None, 0.8, f"set aside: ImageType {'/'.join(series.image_type)}"
                                            " (derived or reformatted)")
    votes: dict[str, list[tuple[float, str]]] = {s: [] for s in ("t1", "t2", "flair")}
    if _FLAIR.search(desc):
        votes["flair"].append((0.6, f"description {desc!r}"))
    elif _T2.search(desc):
        votes["t2"].append((0.6, f"description {desc!r}"))
    elif _T1.search(desc):
        votes["t1"].append((0.6, f"description {desc!r}"))
    _timing_votes(series, votes)
    best = max(votes, key=lambda k: sum(w for w, _ in votes[k]))
    score = sum(w for w, _ in votes[best])
    others = max(sum(w for w, _ in v) for k, v in votes.items() if k != best)
    if score <= 0:
        why = f"not usable: {series.problem}" if series.problem else (
            "no description, timing or sequence type matches T1, T2 or FLAIR")
        return Candidate(series, None, 0.5, why)
    confidence = min(1.0, score) * (1.0 if others == 0 else max(0.0, 1 - others / score))
    reasons = [r for _, r in votes[best]]
    sequence = best
    if best == "t1":
        post = bool(series.contrast_agent) or bool(_POST.search(desc) and not _PRE.search(desc))
        if post:
            sequence = "t1c"
            reasons.append("ContrastBolusAgent " + repr(series.contrast_agent)
                           if series.contrast_agent else f"post-contrast words in {desc!r}")
        else:
            reasons.append("no contrast agent tag or post-contrast words")
    if series.problem:  # reads as a sequence, but cannot be read: named when it is the pick
        reasons.insert(0, f"UNUSABLE ({series.problem})")
    return Candidate(series, sequence, round(confidence, 2), "; ".join(reasons))


def _timing_votes(s: Series, votes: dict[str, list[tuple[float, str]]]) -> None:
    """TR/TE/TI and sequence-type evidence: timing and a non-echo-planar sequence type pass 0.6."""
    ir = "IR" in s.scanning_sequence.split("\\") or (s.ti is not None and s.ti > 0)
    if s.tr is None or s.te is None:
        return
    tt = f"TR {s.tr:g} ms, TE {s.te:g} ms" + (f", TI {s.ti:g} ms" if s.ti else "")
    kinds = set(s.scanning_sequence.split("\\"))
    typed = bool(kinds & {"SE", "GR"}) and "EP" not in kinds  # not echo-planar (DWI, perfusion)
    bonus = 0.15 if typed else 0.0
    if ir and s.ti is not None and s.ti >= 1500 and s.tr >= 4000:
        votes["flair"].append((0.5 + bonus, f"inversion recovery with long TI ({tt})"))
    elif s.te >= 60 and s.tr >= 2000:
        votes["t2"].append((0.5 + bonus, f"long TR and TE ({tt}), sequence "
                                         f"{s.scanning_sequence or 'unknown'}"))
    elif s.te <= 30 and (s.tr <= 1000 or (ir and s.ti is not None and 500 <= s.ti <= 1300)):
        kind = "magnetisation-prepared (MPRAGE-like)" if ir else "short TR and TE"
        votes["t1"].append((0.5 + bonus, f"{kind} ({tt})"))


def pick_sequences(series: list[Series], mapping: dict[str, str] | None = None) -> Identification:
    """Choose T1, T1c, T2 and FLAIR among ``series``; ties and weak picks are left to the user.

    Parameters
    ----------
    series : list of Series
        One scan's series (see :func:`gliocore.preprocess.dicom.group_series`).
    mapping : dict, optional
        The user's decision: sequence -> series number (as text) or exact series description.
        It overrides the rules for the sequences it names.

    Returns
    -------
    Identification
    """
    out = Identification(candidates=[classify(s) for s in series])
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    for seq in SEQUENCES:
        if seq in mapping:
            chosen = [c for c in out.candidates if _matches(c.series, mapping[seq])]
            if len(chosen) != 1:
                out.ambiguous[seq] = (f"the mapping names series {mapping[seq]!r}, which matches "
                                      f"{len(chosen)} series here")
            elif chosen[0].series.problem:
                out.ambiguous[seq] = f"mapped {chosen[0].series.label}: {chosen[0].series.problem}"
            else:
                out.picks[seq] = Candidate(chosen[0].series, seq, 1.0, "the user's mapping")
            continue
        every = [c for c in out.candidates if c.sequence == seq]
        mine = sorted((c for c in every if not c.series.problem),
                      key=lambda c: (-c.confidence, _preference(c.series)))
        broken = [c.series for c in every if c.series.problem]
        if not mine and broken:
            out.ambiguous[seq] = "; ".join(f"{seq.upper()} {s.label} cannot be read: {s.problem}"
                                           for s in broken)
        elif not mine:
            out.ambiguous[seq] = "no series reads as " + seq.upper()
        elif mine[0].confidence < MIN_CONFIDENCE:
            out.ambiguous[seq] = (f"best candidate {mine[0].series.label} only at confidence "
                                  f"{mine[0].confidence:.2f} ({mine[0].reason})")
        elif len(mine) > 1 and mine[1].confidence == mine[0].confidence \
                and _preference(mine[1].series) == _preference(mine[0].series):
            out.ambiguous[seq] = (f"tie between {mine[0].series.label} and {mine[1].series.label}")
        else:
            out.picks[seq] = mine[0]
    return out


def _preference(s: Series) -> tuple:
    """Among equally confident candidates: 3-D before 2-D, thinner slices, then the later series."""
    return (0 if s.acquisition_type == "3D" else 1, s.slice_thickness or 99.0,
            -(s.number or 0))


def _matches(s: Series, wanted: str) -> bool:
    wanted = str(wanted).strip()
    return (s.number is not None and wanted == str(s.number)) or wanted == s.description


def read_mapping(path: PathType, id_column: str = "SUBJECT ID") -> dict[tuple[str, str | None],
                                                                        dict[str, str]]:
    """Read the user's sequence mapping CSV.

    Columns: ``SUBJECT ID`` (or ``id_column``), optional ``scan_id``, ``series`` (SeriesNumber or
    exact SeriesDescription) and ``sequence`` (t1, t1c, t2 or flair).

    Returns
    -------
    dict
        (subject, scan or None) -> {sequence: series}.

    Raises
    ------
    ValueError
        A missing column or an unknown sequence name, naming the row.
    """
    out: dict[tuple[str, str | None], dict[str, str]] = {}
    with open(Path(path), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {id_column, "series", "sequence"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: sequence mapping lacks column(s) {sorted(missing)}; "
                             f"expected {id_column}, series, sequence (scan_id optional)")
        for i, row in enumerate(reader, start=2):
            seq = (row["sequence"] or "").strip().lower()
            if seq not in SEQUENCES:
                raise ValueError(f"{path}, line {i}: sequence {seq!r} is not one of {SEQUENCES}")
            key = (row[id_column].strip(), (row.get("scan_id") or "").strip() or None)
            out.setdefault(key, {})[seq] = row["series"].strip()
    return out
