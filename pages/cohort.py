"""Cohort: load or switch a cohort, process it, see each subject's status and the filtered table."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from pages import _context as page_context
from pages import _display as ui
from pages import _loaders as loaders
from pages import _sequences
from pages import _work
from pages._columns import ID
from pages._jobs import Job

ctx = page_context.context()
ui.page_header("Cohort", ctx)
settings = ctx.settings


# -- actions: each runs in the background (pages._jobs), never in this script run -----------------
PROCESS_STAGES = ("hash", "segment and features", "location")


def _process_progress(job: Job) -> Callable[..., None]:
    """The pipeline's progress as the job's: its ``segment`` and ``features`` counts move
    together (one task does both), so they are one stage."""
    def report(stage: str, done: int, total: int, subject: str | None = None) -> None:
        if stage == "features":
            return
        job.progress("segment and features" if stage == "segment" else stage, done, total,
                     subject)
    return report


def _prep_progress(job: Job) -> Callable[..., None]:
    """The preprocessing stage's progress (raw scans: identify, then preprocess) as the job's."""
    def report(stage: str, done: int, total: int, subject: str | None = None) -> None:
        job.progress("preprocess" if stage == "prep" else "identify sequences", done, total,
                     subject)
    return report


def _process_work(load: Callable[..., Any], store, backend: str, workers: int,
                  options: dict | None = None, reference_label_map: str = "auto"
                  ) -> Callable[[Job], str]:
    """The job that loads the cohort (``load()``) and processes it, reporting progress."""
    def work(job: Job) -> str:
        from gliocore.location.localise import LocationConfig
        from gliocore.pipeline import runner
        from gliocore.pipeline.context import ProcessingConfig
        job.progress("hash", 0, 0, "loading the cohort")
        config = ProcessingConfig(
            backend=backend, backend_options=options or {}, workers=workers,
            reference_label_map=reference_label_map,
            # atlas location for subjects already in an atlas space; registration (about a
            # minute a subject) is left to `python -m gliocore process` (the Location page says)
            location=LocationConfig(register=False))
        summary = runner.process_cohort(load(_prep_progress(job)), store, config,
                                        progress=_process_progress(job))
        job.cohort_id = summary.cohort_id
        return "Processing finished: " + summary.describe()
    return work


def _demo_work(n: int, workers: int) -> Callable[[Job], str]:
    demo_dir, seed, followups = settings.demo_dir, settings.demo_seed, settings.demo_followups
    store, backend = ctx.store(), settings.demo_backend  # the demo keeps the fast baseline

    def work(job: Job) -> str:
        from gliocore.cohort import synth
        from gliocore.cohort.loading import load_cohort
        job.stages = ("generate", *(("follow-up scans",) if followups else ()), *PROCESS_STAGES)
        csv = synth.generate_demo_cohort(demo_dir, n_subjects=n, seed=seed, workers=workers,
                                         progress=lambda d, t: job.progress("generate", d, t))
        if followups:
            synth.generate_followups(demo_dir, seed=seed, workers=workers,
                                     progress=lambda d, t: job.progress("follow-up scans", d, t))
        return _process_work(lambda _progress: load_cohort(csv, Path(csv).parent, name="demo"),
                             store, backend, workers)(job)
    return work


def _prep_root(name: str | None) -> Path:
    """The cohort's preprocessing folder (raw scans' outputs, sequence decisions)."""
    return settings.data_dir / "preprocessed" / str(name or "")


def _current_cohort_loader(reference_suffix: str | None = "_truth") -> Callable[..., Any]:
    """Load the current cohort; raw subjects (DICOM, NIfTI as acquired) are preprocessed first,
    with the sequence decisions saved on this page (``sequence_map.csv``)."""
    info = dict(ctx.cohort or {})
    out_root = _prep_root(info.get("name"))

    def load(progress=None):
        from gliocore.pipeline.prepare import load_prepared
        from gliocore.preprocess.decisions import MAPPING_FILE
        naming = info.get("naming")
        cohort, _prepared = load_prepared(
            info["clinical_csv"], info["image_root"], out_root,
            naming=naming if isinstance(naming, str) and naming else None,
            name=info.get("name"), mapping_file=out_root / MAPPING_FILE,
            reference_suffix=reference_suffix or None, progress=progress)
        return cohort
    return load


def _outside(settings, cohort) -> list[str]:
    """Files of ``cohort`` outside the settings' allowed roots, as 'subject: file' (at most 3)."""
    out = []
    for scan in [*cohort.subjects, *getattr(cohort, "scans", [])]:
        for path in [*scan.sequences.values(), scan.reference_mask]:
            if path is not None and not settings.may_read(path):
                out.append(f"{scan.subject_id}: {Path(path).name}")
    return sorted(set(out))[:3]


