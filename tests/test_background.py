"""Issue 17, background restore: `job = restore(..., background=True)` returns at once;
job.wait(paths) for a file, a folder written `dir/`, a `**` glob; job.files() in install
order, complete, each file whole when yielded; job.result(), job.done, job.progress; the
restore's own exception (same class and message as a foreground restore); timeouts. The
command line: `restore --background` (a detached process) and `wait`, in-process through
main(); save and a second restore wait for a running background restore instead of exit 10.

The slow source is tests/helpers.HTTPFixture trickling (~800 KB/s: a restore of several
seconds), let go at full speed once what is tested was seen.
"""
import os
import shutil
import threading
import time
import unittest

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import URL_PATH, ProgressiveCase


def alive(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"bootstrap_assets" in f.read()
    except OSError:
        return False


class JobTests(ProgressiveCase):

    def setUp(self):
        super().setUp()
        self.make("tar")
        self.order = self.file_order()

    def assertInPlace(self, *relpaths):
        for r in relpaths:
            path = os.path.join(self.dest, r)
            self.assertTrue(os.path.isfile(path), "%s not in place" % r)
            with open(path, "rb") as f:
                self.assertEqual(pt.sha256(f.read()), pt.sha256(self.files[r]), r)

    def test_returns_at_once_then_result_and_done(self):
        job = self.background(self.slow_local())
        self.assertLess(self.started_in, 1.0, "restore(background=True) did not return at once")
        self.assertFalse(job.done)
        self.full_speed()
        r = job.result(timeout=60)
        self.assertTrue(job.done)
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.progressive)
        self.assertComplete(self.dest)

    @h.slow  # a second or more: make test-slow
    def test_wait_for_a_file_returns_when_it_is_in_place_not_at_the_end(self):
        job = self.background(self.slow_local())
        job.wait("config.yaml", timeout=30)
        self.assertInPlace("config.yaml")
        self.assertFalse(job.done, "wait('config.yaml') returned only at the end")

    @h.slow  # a second or more: make test-slow
    def test_wait_for_a_folder_with_a_trailing_slash(self):
        job = self.background(self.slow_local())
        job.wait("tokenizer/", timeout=30)
        self.assertInPlace(*[r for r in self.files if r.startswith("tokenizer/")])
        self.assertFalse(job.done)

    @h.slow  # a slowed source, watched while it runs: a few seconds
    def test_wait_for_a_double_star_glob_and_several_paths(self):
        job = self.background(self.slow_local())
        job.wait("weights/**", "config.yaml", timeout=30)
        self.assertInPlace("config.yaml", *[r for r in self.files if r.startswith("weights/")])
        job.wait("images/class_00/**", timeout=30)
        self.assertInPlace(*[r for r in self.files if r.startswith("images/class_00/")])
        self.full_speed()
        job.wait(timeout=60)  # no path: everything
        self.assertComplete(self.dest)

    @h.slow  # a slowed source, watched while it runs: a few seconds
    def test_files_yields_every_file_whole_in_install_order(self):
        job = self.background(self.slow_local())
        got, wrong = [], []
        for path in job.files():
            self.assertTrue(os.path.isabs(path), path)
            r = os.path.relpath(path, self.dest)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                if f.read() != self.files.get(r):
                    wrong.append(r)
            got.append(r)
            if len(got) == 10:
                self.full_speed()
        self.assertEqual(wrong, [], "files() yielded files not yet whole")
        self.assertEqual(got, self.order, "not every file, or not in install (archive) order")
        self.assertTrue(job.done)

    @h.slow  # a slowed source, watched while it runs: a few seconds
    def test_files_with_a_pattern_yields_only_its_files(self):
        job = self.background(self.slow_local())
        got = [os.path.relpath(p, self.dest) for p in job.files("images/class_01/**")]
        self.assertEqual(got, [r for r in self.order if r.startswith("images/class_01/")])

    @h.slow  # a slowed source, watched while it runs: a few seconds
    def test_files_started_late_gives_what_is_in_place_first_then_the_rest(self):
        job = self.background(self.slow_local())
        job.wait("weights/", timeout=30)
        got = [os.path.relpath(p, self.dest) for p in job.files() if not os.path.islink(p)]
        self.assertEqual(sorted(got), sorted(self.files))
        self.assertEqual(len(got), len(set(got)), "a file yielded twice")
        self.assertEqual(got[0], self.order[0])

    def test_files_after_the_end(self):
        job = self.background(self.archive)
        job.result(timeout=60)
        got = [os.path.relpath(p, self.dest) for p in job.files("tokenizer/")]
        self.assertEqual(got, [r for r in self.order if r.startswith("tokenizer/")])

    @h.slow  # a second or more: make test-slow
    def test_progress_counts_up_to_the_totals(self):
        job = self.background(self.slow_local())
        samples = []
        deadline = time.monotonic() + 60
        while not job.done and time.monotonic() < deadline:
            p = job.progress
            samples.append((p.bytes, p.files, p.total_bytes, p.total_files))
            if len(samples) == 20:
                self.full_speed()
            time.sleep(0.05)
        job.result(timeout=60)
        p = job.progress
        self.assertEqual((p.files, p.bytes), (p.total_files, p.total_bytes))
        self.assertGreaterEqual(p.total_files, len(self.files))
        self.assertGreaterEqual(p.total_bytes, sum(len(d) for d in self.files.values()))
        running = [s for s in samples if s[2]]
        self.assertTrue(running, "no progress while it ran")
        self.assertTrue(any(s[1] < s[3] for s in running), "progress never showed a part done")
        for a, b in zip(running, running[1:]):
            self.assertLessEqual(a[:2], b[:2], "progress went back")

    @h.slow  # a second or more: make test-slow
    def test_wait_timeout(self):
        job = self.background(self.slow_local(delay=1.0))
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            job.wait("images/**", timeout=0.3)
        with self.assertRaises(TimeoutError):
            job.result(timeout=0.2)
        self.assertLess(time.monotonic() - t0, 3.0, "the timeouts were not kept")
        self.assertFalse(job.done)
        self.full_speed()
        self.assertEqual(job.result(timeout=60).action, "restored")

    def test_a_pattern_that_matches_nothing_is_a_usage_error(self):
        job = self.background(self.archive)
        with self.assertRaises(ba.UsageError):
            job.wait("no_such_folder/", timeout=30)
        job.result(timeout=60)
        with self.assertRaises(ba.UsageError):
            job.wait("nothing/**/here.bin", timeout=30)

    def test_an_archive_without_an_index_in_the_background(self):
        old = h.tar_tree(self.local, os.path.join(self.drive, "old.tar.gz"), comp="gz")
        h.write_sidecar(old)
        job = self.background(old)
        job.wait("config.yaml", timeout=60)
        self.assertInPlace("config.yaml")
        r = job.result(timeout=60)
        self.assertFalse(r.progressive)
        self.assertComplete(self.dest)


