# Two commands do all the set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install engines demo test test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The engines the scale-out tests run against (tests/engines.py starts and stops them):
# Debian's packages, installed only where missing. Without them those tests skip, except
# under CI=true, where .ci/run installs them first and a missing one fails the run.
APT := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
ENGINES := redis-server postgresql
engines:
	@missing=""; for p in $(ENGINES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(APT) install -y -q $$missing >/dev/null 2>&1 || \
	  { $(APT) update -q >/dev/null && $(APT) install -y -q $$missing >/dev/null; }; \
	fi

demo: install          ## the main job on the synthetic TV world (DuckDB + SQLite, no servers)
	$(VENV)/bin/tvrec demo

test: install          ## lint + the fast test suite (what CI runs), a worker per core
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

test-slow: install     ## the slow tests: real datasets end to end
	$(VENV)/bin/pytest -q -m slow

bench: install         ## ingest + features wall time and peak memory
	$(PY) bench/bench_features.py

clean:
	rm -rf tvrec-work bench/out
