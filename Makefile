# mtashift — the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DAGSTER_HOME := $(CURDIR)/.dagster_home
export MTASHIFT_LAKE ?= $(CURDIR)/demo/lake
export MTASHIFT_LANDING ?= $(CURDIR)/demo/estate/landing

.PHONY: venv demo test test-slow lint ui bench report clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	touch $(STAMP)

demo: venv
	$(BIN)/mtashift demo --out demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv lint
	$(BIN)/python -m pytest -q

test-slow: venv
	$(BIN)/python -m pytest -m slow

ui: venv
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

report: venv
	$(BIN)/mtashift report --lake $(MTASHIFT_LAKE)

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf demo .dagster_home bench-out .pytest_cache .ruff_cache
