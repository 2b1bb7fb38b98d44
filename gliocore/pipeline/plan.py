"""Planning a run: register the cohort, hash its files (reusing the store's hash cache) and
find, for every scan, which work is cached and which is missing (:func:`plan_subjects`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gliocore.cohort.subjects import Cohort, Scan
from gliocore.errors import SubjectError
from gliocore.imaging.atlas_transform import atlas_fingerprint
from gliocore.imaging.io import file_sha256, text_sha256
from gliocore.imaging.labels import declared_reference_map, inferable_map_names
from gliocore.pipeline.context import ProgressCallback, RunContext
from gliocore.pipeline.writer import ResultWriter, stat_key
from gliocore.preprocess.field_of_view import fov_fingerprint
from gliocore.segment import qc
from gliocore.store import Store


def cohort_key(cohort: Cohort) -> str:
    """Stable ID of a cohort: hash of its resolved CSV path and image root."""
    return text_sha256(f"{Path(cohort.clinical_csv).resolve()}|{Path(cohort.image_root).resolve()}")[:16]


def register_cohort(store: Store, cohort: Cohort, naming: str | None = None) -> str:
    """Record a cohort, its clinical table and subjects' scans and files; return its ID."""
    cid = cohort_key(cohort)
    by_id = {s.subject_id: s for s in cohort.subjects}
    scans_by_id: dict[str, list[Scan]] = {}
    for sc in cohort.scans:
        scans_by_id.setdefault(sc.subject_id, []).append(sc)
    rows = []
    pending: list[tuple[str, int, int, str]] = []
    # the current references' content: QC scores are shown against it only (one lookup for all)
    refs = [Path(s.reference_mask) for s in (*cohort.subjects, *cohort.scans)
            if s.reference_mask and Path(s.reference_mask).is_file()]
    ref_shas = FileHasher(store).hash_many(list(dict.fromkeys(refs)), pending)

    def sha_of(path: Path | None) -> str | None:
        return ref_shas.get(str(Path(path).resolve())) if path else None

    for rec in cohort.clinical.to_dict(orient="records"):
        sid = str(rec["SUBJECT ID"])
        subj = by_id.get(sid)
        rows.append({"subject_id": sid, "folder": str(subj.folder) if subj else None,
                     "has_images": subj is not None,
                     "reference_mask": str(subj.reference_mask) if subj and subj.reference_mask else None,
                     "reference_sha256": sha_of(subj.reference_mask) if subj else None,
                     "clinical": {k: _plain(v) for k, v in rec.items()},
                     "sequences": {k: str(v) for k, v in subj.sequences.items()} if subj else {},
                     "scans": [{"scan_id": sc.scan_id, "days": sc.days, "folder": str(sc.folder),
                                "reference_mask": str(sc.reference_mask) if sc.reference_mask
                                else None,
                                "reference_sha256": sha_of(sc.reference_mask),
                                "sequences": {k: str(v) for k, v in sc.sequences.items()}}
                               for sc in scans_by_id.get(sid, [])]})
    store.put_image_hashes(pending)
    store.upsert_cohort(cid, cohort.name, str(cohort.clinical_csv), str(cohort.image_root),
                        naming, rows, event_assumed=bool(cohort.clinical.attrs.get("event_assumed")))
    return cid


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def hash_file_cached(store: Store, path: Path, pending: list[tuple[str, int, int, str]]) -> str:
    """SHA-256 of a file, reusing the store's value when size and mtime are unchanged."""
    return FileHasher(store).hash_many([path], pending)[str(Path(path).resolve())]


