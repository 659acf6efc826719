"""End-to-end local faults (what a real machine throws at a new user), each a real mechanism,
each run a real process of `python bootstrap_assets.py`: the destination on a full disk (a
tmpfs this test mounts, and one filled by another writer mid-restore), in a read-only folder
(a tmpfs remounted read-only: chmod does not stop root), behind a symlink, under a missing
parent; names of ours already taken; two restores and two saves started at once; SIGINT and
SIGTERM in the middle of a restore and of a save (drivesim slowed down so the signal lands
mid-run).

Each case checks the promised state: the destination untouched or complete, nothing of ours
left behind (staging folder, lock, temporary parts), the archive on the mount unchanged and
restorable, and a message that names the cause and the fix. Ends with a table: class of
case, runs, runs in the promised state.

Run with `make e2e` (python3 tests/run.py e2e -k local_faults for this file). Needs root (it
mounts tmpfs), /dev/fuse and ../shared/drivesim. About a minute on 2 cores.
"""
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

from drivesim_fixture import (MARKER, SCRIPT, DriveSim, DriveSimTestCase,  # noqa: E402
                              clean_env, sha256_file, temporaries, tree_digest)

NAME = "_assets"
W = None
RESULTS = {}  # class of case -> [runs, runs in the promised state]
SLOW_MBPS = "4"  # drivesim's read and write bandwidth for the runs a signal must land in


# -- helpers ------------------------------------------------------------------------
class promised:
    """Counts one run of a class of case for the closing table: in the promised state when
    the block ends without an exception."""

    def __init__(self, label):
        self.label = label

    def __enter__(self):
        RESULTS.setdefault(self.label, [0, 0])[0] += 1

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            RESULTS[self.label][1] += 1
        return False


def tool(*args, timeout=120):
    return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], cwd=W,
                          env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, stdin=subprocess.DEVNULL)


def default_signals():
    """As in a terminal: a runner that started us in the background (a non-interactive
    shell's `&`) may have left SIGINT ignored, and Python then never raises Ctrl-C."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def start(*args):
    return subprocess.Popen([sys.executable, SCRIPT] + [str(a) for a in args], cwd=W,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, stdin=subprocess.DEVNULL,
                            preexec_fn=default_signals, start_new_session=True)


def send(p, signame):
    """Ctrl-C as a terminal sends it, to the whole process group (GNU tar or zstd children
    too); SIGTERM as `kill PID` sends it, to the process alone."""
    if signame == "SIGINT":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGTERM)


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def write_tree(top, files, seed, size):
    """files incompressible files of size bytes, plus a link, an empty folder, a script."""
    os.makedirs(os.path.join(top, "empty"))
    state = hashlib.sha256(str(seed).encode()).digest()
    for i in range(files):
        data = bytearray()
        while len(data) < size:
            state = hashlib.sha256(state).digest()
            data += state * 64
        with open(os.path.join(top, f"f{i:02d}.bin"), "wb") as f:
            f.write(bytes(data[:size]))
    with open(os.path.join(top, "run.sh"), "w") as f:
        f.write(f"#!/bin/sh\necho {seed}\n")
    os.chmod(os.path.join(top, "run.sh"), 0o755)
    os.symlink("run.sh", os.path.join(top, "latest"))
    return top


def tar_of(top, archive):
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    subprocess.run(["tar", "cf", archive, "-C", os.path.dirname(top), os.path.basename(top)],
                   check=True)
    return archive


def ours_beside(dest):
    """Names of ours left beside dest: staging folders and the lock."""
    parent = os.path.dirname(dest)
    prefix = f".{os.path.basename(dest)}."
    return sorted(n for n in os.listdir(parent) if n.startswith(prefix + "staging-")
                  or n == prefix + "lock")


def state(path):
    return tree_digest(path, skip_marker=False) if os.path.lexists(path) else None


def mount_tmpfs(testcase, path, options):
    """A tmpfs at path, unmounted at cleanup. A machine where root cannot mount one fails
    under CI (CI=true) and skips elsewhere."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        why = f"cannot mount a tmpfs (needs root): {r.stdout.decode().strip()}"
        if os.environ.get("CI") == "true":
            testcase.fail(why)
        raise unittest.SkipTest(why)
    testcase.addCleanup(lambda: subprocess.run(["umount", "-l", path]))
    return path


def setUpModule():
    global W
    W = tempfile.mkdtemp(prefix="bootstrap-e2e-faults-")


