# exo-deferrals: `make lab` to investigate, `make test` to check everything, `make report`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

PANDAS22 := .venv-pandas22
PANDAS22_STAMP := $(PANDAS22)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: lab test test-pandas22 lint report bench sample clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,browser,bench]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

lint: $(STAMP)
	$(BIN)/ruff check analysis tests bench tools
	$(BIN)/nbstripout --verify notebooks/*.ipynb

test: $(STAMP) lint
	$(BIN)/python -m pytest -q
	$(MAKE) test-pandas22

# the package also supports pandas 2.2: run the library tests (not notebooks or browsers) on it
$(PANDAS22_STAMP): pyproject.toml
	test -x $(PANDAS22)/bin/python || $(PYTHON) -m venv $(PANDAS22)
	$(PANDAS22)/bin/pip install --quiet --upgrade pip
	$(PANDAS22)/bin/pip install --quiet -e ".[test]" "pandas==2.2.3"
	touch $(PANDAS22_STAMP)

test-pandas22: $(PANDAS22_STAMP)
	$(PANDAS22)/bin/python -m pytest -q -m "not browser" --ignore=tests/test_notebooks.py --ignore=tests/test_notebooks_dask.py --ignore=tests/test_report.py \
		--ignore=tests/test_browser.py --ignore=tests/test_report_browser.py

report: $(STAMP)
	$(BIN)/exo-deferrals report data/sample --allowlist data/sample/partner_allowlist_ironport.txt -o build/report/report.html

bench: $(STAMP)
	$(BIN)/python bench/run.py

sample: $(STAMP)
	$(BIN)/exo-deferrals sample --out data/sample

clean:
	rm -rf build .pytest_cache .ruff_cache $(PANDAS22)
