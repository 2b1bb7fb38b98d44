"""Cohorts uploaded as a zip: checked, unpacked under ``<uploads>/<id>/`` only, then loaded.

A cohort zip holds a clinical CSV and the image folders (any naming
:func:`gliocore.cohort.loading.load_cohort` understands). :func:`unpack_cohort_zip` refuses, with a
message saying why and what to do, a zip that

* is not a zip, is encrypted or uses an unknown compression method;
* has an entry whose path is absolute or climbs out with ``..`` ("zip slip", also
  Windows-style ``C:\\`` and ``..\\``), or a NUL byte in its name;
* has a symbolic link or another special file;
* has more entries than ``max_files``, or two entries with the same name;
* announces more than ``max_total_bytes`` unpacked, or a compression ratio beyond ``max_ratio``
  (whole zip, or an entry above ``ratio_min_bytes``), or entries that overlap in the
  archive (how non-recursive zip bombs reuse one compressed block);
* holds a file that is not CSV, NIfTI or NRRD, by name *or* by content (the first bytes are
  checked: gzip magic for ``.nii.gz``, a NIfTI header for ``.nii``, ``NRRD`` for ``.nrrd``,
  text for ``.csv``).

The declared sizes are checked first; then, because headers can lie, the bytes actually
decompressed are counted while unpacking and the unpacking stops as soon as an entry exceeds
its declared size or the total exceeds the limit. Everything is unpacked into a temporary
folder beside the destination and renamed into place only when all of it passed; a refused or
failed upload leaves nothing behind. The limits are :class:`gliocore.settings.UploadLimits`.

macOS archive clutter (``__MACOSX/``, ``._*``, ``.DS_Store``) is skipped, not refused.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import struct
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from gliocore.cohort.loading import load_cohort
from gliocore.cohort.scans import SCANS_FILE
from gliocore.cohort.subjects import Cohort
from gliocore.errors import CohortError, SubjectError, UploadError
from gliocore.settings import UploadLimits
from gliocore.types import PathType

CHUNK = 1 << 20
#: Compression methods unpacked (every zip tool's default is deflate).
COMPRESSION_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_DRIVE = re.compile(r"^[A-Za-z]:")
#: File name of the marker written into a complete upload folder.
COMPLETE_MARKER = ".upload-complete"
#: Unpacking folders older than this were left by a killed process and are removed.
STALE_INCOMING_SECONDS = 6 * 3600


@dataclass(frozen=True)
class UploadedCohort:
    """An unpacked and loaded cohort upload.

    Attributes
    ----------
    upload_id : str
        First 16 hex digits of the zip's SHA-256: the same zip maps to the same folder (and
        therefore to the same cohort and cached results).
    folder : Path
        ``<uploads>/<upload_id>``.
    cohort : Cohort
        Loaded like a path-given cohort; subjects whose files would lie outside ``folder``
        (an ``img_dir`` pointing elsewhere) are left out with a problem.
    reused : bool
        The same zip had been unpacked before; its folder was reused.
    """

    upload_id: str
    folder: Path
    cohort: Cohort
    reused: bool = False


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    suffix: str


def _suffix(name: str, allowed: tuple[str, ...]) -> str | None:
    low = name.lower()
    for s in sorted(allowed, key=len, reverse=True):
        if low.endswith(s):
            return s
    return None


def _human(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_zip(zf: zipfile.ZipFile, zip_size: int, limits: UploadLimits) -> list[_Entry]:
    """Check a zip's directory (names, types, declared sizes) before unpacking anything.

    Returns
    -------
    list
        The entries to unpack (files; folders and macOS clutter are left out).

    Raises
    ------
    UploadError
    """
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise UploadError(f"the zip has {len(infos)} entries, more than the limit of "
                          f"{limits.max_files} (UploadLimits.max_files); split the cohort")
    entries: list[_Entry] = []
    seen: dict[str, str] = {}
    total = 0
    for info in infos:
        name = info.filename
        shown = name.encode("unicode_escape").decode("ascii")
        if "\x00" in name:
            raise UploadError(f"zip entry {shown!r} has a NUL byte in its name")
        norm = name.replace("\\", "/")
        if norm.startswith("/") or _DRIVE.match(norm):
            raise UploadError(f"zip entry {shown!r} has an absolute path; a cohort zip may only "
                              "hold relative paths (refused: it could write outside the upload "
                              "folder)")
        parts = tuple(p for p in norm.split("/") if p not in ("", "."))
        if ".." in parts:
            raise UploadError(f"zip entry {shown!r} climbs out of the upload folder with '..' "
                              "(zip slip); refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadError(f"zip entry {shown!r} is a symbolic link; a cohort zip may only "
                              "hold regular files (zip with symlinks resolved, e.g. zip without -y)")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: type not recorded
            raise UploadError(f"zip entry {shown!r} is a special file (mode {oct(mode)}); refused")
        if info.flag_bits & 0x1:
            raise UploadError(f"zip entry {shown!r} is encrypted; upload an unencrypted zip")
        if info.compress_type not in COMPRESSION_METHODS:
            raise UploadError(f"zip entry {shown!r} uses compression method {info.compress_type}; "
                              "use deflate (the default of every zip tool)")
        if info.is_dir() or not parts:
            continue
        if parts[0] == "__MACOSX" or parts[-1] == ".DS_Store" or parts[-1].startswith("._"):
            continue  # macOS archive clutter
        key = "/".join(parts).lower()
        if key in seen:
            raise UploadError(f"zip entries {seen[key]!r} and {shown!r} have the same name")
        seen[key] = shown
        suffix = _suffix(parts[-1], limits.allowed_suffixes)
        if suffix is None:
            raise UploadError(f"zip entry {shown!r}: file type not allowed; a cohort zip holds "
                              f"only {', '.join(limits.allowed_suffixes)} files")
        if (info.file_size > limits.ratio_min_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise UploadError(
                f"zip entry {shown!r} expands {info.file_size / max(info.compress_size, 1):.0f}:1 "
                f"({_human(info.compress_size)} -> {_human(info.file_size)}), beyond the "
                f"{limits.max_ratio:.0f}:1 that marks a zip bomb (UploadLimits.max_ratio). "
                "Uncompressed masks compress that well: gzip them (.nii.gz) before zipping")
        total += info.file_size
        entries.append(_Entry(info, parts, suffix))
    if total > limits.max_total_bytes:
        raise UploadError(f"the zip unpacks to {_human(total)}, more than the limit of "
                          f"{_human(limits.max_total_bytes)} (UploadLimits.max_total_bytes)")
    if total > limits.ratio_min_bytes and total > limits.max_ratio * max(zip_size, 1):
        raise UploadError(f"the zip expands {total / max(zip_size, 1):.0f}:1 "
                          f"({_human(zip_size)} -> {_human(total)}), beyond the "
                          f"{limits.max_ratio:.0f}:1 that marks a zip bomb (UploadLimits.max_ratio)")
    _check_no_file_as_folder(entries, seen)
    _check_no_overlap(infos, zip_size)
    return entries


def _check_no_file_as_folder(entries: list[_Entry], seen: dict[str, str]) -> None:
    """Refuse a file whose path is also a folder of another entry (``x.csv`` and ``x.csv/y.csv``):
    unpacking would fail half-way with a bare FileExistsError."""
    for e in entries:
        for depth in range(1, len(e.parts)):
            folder = "/".join(e.parts[:depth]).lower()
            if folder in seen:
                raise UploadError(f"zip entries {seen[folder]!r} and "
                                  f"{seen['/'.join(e.parts).lower()]!r}: the first is a file and "
                                  "also a folder of the second; refused")


def _check_no_overlap(infos: list[zipfile.ZipInfo], zip_size: int) -> None:
    """Entries' data must not overlap (overlapping entries are how zip bombs reuse data)."""
    spans = sorted((i.header_offset, i.header_offset + 30 + len(i.filename.encode("utf-8", "replace"))
                    + i.compress_size, i.filename) for i in infos if not i.is_dir())
    for (start, end, name), (nstart, _nend, nname) in zip(spans, spans[1:]):
        if end > nstart:
            raise UploadError(f"zip entries {name!r} and {nname!r} overlap in the archive (a "
                              "zip-bomb construction); refused")
    if spans and max(end for _s, end, _n in spans) > zip_size:
        raise UploadError("the zip's directory points beyond the end of the file (truncated or "
                          "forged zip)")


