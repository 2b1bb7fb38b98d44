# GlioScope image (CPU). Build:  docker build -t glioscope .
# Run, reachable from this machine only (a group: see README "Running it for a group"):
#   docker run --rm -p 127.0.0.1:8501:8501 -v glioscope-data:/app/data glioscope
# or `docker compose up` (compose.yaml; `--profile dask` adds a Dask scheduler and worker).
#
# GPU variant (HD-GLIO / nnU-Net v2 on CUDA): the same Dockerfile with PyPI's torch wheel, which
# bundles its CUDA libraries; the host needs the NVIDIA driver and NVIDIA Container Toolkit:
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t glioscope:gpu .
#   docker run --rm --gpus all -p 127.0.0.1:8501:8501 -v glioscope-data:/app/data \
#     -v ~/hd_glio_params:/home/glio/hd_glio_params:ro \
#     -e GLIOSCOPE_HDGLIO_WEIGHTS=/home/glio/hd_glio_params glioscope:gpu
#
# Everything is pinned: the base image by version (pin its digest too for bit-identical
# rebuilds: PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest of
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm`>), apt packages by version,
# and every Python package by requirements-lock.txt (transitive dependencies included).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

# CPU wheels by default (a few hundred MB instead of several GB of CUDA libraries).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GLIOSCOPE_DATA=/app/data \
    MPLCONFIGDIR=/tmp/matplotlib

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app

# PyRadiomics has no wheel for 3.11 and builds against the numpy already installed: install in
# that order. The compilers are needed only for that build: installed, used and purged in one
# layer, so the image carries no compiler.
COPY requirements.txt requirements-nodeps.txt requirements-lock.txt ./
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && pip install "pip==26.3" \
    && pip install -c requirements-lock.txt "numpy==2.4.6" "setuptools==84.2.1" "wheel==0.45.1" \
    && pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
         -c requirements-lock.txt "torch==2.13.0" \
    && pip install -c requirements-lock.txt --no-build-isolation "pyradiomics==3.0.1" \
    && python -c "from radiomics import cMatrices" \
    && pip install -c requirements-lock.txt -r requirements.txt \
    && pip install --no-deps -r requirements-nodeps.txt \
    && apt-get purge -y --auto-remove build-essential \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns the data folder only; the code stays root-owned (read-only to it).
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin glio \
    && mkdir -p /app/data \
    && chown glio:glio /app/data
COPY . .
RUN pip install --no-deps -e . \
    && rm -rf /app/data/* /app/.venv

USER 1000:1000
VOLUME ["/app/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
# Generate and process the demo cohort on first start (kept in the data volume; queued behind
# another run on the same store), then serve whatever the processing's outcome.
# Inside the container Streamlit listens on all interfaces (so that the port can be published);
# publish it on 127.0.0.1 or behind an authenticating proxy, never on 0.0.0.0 of a shared host.
CMD ["sh", "-c", "python -m gliocore process --demo --workers 2 --wait 3600; exec streamlit run app.py --server.address 0.0.0.0 --server.port 8501"]
