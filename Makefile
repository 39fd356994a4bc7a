# The two commands a new machine needs (see README):
#   make demo   the main job end to end on the embedded database
#   make test   the whole test suite (lint included)
# Both create .venv and install the project from pyproject.toml first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: demo test lint format bench clean-db

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/studyin demo

lint: $(STAMP)
	$(BIN)/ruff check python_jobs tests bench alembic
	$(BIN)/ruff format --check python_jobs tests bench alembic
	$(BIN)/sqlfluff lint --processes 0 models analyses tests/dbt  # one process per core

# Test modules run on parallel workers (pytest-xdist, one per core up to 4), each module whole on
# one worker, since its fixtures build one simulated warehouse that its tests share.
test: lint
	$(BIN)/pytest --numprocesses auto --maxprocesses 4 --dist loadfile

format: $(STAMP)
	$(BIN)/ruff format python_jobs tests bench alembic
	$(BIN)/ruff check --fix python_jobs tests bench alembic

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean-db: $(STAMP)
	$(BIN)/studyin db stop
	rm -rf .studyin