class FileHasher:
    """Content hashes of files, re-hashing only files whose size or mtime changed.

    The store is asked once per batch of files (not once per file); new hashes are collected
    in ``pending`` for one write at the end.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def hash_many(self, paths: list[Path], pending: list[tuple[str, int, int, str]]
                  ) -> dict[str, str]:
        """``{resolved path: sha256}``; raises OSError for a file that cannot be read."""
        stats = {}
        for p in paths:
            key = str(Path(p).resolve())
            st = Path(p).stat()
            stats[key] = (st.st_size, st.st_mtime_ns)
        known = self.store.cached_file_hashes([(k, s, m) for k, (s, m) in stats.items()])
        for key, (size, mtime) in stats.items():
            if key not in known:
                known[key] = file_sha256(key)
                pending.append((key, size, mtime, known[key]))
        return known


def plan_subjects(ctx: RunContext, subjects: list[Scan], writer: ResultWriter,
                  progress: ProgressCallback) -> list[dict[str, Any]]:
    """Stage "hash": content keys of every scan, to find what is cached.

    The store is asked once per kind of lookup for the whole cohort (file hashes, cached
    segmentations, mask files, feature sets, QC scores), not once per scan. Scans with
    nothing missing are recorded as cached through ``writer``; the others come back as tasks.
    """
    n = len(subjects)

    def done(i: int, subj: Scan) -> None:
        progress("hash", i + 1, n, subj.label)

    def fail(i: int, subj: Scan, err: SubjectError) -> None:
        writer.error(err, subj, drop_stale=True)
        done(i, subj)

    keyed = _key_scans(ctx, subjects, writer, fail)
    plans, file_sha = _plan_scans(ctx, keyed, writer)
    plans = _without_collisions(ctx, plans, fail)
    return _tasks_of(ctx, plans, file_sha, writer, done)


def _without_collisions(ctx: RunContext, plans: list[tuple],
                        fail: Callable[[int, Scan, SubjectError], None]) -> list[tuple]:
    """Plans whose new mask would land on a path that another segmentation uses (in this run or
    recorded in the store) fail loudly instead of overwriting it; the others are returned."""
    new = [p for p in plans if p[4]]
    recorded = ctx.store.segmentation_keys_at([str(p[5]) for p in new])
    claimed: dict[str, str] = {}
    kept = []
    for plan in plans:
        i, subj, _input_key, seg_key, need_seg, mask_path = plan[:6]
        path = str(mask_path)
        others = (recorded.get(path, set()) | ({claimed[path]} if path in claimed else set())) \
            - {seg_key}
        if need_seg and others:
            fail(i, subj, SubjectError(
                subj.subject_id, "mask path collision: another segmentation (key "
                f"{sorted(others)[0][:12]}) is recorded at or written to this path; refused to "
                "overwrite it. Re-run; if it persists, report it", path=path, stage="segment"))
            continue
        if need_seg:
            claimed[path] = seg_key
        kept.append(plan)
    return kept


def _load_error(subj: Scan, exc: OSError) -> SubjectError:
    return SubjectError(subj.subject_id, str(exc), path=getattr(exc, "filename", None),
                        stage="load")


def _key_scans(ctx: RunContext, subjects: list[Scan], writer: ResultWriter,
               fail: Callable[[int, Scan, SubjectError], None]
               ) -> list[tuple[int, Scan, str, str]]:
    """``(index, scan, input key, segmentation key)`` of each scan whose files can be read."""
    # 1. stat every input file; their known hashes in one query
    stats: dict[str, dict[str, tuple[str, int, int]]] = {}
    for i, subj in enumerate(subjects):
        try:
            stats[subj.label] = {seq: stat_key(subj.path(seq))
                                      for seq in sorted(subj.sequences)}
        except SubjectError as err:
            fail(i, subj, err)
        except OSError as exc:
            fail(i, subj, _load_error(subj, exc))
    known = ctx.store.cached_file_hashes([k for per in stats.values() for k in per.values()])

    # 2. input and segmentation keys (hashing only new or changed files)
    fingerprint = getattr(ctx.segmenter, "input_fingerprint", None)
    keyed: list[tuple[int, Scan, str, str]] = []
    for i, subj in enumerate(subjects):
        if subj.label not in stats:
            continue
        try:
            hashes = {}
            for seq, (path, size, mtime) in stats[subj.label].items():
                sha = known.get(path)
                if sha is None:
                    sha = known[path] = file_sha256(path)
                    writer.hashes.append((path, size, mtime, sha))
                hashes[seq] = sha
            input_key = text_sha256(json.dumps(hashes, sort_keys=True))
            extra = fingerprint(subj) if fingerprint is not None else ""
            extra += atlas_fingerprint(subj.folder)  # '' unless segmented in an atlas space
            extra += fov_fingerprint(subj.folder)  # '' unless a field of view missed the brain
            seg_key = text_sha256(f"{input_key}|{ctx.token}|{extra}")
        except SubjectError as err:
            fail(i, subj, err)
            continue
        except OSError as exc:
            fail(i, subj, _load_error(subj, exc))
            continue
        keyed.append((i, subj, input_key, seg_key))
    return keyed


def _plan_scans(ctx: RunContext, keyed: list[tuple[int, Scan, str, str]], writer: ResultWriter
                ) -> tuple[list[tuple], dict[str, str]]:
    """Each keyed scan's plan (whether its segmentation is cached, its mask and feature key,
    its reference mask) and ``{name: sha256}`` of the cached masks and reference masks."""
    store, config = ctx.store, ctx.config
    # 3. cached segmentations whose mask file is intact, and reference masks' hashes
    records = store.segmentations([k[3] for k in keyed])
    files: dict[str, Path] = {}
    for _, subj, _, seg_key in keyed:
        rec = records.get(seg_key)
        if rec is not None and Path(rec.path).exists():
            files[seg_key] = Path(rec.path)
        if config.compute_qc and subj.reference_mask and Path(subj.reference_mask).exists():
            files[str(subj.reference_mask)] = Path(subj.reference_mask)
    file_sha = _hash_files(store, files, writer)

    # 4. feature sets and QC scores present, one query each
    plans = []
    for i, subj, input_key, seg_key in keyed:
        rec = records.get(seg_key)
        need_seg, mask_path, mask_sha = True, ctx.mask_path(subj, seg_key), None
        if rec is not None and file_sha.get(seg_key) == rec.mask_sha256:
            need_seg, mask_path, mask_sha = False, Path(rec.path), rec.mask_sha256
        feature_key = text_sha256(f"{mask_sha}|{input_key}|{ctx.params_fp}") if mask_sha else None
        ref_mask = str(subj.reference_mask) if (config.compute_qc and subj.reference_mask) else None
        plans.append((i, subj, input_key, seg_key, need_seg, mask_path, mask_sha, feature_key,
                      ref_mask))
    return plans, file_sha


def _tasks_of(ctx: RunContext, plans: list[tuple], file_sha: dict[str, str],
              writer: ResultWriter, done: Callable[[int, Scan], None]) -> list[dict[str, Any]]:
    """The tasks of the plans with missing work; the others are recorded as cached."""
    store, summary, config = ctx.store, ctx.summary, ctx.config
    have_features = store.existing_feature_sets([p[7] for p in plans if p[7]])
    reference_map = declared_reference_map(config.reference_label_map)  # None: auto
    have_qc = _existing_qc(store, [(p[3], p[8], file_sha.get(p[8])) for p in plans
                                   if p[8] and not p[4] and file_sha.get(p[8])], reference_map)

    tasks: list[dict[str, Any]] = []
    for i, subj, input_key, seg_key, need_seg, mask_path, mask_sha, feature_key, ref_mask in plans:
        need_features = feature_key is None or feature_key not in have_features
        need_qc = False
        if ref_mask is not None:
            # score a new segmentation, or a cached one whose reference is new or was edited
            need_qc = need_seg or (seg_key, file_sha.get(ref_mask)) not in have_qc
        if not need_seg and not need_features and not need_qc:
            writer.result(subj, input_key, seg_key, feature_key)
            summary.cached.append(subj.label)
        else:
            tasks.append({"subject": subj, "input_key": input_key, "seg_key": seg_key,
                          "need_segmentation": need_seg, "mask_path": str(mask_path),
                          "mask_sha256": mask_sha, "need_features": need_features,
                          "feature_key": feature_key, "params": ctx.params,
                          "params_fingerprint": ctx.params_fp, "backend": config.backend,
                          "backend_options": dict(config.backend_options),
                          "reference_mask": ref_mask if need_qc else None,
                          "reference_label_map": reference_map.to_json() if reference_map else None,
                          "baseline": (subj.subject_id, subj.scan_id) in ctx.baselines})
        done(i, subj)
    return tasks


def _hash_files(store: Store, files: Mapping[str, Path], writer: ResultWriter) -> dict[str, str]:
    """``{name: sha256}`` of files, from the store's hash cache where size and mtime match."""
    stats = {}
    for name, path in files.items():
        try:
            stats[name] = stat_key(path)
        except OSError:
            continue
    known = store.cached_file_hashes(list(stats.values()))
    out = {}
    for name, (path, size, mtime) in stats.items():
        sha = known.get(path)
        if sha is None:
            try:
                sha = known[path] = file_sha256(path)
            except OSError:
                continue
            writer.hashes.append((path, size, mtime, sha))
        out[name] = sha
    return out


def _existing_qc(store: Store, refs: list[tuple[str, str, str]], declared: Any
                 ) -> set[tuple[str, str]]:
    """Which (seg_key, reference sha) pairs have scores read with the declared label map, or
    (``auto``) with a map the reference's naming allows (one query per map): a BraTS ``_seg``
    file read with GlioScope's map by the old default is scored again."""
    if declared is not None:
        return store.existing_qc([(k, sha) for k, _, sha in refs], declared.name, qc.QC_VERSION)
    have: set[tuple[str, str]] = set()
    for name in ("glioscope", "brats", "brats2023"):
        pairs = [(k, sha) for k, path, sha in refs if name in inferable_map_names(Path(path).name)]
        have |= store.existing_qc(pairs, name, qc.QC_VERSION) if pairs else set()
    return have
