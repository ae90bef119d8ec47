# The same gates run here and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(CURDIR)/var

.PHONY: install bpf system-deps up test lint typecheck imports pytest bench docs docs-check clean

$(BIN)/.installed: pyproject.toml src/vigil/detect/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## The portal's browser libraries (Chart.js) from the npm registry, served by Vigil itself (no CDN, never committed).
PORTAL_ASSETS := src/vigil/server/portal/assets
$(PORTAL_ASSETS)/node_modules/.installed: $(PORTAL_ASSETS)/package.json $(PORTAL_ASSETS)/package-lock.json
	npm ci --prefix $(PORTAL_ASSETS) --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed bpf $(PORTAL_ASSETS)/node_modules/.installed

## The agent's eBPF objects (process and network sensors), compiled against this kernel's BTF (skipped with a message
## without clang/bpftool).
bpf:
	bash scripts/build-bpf.sh

system-deps:
	bash scripts/system-deps.sh

## Run Vigil: server on SQLite plus a local agent (needs root for the agent's sensors).
up: install
	@command -v nft >/dev/null || { [ "$$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null; } \
	  || echo "up: nft not found: the isolation action needs nftables (apt-get install nftables)" >&2
	$(BIN)/vigil up --data-dir $(DATA_DIR)

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

pytest: install
	$(BIN)/pytest -q --durations=40

## Every gate: lint, types, layer contracts, then all tests.
test: system-deps install lint typecheck imports docs-check pytest

docs:
	$(BIN)/vigil docs schema -o docs/telemetry-schema.md
	$(BIN)/python -m vigil.content.ruledoc --write docs/linux-detection.md

docs-check: install
	$(BIN)/vigil docs schema | diff -u docs/telemetry-schema.md - || (echo "docs/telemetry-schema.md is stale: run make docs" && exit 1)
	$(BIN)/python -m vigil.content.ruledoc --check docs/linux-detection.md

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/triage.py
	$(BIN)/python bench/tvm.py

## Build intermediates only: the shipped eBPF objects (src/vigil/agent/sensors/bpf/*.bpf.o, objects.sha256) stay.
clean:
	rm -rf $(VENV) var build/bpf src/vigil/agent/sensors/bpf/*.bpf.o.tmp src/vigil/detect/*.so .pytest_cache .mypy_cache .ruff_cache
