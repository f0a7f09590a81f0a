# Two commands: `make run` (set up, run the demo on the built-in simulator) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest system-deps diagrams check-diagrams bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/airfsm demo

# mosquitto (end-to-end broker tests) and graphviz (`dot`, SVG diagrams) come from Debian.
# As root (CI, fresh machines) they are installed here; otherwise the tests that need them say so.
system-deps:
	@if [ ! -x /usr/sbin/mosquitto ] || ! command -v dot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: mosquitto graphviz"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto graphviz >/dev/null; \
	  else \
	    echo "note: mosquitto/graphviz missing and not root: broker and SVG tests will skip"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check airfsm tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict airfsm

pytest: $(STAMP) system-deps
	$(BIN)/pytest -q

test: lint typecheck check-diagrams pytest

diagrams: $(STAMP) system-deps
	$(BIN)/airfsm diagram --out diagrams/

# The committed .mmd/.dot/.md must be what the table gives (the SVG is a rendering of the .dot).
check-diagrams: $(STAMP)
	$(BIN)/airfsm diagram --check diagrams/

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
