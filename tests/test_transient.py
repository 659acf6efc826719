"""Transient read errors on the source are retried (reopen + seek) and the result is exact."""
import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402
from helpers import D, F, ba  # noqa: E402

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

    def test_eio_then_works(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                self._check(errno.EIO, "gz", (2, 3, 4), engine, sidecar=True)

    def test_first_read_fails(self):
        self._check(errno.EIO, "gz", (1,), "python")

    def test_other_transient_errnos(self):
        for err in (errno.ENOTCONN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ESTALE):
            with self.subTest(errno=errno.errorcode[err]):
                self._check(err, "tar", (3, 5), "python")

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
