"""The Cohort page's sequence decisions: DICOM scans whose T1/T1c/T2/FLAIR were not identified.

For each such scan: the candidate series with what the rules read in them, and a choice per
series. The choice is saved as the mapping CSV that ``--sequence-map`` reads
(``data/preprocessed/<cohort>/sequence_map.csv``), which the dashboard's processing uses.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from gliocore.preprocess import decisions
from gliocore.preprocess.identify import SEQUENCES

TITLES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
NONE = "—"


@st.cache_data(show_spinner=False, max_entries=8)
def _records(out_root: str, mtime_ns: int) -> list[dict]:
    return decisions.load_identifications(out_root)


def _saved(map_file: Path, id_column: str) -> dict:
    """The decisions already in the mapping file: (subject, scan) -> {sequence: series}."""
    from gliocore.preprocess.identify import read_mapping
    try:
        return read_mapping(map_file, id_column) if map_file.is_file() else {}
    except (ValueError, OSError) as exc:
        st.error(f"The mapping file cannot be read: {exc}")
        return {}


def _table(record: dict) -> pd.DataFrame:
    rows = [{"series": c["series"] or "(cannot be named)", "description": c["description"],
             "files": c["files"], "TR ms": c["tr_ms"], "TE ms": c["te_ms"], "TI ms": c["ti_ms"],
             "2-D/3-D": c["acquisition"],
             "rules read": TITLES.get(c["reading"], "set aside") if c["reading"] else "set aside",
             "confidence": c["confidence"],
             "reason": (f"UNUSABLE: {c['problem']}; " if c["problem"] else "") + c["reason"]}
            for c in record["candidates"]]
    return pd.DataFrame(rows)


def render(out_root: Path, id_column: str = "SUBJECT ID") -> None:
    """The decision table of every undecided DICOM scan of the cohort in ``out_root``."""
    path = out_root / decisions.IDENTIFICATION_FILE
    if not path.is_file():
        return
    mtime = path.stat().st_mtime_ns
    try:
        records = _records(str(out_root), mtime)
    except ValueError as exc:
        st.error(str(exc))
        return
    waiting = decisions.pending(records)
    if not waiting:
        return
    map_file = out_root / decisions.MAPPING_FILE
    st.subheader("Sequences to decide")
    st.warning(f"{len(waiting)} DICOM scan(s) whose T1, T1c, T2 and FLAIR could not all be "
               "identified from the headers (missing, tied or of low confidence). GlioScope does "
               "not guess: choose the sequence of each series below, save, and process the "
               "cohort again. The choice is written to "
               f"`{map_file}` (the CSV that `--sequence-map` reads).")
    for record in waiting:
        _decide(record, map_file, id_column)


def _decide(record: dict, map_file: Path, id_column: str) -> None:
    sid, scan_id = record["subject_id"], record["scan_id"]
    key = f"seqmap_{sid}_{scan_id}"
    saved = _saved(map_file, id_column).get((sid, scan_id))
    title = f"{sid}, scan {scan_id}: " + "; ".join(
        f"{TITLES[s]}: {why}" for s, why in record["ambiguous"].items())
    if saved:
        title = f"{sid}, scan {scan_id}: decided (" + ", ".join(
            f"{TITLES[s]} = series {r}" for s, r in saved.items()) + "), used at the next processing"
    with st.expander(title, expanded=not saved):
        st.dataframe(_table(record), hide_index=True,
                     column_config={"reason": st.column_config.TextColumn(width="large"),
                                    "confidence": st.column_config.NumberColumn(format="%.2f")})
        st.caption("Use as: the picks the rules made with confidence are filled in; the others "
                   "are yours to choose. Each of T1, T1c, T2 and FLAIR exactly once.")
        preset = {ref: seq for seq, ref in record["picks"].items()}
        options = [NONE, *SEQUENCES]
        named = [c for c in record["candidates"] if c["series"] is not None]
        cols = st.columns(min(4, max(1, len(named))))
        choices = {}
        for i, c in enumerate(named):
            default = options.index(preset.get(c["series"], NONE))
            choices[c["series"]] = cols[i % len(cols)].selectbox(
                f"Series {c['number'] if c['number'] is not None else c['series']}: "
                f"{c['description'] or '(no description)'}", options, index=default,
                format_func=lambda s: TITLES.get(s, s), key=f"{key}_{c['series']}")
        if st.button("Save this choice", key=f"{key}_save"):
            try:
                mapping = decisions.mapping_from_choices(
                    record, {ref: (None if seq == NONE else seq) for ref, seq in choices.items()})
                decisions.write_mapping(map_file, sid, scan_id, mapping, id_column)
            except (ValueError, OSError) as exc:
                st.error(f"Not saved: {exc}")
            else:
                st.success(f"Saved to `{map_file}`: "
                           + ", ".join(f"{TITLES[s]} = series {r}" for s, r in mapping.items())
                           + ". Press **Process cohort** to preprocess the scan with it.")
