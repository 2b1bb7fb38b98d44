# GlioScope dashboard. Build: docker build -t glioscope .   Run: docker run -p 8501:8501 glioscope
# For HD-GLIO on a GPU, run with --gpus all and mount the weights:
#   -v ~/hd_glio_params:/home/glio/hd_glio_params -e GLIOSCOPE_HDGLIO_WEIGHTS=/home/glio/hd_glio_params
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential make \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 glio
WORKDIR /app

# PyRadiomics builds from source against the numpy already installed: install in that order.
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install "numpy==2.4.6" "setuptools==84.2.1" "wheel==0.45.1" "torch==2.13.0" \
    && pip install --no-build-isolation "pyradiomics==3.0.1" \
    && pip install -r requirements.txt \
    && pip install --no-deps -r requirements-nodeps.txt

COPY --chown=glio:glio . .
RUN pip install --no-deps -e . && mkdir -p /app/data && chown glio:glio /app/data

USER 1000
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"]
# Generate and process the demo cohort on first start (cached in /app/data), then serve.
CMD ["sh", "-c", "python -m gliocore process --demo --workers 2 && exec streamlit run app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true --browser.gatherUsageStats false"]
