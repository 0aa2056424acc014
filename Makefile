# Two entry points for a newcomer: `make demo` and `make test`.
# Both create a virtual environment in $(VENV) on first use.  torch is pinned to the
# CPU build that lies on the project machines' disk (the package itself asks for torch>=2.2).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo

# glibc's default malloc thresholds cost 11-25% of a PINN step in page faults; both knobs must be set.
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296

.PHONY: demo test lint typecheck bench busy-core compact-results docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/autobalance run helmholtz --method autobalance --out $(DEMO_OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

LINTED := src tests benchmarks examples docs/results/compact_figures.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# mypy on src/ with the settings under [tool.mypy] in pyproject.toml; CI runs it (.ci/run)
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/step_time.py

# step time with 1 and 2 threads, quiet and next to a busy core (benchmarks/busy_core.py)
busy-core: $(VENV)/.installed
	$(BIN)/python benchmarks/busy_core.py

# before committing results: every figure under docs/results an 8-bit PNG below 300 KB
compact-results: $(VENV)/.installed
	$(BIN)/python docs/results/compact_figures.py

$(VENV)/.installed-docs: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $@

# the documentation site (mkdocs.yml, pages in docs/) into site/; strict: a warning fails the build
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache
