# bayes_ising: two commands on a fresh machine.
#   make demo   -> creates .venv if missing, installs, runs the whole analysis on the embedded data
#   make test   -> creates .venv if missing, installs, runs the default (fast) test suite
#   make test-slow -> the slow statistical tests (calibration, coverage, long sampling)
#   make test-long -> validation runs of tens of minutes on 2 cores (not in CI)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# what the demo needs: the package and Dask (the study's LocalCluster on > 2 cores), not the
# test, notebook and NWB extras; a full install satisfies it too
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: demo test test-slow test-long lint bench install clean

$(STAMP): pyproject.toml
	@bash scripts/setup_env.sh $(VENV)
	@touch $(STAMP) $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	@bash scripts/setup_env.sh $(VENV) dask
	@touch $(RUNTIME_STAMP)

install: $(STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/bayes-ising demo --out demo_output --force

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-slow: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "slow and not long"

test-long: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -m long

lint: $(STAMP)
	$(VENV)/bin/ruff check bayes_ising tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_output