def _check_content(suffix: str, head: bytes, shown: str) -> None:
    """The first bytes of a file must match its type."""
    if suffix == ".nii.gz":
        ok = head[:2] == b"\x1f\x8b"
        what = "not gzip-compressed, so not a .nii.gz"
    elif suffix == ".nii":
        ok = len(head) >= 4 and ({int.from_bytes(head[:4], "little"),
                                  int.from_bytes(head[:4], "big")} & {348, 540}) != set()
        what = "not a NIfTI file (no NIfTI header)"
    elif suffix == ".nrrd":
        ok = head[:4] == b"NRRD"
        what = "not an NRRD file (no NRRD magic)"
    else:  # .csv: text (UTF-16 with its BOM allowed)
        ok = head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" not in head
        what = "not a text file"
    if not ok:
        raise UploadError(f"zip entry {shown!r}: its content is {what}; refused")


def _zip_sha256(fh: BinaryIO) -> tuple[str, int]:
    fh.seek(0)
    h = hashlib.sha256()
    size = 0
    while True:
        block = fh.read(CHUNK)
        if not block:
            break
        h.update(block)
        size += len(block)
    fh.seek(0)
    return h.hexdigest(), size


def unpack_cohort_zip(source: PathType | BinaryIO, uploads_dir: PathType,
                      limits: UploadLimits | None = None) -> tuple[str, Path, bool]:
    """Check and unpack a cohort zip into ``uploads_dir/<id>/`` (atomically).

    Parameters
    ----------
    source : path or binary file object
        The zip (a path, or e.g. Streamlit's ``UploadedFile``).
    uploads_dir : path
        Parent of every upload folder (``Settings.uploads_dir``).
    limits : UploadLimits, optional

    Returns
    -------
    upload_id : str
    folder : Path
    reused : bool
        The same zip was unpacked before (its folder is reused, nothing is written).

    Raises
    ------
    UploadError
        Naming the entry and the reason; nothing is left behind.
    """
    limits = limits or UploadLimits()
    own = not hasattr(source, "read")
    fh: BinaryIO = open(source, "rb") if own else source  # type: ignore[arg-type,assignment]
    try:
        digest, size = _zip_sha256(fh)
        if size > limits.max_zip_bytes:
            raise UploadError(f"the zip is {_human(size)}, more than the upload limit of "
                              f"{_human(limits.max_zip_bytes)} (UploadLimits.max_zip_bytes)")
        upload_id = digest[:16]
        root = Path(uploads_dir)
        final = root / upload_id
        if (final / COMPLETE_MARKER).exists():
            return upload_id, final, True
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UploadError(f"not a zip file ({exc}); upload the cohort as one .zip") from exc
        with zf:
            entries = check_zip(zf, size, limits)
            if not entries:
                raise UploadError("the zip holds no CSV or image file")
            root.mkdir(parents=True, exist_ok=True)
            _remove_stale_incoming(root)
            tmp = root / f".incoming-{uuid.uuid4().hex}"
            try:
                _extract(fh, entries, tmp, limits)
                (tmp / COMPLETE_MARKER).write_text(digest + "\n")
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not (final / COMPLETE_MARKER).exists():  # not a concurrent twin upload
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
                    return upload_id, final, True
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return upload_id, final, False
    finally:
        if own:
            fh.close()


