# motus_ros developer entry points. `make demo` and `make test` set everything up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench clean help

help:
	@echo "make demo   - set up if needed, then run the whole graph in simulation"
	@echo "make test   - set up if needed, then run the whole test suite"
	@echo "make setup  - only the set-up (venv, pinned packages, motus_msgs)"
	@echo "make bench  - run the benchmarks (JSON on stdout)"
	@echo "make clean  - remove build outputs (keeps .venv)"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/motus-ros demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/motus-ros bench policy --preset tiny
	$(VENV)/bin/motus-ros bench execution
	$(VENV)/bin/motus-ros bench perception
	$(VENV)/bin/motus-ros bench recording

clean:
	rm -rf build install log .pytest_cache
