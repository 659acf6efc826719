"""Checksum verification: --sha256, sidecar ARCHIVE.sha256, none, mismatch, bad hex."""
import os

import helpers as h
from helpers import D, F

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/b.bin", h.rand_bytes(20_000, 2))]


class VerifyTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"), h.archive_bytes(MEMBERS))
        self.digest = h.sha256_file(self.archive)
        self.want = h.expected_tree(MEMBERS, strip_top=True)

    def test_sha256_flag_correct(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                r = self.restore(self.archive, dest, sha256=self.digest, engine=engine)
                self.assertTrue(r.verified)
                self.assertEqual(r.checksum_source, "--sha256")
                self.assertEqual(r.sha256, self.digest)
                self.assertTree(dest, self.want)

    def test_sha256_flag_uppercase_accepted(self):
        r = self.restore(self.archive, sha256=self.digest.upper())
        self.assertTrue(r.verified)

    def test_sidecar_checksum_verifies_the_restore(self):
        h.write_sidecar(self.archive)
        r = self.restore(self.archive)
        self.assertTrue(r.verified)
        self.assertEqual(r.checksum_source, "sidecar")
        self.assertEqual(r.sha256, self.digest)
        self.assertTree(self.dest, self.want)

    def test_sidecar_binary_mode_star(self):
        """`sha256sum -b` writes `<hex> *<name>`."""
        with open(self.archive + ".sha256", "w") as f:
            f.write("%s *%s\n" % (self.digest, os.path.basename(self.archive)))
        r = self.restore(self.archive)
        self.assertTrue(r.verified)
        self.assertEqual(r.checksum_source, "sidecar")

    def test_flag_wins_over_sidecar(self):
        h.write_sidecar(self.archive, "0" * 64)
        r = self.restore(self.archive, sha256=self.digest)
        self.assertTrue(r.verified)
        self.assertEqual(r.checksum_source, "--sha256")

    def test_without_a_checksum_restore_works_unverified_with_the_sha256(self):
        r = self.restore(self.archive)
        self.assertFalse(r.verified)
        self.assertIsNone(r.checksum_source)
        self.assertEqual(r.sha256, self.digest)
        self.assertTree(self.dest, self.want)

    def test_sha256_flag_mismatch_is_checksum_mismatch_naming_both_sums(self):
        wrong = "ab" * 32
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                e = self.assertBAError("ChecksumMismatch", self.restore, self.archive, dest,
                                       sha256=wrong, engine=engine)
                self.assertIn(wrong, str(e))
                self.assertIn(self.digest, str(e))
                self.assertUntouched(dest, None)

    def test_mismatch_sidecar_existing_dest_untouched(self):
        self.restore(self.archive)
        before = h.state(self.dest)
        new = h.archive_bytes([D("top"), F("top/a.txt", b"CHANGED\n")])
        h.write_bytes(self.archive, new, mtime=h.MTIME + 5000)
        wrong = h.write_sidecar(self.archive, "cd" * 32)
        e = self.assertBAError("ChecksumMismatch", self.restore, self.archive)
        self.assertIn(wrong, str(e))
        self.assertIn(h.sha256_bytes(new), str(e))
        self.assertUntouched(self.dest, before)

    def test_bad_hex_is_usage_error(self):
        for bad in ("xyz", "ab" * 31, "g" * 64, "ab" * 33):
            with self.subTest(sha256=bad):
                self.assertBAError("UsageError", self.restore, self.archive, sha256=bad)
                self.assertUntouched(self.dest, None)
                rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest,
                                              "--sha256", bad, "--quiet"])
                self.assertEqual(rc, 2)
                self.assertTrue(err.strip())
                self.assertNotIn("Traceback", err)
                self.assertFalse(os.path.exists(self.dest))
