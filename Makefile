# make test | e2e | bench | lint | demo      (PYTHON=/path/to/python make test)
PYTHON ?= python3
# vermin is installed for the default python3 (.ci/run does it); it checks 3.9 compatibility
VERMIN ?= python3 -c 'import sys, vermin; sys.exit(vermin.main())'
BENCH_ARGS ?=

.PHONY: test e2e bench lint demo

test:
	$(PYTHON) tests/run.py unit

e2e:
	$(PYTHON) tests/run.py e2e

bench:
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

lint:
	$(PYTHON) -m py_compile bootstrap_assets.py
	$(VERMIN) --no-tips --target=3.9- --violations bootstrap_assets.py

demo:
	$(PYTHON) bootstrap_assets.py demo
