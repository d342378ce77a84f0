# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo lint test regen bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/tokenwatch demo

# Static checks (configured in pyproject.toml): ruff over the code, tests and benchmarks, mypy (strict)
# over schemas/, detectors/ and pipeline/. `make test` runs them first and stops on a finding.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

# Rewrite what is generated from the detectors' RuleMeta and Config and the settings models: the
# README rule table and pipeline/data/tokenwatch.toml (pipeline/regen.py; tests/test_regen.py fails while stale).
regen: install
	$(PY) -m pipeline.regen

bench: install
	$(PY) benchmarks/bench_detect.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis .mypy_cache .ruff_cache
