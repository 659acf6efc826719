"""The start-up every run pays, the no-op re-run included.

`python bootstrap_assets.py` compiles the whole file on every run (a script gets no cached
bytecode), then runs its top level: that part must stay small. The file imports at its top
only the modules every run needs; the rest (URLs, buckets, zip, bz2/xz, GNU tar, the tar headers a save writes, the demo)
are imported where they are used. A new module-level import fails here until it is either
moved into the function that needs it or added to EVERY_RUN below on purpose.
"""
import ast
import os
import subprocess
import sys
import unittest

import bootstrap_assets as ba

SCRIPT = os.path.abspath(ba.__file__)
# The module-level imports (the optional zstd of Python 3.14 aside): what every run needs.
EVERY_RUN = {
    "argparse", "collections", "errno", "fcntl", "hashlib", "itertools", "json", "math", "os",
    "queue", "shutil", "signal", "stat", "sys", "threading", "time", "types",
    "zlib",
}


def module_level_imports(source):
    """The modules a file's own statements import (those in a try block included), not
    those its functions import when they run."""
    found = set()
    for node in ast.parse(source).body:
        for sub in ast.walk(node) if isinstance(node, ast.Try) else [node]:
            if isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                found.add(sub.module)
    return found


def imported_by(argv):
    """The modules a fresh interpreter without site (-S) imports to run argv."""
    r = subprocess.run([sys.executable, "-S", "-X", "importtime"] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       universal_newlines=True, check=True)
    return {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
            and not line.rstrip().endswith("imported package")}


class StartupTests(unittest.TestCase):
    def test_module_level_imports_are_the_ones_every_run_needs(self):
        with open(SCRIPT, encoding="utf-8") as f:
            found = module_level_imports(f.read())
        found.discard("compression")  # Python 3.14's zstd, tried once at the top
        self.assertEqual(found, EVERY_RUN,
                         "a module-level import is paid by every run, --version and the "
                         "no-op re-run included: import it in the function that uses it")

    def test_version_imports_nothing_beyond_the_module_level_ones(self):
        bare = imported_by(["-c", "pass"])
        needed = imported_by(["-c", "import " + ", ".join(sorted(EVERY_RUN))])
        ours = imported_by([SCRIPT, "--version"])
        extra = ours - needed - bare - {"compression", "compression.zstd", "_zstd"}
        # argparse's messages go through gettext, which looks up the locale
        extra -= {"gettext", "locale", "_locale"}
        self.assertEqual(extra, set(), "imported on every run: import it where it is used")


if __name__ == "__main__":
    unittest.main()
