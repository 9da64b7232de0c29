# The two commands: `make demo` runs a whole street office on this machine; `make test` proves it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean drills

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Linli needs Python 3.11 ($(PYTHON) not found): install it, or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/linli demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m tests.services   # starts or finds what the suite needs, says what it fell back to
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The failure drills (benchmarks/drills/README.md): long, one after the other; each ends with a JSON line.
drills: $(STAMP)
	@set -e; for drill in ingest_kill postgres_restart prefect_restart datahub_outage; do \
		echo "== $$drill"; $(BIN)/python -m benchmarks.drills.$$drill; done

lint: $(STAMP)
	$(BIN)/ruff check linli flows tasks blocks dashboards tests benchmarks

clean:
	rm -rf $(VENV) .linli .pytest_cache
