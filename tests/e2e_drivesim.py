"""End-to-end tests: bootstrap_assets restores over drivesim, a FUSE mount that behaves like
Google Drive in Colab (bandwidth cap, open latency, transient faults, a dead mount).

Run with `make e2e` (python3 tests/run.py e2e). Needs /dev/fuse and ../shared/drivesim
(its setup.sh installs libfuse and mfusepy). The whole suite takes well under a minute.
"""
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import bootstrap_assets as ba  # noqa: E402
from drivesim_fixture import (MARKER, MAKE_ASSETS, SCRIPT, DriveSim,  # noqa: E402
                              DriveSimTestCase, clean_env, cli, run, tree_digest)

NAME = "_assets"          # the dest folder's name, and the archive's one top folder
ARCHIVE = "assets.tar.gz"
W = None                  # module work dir
V1 = V2 = None            # Version("v1"/"v2")


class Version:
    """A source tree, its .tar.gz (one top folder `_assets`) with a sha256sum sidecar, and
    the tree's digest to compare restores against."""

    def __init__(self, label, src_parent):
        self.label = label
        self.src = os.path.join(src_parent, NAME)
        folder = os.path.join(W, "archives", label)
        os.makedirs(folder)
        self.archive = os.path.join(folder, ARCHIVE)
        run(["tar", "czf", self.archive, "-C", src_parent, NAME])
        run(["sh", "-c", f"sha256sum {ARCHIVE} > {ARCHIVE}.sha256"], cwd=folder)
        self.size = os.path.getsize(self.archive)
        self.digest = tree_digest(self.src)

    def drive(self, name):
        """A fresh BACKING dir holding MyDrive/assets.tar.gz (+ .sha256) of this version."""
        backing = os.path.join(W, name)
        mydrive = os.path.join(backing, "MyDrive")
        os.makedirs(mydrive)
        for f in (ARCHIVE, ARCHIVE + ".sha256"):
            os.link(os.path.join(os.path.dirname(self.archive), f), os.path.join(mydrive, f))
        return backing


def leftovers(dest):
    """Staging folders of dest left in its parent."""
    parent, name = os.path.split(dest)
    return glob.glob(os.path.join(parent, f".{name}.staging-*"))


def setUpModule():
    global W, V1, V2
    W = tempfile.mkdtemp(prefix="bootstrap-e2e-")
    src1 = os.path.join(W, "src1")
    run([sys.executable, MAKE_ASSETS, "create", os.path.join(src1, NAME),
         "--profile", "mixed", "--scale", "0.01"])
    V1 = Version("v1", src1)
    src2 = os.path.join(W, "src2")
    shutil.copytree(src1, src2, symlinks=True)
    run([sys.executable, MAKE_ASSETS, "mutate", os.path.join(src2, NAME)])
    V2 = Version("v2", src2)
    assert V1.digest != V2.digest


def tearDownModule():
    if W:
        shutil.rmtree(W, ignore_errors=True)


class E2ECase(DriveSimTestCase):

    def new_dest(self, label):
        parent = tempfile.mkdtemp(prefix=f"content-{label}-", dir=W)
        return os.path.join(parent, NAME)

    def assertRestored(self, dest, version, msg=""):
        """dest holds version's source tree, and our marker."""
        self.assertTreeDigest(dest, version.digest, f"(not the {version.label} source) {msg}")
        self.assertTrue(os.path.isfile(os.path.join(dest, MARKER)), f"no {MARKER} in {dest}")

    def assertNoStaging(self, dest):
        self.assertEqual(leftovers(dest), [], "staging folder left beside dest")


