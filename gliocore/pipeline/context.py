"""What a processing run computes (:class:`ProcessingConfig`), what it reports
(:class:`ProcessingSummary`), and the run itself as the planner, the writer and the driver see it
(:class:`RunContext`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from gliocore.cohort.subjects import Scan, safe_name
from gliocore.errors import SubjectError
from gliocore.location.localise import LocationConfig
from gliocore.segment import Segmenter
from gliocore.store import Store
from gliocore.types import BASELINE_SCAN

#: Progress callback: (stage, done, total, scan label or None); the label is the subject ID
#: for the only scan of a cross-sectional cohort, else ``subject/scan``.
ProgressCallback = Callable[[str, int, int, "str | None"], None]
STAGES = ("hash", "segment", "features")


@dataclass(frozen=True)
class ProcessingConfig:
    """What to compute.

    Parameters
    ----------
    backend : str
        Segmentation backend name (``baseline``, ``import``, ``hdglio``, ``nnunetv2``).
    backend_options : mapping
        Passed to the backend (e.g. ``pattern`` and ``label_map`` for ``import``).
    params : None, path or dict
        PyRadiomics parameters; None = the seed's default set.
    workers : int
        Worker processes (backends that hold a GPU model always run in one process).
    output_dir : Path or None
        Where masks are written; default: the store's folder / ``segmentations``.
    compute_qc : bool
        Score segmentations against subjects' reference masks when present.
    reference_label_map : str or LabelMap
        Label map of the reference masks: ``auto`` (default: per file from its values and
        naming where they agree, :func:`gliocore.imaging.labels.infer_reference_map`; otherwise
        a per-subject QC error naming ``--reference-label-map``) or declared (``glioscope``:
        1 = contrast-enhancing, 2 = non-enhancing; ``brats`` for BraTS ``_seg`` files). A
        reference holding a value the map does not know, or non-integer values, is a
        per-subject QC error.
    executor : {"local", "dask"}
        Where the work runs (:mod:`gliocore.pipeline.executor`): processes on this machine, or a Dask
        cluster whose workers share the images' and masks' storage with this machine.
    scheduler : str, optional
        The Dask scheduler's address (``tcp://HOST:PORT``) for ``executor="dask"``.
    location : LocationConfig or None
        Locate tumours in an atlas (:mod:`gliocore.location.localise`); None = skip that stage.
    """

    backend: str = "baseline"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    params: Any = None
    workers: int = 1
    output_dir: Path | None = None
    compute_qc: bool = True
    reference_label_map: Any = "auto"
    executor: str = "local"
    scheduler: str | None = None
    location: LocationConfig | None = None


@dataclass
class ProcessingSummary:
    """Outcome of :func:`process_cohort`.

    ``n_subjects`` counts the scans processed (= subjects in a cohort without timepoints);
    ``computed`` and ``cached`` list scan labels (subject IDs for cross-sectional cohorts).
    """

    run_id: str
    cohort_id: str
    config_key: str
    n_subjects: int
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    errors: list[SubjectError] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: Cohort-level warnings (e.g. no enhancing voxel in any subject), also stored with the run.
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        unit = "scans" if any("/" in x for x in self.computed + self.cached) else "subjects"
        lines = [f"{self.n_subjects} {unit}: {len(self.computed)} computed, "
                 f"{len(self.cached)} from cache, {len(self.errors)} with errors "
                 f"({self.seconds:.1f} s)"]
        for err in self.errors:
            lines.append(f"  ERROR [{err.stage}] {err}")
        for warning in self.warnings:
            lines.append(f"WARNING: {warning}")
        return "\n".join(lines)


@dataclass
class RunContext:
    """One processing run: what it computes, under which keys, and where results go."""

    store: Store
    config: ProcessingConfig
    cohort_id: str
    config_key: str
    run_id: str
    segmenter: Segmenter
    token: str
    params: dict[str, Any]
    params_fp: str
    out_root: Path
    summary: ProcessingSummary
    #: (subject_id, scan_id) of each subject's baseline scan, whose result is also the subject's
    baselines: set[tuple[str, str]] = field(default_factory=set)

    def mask_path(self, scan: Scan) -> Path:
        return mask_path(self.out_root, scan)

    @property
    def needs_gpu(self) -> bool:
        """A model backend that should run on a GPU worker when the executor schedules by
        resources (Dask ``--resources GPU=1``); ``device=cpu`` opts out."""
        device = str(dict(self.config.backend_options).get("device", "auto")).lower()
        return not self.segmenter.parallel_safe and device != "cpu"


def mask_path(out_root: Path, scan: Scan) -> Path:
    """Where a scan's new mask is written: ``<subject>/seg/<subject>_seg.nii.gz`` for the only
    scan of a cross-sectional cohort, ``<subject>/<scan>/seg/<subject>_<scan>_seg.nii.gz``
    otherwise (masks are found again by content key, not by this path)."""
    sid = safe_name(scan.subject_id)
    if scan.scan_id == BASELINE_SCAN:
        return out_root / sid / "seg" / f"{sid}_seg.nii.gz"
    tp = safe_name(scan.scan_id)
    return out_root / sid / tp / "seg" / f"{sid}_{tp}_seg.nii.gz"
