"""Scientific validation of gliocore.features.radiomics: IBSI digital phantom and PyRadiomics baselines."""
from __future__ import annotations

import pytest
import radiomics

from gliocore.validation.ibsi import IBSI_TAGS, KNOWN_DEVIATIONS, validate_ibsi
from gliocore.validation.pyradiomics_baselines import BASELINE_RTOL, validate_pyradiomics_baselines


def test_tables_are_consistent():
    classes = radiomics.getFeatureClasses()
    for key in IBSI_TAGS:
        _, cls, name = key.split("_", 2)
        assert name in classes[cls].getFeatureNames(), key
    assert len(set(IBSI_TAGS.values())) == len(IBSI_TAGS)  # one PyRadiomics feature per tag
    assert set(KNOWN_DEVIATIONS) <= set(IBSI_TAGS)


@pytest.fixture(scope="module")
def ibsi(shared_dir):
    return validate_ibsi(shared_dir)


@pytest.fixture(scope="module")
def baselines(shared_dir):
    return validate_pyradiomics_baselines(shared_dir)


def test_ibsi_every_mapped_feature_compared(ibsi):
    assert ibsi.n_compared == len(IBSI_TAGS)
    assert all(r.value is not None for r in ibsi.rows)
    assert ibsi.n_voxels == 74


def test_ibsi_non_deviating_features_pass(ibsi):
    misses = [(r.feature, r.value, r.reference, r.effective_tolerance) for r in ibsi.misses]
    assert not misses
    assert all(r.passed for r in ibsi.rows if not r.known_deviation)


def test_ibsi_known_deviations_are_real_and_explained(ibsi):
    known = {r.feature: r for r in ibsi.known}
    assert set(known) == set(KNOWN_DEVIATIONS)
    # Reported as PyRadiomics computes them (kurtosis is off by 3, not hidden) ...
    assert not known["original_firstorder_Kurtosis"].passed
    # ... and the documented conversion brings every one within IBSI's tolerance.
    assert all(r.converted_passed for r in known.values())
    assert ibsi.ok


def test_ibsi_markdown(ibsi):
    md = ibsi.to_markdown()
    assert f"{ibsi.n_within} of {ibsi.n_compared}" in md
    assert "stat_kurt" in md and "Known deviations" in md and "morph_diam" in md


def test_baselines_within_3_percent(baselines):
    bad = [(r.column, r.feature, r.value, r.baseline, r.rel_diff) for r in baselines.failures]
    assert not bad
    assert baselines.ok and baselines.max_rel_diff < BASELINE_RTOL


def test_baselines_cover_cases_settings_and_classes(baselines):
    assert baselines.columns() == ["brain1", "brain1_normalization", "brain1_resampling",
                                   "brain2", "brain2_normalization", "brain2_resampling"]
    classes = {r.feature_class for r in baselines.rows}
    assert classes == {"shape", "firstorder", "glcm", "glrlm", "glszm", "ngtdm", "gldm"}
    assert baselines.n_compared > 500


def test_baselines_markdown(baselines):
    md = baselines.to_markdown()
    assert "brain2_resampling" in md and f"{baselines.n_within} of {baselines.n_compared}" in md
