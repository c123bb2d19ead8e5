# Tenfold: `make demo` reproduces all ten papers at small scale; `make test` runs the test suite.
# Both create .venv when it is missing and install the project into it, with every extra, at the exact
# versions we test with (constraints.txt; pyproject.toml holds the ranges a user's own stack may satisfy).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml constraints.txt Makefile | cksum | cut -d' ' -f1)
PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt
STAMP  := $(VENV)/.installed-$(HASH)
ORACLE := $(VENV)/.oracles-$(HASH)

.PHONY: demo test test-fast lint bench install oracles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[all,test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# reference libraries for the oracle tests; SpikingJelly's declared dependencies would replace torch,
# so it is installed without them (it needs only loguru beyond what we have)
$(ORACLE): $(STAMP)
	$(PIP) -e '.[all,test,oracles]'
	$(PIP) --no-deps spikingjelly==2.0.0
	rm -f $(VENV)/.oracles-*
	touch $(ORACLE)

install: $(STAMP)

oracles: $(ORACLE)

demo: $(STAMP)
	$(BIN)/tenfold reproduce --quick --out reproduce

lint: $(STAMP)
	$(BIN)/ruff check src tests

test: $(ORACLE)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/tenfold bench all --out bench/all.json

clean:
	rm -rf $(VENV) reproduce bench runs
