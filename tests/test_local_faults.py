"""Local faults around the destination (what a real machine throws at a new user), in-process:
a destination behind a symlink, names of ours already taken (lock, staging); SIGTERM and
Ctrl-C are in tests/test_cli.py. tests/e2e_local_faults.py runs the same promises as real
processes, on tmpfs mounts and drivesim."""
import os

import helpers as h
from helpers import D, F, L, ba

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/run.sh", b"#!/bin/sh\n", mode=0o755),
           L("top/link", "a.txt")]
WANT = h.expected_tree(MEMBERS, strip_top=True)


class FaultTestCase(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                                     h.archive_bytes(MEMBERS))


class SymlinkedDestTests(FaultTestCase):
    """`_assets -> /elsewhere/real`: the link is followed and kept; the folder is its target."""

    def test_restore_through_a_link_installs_into_its_target_and_keeps_the_link(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                root = self.subdir()
                real = os.path.join(root, "disk", "real")
                os.makedirs(real)
                os.makedirs(os.path.join(root, "content"))
                link = os.path.join(root, "content", "_assets")
                os.symlink(real, link)
                r = self.restore(self.archive, link, engine=engine)
                self.assertEqual(r.action, "restored")
                self.assertEqual(r.dest, real)
                self.assertEqual(os.readlink(link), real)
                self.assertTree(real, WANT)
                self.assertNoStaging(real)
                self.assertEqual(os.listdir(os.path.join(root, "content")), ["_assets"])
                self.assertEqual(self.restore(self.archive, link, engine=engine).action,
                                 "unchanged")
                self.assertEqual(self.restore(self.archive, real, engine=engine).action,
                                 "unchanged")

    def test_a_relative_dangling_link_gets_its_target_made(self):
        root = self.subdir()
        os.makedirs(os.path.join(root, "content"))
        os.makedirs(os.path.join(root, "disk"))
        link = os.path.join(root, "content", "_assets")
        os.symlink("../disk/new", link)
        r = self.restore(self.archive, link)
        self.assertEqual(r.dest, os.path.join(root, "disk", "new"))
        self.assertEqual(os.readlink(link), "../disk/new")
        self.assertTree(link, WANT)

    def test_a_changed_target_is_refused_through_the_link_too(self):
        root = self.subdir()
        real = os.path.join(root, "real")
        os.makedirs(real)
        h.write_bytes(os.path.join(real, "mine.txt"), b"user's file")
        link = os.path.join(root, "_assets")
        os.symlink(real, link)
        before = h.state(real)
        e = self.assertBAError("DestinationChanged", self.restore, self.archive, link)
        self.assertIn(real, str(e))
        self.assertUntouched(real, before)
        self.assertEqual(os.readlink(link), real)

    def test_save_through_a_link_packs_the_target(self):
        root = self.subdir()
        real = os.path.join(root, "real")
        self.restore(self.archive, real)
        link = os.path.join(root, "_assets")
        os.symlink(real, link)
        h.write_bytes(os.path.join(real, "new.txt"), b"new")
        saved = os.path.join(root, "drive", "assets.tar.gz")
        r = ba.save(link, saved, quiet=True, lock_timeout=5, retry_for=2)
        self.assertEqual(r.action, "saved")
        out = os.path.join(root, "out", "_assets")
        self.restore(saved, out)
        self.assertEqual(h.snapshot(out), h.snapshot(real))
        self.assertEqual(os.readlink(link), real)


class NamesOfOursTakenTests(FaultTestCase):

    def test_a_symlink_at_the_lock_name_is_refused_and_its_target_untouched(self):
        """It used to be followed: the file it pointed to was truncated and overwritten."""
        bait = h.write_bytes(os.path.join(self.tmp, "precious.txt"), b"precious")
        lock = os.path.join(self.work, "._assets.lock")
        os.symlink(bait, lock)
        e = self.assertBAError("BootstrapError", self.restore, self.archive)
        self.assertFalse(os.path.lexists(self.dest))
        h.write_bytes(os.path.join(self.dest, "x.txt"), b"x")
        e2 = self.assertBAError("BootstrapError", ba.save, self.dest,
                                os.path.join(self.tmp, "drive", "assets.tar.gz"), quiet=True)
        for error in (e, e2):
            self.assertIn(f"{lock} is in the way", str(error))
            self.assertIn("a symlink", str(error))
        with open(bait, "rb") as f:
            self.assertEqual(f.read(), b"precious")
        self.assertEqual(os.readlink(lock), bait)

    def test_a_folder_at_the_lock_name_is_refused_with_the_fix(self):
        os.makedirs(os.path.join(self.work, "._assets.lock", "inside"))
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest, "-q"])
        self.assertEqual(rc, 1)
        self.assertIn("is in the way", err)
        self.assertIn("a folder", err)
        self.assertIn("Fix: move", err)
        self.assertFalse(os.path.lexists(self.dest))
        self.assertTrue(os.path.isdir(os.path.join(self.work, "._assets.lock", "inside")))

    def test_files_and_links_under_the_staging_prefix_are_not_ours_and_stay(self):
        """A dead run's staging folder is removed; a file or a link that merely shares the
        prefix used to fail a restore after its install (exit 1, 'Not a directory')."""
        bait_dir = os.path.join(self.tmp, "bait")
        h.write_bytes(os.path.join(bait_dir, "keep.txt"), b"keep")
        stale = os.path.join(self.work, "._assets.staging-999-dead", "root", "ro")
        os.makedirs(stale)
        os.chmod(stale, 0o555)
        h.write_bytes(os.path.join(self.work, "._assets.staging-notes"), b"mine")
        os.symlink(bait_dir, os.path.join(self.work, "._assets.staging-link"))
        for engine in h.engines():
            with self.subTest(engine=engine):
                rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest,
                                              "-q", "--engine", engine, "--force"])
                self.assertEqual(rc, 0, err)
                self.assertTree(self.dest, WANT)
                self.assertEqual(sorted(os.listdir(self.work)),
                                 ["._assets.staging-link", "._assets.staging-notes", "_assets"])
                self.assertEqual(os.listdir(bait_dir), ["keep.txt"])