def tearDownModule():
    if W:
        shutil.rmtree(W, ignore_errors=True)
    if RESULTS:
        print("\n\nlocal faults (tests/e2e_local_faults.py)\n")
        print("| class of case | runs | in the promised state |")
        print("|---|---:|---:|")
        for label, (runs, good) in RESULTS.items():
            print(f"| {label} | {runs} | {good} |")
        print(flush=True)


class FaultCase(DriveSimTestCase):

    def folder(self, prefix):
        return tempfile.mkdtemp(prefix=prefix, dir=W)

    def assertFailed(self, r, code, *words):
        self.assertEqual(r.returncode, code, f"exit {r.returncode}, not {code}:\n{r.stderr}")
        for word in words:
            self.assertIn(word, r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def assertOk(self, r):
        self.assertEqual(r.returncode, 0, r.stderr)


# -- full disk --------------------------------------------------------------------
class FullDiskTests(FaultCase):
    """A 32 MiB tmpfs holds the destination: the tool always leaves 16 MiB of a disk free."""

    def setUp(self):
        self.disk = mount_tmpfs(self, self.folder("disk-"), "size=32m")
        self.dest = os.path.join(self.disk, NAME)
        self.small = tar_of(write_tree(os.path.join(self.folder("small-"), NAME), 2, 1, 1000),
                            os.path.join(self.folder("src-"), "small.tar"))
        self.assertOk(tool("-q", "--archive", self.small, "--dest", self.dest))
        self.before = state(self.dest)

    def assertIntact(self):
        self.assertEqual(state(self.dest), self.before, "the restored folder changed")
        self.assertEqual(ours_beside(self.dest), [])
        self.assertEqual(sorted(os.listdir(self.disk)), [NAME])

    def test_an_archive_larger_than_the_disk_is_refused_before_writing(self):
        with promised("full disk: archive larger than the free space"):
            big = tar_of(write_tree(os.path.join(self.folder("big-"), NAME), 10, 2, 2 << 20),
                         os.path.join(self.folder("src-"), "big.tar"))
            r = tool("--archive", big, "--dest", self.dest)
            self.assertFailed(r, 8, "Not enough space on", "always leaves free",
                              "use --dest on a larger disk")
            self.assertIntact()

    def test_a_small_archive_that_expands_past_the_disk_is_refused(self):
        with promised("full disk: archive that expands past the free space"):
            top = os.path.join(self.folder("zeros-"), NAME)
            os.makedirs(top)
            for i in range(10):
                with open(os.path.join(top, f"zeros{i}.bin"), "wb") as f:
                    f.truncate(4 << 20)
            archive = os.path.join(self.folder("src-"), "zeros.tar.gz")
            subprocess.run(["tar", "czf", archive, "-C", os.path.dirname(top), NAME],
                           check=True)
            self.assertLess(os.path.getsize(archive), 1 << 20)
            r = tool("--archive", archive, "--dest", self.dest, "--force")
            self.assertFailed(r, 8, "Not enough space", "use --dest on a larger disk")
            self.assertIntact()

    def test_the_disk_filled_by_another_writer_mid_restore(self):
        """The space plan passed; then something else takes the disk: ENOSPC for real."""
        with promised("full disk: filled by another process mid-restore"):
            backing = self.folder("backing-")
            archive_top = write_tree(os.path.join(self.folder("mid-"), NAME), 6, 3, 1 << 20)
            tar_of(archive_top, os.path.join(backing, "MyDrive", "assets.tar"))
            mount = os.path.join(self.folder("mnt-"), "m")
            with DriveSim(backing, mount, "--read-mbps", "2") as ds:
                archive = os.path.join(mount, "MyDrive", "assets.tar")
                p = start("--archive", archive, "--dest", self.dest, "--drive-mount", mount,
                          "--engine", "python", "--force")
                self.assertTrue(wait_until(lambda: ds.counter("bytes_read", settle=0)
                                           > 1 << 20 or p.poll() is not None))
                self.assertIsNone(p.poll(), "the restore ended before the disk was filled")
                filler = os.path.join(self.disk, "filler")
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * (1 << 20))
                            f.flush()
                    except OSError:
                        pass
                out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 8, err)
            self.assertIn("Ran out of space", err)
            self.assertIn("Nothing was changed at", err)
            self.assertIn("use --dest on a larger disk", err)
            os.unlink(filler)
            self.assertIntact()

    def test_save_onto_a_full_disk_keeps_the_old_archive(self):
        with promised("full disk: save's archive on a full disk"):
            drive = mount_tmpfs(self, self.folder("drive-"), "size=8m")
            archive = os.path.join(drive, "assets.tar")
            shutil.copyfile(self.small, archive)
            old = sha256_file(archive)
            folder = write_tree(os.path.join(self.folder("grown-"), NAME), 6, 4, 2 << 20)
            r = tool("save", "--archive", archive, "--dest", folder, "--format", "tar")
            self.assertFailed(r, 8, "space", archive)
            self.assertEqual(sorted(os.listdir(drive)), ["assets.tar"])
            self.assertEqual(sha256_file(archive), old)
            out = os.path.join(self.folder("check-"), NAME)
            self.assertOk(tool("-q", "--archive", archive, "--dest", out))
            self.assertEqual(tree_digest(out), tree_digest(self.dest))


