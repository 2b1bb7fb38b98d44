"""Deterministic synthetic glioma cohort: the embedded demo (no real data ships with GlioScope).

Each subject is a skull-stripped brain phantom on a 240 x 240 x 155 grid (1 mm, like the
SRI24 atlas space of BraTS) with four co-registered sequences (T1, T1c, T2, FLAIR), a
reference segmentation in GlioScope's canonical labels and tumour parameters. A cohort adds
a clinical table whose survival depends on tumour volume, IDH status and age, so that the
dashboard's analyses show a real (synthetic) signal.

Anatomy (in the coordinates of the 240 x 240 x 155 mm reference field of view; smaller grids
get proportionally scaled anatomy, so tests can use tiny volumes):

- an ellipsoidal brain with a smooth irregular surface; zero outside (skull-stripped);
- cortex (a grey-matter shell of varying thickness, folded by sulci filled with CSF),
  deep grey nuclei, white matter, lateral ventricles and an interhemispheric fissure;
- a tumour in one hemisphere: an irregular (noise-perturbed) core with an enhancing rim
  around a necrotic centre, within a larger irregular oedema. IDH-mutant-like tumours have
  a solid, mostly non-enhancing core with a small patchy enhancing part, or none.

Truth labels: 1 = contrast-enhancing rim, 2 = non-enhancing (necrotic core, solid
non-enhancing tumour and oedema). Images get partial-volume blur, a smooth multiplicative
bias field, Rician noise and a per-subject scale and offset per sequence (as raw MRI
intensities vary between scanners), and are stored as int16.

Everything is a function of the seed: the same seed gives byte-identical files.
"""
from __future__ import annotations

# One module per concept; this package keeps the public names reachable as ``synth.<name>``.
from .atlas import ATLAS_TISSUE_QUANTILES, LOBE_WEIGHTS, AtlasAnatomy, atlas_anatomy
from .clinical import (
    BASELINE_MEDIAN_MONTHS,
    LOG_HR_PER_DECADE,
    LOG_HR_PER_LOG_VOLUME,
    LOG_HR_WILDTYPE,
    WEIBULL_SHAPE,
    simulate_clinical,
)
from .followups import (
    BASELINE_ONLY_FRACTION,
    FOLLOWUP_DIR,
    MAX_FOLLOWUPS,
    SCANS_CSV,
    FollowUp,
    generate_followups,
    make_followup,
    plan_followups,
    scale_tumour,
)
from .params import (
    BASE_SCALE,
    BRAIN_RADII,
    CONTRAST,
    FILE_SUFFIX,
    IDH_MUTANT_FRACTION,
    N_TISSUES,
    REFERENCE_FOV_MM,
    REFERENCE_SHAPE,
    TRUTH_SUFFIX,
    SyntheticSubject,
    make_affine,
)
from .params import _draw_params as _draw_params  # used by tests (parameter draws)
from .params import _subject_rng as _subject_rng
from .phantom import generate_subject
from .sites import SITES, SITE_THRESHOLDS, scanner_score, site_of
from .writer import NOISE_CSV, generate_demo_cohort, make_tiny_cohort, subject_ids, write_subject
from .writer import _subject_seed as _subject_seed

__all__ = [
    "ATLAS_TISSUE_QUANTILES", "BASELINE_MEDIAN_MONTHS", "BASELINE_ONLY_FRACTION", "BASE_SCALE",
    "BRAIN_RADII", "CONTRAST", "FILE_SUFFIX", "FOLLOWUP_DIR", "IDH_MUTANT_FRACTION",
    "LOBE_WEIGHTS", "LOG_HR_PER_DECADE", "LOG_HR_PER_LOG_VOLUME", "LOG_HR_WILDTYPE",
    "MAX_FOLLOWUPS", "NOISE_CSV", "N_TISSUES", "REFERENCE_FOV_MM", "REFERENCE_SHAPE", "SCANS_CSV",
    "SITES", "SITE_THRESHOLDS",
    "TRUTH_SUFFIX", "WEIBULL_SHAPE", "AtlasAnatomy", "FollowUp", "SyntheticSubject",
    "atlas_anatomy", "generate_demo_cohort", "generate_followups", "generate_subject",
    "make_affine", "make_followup", "make_tiny_cohort", "plan_followups", "scale_tumour",
    "scanner_score", "simulate_clinical", "site_of", "subject_ids", "write_subject",
]