class FailureTests(ProgressiveCase):
    """The restore's own exception, same class and message as in the foreground, from
    wait(), result() and files()."""

    def check_same(self, archive, fresh=True):
        fg = self.foreground_error(archive, self.dest)
        self.assertIsNotNone(fg, "the foreground restore succeeded")
        if fresh:
            shutil.rmtree(self.dest, ignore_errors=True)
        for how in ("wait", "result", "files"):
            with self.subTest(how=how):
                job = self.background(archive)
                with self.assertRaises(ba.BootstrapError) as cm:
                    if how == "wait":
                        job.wait("config.yaml", "images/**", timeout=60)
                    elif how == "result":
                        job.result(timeout=60)
                    else:
                        list(job.files())
                self.assertIs(type(cm.exception), type(fg))
                self.assertEqual(str(cm.exception), str(fg))
                self.assertEqual(cm.exception.exit_code, fg.exit_code)
                self.assertTrue(job.done)
                if fresh:
                    shutil.rmtree(self.dest, ignore_errors=True)

    def test_tampered_index(self):
        self.make("tar")
        pt.tamper_index(self.archive)
        self.check_same(self.archive)

    def test_missing_archive(self):
        self.files = {}
        os.makedirs(self.drive)
        self.check_same(os.path.join(self.drive, "missing.tar"))

    def test_damaged_member(self):
        self.make("tar")
        pt.damage_member(self.archive, "images/class_02/img_010.jpg")
        self.check_same(self.archive)