def _load_work(csv: str, root: str | None, naming: str | None, name: str | None
               ) -> Callable[[Job], str]:
    """The job of "Load cohort": only from the allowed roots (a group deployment's setting)."""
    store, allowed = ctx.store(), settings

    def work(job: Job) -> str:
        from gliocore.cohort.loading import load_cohort
        from gliocore.errors import CohortError
        from gliocore.pipeline.plan import register_cohort
        if not csv:
            raise ValueError("enter the path of the clinical CSV")
        roots = ("the setting GLIOSCOPE_ALLOWED_ROOTS allows only "
                 + ", ".join(map(str, allowed.allowed_roots)))
        for path in (csv, root):
            if path and not allowed.may_read(path):
                raise CohortError(f"{path} is outside the folders this dashboard may read "
                                  f"({roots})")
        cohort = load_cohort(csv, root, naming=naming, name=name)
        outside = _outside(allowed, cohort)
        if outside:
            raise CohortError(f"images outside the folders this dashboard may read ("
                              f"{'; '.join(outside)}); {roots}")
        job.cohort_id = register_cohort(store, cohort, naming)
        return (f"Loaded cohort **{cohort.name}**: {len(cohort.subjects)} subjects with images"
                + (f", {len(cohort.problems)} problem(s)" if cohort.problems else "")
                + _raw_note(csv, root, naming, cohort.name))
    return work


def _raw_note(csv: str, root: str | None, naming: str | None, name: str) -> str:
    """Raw subjects (DICOM, NIfTI as acquired): identify their sequences now (headers only) so
    that ambiguous series can be decided before processing; say how many there are."""
    from gliocore.pipeline.prepare import identify_cohort, needs_preprocessing
    from gliocore.preprocess.decisions import MAPPING_FILE, pending
    from gliocore.preprocess.identify import read_mapping
    root = root or str(Path(csv).resolve().parent)
    if not needs_preprocessing(csv, root, naming=naming):
        return ""
    map_file = _prep_root(name) / MAPPING_FILE
    records, n_raw, _problems = identify_cohort(
        csv, root, _prep_root(name), naming=naming,
        mappings=read_mapping(map_file) if map_file.is_file() else None)
    waiting = len(pending(records))
    return (f". {n_raw + waiting} raw scan(s) will be preprocessed when the cohort is processed"
            + (f"; {waiting} wait for your choice of sequences (below)" if waiting else ""))


def _upload_work(upload: Any, naming: str | None, name: str) -> Callable[[Job], str]:
    """The job of "Upload and load cohort": check, unpack and register the zip."""
    store, uploads_dir, limits = ctx.store(), settings.uploads_dir, settings.upload_limits

    def work(job: Job) -> str:
        from gliocore.cohort import uploads
        from gliocore.pipeline.plan import register_cohort
        job.progress("unpacking", 0, 0, f"{upload.size >> 20} MiB zip")
        up = uploads.load_uploaded_cohort(upload, uploads_dir, limits=limits, naming=naming,
                                          name=name)
        job.progress("registering", 0, 0, up.cohort.name)
        job.cohort_id = register_cohort(store, up.cohort, naming)
        return (f"Uploaded cohort **{up.cohort.name}**: {len(up.cohort.subjects)} subjects with "
                f"images" + (f", {len(up.cohort.problems)} problem(s) (see the status table after "
                             "processing)" if up.cohort.problems else "")
                + (" (this zip was uploaded before; its files were reused)" if up.reused else ""))
    return work


def _stopped_run_note(running: Job | None, *process_args: Any) -> None:
    """Say so when the cohort's latest run did not end (the server restarted, or it was
    stopped) and no run is going on; offer to resume it (finished subjects are kept)."""
    from gliocore.store.locking import RunLock
    runs = loaders.load_runs(ctx.db, ctx.stamp, ctx.cohort_id)
    if running is not None or runs.empty or runs.iloc[0]["status"] not in ("running",
                                                                            "interrupted"):
        return
    if RunLock(ctx.db).in_use():
        st.info("Another process (the command line?) is processing this store now; reload the "
                "page to see its results as they arrive.")
        return
    last = runs.iloc[0]
    st.warning(f"The latest processing run of this cohort ({last['backend']}, started "
               f"{last['started_at']}) stopped before the end: the server restarted or the run "
               f"was stopped. {int(status['segmented'].sum()) if n_all else 0} of {n_all} "
               "subjects are segmented; resuming keeps them and does the rest.")
    if st.button("Resume processing", key="resume", type="primary"):
        _start_processing(*process_args)


