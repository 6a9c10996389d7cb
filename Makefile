# slaboard: `make run` sets up and runs the product; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Tests run against PostgreSQL (pytest-django creates and drops test_slaboard) and real Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/slaboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test test-fast lint format check clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "slaboard needs Python 3.11 (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	touch $(STAMP)

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
