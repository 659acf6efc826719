"""Transient read errors on the source are retried (reopen + seek) and the result is exact."""
import errno
import os

import helpers as h
from helpers import D, F, ba

# several MiB so the archive is read in several pieces and a failure lands mid-stream
MEMBERS = [D("top")] + [F("top/f%d.bin" % i, h.rand_bytes(700_000, 20 + i)) for i in range(5)] + \
          [F("top/small.txt", b"small\n")]


class TransientErrorTests(h.BATestCase):

    def _check(self, err, comp, fail_calls, engine, sidecar=False):
        base = self.subdir()
        archive = h.write_bytes(os.path.join(base, "assets.tar.gz"), h.archive_bytes(MEMBERS, comp))
        if sidecar:
            h.write_sidecar(archive)
        dest = os.path.join(base, "_assets")
        with h.FlakyReads(archive, err, fail_calls=fail_calls) as fr:
            r = self.restore(archive, dest, engine=engine, retry_for=20)
        self.assertEqual(fr.raised, len(fail_calls),
                         "fault injection did not reach the module's reads (%d read calls seen)" % fr.calls)
        self.assertEqual(r.action, "restored")
        self.assertEqual(r.sha256, h.sha256_file(archive))
        if sidecar:
            self.assertTrue(r.verified)
        self.assertTree(dest, h.expected_tree(MEMBERS, strip_top=True))
        self.assertNoStaging(dest)

    @h.slow
    def test_eio_for_a_while_is_retried_until_it_works(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                self._check(errno.EIO, "gz", (2, 3, 4), engine, sidecar=True)

    def test_first_read_fails(self):
        self._check(errno.EIO, "gz", (1,), "python")

    @h.slow  # a second or more: make test-slow
    def test_other_transient_errnos(self):
        for err in (errno.ENOTCONN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ESTALE):
            with self.subTest(errno=errno.errorcode[err]):
                self._check(err, "tar", (3, 5), "python")

    @h.slow  # a second or more: make test-slow
    def test_uncompressed_and_xz(self):
        for comp in ("tar", "xz"):
            with self.subTest(comp=comp):
                self._check(errno.EIO, comp, (2,), "python")

    def test_persistent_eio_fails_cleanly(self):
        base = self.subdir()
        archive = h.write_bytes(os.path.join(base, "assets.tar.gz"), h.archive_bytes(MEMBERS))
        dest = os.path.join(base, "_assets")
        with h.FlakyReads(archive, errno.EIO, fail_calls=(), fail_from=2) as fr:
            with self.assertRaises(ba.BootstrapError):
                self.restore(archive, dest, retry_for=0.5)
        self.assertGreater(fr.raised, 0)
        self.assertUntouched(dest, None)


class BackoffTests(h.BATestCase):
    """The one retry schedule: waits doubling from `first` up to 5 s, within a time limit."""

    def test_waits_double_and_stop_at_the_limit(self):
        slept = []
        with h.mock.patch.object(ba.time, "sleep", slept.append):
            backoff = ba._Backoff(60, first=0.5)
            for _ in range(6):
                self.assertTrue(backoff.wait())
        self.assertEqual(slept, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0])
        self.assertFalse(ba._Backoff(0).wait(), "a zero limit allows no retry")


class SaveReadBackTests(h.BATestCase):
    """save's read-back (ba._ReadBack): transient errors are retried, and data that never
    becomes readable fails within the time limit instead of waiting forever."""

    def written(self, size=3 << 20):
        path = os.path.join(self.subdir(), "archive.tmp")
        data = h.rand_bytes(size, 5)
        h.write_bytes(path, data)
        return path, data

    def test_transient_errors_are_retried(self):
        path, data = self.written()
        with h.FlakyReads(path, errno.EIO, fail_calls=(2, 3)) as fr:
            reader = ba._ReadBack(path, retry_for=20)
            self.assertEqual(reader.digest(len(data)), h.sha256_bytes(data))
        self.assertEqual(fr.raised, 2, "the faults did not reach the read-back")

    def test_bytes_that_never_appear_fail_in_time(self):
        path, data = self.written()
        reader = ba._ReadBack(path, retry_for=0.5)
        with self.assertRaisesRegex(ba.BootstrapError, "cannot be read"):
            reader.digest(len(data) + 4096)  # the writer claims more than the file holds

    def test_persistent_errors_fail_in_time(self):
        path, data = self.written()
        with h.FlakyReads(path, errno.EIO, fail_calls=(), fail_from=1):
            reader = ba._ReadBack(path, retry_for=0.5)
            with self.assertRaisesRegex(ba.BootstrapError, "Input/output error"):
                reader.digest(len(data))
