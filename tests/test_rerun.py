"""Re-run semantics: unchanged no-op (archive not read), archive changed, local changes,
--force moving aside, foreign and empty destinations."""
import os
import time

import helpers as h
from helpers import D, F, L

V1 = [D("top"), F("top/a.txt", b"version one\n"), D("top/sub"), F("top/sub/b.bin", h.rand_bytes(10_000, 1)),
      F("top/gone_in_v2.txt", b"only in v1\n"), L("top/link", "a.txt"), D("top/empty")]
V2 = [D("top"), F("top/a.txt", b"version two, longer\n"), D("top/sub"), F("top/sub/b.bin", h.rand_bytes(12_000, 2)),
      F("top/new_in_v2.txt", b"new\n"), L("top/link", "a.txt")]


class RerunTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = os.path.join(self.src_dir, "assets.tar.gz")
        self.put(V1, h.MTIME)

    def put(self, members, mtime):
        h.write_bytes(self.archive, h.archive_bytes(members), mtime=mtime)

    def test_unchanged_noop_does_not_read_archive(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                r1 = self.restore(self.archive, dest, engine=engine)
                self.assertEqual(r1.action, "restored")
                before = h.state(dest)
                # same size, same mtime, same inode, different bytes: only reading would notice
                st = os.stat(self.archive)
                with open(self.archive, "r+b") as f:
                    f.write(h.rand_bytes(st.st_size, 99))
                os.utime(self.archive, ns=(st.st_atime_ns, st.st_mtime_ns))
                t0 = time.monotonic()
                r2 = self.restore(self.archive, dest, engine=engine)
                elapsed = time.monotonic() - t0
                self.assertEqual(r2.action, "unchanged")
                self.assertEqual(list(r2.local_changes), [])
                self.assertLess(elapsed, 2.0)
                self.assertEqual(h.state(dest), before)
                self.assertNoStaging(dest)
                self.put(V1, h.MTIME)  # restore the real archive for the next engine

    def test_archive_changed_restores_again(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                self.put(V1, h.MTIME)
                dest = os.path.join(self.subdir(), "_assets")
                self.restore(self.archive, dest, engine=engine)
                self.assertTree(dest, h.expected_tree(V1, strip_top=True))
                self.put(V2, h.MTIME + 100)
                r = self.restore(self.archive, dest, engine=engine)
                self.assertEqual(r.action, "restored")
                self.assertIsNone(r.moved_aside)
                self.assertTree(dest, h.expected_tree(V2, strip_top=True))
                self.assertEqual(r.sha256, h.sha256_file(self.archive))
                self.assertNoStaging(dest)
                parent = os.path.dirname(dest)
                self.assertEqual([x for x in os.listdir(parent) if ".old-" in x], [],
                                 "an untouched dest must be replaced, not moved aside")

    def test_local_change_and_archive_changed_is_destination_changed(self):
        self.restore(self.archive)
        edited = os.path.join(self.dest, "sub", "b.bin")
        with open(edited, "wb") as f:
            f.write(b"user edit")
        before = h.state(self.dest)
        self.put(V2, h.MTIME + 100)
        e = self.assertBAError("DestinationChanged", self.restore, self.archive)
        self.assertIn("sub/b.bin", str(e))
        self.assertUntouched(self.dest, before)
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 9)
        self.assertIn("sub/b.bin", err)

    def test_local_change_kinds_listed(self):
        self.restore(self.archive)
        with open(os.path.join(self.dest, "a.txt"), "wb") as f:
            f.write(b"modified by user, different size\n")
        os.remove(os.path.join(self.dest, "gone_in_v2.txt"))
        with open(os.path.join(self.dest, "sub", "added_by_user.txt"), "wb") as f:
            f.write(b"added\n")
        self.put(V2, h.MTIME + 100)
        e = self.assertBAError("DestinationChanged", self.restore, self.archive)
        for name in ("a.txt", "gone_in_v2.txt", "sub/added_by_user.txt"):
            self.assertIn(name, str(e))

    def test_force_moves_changed_dest_aside(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                self.put(V1, h.MTIME)
                dest = os.path.join(self.subdir(), "_assets")
                self.restore(self.archive, dest, engine=engine)
                edited = os.path.join(dest, "a.txt")
                with open(edited, "wb") as f:
                    f.write(b"precious user edit\n")
                self.put(V2, h.MTIME + 100)
                r = self.restore(self.archive, dest, force=True, engine=engine)
                self.assertEqual(r.action, "restored")
                self.assertTrue(r.moved_aside)
                self.assertEqual(os.path.dirname(os.path.abspath(r.moved_aside)), os.path.dirname(dest))
                self.assertRegex(os.path.basename(r.moved_aside), r"^_assets\.old-\d{8}-\d{6}")
                with open(os.path.join(r.moved_aside, "a.txt"), "rb") as f:
                    self.assertEqual(f.read(), b"precious user edit\n")
                self.assertTrue(os.path.isfile(os.path.join(r.moved_aside, "gone_in_v2.txt")))
                self.assertTree(dest, h.expected_tree(V2, strip_top=True))
                self.assertNoStaging(dest)

    def test_local_change_same_archive_is_unchanged_and_kept(self):
        self.restore(self.archive)
        edited = os.path.join(self.dest, "a.txt")
        with open(edited, "wb") as f:
            f.write(b"user edit, longer than before\n")
        before = h.state(self.dest)
        r = self.restore(self.archive)
        self.assertEqual(r.action, "unchanged")
        self.assertTrue(r.local_changes)
        self.assertTrue(any("a.txt" in c for c in r.local_changes), r.local_changes)
        self.assertEqual(h.state(self.dest), before)
        with open(edited, "rb") as f:
            self.assertEqual(f.read(), b"user edit, longer than before\n")

    def test_foreign_nonempty_dest(self):
        os.makedirs(self.dest)
        with open(os.path.join(self.dest, "mine.txt"), "wb") as f:
            f.write(b"not made by bootstrap_assets\n")
        before = h.state(self.dest)
        e = self.assertBAError("DestinationChanged", self.restore, self.archive)
        self.assertUntouched(self.dest, before)
        self.assertTrue(str(e))
        r = self.restore(self.archive, force=True)
        self.assertTrue(r.moved_aside)
        with open(os.path.join(r.moved_aside, "mine.txt"), "rb") as f:
            self.assertEqual(f.read(), b"not made by bootstrap_assets\n")
        self.assertTree(self.dest, h.expected_tree(V1, strip_top=True))

    def test_empty_existing_dest_is_fine(self):
        os.makedirs(self.dest)
        r = self.restore(self.archive)
        self.assertEqual(r.action, "restored")
        self.assertIsNone(r.moved_aside)
        self.assertTree(self.dest, h.expected_tree(V1, strip_top=True))

    def test_marker_excluded_from_local_changes(self):
        self.restore(self.archive)
        r = self.restore(self.archive)
        self.assertEqual(r.action, "unchanged")
        self.assertFalse(any(h.MARKER in c for c in r.local_changes))
        self.assertMarker(self.dest)

    def test_failed_restore_over_existing_keeps_old(self):
        """Archive changed to a corrupt one: the old tree and marker stay, and a later
        re-run with the original archive is still a no-op."""
        self.restore(self.archive)
        before = h.state(self.dest)
        with open(self.archive, "rb") as f:
            good = f.read()
        h.write_bytes(self.archive, good[: len(good) // 2], mtime=h.MTIME + 10)
        self.assertBAError("CorruptArchive", self.restore, self.archive)
        self.assertUntouched(self.dest, before)
        h.write_bytes(self.archive, good, mtime=h.MTIME)
        self.assertEqual(self.restore(self.archive).action, "unchanged")
