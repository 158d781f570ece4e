# `make demo` and `make test` each set up .venv (idempotently) and then run the main job / the tests.
# TORCH picks the torch build: the default is the CPU wheel these machines carry locally;
# GPU users run e.g. `make demo TORCH=torch` to take the CUDA build from PyPI.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinyinterp-installed
export TINYINTERP_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test compat bench browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[app,dev,embed]"
	@touch $@

# Debian's chromium for the real-browser test (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || echo "warning: could not install chromium; the browser test will be skipped"; }

demo: setup
	$(BIN)/python -m tinyinterp.cli.demo

test: setup browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

# tinyinterp next to sae-lens (its TransformerLens 3.x) and transformers 4.x, in venvs of their own: scripts/compat.sh
compat:
	PYTHON=$(PYTHON) TORCH="$(TORCH)" scripts/compat.sh

bench: setup
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/neuron_index.py
	$(BIN)/python bench/rouge_max.py
	$(BIN)/python bench/dictionary_train.py   # sparsify side: set TINYINTERP_SPARSIFY_PYTHON (own venv)

clean:
	rm -rf $(VENV) .venv-compat .venv-tf4 compat-out runs/demo test-output
