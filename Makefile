# Everything a fresh clone needs: `make test` and `make demo` create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test test-quick demo lint bench dist clean

# The tests that start no server: a first check in about a minute, not a substitute for `make test`.
QUICK := tests/test_histogram.py tests/test_plan.py tests/test_config.py tests/test_forms.py tests/test_moodle.py \
	tests/test_verdict.py tests/test_work.py tests/test_changepoints.py tests/test_options.py tests/test_machine.py \
	tests/test_moodletree.py

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Test workers: one more than the cores, since most tests wait on servers and loads rather
# than compute; every test holds on a machine this busy (docs/architecture.md, Tests and CI).
WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 1)')

test: $(BIN)/.installed
	tools/system-packages.sh test
	$(BIN)/python -m pytest -q -o console_output_style=count -n $(WORKERS) tests

test-quick: $(BIN)/.installed
	$(BIN)/python -m pytest -q $(QUICK)

demo: $(BIN)/.installed
	tools/system-packages.sh demo
	$(BIN)/python -m sim.demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

dist:
	$(PYTHON) -m moodleload.build dist

bench: $(BIN)/.installed
	$(BIN)/python bench/passwords.py
	bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist
