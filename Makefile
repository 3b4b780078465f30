# loopwright: `make demo` and `make test` do every set-up step on a fresh machine.
# They install uv when missing, create .venv from uv.lock, install Debian packages the
# tests need (only when run as root), then run.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
VENV := .venv
RUN := $(UV) run --frozen

.PHONY: setup uv system-deps demo test lint typecheck pytest bench clean

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet uv

system-deps:
	@bash scripts/system-deps.sh

setup: uv system-deps
	@$(UV) sync --frozen --all-groups --all-extras --quiet

demo: setup
	@$(RUN) python examples/healthcare/demo.py

lint: setup
	$(RUN) ruff check src tests benchmarks examples deploy
	$(RUN) ruff format --check src tests benchmarks examples deploy
	$(RUN) mypy

# Arize Phoenix: a real OTLP backend for the tracing integration test. It has its own
# environment (its pins clash with ours, e.g. mcp<2) and is cached by uv after the first run.
PHOENIX := .tools/phoenix/bin/phoenix
$(PHOENIX): | uv
	@$(UV) venv --quiet --python 3.11 .tools/phoenix
	@$(UV) pip install --quiet --python .tools/phoenix/bin/python "arize-phoenix==20.26.1"

pytest: setup $(PHOENIX)
	LOOPWRIGHT_TEST_PHOENIX=$(CURDIR)/$(PHOENIX) $(RUN) pytest -q

test: lint pytest

bench: setup
	$(RUN) python benchmarks/overhead.py
	$(RUN) python benchmarks/startup.py
	$(RUN) python benchmarks/tools.py
	$(RUN) python benchmarks/sandbox.py
	$(RUN) python benchmarks/local_model.py
	$(RUN) python benchmarks/memory.py
	$(RUN) python benchmarks/tracing.py
	$(RUN) python benchmarks/sql.py
	$(RUN) python benchmarks/sql_floor.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
