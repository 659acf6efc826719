"""Source problems: Drive not mounted, missing archive (sibling listing), dead mount
(ENOTCONN, simulated with mocks), mounting Drive from a (fake) Colab kernel."""
import errno
import os
import re
import sys
from unittest import mock

import helpers as h
from helpers import D, F, ba

MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/b.bin", h.rand_bytes(50_000, 4))]


class SourceMissingTests(h.BATestCase):

    def test_drive_not_mounted(self):
        drive = os.path.join(self.tmp, "drive")  # a plain folder, not a mount point
        os.makedirs(drive)
        archive = os.path.join(drive, "MyDrive", "assets.tar.gz")
        e = self.assertBAError("SourceMissing", self.restore, archive, drive_mount=drive)
        self.assertIn("drive.mount", str(e))
        self.assertUntouched(self.dest, None)

    def test_drive_not_mounted_from_env(self):
        drive = os.path.join(self.tmp, "drive")
        os.makedirs(drive)
        os.environ["BOOTSTRAP_ASSETS_DRIVE_MOUNT"] = drive
        archive = os.path.join(drive, "MyDrive", "assets.tar.gz")
        e = self.assertBAError("SourceMissing", self.restore, archive)
        self.assertIn("drive.mount", str(e))
        rc, out, err = self.run_main(["--archive", archive, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 3)
        self.assertIn("drive.mount", err)

    def test_missing_archive_lists_siblings_with_sizes(self):
        folder = os.path.join(self.tmp, "MyDrive", "project")
        real = h.write_bytes(os.path.join(folder, "assets.tar.gz"), h.rand_bytes(12_345, 8))
        h.write_bytes(os.path.join(folder, "notes.txt"), b"n" * 777)
        os.makedirs(os.path.join(folder, "checkpoints"))
        typo = os.path.join(folder, "asests.tar.gz")
        e = self.assertBAError("SourceMissing", self.restore, typo)
        msg = str(e)
        self.assertIn("asests.tar.gz", msg)
        self.assertIn("assets.tar.gz", msg)
        self.assertIn("notes.txt", msg)
        size = os.path.getsize(real)
        self.assertTrue(re.search(r"12[,.]?345|12(\.\d+)?\s*[kK]", msg), "size of assets.tar.gz not shown: " + msg)
        self.assertTrue(re.search(r"777|0\.8\s*[kK]|0\.7\s*[kK]|1\s*[kK]", msg), "size of notes.txt not shown: " + msg)
        self.assertUntouched(self.dest, None)
        self.assertEqual(size, 12_345)

    def test_archive_in_a_missing_folder_is_source_missing(self):
        archive = os.path.join(self.tmp, "no", "such", "folder", "assets.tar.gz")
        e = self.assertBAError("SourceMissing", self.restore, archive)
        self.assertIn("assets.tar.gz", str(e))
        self.assertUntouched(self.dest, None)


class DeadMountTests(h.BATestCase):

    @h.slow  # a second or more: make test-slow
    def test_enotconn_is_dead_mount(self):
        mnt = os.path.join(self.tmp, "deadmnt")
        archive = h.write_bytes(os.path.join(mnt, "MyDrive", "assets.tar.gz"), h.archive_bytes(MEMBERS))
        with h.DeadMountSim(mnt) as sim:
            e = self.assertBAError("DeadMount", self.restore, archive, retry_for=0.5)
        self.assertGreater(sim.hits, 0)
        self.assertUntouched(self.dest, None)
        rc_holder = []
        with h.DeadMountSim(mnt):
            rc, out, err = self.run_main(["--archive", archive, "--dest", self.dest, "--quiet",
                                          "--retry-for", "0.3"])
            rc_holder.append(rc)
        self.assertEqual(rc_holder, [4])
        self.assertNotIn("Traceback", err)
        self.assertTrue(str(e))

    def test_enotconn_midway_is_dead_mount_and_dest_untouched(self):
        """The mount dies after the restore started: reads fail with ENOTCONN for good."""
        mnt = os.path.join(self.tmp, "deadmnt")
        archive = h.write_bytes(os.path.join(mnt, "assets.tar.gz"), h.archive_bytes(MEMBERS, "tar"))
        self.restore(archive)
        before = h.state(self.dest)
        h.write_bytes(archive, h.archive_bytes(MEMBERS + [F("top/c.txt", b"c")], "tar"), mtime=h.MTIME + 10)
        with h.FlakyReads(archive, errno.ENOTCONN, fail_calls=(), fail_from=2) as fr:
            self.assertBAError("DeadMount", self.restore, archive, retry_for=0.5)
        self.assertGreater(fr.raised, 0)
        self.assertUntouched(self.dest, before)


class ColabMountTests(h.BATestCase):

    def test_kernel_mounts_drive(self):
        drive = os.path.join(self.tmp, "content", "drive")
        os.makedirs(drive)
        archive = os.path.join(drive, "MyDrive", "assets.tar.gz")
        data = h.archive_bytes(MEMBERS)
        calls = []

        def mount(mountpoint, *a, **kw):
            calls.append((mountpoint, a, kw))
            h.write_bytes(archive, data)  # the "mounted" Drive now shows the file

        drive_mod = h.fake_module("google.colab.drive", mount=mount)
        colab = h.fake_module("google.colab", drive=drive_mod)
        google = h.fake_module("google", colab=colab)
        mods = {"google": google, "google.colab": colab, "google.colab.drive": drive_mod,
                "ipykernel": h.fake_module("ipykernel")}
        with mock.patch.dict(sys.modules, mods):
            try:
                r = self.restore(archive, drive_mount=drive)
            except ba.BootstrapError as e:  # the fake mount is not a real mount point
                r = None
                self.assertIsInstance(e, (ba.SourceMissing, ba.DeadMount), str(e))
        self.assertTrue(calls, "google.colab.drive.mount() was not called")
        self.assertEqual(os.path.abspath(calls[0][0]), os.path.abspath(drive))
        if r is not None:
            self.assertTree(self.dest, h.expected_tree(MEMBERS, strip_top=True))
