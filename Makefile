# One-command set-up on a fresh machine: every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch on these machines; override on others, e.g.
#   make test TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.optforge-installed

.PHONY: setup demo lint test test-slow bench bench-multistage bench-overhead bench-matrix bench-lowprec convergence-lowprec gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m optforge demo --plot benchmarks/results

lint: $(STAMP)
	$(PY) -m ruff check optforge tests benchmarks examples

# both cores: pytest-xdist runs the suite in two worker processes
test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_elementwise.py

bench-multistage: $(STAMP)
	$(PY) benchmarks/bench_multistage.py

bench-overhead: $(STAMP)
	$(PY) benchmarks/bench_step_overhead.py

bench-matrix: $(STAMP)
	$(PY) benchmarks/bench_matrix.py

bench-lowprec: $(STAMP)
	$(PY) benchmarks/bench_lowprec.py

convergence-lowprec: $(STAMP)
	$(PY) benchmarks/convergence_lowprec.py

# On a lent NVIDIA GPU machine with torch and triton but no package index (docs/gpu.md):
# installs optforge without dependencies, tests, tunes and benchmarks in ~8 minutes.
# GPU_CHECK_DRY=1 runs it on the CPU under the Triton interpreter.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info