def _start_processing(backend: str, workers: int, options: dict, ref_suffix: str,
                      ref_map: str) -> None:
    name = (ctx.cohort or {}).get("name", "")
    _work.start(settings, "process", f"Processing cohort {name}", PROCESS_STAGES,
                _process_work(_current_cohort_loader(ref_suffix.strip()), ctx.store(), backend,
                              workers, options, ref_map))


if ctx.store_error:
    st.error(ctx.store_error)
    st.stop()

_work.show_notice()
running = _work.progress_panel(settings)

cpu = max(1, os.cpu_count() or 1)

# -- first start: the demo ------------------------------------------------------------------------
demo_known = not ctx.cohorts.empty and (ctx.cohorts["name"] == "demo").any()
if ctx.cohorts.empty:
    st.info("The store has no cohort yet. Generate and process the synthetic demo cohort, or load "
            "your own below (a clinical CSV with `SUBJECT ID`, `Survival(months)`, `IDH-status`, "
            "and an image folder with four sequences per subject).")
with st.expander("Demo cohort", expanded=ctx.cohorts.empty):
    if demo_known:
        st.write("The processed demo cohort is in the store; pick **demo** in the sidebar.")
    st.caption(f"Synthetic phantoms with a tumour, a ground-truth mask and simulated survival, "
               f"written to `{settings.demo_dir}` and processed with the `{settings.demo_backend}` "
               "backend. Same as `python -m gliocore process --demo`.")
    c1, c2 = st.columns(2)
    n_demo = c1.number_input("Subjects", 4, 200, settings.demo_n_subjects, key="demo_n")
    w_demo = c2.number_input("Worker processes", 1, cpu, min(2, cpu), key="demo_workers")
    if st.button("Generate and process demo cohort", type="primary", key="demo_button",
                 disabled=running is not None):
        _work.start(settings, "demo", "Generating the demo cohort", ("generate",),
                    _demo_work(int(n_demo), int(w_demo)))

# -- load another cohort --------------------------------------------------------------------------
with st.expander("Load or switch a cohort", expanded=False):
    if not ctx.cohorts.empty:
        shown = ctx.cohorts[["name", "n_subjects", "n_with_images", "clinical_csv", "image_root",
                             "updated_at"]]
        st.dataframe(shown, hide_index=True)
        st.caption("Switch cohorts with the picker in the sidebar.")
    with st.form("load_cohort"):
        csv = st.text_input("Clinical CSV", placeholder="/path/to/clinical.csv", key="load_csv",
                            help="Columns SUBJECT ID, Survival(months), IDH-status; optional event, "
                                 "age, sex, img_dir and any other.")
        root = st.text_input("Image root (optional)", placeholder="defaults to the CSV's folder",
                             key="load_root")
        from gliocore.cohort.naming import NAMING_SCHEMES
        naming = st.selectbox("File naming", ["auto", *NAMING_SCHEMES],
                              help="How the four sequence files are named (auto tries all presets).")
        name = st.text_input("Name (optional)")
        submitted = st.form_submit_button("Load cohort")
    if submitted:
        _work.start(settings, "load", f"Loading {Path(csv.strip()).name or 'a cohort'}",
                    ("loading",), _load_work(csv.strip(), root.strip() or None,
                                             None if naming == "auto" else naming,
                                             name.strip() or None))

# -- upload a cohort as a zip ---------------------------------------------------------------------
with st.expander("Upload a cohort (zip)", expanded=False):
    limits = settings.upload_limits
    st.caption(f"One zip with the clinical CSV and the image folders (any supported naming). It is "
               f"checked and unpacked under `{settings.uploads_dir}` only. Limits: "
               f"{limits.max_zip_bytes >> 20} MiB zip, {limits.max_files} files, "
               f"{limits.max_total_bytes >> 30} GiB unpacked; only CSV, NIfTI and NRRD files; no "
               "links or paths leaving the zip's folder.")
    with st.form("upload_cohort"):
        upload = st.file_uploader("Cohort zip", type=["zip"], key="cohort_zip")
        from gliocore.cohort.naming import NAMING_SCHEMES
        u_naming = st.selectbox("File naming", ["auto", *NAMING_SCHEMES], key="upload_naming")
        u_name = st.text_input("Name (optional)", key="upload_name",
                               help="Defaults to the zip's file name.")
        u_submitted = st.form_submit_button("Upload and load cohort")
    if u_submitted:
        if upload is None:
            st.error("Choose a zip file first.")
        else:
            _work.start(settings, "upload", f"Unpacking the upload {upload.name}",
                        ("unpacking",), _upload_work(upload, None if u_naming == "auto"
                                                     else u_naming,
                                                     u_name.strip() or Path(upload.name).stem))

