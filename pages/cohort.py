"""Cohort: load or switch a cohort, process it, see each subject's status and the filtered table."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from pages._columns import ID
from pages import _loaders as loaders
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("Cohort", ctx)
settings = ctx.settings


# -- actions ----------------------------------------------------------------------------------------
class _Progress:
    """Feeds the pipeline's progress callback ``(stage, done, total, subject)`` to st.progress."""

    STAGES = ("generate", "hash", "segment", "features")

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.stages = stages
        self.bar = st.progress(0.0, text="Starting…")

    def __call__(self, stage: str, done: int, total: int, subject: str | None = None) -> None:
        i = self.stages.index(stage) if stage in self.stages else 0
        frac = (i + (done / total if total else 1.0)) / len(self.stages)
        who = f" — {subject}" if subject else ""
        self.bar.progress(min(max(frac, 0.0), 1.0), text=f"{stage}: {done}/{total}{who}")


def _process(cohort, backend: str, workers: int, options: dict | None = None,
             reference_label_map: str = "auto") -> None:
    from gliocore.location.localise import LocationConfig
    from gliocore.pipeline.context import ProcessingConfig
    from gliocore.pipeline.runner import process_cohort
    progress = _Progress(("hash", "segment", "features", "location"))
    summary = process_cohort(cohort, ctx.store(), ProcessingConfig(
        backend=backend, backend_options=options or {}, workers=workers,
        reference_label_map=reference_label_map,
        # atlas location for subjects already in an atlas space; registration (about a minute a
        # subject) is left to `python -m gliocore process`, which the Location page says
        location=LocationConfig(register=False)), progress=progress)
    progress.bar.progress(1.0, text="Done")
    st.session_state["last_summary"] = summary.describe()
    st.session_state[page_context.PENDING_COHORT] = summary.cohort_id


def _generate_demo(n: int, workers: int) -> None:
    from gliocore.cohort import synth
    from gliocore.cohort.loading import load_cohort
    gen = _Progress(("generate", "follow-up scans") if settings.demo_followups else ("generate",))
    csv = synth.generate_demo_cohort(settings.demo_dir, n_subjects=n, seed=settings.demo_seed,
                                     workers=workers,
                                     progress=lambda d, t: gen("generate", d, t))
    if settings.demo_followups:
        synth.generate_followups(settings.demo_dir, seed=settings.demo_seed, workers=workers,
                                 progress=lambda d, t: gen("follow-up scans", d, t))
    cohort = load_cohort(csv, Path(csv).parent, name="demo")
    _process(cohort, settings.default_backend, workers)


def _load_current_cohort(reference_suffix: str | None = "_truth"):
    from gliocore.cohort.loading import load_cohort
    info = ctx.cohort or {}
    naming = info.get("naming")
    return load_cohort(info["clinical_csv"], info["image_root"],
                       naming=naming if isinstance(naming, str) and naming else None,
                       name=info.get("name"), reference_suffix=reference_suffix or None)


def _run(action, *args) -> None:
    """Run an action with its errors shown as messages; rerun to show the new state."""
    from gliocore.errors import GlioError
    try:
        action(*args)
    except (GlioError, ValueError, OSError) as exc:
        st.error(f"{type(exc).__name__}: {exc}")
        return
    st.cache_data.clear()
    st.rerun()


if ctx.store_error:
    st.error(ctx.store_error)
    st.stop()

if "last_summary" in st.session_state:
    st.success("Processing finished: " + st.session_state.pop("last_summary"))

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
               f"written to `{settings.demo_dir}` and processed with the `{settings.default_backend}` "
               "backend. Same as `python -m gliocore process --demo`.")
    c1, c2 = st.columns(2)
    n_demo = c1.number_input("Subjects", 4, 200, settings.demo_n_subjects, key="demo_n")
    w_demo = c2.number_input("Worker processes", 1, cpu, min(2, cpu), key="demo_workers")
    if st.button("Generate and process demo cohort", type="primary", key="demo_button"):
        _run(_generate_demo, int(n_demo), int(w_demo))

