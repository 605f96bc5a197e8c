# The two commands of the README: `make run` and `make test`. Everything else is setup.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint format bench schema clean browser vendor screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the demo server on SQLite (data in .data/, the default of every command) with the demo
## tenant and CRM pack.
run: $(STAMP)
	$(BIN)/metacrm serve --demo

## Lint, type-check and run the whole test suite (PostgreSQL too when METACRM_TEST_POSTGRES_URL is set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy metacrm
	$(BIN)/python -m metacrm.metadata.schema | diff -q - metacrm/metadata/schemas/metadata.schema.json
	$(BIN)/pytest

## Install Debian's Chromium, and a CJK font so zh-CN pages render, for the browser tests
## (root with apt only; else they skip).
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk"; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null; \
	  else echo "chromium not installed: browser tests will be skipped"; fi; }

## Refresh the pinned browser libraries from the npm registry (vendor/package-lock.json);
## the copies are committed, so neither running nor testing needs Node.
WEB_VENDOR := metacrm/platform/web/static/vendor
vendor:
	cd vendor && npm ci --ignore-scripts --no-audit --no-fund
	cp vendor/node_modules/htmx.org/dist/htmx.min.js $(WEB_VENDOR)/htmx.min.js
	cp vendor/node_modules/htmx.org/LICENSE $(WEB_VENDOR)/htmx.LICENSE
	cp vendor/node_modules/axe-core/axe.min.js tests/web/vendor/axe.min.js
	cp vendor/node_modules/axe-core/LICENSE tests/web/vendor/axe.LICENSE

## Refresh docs/screenshots/ from the browser tests (SQLite half).
screenshots: $(STAMP)
	METACRM_WRITE_SCREENSHOTS=1 $(BIN)/pytest tests/web -q -k "not postgresql"

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
