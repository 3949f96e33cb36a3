# hpoc — two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-fast stress bench slurm-up slurm-down clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# DeepSpeed builds against the torch above: no isolated build env.
	$(PY) -m pip install -q --no-build-isolation deepspeed==0.19.8
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: venv
	$(VENV)/bin/hpoc check examples/digits/study.hpo
	$(VENV)/bin/hpoc check examples/fashion_mnist/study.hpo
	$(VENV)/bin/hpoc compile examples/fashion_mnist/study.hpo -o build/fashion
	$(VENV)/bin/hpoc run examples/digits/study.hpo --local

# Two passes: the tests that start no Ray and no SLURM job spread over TEST_WORKERS
# processes (a file's tests stay together: they share module fixtures); the Ray and SLURM
# tests race timers against real clusters, so they run one at a time, on a quiet machine.
TEST_WORKERS ?= 2
test: venv
	@status=0; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not ray and not slurm" --durations=15 tests || status=$$?; \
	$(PY) -m pytest -q -m "ray or slurm" --durations=30 tests || status=$$?; \
	exit $$status

test-fast: venv
	$(PY) -m pytest -q -m "not slurm and not slow" tests

stress: venv
	HPOC_STRESS=1 HPOC_FUZZ_CASES=10000 $(PY) -m pytest -q -rA -m "stress" tests

bench: venv
	$(PY) benchmarks/compile.py

slurm-up:
	bash scripts/local-slurm.sh up

slurm-down:
	bash scripts/local-slurm.sh down

clean:
	rm -rf build .pytest_cache .hypothesis
