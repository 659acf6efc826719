"""autosave(): the background handle and _parse_duration (the `autosave` command, its loop
ended by SIGTERM/SIGINT, is in tests/test_cli.py)."""
import os
import threading
import time
from unittest import mock

import helpers as h
from helpers import ba

EVERY = "0.2s"


class AutosaveHandleTests(h.SaveTestCase):

    def setUp(self):
        super().setUp()
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        h.write_bytes(os.path.join(self.local, "d", "b.bin"), h.rand_bytes(20_000, 2))
        self.logs = []

    def start(self, every=EVERY, **kw):
        kw.setdefault("drive_mount", "")
        kw.setdefault("lock_timeout", 2.0)
        kw.setdefault("retry_for", 1.0)
        handle = ba.autosave(every=every, dest=self.local, archive=self.archive,
                             log=self.logs.append, **kw)
        self.addCleanup(handle.stop, final_save=False)
        return handle

    def wait(self, cond, what, timeout=10.0):
        self.assertTrue(h.wait_for(cond, timeout=timeout), "timed out waiting for " + what)

    @h.slow  # a second or more: make test-slow
    def test_saves_on_change_and_skips_when_idle(self):
        handle = self.start()
        self.wait(lambda: handle.last is not None, "the first round")
        self.assertEqual(handle.last.action, "saved")
        self.assertIsNone(handle.error)
        rounds = handle.rounds
        self.wait(lambda: handle.rounds >= rounds + 2, "two idle rounds")
        self.assertEqual(handle.last.action, "unchanged")
        before = h.folder_state(self.drive)
        rounds = handle.rounds
        self.wait(lambda: handle.rounds >= rounds + 2, "two more idle rounds")
        self.assertEqual(h.folder_state(self.drive), before, "an idle round wrote something")
        h.write_bytes(os.path.join(self.local, "new.txt"), b"new\n")
        self.wait(lambda: handle.last.action in ("layer", "saved"), "the save of a change")
        want = h.saved_view(self.local)
        self.wait(lambda: handle.last.action == "unchanged", "idle again")
        self.assertRestores(want)
        self.assertTrue(any("autosave" in str(line) for line in self.logs), self.logs)
        self.assertEqual(sum("nothing changed" in str(line) for line in self.logs), 0,
                         "idle rounds should not be logged: %s" % self.logs)
        r = handle.stop()
        self.assertEqual(r.action, "unchanged")
        self.assertSidecarConsistent()

    def test_failing_round_is_logged_and_retried(self):
        """A real failure: another run holds the folder's lock for a while."""
        handle = self.start(lock_timeout=0.1)
        self.wait(lambda: handle.last is not None and handle.last.action == "saved", "first save")
        with h.hold_lock(self.local):
            h.write_bytes(os.path.join(self.local, "during.txt"), b"during\n")
            self.wait(lambda: isinstance(handle.error, ba.Locked), "a failed round")
            self.assertTrue(any("fail" in str(line) for line in self.logs), self.logs)
        self.wait(lambda: handle.error is None and handle.last.action in ("layer", "saved"),
                  "the retry")
        self.assertRestores(h.saved_view(self.local))

    @staticmethod
    def failing_once(exc):
        """(a save that raises exc on its first call only, the list of its calls)."""
        real, calls = ba.save, []

        def flaky(**kw):
            calls.append(1)
            if len(calls) == 1:
                raise exc
            return real(**kw)
        return flaky, calls

    def test_error_once_then_next_round(self):
        flaky, calls = self.failing_once(ba.NoSpace("simulated: Drive is full"))
        with mock.patch.object(ba, "save", flaky):
            handle = self.start()
            self.wait(lambda: len(calls) >= 1, "the first round")
            self.wait(lambda: handle.last is not None, "the second round")
        self.assertEqual(handle.last.action, "saved")
        self.assertIsNone(handle.error)
        self.assertTrue(any("Drive is full" in str(line) for line in self.logs), self.logs)

    def test_unexpected_exception_does_not_end_the_loop(self):
        """A failing round is retried whatever it raised (an OSError from the mount, say)."""
        flaky, calls = self.failing_once(OSError(5, "Input/output error (simulated)"))
        with mock.patch.object(ba, "save", flaky), \
                mock.patch.object(threading, "excepthook", lambda args: None):
            handle = self.start()
            ok = h.wait_for(lambda: handle.last is not None, timeout=3)
        self.assertTrue(ok, "no round after the one that raised OSError (calls: %d, error %r)"
                        % (len(calls), handle.error))

    def test_stop_does_a_final_save(self):
        handle = self.start(every="1h")
        h.write_bytes(os.path.join(self.local, "late.txt"), b"late\n")
        r = handle.stop()
        self.assertEqual(r.action, "saved")
        self.assertIs(handle.last, r)
        self.assertRestores(h.saved_view(self.local))
        # a change after a save: the final save of a second handle writes a layer
        handle2 = self.start(every="1h")
        h.write_bytes(os.path.join(self.local, "later.txt"), b"later\n")
        r2 = handle2.stop()
        self.assertEqual(r2.action, "layer")
        self.assertRestores(h.saved_view(self.local))
        rounds = handle2.rounds
        time.sleep(0.3)
        self.assertEqual(handle2.rounds, rounds, "rounds after stop()")

    def test_stop_without_final_save(self):
        handle = self.start(every="1h")
        h.write_bytes(os.path.join(self.local, "late.txt"), b"late\n")
        self.assertIsNone(handle.stop(final_save=False))
        self.assertFalse(os.path.exists(self.archive))

    @h.slow  # a second or more: make test-slow
    def test_stop_while_running(self):
        """stop() during the rounds: the loop ends, the final save holds the last change."""
        handle = self.start()
        self.wait(lambda: handle.rounds >= 2, "two rounds")
        h.write_bytes(os.path.join(self.local, "last.txt"), b"last\n")
        r = handle.stop()
        self.assertIn(r.action, ("saved", "layer", "unchanged"))
        self.assertRestores(h.saved_view(self.local))
        rounds = handle.rounds
        time.sleep(0.5)
        self.assertEqual(handle.rounds, rounds)

    def test_class_and_save_now(self):
        saver = ba.Autosave("30s", log=self.logs.append, dest=self.local, archive=self.archive,
                            drive_mount="")
        self.assertEqual(saver.every, 30)
        self.assertEqual(saver.rounds, 0)
        r = saver.save_now()
        self.assertEqual((r.action, saver.rounds), ("saved", 1))
        self.assertEqual(saver.save_now().action, "unchanged")
        self.assertIsNone(saver.error)
        saver.start()
        self.assertEqual(saver.stop().action, "unchanged")

    def test_every_that_is_no_duration_is_a_usage_error_and_saves_nothing(self):
        for bad in ("", "0", "-1m", "soon", "5x"):
            with self.subTest(every=bad):
                self.assertBAError("UsageError", ba.autosave, every=bad, dest=self.local,
                                   archive=self.archive, drive_mount="")
        rc, out, err = self.run_main(["autosave", "--every", "whenever", "--dest", self.local,
                                      "--archive", self.archive, "--drive-mount", ""])
        self.assertEqual(rc, 2, err)
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(self.archive))


class ParseDurationTests(h.BATestCase):

    def test_seconds_minutes_hours_and_bare_numbers_are_read(self):
        for text, seconds in (("30s", 30), ("15m", 900), ("1h", 3600), ("0.2s", 0.2),
                              ("2", 2), (" 5M ", 300), ("1.5h", 5400), (45, 45)):
            with self.subTest(text=text):
                self.assertAlmostEqual(ba._parse_duration(text), seconds)

    def test_empty_zero_negative_and_unknown_units_are_usage_errors(self):
        for text in ("", " ", "s", "m", "abc", "10x", "1d", "0", "0s", "-5", "-1m", "1 2s",
                     "ten minutes", None):
            with self.subTest(text=text):
                self.assertBAError("UsageError", ba._parse_duration, text)

    def test_nan_and_inf_are_usage_errors(self):
        """nan and inf are no durations (an endless or undefined wait)."""
        for text in ("nan", "inf", "infs", "nanm", "-inf"):
            with self.subTest(text=text):
                self.assertBAError("UsageError", ba._parse_duration, text)


if __name__ == "__main__":
    import unittest
    unittest.main()