if ctx.cohort_id is None:
    st.stop()

# -- DICOM series the stage could not identify: the user decides ------------------------------------
if (ctx.cohort or {}).get("name"):
    _sequences.render(_prep_root(ctx.cohort["name"]))

# -- processing -----------------------------------------------------------------------------------
st.subheader("Processing")
status = loaders.load_status(ctx.db, ctx.stamp, ctx.cohort_id, ctx.config_key)
n_all = len(status)
c = st.columns(4)
c[0].metric("Subjects", n_all)
c[1].metric("With images", int(status["has_images"].sum()) if n_all else 0)
c[2].metric("Segmented", int(status["segmented"].sum()) if n_all else 0)
c[3].metric("With features", int(status["features"].sum()) if n_all else 0)

backends = loaders.available_backends()
# the synthetic demo keeps its fast rule backend (as `process --demo`); real cohorts the default
first = settings.demo_backend if (ctx.cohort or {}).get("name") == "demo" else settings.default_backend
names = sorted(backends, key=lambda b: (backends[b] is not None, b != first, b))
captions = [("available" if backends[b] is None
             else "unavailable: " + backends[b].split(". ")[0].rstrip(".") + ".") for b in names]
col_a, col_b = st.columns([3, 1])
backend = col_a.radio("Segmentation backend", names, captions=captions, key="backend",
                      format_func=lambda b: b if backends[b] is None else f"{b} (unavailable)")
workers = col_b.number_input("Worker processes", 1, cpu, min(2, cpu), key="workers")
options: dict = {}
if backend == "import":
    o1, o2 = st.columns(2)
    options["pattern"] = o1.text_input("Mask file pattern", "{subject}_seg.nii.gz",
                                       help="Relative to each scan's folder (no absolute "
                                            "path, no '..'); {subject} and {scan} are "
                                            "replaced by the subject and scan ID.")
    from gliocore.imaging.labels import PRESETS
    chosen_map = o2.selectbox(
        "Label map of the masks (required)", list(PRESETS), index=None, key="import_label_map",
        placeholder="choose how the masks number the classes",
        help="Which integers are contrast-enhancing and which non-enhancing: brats (4 = "
             "enhancing; 1, 2 = non-enhancing), brats2023 (3 = enhancing), hdglio-v2 (2 = "
             "enhancing, 1 = non-enhancing), seed/glioscope (1 = enhancing, 2 = non-enhancing). "
             "There is no default: a wrong guess silently swaps classes.")
    if chosen_map is None:
        st.info("Choose the masks' label map to import them.")
    else:
        options["label_map"] = chosen_map
with st.expander("Reference masks for QC", expanded=False):
    from gliocore.imaging.labels import PRESETS as _REF_PRESETS
    r1, r2 = st.columns(2)
    ref_suffix = r1.text_input("Reference file suffix", "_truth", key="reference_suffix",
                               help="<SUBJECT ID><suffix>.nii.gz beside the images (the demo: "
                                    "_truth; BraTS cases: _seg). Empty: no QC.")
    ref_map = r2.selectbox("Label map of the reference masks", ["auto", *_REF_PRESETS], index=0,
                           key="reference_label_map",
                           help="auto: from the values and the file naming where they agree "
                                "(_truth: GlioScope's 1 = contrast-enhancing, 2 = non-enhancing; "
                                "_seg or label 4: BraTS, whose 1 and 2 are necrosis and oedema, "
                                "also without label 4); anything ambiguous is reported per "
                                "subject, asking for the map. glioscope / brats / …: declared. "
                                "A value the map does not know, or a non-integer value, is "
                                "reported per subject.")
reason = backends.get(backend)
missing_map = backend == "import" and "label_map" not in options
if reason:
    st.warning(f"`{backend}` cannot run here: {reason}")
if st.button("Process cohort", type="primary", key="process",
             disabled=reason is not None or missing_map or running is not None,
             help="Segment, extract features and score against reference masks; cached results "
                  "are reused, so a re-run only does what is missing. It runs on the server: "
                  "leaving the page does not stop it."):
    _start_processing(backend, int(workers), options, ref_suffix, ref_map)
