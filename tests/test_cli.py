"""The command line, in-process through ba.main() and a few real subprocesses: restore,
save, status, autosave, --version/--previous, the messages and exit codes, SIGTERM and
Ctrl-C. The API (restore(), save(), ...) is tested in the other test_*.py files; a test
there that also runs a command checks one promise both ways."""
import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
from unittest import mock

import helpers as h
from helpers import D, F, L, ba

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/run.sh", b"#!/bin/sh\n", mode=0o755),
           L("top/link", "a.txt"), D("top/empty")]
WANT = h.expected_tree(MEMBERS, strip_top=True)


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

    @h.slow  # a second or more: make test-slow
    def test_demo_command_runs_and_exits_0(self):
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

    def test_sha256_mismatch_is_exit_5_naming_both_sums(self):
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest,
                                      "--sha256", "ef" * 32, "--quiet"])
        self.assertEqual(rc, 5)
        self.assertIn("ef" * 32, err)
        self.assertIn(h.sha256_file(self.archive), err)
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(self.dest))

    def test_empty_archive_is_exit_7_and_makes_no_dest(self):
        archive = h.write_bytes(os.path.join(self.tmp, "assets.tar.gz"), h.archive_bytes([]))
        rc, _, err = self.run_main(["restore", "--archive", archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 7, err)
        self.assertIn("holds no files", err)
        self.assertFalse(os.path.lexists(self.dest))


class SubprocessTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))

    def run_py(self, args, env=None, **kw):
        return subprocess.run([sys.executable] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env or h.clean_env(), cwd=self.tmp, timeout=120, **kw)

    def test_script_restores_and_quiet_prints_nothing(self):
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

    @h.slow  # a second or more: make test-slow
    def test_demo_as_a_script_exits_0(self):
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


