#!/usr/bin/env python3
"""Run a test suite and end with one plain summary line.

    python3 tests/run.py unit   # tests/test_*.py, less the tests marked @h.slow (make test)
    python3 tests/run.py slow   # only the tests of tests/test_*.py marked @h.slow (make test-slow)
    python3 tests/run.py e2e    # tests/e2e_*.py (drivesim; needs FUSE)
    python3 tests/run.py unit -k sidecar   # only tests whose name matches

Before it, a table: each class of case (test file and class), how many tests ran and how
many ended in the promised state. The last line reads e.g. `unit: 57 passed, 0 failed,
2 skipped` (errors count as failed).
Exits 1 if anything failed or no test ran, 2 on bad usage.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SUITES = {"unit": "test_*.py", "slow": "test_*.py", "e2e": "e2e_*.py"}


def is_slow(test):
    """Whether a test, or its class, carries helpers.slow's mark."""
    method = getattr(test, getattr(test, "_testMethodName", ""), None)
    return bool(getattr(method, "slow", False) or getattr(type(test), "slow", False))


def flattened(suite):
    """The tests of a suite of suites, in order (class and module fixtures still run once
    each: unittest sets them up when the class or module changes)."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flattened(item)
        else:
            yield item


def chosen(suite, tests):
    """The tests of one suite: the slow ones for `slow`, the others for `unit` (a module that
    failed to import counts there)."""
    if suite == "e2e":
        return tests
    return unittest.TestSuite(t for t in flattened(tests) if is_slow(t) == (suite == "slow"))


def tally(result):
    """(passed, failed, skipped) from a unittest.TestResult, counted by test: a test with
    failing subtests fails once; an error outside any test (setUpModule, setUpClass) is
    one more failure."""
    def key(test):
        return getattr(test, "test_case", test).id()

    failed, outside = set(), set()
    for test, _ in result.failures + result.errors:
        (failed if isinstance(test, unittest.TestCase) else outside).add(key(test))
    failed |= {key(t) for t in result.unexpectedSuccesses}
    skipped = {key(t) for t, _ in result.skipped if isinstance(t, unittest.TestCase)} - failed
    # Python 3.12+ reports the tests of a skipped class as skipped without starting them,
    # so they are not in testsRun: count what started, less what failed or was skipped.
    started = {t.id() for t in result.ran}
    passed = len(started - failed - skipped)
    return passed, len(failed) + len(outside), len(skipped)


class _Recorder(unittest.TextTestResult):
    """Remembers every test that started, for the counts and the table of classes of cases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ran = []

    def startTest(self, test):
        super().startTest(test)
        self.ran.append(test)


def table(result):
    """Rows (class of case, ran, in the promised state, skipped) for the tests that ran."""
    failed = {getattr(t, "test_case", t).id() for t, _ in result.failures + result.errors}
    failed |= {t.id() for t in result.unexpectedSuccesses}
    skipped = {getattr(t, "test_case", t).id() for t, _ in result.skipped} - failed
    started = {t.id() for t in result.ran}
    never_started = [t for t, _ in result.skipped  # a skipped class's tests (3.12+)
                     if isinstance(t, unittest.TestCase) and not hasattr(t, "test_case")
                     and t.id() not in started]
    rows = {}
    for test in result.ran + never_started:
        name = test.id().rsplit(".", 1)[0]
        ran, good, skip = rows.get(name, (0, 0, 0))
        if test.id() in skipped:
            skip += 1
        else:
            ran += 1
            good += test.id() not in failed
        rows[name] = (ran, good, skip)
    return [(name,) + counts for name, counts in sorted(rows.items())]


def print_table(suite, rows):
    print(f"\n{suite}: classes of cases\n")
    print("| class of case (file.Class) | ran | in the promised state | skipped |")
    print("|---|---:|---:|---:|")
    for name, ran, good, skip in rows:
        print(f"| {name} | {ran} | {good} | {skip} |")
    total = [sum(row[i] for row in rows) for i in (1, 2, 3)]
    print(f"| total | {total[0]} | {total[1]} | {total[2]} |\n")


def main(argv):
    if not argv or argv[0] not in SUITES:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    suite, rest = argv[0], argv[1:]
    patterns = []
    while rest:
        if rest[0] == "-k" and len(rest) > 1:
            patterns.append(rest[1] if "*" in rest[1] else f"*{rest[1]}*")
            rest = rest[2:]
        else:
            print(f"unknown argument {rest[0]!r}\n\n{__doc__.strip()}", file=sys.stderr)
            return 2
    for path in (REPO, HERE):
        if path not in sys.path:
            sys.path.insert(0, path)
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = patterns
    tests = chosen(suite, loader.discover(HERE, pattern=SUITES[suite], top_level_dir=HERE))
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=_Recorder)
    result = runner.run(tests)
    passed, failed, skipped = tally(result)
    sys.stdout.flush()
    print_table(suite, table(result))
    print(f"{suite}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    if passed == 0 and not failed:
        print(f"{suite}: no test ran", file=sys.stderr)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
