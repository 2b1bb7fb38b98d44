"""Shared fixtures. Seeds are printed so that a failing random test can be replayed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("GLIOSCOPE_TEST_SEED", "20261125"))


def shared_root() -> Path | None:
    """The ``../shared`` reference folder beside the checkout (or $GLIOSCOPE_SHARED), if present."""
    env = os.environ.get("GLIOSCOPE_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "README.md").exists():
            return c
    return None


def pytest_report_header(config):
    return f"GlioScope tests: seed {SEED}, shared data: {shared_root() or 'absent (those tests skip)'}"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if root is None:
        pytest.skip("../shared reference data is absent")
    return root
