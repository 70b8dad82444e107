# callvault: `make demo` runs the product with demo data, `make test` runs the tests.
# Both create the virtual environment in .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-postgres lint fmt bench screenshots messages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[postgres,redis,dev]'
	touch $(STAMP)

demo: $(STAMP)
	CALLVAULT_DEBUG=1 CALLVAULT_DATA_DIR=$(CURDIR)/var $(BIN)/callvault demo

test: $(STAMP)
	$(BIN)/pytest

test-postgres: $(STAMP)
	CALLVAULT_DATABASE_URL=$${CALLVAULT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
		$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy callvault tests benchmarks

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/seal.py
	$(BIN)/python benchmarks/lead_intake.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
