"""A restore running in another process (reading a slow HTTP source): the lock, and kill -9
in the middle followed by a clean re-run."""
import os
import time

import helpers as h
from helpers import D, F, L

PATH = "/assets.tar.gz"
MEMBERS = [D("top"), F("top/big.bin", h.rand_bytes(1_500_000, 51)), F("top/a.txt", b"alpha\n"),
           L("top/link", "a.txt"), D("top/empty")] + \
          [F("top/many/f%02d" % i, h.rand_bytes(20_000, 60 + i)) for i in range(20)]
WANT = h.expected_tree(MEMBERS, strip_top=True)


class SlowSourceMixin:

    def start_slow(self, dest, engine="python", members=MEMBERS, chunk=8192, delay=0.02):
        self.http = h.HTTPFixture()
        self.addCleanup(self.http.close)
        self.data = h.archive_bytes(members)
        url = self.http.put(PATH, self.data)
        self.http.server.trickle[PATH] = (chunk, delay)  # ~400 KB/s: several seconds in all
        p, out, err = h.start_cli(["--archive", url, "--dest", dest, "--quiet", "--engine", engine,
                                   "--retry-for", "5", "--lock-timeout", "5"], self.tmp)
        self.addCleanup(h.kill_group, p)
        ok = h.wait_for(lambda: self.http.sent(PATH) >= 60_000 or p.poll() is not None, timeout=30)
        if p.poll() is not None:
            self.fail("the restore subprocess ended early (rc %s): %s" % (p.returncode, h.read(err)))
        self.assertTrue(ok, "the subprocess did not start reading the archive")
        return p, url, err


class LockTests(SlowSourceMixin, h.BATestCase):

    @h.slow  # a second or more: make test-slow
    def test_locked_names_holder_pid(self):
        dest = self.dest
        p, url, err = self.start_slow(dest)
        other = h.write_bytes(os.path.join(self.src_dir, "other.tar.gz"),
                              h.archive_bytes([F("x.txt", b"x")]))
        t0 = time.monotonic()
        e = self.assertBAError("Locked", self.restore, other, dest, lock_timeout=0.5)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertIn(str(p.pid), str(e))
        self.assertIsNone(p.poll(), "the lock holder should still be running")
        rc, out, errtext = self.run_main(["--archive", other, "--dest", dest, "--quiet", "--lock-timeout", "0.3"])
        self.assertEqual(rc, 10)
        self.assertIn(str(p.pid), errtext)
        # the holder was not disturbed: let it finish at full speed
        self.http.server.trickle.pop(PATH, None)
        p.wait(timeout=60)
        self.assertEqual(p.returncode, 0, h.read(err))
        self.assertTree(dest, WANT)
        self.assertNoStaging(dest)


class KillTests(SlowSourceMixin, h.BATestCase):

    def test_kill9_midway_then_rerun(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                p, url, err = self.start_slow(dest, engine=engine)
                h.kill_group(p)
                self.assertFalse(os.path.exists(os.path.join(dest, h.MARKER)),
                                 "a killed restore left a complete-looking dest")
                if os.path.exists(dest):
                    self.assertNotEqual(h.snapshot(dest), WANT)
                self.http.server.trickle.pop(PATH, None)
                r = self.restore(url, dest, engine=engine, retry_for=10)
                self.assertEqual(r.action, "restored")
                self.assertTree(dest, WANT)
                self.assertMarker(dest)
                self.assertNoStaging(dest)
                self.http.close()

    def test_kill9_with_existing_dest_keeps_old(self):
        dest = self.dest
        old = [D("top"), F("top/old.txt", b"old version\n")]
        archive_old = h.write_bytes(os.path.join(self.src_dir, "old.tar.gz"), h.archive_bytes(old))
        self.restore(archive_old, dest)
        # the new restore comes from a different source: dest is ours and untouched -> replaced
        before = h.state(dest)
        p, url, err = self.start_slow(dest)
        h.kill_group(p)
        after = h.state(dest)
        self.assertEqual(after, before, "a killed restore changed the existing dest:\n" +
                         h.summarize(after or {}, before))
        self.http.server.trickle.pop(PATH, None)
        r = self.restore(url, dest, retry_for=10)
        self.assertEqual(r.action, "restored")
        self.assertTree(dest, WANT)
        self.assertNoStaging(dest)
        self.assertEqual([x for x in os.listdir(self.work) if ".old-" in x], [])
