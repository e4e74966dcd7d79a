# Two commands do all the set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install          ## the main job on the synthetic TV world (DuckDB + SQLite, no servers)
	$(VENV)/bin/tvrec demo

test: install          ## lint + the fast test suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

test-slow: install     ## the slow tests: real datasets end to end
	$(VENV)/bin/pytest -q -m slow

bench: install         ## ingest + features wall time and peak memory
	$(PY) bench/bench_features.py

clean:
	rm -rf tvrec-work bench/out
