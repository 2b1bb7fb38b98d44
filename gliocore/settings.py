"""Settings: paths and defaults, built once and passed down (never read globally elsewhere)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class InputLimits:
    """What an input image file may announce before GlioScope refuses to read it.

    Checked from the NIfTI header alone, before any voxel is read or allocated (a hostile
    header can announce terabytes in a file of a few hundred bytes).

    Attributes
    ----------
    max_volume_bytes : int
        Most bytes one volume may hold while it is read: the stored array plus its converted
        copy (shape × (stored bytes + 4) a voxel for float32 images; NRRD counts SimpleITK's
        copy too). Default 2 GiB: a 512³ int16 volume read as float32 holds 768 MiB; a
        240×240×155 BraTS volume 71 MB.
    max_header_bytes : int
        Largest offset of the voxel data (header + extensions), default 64 MiB.
    max_subject_bytes : int
        Most bytes a subject's four sequences may hold while read (the sum of the above),
        checked from their headers before any voxel is read: the bound on the images a
        worker process holds at once. Default 6 GiB; with N workers, plan on N × this plus the
        segmentation and PyRadiomics working memory.
    """

    max_volume_bytes: int = 2 * GiB
    max_header_bytes: int = 64 * MiB
    max_subject_bytes: int = 6 * GiB


@dataclass(frozen=True)
class UploadLimits:
    """Limits of a cohort uploaded as a zip in the browser (:mod:`gliocore.cohort.uploads`).

    Attributes
    ----------
    max_zip_bytes : int
        Size of the zip itself. Keep it equal to ``server.maxUploadSize`` (MB) in
        ``.streamlit/config.toml`` (a test checks they agree). Default 1 GiB.
    max_files : int
        Entries in the zip (files and folders), default 5000 (1000 subjects × 5 files).
    max_total_bytes : int
        Sum of the unpacked sizes, default 8 GiB (declared sizes are checked first, then the
        bytes actually decompressed are counted while unpacking).
    max_ratio : float
        Largest compression ratio (unpacked / packed) of the whole zip and of any entry
        larger than ``ratio_min_bytes``; beyond it the zip is treated as a zip bomb. Default
        200: gzipped NIfTI barely compresses further, uncompressed MRI compresses 2–10×.
        An uncompressed ``.nii`` *mask* (mostly zeros) can exceed it: gzip such files
        (``.nii.gz``) before zipping.
    ratio_min_bytes : int
        Entries smaller than this are exempt from the per-entry ratio (tiny files of zeros
        compress enormously and are harmless), default 1 MiB.
    allowed_suffixes : tuple of str
        File types accepted in the zip (lower case): CSV, NIfTI, NRRD.
    """

    max_zip_bytes: int = 1 * GiB
    max_files: int = 5000
    max_total_bytes: int = 8 * GiB
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 * MiB
    allowed_suffixes: tuple[str, ...] = (".csv", ".nii", ".nii.gz", ".nrrd")


@dataclass(frozen=True)
class Settings:
    """Where GlioScope keeps its data.

    Attributes
    ----------
    data_dir : Path
        Root for generated data (default ``<repo>/data`` or ``$GLIOSCOPE_DATA``).
    store_path : Path
        The DuckDB file (default ``data_dir/gliocore.duckdb`` or ``$GLIOSCOPE_DB``).
    demo_n_subjects, demo_seed : int
        The embedded demo cohort.
    demo_followups : bool
        Whether the demo has follow-up scans (``$GLIOSCOPE_DEMO_FOLLOWUPS=0`` turns them off).
    short_survival_months : float
        Threshold of the short vs long survival split (the seed's 5 months).
    default_backend : str
        Segmentation backend of user cohorts (``stacked``; ``baseline``, the rules, and
        ``learned`` are available by name).
    demo_backend : str
        Segmentation backend of the synthetic demo (``baseline``: see README, "Segmentation
        backends").
    input_limits : InputLimits
        What an image file's header may announce (checked before reading voxels).
    upload_limits : UploadLimits
        Limits of a cohort uploaded as a zip.
    allowed_roots : tuple of Path
        Folders the dashboard's "Load a cohort" may read (the clinical CSV, the image root and
        every image, after resolving links); empty (the default, one local user) allows any
        folder the server's account can read. From ``$GLIOSCOPE_ALLOWED_ROOTS`` (folders
        separated by ``os.pathsep``, ``:`` on POSIX). Set it for a group deployment.
    """

    data_dir: Path = REPO_ROOT / "data"
    store_path: Path | None = None
    demo_n_subjects: int = 30
    demo_seed: int = 0
    #: The demo gets follow-up scans (1-4 per subject, some none) for the Progression page.
    demo_followups: bool = True
    short_survival_months: float = 5.0
    #: Backend for user cohorts: the stacked learned backend (rules + trees), which held out beat
    #: the rules on what issue 21 measures (README, "Learned backends"; the rule is
    #: ``gliocore.validation.cv_figures.default_verdict``). ``baseline`` stays by name.
    default_backend: str = "stacked"
    #: Backend for the synthetic demo: the rule baseline (about 2 s a scan on the demo's phantoms,
    #: which are not real MRI; the learned model is trained on real scans only).
    demo_backend: str = "baseline"
    input_limits: InputLimits = InputLimits()
    upload_limits: UploadLimits = UploadLimits()
    allowed_roots: tuple[Path, ...] = ()

    @property
    def db(self) -> Path:
        return self.store_path or self.data_dir / "gliocore.duckdb"

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"

    @property
    def demo_csv(self) -> Path:
        return self.demo_dir / "clinical.csv"

    @property
    def segmentation_dir(self) -> Path:
        return self.data_dir / "segmentations"

    @property
    def uploads_dir(self) -> Path:
        """Where uploaded cohorts are unpacked, one folder per upload."""
        return self.data_dir / "uploads"

    def may_read(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` (links resolved) lies inside one of :attr:`allowed_roots`; always
        True when no root is set."""
        if not self.allowed_roots:
            return True
        real = Path(path).expanduser().resolve()
        return any(real.is_relative_to(Path(r).expanduser().resolve())
                   for r in self.allowed_roots)

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then ``$GLIOSCOPE_DATA`` / ``$GLIOSCOPE_DB`` /
        ``$GLIOSCOPE_ALLOWED_ROOTS``, then ``overrides``."""
        s = cls()
        if os.environ.get("GLIOSCOPE_DATA"):
            s = replace(s, data_dir=Path(os.environ["GLIOSCOPE_DATA"]))
        if os.environ.get("GLIOSCOPE_DEMO_FOLLOWUPS", "").strip() in ("0", "false", "no"):
            s = replace(s, demo_followups=False)
        if os.environ.get("GLIOSCOPE_DB"):
            s = replace(s, store_path=Path(os.environ["GLIOSCOPE_DB"]))
        roots = [r for r in os.environ.get("GLIOSCOPE_ALLOWED_ROOTS", "").split(os.pathsep)
                 if r.strip()]
        if roots:
            s = replace(s, allowed_roots=tuple(Path(r.strip()) for r in roots))
        return replace(s, **overrides) if overrides else s  # type: ignore[arg-type]
