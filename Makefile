# Two commands do all set-up: `make demo` and `make test`. Both are idempotent:
# the venv and installs are redone only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test

.PHONY: demo test bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("botify needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(TEST_INSTALLED): pyproject.toml $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,torch,spark]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/botify demo

test: $(TEST_INSTALLED)
	$(BIN)/python -m pytest

bench: $(TEST_INSTALLED)
	$(BIN)/python bench/sim_speed.py
	$(BIN)/python bench/service_load.py
	$(BIN)/python bench/analysis_speed.py
	$(BIN)/python bench/train_speed.py

clean:
	rm -rf $(VENV) runs reports .pytest_cache