_map_file = _prep_root((ctx.cohort or {}).get("name")) / "sequence_map.csv"
st.caption("Command line equivalent: `python -m gliocore process --csv "
           f"{(ctx.cohort or {}).get('clinical_csv', 'CLINICAL.csv')} --backend {backend}"
           + (f" --label-map {options['label_map']}" if options.get("label_map") else "")
           + (f" --reference-suffix {ref_suffix.strip() or 'none'}"
              if ref_suffix.strip() != "_truth" else "")
           + (f" --reference-label-map {ref_map}" if ref_map != "auto" else "")
           + (f" --sequence-map {_map_file}" if _map_file.is_file() else "") + "`")

_stopped_run_note(running, backend, int(workers), options, ref_suffix, ref_map)

# -- status per subject ---------------------------------------------------------------------------
st.subheader("Status per subject")
_runs = loaders.load_runs(ctx.db, ctx.stamp, ctx.cohort_id)
if not _runs.empty and "warnings" in _runs:
    _mine = _runs[_runs["config_key"] == ctx.config_key] if ctx.config_key else _runs
    _latest = (_mine if not _mine.empty else _runs).iloc[0]
    if isinstance(_latest["warnings"], str) and _latest["warnings"]:
        import json as _json
        for _w in _json.loads(_latest["warnings"]):
            st.error(f"**Warning from the latest run:** {_w}")
shown = status[status["subject_id"].isin(ctx.subject_ids)] if ctx.filters_active else status
errors = shown[shown["error"].notna()]
if not errors.empty:
    st.error(f"{len(errors)} subject(s) with errors in the latest run:")
    st.dataframe(errors[["subject_id", "error_stage", "error"]], hide_index=True,
                 column_config={"error": st.column_config.TextColumn("message", width="large")})
warned = shown[shown["input_warnings"].notna()] if "input_warnings" in shown else shown.iloc[0:0]
if not warned.empty:
    st.warning(f"{len(warned)} subject(s) with input warnings from the segmentation backend (e.g. "
               "not skull-stripped, differing grids, unusual orientation); results may be "
               "unreliable for them. Prepare inputs with HD-BET and registration (see README).")
    st.dataframe(warned[["subject_id", "backend", "input_warnings"]], hide_index=True,
                 column_config={"input_warnings": st.column_config.TextColumn("warnings",
                                                                              width="large")})
if errors.empty and n_all and not status["segmented"].any():
    st.info("No subject is processed yet: choose a backend and press **Process cohort**.")
st.dataframe(
    shown, hide_index=True,
    column_config={"segment_seconds": st.column_config.NumberColumn("segment s", format="%.2f"),
                   "feature_seconds": st.column_config.NumberColumn("features s", format="%.2f")})

# -- preprocessing (raw scans: DICOM or NIfTI as acquired) ----------------------------------------
_prep_dir = _prep_root((ctx.cohort or {}).get("name"))
if (ctx.cohort or {}).get("name") and _prep_dir.is_dir():
    _prep = loaders.load_preprocess_status(str(_prep_dir), ctx.stamp)
    if not _prep.empty:
        st.subheader("Preprocessing per scan")
        st.caption("N4, rigid co-registration to T1c and brain extraction of raw scans (README: "
                   "From the scanner). Scans that were already preprocessed are not listed.")
        _flagged = _prep[_prep["flags"].notna()]
        if not _flagged.empty:
            st.warning(f"{len(_flagged)} scan(s) with QC flags (brain volume, registration "
                       "similarity or a sequence that misses part of the brain).")
        st.dataframe(_prep, hide_index=True,
                     column_config={"flags": st.column_config.TextColumn("QC flags", width="large")})

# -- the filtered table ---------------------------------------------------------------------------
st.subheader("Clinical table (filtered)")
if ctx.n == 0:
    st.warning("No subject matches the filters; widen or clear them in the sidebar.")
else:
    st.dataframe(ctx.filtered[[ID] + [c for c in ctx.clinical_columns() if c in ctx.filtered.columns]
                              + (["tumor_volume"] if "tumor_volume" in ctx.filtered.columns else [])],
                 hide_index=True)
runs = loaders.load_runs(ctx.db, ctx.stamp, ctx.cohort_id)
if not runs.empty:
    with st.expander(f"Processing runs ({len(runs)})"):
        st.dataframe(runs, hide_index=True)