# -- read-only --------------------------------------------------------------------
class ReadOnlyTests(FaultCase):
    """A tmpfs remounted read-only: what chmod 555 cannot do to root."""

    def setUp(self):
        self.disk = mount_tmpfs(self, self.folder("ro-"), "size=24m")
        self.dest = os.path.join(self.disk, NAME)
        src = self.folder("src-")
        self.v1 = tar_of(write_tree(os.path.join(src, "v1", NAME), 2, 5, 1000),
                         os.path.join(src, "v1.tar"))
        self.v2 = tar_of(write_tree(os.path.join(src, "v2", NAME), 3, 6, 1000),
                         os.path.join(src, "v2.tar"))
        self.assertOk(tool("-q", "--archive", self.v1, "--dest", self.dest))
        self.before = state(self.dest)
        subprocess.run(["mount", "-o", "remount,ro", self.disk], check=True)

    def test_restore_into_a_read_only_folder(self):
        with promised("read-only: restore over a folder there"):
            r = tool("--archive", self.v2, "--dest", self.dest)
            self.assertFailed(r, 1, f"Cannot write in {self.disk}", "not writable",
                              "pass --dest with a folder in a writable place")
            self.assertEqual(state(self.dest), self.before)
        with promised("read-only: restore of a new folder there"):
            r = tool("--archive", self.v2, "--dest", os.path.join(self.disk, "new", NAME))
            self.assertFailed(r, 1, "not writable", "--dest")
            self.assertEqual(sorted(os.listdir(self.disk)), [NAME])

    def test_save_from_a_read_only_folder(self):
        with promised("read-only: save of a folder there"):
            archive = os.path.join(self.folder("drive-"), "assets.tar")
            r = tool("save", "--archive", archive, "--dest", self.dest)
            self.assertFailed(r, 1, "not writable", "save the copy (--dest)")
            self.assertFalse(os.path.exists(archive))

    def test_save_into_a_read_only_archive_folder(self):
        with promised("read-only: save's archive folder"):
            subprocess.run(["mount", "-o", "remount,rw", self.disk], check=True)
            folder = os.path.join(self.folder("local-"), NAME)
            self.assertOk(tool("-q", "--archive", self.v2, "--dest", folder))
            archive = os.path.join(self.disk, "assets.tar")
            shutil.copyfile(self.v1, archive)
            old = sha256_file(archive)
            subprocess.run(["mount", "-o", "remount,ro", self.disk], check=True)
            r = tool("save", "--archive", archive, "--dest", folder)
            self.assertFailed(r, 1, "not writable", "pass --archive with a path in a folder "
                                                    "you can write to")
            self.assertEqual(sha256_file(archive), old)


