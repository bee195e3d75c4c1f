# exo-deferrals: `make lab` to investigate, `make test` to check everything, `make report`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: lab test lint report bench sample clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,browser,bench]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

lint: $(STAMP)
	$(BIN)/ruff check analysis tests bench
	$(BIN)/nbstripout --verify notebooks/*.ipynb

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

report: $(STAMP)
	$(BIN)/exo-deferrals report data/sample -o build/report/report.html

bench: $(STAMP)
	$(BIN)/python bench/run.py

sample: $(STAMP)
	$(BIN)/exo-deferrals sample --out data/sample

clean:
	rm -rf build .pytest_cache .ruff_cache
