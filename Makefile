# Two entry points for a fresh machine: `make demo` and `make test` (`make quick`: the fast tests only).
# Each does all of the set-up itself; stamps under .venv/ make a second run
# skip whatever has not changed.

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RASTERIZER := submodules/rasterizer
RASTERIZER_SOURCES := $(shell find $(RASTERIZER)/csrc $(RASTERIZER)/gaussian_rasterizer -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.py' \)) $(RASTERIZER)/setup.py
NATIVE_BUILD := build/native
# The real toolkit root: a wrapper script named nvcc elsewhere on PATH must not decide it.
CUDA_HOME ?= /usr/local/cuda
NVCC := $(CUDA_HOME)/bin/nvcc
export CUDA_HOME

.PHONY: demo test quick setup lint browser native-test python-test bench bench-data gpu-wheels gpu-check clean

demo: setup
	$(PY) demo.py --out output/demo

test: setup lint native-test python-test

setup: $(VENV)/.rasterizer-stamp

$(PY):
	$(PYTHON_BOOTSTRAP) -m venv --system-site-packages $(VENV)

# torch only where none is importable: a GPU machine brings its own CUDA build.
$(VENV)/.torch-stamp: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	touch $@

$(VENV)/.deps-stamp: requirements.txt $(VENV)/.torch-stamp
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.rasterizer-stamp: $(RASTERIZER_SOURCES) $(VENV)/.deps-stamp
	$(PIP) install --no-build-isolation $(RASTERIZER)
	touch $@

# ruff (pyflakes, pycodestyle, import order) over every file, then mypy over every module but the tests; both
# read their settings from pyproject.toml, and mypy keeps its cache in .mypy_cache/.
lint: $(VENV)/.deps-stamp
	$(PY) -m ruff check .
	$(PY) -m mypy

# Compiles every CUDA source with nvcc (sm_80, sm_90) and runs the C++ tests
# of the shared math header. Without a CUDA toolkit only the C++ tests run.
native-test:
	@if [ -x "$(NVCC)" ]; then cuda=ON; else cuda=OFF; echo "no CUDA toolkit at $(CUDA_HOME): CUDA sources not compiled"; fi; \
	cmake -S . -B $(NATIVE_BUILD) -DSPLAT_BUILD_CUDA=$$cuda -DCMAKE_CUDA_COMPILER=$(NVCC) -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	cmake --build $(NATIVE_BUILD) -j2 && \
	ctest --test-dir $(NATIVE_BUILD) --output-on-failure

# pytest.ini names the test folders, the markers and the per-test time limit.
python-test: setup browser
	$(PY) -m pytest -q

# The tests that train for at most a few seconds and need neither a GPU nor a browser: about a minute.
quick: setup
	$(PY) -m pytest -q -m "not slow and not browser and not gpu"

# The viewer is tested in a real headless browser: Debian's Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

bench: setup
	$(PY) bench/rasterizer.py --json output/bench/rasterizer.json

# The synthetic benchmark suite: 4 layouts x {defocus, motion}, regenerated only where missing or changed.
bench-data: setup
	$(PY) -m scene.synthetic --suite bench --out data/bench

# Everything that needs a CUDA device, in one run of at most 8 minutes on one H100 or H200, builds included; it
# prints one table and writes output/gpu_check/. It works offline and never installs torch: GPU_PYTHON must hold
# a CUDA build of torch, and gets gsplat and whatever else it lacks from $(GPU_WHEELS), made beforehand by
# `make gpu-wheels` on a machine that reaches PyPI.
GPU_PYTHON ?= python3
GPU_WHEELS := .gpu-wheels

gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py --wheels $(GPU_WHEELS)

gpu-wheels: $(GPU_WHEELS)/.stamp

# Pure-Python wheels (and ninja's, for any Python) of the pinned versions, each without its dependencies: the
# list holds them all.
$(GPU_WHEELS)/.stamp: bench/gpu_wheels.txt | $(PY)
	rm -rf $(GPU_WHEELS)
	$(PIP) download --no-deps --only-binary=:all: --python-version 3.10 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 -d $(GPU_WHEELS) -r bench/gpu_wheels.txt
	touch $@

clean:
	rm -rf $(NATIVE_BUILD) output
