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

# The browser test drives Debian's chromium (Playwright's own browser download is not used).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "make: could not install chromium with apt-get; the browser test will be skipped"; \
	else echo "make: the browser test needs chromium: run 'sudo apt-get install -y chromium' (skipped without it)"; fi

test: install chromium
	$(BIN)/ruff check src tests benchmarks training scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -x --durations=15

# Regenerate docs/img/app.png: the web app (world models) in chromium after one V2A request.
screenshot: install chromium
	$(BIN)/python scripts/app_screenshot.py --out docs/img/app.png

.PHONY: install demo test chromium screenshot
