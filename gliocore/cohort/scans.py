"""A subject's scans (timepoints): the scans table (:func:`read_scans`), the timepoint folder
convention (``<subject>/<timepoint>/``, ordered by :func:`timepoint_days`), and where a
subject's images are."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from gliocore.cohort.clinical import ID_COLUMN
from gliocore.cohort.naming import NamingScheme, strip_image_suffix
from gliocore.cohort.tabular import read_text_table, to_number
from gliocore.errors import CohortError, SubjectError
from gliocore.types import BASELINE_SCAN, PathType

#: File name of a scans table found automatically beside the clinical table.
SCANS_FILE = "scans.csv"
#: Accepted column names of a scans table (first match wins), by meaning.
SCAN_ID_COLUMNS = ("scan_id", "scan", "timepoint", "session")
SCAN_DAYS_COLUMNS = ("days", "days_from_baseline", "day")
SCAN_DATE_COLUMNS = ("date", "scan_date", "acquisition_date")


def read_scans(csv_path: PathType, id_column: str = ID_COLUMN
               ) -> tuple[pd.DataFrame, list[SubjectError]]:
    """Read a scans table: one row per scan (timepoint) of a subject.

    Columns: the subject ID (``SUBJECT ID`` or ``id_column``); a scan ID (``scan_id``,
    ``scan``, ``timepoint`` or ``session``) and/or the time (``days`` from baseline, or a
    ``date``); ``img_dir`` (the scan's image folder, absolute or relative to the image root or
    to the table's folder). A scan without an ID is named by its date or ``day<N>``. Days are
    made relative to each subject's first scan; with dates, they are the days between dates.

    Returns
    -------
    scans : DataFrame
        Columns ``subject_id``, ``scan_id``, ``days`` (float, NaN when unknown), ``img_dir``;
        sorted by subject, then time (unknown last), then scan ID.
    problems : list of SubjectError
        Unreadable times and duplicate scan IDs, each naming the subject, scan and table.

    Raises
    ------
    CohortError
        When the file cannot be read or lacks the ID column or both scan ID and time.
    """
    path = Path(csv_path)
    table = read_text_table(path, id_column)  # BOM, ';' separators, blank lines, ... (tabular.py)
    df = table.frame
    lower = {c.lower(): c for c in df.columns}
    idc = id_column if id_column in df.columns else ID_COLUMN if ID_COLUMN in df.columns else None
    if idc is None:
        raise CohortError(f"{path}: ID column {id_column!r} not found; columns are "
                          f"{', '.join(df.columns)}")
    scan_col = next((lower[c] for c in SCAN_ID_COLUMNS if c in lower), None)
    days_col = next((lower[c] for c in SCAN_DAYS_COLUMNS if c in lower), None)
    date_col = next((lower[c] for c in SCAN_DATE_COLUMNS if c in lower), None)
    if scan_col is None and days_col is None and date_col is None:
        raise CohortError(f"{path}: a scans table needs a scan ID column ({', '.join(SCAN_ID_COLUMNS)}) "
                          f"or a time column ({', '.join(SCAN_DAYS_COLUMNS + SCAN_DATE_COLUMNS)})")
    problems: list[SubjectError] = list(table.problems)
    out = pd.DataFrame({"subject_id": df[idc].str.strip()})
    out = out.assign(img_dir=df[lower["img_dir"]].str.strip() if "img_dir" in lower else "")
    days = pd.Series(np.nan, index=df.index)
    label = pd.Series("", index=df.index)
    if days_col is not None:
        raw = df[days_col].str.strip()
        days = to_number(raw, table.decimal_comma)
        label = raw.map(lambda t: f"day{t}" if t else "")
        bad = days.isna() & (raw != "")
    elif date_col is not None:
        raw = df[date_col].str.strip()
        dates = pd.to_datetime(raw.replace({"": None}), errors="coerce", format="mixed")
        bad = dates.isna() & (raw != "")
        label = raw
        first = dates.groupby(out["subject_id"]).transform("min")
        days = (dates - first).dt.days.astype(float)
    else:
        bad = pd.Series(False, index=df.index)
    for i in df.index[bad]:
        problems.append(SubjectError(out.at[i, "subject_id"], f"scan time {df.loc[i, days_col or date_col]!r} "
                                     "is not a number of days or a date; its time is unknown",
                                     path=str(path), stage="load"))
    scan_ids = df[scan_col].str.strip() if scan_col is not None else label
    out["scan_id"] = [sid if sid else (lab or f"scan{k + 1}")
                      for k, (sid, lab) in enumerate(zip(scan_ids, label))]
    out["days"] = days.astype(float)
    out = out[out["subject_id"] != ""]
    out["days"] = out["days"] - out.groupby("subject_id")["days"].transform("min")
    dup = out.duplicated(["subject_id", "scan_id"], keep="first")
    for sid, scan in out.loc[dup, ["subject_id", "scan_id"]].itertuples(index=False):
        problems.append(SubjectError(sid, "duplicate scan ID in the scans table; the first row is "
                                     "used", path=str(path), stage="load", scan_id=scan))
    out = out[~dup]
    out = out.assign(_unknown=out["days"].isna(), _nat=out["scan_id"].map(_natural))
    out = out.sort_values(["subject_id", "_unknown", "days", "scan_id"], kind="stable")
    return out.drop(columns=["_unknown", "_nat"]).reset_index(drop=True), problems


def subject_folder(sid: str, img_dir: object, root: Path, csv_dir: Path) -> Path:
    if isinstance(img_dir, str) and img_dir.strip():
        p = Path(img_dir.strip())
        for cand in ([p] if p.is_absolute() else [root / p, csv_dir / p, root / p.name]):
            if cand.is_dir():
                return cand
    if (root / sid).is_dir():
        return root / sid
    return root


def scans_from_table(rows: pd.DataFrame, sid: str, root: Path, csv_dir: Path
                      ) -> list[tuple[str, float | None, Path]]:
    out = []
    for r in rows.itertuples(index=False):
        if isinstance(r.img_dir, str) and r.img_dir.strip():
            rel = Path(r.img_dir.strip())
            cands = [rel] if rel.is_absolute() else [root / rel, csv_dir / rel]
            folder = next((c for c in cands if c.is_dir()), cands[0])  # absent: error on load
        else:  # no folder given: <root>/<subject>/<scan>/ when it exists
            folder = subject_folder(sid, None, root, csv_dir)
            sub = folder / r.scan_id
            folder = sub if sub.is_dir() else folder
        out.append((r.scan_id, None if pd.isna(r.days) else float(r.days), folder))
    return out


def scans_from_folders(folder: Path, sid: str, schemes: Sequence[NamingScheme]
                        ) -> list[tuple[str, float | None, Path]]:
    """The folder convention: timepoint sub-folders of a subject folder without own files."""
    if folder.is_dir() and folder.name == sid and not any(
            p.is_file() and strip_image_suffix(p.name) is not None for p in folder.iterdir()):
        tps = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and any(strip_image_suffix(f.name) is not None for f in p.iterdir() if f.is_file()))
        if tps:
            days = timepoint_days([p.name for p in tps])
            order = sorted(range(len(tps)), key=lambda i: (days[i] is None, days[i] or 0.0,
                                                           _natural(tps[i].name)))
            return [(tps[i].name, days[i], tps[i]) for i in order]
    return [(BASELINE_SCAN, 0.0, folder)]


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"), ("y", "m", "d")),   # 2001-05-31
    (re.compile(r"(?<!\d)(\d{2})-(\d{2})-(\d{4})(?!\d)"), ("m", "d", "y")),   # TCIA 05-31-2001
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"), ("y", "m", "d")),      # 20010531
)
_DAY_PATTERN = re.compile(r"(?:^|[^a-z])(day|d|week|wk|w|month|m)[ _-]?(\d+)(?!\d)", re.I)


def timepoint_days(names: Sequence[str]) -> list[float | None]:
    """Days from the first timepoint, read from timepoint (folder) names.

    Recognised, when *every* name has it: a date (``2001-05-31``, TCIA's ``05-31-2001-…``,
    ``20010531``), or a day / week / month number (``day120``, ``d120``, ``week12``, ``w12``,
    ``month3``; a month counts 30.4375 days). Otherwise every value is None (the times are
    unknown; the scans are then ordered by name).
    """
    import datetime as _dt
    dates: list[_dt.date | None] = []
    for n in names:
        d = None
        for pattern, order in _DATE_PATTERNS:
            m = pattern.search(n)
            if m:
                parts = dict(zip(order, (int(g) for g in m.groups())))
                try:
                    d = _dt.date(parts["y"], parts["m"], parts["d"])
                except ValueError:
                    d = None
                if d is not None:
                    break
        dates.append(d)
    if names and all(d is not None for d in dates):
        first = min(dates)  # type: ignore[type-var]
        return [float((d - first).days) for d in dates]  # type: ignore[operator]
    values: list[float | None] = []
    for n in names:
        m = _DAY_PATTERN.search(n)
        if m is None:
            return [None] * len(names)
        unit = m.group(1).lower()
        factor = 7.0 if unit in ("week", "wk", "w") else 30.4375 if unit in ("month", "m") else 1.0
        values.append(float(m.group(2)) * factor)
    if not values:
        return []
    first_v = min(v for v in values if v is not None)
    return [v - first_v for v in values]  # type: ignore[operator]