class CommandLineTests(ProgressiveCase):
    """`restore --background` starts a detached process; `wait` waits for it. In-process
    through main(); the detached restore is a real process (ended at cleanup if alive)."""

    def setUp(self):
        super().setUp()
        self.make("tar")

    def start(self, archive, *extra):
        rc, out, err = self.run_main(["restore", "--background", "--archive", archive,
                                      "--dest", self.dest, "--retry-for", "5"] + list(extra))
        self.assertEqual(rc, 0, err)
        self.assertIn("wait", out + err, "it should say how to wait")
        status = os.path.join(os.path.dirname(self.dest),
                              ".%s.restore.json" % os.path.basename(self.dest))
        def ended():  # a restore that fails at once may end before it is seen running
            try:
                with open(status) as f:
                    return "exit_code" in f.read()
            except OSError:
                return False
        self.assertTrue(h.wait_for(lambda: pt.lock_pid(self.dest) or ended(), timeout=15),
                        "no detached restore started")
        pid = pt.lock_pid(self.dest)
        if pid:
            self.addCleanup(self._kill, pid)
        return pid

    def _kill(self, pid):
        self.full_speed() if getattr(self, "http", None) else None
        if h.wait_for(lambda: not alive(pid), timeout=20):
            return
        import signal
        os.kill(pid, signal.SIGKILL)

    def log_path(self):
        return os.path.join(os.path.dirname(self.dest), ".%s.restore.log" % os.path.basename(self.dest))

    def test_restore_background_then_wait_for_everything(self):
        url = self.slow_http()
        t0 = time.monotonic()
        pid = self.start(url)
        self.assertLess(time.monotonic() - t0, 3.0, "restore --background did not return at once")
        self.assertTrue(pid and alive(pid), "the detached restore is not running")
        self.assertTrue(os.path.exists(self.log_path()), "no log beside dest")
        self.full_speed()
        rc, out, err = self.run_main(["wait", "--dest", self.dest, "--timeout", "60"])
        self.assertEqual(rc, 0, err)
        self.assertComplete(self.dest)
        self.assertNotIn("state", pt.read_marker(self.dest))

    @h.slow  # a second or more: make test-slow
    def test_wait_for_paths_returns_before_the_end(self):
        url = self.slow_http()
        pid = self.start(url)
        rc, out, err = self.run_main(["wait", "config.yaml", "tokenizer/", "--dest", self.dest,
                                      "--timeout", "30"])
        self.assertEqual(rc, 0, err)
        for r in ("config.yaml", "tokenizer/vocab.json"):
            with open(os.path.join(self.dest, r), "rb") as f:
                self.assertEqual(f.read(), self.files[r])
        self.assertTrue(alive(pid), "wait returned only at the end")

    @h.slow  # a second or more: make test-slow
    def test_wait_timeout_is_a_failure_quickly(self):
        url = self.slow_http(chunk=4096, delay=0.05)
        self.start(url)
        t0 = time.monotonic()
        rc, out, err = self.run_main(["wait", "--dest", self.dest, "--timeout", "0.5"])
        self.assertNotEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertTrue(err.strip())

    def test_wait_exits_with_the_restores_code_and_message(self):
        pt.tamper_index(self.archive)
        fg = self.foreground_error(self.archive, self.dest)
        self.assertEqual(fg.exit_code, 5)
        self.start(self.archive)
        rc, out, err = self.run_main(["wait", "--dest", self.dest, "--timeout", "60"])
        self.assertEqual(rc, 5, err)
        self.assertIn(str(fg).splitlines()[0], err)

    def test_wait_after_a_damaged_member_exits_with_the_restores_code(self):
        pt.damage_member(self.archive, "images/class_02/img_010.jpg")
        fg = self.foreground_error(self.archive, self.dest)
        shutil.rmtree(self.dest)
        self.start(self.archive)
        rc, out, err = self.run_main(["wait", "--dest", self.dest, "--timeout", "60"])
        self.assertEqual(rc, fg.exit_code, err)
        self.assertIn(rc, (5, 7))


@h.slow  # real restores held open while another run waits: a few seconds each
class LockWaitTests(ProgressiveCase):
    """save, autosave's save and a second restore on a folder whose background restore is
    running wait for it (and say so) instead of failing on the lock (exit 10)."""

    def setUp(self):
        super().setUp()
        self.make("tar")

    def test_save_waits_for_the_background_restore_and_saves_the_whole_folder(self):
        job = self.background(self.slow_local())
        job.wait("config.yaml", timeout=30)
        out = {}
        other = os.path.join(self.drive, "again.tar")

        def run():
            try:
                out["r"] = self.save(dest=self.dest, archive=other, lock_timeout=0.5,
                                     format="tar")
            except BaseException as exc:  # noqa: B902 - reported below
                out["e"] = exc
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(1.5)
        self.assertTrue(t.is_alive() or "r" in out, "save gave up: %r" % out.get("e"))
        self.full_speed()
        t.join(60)
        self.assertNotIn("e", out, "save failed instead of waiting: %r" % out.get("e"))
        self.assertEqual(out["r"].action, "saved")
        self.assertTrue(job.done)
        # it packed the whole folder, not a half-restored one
        dest2 = self.out()
        self.restore(other, dest2, drive_mount="")
        self.assertComplete(dest2)

    def test_cli_save_says_it_waits(self):
        job = self.background(self.slow_local())
        job.wait("config.yaml", timeout=30)
        threading.Timer(1.0, self.full_speed).start()
        rc, out, err = self.run_main(["save", "--dest", self.dest, "--archive",
                                      os.path.join(self.drive, "again.tar"), "--format", "tar",
                                      "--lock-timeout", "0.3", "--drive-mount", ""])
        self.assertEqual(rc, 0, err)
        self.assertIn("wait", (out + err).lower(), "save should say it waits for the restore")

    def test_a_second_restore_waits_for_the_first(self):
        url = self.slow_local()
        job = self.background(url)
        job.wait("config.yaml", timeout=30)
        threading.Timer(1.0, self.full_speed).start()
        r = self.restore(url, self.dest, lock_timeout=0.3, retry_for=5.0, drive_mount="")
        self.assertTrue(job.done)
        self.assertIn(r.action, ("unchanged", "restored"))
        self.assertComplete(self.dest)


if __name__ == "__main__":
    unittest.main(verbosity=2)
