# motus_ros developer entry points. `make demo` and `make test` set everything up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench gpu-wheels clean help

help:
	@echo "make demo   - set up if needed, then run the whole graph in simulation"
	@echo "make test   - set up if needed, then run the whole test suite"
	@echo "make setup  - only the set-up (venv, pinned packages, motus_msgs)"
	@echo "make bench  - run the benchmarks (JSON on stdout)"
	@echo "make gpu-wheels - download the wheels scripts/gpu_bench.sh installs on a GPU machine (wheels/gpu)"
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

# What scripts/gpu_bench.sh needs and a bare GPU machine (Python 3.12 with torch, triton, onnx,
# onnxruntime; no network) lacks: the encoders' libraries and their small dependencies, at the pins of
# requirements.txt. Binary wheels only, no dependency resolution (each one is named here).
# Left out: hf-xet (downloads only; the device tool carries at most 64 MiB, checkout included) and typer
# (transformers' CLI only, never imported here; the image has one, and the pinned one needs pydantic,
# which the image lacks).
GPU_WHEELS_DIR ?= wheels/gpu
GPU_WHEELS := diffusers transformers tokenizers safetensors huggingface_hub regex httpx2 httpcore2 h11 anyio \
	idna truststore typing_extensions click importlib_metadata lazy-importer zipp
GPU_PIP := $(if $(wildcard $(PY)),$(PY),python3) -m pip

gpu-wheels:
	@mkdir -p $(GPU_WHEELS_DIR) && rm -f $(GPU_WHEELS_DIR)/*.whl
	@specs=""; for p in $(GPU_WHEELS); do \
		pat=$$(echo "$$p" | sed 's/[-_]/[-_]/g'); \
		spec=$$(grep -i -E "^$$pat==" requirements.txt) || { echo "gpu-wheels: '$$p' is not pinned in requirements.txt" >&2; exit 1; }; \
		specs="$$specs $$spec"; \
	done; \
	$(GPU_PIP) download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d $(GPU_WHEELS_DIR) $$specs
	@echo "gpu-wheels: $$(ls $(GPU_WHEELS_DIR)/*.whl | wc -l) wheels, $$(du -sh $(GPU_WHEELS_DIR) | cut -f1) in $(GPU_WHEELS_DIR)"

clean:
	rm -rf build install log .pytest_cache
