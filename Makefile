# make test | test-slow | e2e | conformance | fuzz | bench | chart | lint | demo      (PYTHON=/path/to/python make test)
PYTHON ?= python3
# vermin is installed for the default python3 (.ci/run does it); it checks 3.9 compatibility
VERMIN ?= python3 -c 'import sys, vermin; sys.exit(vermin.main())'
BENCH_ARGS ?=
# make fuzz: the bounded slice CI can afford (>= 1000 mutants x every engine in <= 3 minutes
# on 2 cores, minimising included); failures are saved, minimised, under FUZZ_SAVE.
# A longer run: make fuzz FUZZ_ARGS='--count 5000 --seed 7 --timeout 20'
FUZZ_ARGS ?= --count 1000 --seed 1 --timeout 3 --time-limit 170 --minimise-time 45
FUZZ_SAVE ?= /tmp/bootstrap-assets-fuzz-failures

.PHONY: test test-slow e2e conformance fuzz bench chart lint demo

# the everyday suite (about a minute on 2 cores): tests/test_*.py less the tests marked @h.slow
test:
	$(PYTHON) tests/run.py unit

# the tests marked @h.slow (the crash sweeps, waits on real retry timers, deep nesting)
test-slow:
	$(PYTHON) tests/run.py slow

e2e:
	$(PYTHON) tests/run.py e2e

# archives from npm, PyPI, Debian and every archiver here, against GNU tar / unzip
# (downloads are cached in $CONFORMANCE_CACHE, default ~/.cache/bootstrap-assets-conformance)
conformance:
	$(PYTHON) tests/conformance.py

fuzz:
	$(PYTHON) tests/fuzz_archives.py $(FUZZ_ARGS) --save-failures $(FUZZ_SAVE)

bench:
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

# the README's chart, redrawn from the newest run in bench/RESULTS.md (runs nothing)
chart:
	$(PYTHON) bench/bench.py --svg-from bench/RESULTS.md --svg bench/chart.svg

lint:
	$(PYTHON) -m py_compile bootstrap_assets.py
	$(VERMIN) --no-tips --target=3.9- --violations bootstrap_assets.py

demo:
	$(PYTHON) bootstrap_assets.py demo