class VersionFlagTests(h.BATestCase):
    """--version prints the tool's version (the convention of every CLI); the selector of an
    older archive is --previous N."""

    def test_version_prints_the_version(self):
        want = "bootstrap_assets %s\n" % ba.VERSION
        for argv in (["--version"], ["restore", "--version"], ["save", "--version"],
                     ["autosave", "--version"], ["split", "--version"], ["status", "--version"],
                     ["demo", "--version"], ["--dest", self.dest, "--version"]):
            with self.subTest(argv=argv):
                rc, out, err = self.run_main(argv)
                self.assertEqual((rc, out, err), (0, want, ""))
        self.assertFalse(os.path.exists(self.dest))

    def test_script_version_prints_the_version_alone(self):
        p = subprocess.run([sys.executable, h.MODULE_PATH, "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=h.clean_env(), cwd=self.tmp, timeout=60)
        self.assertEqual((p.returncode, p.stdout.decode(), p.stderr.decode()),
                         (0, "bootstrap_assets %s\n" % ba.VERSION, ""))

    def test_old_version_selector_is_refused_with_the_new_name(self):
        archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))
        for argv in (["--version", "1"], ["restore", "--version", "2"], ["--version=1"]):
            with self.subTest(argv=argv):
                rc, out, err = self.run_main(argv + ["--archive", archive, "--dest", self.dest])
                self.assertEqual(rc, 2, err)
                self.assertIn("--previous %s" % argv[-1][-1], err)
                self.assertFalse(os.path.exists(self.dest))

    def test_help_names_previous(self):
        rc, out, err = self.run_main(["restore", "--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("--previous N", out)
        self.assertIn("--version", out)


class PreviousVersionTests(h.SaveTestCase):
    """--previous N beyond what is kept has its own message, and no message suggests
    --previous 1 unless ARCHIVE.1 (or its parts) is there."""

    def args(self, *extra):
        return ["restore"] + list(extra) + ["--archive", self.archive, "--dest", self.out(),
                                            "--drive-mount", "", "--quiet"]

    def test_previous_with_none_kept_says_so_and_how_to_restore(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        self.save()
        rc, out, err = self.run_main(self.args("--previous", "1"))
        self.assertEqual(rc, 3, err)
        self.assertIn("No previous versions of %s are kept" % self.archive, err)
        self.assertIn("without --previous", err)
        self.assertNotIn("does not exist", err)

    def test_fewer_kept_than_asked(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        self.save()
        h.write_bytes(os.path.join(self.local, "b.txt"), b"b\n")
        self.save(incremental="never")
        rc, out, err = self.run_main(self.args("--previous", "3"))
        self.assertEqual(rc, 3, err)
        self.assertIn("Only 1 previous version(s)", err)
        self.assertIn("--previous 1", err)
        rc, out, err = self.run_main(self.args("--previous", "1"))
        self.assertEqual(rc, 0, err)

    def test_negative_is_a_usage_error(self):
        rc, out, err = self.run_main(self.args("--previous", "-1"))
        self.assertEqual(rc, 2, err)

    def test_checksum_mismatch_suggests_previous_only_when_kept(self):
        h.write_bytes(self.archive, h.archive_bytes(MEMBERS))
        h.write_bytes(self.archive + ".sha256", b"0" * 64 + b"  assets.tar.gz\n")
        rc, out, err = self.run_main(self.args())
        self.assertEqual(rc, 5, err)
        self.assertNotIn("--previous", err)
        self.assertNotIn("--version", err)
        for kept in ("assets.tar.gz.1", "assets.tar.gz.1.part-0001"):
            with self.subTest(kept=kept):
                path = h.write_bytes(os.path.join(self.drive, kept), h.archive_bytes(MEMBERS))
                rc, out, err = self.run_main(self.args())
                self.assertEqual(rc, 5, err)
                self.assertIn("(--previous 1)", err)
                os.unlink(path)


class TruncatedArchiveTests(h.SaveTestCase):

    def test_truncated_message_gives_the_fix(self):
        data = h.archive_bytes([D("top"), F("top/big.bin", h.rand_bytes(200_000, 4))])
        h.write_bytes(self.archive, data[:len(data) // 2])
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.out(),
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 7, err)
        self.assertIn("truncated", err)
        self.assertIn("Fix: upload the complete file again", err)
        self.assertNotIn("--previous", err)
        h.write_bytes(self.archive + ".1", data)
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.out(),
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 7, err)
        self.assertIn("restore the previous version with --previous 1", err)


class SaveProgressTests(h.SaveTestCase):
    """The progress line counts what is written (headers, compression and all): its last
    figure is the summary's."""

    def save_loud(self, **kw):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            r = self.save(quiet=False, **kw)
        lines = [l for l in err.getvalue().replace("\r", "\n").splitlines()
                 if l.startswith("saving ")]
        self.assertTrue(lines, err.getvalue())
        return r, lines[-1]

    def test_progress_ends_at_the_bytes_written(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"x" * 46)
        for fmt in ("tar", "gz"):
            with self.subTest(format=fmt):
                r, line = self.save_loud(format=fmt, incremental="never")
                self.assertEqual(r.action, "saved")
                self.assertIn("saving assets.tar.gz: %s written (100%%)"
                              % ba._human(r.bytes_written), line)
        h.write_bytes(os.path.join(self.local, "b.txt"), b"y" * 46)
        r, line = self.save_loud()
        self.assertEqual(r.action, "layer")
        self.assertIn(": %s written (100%%)" % ba._human(r.bytes_written), line)
        self.assertIn(ba._human(r.bytes_written), r.summary())


class DestIsAFileTests(h.SaveTestCase):

    def test_restore_into_a_file_says_so(self):
        archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))
        h.write_bytes(self.dest, b"a file where the folder should be\n")
        for extra in ([], ["--force"]):
            with self.subTest(extra=extra):
                rc, out, err = self.run_main(["--archive", archive, "--dest", self.dest,
                                              "--quiet"] + extra)
                self.assertEqual(rc, 2, err)
                self.assertIn("%s is a file, not a folder" % self.dest, err)
                self.assertNotIn("local changes", err)
                self.assertIn("--dest", err)
                with open(self.dest, "rb") as f:
                    self.assertEqual(f.read(), b"a file where the folder should be\n")
                self.assertEqual(os.listdir(self.work), ["_assets"])

    def test_save_of_a_file_says_so(self):
        h.write_bytes(self.local, b"not a folder")
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", self.archive,
                                      "--drive-mount", ""])
        self.assertEqual(rc, 3, err)
        self.assertIn("is a file, not a folder", err)


