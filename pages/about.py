"""About / Validation: what GlioScope is, where its data lives, and the validation report."""
from __future__ import annotations

import platform
import time

import streamlit as st

from pages import _loaders as loaders
from pages import _context as page_context
from pages import _display as ui

ctx = page_context.context()
ui.page_header("About / Validation", ctx)
settings = ctx.settings

st.markdown(
    "**GlioScope** analyses glioma cohorts from MRI: four co-registered sequences per subject "
    "(T1, T1c, T2, FLAIR) and a clinical table are segmented into **contrast-enhancing** and "
    "**non-enhancing** tumour, described with PyRadiomics features and analysed against survival "
    "and IDH status. Processing (`gliocore`) caches everything in DuckDB, keyed by content, so "
    "re-runs only compute what changed; this dashboard only reads from it.\n\n"
    "It is a research tool, not a medical device: the `baseline` segmenter is a rule-based "
    "yardstick, and every result carries the backend and version that produced it.")

st.subheader("This installation")
try:
    from importlib.metadata import version

    versions = {p: version(p) for p in ("streamlit", "plotly", "pandas", "duckdb", "lifelines",
                                        "scikit-learn", "pyradiomics")}
except Exception:  # a package without metadata: show what we have
    versions = {}
import gliocore  # noqa: E402

info = {"store (DuckDB)": str(settings.db), "data folder": str(settings.data_dir),
        "demo cohort": str(settings.demo_dir),
        "short-survival threshold": f"{settings.short_survival_months:g} months",
        "gliocore": gliocore.__version__, "python": platform.python_version(), **versions}
st.dataframe([{"setting": k, "value": v} for k, v in info.items()], hide_index=True,
             key="about_info")


backends = loaders.available_backends()
st.markdown("**Segmentation backends:** " + "; ".join(
    f"`{b}` " + ("available" if r is None else f"unavailable ({r.split('. ')[0].rstrip('.')})")
    for b, r in backends.items()))
line = ui.backend_line(ctx)
if line:
    st.caption("Results on display — " + line)

st.subheader("Atlases")
from gliocore.imaging.atlas import ATLAS_PACKAGE, ATLAS_PACKAGE_VERSION, SPACES  # noqa: E402

st.markdown(
    f"Tumour location uses region masks read from the installed PyPI package "
    f"`{ATLAS_PACKAGE}=={ATLAS_PACKAGE_VERSION}` (never copied into GlioScope). Subjects already "
    "in an atlas space (grid and affine within 1 mm) are located directly; others are "
    "registered to the template with ANTs (`antspyx`).")
st.dataframe([{"space": s.title, "grid": " × ".join(map(str, s.shape)) + " (1 mm)",
               "origin": s.origin, "licence": s.licence} for s in SPACES.values()],
             hide_index=True, key="about_atlases")
st.caption("The SRI24 masks carry an identity affine in the package; they are reoriented onto "
           "the BraTS/TCGA grid (first two axes reversed), as brain-mask Dice with real SRI24 "
           "cases confirms (validation report, location section).")

st.subheader("Validation")
st.markdown("The validation report checks GlioScope against external references: the IBSI "
            "phase-1 digital phantom and PyRadiomics' baselines (features), survival reference "
            "values (Kaplan–Meier, log-rank, Cox), and the baseline segmenter on a real case against "
            "a consensus of published BraTS algorithms.")
report_path = settings.data_dir / "validation" / "report.md"
from gliocore.validation.report import find_shared  # noqa: E402

shared = find_shared()
if shared is not None:
    if st.button("Run validation", key="run_validation",
                 help=f"Uses the reference data in {shared}; takes a minute or two."):
        from gliocore.validation.report import run_validation
        with st.spinner("Running the validation…"):
            t0 = time.perf_counter()
            try:
                report = run_validation(shared)
            except Exception as exc:  # report it; the page stays usable
                st.error(f"Validation failed: {type(exc).__name__}: {exc}")
            else:
                report_path.parent.mkdir(parents=True, exist_ok=True)
                report_path.write_text(report.to_markdown())
                (st.success if report.ok else st.warning)(
                    f"Validation {'passed' if report.ok else 'found failures'} in "
                    f"{time.perf_counter() - t0:.0f} s; report written to {report_path}.")
else:
    st.caption("Reference data (`../shared`) not found, so the validation cannot be run here; "
               "`python -m gliocore validate --shared PATH` runs it where the data is.")

if report_path.exists():
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(report_path.stat().st_mtime))
    st.caption(f"Latest report: `{report_path}` ({stamp})")
    with st.container(border=True):
        st.markdown(report_path.read_text())
else:
    st.info(f"No validation report yet (`{report_path}`). "
            + ("Press **Run validation** above, or run " if shared else "Run ")
            + "`python -m gliocore validate`.")
