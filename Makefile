# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/avbridge: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch first: the CPU build on disk; anything later that needs torch is then satisfied.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/avbridge

install: $(BIN)/avbridge

demo: install
	$(BIN)/avbridge demo --out out/demo

test: install
	$(BIN)/ruff check src tests benchmarks training scripts
	$(BIN)/python -m pytest -q -x --durations=15

.PHONY: install demo test
