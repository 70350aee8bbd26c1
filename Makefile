# Two commands on a fresh machine:  make demo   |   make test
PY      ?= python3.11
VENV    ?= .venv
BIN      = $(VENV)/bin
OUT     ?= runs/demo
CONFIG  ?= configs/arith-tiny.yaml
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = 0
export RAY_AUTH_MODE = disabled
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup demo test test-fast lint bootstrap clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, from its CPU wheel: anything else would pull the CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,plots]"

setup: $(BIN)/python

bootstrap: setup
	$(BIN)/python jobs/bootstrap.py --config $(CONFIG) --out runs/bootstrap

demo: setup
	$(BIN)/python jobs/bootstrap.py --config $(CONFIG) --out runs/bootstrap
	$(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check restmcts jobs tests

clean:
	rm -rf runs .pytest_cache
