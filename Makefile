# The two commands of the README: `make run` and `make test`. Everything else is setup.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint format bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the demo server on SQLite (data in .data/) with the demo tenant and CRM pack.
run: $(STAMP)
	$(BIN)/metacrm serve --demo --data-dir .data

## Lint and run the whole test suite (PostgreSQL too when METACRM_TEST_POSTGRES_URL is set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m metacrm.metadata.schema | diff -q - metacrm/metadata/schemas/metadata.schema.json
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema: $(STAMP)
	$(BIN)/python -m metacrm.metadata.schema > metacrm/metadata/schemas/metadata.schema.json

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .data build dist *.egg-info
