"""The user's decisions on sequence identification: what the stage could not decide, and the
mapping file that records the choice.

The preprocessing stage writes, per cohort, ``identification.json`` beside its scans table: for
every DICOM scan, each series' reading (description, TR/TE/TI, 2-D/3-D, the rules' sequence,
confidence and reason) and whether the four picks were made. The dashboard lists the scans whose
picks were not made, the user chooses T1/T1c/T2/FLAIR per series, and :func:`write_mapping` writes
the choice as the CSV that ``--sequence-map`` reads (:func:`gliocore.preprocess.identify.
read_mapping`): ``SUBJECT ID, scan_id, series, sequence``. Nothing here guesses: a choice must
name each of the four sequences exactly once.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from gliocore.preprocess.identify import SEQUENCES, Candidate, read_mapping
from gliocore.types import PathType

IDENTIFICATION_FILE = "identification.json"
#: The dashboard's mapping file, in the cohort's preprocessing folder.
MAPPING_FILE = "sequence_map.csv"


def series_ref(candidate: Candidate, others: Iterable[Candidate]) -> str | None:
    """How a mapping names this series: its SeriesNumber when no other series of the scan has
    it, else its exact description when unique; None when neither tells it apart."""
    s = candidate.series
    peers = [c.series for c in others if c is not candidate]
    if s.number is not None and all(p.number != s.number for p in peers):
        return str(s.number)
    if s.description and all(p.description != s.description for p in peers):
        return s.description
    return None


def scan_record(scan) -> dict:
    """What the stage read of one DICOM scan (a :class:`gliocore.preprocess.importer.RawScan`),
    as JSON-ready data; no identifier beyond the subject ID (series are named by number and
    description, as in the stage's messages)."""
    ident = scan.identification
    picks = {seq: series_ref(c, ident.candidates) for seq, c in ident.picks.items()}
    rows = []
    for c in ident.candidates:
        s = c.series
        rows.append({"series": series_ref(c, ident.candidates), "number": s.number,
                     "description": s.description, "files": len(s.slices),
                     "tr_ms": s.tr, "te_ms": s.te, "ti_ms": s.ti,
                     "acquisition": s.acquisition_type or None,
                     "reading": c.sequence, "confidence": c.confidence, "reason": c.reason,
                     "problem": s.problem})
    return {"subject_id": scan.subject_id, "scan_id": scan.scan_id,
            "complete": ident.complete, "ambiguous": dict(ident.ambiguous), "picks": picks,
            "candidates": rows}


def save_identifications(out_root: PathType, records: list[dict]) -> Path:
    """Write the cohort's identification records (replacing the previous run's)."""
    path = Path(out_root) / IDENTIFICATION_FILE
    path.write_text(json.dumps(records, indent=1))
    return path


def load_identifications(out_root: PathType) -> list[dict]:
    """The identification records of the cohort whose preprocessing folder is ``out_root``
    (empty when the stage has not run on DICOM there)."""
    path = Path(out_root) / IDENTIFICATION_FILE
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable identification record ({exc})") from None


def pending(records: list[dict]) -> list[dict]:
    """The scans whose four sequences were not all picked (they wait for the user)."""
    return [r for r in records if not r["complete"]]


def mapping_from_choices(record: Mapping, choices: Mapping[str, str | None]) -> dict[str, str]:
    """The mapping (sequence -> series) that the user's ``choices`` (series -> sequence or None)
    make for the scan of ``record``.

    Raises
    ------
    ValueError
        A sequence chosen for several series, one not chosen at all, a series that a mapping
        cannot name, or one that cannot be read; the message says which.
    """
    known = {r["series"]: r for r in record["candidates"] if r["series"] is not None}
    out: dict[str, str] = {}
    problems = []
    for ref, seq in choices.items():
        if not seq:
            continue
        if seq not in SEQUENCES:
            raise ValueError(f"{seq!r} is not one of {', '.join(SEQUENCES)}")
        if ref not in known:
            problems.append(f"series {ref!r} is not a series of this scan that a mapping can name")
        elif known[ref]["problem"]:
            problems.append(f"series {ref!r} cannot be read: {known[ref]['problem']}")
        elif seq in out:
            problems.append(f"{seq.upper()} chosen for series {out[seq]!r} and {ref!r}")
        else:
            out[seq] = ref
    missing = [s.upper() for s in SEQUENCES if s not in out]
    if missing:
        problems.append("no series chosen for " + ", ".join(missing))
    if problems:
        raise ValueError(f"{record['subject_id']}, scan {record['scan_id']}: "
                         + "; ".join(problems))
    return out


def write_mapping(path: PathType, subject_id: str, scan_id: str | None,
                  mapping: Mapping[str, str], id_column: str = "SUBJECT ID") -> Path:
    """Record one scan's decision in the mapping CSV at ``path`` (``--sequence-map``'s format),
    replacing that scan's previous rows and keeping every other one."""
    path = Path(path)
    kept: list[dict] = []
    if path.is_file():
        read_mapping(path, id_column)  # refuse to extend a malformed file
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                same = (row[id_column].strip() == subject_id
                        and ((row.get("scan_id") or "").strip() or None) == scan_id)
                if not same:
                    kept.append(row)
    kept += [{id_column: subject_id, "scan_id": scan_id or "", "series": ref, "sequence": seq}
             for seq, ref in sorted(mapping.items(), key=lambda kv: SEQUENCES.index(kv[0]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[id_column, "scan_id", "series", "sequence"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    tmp.replace(path)
    return path
