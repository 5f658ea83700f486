# The two commands of the README. Each creates the virtualenv and installs what it needs.
#   make demo   the talk's example end to end on the embedded SQLite store (`backbeat demo`;
#               DEMO_ARGS="--users 50 --duration 2m" to change it)
#   make test   lint, type-check and run every test (what CI runs)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest browser screenshots clean

$(VENV)/.created:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "backbeat needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# the demo needs backbeat and pydantic (its event contract) only
$(VENV)/.demo-installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[contracts]'
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/backbeat demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

browser:
	bash scripts/chromium.sh

# two pytest processes (pytest-xdist): most tests wait on servers and worker processes, so
# two at once fit two cores; every test has its own database, key prefix and broker names
pytest: $(VENV)/.installed browser
	$(PY) scripts/run_tests.py -n 2

screenshots: $(VENV)/.installed browser  # docs/screenshots/*.png, shown by the README
	BACKBEAT_SCREENSHOTS_DIR=docs/screenshots $(PY) scripts/run_tests.py tests/web/test_browser.py

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
