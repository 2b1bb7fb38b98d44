"""The user's sequence decisions: what the stage records of an undecided DICOM scan, the choice
checked (each sequence exactly once, never a guess) and written as ``--sequence-map``'s CSV."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_writer import ambiguous_study

from gliocore.preprocess import decisions
from gliocore.preprocess.identify import read_mapping
from gliocore.preprocess.importer import identify_dicom_scans


@pytest.fixture()
def study(tmp_path, rng) -> Path:
    ambiguous_study(tmp_path / "S2", rng)
    return tmp_path / "S2"


def test_record_lists_every_candidate_with_its_reading(study):
    (scan,), problems = identify_dicom_scans(study, "S2")
    assert not problems and not scan.identification.complete and not scan.series
    rec = decisions.scan_record(scan)
    json.dumps(rec)  # JSON-ready
    assert rec["subject_id"] == "S2" and rec["scan_id"] == "baseline" and not rec["complete"]
    assert rec["ambiguous"] == {"t1c": "no series reads as T1C"}
    assert rec["picks"] == {"t1": "4", "t2": "5", "flair": "6"}  # the later of two equal T1
    by_series = {c["series"]: c for c in rec["candidates"]}
    assert set(by_series) == {"3", "4", "5", "6"}
    t1 = by_series["3"]
    assert (t1["description"], t1["tr_ms"], t1["te_ms"], t1["ti_ms"], t1["files"]) == (
        "AX T1 SE", 500.0, 10.0, None, 6)
    assert t1["reading"] == "t1" and t1["confidence"] >= 0.6 and "no contrast agent" in t1["reason"]
    assert by_series["6"]["ti_ms"] == 2500.0 and by_series["6"]["reading"] == "flair"


def test_a_choice_names_each_sequence_exactly_once(study):
    (scan,), _ = identify_dicom_scans(study, "S2")
    rec = decisions.scan_record(scan)
    good = {"3": "t1", "4": "t1c", "5": "t2", "6": "flair"}
    assert decisions.mapping_from_choices(rec, good) == {"t1": "3", "t1c": "4", "t2": "5",
                                                         "flair": "6"}
    with pytest.raises(ValueError, match=r"T1 chosen for series '3' and '4'.*no series chosen "
                                         r"for T1C"):
        decisions.mapping_from_choices(rec, {**good, "4": "t1"})
    with pytest.raises(ValueError, match="no series chosen for T1, T1C"):
        decisions.mapping_from_choices(rec, {"3": None, "4": None, "5": "t2", "6": "flair"})
    with pytest.raises(ValueError, match="series '9' is not a series of this scan"):
        decisions.mapping_from_choices(rec, {**good, "9": "t2"})


def test_written_mapping_is_read_by_the_stage_and_replaces_earlier_rows(study, tmp_path):
    (scan,), _ = identify_dicom_scans(study, "S2")
    rec = decisions.scan_record(scan)
    path = tmp_path / "prep" / decisions.MAPPING_FILE
    path.parent.mkdir()
    path.write_text("SUBJECT ID,scan_id,series,sequence\nOTHER,baseline,7,t1\n"
                    "S2,baseline,4,t1\n")
    wrong = decisions.mapping_from_choices(rec, {"3": "t1c", "4": "t1", "5": "t2", "6": "flair"})
    decisions.write_mapping(path, "S2", "baseline", wrong)
    right = decisions.mapping_from_choices(rec, {"3": "t1", "4": "t1c", "5": "t2", "6": "flair"})
    decisions.write_mapping(path, "S2", "baseline", right)
    mapping = read_mapping(path)
    assert mapping == {("OTHER", "baseline"): {"t1": "7"},
                       ("S2", "baseline"): {"t1": "3", "t1c": "4", "t2": "5", "flair": "6"}}
    (scan,), problems = identify_dicom_scans(study, "S2", mapping)
    assert not problems and scan.identification.complete
    assert scan.series["t1c"].number == 4 and scan.series["t1"].number == 3
    assert scan.identification.picks["t1c"].reason == "the user's mapping"
    assert decisions.pending([decisions.scan_record(scan)]) == []


def test_identify_cohort_records_the_waiting_scan(study, tmp_path):
    from gliocore.pipeline.prepare import identify_cohort
    csv = tmp_path / "clinical.csv"
    csv.write_text("SUBJECT ID,Survival(months),IDH-status\nS2,10,wildtype\n")
    records, n_jobs, problems = identify_cohort(csv, tmp_path, tmp_path / "prep")
    assert n_jobs == 0 and "GlioScope does not guess" in str(problems[0])
    (rec,) = decisions.pending(decisions.load_identifications(tmp_path / "prep"))
    assert rec == records[0] and rec["subject_id"] == "S2"