def _remove_stale_incoming(root: Path) -> None:
    """Unpacking folders of a process killed mid-upload (never those of a running upload)."""
    now = time.time()
    for d in root.glob(".incoming-*"):
        try:
            if now - d.stat().st_mtime > STALE_INCOMING_SECONDS:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _entry_blocks(fh: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The decompressed bytes of one entry, in blocks of at most :data:`CHUNK`.

    Reads the entry's own data stream from its local header on, ignoring the sizes the zip's
    headers declare: a deflate stream ends by itself, so what comes out is what the entry
    really holds (zipfile would silently stop at the declared size).
    """
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise UploadError(f"zip entry {info.filename!r}: bad local header (corrupt zip)")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    if info.compress_type == zipfile.ZIP_STORED:
        left = info.compress_size
        while left > 0:
            block = fh.read(min(CHUNK, left))
            if not block:
                raise UploadError(f"zip entry {info.filename!r} is truncated")
            left -= len(block)
            yield block
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    while not inflater.eof:
        raw = fh.read(CHUNK)
        if not raw:
            raise UploadError(f"zip entry {info.filename!r} is truncated (its deflate stream "
                              "does not end)")
        out = inflater.decompress(raw, CHUNK)
        while True:
            if out:
                yield out
            # At the end of the stream the bytes after it (the next entry's header) stay in
            # unconsumed_tail on Python 3.11: waiting for it to empty never ends.
            if inflater.eof or not inflater.unconsumed_tail:
                break
            out = inflater.decompress(inflater.unconsumed_tail, CHUNK)


def _extract(fh: BinaryIO, entries: list[_Entry], dest: Path, limits: UploadLimits) -> None:
    """Unpack, counting the bytes actually decompressed (headers can lie) and checking CRCs."""
    dest.mkdir()
    base = dest.resolve()
    total = 0
    for e in entries:
        shown = e.info.filename.encode("unicode_escape").decode("ascii")
        target = dest.joinpath(*e.parts)
        if base not in target.resolve().parents:  # belt and braces after the name checks
            raise UploadError(f"zip entry {shown!r} would be written outside the upload folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        crc = 0
        try:
            with open(target, "xb") as out:
                for block in _entry_blocks(fh, e.info):
                    if written == 0:
                        _check_content(e.suffix, block[:8192], shown)
                    written += len(block)
                    total += len(block)
                    if written > e.info.file_size:
                        raise UploadError(f"zip entry {shown!r} unpacks to more than the "
                                          f"{e.info.file_size} bytes its header declares; refused")
                    if total > limits.max_total_bytes:
                        raise UploadError(f"the zip unpacks to more than "
                                          f"{_human(limits.max_total_bytes)} "
                                          "(UploadLimits.max_total_bytes); refused")
                    crc = zlib.crc32(block, crc)
                    out.write(block)
        except (zlib.error, EOFError, OSError) as exc:
            raise UploadError(f"zip entry {shown!r} cannot be unpacked ({exc}); the zip is "
                              "corrupt or truncated") from exc
        if written == 0 and e.suffix != ".csv":  # an empty image file
            _check_content(e.suffix, b"", shown)
        if written != e.info.file_size or crc != e.info.CRC:
            raise UploadError(f"zip entry {shown!r} unpacks to {written} bytes (CRC {crc:08x}), "
                              f"not the {e.info.file_size} bytes (CRC {e.info.CRC:08x}) its header "
                              "declares; the zip is corrupt")


def find_clinical_csv(folder: Path, id_column: str = "SUBJECT ID") -> Path:
    """The upload's clinical CSV: the only CSV, or the only one with the ID column."""
    csvs = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(".csv")
                  and p.name != SCANS_FILE)  # a scans table is found beside the clinical one
    if not csvs:
        raise UploadError("the zip holds no clinical CSV (columns SUBJECT ID, Survival(months), "
                          "IDH-status)")
    if len(csvs) == 1:
        return csvs[0]
    from gliocore.cohort.tabular import decode_text, detect_separator
    with_id = []
    for p in csvs:
        with open(p, "rb") as fh:
            text, _enc = decode_text(fh.read(65536), p)
        first = next((ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()), "")
        if id_column in [c.strip() for c in first.split(detect_separator(first, id_column))]:
            with_id.append(p)
    if len(with_id) == 1:
        return with_id[0]
    names = ", ".join(str(p.relative_to(folder)) for p in (with_id or csvs))
    raise UploadError(f"the zip holds several clinical CSVs ({names}); keep one")


