# spendgate developer commands. Each target creates .venv when it is missing.
#
# Every install the project makes for itself is exact: uv installs what uv.lock says (versions and
# hashes of every dependency and extra), never "the newest release that fits pyproject's ranges".
# uv itself is pinned below and lives in its own small venv (.tools/), so `uv sync` never removes it.
PY ?= python3
UV_VERSION := 0.13.10
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LATEST := .venv-latest
# uv uses the machine's Python (never downloads one) and the project's venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test test-latest bench lint fmt docs lock lock-check clean

$(UV):
	@echo "spendgate: installing uv $(UV_VERSION), the locked installer, into $(TOOLS)/ (a few seconds) ..."
	@$(PY) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	@echo "spendgate: installing the locked dependencies (uv.lock, extras: all + dev) into $(VENV)/;"
	@echo "           about 85 packages, 10-60 s on a first install, a second or two after that ..."
	@$(UV) sync --frozen --extra dev --python $(PY)
	@touch $(STAMP)

## demo: run proxy + collector + simulated provider on embedded defaults and send sample traffic
demo: $(STAMP)
	$(BIN)/spendgate up --demo

## test: the whole test suite (unit, integration, end to end with real clients)
test: $(STAMP)
	$(BIN)/python -m pytest

## test-latest: the suite against the newest releases pyproject allows, in .venv-latest (not the lock)
test-latest: | $(UV)
	@echo "spendgate: resolving the newest allowed releases into $(LATEST)/ (ignores uv.lock) ..."
	@rm -rf $(LATEST)
	@$(UV) venv -q $(LATEST) --python $(PY)
	@VIRTUAL_ENV=$(LATEST) $(UV) pip install -q --upgrade -e '.[dev]'
	@VIRTUAL_ENV=$(LATEST) $(UV) pip freeze > $(LATEST)/versions.txt
	@echo "spendgate: installed versions in $(LATEST)/versions.txt; differences from uv.lock:"
	@$(LATEST)/bin/python -m tests.support.lockfile diff uv.lock $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest

## lock: re-resolve uv.lock to the newest releases pyproject allows (review the diff: docs/development.md)
lock: | $(UV)
	$(UV) lock --upgrade --python $(PY)

## lock-check: fail when uv.lock does not match pyproject.toml
lock-check: | $(UV)
	$(UV) lock --check --python $(PY)

## bench: the benchmarks in benchmarks/ (takes a few minutes; numbers go to docs/performance.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Packages mypy checks in `make lint` (config: pyproject's [tool.mypy]; strict ones are listed there).
# A package joins when it is clean; docs/development.md says which are still to come.
TYPED := spendgate_semconv spendgate spendgate_app spendgate_simulator spendgate_collector spendgate_proxy.formats

## lint: ruff, and mypy on the typed packages
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --follow-imports=silent $(addprefix -p ,$(TYPED))

## fmt: format the code
fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## docs: regenerate the generated reference pages
docs: $(STAMP)
	$(BIN)/python -m spendgate_semconv.docs > docs/semconv.md

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) build *.egg-info .pytest_cache .ruff_cache
