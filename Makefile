# spendgate developer commands. Each target creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint fmt docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## demo: run proxy + collector + simulated provider on embedded defaults and send sample traffic
demo: $(STAMP)
	$(BIN)/spendgate up --demo

## test: the whole test suite (unit, integration, end to end with real clients)
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: the benchmarks in benchmarks/ (takes a few minutes; numbers go to docs/performance.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

## lint: ruff
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## fmt: format the code
fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## docs: regenerate the generated reference pages
docs: $(STAMP)
	$(BIN)/python -m spendgate_semconv.docs > docs/semconv.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
