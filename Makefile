# callvault: `make demo` runs the product with demo data, `make test` runs the tests.
# Both create the virtual environment in .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-postgres lint fmt bench screenshots messages clean

# The monitoring agent (agent/, its own distribution) is installed beside the server: its
# tests start a real callvault server, and the server's tests never import it.
$(STAMP): pyproject.toml agent/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[postgres,redis,dev]'
	$(BIN)/pip install --quiet -e agent
	touch $(STAMP)

demo: $(STAMP)
	CALLVAULT_DEBUG=1 CALLVAULT_DATA_DIR=$(CURDIR)/var $(BIN)/callvault demo

# PYTEST_ARGS passes options through, e.g. make test PYTEST_ARGS='-m "not browser"'.
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	CALLVAULT_DATABASE_URL=$${CALLVAULT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
		$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy callvault tests benchmarks docs
	$(BIN)/mypy --config-file agent/pyproject.toml agent/src agent/tests

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Each script prints its figures and ratios; docs/benchmarks.md records them.
# The audit peers (extra `bench`) are benchmark-only and installed here, not by $(STAMP).
bench: $(STAMP)
	$(BIN)/python -c "import simple_history, auditlog, pghistory" 2>/dev/null \
		|| $(BIN)/pip install --quiet -e '.[postgres,redis,dev,bench]'
	$(BIN)/python benchmarks/seal.py
	$(BIN)/python benchmarks/lead_intake.py
	$(BIN)/python benchmarks/queue_claims.py
	$(BIN)/python benchmarks/order_list.py
	$(BIN)/python benchmarks/audit_cost.py
	$(BIN)/python benchmarks/audit_write_parts.py
	$(BIN)/python benchmarks/request_security.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Russian catalogue: extract every marked string (templates and Python) into
# callvault/locale/ru/LC_MESSAGES/django.po, then compile django.mo. Needs GNU gettext.
# New or changed strings come out untranslated (msgstr "") or "#, fuzzy": translate them and
# drop the fuzzy flags BEFORE committing, then run `make messages` again to recompile.
# Commit both the .po and the .mo (CI has no gettext); accounts/tests/test_translations.py
# fails on untranslated, fuzzy or uncompiled entries.
messages: $(STAMP)
	cd callvault && DJANGO_SETTINGS_MODULE=tests.settings ../$(BIN)/python ../manage.py \
		makemessages --locale ru --no-location --no-obsolete
	cd callvault && DJANGO_SETTINGS_MODULE=tests.settings ../$(BIN)/python ../manage.py \
		compilemessages --locale ru

# PNGs of the main screens in docs/screenshots/ (Russian, 1280x800): a fresh demo in a
# temporary folder, served on a free local port, driven through Debian's Chromium.
screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py
