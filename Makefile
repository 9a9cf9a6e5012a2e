# Everything a fresh clone needs: `make test` and `make demo` create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo lint bench dist clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: $(BIN)/.installed
	tools/system-packages.sh test
	$(BIN)/python -m pytest -q tests

demo: $(BIN)/.installed
	tools/system-packages.sh demo
	$(BIN)/python -m sim.demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy moodleload

dist:
	$(PYTHON) -m moodleload.build dist

bench: $(BIN)/.installed
	$(BIN)/python bench/passwords.py
	bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist
