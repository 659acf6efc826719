"""Inside a notebook kernel: whose sys.argv counts (`%run` vs the kernel's own), a kernel
without a `google` package, and how a failing cell ends (in-process IPython when present).

The kernel is faked the way the module detects it (sys.modules["ipykernel"]); the real
kernel (ipykernel + jupyter_client) is the CI suite's job.
"""
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import unittest
from unittest import mock

import helpers as h
from helpers import D, F, ba

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/b.txt", b"beta\n")]
WANT = h.expected_tree(MEMBERS, strip_top=True)
KERNEL_JSON = "/root/.local/share/jupyter/runtime/kernel-1234.json"


@contextlib.contextmanager
def in_kernel(argv):
    """A fake kernel whose sys.argv is argv."""
    with mock.patch.dict(sys.modules, {"ipykernel": h.fake_module("ipykernel")}), \
            mock.patch.object(sys, "argv", argv):
        yield


def ipython_available():
    try:
        import IPython  # noqa: F401
        return True
    except ImportError:
        return False


class KernelArgvTests(h.SaveTestCase):
    """`%run bootstrap_assets.py ARGS` sets sys.argv = [script, *ARGS]: honoured exactly as
    on the command line. Only a kernel's own argv (`… -f kernel.json`) is ignored."""

    def setUp(self):
        super().setUp()
        self.src = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                                 h.archive_bytes(MEMBERS))

    def run_in_kernel(self, argv):
        with in_kernel(argv):
            return self.run_main(None)

    def test_run_magic_save_saves(self):
        h.write_bytes(os.path.join(self.local, "work.txt"), b"the session's work\n")
        rc, out, err = self.run_in_kernel([h.MODULE_PATH, "save", "--dest", self.local,
                                           "--archive", self.archive, "--drive-mount", "",
                                           "--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.archive), "%run … save did not save")
        self.assertRestores(h.saved_view(self.local))

    def test_run_magic_help_prints_help(self):
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = self.src
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        rc, out, err = self.run_in_kernel(["bootstrap_assets.py", "--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("usage:", out)
        self.assertFalse(os.path.exists(self.dest), "%run … --help restored")

    def test_run_magic_dest_is_the_one_given(self):
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        other = os.path.join(self.tmp, "elsewhere", "_assets")
        rc, out, err = self.run_in_kernel([h.MODULE_PATH, "--archive", self.src, "--dest",
                                           other, "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTree(other, WANT)
        self.assertFalse(os.path.exists(self.dest), "restored to the default, not to --dest")

    def test_run_magic_bad_flag_is_a_usage_error(self):
        rc, out, err = self.run_in_kernel([h.MODULE_PATH, "--no-such-flag"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--no-such-flag", err)

    def test_kernel_own_argv_is_ignored(self):
        """ipykernel, Colab's launcher, `python -m ipykernel`, VS Code's `--f=`, Spyder's."""
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = self.src
        site = "/usr/local/lib/python3.11/dist-packages"
        argvs = [
            [site + "/ipykernel_launcher.py", "-f", KERNEL_JSON],
            [site + "/colab_kernel_launcher.py", "-f", KERNEL_JSON],
            [site + "/ipykernel/__main__.py", "-f", KERNEL_JSON],
            [site + "/ipykernel_launcher.py", "--ip=127.0.0.1", "--stdin=9003",
             "--f=" + KERNEL_JSON],
            [site + "/spyder_kernels/console/__main__.py", "-f", KERNEL_JSON],
            ["/opt/kernel-wrapper", "--HistoryManager.enabled=False", "--f=" + KERNEL_JSON],
        ]
        for argv in argvs:
            with self.subTest(argv=argv):
                dest = os.path.join(self.subdir(), "_assets")
                os.environ["BOOTSTRAP_ASSETS_DEST"] = dest
                rc, out, err = self.run_in_kernel(argv)
                self.assertEqual(rc, 0, err)
                self.assertTree(dest, WANT)

    def test_command_line_outside_a_kernel_is_sys_argv(self):
        argv = ["/usr/local/lib/python3.11/dist-packages/ipykernel_launcher.py", "-f",
                KERNEL_JSON]
        with mock.patch.dict(sys.modules), mock.patch.object(sys, "argv", argv):
            sys.modules.pop("ipykernel", None)
            self.assertEqual(ba._command_line(), ["-f", KERNEL_JSON])


class NoGooglePackageTests(h.BATestCase):
    """A kernel without `google` (plain Jupyter, Kaggle, VS Code): find_spec("google.colab")
    raises there, and the user must get the "not mounted" message, not a traceback."""

    def setUp(self):
        super().setUp()
        self.drive = os.path.join(self.tmp, "drive")  # a folder, not a mount
        self.archive = os.path.join(self.drive, "MyDrive", "assets.tar.gz")
        os.makedirs(os.path.dirname(self.archive))
        h.write_bytes(self.archive, h.archive_bytes(MEMBERS))

    def no_google(self):
        # None in sys.modules makes `import google` fail as a missing package does.
        return mock.patch.dict(sys.modules, {"google": None})

    def test_restore_says_drive_is_not_mounted(self):
        with in_kernel(["/x/ipykernel_launcher.py", "-f", KERNEL_JSON]), self.no_google():
            sys.modules.pop("google.colab", None)
            e = self.assertBAError("SourceMissing", self.restore, self.archive,
                                   drive_mount=self.drive)
        self.assertIn("not mounted", str(e))
        self.assertIn("drive.mount(", str(e))
        self.assertFalse(os.path.exists(self.dest))

    def test_cli_says_drive_is_not_mounted(self):
        argv = ["--archive", self.archive, "--dest", self.dest, "--drive-mount", self.drive]
        with in_kernel(["/x/ipykernel_launcher.py", "-f", KERNEL_JSON]), self.no_google():
            sys.modules.pop("google.colab", None)
            rc, out, err = self.run_main(argv)
        self.assertEqual(rc, 3, err)
        self.assertIn("Google Drive is not mounted", err)
        self.assertNotIn("Traceback", out + err)
        self.assertNotIn("ModuleNotFoundError", out + err)


@unittest.skipUnless(ipython_available(), "IPython is not installed")
class IPythonCellTests(h.SaveTestCase):
    """The file run by a real IPython shell (in a subprocess: the shell is a singleton), as a
    pasted cell and through %run, inside a (faked) kernel."""

    def run_cells(self, cells, env_extra):
        """Run each cell in one IPython shell; -> (exit code, stdout, stderr). After each
        cell the child prints `CELL-END <error_in_exec's type> <its exit_code>`."""
        cells_file = os.path.join(self.tmp, "cells.json")
        with open(cells_file, "w", encoding="utf-8") as f:
            json.dump(cells, f)
        code = textwrap.dedent("""
            import json, sys, types
            sys.modules["ipykernel"] = types.ModuleType("ipykernel")
            sys.argv = ["/usr/local/lib/python3/dist-packages/ipykernel_launcher.py", "-f",
                        %(json)r]
            from traitlets.config import Config
            from IPython.core.interactiveshell import InteractiveShell
            config = Config()
            config.HistoryManager.enabled = False
            shell = InteractiveShell.instance(config=config)
            with open(%(cells)r, encoding="utf-8") as f:
                cells = json.load(f)
            for cell in cells:
                result = shell.run_cell(cell)
                error = result.error_in_exec
                print("CELL-END", type(error).__name__, getattr(error, "exit_code", None),
                      flush=True)
        """) % {"json": KERNEL_JSON, "cells": cells_file}
        env = h.clean_env()
        env["IPYTHONDIR"] = os.path.join(self.tmp, "ipython")
        env.update(env_extra)
        p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, cwd=self.tmp, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def pasted_cell(self):
        with open(h.MODULE_PATH, encoding="utf-8") as f:
            return f.read()

    @h.slow  # a second or more: make test-slow
    def test_failing_pasted_cell_fails_with_the_message_alone(self):
        missing = os.path.join(self.drive, "nope.tar.gz")
        rc, out, err = self.run_cells([self.pasted_cell()], {
            "BOOTSTRAP_ASSETS_ARCHIVE": missing, "BOOTSTRAP_ASSETS_DEST": self.dest,
            "BOOTSTRAP_ASSETS_DRIVE_MOUNT": ""})
        self.assertEqual(rc, 0, out + err)
        # The cell failed (so "Run all" stops), with the exit code the command line gives.
        self.assertIn("CELL-END CellFailed 3", out, out + err)
        shown = out + err
        self.assertEqual(shown.count("bootstrap_assets: error:"), 1, shown)
        self.assertIn(missing, shown)
        for noise in ("SystemExit", "To exit", "Traceback", "exception has occurred"):
            self.assertNotIn(noise, shown)
        self.assertFalse(os.path.exists(self.dest))

    @h.slow  # a second or more: make test-slow
    def test_pasted_cell_that_works_ends_quietly(self):
        src = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                            h.archive_bytes(MEMBERS))
        rc, out, err = self.run_cells([self.pasted_cell()], {
            "BOOTSTRAP_ASSETS_ARCHIVE": src, "BOOTSTRAP_ASSETS_DEST": self.dest,
            "BOOTSTRAP_ASSETS_DRIVE_MOUNT": ""})
        self.assertEqual(rc, 0, out + err)
        self.assertIn("CELL-END NoneType None", out, out + err)
        self.assertNotIn("Traceback", out + err)
        self.assertTree(self.dest, WANT)

    def test_run_magic_honours_its_arguments(self):
        h.write_bytes(os.path.join(self.local, "work.txt"), b"the session's work\n")
        missing = os.path.join(self.drive, "nope.tar.gz")
        cells = ["%%run %s save --dest %s --archive %s --quiet"
                 % (h.MODULE_PATH, self.local, self.archive),
                 "%%run %s --help" % h.MODULE_PATH,
                 "%%run %s --archive %s --dest %s" % (h.MODULE_PATH, missing, self.out())]
        rc, out, err = self.run_cells(cells, {"BOOTSTRAP_ASSETS_DRIVE_MOUNT": ""})
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(os.path.exists(self.archive), out + err)
        self.assertRestores(h.saved_view(self.local))
        self.assertIn("usage:", out)
        shown = out + err
        self.assertIn(missing, shown)
        for noise in ("SystemExit", "Traceback", "exception has occurred"):
            self.assertNotIn(noise, shown)


if __name__ == "__main__":
    unittest.main()
