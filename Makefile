# GlioScope: `make run` (demo dashboard) and `make test` (whole test suite) work from a clean clone.
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
DEMO_N ?= 30
WORKERS ?= 2

.PHONY: run setup setup-dev demo process test browser-deps lint bench clean

$(VENV)/.installed: requirements.txt requirements-nodeps.txt scripts/setup_env.sh pyproject.toml
	scripts/setup_env.sh
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-deepbet.txt
	scripts/setup_env.sh --dev
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(PY) -m gliocore demo --n-subjects $(DEMO_N)

process: demo
	$(PY) -m gliocore process --demo --workers $(WORKERS)

run: process
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

browser-deps:
	scripts/install_browser.sh

test: setup-dev browser-deps
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m pytest -q

lint: setup-dev
	$(VENV)/bin/hadolint Dockerfile

bench: process
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf data/demo data/gliocore.duckdb data/gliocore.duckdb.* data/segmentations
