# The two set-up commands (README): `make demo` and `make test`. Each creates
# .venv if it is missing and installs what it needs, so on a fresh machine
# with Python 3.11 they are the only commands to run.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared
CONFORMANCE := $(SHARED)/conformance

.PHONY: demo test unit conformance lint typecheck bench clean slow

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Ray (the `ray` extra) for the Ray executor's tests; they skip, saying why, if it cannot be installed.
RAY_STAMP := $(VENV)/.ray-installed
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[ray]' || echo "Ray could not be installed: tests marked 'ray' will skip"
	touch $(RAY_STAMP)

demo: $(STAMP)
	$(PY) examples/crash_and_resume.py

# pytest exits 5 when it selected no test: scripts/run_pytest.py turns that into a failure.
# `slow` tests run here too, at a smaller size; `make slow` runs them at full size.
SLOW_SIZES_CI ?= TREADLE_SLOW_KILLS=50 TREADLE_PROP_EXAMPLES=20 TREADLE_STRESS_RUNS=2000
test: $(STAMP) $(RAY_STAMP)
	$(SLOW_SIZES_CI) $(PY) scripts/run_pytest.py tests
	@if [ -d "$(CONFORMANCE)" ]; then $(PY) scripts/run_pytest.py -c pyproject.toml --rootdir . $(CONFORMANCE); \
	else echo "no $(CONFORMANCE): conformance suite not run"; fi

unit: $(STAMP)
	$(PY) scripts/run_pytest.py tests/unit

conformance: $(STAMP)
	$(PY) scripts/run_pytest.py -c pyproject.toml --rootdir . $(CONFORMANCE)

slow: $(STAMP)
	TREADLE_SLOW_KILLS=1000 TREADLE_PROP_EXAMPLES=100 TREADLE_STRESS_RUNS=5000 \
		$(PY) scripts/run_pytest.py -m slow tests

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	PYTHON=$(PY) scripts/typecheck.sh

bench: $(STAMP) $(RAY_STAMP)
	$(PY) -m pip install --quiet -e '.[bench]' || echo "DBOS could not be installed: peer columns will be empty"
	$(PY) benchmarks/run.py
	$(PY) benchmarks/executors.py

clean:
	rm -rf $(VENV) .mypy-src build *.egg-info .pytest_cache .mypy_cache .ruff_cache
