# commerce-bridge: `make demo` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck bench bench-money-back bench-reconcile install clean docs audit

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel  # current build tools (the venv's own have CVEs)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/commerce-bridge demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/cog -I . --check docs/reference/cli.md docs/reference/configuration.md docs/reference/errors.md

docs: $(STAMP)
	$(BIN)/cog -I . -r docs/reference/cli.md docs/reference/configuration.md docs/reference/errors.md
	$(BIN)/commerce-bridge workflows catalogue > docs/reference/steps.md

typecheck: $(STAMP)
	$(BIN)/mypy

# every test, two modules at a time (TEST_WORKERS=0: one process); a module's tests stay in one process, so the
# sandbox stack a module shares is started once
TEST_WORKERS ?= 2
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# pip-audit on .venv; exit 3 (and says so) when no vulnerability database is reachable: see scripts/audit.py
audit: $(STAMP)
	$(BIN)/python scripts/audit.py

bench: $(STAMP)
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

# the refund and dispute flows' CPU per business event against the naive arm's (docs/performance.md)
bench-money-back: $(STAMP)
	$(BIN)/python bench/money_back.py $(BENCH_ARGS)

# payout reconciliation on 1,000,000 balance transactions: polars, DuckDB and a plain loop (docs/performance.md)
bench-reconcile: $(STAMP)
	$(BIN)/python bench/reconcile.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
