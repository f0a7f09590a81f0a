# Two commands: `make run` (set up, run the demo on the built-in simulator) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest system-deps bench-deps diagrams check-diagrams ctable \
        check-ctable bench reliability soak fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/airfsm demo

# mosquitto (end-to-end broker tests), systemd (`systemd-analyze` checks contrib/airfsm.service),
# zsh (the documented shell examples run in bash and zsh alike), graphviz (`dot`, SVG diagrams)
# and, for the C port's
# firmware tests, the Cortex-M cross toolchain with newlib and QEMU come from Debian.
# As root (CI, fresh machines) what is missing is installed here; otherwise the tests that need
# it say so.
system-deps:
	@missing=""; \
	[ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v zsh >/dev/null 2>&1 || missing="$$missing zsh"; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	command -v arm-none-eabi-gcc >/dev/null 2>&1 || missing="$$missing gcc-arm-none-eabi"; \
	[ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || missing="$$missing libnewlib-arm-none-eabi"; \
	command -v qemu-system-arm >/dev/null 2>&1 || missing="$$missing qemu-system-arm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: not root, missing Debian packages:$$missing (their tests will skip)"; \
	  fi; \
	fi

# ruff, then the layer contracts of pyproject.toml ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check airfsm tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict airfsm

pytest: $(STAMP) system-deps
	$(BIN)/pytest -q

test: lint typecheck check-diagrams check-ctable pytest

diagrams: $(STAMP) system-deps
	$(BIN)/airfsm diagram --out diagrams/

# The committed .mmd/.dot/.md must be what the table gives (the SVG is a rendering of the .dot).
check-diagrams: $(STAMP)
	$(BIN)/airfsm diagram --check diagrams/

# The C port's table (port/c/generated/airfsm_table.h and .c), generated and checked alike.
ctable: $(STAMP)
	$(BIN)/airfsm ctable --out port/c/generated

check-ctable: $(STAMP)
	$(BIN)/airfsm ctable --check port/c/generated

# `make bench`: every figure of docs/performance.md, side by side (bench/run.py). It adds the
# `bench` extra (matplotlib, for the plot) to .venv, the peers the round trip is measured
# against to a bench-only venv, and strace (fsync counts) when run as root.
BENCH_STAMP := $(VENV)/.bench-installed
PEERS       := bench/.venv-peers

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

# A peer that cannot be installed is not a failure of the bench: its row says why (install.log).
$(PEERS)/.installed: bench/peers.txt
	@rm -rf $(PEERS) && mkdir -p $(PEERS)
	@if $(PYTHON) -m venv $(PEERS) > $(PEERS)/install.log 2>&1 \
	  && $(PEERS)/bin/python -m pip install -r bench/peers.txt >> $(PEERS)/install.log 2>&1; then \
	  touch $@; \
	else \
	  echo "note: bench peers not installed (see $(PEERS)/install.log); their rows will say so"; \
	fi

bench-deps:
	@if ! command -v strace >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian package: strace"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; \
	  else \
	    echo "note: strace missing and not root: the fsync count will say so"; \
	  fi; \
	fi

# The C twin's rows need port/c/build/airfsm_bench (a host C compiler; without one they say so).
bench: $(BENCH_STAMP) $(PEERS)/.installed bench-deps
	@$(MAKE) -s -C port/c build/airfsm_bench || echo "note: the C twin's bench binary did not build; its rows will say so"
	$(BIN)/python -m bench.run

# docs/reliability.md (tests/test_reliability.py checks it fresh in `make test`).
reliability: $(STAMP)
	$(BIN)/python -m bench.reliability --out docs/reliability.md

# Longer runs than `make test` affords: many more random schedules (hypothesis, random seeds),
# then the soak and the crash loops again.
soak: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -q tests/test_reliability_properties.py \
	  tests/test_fuzz.py tests/test_reliability.py tests/test_crash_loops.py

# Coverage-guided fuzzing of the AT channel through a controller (atheris, the `fuzz` extra);
# FUZZ_ARGS go to libFuzzer, e.g. FUZZ_ARGS=-max_total_time=3600.
FUZZ_STAMP := $(VENV)/.fuzz-installed
FUZZ_ARGS ?= -max_total_time=300

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,fuzz]'
	touch $@

fuzz: $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz.at_channel $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) $(PEERS) .mypy_cache .ruff_cache .pytest_cache
