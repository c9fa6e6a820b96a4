# Two entry points for a fresh machine: `make run` (a real measurement) and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: run test lint bench clean

# `make run` needs the runtime dependencies only; `make test` adds the test extra (pytest,
# Hypothesis, ruff, Playwright, psycopg2) on top.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

# The quickstart sweep end to end (in-process, as --executor auto decides for its 8 s of
# compute), sqlite MLflow (./mlflow.db), Parquet parts,
# region map and plots under results/quickstart. --resume makes a second `make run` finish or
# skip, never duplicate.
run: $(STAMP)
	$(VENV)/bin/sweeper run search_spaces/quickstart.yaml --out results/quickstart --resume
	@echo
	@echo "Points (Parquet):     results/quickstart/points/"
	@echo "Region map (Parquet): results/quickstart/region_map.parquet"
	@echo "Plots (PNG):          results/quickstart/plots/"

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check sweeper tasks tests benchmarks
	$(PY) -m pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check sweeper tasks tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
