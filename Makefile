# Quick start: `make pipeline` (everything, on the built-in sample, CPU) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The venv's tools (detection, dvc, prefect, pytest) first on PATH, for dvc.yaml's commands too.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Offline and private: no telemetry from DVC or Prefect.
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: help install lock pipeline repro flow sweep codedeps plots test test-slow test-all bench clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The environment is the lock file's, exactly: pip-sync-like (install the pins, then the project
# without resolving again), and `pip check` must be clean.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

install: $(STAMP)  ## create .venv if missing and install the locked environment (requirements.lock) + the project

lock: | $(BIN)/python  ## refresh requirements.lock from pyproject.toml (keeps pins; UPGRADE=1 upgrades all)
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		$(if $(UPGRADE),--upgrade,) --output-file requirements.lock pyproject.toml

pipeline: install  ## run every stage of the default pipeline (dvc repro), printing each stage's time and the metrics
	@start=$$(date +%s); dvc repro && detection metrics && echo "pipeline: done in $$(( $$(date +%s) - start )) s"

repro: pipeline

flow: install  ## run the same stages as Prefect task runs (ephemeral API, no server)
	python -m flows.pipeline

SWEEP_MODELS ?= fasterrcnn_tiny ssdlite320_mobilenet_v3_large fasterrcnn_mobilenet_v3_large_320_fpn
SWEEP_EPOCHS ?= 2
sweep: install  ## compare backbones as parallel DVC experiments (SWEEP_MODELS, SWEEP_EPOCHS): reports/sweep/
	python -m flows.sweep --models $(SWEEP_MODELS) --epochs $(SWEEP_EPOCHS)

codedeps: install  ## rewrite dvc.yaml's code deps from the stages' imports (after adding/moving modules)
	python -m tasks.codedeps --write

plots: install  ## dvc plots show, offline (vega inlined): dvc_plots/index.html
	dvc plots show

test: install  ## the default test suite (< 15 min on 2 cores)
	python -m pytest

test-slow: install  ## only the slow tests (full pipeline through DVC and Prefect)
	python -m pytest -m slow

test-all: install  ## every test, slow ones included
	python -m pytest -m "slow or not slow"

bench: install  ## benchmarks (print and write JSON under reports/bench)
	python -m pytest -m bench -s benchmarks

clean:  ## remove pipeline outputs (not the DVC cache or .venv)
	rm -rf data/raw data/interim data/processed models reports
