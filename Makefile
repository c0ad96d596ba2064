# Two commands on a fresh machine: `make train` runs the default experiment,
# `make test` runs the test suite. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/lossopt-example-plugins

.PHONY: install train test test-fast lint format ui constraints clean browser

$(STAMP): pyproject.toml constraints.txt $(EXAMPLE)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "lossopt needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt setuptools
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation -e ".[dev,cluster]"
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation --no-deps -e $(EXAMPLE)
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/lossopt train $(ARGS)

# Every test, the slow end-to-end ones included. Exit status 5 (no test ran) fails too.
# The 15 slowest tests are listed at the end: the suite must stay well under 20 minutes.
test: $(STAMP) browser
	$(BIN)/python -m pytest --durations=15 $(ARGS)

# The browser test (tests/mlflow_ui/test_ui_browser.py) drives Debian's headless Chromium.
browser:
	@if command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "no chromedriver, and no apt-get as root to install it: the browser test will skip"; fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP)
	$(BIN)/lossopt ui

constraints: $(STAMP)
	{ echo "# Every dependency pinned to the set tested together (pip freeze of the test venv)."; \
	  echo "# Regenerate with: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(lossopt|-e )'; \
	  echo "setuptools==$$($(BIN)/python -c 'import setuptools; print(setuptools.__version__)')"; \
	} > constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
