"""Reading clinical tables as people actually save them: Excel, European locales, hand edits.

:func:`read_text_table` turns a CSV file into a table of strings, coping with

* a byte-order mark (UTF-8 or UTF-16, as Excel's "CSV UTF-8" and "Unicode text" write),
  Windows-1252 text when the file is not UTF-8;
* ``;``, tab or ``|`` separators (detected from the header line);
* blank lines and rows of empty cells (Excel's ``;;;;``), trailing empty columns;
* rows with too many cells (reported per subject and left out, the rest is read);
* duplicated header names (the copies are merged when they agree; a subject whose copies
  disagree gets an error and a missing value).

:func:`to_number` parses numbers, including Excel's decimal commas (``12,5``).
Problems are :class:`~gliocore.errors.SubjectError` naming the subject and the file.
"""
from __future__ import annotations

import csv
import io
import os
import stat
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gliocore.errors import CohortError, SubjectError
from gliocore.types import PathType

#: Separators tried on the header line, in order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")
#: Cell texts that mean "missing".
MISSING_TEXTS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "-")
#: A clinical table larger than this is refused (it is not a clinical table).
MAX_TABLE_BYTES = 200 * (1 << 20)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+([eE][+-]?\d+)?")


@dataclass
class TextTable:
    """A table read by :func:`read_text_table`.

    Attributes
    ----------
    frame : DataFrame
        Every cell a string (``""`` when empty), columns named by the (stripped) header.
    separator : str
    encoding : str
    decimal_comma : bool
        Numbers use a decimal comma (``;``- or tab-separated files, as Excel writes them
        in locales with a decimal comma).
    problems : list of SubjectError
    """

    frame: pd.DataFrame
    separator: str
    encoding: str
    decimal_comma: bool
    problems: list[SubjectError] = field(default_factory=list)


