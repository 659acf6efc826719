"""The command line, in-process through ba.main() and a few real subprocesses."""
import os
import subprocess
import sys
import textwrap
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402
from helpers import D, F, L, ba  # noqa: E402

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/run.sh", b"#!/bin/sh\n", mode=0o755),
           L("top/link", "a.txt"), D("top/empty")]
WANT = h.expected_tree(MEMBERS, strip_top=True)


class ExceptionTableTests(h.BATestCase):

    def test_exit_codes(self):
        for name, code in h.EXIT_CODES.items():
            with self.subTest(cls=name):
                cls = getattr(ba, name)
                self.assertTrue(issubclass(cls, ba.BootstrapError))
                self.assertTrue(issubclass(cls, Exception))
                self.assertEqual(cls.exit_code, code)


class MainTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))

    def test_default_command_is_restore(self):
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, WANT)

    def test_explicit_restore(self):
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, WANT)

    def test_all_flags_accepted(self):
        for engine in h.engines() + ["auto"]:
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                rc, out, err = self.run_main([
                    "restore", "--archive", self.archive, "--dest", dest,
                    "--sha256", h.sha256_file(self.archive), "--force", "--engine", engine,
                    "--quiet", "--drive-mount", os.path.join(self.tmp, "nodrive"),
                    "--lock-timeout", "2", "--retry-for", "1"])
                self.assertEqual(rc, 0, err)
                self.assertTree(dest, WANT)

    def test_quiet_prints_nothing_on_success(self):
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 0)
        self.assertEqual(out, "")
        self.assertEqual(err, "")
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 0)
        self.assertEqual((out, err), ("", ""))

    def test_not_quiet_reports_something(self):
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest])
        self.assertEqual(rc, 0)
        self.assertTrue((out + err).strip())
        self.assertNotIn("Traceback", out + err)

    def test_env_vars_used_when_flags_absent(self):
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = self.archive
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        rc, out, err = self.run_main(["--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, WANT)

    def test_env_vars_used_by_restore_api(self):
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = self.archive
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        r = ba.restore(quiet=True, retry_for=1)
        self.assertEqual(r.action, "restored")
        self.assertEqual(os.path.abspath(r.dest), self.dest)
        self.assertTree(self.dest, WANT)

    def test_flags_override_env(self):
        env_dest = os.path.join(self.work, "env_dest")
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = os.path.join(self.tmp, "missing-from-env.tar.gz")
        os.environ["BOOTSTRAP_ASSETS_DEST"] = env_dest
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, WANT)
        self.assertFalse(os.path.exists(env_dest))

    def test_exit_codes_and_stderr(self):
        corrupt = h.write_bytes(os.path.join(self.tmp, "corrupt.tar.gz"), b"\x1f\x8b\x08\x00garbage" * 10)
        unsafe = h.write_bytes(os.path.join(self.tmp, "unsafe.tar.gz"),
                               h.archive_bytes([F("ok", b"x"), F("../evil_cli", b"x")]))
        foreign = os.path.join(self.work, "foreign")
        os.makedirs(foreign)
        h.write_bytes(os.path.join(foreign, "x.txt"), b"x")
        cases = [
            ("missing", ["--archive", os.path.join(self.tmp, "nope.tar.gz"), "--dest", self.dest], 3),
            ("bad_sha", ["--archive", self.archive, "--dest", self.dest, "--sha256", "12"], 2),
            ("bad_engine", ["--archive", self.archive, "--dest", self.dest, "--engine", "bogus"], 2),
            ("unknown_flag", ["--archive", self.archive, "--dest", self.dest, "--bogus"], 2),
            ("bad_number", ["--archive", self.archive, "--dest", self.dest, "--lock-timeout", "abc"], 2),
            ("unknown_command", ["frobnicate", "--archive", self.archive, "--dest", self.dest], 2),
            ("mismatch", ["--archive", self.archive, "--dest", self.dest, "--sha256", "0" * 64], 5),
            ("unsafe", ["--archive", unsafe, "--dest", self.dest], 6),
            ("corrupt", ["--archive", corrupt, "--dest", self.dest], 7),
            ("foreign", ["--archive", self.archive, "--dest", foreign], 9),
        ]
        for label, argv, code in cases:
            with self.subTest(case=label):
                rc, out, err = self.run_main(argv + ["--quiet", "--retry-for", "0.5"])
                self.assertEqual(rc, code, "stderr: %s" % err)
                self.assertTrue(err.strip(), "no error message on stderr")
                self.assertNotIn("Traceback", err + out)
                self.assertFalse(os.path.exists(self.dest))

    def test_help_returns_zero(self):
        rc, out, err = self.run_main(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--archive", out + err)

    def test_demo(self):
        cwd = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, cwd)
        rc, out, err = self.run_main(["demo"])
        self.assertEqual(rc, 0, err + out)
        self.assertNotIn("Traceback", out + err)

    def test_jupyter_kernel_argv_ignored(self):
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = self.archive
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        argv = ["/usr/local/lib/python3/dist-packages/ipykernel_launcher.py", "-f",
                "/root/.local/share/jupyter/runtime/kernel-1234.json"]
        with mock.patch.dict(sys.modules, {"ipykernel": h.fake_module("ipykernel")}), \
                mock.patch.object(sys, "argv", argv):
            rc, out, err = self.run_main(None)
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, WANT)


class SubprocessTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))

    def run_py(self, args, env=None, **kw):
        return subprocess.run([sys.executable] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env or h.clean_env(), cwd=self.tmp, timeout=120, **kw)

    def test_script_restore(self):
        p = self.run_py([h.MODULE_PATH, "--archive", self.archive, "--dest", self.dest])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertTree(self.dest, WANT)
        p = self.run_py([h.MODULE_PATH, "--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout + p.stderr, b"")

    def test_script_exit_code(self):
        p = self.run_py([h.MODULE_PATH, "--archive", os.path.join(self.tmp, "nope.tgz"), "--dest", self.dest])
        self.assertEqual(p.returncode, 3)
        self.assertNotIn(b"Traceback", p.stderr)
        self.assertTrue(p.stderr.strip())

    def test_script_demo(self):
        p = self.run_py([h.MODULE_PATH, "demo"])
        self.assertEqual(p.returncode, 0, p.stderr.decode() + p.stdout.decode())

    def test_paste_into_cell(self):
        """The file's source exec'd in a fresh namespace named __main__, inside a (fake)
        Jupyter kernel whose argv is `ipykernel_launcher.py -f kernel.json`; config via env."""
        env = h.clean_env()
        env["BOOTSTRAP_ASSETS_ARCHIVE"] = self.archive
        env["BOOTSTRAP_ASSETS_DEST"] = self.dest
        code = textwrap.dedent("""
            import sys, types
            sys.modules["ipykernel"] = types.ModuleType("ipykernel")
            sys.argv = ["/usr/local/lib/python3/dist-packages/ipykernel_launcher.py", "-f",
                        "/tmp/kernel-xyz.json"]
            src = open(%r, encoding="utf-8").read()
            ns = {"__name__": "__main__"}
            try:
                exec(compile(src, "<ipython-input-1-abc>", "exec"), ns)
            except SystemExit as e:
                if e.code not in (0, None):
                    raise
            print("CELL-DONE")
        """ % h.MODULE_PATH)
        p = self.run_py(["-c", code], env=env)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn(b"CELL-DONE", p.stdout)
        self.assertNotIn(b"Traceback", p.stderr)
        self.assertTree(self.dest, WANT)