# -- symlinked destination, missing parent, names taken ----------------------------
class DestinationShapeTests(FaultCase):

    def setUp(self):
        src = self.folder("src-")
        self.v1_top = write_tree(os.path.join(src, "v1", NAME), 2, 7, 1000)
        self.v1 = tar_of(self.v1_top, os.path.join(src, "v1.tar"))
        self.v2_top = write_tree(os.path.join(src, "v2", NAME), 3, 8, 1000)
        self.v2 = tar_of(self.v2_top, os.path.join(src, "v2.tar"))

    def test_destination_behind_a_symlink_to_another_disk(self):
        """/x/_assets -> /disk/real: installed into /disk/real (beside it: the staging
        folder, same filesystem); the link stays as the user made it."""
        with promised("symlinked destination: followed, link kept"):
            disk = mount_tmpfs(self, self.folder("disk-"), "size=24m")
            real = os.path.join(disk, "real")
            os.makedirs(real)
            home = self.folder("home-")
            link = os.path.join(home, NAME)
            os.symlink(real, link)
            r = tool("--archive", self.v1, "--dest", link)
            self.assertOk(r)
            self.assertIn(f"to {real}", r.stdout)
            self.assertEqual(os.readlink(link), real)
            self.assertEqual(tree_digest(real), tree_digest(self.v1_top))
            self.assertIn("nothing to do", tool("--archive", self.v1, "--dest", link).stdout)
            # a newer archive replaces the target's contents; the link is still the link
            self.assertOk(tool("-q", "--archive", self.v2, "--dest", link))
            self.assertEqual(os.readlink(link), real)
            self.assertEqual(tree_digest(link), tree_digest(self.v2_top))
            # local changes behind the link: refused, then --force moves the target aside
            with open(os.path.join(real, "mine.txt"), "w") as f:
                f.write("mine")
            r = tool("--archive", self.v1, "--dest", link)
            self.assertFailed(r, 9, real, "--force")
            self.assertOk(tool("-q", "--archive", self.v1, "--dest", link, "--force"))
            self.assertEqual(os.readlink(link), real)
            aside = [n for n in os.listdir(disk) if n.startswith("real.old-")]
            self.assertEqual(len(aside), 1)
            self.assertTrue(os.path.exists(os.path.join(disk, aside[0], "mine.txt")))
            self.assertEqual(sorted(os.listdir(home)), [NAME])
            self.assertEqual(ours_beside(real), [])
            # save through the link packs the target
            archive = os.path.join(self.folder("drive-"), "assets.tar")
            self.assertOk(tool("save", "-q", "--archive", archive, "--dest", link))
            out = os.path.join(self.folder("check-"), NAME)
            self.assertOk(tool("-q", "--archive", archive, "--dest", out))
            self.assertEqual(tree_digest(out), tree_digest(real))

    def test_missing_parents_are_made_by_a_restore_and_removed_when_it_fails(self):
        with promised("parent missing: created for a restore"):
            dest = os.path.join(W, "no", "such", "parent", NAME)
            self.assertOk(tool("-q", "--archive", self.v1, "--dest", dest))
            self.assertEqual(tree_digest(dest), tree_digest(self.v1_top))
            shutil.rmtree(os.path.join(W, "no"))
        with promised("parent missing: a failed restore removes what it made"):
            damaged = os.path.join(self.folder("bad-"), "damaged.tar")
            with open(self.v1, "rb") as f, open(damaged, "wb") as out:
                out.write(f.read()[:5000])
            r = tool("--archive", damaged, "--dest", dest)
            self.assertFailed(r, 7, damaged)
            self.assertFalse(os.path.exists(os.path.join(W, "no")))
        with promised("parent missing: save says there is nothing to save"):
            r = tool("save", "--archive", os.path.join(W, "drive", "a.tar"), "--dest", dest)
            self.assertFailed(r, 3, f"There is no folder {dest} to save", "Restore it first")
            self.assertFalse(os.path.exists(os.path.join(W, "no")))
            self.assertFalse(os.path.exists(os.path.join(W, "drive")))

    def test_names_of_ours_already_taken(self):
        parent = self.folder("taken-")
        dest = os.path.join(parent, NAME)
        with promised("names taken: a killed run's staging folder"):
            backing = self.folder("backing-")
            big = write_tree(os.path.join(self.folder("big-"), NAME), 4, 11, 1 << 20)
            tar_of(big, os.path.join(backing, "MyDrive", "assets.tar"))
            mount = os.path.join(self.folder("mnt-"), "m")
            with DriveSim(backing, mount, "--read-mbps", "1") as ds:
                p = start("--archive", os.path.join(mount, "MyDrive", "assets.tar"), "--dest",
                          dest, "--drive-mount", mount)
                self.assertTrue(wait_until(lambda: ds.counter("bytes_read", settle=0)
                                           > 1 << 20))
                self.assertIsNone(p.poll())
                p.kill()
                p.communicate(timeout=30)
            stale = [n for n in os.listdir(parent) if ".staging-" in n]
            self.assertEqual(len(stale), 1, os.listdir(parent))
            os.makedirs(os.path.join(parent, stale[0], "root", "read-only"))
            os.chmod(os.path.join(parent, stale[0], "root", "read-only"), 0o555)
            with open(os.path.join(parent, f".{NAME}.staging-notes.txt"), "w") as f:
                f.write("a file of the user's that shares the prefix")
            self.assertOk(tool("-q", "--archive", self.v1, "--dest", dest))
            self.assertEqual(tree_digest(dest), tree_digest(self.v1_top))
            self.assertEqual(sorted(os.listdir(parent)), [f".{NAME}.staging-notes.txt", NAME])
        with promised("names taken: the lock's name"):
            lock = os.path.join(parent, f".{NAME}.lock")
            os.makedirs(lock)
            before = state(dest)
            r = tool("--archive", self.v2, "--dest", dest)
            self.assertFailed(r, 1, f"{lock} is in the way", "Fix: move")
            self.assertEqual(state(dest), before)
            os.rmdir(lock)
            bait = os.path.join(self.folder("bait-"), "precious.txt")
            with open(bait, "w") as f:
                f.write("precious")
            os.symlink(bait, lock)
            r = tool("save", "--archive", os.path.join(parent, "a.tar"), "--dest", dest)
            self.assertFailed(r, 1, f"{lock} is in the way", "a symlink")
            with open(bait) as f:
                self.assertEqual(f.read(), "precious")


