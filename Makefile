# Tenfold: `make demo` reproduces all ten papers at small scale; `make test` runs the test suite.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast bench install oracles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tenfold reproduce --quick --out reproduce

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

oracles: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,oracles]'

bench: $(STAMP)
	$(BIN)/tenfold bench all --out bench/all.json

clean:
	rm -rf $(VENV) reproduce bench runs
