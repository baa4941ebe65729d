# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test bench clean

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)

run: $(VENV)
	$(BIN)/afterhours node

demo: $(VENV)
	$(BIN)/afterhours demo

test: $(VENV)
	$(BIN)/python -m pytest

bench: $(VENV)
	$(BIN)/python -m benchmarks.matching

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