def _within(path: Path | None, base: Path) -> bool:
    if path is None:
        return True
    p = Path(path).resolve()
    return p == base or base in p.parents


def load_uploaded_cohort(source: PathType | BinaryIO, uploads_dir: PathType, *,
                         limits: UploadLimits | None = None, naming: str | None = None,
                         name: str | None = None) -> UploadedCohort:
    """Check, unpack and load a cohort zip (see the module docstring).

    The image root is the CSV's folder, or the folder under the upload where the most subjects'
    images are found. A zip that unpacks but cannot be loaded (no CSV, required columns
    missing, no subject's images found) is removed again.

    Raises
    ------
    UploadError
    """
    upload_id, folder, reused = unpack_cohort_zip(source, uploads_dir, limits)
    try:
        cohort = _load(folder, naming, name or f"upload-{upload_id[:8]}")
    except BaseException:
        if not reused:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return UploadedCohort(upload_id, folder, cohort, reused)


def _load(folder: Path, naming: str | None, name: str) -> Cohort:
    csv = find_clinical_csv(folder)
    base = folder.resolve()
    candidates = [csv.parent] + sorted(d for d in folder.rglob("*") if d.is_dir()
                                       and len(d.relative_to(folder).parts) <= 2
                                       and d != csv.parent)
    best: Cohort | None = None
    for root in candidates:
        try:
            cohort = load_cohort(csv, root, naming=naming, name=name)
        except CohortError as exc:
            raise UploadError(f"the clinical CSV {csv.relative_to(folder)} cannot be used: "
                              f"{exc}") from exc
        if best is None or len(cohort.subjects) > len(best.subjects):
            best = cohort
        if len(cohort.subjects) == len(cohort.clinical):
            break
    assert best is not None
    outside: set[str] = set()
    for s in [*best.subjects, *best.scans]:
        paths = [s.folder, s.reference_mask, *s.sequences.values()]
        if not all(_within(p, base) for p in paths) and s.subject_id not in outside:
            outside.add(s.subject_id)
            best.problems.append(SubjectError(
                s.subject_id, "its images would be read from outside the uploaded folder (an "
                "img_dir that is absolute or climbs out); an uploaded cohort may only use its own "
                "files", path=str(s.folder), stage="load"))
    kept = [s for s in best.subjects if s.subject_id not in outside]
    best.subjects = kept
    best.scans = [s for s in best.scans if s.subject_id not in outside]
    if not kept:
        detail = "; ".join(str(p) for p in best.problems[:3])
        raise UploadError(f"no subject's four images were found in the zip ({detail})")
    return best
