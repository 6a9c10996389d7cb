# slaboard: `make run` sets up and runs the product; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Tests run against PostgreSQL (pytest-django creates and drops test_slaboard) and real Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/slaboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test test-fast lint format check clean

# The install step. uv installs the same pins as pip several times faster (measured on a fresh
# venv without caches: 10 s including installing uv itself, against 54 s for pip). UV=auto uses
# the uv on PATH, else installs uv into the venv with pip, and falls back to plain pip if that
# fails; UV=0 always uses plain pip (for instance when pip is set up for a private index, which
# uv does not read: give uv UV_INDEX_URL instead).
UV ?= auto

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "slaboard needs Python 3.11 (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	@test -x $(PY) || { echo "[slaboard] creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "[slaboard] installing the pinned dependencies into $(VENV) (first run: about 10 s with uv, 1-2 min with pip; later runs skip this)..."
	@set -e; uv=""; \
	if [ "$(UV)" != "0" ]; then \
		if command -v uv >/dev/null 2>&1; then uv=uv; \
		elif [ -x $(VENV)/bin/uv ] || $(PY) -m pip install --quiet --disable-pip-version-check uv; then uv=$(VENV)/bin/uv; \
		else echo "[slaboard] could not install uv; using pip"; fi; \
	fi; \
	if [ -n "$$uv" ]; then \
		echo "[slaboard] with $$($$uv --version) (UV=0 make ... uses pip)"; \
		$$uv pip install --python $(PY) ".[dev]"; \
	else \
		echo "[slaboard] with pip"; \
		$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; \
		$(PY) -m pip install --disable-pip-version-check --progress-bar off ".[dev]"; \
	fi
	@touch $(STAMP)
	@echo "[slaboard] dependencies installed."

run: $(STAMP)
	$(PY) -m slaboard.run

test: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CHANNEL_PREFIX=slaboard-test \
		$(PY) -m pytest $(PYTEST_ARGS)

# The edit loop: everything but slow, browser and real-process tests (under 2 minutes).
test-fast: $(STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CHANNEL_PREFIX=slaboard-test \
		$(PY) -m pytest -m "not slow and not browser and not subprocess" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tests/test_layers.py
	DATABASE_URL=sqlite:///var/mypy.sqlite3 $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=sqlite:///var/mypy.sqlite3 $(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
