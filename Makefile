# The README's two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned, so pip never resolves a multi-GB CUDA build by accident.
# For a GPU build: make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
# Point the demo at the shared datasets when they sit beside the checkout and TOWERREC_DATA is unset.
SHARED_DATA := $(abspath ../shared/data)
export TOWERREC_DATA ?= $(shell [ -d "$(SHARED_DATA)" ] && echo "$(SHARED_DATA)")

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[text]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[text,serve,report,dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/towerrec quickstart

test: install-dev
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/baselines_ml100k.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