# -- concurrent runs and signals, over a slowed-down drivesim ----------------------
class SlowDriveTests(FaultCase):
    """One drivesim mount at SLOW_MBPS for reads and writes: a 16 MB archive takes ~4 s to
    restore or save, long enough to run a second process or send a signal mid-run."""

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="slow-", dir=W)
        cls.backing = os.path.join(cls.base, "backing")
        cls.top = write_tree(os.path.join(cls.base, "src", NAME), 8, 9, 2 << 20)
        tar_of(cls.top, os.path.join(cls.backing, "MyDrive", "assets.tar"))
        cls.old_top = write_tree(os.path.join(cls.base, "old", NAME), 2, 10, 1000)
        tar_of(cls.old_top, os.path.join(cls.backing, "MyDrive", "old.tar"))
        cls.mount = os.path.join(cls.base, "mnt")
        cls.ds = DriveSim(cls.backing, cls.mount, "--read-mbps", SLOW_MBPS, "--write-mbps",
                          SLOW_MBPS).start()
        cls.archive = os.path.join(cls.mount, "MyDrive", "assets.tar")

    @classmethod
    def tearDownClass(cls):
        cls.ds.cleanup()

    def run_args(self, dest, *extra):
        return ["--archive", self.archive, "--dest", dest, "--drive-mount", self.mount] + \
            [str(e) for e in extra]

    def started(self, p, key, least=1 << 20):
        """Wait until drivesim counts `least` more bytes of `key` (progress is under way)."""
        start_count = self.ds.counter(key, settle=0)
        self.assertTrue(wait_until(lambda: self.ds.counter(key, settle=0) - start_count
                                   >= least or p.poll() is not None))
        if p.poll() is not None:
            self.fail(f"ended before it could be disturbed: {p.communicate()}")

    def assertStoppedCleanly(self, p, signame, code, words):
        """Send signame to the running p: it ends with code and says what stopped it and
        that running the same command again finishes the job, with no traceback."""
        send(p, signame)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, code, err)
        self.assertIn(words, err)
        self.assertIn("Run the same command again", err)
        self.assertNotIn("Traceback", err)

    def test_two_restores_at_once(self):
        with promised("concurrent: two restores, short --lock-timeout"):
            dest = os.path.join(self.folder("two-"), NAME)
            runs = [start(*self.run_args(dest, "--lock-timeout", "1")) for _ in range(2)]
            results = [(p.pid,) + p.communicate(timeout=120) + (p.returncode,) for p in runs]
            codes = sorted(r[3] for r in results)
            self.assertEqual(codes, [0, 10], results)
            winner = next(r for r in results if r[3] == 0)
            loser = next(r for r in results if r[3] == 10)
            self.assertIn("Another run is working on", loser[2])
            self.assertIn(f"pid {winner[0]}", loser[2])
            self.assertIn("Wait for it to finish, then run this again", loser[2])
            self.assertEqual(tree_digest(dest), tree_digest(self.top))
            self.assertEqual(ours_beside(dest), [])
        with promised("concurrent: two restores, the second waits"):
            dest = os.path.join(self.folder("wait-"), NAME)
            runs = [start(*self.run_args(dest, "--lock-timeout", "60")) for _ in range(2)]
            results = [p.communicate(timeout=120) + (p.returncode,) for p in runs]
            self.assertEqual([r[2] for r in results], [0, 0], results)
            said = sorted("nothing to do" in r[0] for r in results)
            self.assertEqual(said, [False, True], results)
            self.assertEqual(tree_digest(dest), tree_digest(self.top))
            self.assertEqual(ours_beside(dest), [])

    def test_two_saves_at_once(self):
        with promised("concurrent: two saves of one folder"):
            folder = os.path.join(self.folder("save2-"), NAME)
            shutil.copytree(self.top, folder, symlinks=True)
            archive = os.path.join(self.mount, "MyDrive", "two-saves.tar")
            runs = [start("save", "--archive", archive, "--dest", folder, "--drive-mount",
                          self.mount, "--format", "tar", "--lock-timeout", "1")
                    for _ in range(2)]
            results = [p.communicate(timeout=120) + (p.returncode,) for p in runs]
            self.assertEqual(sorted(r[2] for r in results), [0, 10], results)
            loser = next(r for r in results if r[2] == 10)
            self.assertIn("Another run is working on", loser[1])
            self.assertEqual(temporaries(archive), [])
            out = os.path.join(self.folder("check-"), NAME)
            self.assertOk(tool("-q", "--archive", archive, "--dest", out, "--drive-mount",
                               self.mount))
            self.assertEqual(tree_digest(out), tree_digest(self.top))

    def test_signals_mid_restore(self):
        for signame, code, words in (("SIGINT", 130, "interrupted (Ctrl-C)"),
                                     ("SIGTERM", 143, "stopped by SIGTERM")):
            for engine, existing in (("python", False), ("tar", False), ("python", True)):
                label = (f"{signame} mid-restore" +
                         (", over an older restore" if existing else ", new folder"))
                with self.subTest(signal=signame, engine=engine, existing=existing), \
                        promised(label):
                    dest = os.path.join(self.folder("sig-"), NAME)
                    before = None
                    if existing:
                        old = os.path.join(self.mount, "MyDrive", "old.tar")
                        self.assertOk(tool("-q", "--archive", old, "--dest", dest,
                                           "--drive-mount", self.mount))
                        before = state(dest)
                    p = start(*self.run_args(dest, "--engine", engine))
                    self.started(p, "bytes_read")
                    self.assertStoppedCleanly(p, signame, code, words)
                    self.assertEqual(state(dest), before)
                    self.assertEqual(ours_beside(dest) if os.path.isdir(
                        os.path.dirname(dest)) else [], [])
            # the next run finishes the job
            r = tool("-q", *self.run_args(dest, "--force"))
            self.assertOk(r)
            self.assertEqual(tree_digest(dest), tree_digest(self.top))

    def test_signals_mid_save(self):
        for signame, code, words in (("SIGINT", 130, "interrupted (Ctrl-C)"),
                                     ("SIGTERM", 143, "stopped by SIGTERM")):
            with self.subTest(signal=signame), promised(f"{signame} mid-save"):
                folder = os.path.join(self.folder("sigsave-"), NAME)
                shutil.copytree(self.top, folder, symlinks=True)
                archive = os.path.join(self.mount, "MyDrive", f"saved-{signame}.tar")
                backing_archive = os.path.join(self.backing, "MyDrive",
                                               f"saved-{signame}.tar")
                shutil.copyfile(os.path.join(self.backing, "MyDrive", "old.tar"),
                                backing_archive)
                before = sha256_file(backing_archive)
                p = start("save", "--archive", archive, "--dest", folder, "--drive-mount",
                          self.mount, "--format", "tar")
                self.started(p, "bytes_written")
                self.assertStoppedCleanly(p, signame, code, words)
                self.assertEqual(sha256_file(backing_archive), before)
                self.assertEqual(temporaries(backing_archive), [])
                self.assertEqual(ours_beside(folder), [])
                self.assertFalse(os.path.exists(os.path.join(folder, MARKER)))
                check = os.path.join(self.folder("check-"), NAME)
                self.assertOk(tool("-q", "--archive", archive, "--dest", check,
                                   "--drive-mount", self.mount))
                self.assertEqual(tree_digest(check), tree_digest(self.old_top))
                # the next save finishes the job
                self.assertOk(tool("save", "-q", "--archive", archive, "--dest", folder,
                                   "--drive-mount", self.mount, "--format", "tar"))
                check = os.path.join(self.folder("check-"), NAME)
                self.assertOk(tool("-q", "--archive", archive, "--dest", check,
                                   "--drive-mount", self.mount))
                self.assertEqual(tree_digest(check), tree_digest(self.top))


if __name__ == "__main__":
    unittest.main()
