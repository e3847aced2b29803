# The two commands: `make run` and `make test`. Both install what is missing first, and installing is
# idempotent: stamps make a second run with unchanged lock files take a second or two.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SYS_STAMP := $(VENV)/.system-deps
PACKAGES := oracle ingest models

.PHONY: help install run test lint typecheck forge pytest lock contracts bench clean

help:
	@echo "make run    install what is missing, then start the oracle on embedded defaults"
	@echo "make test   install what is missing, then ruff, mypy --strict, hadolint, the forge suites and the whole test suite"
	@echo "make lock   re-pin Python dependencies (uv pip compile --generate-hashes)"
	@echo "make contracts   recompile contracts/src into contracts/build"

install: $(PY_STAMP) $(NODE_STAMP) $(SYS_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { bash deploy/install-system-deps.sh python-venv && $(PYTHON) -m venv $(VENV); }

$(PY_STAMP): requirements-bootstrap.lock requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-bootstrap.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(NODE_STAMP): package-lock.json package.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(SYS_STAMP): deploy/install-system-deps.sh
	bash deploy/install-system-deps.sh
	touch $@

run: install
	$(BIN)/oracle run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: install
	$(BIN)/mypy --strict $(PACKAGES)

# Fuzz and invariant suites (contracts/test, foundry.toml): forge from npm, solc through tools/solc.
forge: $(NODE_STAMP)
	node_modules/.bin/forge test

pytest: install
	$(BIN)/pytest -q -p no:cacheprovider --durations=30

test: lint typecheck forge pytest

lock: | $(BIN)/python
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 requirements-bootstrap.in -o requirements-bootstrap.lock
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 requirements.in -o requirements.lock
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 requirements-dev.in -o requirements-dev.lock

contracts: $(NODE_STAMP)
	node contracts/compile.mjs

bench: install
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python "$$b"; done

clean:
	rm -rf $(VENV) node_modules data .mypy_cache .ruff_cache .pytest_cache .forge