class RestoreOverMount(E2ECase):
    """One drivesim mount at its defaults (100 MB/s, 20 ms per open), shared by the tests."""

    @classmethod
    def setUpClass(cls):
        cls.ds = DriveSim(V1.drive("drive-shared"), os.path.join(W, "mnt-shared")).start()
        cls.archive = os.path.join(cls.ds.mount, "MyDrive", ARCHIVE)

    @classmethod
    def tearDownClass(cls):
        cls.ds.cleanup()

    def bytes_read(self):
        return self.ds.stats().get("bytes_read", 0)

    def test_every_engine_restores_the_source_reading_the_archive_once(self):
        engines = ba.available_engines()
        self.assertIn("python", engines)
        for engine in engines + ["auto"]:
            with self.subTest(engine=engine):
                dest = self.new_dest(engine)
                before = self.bytes_read()
                r = ba.restore(self.archive, dest, engine=engine, quiet=True, retry_for=20)
                read = self.bytes_read() - before
                self.assertEqual(r.action, "restored")
                self.assertIn(r.engine, engines)
                if engine != "auto":
                    self.assertEqual(r.engine, engine)
                self.assertEqual(r.format, "gz")
                self.assertEqual(r.checksum_source, "sidecar")
                self.assertTrue(r.verified)
                self.assertEqual(r.archive_bytes, V1.size)
                with open(V1.archive, "rb") as f:
                    self.assertEqual(r.sha256, hashlib.sha256(f.read()).hexdigest())
                self.assertEqual(r.moved_aside, None)
                self.assertEqual(r.local_changes, [])
                self.assertRestored(dest, V1, f"(engine {engine})")
                self.assertNoStaging(dest)
                # read once: the archive plus its small sidecar, not a copy then a re-read
                self.assertGreaterEqual(read, V1.size)
                self.assertLess(read, V1.size * 1.05 + 65536,
                                f"drivesim served {read} bytes for a {V1.size}-byte archive")

    def test_rerun_is_a_noop_that_does_not_read_the_archive(self):
        dest = self.new_dest("rerun")
        first = ba.restore(self.archive, dest, quiet=True)
        self.assertEqual(first.action, "restored")
        before = self.bytes_read()
        second = ba.restore(self.archive, dest, quiet=True)
        read = self.bytes_read() - before
        self.assertEqual(second.action, "unchanged")
        self.assertEqual(second.local_changes, [])
        self.assertLess(read, V1.size / 10, f"the no-op re-run read {read} bytes off the mount")
        self.assertRestored(dest, V1)
        # and through the CLI
        p = cli("--archive", self.archive, "--dest", dest)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRestored(dest, V1)

    def test_archive_path_with_a_typo_is_exit_3_naming_the_folders_entries(self):
        dest = self.new_dest("typo")
        typo = os.path.join(self.ds.mount, "MyDrive", "asets.tar.gz")
        p = cli("--drive-mount", self.ds.mount, "--archive", typo, "--dest", dest)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertIn(ARCHIVE, p.stderr, "the message should list the folder's entries")
        self.assertFalse(os.path.exists(dest))
        self.assertNoStaging(dest)

    def test_drive_not_mounted_is_exit_3_and_makes_no_dest(self):
        dest = self.new_dest("nomount")
        not_a_mount = os.path.join(W, "not-mounted")
        os.makedirs(os.path.join(not_a_mount, "MyDrive"), exist_ok=True)
        p = cli("--drive-mount", not_a_mount, "--archive",
                os.path.join(not_a_mount, "MyDrive", ARCHIVE), "--dest", dest)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertFalse(os.path.exists(dest))


class TransientFaults(E2ECase):
    """The mount fails every read for 2 s a third of the way in, then recovers."""

    def check_fault(self, errno_name):
        for engine in ba.available_engines():
            with self.subTest(errno=errno_name, engine=engine):
                ds = self.mount(V1.drive(f"drive-{errno_name}-{engine}"), "--fault",
                                f"op=read,after={V1.size // 3},errno={errno_name},secs=2")
                dest = self.new_dest(f"{errno_name}-{engine}")
                p = cli("--archive", os.path.join(ds.mount, "MyDrive", ARCHIVE),
                        "--dest", dest, "--engine", engine, "--retry-for", 30)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertRestored(dest, V1, f"after {errno_name} (engine {engine})")
                self.assertNoStaging(dest)
                self.assertGreater(ds.stats().get("faults", 0), 0, "the fault never fired")

    def test_eio_mid_read_is_retried(self):
        self.check_fault("EIO")

    def test_enotconn_mid_read_is_retried(self):
        self.check_fault("ENOTCONN")