def decode_text(raw: bytes, path: PathType) -> tuple[str, str]:
    """Decode a text file: BOM first (UTF-8/UTF-16), then UTF-8, then Windows-1252."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace"), "utf-16"
    if b"\x00" in raw[:4096]:
        raise CohortError(f"{path} is not a text table (it contains NUL bytes); save it as CSV")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252"


def _split(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def detect_separator(header_line: str, id_column: str | None = None) -> str:
    """The separator that splits the header into the most fields (the ID column's wins)."""
    best, best_n = ",", 0
    for sep in SEPARATORS:
        cells = [c.strip() for c in _split(header_line, sep)]
        n = len(cells) + (1000 if id_column and id_column in cells else 0)
        if n > best_n:
            best, best_n = sep, n
    return best


def _read_regular_file(p: Path) -> bytes:
    """The bytes of the table at ``p``, refused unless it is a regular file of a sane size.

    ``/dev/zero`` (reads until memory runs out) and a FIFO (blocks forever) are not tables; the
    size is checked on the open file, so a file swapped after the check cannot slip through.
    """
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise CohortError(f"cannot read clinical table {p}: {exc.strerror or exc}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CohortError(f"clinical table {p} is not a regular file (a device, FIFO or "
                          "folder); give the path of a CSV file")
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > MAX_TABLE_BYTES:
            raise CohortError(f"{p} is {st.st_size / (1 << 20):.0f} MiB, too large for a "
                              "clinical table")
        raw = fh.read(MAX_TABLE_BYTES + 1)
    if len(raw) > MAX_TABLE_BYTES:
        raise CohortError(f"{p} grew past {MAX_TABLE_BYTES >> 20} MiB while being read")
    return raw


def _csv_rows(text: str, sep: str, p: Path) -> list[list[str]]:
    """The table's rows, blank ones (and rows of empty cells) left out; a malformed CSV (e.g. a
    cell over the csv module's 131,072-character field limit) is a :class:`CohortError`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    rows: list[list[str]] = []
    try:
        for r in reader:
            if any(c.strip() for c in r):
                rows.append(r)
    except csv.Error as exc:
        raise CohortError(f"clinical table {p}, line {reader.line_num}: cannot be read as CSV "
                          f"({exc}; a cell may hold at most {csv.field_size_limit():,} "
                          "characters). Is it the right file?") from exc
    return rows


def header_note(frame: pd.DataFrame) -> str:
    """What a missing column's message says about a table's header: a count, never its text
    (the path may name any readable file, e.g. ``/etc/shadow``, and messages reach the
    browser; issue 19.7)."""
    return (f"the first line has {len(frame.columns)} column(s), none with the name(s) looked "
            "for; is it the right table, saved as CSV with a header line?")


def read_text_table(path: PathType, id_column: str) -> TextTable:
    """Read a CSV as strings, robust to how spreadsheets save it (see the module docstring).

    Parameters
    ----------
    path : path
    id_column : str
        Column holding subject IDs (used to name subjects in problems and to pick the
        separator).

    Raises
    ------
    CohortError
        When the file cannot be read as a text table at all.
    """
    p = Path(path)
    raw = _read_regular_file(p)
    text, encoding = decode_text(raw, p)
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    header_line = next((ln for ln in lines if ln.strip(" \t,;|")), None)
    if header_line is None:
        raise CohortError(f"clinical table {p} is empty")
    sep = detect_separator(header_line, id_column)
    rows = _csv_rows(text, sep, p)
    header = [h.strip().lstrip("\ufeff") for h in rows[0]]
    body = rows[1:]
    # trailing empty header cells with empty columns beneath (Excel's trailing separators)
    while header and header[-1] == "" and all(len(r) < len(header) or not r[len(header) - 1].strip()
                                              for r in body):
        header.pop()
    header = [h if h else f"Unnamed: {i}" for i, h in enumerate(header)]
    n = len(header)
    id_index = header.index(id_column) if id_column in header else 0
    problems: list[SubjectError] = []
    kept: list[list[str]] = []
    for line_no, row in enumerate(body, start=2):
        if len(row) > n and any(c.strip() for c in row[n:]):
            sid = row[id_index].strip() if id_index < len(row) and row[id_index].strip() else "?"
            problems.append(SubjectError(
                sid, f"row {line_no} has {len(row)} cells but the header has {n} (separator "
                f"{sep!r}); the row is left out. A decimal comma in a comma-separated file? "
                "Quote the value, use '.' or save with ';' separators", path=str(p),
                stage="clinical"))
            continue
        kept.append([c for c in row[:n]] + [""] * (n - len(row)))
    frame, dup_problems = _merge_duplicate_columns(header, kept, id_column, p)
    problems += dup_problems
    return TextTable(frame, sep, encoding, decimal_comma=sep != ",", problems=problems)


def _merge_duplicate_columns(header: list[str], rows: list[list[str]], id_column: str,
                             path: Path) -> tuple[pd.DataFrame, list[SubjectError]]:
    """One column per header name; copies that disagree leave the cell missing, with an error."""
    positions: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        positions.setdefault(h, []).append(i)
    problems: list[SubjectError] = []
    id_pos = positions.get(id_column, [0])[0]
    names = list(positions)
    out_rows: list[list[str]] = []
    for row in rows:
        sid = row[id_pos].strip() if id_pos < len(row) else ""
        new: list[str] = []
        drop = False
        for name in names:
            idx = positions[name]
            values = [row[i] for i in idx]
            distinct = sorted({v.strip() for v in values if v.strip()})
            if len(distinct) > 1:
                problems.append(SubjectError(
                    sid or "?", f"column {name!r} appears {len(idx)} times in the header with "
                    f"different values ({', '.join(map(repr, distinct))}); "
                    + ("the row is left out" if name == id_column else "the value is left missing")
                    + ": keep one column", path=str(path), stage="clinical"))
                if name == id_column:
                    drop = True
                new.append("")
            else:
                new.append(distinct[0] if distinct else "")
        if not drop:
            out_rows.append(new)
    for name, idx in positions.items():
        if len(idx) > 1:
            problems.append(SubjectError(
                "?", f"column {name!r} appears {len(idx)} times in the header (columns "
                f"{', '.join(str(i + 1) for i in idx)}); their values were merged where they "
                "agree", path=str(path), stage="clinical"))
    return pd.DataFrame(out_rows, columns=names, dtype=object).astype(str), problems


def number_text(text: str, decimal_comma: bool) -> str:
    """Normalise one number's text: ``12,5`` -> ``12.5`` where a comma is a decimal comma.

    In a comma-separated file a quoted ``1,234`` is ambiguous (thousands or decimal) and is
    left as is (so it is reported as not a number).
    """
    t = text.strip().replace("\u2212", "-")  # a typographic minus
    if "," in t and "." not in t and t.count(",") == 1 and _DECIMAL_COMMA.fullmatch(t):
        if decimal_comma or not _THOUSANDS.fullmatch(t):
            return t.replace(",", ".")
    return t


def to_number(raw: pd.Series, decimal_comma: bool) -> pd.Series:
    """Parse a column of number texts to float; missing texts and unparseable cells -> NaN."""
    texts = raw.astype(str).map(lambda t: number_text(t, decimal_comma))
    texts = texts.where(~texts.isin(MISSING_TEXTS), None)
    return pd.to_numeric(texts, errors="coerce").astype(float)


def is_missing_text(raw: pd.Series) -> pd.Series:
    """Whether each cell's text means "missing"."""
    return raw.astype(str).str.strip().isin(MISSING_TEXTS)
