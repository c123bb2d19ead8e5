# Tenfold: `make demo` reproduces all ten papers at small scale; `make test` runs the test suite.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(HASH)
ORACLE := $(VENV)/.oracles-$(HASH)

.PHONY: demo test test-fast bench install oracles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# reference libraries for the oracle tests; SpikingJelly's declared dependencies would replace torch,
# so it is installed without them (it needs only loguru beyond what we have)
$(ORACLE): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,oracles]'
	$(BIN)/python -m pip install --quiet --no-deps spikingjelly==2.0.0
	rm -f $(VENV)/.oracles-*
	touch $(ORACLE)

install: $(STAMP)

oracles: $(ORACLE)

demo: $(STAMP)
	$(BIN)/tenfold reproduce --quick --out reproduce

test: $(ORACLE)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/tenfold bench all --out bench/all.json

clean:
	rm -rf $(VENV) reproduce bench runs
