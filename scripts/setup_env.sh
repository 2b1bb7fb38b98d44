#!/usr/bin/env bash
# Create .venv and install GlioScope's pinned requirements in the order PyRadiomics needs.
# Usage: scripts/setup_env.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# 1. numpy, build tools and the pinned torch first (torch==2.13.0 takes the local CPU wheel where one exists).
$PIP install -q "numpy==2.4.6" "setuptools==84.2.1" "wheel==0.45.1" "torch==2.13.0"
# 2. PyRadiomics builds from source against the numpy already installed.
if ! .venv/bin/python -c "import radiomics" 2>/dev/null; then
  $PIP install -q --no-build-isolation "pyradiomics==3.0.1"
fi
# 3. Everything else, pinned.
$PIP install -q -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  $PIP install -q -r requirements-dev.txt
fi
$PIP install -q --no-deps -e .
