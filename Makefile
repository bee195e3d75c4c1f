# exo-deferrals: `make lab` to investigate, `make test` to check everything, `make report`, `make bench`.
# Contributors' targets; users need none of this: `pip install .` then `exo-deferrals lab` (README, Quick start).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,browser,bench,dask,graph
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | sha1sum | cut -c1-12)
# one pytest temporary folder, emptied by pytest at each run (not a new one per session in /tmp); no cache folder;
# two pytest-xdist workers, each test file whole in one of them (its module fixtures made once)
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider --basetemp=build/pytest -n 2 --dist loadfile

PANDAS22 := .venv-pandas22
PANDAS22_STAMP := $(PANDAS22)/.installed-$(shell cat pyproject.toml setup.py | sha1sum | cut -c1-12)

.PHONY: lab test test-pandas22 ci lint report bench sample clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/exo-deferrals lab .

lint: $(STAMP)
	$(BIN)/ruff check analysis tests bench tools setup.py
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(PYTEST)

# the package also supports pandas 2.2: the library tests (not notebooks or browsers) on it. CI runs it
# (`make ci`); contributors may, it builds a second environment (about 700 MB, 1 minute).
$(PANDAS22_STAMP): pyproject.toml setup.py
	test -x $(PANDAS22)/bin/python || $(PYTHON) -m venv $(PANDAS22)
	$(PANDAS22)/bin/pip install --quiet --upgrade pip
	$(PANDAS22)/bin/pip install --quiet -e ".[test,graph]" "pandas==2.2.3"
	touch $(PANDAS22_STAMP)

test-pandas22: $(PANDAS22_STAMP)
	$(PANDAS22)/bin/python -m pytest -q -p no:cacheprovider --basetemp=build/pytest-pandas22 -m "not browser" \
		--ignore=tests/test_notebooks.py --ignore=tests/test_notebooks_dask.py --ignore=tests/test_report.py \
		--ignore=tests/test_browser.py --ignore=tests/test_report_browser.py --ignore=tests/test_wheel.py \
		--ignore=tests/test_lab.py --ignore=tests/test_voila_app.py

ci: test test-pandas22

report: $(STAMP)
	$(BIN)/exo-deferrals report data/sample --allowlist data/sample/partner_allowlist_ironport.txt -o build/report/report.html

bench: $(STAMP)
	$(BIN)/python bench/run.py

sample: $(STAMP)
	$(BIN)/exo-deferrals sample --out data/sample

clean:
	rm -rf build .pytest_cache .ruff_cache $(PANDAS22)