class DeadMountCase(E2ECase):
    """The mount process dies halfway through the archive: exit 4, dest untouched."""

    def crash_restore(self, dest):
        ds = self.mount(V2.drive(f"drive-crash-{os.path.basename(os.path.dirname(dest))}"),
                        "--crash-after-read", str(V2.size // 2))
        t0 = time.monotonic()
        p = cli("--archive", os.path.join(ds.mount, "MyDrive", ARCHIVE), "--dest", dest,
                "--retry-for", 2, timeout=60)
        took = time.monotonic() - t0
        self.assertFalse(ds.alive(), "drivesim should have crashed")
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)
        self.assertIn("transport endpoint is not connected", p.stderr.lower())
        self.assertLess(took, 30, "--retry-for 2 should give up quickly")
        self.assertNoStaging(dest)
        return p

    def test_dead_mount_is_exit_4_and_makes_no_dest(self):
        dest = self.new_dest("crash-fresh")
        self.crash_restore(dest)
        self.assertFalse(os.path.exists(dest), "a failed restore must not create dest")

    def test_dead_mount_leaves_the_previous_restore_byte_for_byte(self):
        dest = self.new_dest("crash-keep")
        r = ba.restore(V1.archive, dest, quiet=True)
        self.assertEqual(r.action, "restored")
        before = tree_digest(dest, skip_marker=False)  # untouched means byte for byte
        self.crash_restore(dest)
        self.assertEqual(tree_digest(dest, skip_marker=False), before,
                         "dest changed by a failed restore")


class KillDuringExtraction(E2ECase):
    """SIGKILL the restore mid-way (as a notebook runtime dying), then run it again."""

    def kill_midway(self, dest, version, *args):
        ds = self.mount(version.drive(f"drive-kill-{os.path.basename(os.path.dirname(dest))}"),
                        "--read-mbps", "2")
        archive = os.path.join(ds.mount, "MyDrive", ARCHIVE)
        log = open(os.path.join(os.path.dirname(dest), "killed-run.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([sys.executable, SCRIPT, "--archive", archive, "--dest", dest]
                                + list(args), cwd=REPO, env=clean_env(), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        deadline = time.monotonic() + 30
        while not leftovers(dest):
            self.assertIsNone(proc.poll(), "restore ended before a staging folder appeared")
            self.assertLess(time.monotonic(), deadline, "no staging folder after 30 s")
            time.sleep(0.02)
        time.sleep(1.0)  # about 2 MB into a ~13 MB archive at 2 MB/s
        self.assertIsNone(proc.poll(), "restore finished before the kill; slow drivesim down")
        os.killpg(proc.pid, signal.SIGKILL)  # the process and any GNU tar it started
        proc.wait(timeout=10)
        ds.cleanup()
        return archive

    def rerun(self, dest, version, backing_label):
        ds = self.mount(version.drive(backing_label))
        p = cli("--archive", os.path.join(ds.mount, "MyDrive", ARCHIVE), "--dest", dest)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRestored(dest, version, "after kill -9 and re-run")
        self.assertNoStaging(dest)

    def test_killed_first_restore_leaves_no_dest_and_a_rerun_completes(self):
        dest = self.new_dest("kill-fresh")
        self.kill_midway(dest, V1, "--engine", "python")
        self.assertFalse(os.path.exists(dest), "dest appeared before the restore finished")
        self.rerun(dest, V1, "drive-kill-fresh-rerun")

    def test_killed_replacing_restore_leaves_dest_and_a_rerun_completes(self):
        dest = self.new_dest("kill-replace")
        self.assertEqual(ba.restore(V1.archive, dest, quiet=True).action, "restored")
        before = tree_digest(dest, skip_marker=False)
        self.kill_midway(dest, V2)
        self.assertEqual(tree_digest(dest, skip_marker=False), before,
                         "the killed restore changed dest")
        self.rerun(dest, V2, "drive-kill-replace-rerun")


if __name__ == "__main__":
    unittest.main(verbosity=2)