def all_paths(root):
    found = set()
    for folder, dirs, files in os.walk(root):
        found.update(os.path.join(folder, n) for n in dirs + files)
    return found


class FailedRunLeavesNoTraceTests(h.BATestCase):
    """A failed restore leaves the machine as it found it: no destination parents it made,
    no lock file, no staging folder."""

    def test_each_failure_kind(self):
        good = h.archive_bytes([D("top"), F("top/big.bin", h.rand_bytes(300_000, 5))])
        html = b"<!DOCTYPE html><html><body>Sign in - Google Drive</body></html>\n" * 5
        cases = [("missing", None, None, 3), ("html", html, None, 7), ("empty", b"", None, 7),
                 ("truncated", good[:len(good) // 2], None, 7),
                 ("checksum", good, b"0" * 64 + b"  assets.tar.gz\n", 5)]
        for label, data, sidecar, code in cases:
            with self.subTest(case=label):
                folder = self.subdir()
                archive = os.path.join(folder, "assets.tar.gz")
                if data is not None:
                    h.write_bytes(archive, data)
                if sidecar is not None:
                    h.write_bytes(archive + ".sha256", sidecar)
                dest = os.path.join(self.tmp, "new-" + label, "deeper", "_assets")
                before = all_paths(self.tmp)
                rc, out, err = self.run_main(["--archive", archive, "--dest", dest,
                                              "--quiet", "--retry-for", "0.5"])
                self.assertEqual(rc, code, err)
                self.assertEqual(sorted(all_paths(self.tmp) - before), [], err)
                self.assertEqual(sorted(before - all_paths(self.tmp)), [])

    def test_parents_that_existed_stay(self):
        os.makedirs(os.path.join(self.tmp, "new"))
        dest = os.path.join(self.tmp, "new", "deeper", "_assets")
        rc, out, err = self.run_main(["--archive", os.path.join(self.tmp, "nope.tar.gz"),
                                      "--dest", dest, "--quiet"])
        self.assertEqual(rc, 3, err)
        self.assertEqual(os.listdir(os.path.join(self.tmp, "new")), [])


class ReadOnlyPlacesTests(h.SaveTestCase):
    """A read-only folder (Kaggle's /kaggle/input; here a tmpfs mounted read-only, since
    root ignores file modes) named in the message with the flag that avoids it."""

    def read_only(self, name, fill=None):
        """A folder on a read-only tmpfs; fill(folder) first writes its contents."""
        path = h.mount_tmpfs(self, os.path.join(self.tmp, name), "size=4m")
        if fill:
            fill(path)
        r = subprocess.run(["mount", "-o", "remount,ro", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode:
            self.skipTest("cannot remount read-only: %s" % r.stdout.decode(errors="replace"))
        return path

    def test_restore_into_a_read_only_folder(self):
        archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))
        ro = self.read_only("ro")
        for dest in (os.path.join(ro, "_assets"), os.path.join(ro, "sub", "_assets")):
            with self.subTest(dest=dest):
                rc, out, err = self.run_main(["--archive", archive, "--dest", dest, "--quiet"])
                self.assertEqual(rc, 1, err)
                self.assertIn("Cannot write in %s: the folder is not writable" % ro, err)
                self.assertIn("--dest", err)
                self.assertNotIn("Errno", err)
                self.assertEqual(os.listdir(ro), [])

    def saved_read_only(self):
        """The archive saved from self.local into a folder that is then made read-only."""
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")

        def fill(folder):
            self.save(archive=os.path.join(folder, "assets.tar.gz"))
        ro = self.read_only("input", fill)
        h.write_bytes(os.path.join(self.local, "b.txt"), b"the session's work\n")
        return os.path.join(ro, "assets.tar.gz")

    def test_save_to_a_read_only_folder(self):
        archive = self.saved_read_only()
        before = h.folder_state(os.path.dirname(archive))
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", archive,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 1, err)
        self.assertIn("its folder %s is not writable" % os.path.dirname(archive), err)
        self.assertIn("--archive", err)
        self.assertNotIn("Errno", err)
        self.assertNotIn(".tmp-", err)
        self.assertEqual(h.folder_state(os.path.dirname(archive)), before)
        # where the fix points, it works
        writable = os.path.join(self.tmp, "working", "assets.tar.gz")
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", writable,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 0, err)

    def test_autosave_says_a_repeated_failure_once(self):
        archive = self.saved_read_only()
        logs = []
        saver = ba.autosave(every="0.05s", dest=self.local, archive=archive, drive_mount="",
                            lock_timeout=2.0, retry_for=1.0, log=logs.append)
        self.addCleanup(saver.stop, final_save=False)
        self.assertTrue(h.wait_for(lambda: saver.rounds >= 5, timeout=20), logs)
        saver.stop(final_save=False)
        self.assertIsInstance(saver.error, ba.BootstrapError)
        failures = [line for line in logs if "not writable" in line]
        self.assertEqual(len(failures), 1, logs)
        self.assertEqual(len(logs), 1, logs)

    def test_autosave_logs_a_new_failure_and_the_recovery(self):
        errors = [ba.NoSpace("Drive is full")] * 3 + [ba.Locked("held")] * 2
        real = ba.save

        def flaky(**kw):
            if errors:
                raise errors.pop(0)
            return real(**kw)
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        logs = []
        saver = ba.Autosave("1h", log=logs.append, dest=self.local, archive=self.archive,
                            drive_mount="")
        with mock.patch.object(ba, "save", flaky):
            for _ in range(6):
                saver.save_now()
        self.assertEqual(len(logs), 3, logs)
        self.assertIn("Drive is full", logs[0])
        self.assertIn("held", logs[1])
        self.assertIn("saved a full archive", logs[2])
        self.assertIsNone(saver.error)

    def test_autosave_final_save_failure_is_said(self):
        logs = []
        saver = ba.Autosave("1h", log=logs.append, dest=os.path.join(self.tmp, "none"),
                            archive=self.archive, drive_mount="")
        saver.save_now()
        saver.save_now()
        self.assertEqual(len(logs), 1, logs)
        saver.stop()
        self.assertEqual(len(logs), 2, logs)
        self.assertIn("the final save failed", logs[1])


class SaveStatusCommandTests(h.SaveTestCase):

    def args(self, *extra):
        return list(extra) + ["--dest", self.local, "--archive", self.archive, "--drive-mount", ""]

    def test_save_status_restore_list(self):
        h.save_tree(self.local, big=False)
        rc, out, err = self.run_main(["save"] + self.args())
        self.assertEqual(rc, 0, err)
        self.assertIn("saved", out)
        self.assertIn(self.archive, out)
        want1 = h.saved_view(self.local)
        rc, out, err = self.run_main(["save"] + self.args("--quiet"))
        self.assertEqual((rc, out), (0, ""), err)
        h.write_bytes(os.path.join(self.local, "new.txt"), b"new\n")
        rc, out, err = self.run_main(["save"] + self.args("--full", "--keep", "3", "--level", "1"))
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.archive + ".1"))
        h.write_bytes(os.path.join(self.local, "new2.txt"), b"new2\n")
        rc, out, err = self.run_main(["save"] + self.args("--incremental", "--format", "gz",
                                                          "--no-verify"))
        self.assertEqual(rc, 0, err)
        self.assertIn("layer", out)
        want3 = h.saved_view(self.local)
        rc, status_out, err = self.run_main(["status"] + self.args())
        self.assertEqual(rc, 0, err)
        self.assertEqual(status_out.strip().splitlines(),
                         ba.status(self.archive, self.local, drive_mount=""))
        rc, list_out, err = self.run_main(["restore", "--list"] + self.args())
        self.assertEqual(rc, 0, err)
        self.assertEqual(list_out, status_out)
        self.assertIn("--previous 1", list_out)
        self.assertIn("1 layer", list_out)
        for version, want in (("1", want1), ("0", want3)):
            dest = self.out()
            rc, out, err = self.run_main(["restore", "--previous", version, "--archive",
                                          self.archive, "--dest", dest, "--drive-mount", ""])
            self.assertEqual(rc, 0, err)
            got = h.strip_special(h.snapshot(dest, dir_modes=True))
            self.assertEqual(got, want, h.summarize(got, want))
        for text in (out, err):
            self.assertNotIn("Traceback", text)

    def test_bad_save_restore_and_status_arguments_exit_2_or_3_writing_nothing(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a")
        cases = [
            (["save", "--format", "rar"] + self.args(), 2),
            (["save", "--keep", "0"] + self.args(), 2),
            (["save", "--incremental", "--full"] + self.args(), 2),
            (["save", "--level", "x"] + self.args(), 2),
            (["save", "--archive", "http://example.com/a.tar.gz", "--dest", self.local], 2),
            (["save", "--flush"] + self.args(), 2),
            (["save", "--dest", os.path.join(self.tmp, "nope"), "--archive", self.archive,
              "--drive-mount", ""], 3),
            (["restore", "--previous", "4"] + self.args(), 3),
            (["status", "--bogus"] + self.args(), 2),
        ]
        for argv, code in cases:
            with self.subTest(argv=argv):
                rc, out, err = self.run_main(argv)
                self.assertEqual(rc, code, err)
                self.assertNotIn("Traceback", err + out)
                self.assertIn("error", err)
        self.assertEqual(h.archive_family(self.archive), [])

    def test_save_subprocess(self):
        """`python bootstrap_assets.py save` as a real process: exit 0, then status."""
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        env = h.clean_env()
        r = subprocess.run([sys.executable, h.MODULE_PATH, "save"] + self.args(), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        r = subprocess.run([sys.executable, h.MODULE_PATH, "save"] + self.args("--quiet"),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"", b""))
        env.update(BOOTSTRAP_ASSETS_ARCHIVE=self.archive, BOOTSTRAP_ASSETS_DEST=self.local,
                   BOOTSTRAP_ASSETS_DRIVE_MOUNT="")
        r = subprocess.run([sys.executable, h.MODULE_PATH, "status"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertIn(b"current: assets.tar.gz", r.stdout)
        self.assertIn(b"no local changes", r.stdout)


class AutosaveCommandTests(h.SaveTestCase):

    def args(self, *extra):
        return ["autosave"] + list(extra) + ["--dest", self.local, "--archive", self.archive,
                                             "--drive-mount", ""]

    def finish(self, p, err, timeout=30):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("autosave did not exit after the signal: %s" % h.read(err))
        self.assertEqual(p.returncode, 0, h.read(err))
        self.assertNotIn("Traceback", h.read(err))

    @h.slow  # a second or more: make test-slow
    def test_sigterm_final_save(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        p, out, err = h.start_cli(self.args("--every", "1s"), self.tmp)
        self.addCleanup(h.kill_group, p)
        self.assertTrue(h.wait_for(lambda: os.path.exists(self.archive) or p.poll() is not None,
                                   timeout=20), "no first save")
        self.assertIsNone(p.poll(), h.read(err))
        self.assertTrue(h.wait_for(lambda: len(h.sidecar_lines(self.archive)) == 1, timeout=10))
        h.write_bytes(os.path.join(self.local, "just_before.txt"), b"saved by the final save\n")
        p.send_signal(signal.SIGTERM)
        self.finish(p, err)
        want = h.saved_view(self.local)  # taken once the process is gone (it writes a marker)
        self.assertIn("just_before.txt", want)
        self.assertRestores(want)
        self.assertIn("autosave", h.read(out))
        self.assertSidecarConsistent()

    def test_sigint_final_save_before_any_round(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        p, out, err = h.start_cli(self.args("--every", "1h"), self.tmp)
        self.addCleanup(h.kill_group, p)
        self.assertTrue(h.wait_for(lambda: "every" in h.read(out) or p.poll() is not None,
                                   timeout=20), "autosave did not start: %s" % h.read(err))
        self.assertIsNone(p.poll(), h.read(err))
        p.send_signal(signal.SIGINT)
        self.finish(p, err)
        self.assertRestores(h.saved_view(self.local))

    def test_final_save_failure_exit_code(self):
        """The final save fails (no folder to save): the exit code says why."""
        p, out, err = h.start_cli(self.args("--every", "1h"), self.tmp)
        self.addCleanup(h.kill_group, p)
        self.assertTrue(h.wait_for(lambda: "every" in h.read(out) or p.poll() is not None,
                                   timeout=20), "autosave did not start: %s" % h.read(err))
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("autosave did not exit after SIGTERM")
        self.assertEqual(p.returncode, 3, h.read(err))
        self.assertNotIn("Traceback", h.read(err))


class SignalExitTests(h.BATestCase):
    """SIGTERM unwinds a run like Ctrl-C (cleanups run) and exits 143; in-process the handler
    is ours only while main() runs. tests/e2e_local_faults.py sends real signals mid-run."""

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                                     h.archive_bytes(MEMBERS))

    def test_sigterm_during_a_restore_exits_143_and_leaves_nothing(self):
        real_extract = ba._restore_into

        def killed(*a, **kw):
            os.kill(os.getpid(), signal.SIGTERM)
            return real_extract(*a, **kw)
        before = signal.getsignal(signal.SIGTERM)
        with mock.patch.object(ba, "_restore_into", killed):
            rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest])
        self.assertEqual(rc, 143)
        self.assertIn("stopped by SIGTERM", err)
        self.assertIn("Run the same command again", err)
        self.assertFalse(os.path.lexists(self.dest))
        self.assertEqual(os.listdir(self.work), [])
        self.assertIs(signal.getsignal(signal.SIGTERM), before)
        self.assertEqual(self.run_main(["--archive", self.archive, "--dest", self.dest,
                                        "-q"])[0], 0)
        self.assertTree(self.dest, WANT)

    def test_a_handler_already_in_place_is_left_alone(self):
        seen = []
        previous = signal.signal(signal.SIGTERM, lambda *a: seen.append(a[0]))
        self.addCleanup(signal.signal, signal.SIGTERM, previous)
        real_extract = ba._restore_into

        def killed(*a, **kw):
            os.kill(os.getpid(), signal.SIGTERM)
            return real_extract(*a, **kw)
        with mock.patch.object(ba, "_restore_into", killed):
            rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "-q"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(seen, [signal.SIGTERM])

    def test_ctrl_c_exits_130_and_says_so(self):
        with mock.patch.object(ba, "_restore_into", side_effect=KeyboardInterrupt):
            rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest])
        self.assertEqual(rc, 130)
        self.assertIn("interrupted (Ctrl-C)", err)
        self.assertFalse(os.path.lexists(self.dest))
        self.assertEqual(os.listdir(self.work), [])
