# Two entry points for a fresh machine: `make run` (a real measurement) and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sweeper measure --cell rnn_tanh --hidden-size 64 \
		--recurrent-scale 0.5 0.9 1.0 1.1 1.5 2.0 3.0 --seed 0 1 \
		--metrics lipschitz lyapunov memory

test: $(STAMP)
	$(VENV)/bin/ruff check sweeper tasks tests benchmarks
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check sweeper tasks tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