# -- load another cohort --------------------------------------------------------------------------
with st.expander("Load or switch a cohort", expanded=False):
    if not ctx.cohorts.empty:
        shown = ctx.cohorts[["name", "n_subjects", "n_with_images", "clinical_csv", "image_root",
                             "updated_at"]]
        st.dataframe(shown, hide_index=True)
        st.caption("Switch cohorts with the picker in the sidebar.")
    with st.form("load_cohort"):
        csv = st.text_input("Clinical CSV", placeholder="/path/to/clinical.csv",
                            help="Columns SUBJECT ID, Survival(months), IDH-status; optional event, "
                                 "age, sex, img_dir and any other.")
        root = st.text_input("Image root (optional)", placeholder="defaults to the CSV's folder")
        from gliocore.cohort.naming import NAMING_SCHEMES
        naming = st.selectbox("File naming", ["auto", *NAMING_SCHEMES],
                              help="How the four sequence files are named (auto tries all presets).")
        name = st.text_input("Name (optional)")
        submitted = st.form_submit_button("Load cohort")
    if submitted:
        def _load() -> None:
            from gliocore.cohort.loading import load_cohort
            from gliocore.pipeline.plan import register_cohort
            if not csv.strip():
                raise ValueError("enter the path of the clinical CSV")
            cohort = load_cohort(csv.strip(), root.strip() or None,
                                 naming=None if naming == "auto" else naming,
                                 name=name.strip() or None)
            st.session_state[page_context.PENDING_COHORT] = register_cohort(
                ctx.store(), cohort, None if naming == "auto" else naming)
        _run(_load)

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
        def _upload() -> None:
            from gliocore.pipeline.plan import register_cohort
            from gliocore.cohort.uploads import load_uploaded_cohort
            if upload is None:
                raise ValueError("choose a zip file first")
            up = load_uploaded_cohort(upload, settings.uploads_dir, limits=limits,
                                      naming=None if u_naming == "auto" else u_naming,
                                      name=u_name.strip() or Path(upload.name).stem)
            st.session_state[page_context.PENDING_COHORT] = register_cohort(
                ctx.store(), up.cohort, None if u_naming == "auto" else u_naming)
            st.session_state["last_upload"] = (
                f"Uploaded cohort **{up.cohort.name}**: {len(up.cohort.subjects)} subjects with "
                f"images" + (f", {len(up.cohort.problems)} problem(s) (see the status table after "
                             "processing)" if up.cohort.problems else "")
                + (" (this zip was uploaded before; its files were reused)" if up.reused else ""))
        _run(_upload)
    if "last_upload" in st.session_state:
        st.success(st.session_state.pop("last_upload"))

if ctx.cohort_id is None:
    st.stop()

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
names = sorted(backends, key=lambda b: (backends[b] is not None, b != settings.default_backend, b))
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
                                       help="Relative to each subject's folder, or absolute; "
                                            "{subject} is replaced by the subject ID.")
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
if st.button("Process cohort", type="primary", disabled=reason is not None or missing_map,
             key="process",
             help="Segment, extract features and score against reference masks; cached results "
                  "are reused, so a re-run only does what is missing."):
    _run(lambda: _process(_load_current_cohort(ref_suffix.strip()), backend, int(workers),
                          options, ref_map))
st.caption("Command line equivalent: `python -m gliocore process --csv "
           f"{(ctx.cohort or {}).get('clinical_csv', 'CLINICAL.csv')} --backend {backend}"
           + (f" --label-map {options['label_map']}" if options.get("label_map") else "")
           + (f" --reference-suffix {ref_suffix.strip() or 'none'}"
              if ref_suffix.strip() != "_truth" else "")
           + (f" --reference-label-map {ref_map}" if ref_map != "auto" else "") + "`")

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
_prep_root = settings.data_dir / "preprocessed" / str((ctx.cohort or {}).get("name") or "")
if (ctx.cohort or {}).get("name") and _prep_root.is_dir():
    _prep = loaders.load_preprocess_status(str(_prep_root), ctx.stamp)
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
