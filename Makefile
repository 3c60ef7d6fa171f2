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

# TorchRec's CPU build, for the sharding test (tests/models/test_torchrec.py, which fails instead of
# skipping in CI). torchrec's metadata asks for the CUDA fbgemm-gpu, and tensordict / torchmetrics
# would resolve a newer torch, so this pinned set (the builds that load against torch 2.13.0) goes in
# with --no-deps. Empty it on a CUDA machine: make test TORCHREC_CPU=
TORCHREC_CPU ?= fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0 tensordict==0.15.3 torchmetrics==1.0.3 \
	pyre-extensions==0.0.32 typing-inspect==0.9.0 mypy_extensions==1.2.0 lightning-utilities==0.15.3 \
	pyvers==0.2.3 cloudpickle==3.1.3

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

$(VENV)/.installed-torchrec: $(VENV)/.installed-dev
	$(if $(strip $(TORCHREC_CPU)),$(BIN)/pip install -q --no-deps $(TORCHREC_CPU))
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/towerrec quickstart

test: install-dev $(VENV)/.installed-torchrec
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/baselines_ml100k.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
