# tsunagu — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export TSUNAGU_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test test-sqlite test-postgres lint bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: install, migrate, load the demo on first run, serve console + API + worker.
run: install
	$(BIN)/tsunagu migrate
	$(BIN)/tsunagu demo
	$(BIN)/tsunagu up --port $(PORT)

## make test: lint, type-check, layer contracts, then the suite on SQLite and on PostgreSQL.
test: install-test lint test-sqlite test-postgres

lint: install-test
	$(BIN)/ruff check src bench scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports

test-sqlite: install-test
	TSUNAGU_DATA_DIR=$$(mktemp -d) $(BIN)/pytest -p no:cacheprovider -m "not postgres"

test-postgres: install-test
	$(BIN)/python scripts/with_postgres.py $(BIN)/pytest -p no:cacheprovider -m "not makerun"

bench: install-test
	$(BIN)/python -m bench
	$(BIN)/python -m bench archive
	$(BIN)/python -m bench email --write
	$(BIN)/python -m bench sends --write
	$(BIN)/python -m bench broadcast --write
	$(BIN)/python -m bench segments --write
	$(BIN)/python -m bench journeys --write

clean:
	rm -rf $(VENV) var .pytest_cache
