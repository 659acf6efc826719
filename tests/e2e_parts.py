"""End-to-end tests of split archives, the answer to Drive's local cache filling the disk:
ARCHIVE.part-0001, ARCHIVE.part-0002, ... over drivesim, with Drive's local content cache
(drivesim --cache-dir) on the SAME small disk as the destination, as Colab's DriveFS keeps
it on the VM's disk.

Run with `python3 tests/run.py e2e -k parts` (or `-k Tight`, `-k Sweep`, ...). Needs root
(each tight-disk test mounts its own tmpfs), /dev/fuse and ../shared/drivesim; the module
is skipped with the reason when one is missing. About 90 s on 2 cores: the kill -9 sweep
over a split save (30 points) is a third of it.

The scenario (built once): BIG, a ~215 MB mostly incompressible `_assets` folder
(make_assets.py --profile mixed --scale 0.15) and its plain .tar with a sha256sum sidecar;
SMALL, a ~36 MB one (--scale 0.025) for the sweep and the quick checks. A tight-disk test
mounts a tmpfs of 1.55 x the archive: room for the extracted folder and a few parts, not for
the folder beside a full cached copy of the archive. On it:
    T/DriveFS/acct/content_cache   drivesim --cache-dir (the tool gets --drive-cache T/DriveFS)
    T/_assets                      --dest
"""
import glob
import math
import os
import re
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

from drivesim_fixture import (DRIVESIM, MAKE_ASSETS, MARKER, DriveSim,  # noqa: E402
                              DriveSimTestCase, cli, copy_backing, diff_text, file_hashes,
                              kill_points, mounted, read_oplog, run, sha256_file, temporaries,
                              tree_digest, write_random)

MiB = 1 << 20
NAME = "_assets"
ARCHIVE = "assets.tar"
SIDECAR = ARCHIVE + ".sha256"
PART = 32 * MiB
FAST = ("--read-mbps", "0", "--write-mbps", "0")  # where speed is not what is tested
RESERVE = "16M"            # drivesim --cache-reserve on the tight disk
TMPFS_FACTOR = 1.55        # the tight disk: the archive's size times this
W = None                   # module work dir (regular disk)
BIG = SMALL = None         # Source
_SPLIT_MASTER = None       # BACKING holding BIG split by the tool (made on first use)


# -- helpers ------------------------------------------------------------------------------
def tail(text, n=600):
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def said(p):
    return f"exit {p.returncode}\nstdout: {tail(p.stdout)}\nstderr: {tail(p.stderr)}"




def parts_of(folder, base):
    """ARCHIVE.part-NNNN names for base in folder, in order."""
    rx = re.compile(re.escape(base) + r"\.part-(\d{4})$")
    return sorted(n for n in os.listdir(folder) if rx.match(n))


def concat_sha(paths):
    import hashlib
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def data_bytes(root):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(root) for f in fs
               if f != MARKER)


def gnu_split(src_tar, folder, size="32M"):
    """The user's own cut: `split -b SIZE -d -a 4 --numeric-suffixes=1 assets.tar
    assets.tar.part-` in the backing folder, then the original removed."""
    shutil.copy2(src_tar, os.path.join(folder, ARCHIVE))
    run(["split", "-b", size, "-d", "-a", "4", "--numeric-suffixes=1", ARCHIVE,
         ARCHIVE + ".part-"], cwd=folder)
    os.remove(os.path.join(folder, ARCHIVE))
    return parts_of(folder, ARCHIVE)


def tmpfs_mount(path, size_bytes):
    os.makedirs(path, exist_ok=True)
    mib = -(-size_bytes // MiB)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def tmpfs_umount(path):
    for _ in range(10):
        if not mounted(path):
            break
        subprocess.run(["umount", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mounted(path):
            time.sleep(0.3)
    if mounted(path):
        subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        os.rmdir(path)
    except OSError:
        pass


class Source:
    """A source `_assets` folder, its plain .tar (one top folder `_assets`), the tar's
    sha256 and a sha256sum sidecar text, and the folder's tree digest."""

    def __init__(self, label, scale):
        top = os.path.join(W, label)
        self.src = os.path.join(top, "src", NAME)
        run([sys.executable, MAKE_ASSETS, "create", self.src, "--profile", "mixed",
             "--scale", scale])
        self.tar = os.path.join(top, ARCHIVE)
        run(["tar", "cf", self.tar, "-C", os.path.dirname(self.src), NAME])
        self.size = os.path.getsize(self.tar)
        self.sha = sha256_file(self.tar)
        self.sidecar = f"{self.sha}  {ARCHIVE}\n"
        self.data = data_bytes(self.src)
        self.digest = tree_digest(self.src)

    def backing(self, where, sidecar=True):
        """A fresh BACKING folder: MyDrive/assets.tar (+ its sidecar)."""
        mydrive = os.path.join(where, "MyDrive")
        os.makedirs(mydrive)
        shutil.copy2(self.tar, os.path.join(mydrive, ARCHIVE))
        if sidecar:
            with open(os.path.join(mydrive, SIDECAR), "w") as f:
                f.write(self.sidecar)
        return where


def _leftover_mounts():
    """Mount points under W (the tmpfs disks, the split master's drivesim) still there:
    deepest first."""
    try:
        with open("/proc/self/mountinfo") as f:
            points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                             line.split()[4]) for line in f if line.strip()]
    except OSError:
        return []
    root = os.path.realpath(W) + os.sep
    return sorted((p for p in points if p.startswith(root)), key=len, reverse=True)


def setUpModule():
    global W, BIG, SMALL
    if os.geteuid() != 0:
        raise unittest.SkipTest("e2e_parts needs root: each tight-disk test mounts a tmpfs")
    if not os.path.exists("/dev/fuse"):
        raise unittest.SkipTest("e2e_parts needs /dev/fuse for drivesim (FUSE)")
    if not os.path.exists(DRIVESIM):
        raise unittest.SkipTest(f"drivesim not found at {DRIVESIM} (../shared, or SHARED_DIR)")
    probe = tempfile.mkdtemp(prefix="bootstrap-e2e-parts-probe-")
    try:
        r = tmpfs_mount(probe, 4 * MiB)
        if r.returncode:
            raise unittest.SkipTest(f"e2e_parts cannot mount a tmpfs (`mount -t tmpfs` "
                                    f"exited {r.returncode}: {r.stderr.strip()})")
    finally:
        tmpfs_umount(probe)
        shutil.rmtree(probe, ignore_errors=True)
    W = tempfile.mkdtemp(prefix="bootstrap-e2e-parts-")
    try:
        BIG = Source("big", "0.15")
        SMALL = Source("small", "0.025")
        assert 150e6 <= BIG.data <= 250e6, f"BIG holds {BIG.data} bytes, not 150-250 MB"
        assert 25e6 <= SMALL.data <= 60e6, f"SMALL holds {SMALL.data} bytes, not 25-60 MB"
    except BaseException:  # tearDownModule does not run when setUpModule fails
        shutil.rmtree(W, ignore_errors=True)
        raise


def tearDownModule():
    if W:
        for point in _leftover_mounts():  # a safety net: each test unmounts its own
            subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(W, ignore_errors=True)


class TightDisk:
    """A tmpfs of `size` bytes: root, the DriveFS folder, drivesim's cache dir, the dest."""

    def __init__(self, root, size):
        self.root, self.size = root, size
        self.drive_cache = os.path.join(root, "DriveFS")
        self.cache = os.path.join(self.drive_cache, "acct", "content_cache")
        self.dest = os.path.join(root, NAME)
        os.makedirs(self.cache)

    def free(self):
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def wipe_cache(self):
        """A fresh VM: Drive's cache starts empty (only with no drivesim running on it)."""
        shutil.rmtree(self.drive_cache)
        os.makedirs(self.cache)


class PartsCase(DriveSimTestCase):

    # -- setup ------------------------------------------------------------------------
    def place(self, label):
        """A fresh folder under W for this test; removed at cleanup."""
        path = tempfile.mkdtemp(prefix=f"{label}-", dir=W)
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def tight_disk(self, label):
        """Mount a tmpfs that holds BIG's extracted folder once (plus a few parts), not
        twice; unmounted at cleanup (after every drivesim started later is stopped)."""
        size = int(BIG.size * TMPFS_FACTOR)
        self.assertGreater(size, BIG.data + 3 * PART + 16 * MiB, "tmpfs too small to work")
        self.assertLess(size, 2 * BIG.data, "tmpfs would hold the data twice")
        root = os.path.join(W, f"tmpfs-{label}")
        r = tmpfs_mount(root, size)
        if r.returncode:
            self.skipTest(f"cannot mount a tmpfs at {root}: {r.stderr.strip()}")
        self.addCleanup(tmpfs_umount, root)
        return TightDisk(root, size)

    def drive(self, backing, *args, disk=None, reserve=RESERVE):
        """drivesim on backing (self.mount), with its content cache on disk's tmpfs when disk
        is given."""
        if disk is not None:
            args = args + ("--cache-dir", disk.cache, "--cache-reserve", reserve)
        return self.mount(backing, *args)

    @staticmethod
    def archive_in(ds, name=ARCHIVE):
        return os.path.join(ds.mount, "MyDrive", name)

    def split_master_copy(self, label):
        """A BACKING folder holding BIG as the tool's `split --part-size 32M` left it: parts,
        ARCHIVE.1 and the sidecar (made once, on a plain mount, then copied)."""
        global _SPLIT_MASTER
        if _SPLIT_MASTER is None:
            master = BIG.backing(os.path.join(W, "split-master"))
            dest = os.path.join(W, "split-master-dest", NAME)
            os.makedirs(os.path.dirname(dest))
            with DriveSim(master, os.path.join(W, "mnt-split-master"), *FAST) as ds:
                p = cli("split", "--archive", self.archive_in(ds), "--part-size", "32M",
                        "--drive-mount", ds.mount, "--dest", dest, "--quiet", timeout=240)
            if p.returncode:
                shutil.rmtree(master, ignore_errors=True)
                self.fail(f"could not prepare the split archive: `split --part-size 32M` "
                          f"{said(p)}")
            mydrive = os.path.join(master, "MyDrive")
            if len(parts_of(mydrive, ARCHIVE)) < 2:
                self.fail(f"`split` left no parts: {sorted(os.listdir(mydrive))}")
            _SPLIT_MASTER = master
        return copy_backing(_SPLIT_MASTER, os.path.join(self.place(label), "drive"))

    # -- checks -----------------------------------------------------------------------
    def assertExit(self, p, code, what):
        self.assertEqual(p.returncode, code, f"{what}: {said(p)}")

    def assertParts(self, mydrive, base, sha, part_size):
        """base is stored as parts 0001..N (N >= 2), each at most part_size, whose
        concatenation has sha256 `sha`; returns the part names."""
        names = parts_of(mydrive, base)
        self.assertGreaterEqual(len(names), 2, f"{base}: no parts in {sorted(os.listdir(mydrive))}")
        self.assertEqual(names, [f"{base}.part-{i:04d}" for i in range(1, len(names) + 1)],
                         f"{base}: parts not numbered 0001..N")
        for n in names:
            size = os.path.getsize(os.path.join(mydrive, n))
            self.assertLessEqual(size, part_size, f"{n} holds {size} bytes > {part_size}")
            self.assertGreater(size, 0, f"{n} is empty")
        self.assertEqual(concat_sha(os.path.join(mydrive, n) for n in names), sha,
                         f"{base}: the parts concatenated are not the archive")
        return names

    def assertSha256sumPasses(self, mydrive):
        r = subprocess.run(["sha256sum", "-c", SIDECAR], cwd=mydrive, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        with open(os.path.join(mydrive, SIDECAR)) as f:
            sidecar = f.read()
        self.assertEqual(r.returncode, 0, f"`sha256sum -c {SIDECAR}` in the archive's folder:"
                                          f"\n{r.stdout}\nsidecar:\n{sidecar}")
        return sidecar

    def assertParentUntouched(self, disk, before, what):
        """Nothing new beside dest: no dest, no staging folder, nothing else (the lock file
        the tool keeps beside dest is allowed)."""
        self.assertFalse(os.path.lexists(disk.dest), f"{what}: {disk.dest} was created")
        new = set(os.listdir(disk.root)) - set(before) - {f".{NAME}.lock"}
        self.assertEqual(sorted(new), [], f"{what}: left beside {disk.dest}")


# -- 1-4. a big archive, Drive's cache and the destination on one small disk ---------------
class TightDiskWithDriveCache(PartsCase):

    def test_the_tight_disk_cannot_hold_one_file_beside_its_extraction_but_can_parts(self):
        """The scenario itself, without the tool: `cat ARCHIVE | tar xf -` through the mount
        runs out of room (Drive's copy of the open file cannot be evicted); the same bytes
        as 32M parts, each closed when read, fit."""
        disk = self.tight_disk("calibrate")
        top = self.place("calibrate")
        backing = BIG.backing(os.path.join(top, "drive"), sidecar=False)
        mydrive = os.path.join(backing, "MyDrive")
        gnu_split(BIG.tar, mydrive)
        shutil.copy2(BIG.tar, os.path.join(mydrive, ARCHIVE))
        parts = parts_of(mydrive, ARCHIVE)
        ds = self.drive(backing, *FAST, disk=disk)
        out = os.path.join(disk.root, "by-hand")
        os.makedirs(out)
        one = subprocess.run(["sh", "-c", 'set -o pipefail 2>/dev/null; cat "$0" | tar xf - -C "$1"',
                              self.archive_in(ds), out], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
        self.assertNotEqual(one.returncode, 0, f"the single file fit after all: {disk.size} "
                                               f"bytes of disk, {BIG.data} of data")
        shutil.rmtree(out)
        os.makedirs(out)
        time.sleep(0.5)  # drivesim evicts the closed file's copy as the disk is short
        script = 'cd "$1" && shift && for p in "$@"; do cat "$p" || exit 1; done | tar xf - -C "$0"'
        many = subprocess.run(["sh", "-c", script, out, os.path.dirname(self.archive_in(ds))]
                              + parts, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        self.assertEqual(many.returncode, 0, f"32M parts did not fit: {many.stderr[-500:]}")
        self.assertTreeDigest(os.path.join(out, NAME), BIG.digest, "after extracting parts by hand")

    def test_single_file_archive_that_cannot_fit_with_drives_copy_is_refused_up_front(self):
        disk = self.tight_disk("refuse")
        backing = BIG.backing(os.path.join(self.place("refuse"), "drive"))
        mydrive = os.path.join(backing, "MyDrive")
        drive_before = file_hashes(mydrive)
        ds = self.drive(backing, *FAST, disk=disk)
        before = os.listdir(disk.root)
        p = cli("restore", "--archive", self.archive_in(ds), "--dest", disk.dest,
                "--drive-mount", ds.mount, "--drive-cache", disk.drive_cache)
        read = ds.counter("bytes_read")
        self.assertExit(p, 8, "a single-file archive the disk cannot hold beside Drive's copy")
        self.assertIn("split", p.stderr, "the refusal does not name the fix (split)")
        self.assertIn("local copy", p.stderr.lower(),
                      "the refusal does not say Drive keeps a local copy")
        self.assertLess(read, 16 * MiB, f"read {read} bytes of the archive before refusing")
        self.assertParentUntouched(disk, before, "after the refusal")
        self.assertEqual(file_hashes(mydrive), drive_before, "the Drive folder changed")

    def test_split_in_place_then_the_parts_restore_on_a_disk_that_holds_the_data_once(self):
        disk = self.tight_disk("split")
        backing = BIG.backing(os.path.join(self.place("split"), "drive"))
        mydrive = os.path.join(backing, "MyDrive")
        ds = self.drive(backing, *FAST, disk=disk)
        archive = self.archive_in(ds)
        where = ("--drive-mount", ds.mount, "--drive-cache", disk.drive_cache)
        # the user's session: the restore is refused, they run split, then restore again
        p = cli("restore", "--archive", archive, "--dest", disk.dest, "--quiet", *where)
        self.assertExit(p, 8, "restore of the single file before splitting")
        p = cli("split", "--archive", archive, "--part-size", "32M", "--dest", disk.dest,
                *where, timeout=240)
        self.assertExit(p, 0, "split --part-size 32M")
        names = set(os.listdir(mydrive))
        parts = self.assertParts(mydrive, ARCHIVE, BIG.sha, PART)
        self.assertGreaterEqual(len(parts), math.ceil(BIG.size / PART))
        self.assertNotIn(ARCHIVE, names, "the single file is still there beside its parts")
        self.assertEqual(names, set(parts) | {ARCHIVE + ".1", SIDECAR},
                         "split left other files (temporaries?)")
        self.assertEqual(sha256_file(os.path.join(mydrive, ARCHIVE + ".1")), BIG.sha,
                         "ARCHIVE.1 is not the old single file")
        sidecar = self.assertSha256sumPasses(mydrive)
        self.assertRegex(sidecar, rf"(?m)^# parts {BIG.sha} [0-9a-f,]+ {re.escape(ARCHIVE)}$",
                         "no `# parts` line with the whole hash for the split archive")

        # restore in the same session: Drive's cache still holds what split read and wrote
        p = cli("restore", "--archive", archive, "--dest", disk.dest, *where, timeout=240)
        self.assertExit(p, 0, "restore of the split archive onto the tight disk")
        self.assertTreeDigest(disk.dest, BIG.digest, "after the split restore")
        self.assertTrue(os.path.isfile(os.path.join(disk.dest, MARKER)))
        stats = ds.stats()
        sys.stdout.write(f"\n  split + restore on a {disk.size / 1e6:.0f} MB disk: cache peak "
                         f"{stats.get('cache_peak', 0) / 1e6:.0f} MB, "
                         f"{stats.get('cache_evictions', 0)} evictions (reserve {RESERVE})\n")

        # the parts are plain: `cat parts | tar xf -` gives the same tree
        plain = self.place("split-cat")
        run(["sh", "-c", 'cd "$1" && shift && cat "$@" | tar xf - -C "$0"', plain, mydrive]
            + parts)
        self.assertEqual(os.listdir(plain), [NAME])
        self.assertTreeDigest(os.path.join(plain, NAME), BIG.digest, "after cat parts | tar xf -")

    def test_split_restore_keeps_about_two_parts_in_drives_cache(self):
        """With a reserve larger than the disk, drivesim evicts every closed file's copy at
        once, so its cache_peak is what the restore holds open: about two parts, not the
        archive. (With a small reserve DriveFS evicts only as the disk fills, and the peak
        is about half the free space, whatever the tool does.)"""
        disk = self.tight_disk("peak")
        backing = self.split_master_copy("peak")
        ds = self.drive(backing, disk=disk, reserve=f"{disk.size + (1 << 30)}")
        p = cli("restore", "--archive", self.archive_in(ds), "--dest", disk.dest,
                "--drive-mount", ds.mount, "--drive-cache", disk.drive_cache, timeout=240)
        self.assertExit(p, 0, "restore of the split archive")
        self.assertTreeDigest(disk.dest, BIG.digest, "after the split restore")
        stats = ds.stats()
        self.assertIn("cache_peak", stats, f"drivesim reported no cache_peak: {stats}")
        peak = stats["cache_peak"]
        sys.stdout.write(f"\n  split restore, eager eviction: cache peak {peak / 1e6:.1f} MB of "
                         f"a {BIG.size / 1e6:.0f} MB archive in {PART >> 20} MiB parts\n")
        self.assertLess(peak, 0.4 * BIG.size, f"Drive's cache held {peak} bytes at once "
                                              f"during a restore of {BIG.size} bytes of parts")

    def test_parts_cut_by_gnu_split_without_a_sidecar_restore_exactly(self):
        disk = self.tight_disk("gnu")
        backing = os.path.join(self.place("gnu"), "drive")
        mydrive = os.path.join(backing, "MyDrive")
        os.makedirs(mydrive)
        parts = gnu_split(BIG.tar, mydrive)
        self.assertEqual(len(parts), math.ceil(BIG.size / PART))
        ds = self.drive(backing, *FAST, disk=disk)
        p = cli("restore", "--archive", self.archive_in(ds), "--dest", disk.dest,
                "--drive-mount", ds.mount, "--drive-cache", disk.drive_cache, timeout=240)
        self.assertExit(p, 0, "restore of parts made by GNU split (no sidecar)")
        self.assertTreeDigest(disk.dest, BIG.digest, "after restoring GNU split's parts")
        self.assertEqual(sorted(os.listdir(mydrive)), parts, "the restore changed the Drive")

    def test_save_writes_parts_and_a_single_file_save_that_cannot_fit_is_refused(self):
        disk = self.tight_disk("save")
        backing = self.split_master_copy("save")
        mydrive = os.path.join(backing, "MyDrive")
        old_parts = file_hashes(mydrive)
        old_parts = {n: h for n, h in old_parts.items() if n.startswith(ARCHIVE + ".part-")}
        ds = self.drive(backing, *FAST, disk=disk)
        archive = self.archive_in(ds)
        where = ("--drive-mount", ds.mount, "--drive-cache", disk.drive_cache)
        p = cli("restore", "--archive", archive, "--dest", disk.dest, "--quiet", *where,
                timeout=240)
        self.assertExit(p, 0, "restore of the split archive onto the tight disk")
        self.assertTreeDigest(disk.dest, BIG.digest, "after the restore")

        # a small change, saved as parts of 32M
        with open(os.path.join(disk.dest, "config.yaml"), "a") as f:
            f.write("warmup: 100\n")
        write_random(os.path.join(disk.dest, "notes", "epoch1.bin"), 1 << 20, 11)
        want = tree_digest(disk.dest)
        p = cli("save", "--dest", disk.dest, "--archive", archive, "--part-size", "32M",
                "--full", "--format", "tar", *where, timeout=240)
        self.assertExit(p, 0, "save --part-size 32M --full from the tight disk")
        self.assertEqual(temporaries(os.path.join(mydrive, ARCHIVE)), [],
                         "temporaries left by the save")
        new_sha = concat_sha(os.path.join(mydrive, n) for n in parts_of(mydrive, ARCHIVE))
        self.assertParts(mydrive, ARCHIVE, new_sha, PART)
        self.assertNotIn(ARCHIVE, os.listdir(mydrive), "a single file beside the new parts")
        previous = {n.replace(ARCHIVE + ".1.part-", ARCHIVE + ".part-"): sha256_file(
            os.path.join(mydrive, n)) for n in parts_of(mydrive, ARCHIVE + ".1")}
        self.assertEqual(previous, old_parts, "the old parts did not become version 1")
        self.assertSha256sumPasses(mydrive)
        check = os.path.join(self.place("save-check"), NAME)
        p = cli("restore", "--archive", archive, "--dest", check, "--quiet",
                "--drive-mount", ds.mount, timeout=240)
        self.assertExit(p, 0, "restore of the saved parts (to a regular disk)")
        self.assertTreeDigest(check, want, "restore of what save --part-size 32M wrote")

        # a bigger folder as ONE file: it does not fit beside Drive's copy: refused up front
        write_random(os.path.join(disk.dest, "checkpoints", "step_2.bin"), 24 * MiB, 12)
        drive_before = file_hashes(mydrive)
        p = cli("save", "--dest", disk.dest, "--archive", archive, "--part-size", "0",
                "--full", "--format", "tar", *where, timeout=240)
        self.assertExit(p, 8, "save --part-size 0 --full of a folder whose single-file "
                              "archive cannot fit beside Drive's local copy")
        self.assertIn("--part-size", p.stderr, "the refusal does not name --part-size")
        self.assertEqual(file_hashes(mydrive), drive_before,
                         "the refused save changed the Drive folder (names or bytes)")


# -- 5. kill -9 at chosen steps of a split save ---------------------------------------------
class KillSweepSplitSave(PartsCase):
    """The old Drive holds SMALL as parts of 8M (two full saves: the archive and .1); the
    local folder holds a changed tree. A clean `save --part-size 8M --full` is logged
    (--oplog); for ~30 chosen call numbers the old state is copied afresh, the save runs as
    a process drivesim SIGKILLs at that call, and a restore from a clean mount must give the
    old or the new tree exactly."""

    LIMIT = 30

    @staticmethod
    def thin(points, ops_by_n, limit):
        """At most `limit` of points: the first and last, renames and unlinks first, the
        rest evenly spaced."""
        if len(points) <= limit:
            return points
        must = {points[0], points[-1]} | {n for n in points
                                          if ops_by_n[n][0] in ("rename", "unlink")}
        if len(must) >= limit:
            ordered = sorted(must)
            return sorted({ordered[round(i * (len(ordered) - 1) / (limit - 1))]
                           for i in range(limit)})
        rest = [n for n in points if n not in must]
        want = limit - len(must)
        return sorted(must | {rest[round(i * (len(rest) - 1) / max(1, want - 1))]
                              for i in range(want)})

    def test_kill9_at_any_step_of_a_split_save_leaves_the_old_or_the_new_tree(self):
        top = self.place("sweep")
        mnt = os.path.join(top, "mnt")  # every mount of this state is here
        old_drive = os.path.join(top, "drive-old")
        os.makedirs(os.path.join(old_drive, "MyDrive"))
        template = os.path.join(top, "local", NAME)
        shutil.copytree(SMALL.src, template, symlinks=True)
        # ARCHIVE.1: an older tree (SMALL + 1 MB at the front); ARCHIVE: SMALL, the old tree
        older_file = os.path.join(template, "aaa-older", "older.bin")
        write_random(older_file, 1 << 20, 4)
        older = tree_digest(template)
        with DriveSim(old_drive, mnt, *FAST) as ds:
            for round_ in range(2):
                if round_:
                    shutil.rmtree(os.path.dirname(older_file))
                p = cli("save", "--dest", template, "--archive", self.archive_in(ds),
                        "--part-size", "8M", "--full", "--format", "tar", "--quiet",
                        "--drive-mount", ds.mount)
                self.assertExit(p, 0, f"setting up the old Drive: save {round_ + 1}")
        mydrive = os.path.join(old_drive, "MyDrive")
        self.assertGreaterEqual(len(parts_of(mydrive, ARCHIVE)), 2)
        self.assertGreaterEqual(len(parts_of(mydrive, ARCHIVE + ".1")), 2)
        old = tree_digest(template)
        self.assertEqual(old, SMALL.digest)
        # the new tree: a changed config, a new 3 MB file, a deleted image
        with open(os.path.join(template, "config.yaml"), "a") as f:
            f.write("warmup: 100\n")
        write_random(os.path.join(template, "checkpoints", "step_1.bin"), 3 * MiB, 5)
        os.remove(sorted(glob.glob(os.path.join(template, "images", "class_00", "*.jpg")))[0])
        new = tree_digest(template)

        def copies(label):
            where = os.path.join(top, label)
            backing = copy_backing(old_drive, os.path.join(where, "drive"))
            local = os.path.join(where, "local", NAME)
            shutil.copytree(template, local, symlinks=True)
            return where, backing, local

        def save(backing, local, *args):
            with DriveSim(backing, mnt, *FAST, *args) as ds:
                return cli("save", "--dest", local, "--archive", self.archive_in(ds),
                           "--part-size", "8M", "--full", "--format", "tar", "--quiet",
                           "--drive-mount", ds.mount, timeout=120)

        def outcome(where, backing):
            """("old" | "new" | None, problem or None) of a restore from a clean mount."""
            dest = os.path.join(where, "restored", NAME)
            with DriveSim(backing, mnt, *FAST) as ds:
                p = cli("restore", "--archive", self.archive_in(ds), "--dest", dest,
                        "--quiet", "--drive-mount", ds.mount, timeout=120)
            if p.returncode:
                return None, f"the restore exited {p.returncode}: {tail(p.stderr, 300)}"
            got = tree_digest(dest)
            if got in (old, new):
                return ("old" if got == old else "new"), None
            if got == older:
                return None, "the restore gave the version before the old one (ARCHIVE.1)"
            near = new if len(set(got.items()) ^ set(new.items())) < len(
                set(got.items()) ^ set(old.items())) else old
            return None, f"the restore gave neither tree: {diff_text(got, near)}"

        where, backing, local = copies("clean")
        oplog = os.path.join(top, "oplog.txt")
        p = save(backing, local, "--oplog", oplog)
        self.assertExit(p, 0, "the clean save --part-size 8M --full")
        got, problem = outcome(where, backing)
        self.assertEqual((got, problem), ("new", None), "the clean save")
        self.assertGreaterEqual(len(parts_of(os.path.join(backing, "MyDrive"), ARCHIVE)), 2,
                                "the clean save wrote no parts")
        shutil.rmtree(where)
        ops = read_oplog(oplog)
        ops_by_n = {n: (op, paths) for n, op, paths in ops}
        points = kill_points(ops, at_least=24, min_bulk_writes=10,
                             bulk=lambda path: ".part-" in path)
        points = self.thin(points, ops_by_n, self.LIMIT)
        self.assertGreaterEqual(len(points), 20, f"only {len(points)} kill points in {len(ops)}")

        outcomes, failures, unreached = {}, [], []
        for n in points:
            op, paths = ops_by_n[n]
            what = f"kill at call {n}/{len(ops)} ({op} {' '.join(map(os.path.basename, paths))})"
            where, backing, local = copies(f"kill-{n}")
            log = os.path.join(where, "oplog.txt")
            p = save(backing, local, "--kill-at-op", n, "--oplog", log)
            outcomes[n], problem = outcome(where, backing)
            if p.returncode == 0 and len(read_oplog(log)) < n:
                # this run made fewer changing calls than the logged one (the kernel cut a
                # write differently): it finished, so it must have saved the new tree
                unreached.append(f"{n} (this run made {len(read_oplog(log))} calls)")
                if outcomes[n] != "new":
                    failures.append(f"{what}: the save finished, yet {problem or 'the old tree'}")
            elif p.returncode != -signal.SIGKILL:
                failures.append(f"{what}: the save was not killed ({said(p)})")
            elif problem:
                failures.append(f"{what}: {problem}")
            shutil.rmtree(where, ignore_errors=True)
        summary = " ".join(f"{n}{ops_by_n[n][0][0]}:{outcomes[n] or '?'}" for n in points)
        sys.stdout.write(f"\n  split save sweep, {len(points)} of {len(ops)} calls (c create, "
                         f"w write, f fsync, r rename, u unlink) -> {summary}\n")
        if unreached:
            sys.stdout.write(f"  not reached (the run ended first): {', '.join(unreached)}\n")
        self.assertEqual(failures, [], f"{len(failures)} problem(s) in the sweep")
        self.assertLessEqual(len(unreached), max(2, len(points) // 10),
                             f"call numbers drift between runs: {unreached}")
        self.assertIn("old", outcomes.values(), "no kill point gave the old tree")


# -- 6. transient mount errors inside a part --------------------------------------------------
class TransientErrorsInsideAPart(PartsCase):

    def test_a_transient_read_error_inside_a_part_is_ridden_out_and_resumed_there(self):
        """The fault starts 56M into the stream: 24M into the second 32M part. Resuming
        inside that part re-reads little; starting the part (or the archive) again would
        re-read 24M or more."""
        for name in ("EIO", "ENOTCONN"):
            with self.subTest(errno=name):
                backing = self.split_master_copy(f"fault-{name}")
                ds = self.drive(backing, "--fault", f"op=read,after=56M,errno={name},secs=2")
                dest = os.path.join(self.place(f"fault-{name}-dest"), NAME)
                p = cli("restore", "--archive", self.archive_in(ds), "--dest", dest,
                        "--drive-mount", ds.mount, timeout=180)
                stats = ds.stats()
                self.assertGreater(stats.get("faults", 0), 0, "the fault never fired")
                self.assertExit(p, 0, f"restore through {name} for 2 s inside part 2")
                self.assertTreeDigest(dest, BIG.digest, f"after riding out {name}")
                extra = stats.get("bytes_read", 0) - BIG.size
                sys.stdout.write(f"\n  {name} for 2 s at 56M: {stats.get('faults')} failed "
                                 f"calls, {extra / 1e6:.2f} MB read twice\n")
                self.assertLess(extra, 8 * MiB, f"read {extra} bytes more than the archive: "
                                                f"not resumed inside the part")
                ds.cleanup()


# -- quick checks on SMALL, regular disk, no cache ---------------------------------------------
class SmallSplitChecks(PartsCase):

    def test_split_keep_0_deletes_the_single_file_and_a_second_split_changes_nothing(self):
        backing = SMALL.backing(os.path.join(self.place("keep0"), "drive"))
        mydrive = os.path.join(backing, "MyDrive")
        ds = self.drive(backing, *FAST)
        archive = self.archive_in(ds)
        dest = os.path.join(self.place("keep0-dest"), NAME)
        p = cli("split", "--archive", archive, "--part-size", "8M", "--keep", "0",
                "--drive-mount", ds.mount, "--dest", dest)
        self.assertExit(p, 0, "split --part-size 8M --keep 0")
        parts = self.assertParts(mydrive, ARCHIVE, SMALL.sha, 8 * MiB)
        self.assertEqual(sorted(os.listdir(mydrive)), sorted(parts + [SIDECAR]),
                         "with --keep 0 only the parts and the sidecar stay")
        self.assertSha256sumPasses(mydrive)
        state = file_hashes(mydrive)
        p = cli("split", "--archive", archive, "--part-size", "8M", "--keep", "0",
                "--drive-mount", ds.mount, "--dest", dest)
        self.assertExit(p, 0, "split of an archive that is already split")
        self.assertEqual(file_hashes(mydrive), state, "a second split changed the Drive")
        p = cli("restore", "--archive", archive, "--dest", dest, "--quiet",
                "--drive-mount", ds.mount)
        self.assertExit(p, 0, "restore after split --keep 0")
        self.assertTreeDigest(dest, SMALL.digest, "after split --keep 0")

    def test_gnu_split_parts_restore_unverified_and_report_their_count(self):
        import bootstrap_assets as ba
        backing = os.path.join(self.place("gnu-small"), "drive")
        mydrive = os.path.join(backing, "MyDrive")
        os.makedirs(mydrive)
        parts = gnu_split(SMALL.tar, mydrive, "8M")
        ds = self.drive(backing, *FAST)
        dest = os.path.join(self.place("gnu-small-dest"), NAME)
        r = ba.restore(self.archive_in(ds), dest, quiet=True, drive_mount=ds.mount)
        self.assertEqual(r.action, "restored")
        self.assertEqual(r.parts, len(parts))
        self.assertFalse(r.verified, "verified with no sidecar at all")
        self.assertTreeDigest(dest, SMALL.digest, "after GNU split's 8M parts")

    def test_gnu_split_parts_beside_the_old_sidecar_are_checked_against_its_whole_hash(self):
        import bootstrap_assets as ba
        backing = os.path.join(self.place("gnu-sidecar"), "drive")
        mydrive = os.path.join(backing, "MyDrive")
        os.makedirs(mydrive)
        gnu_split(SMALL.tar, mydrive, "8M")
        with open(os.path.join(mydrive, SIDECAR), "w") as f:
            f.write(SMALL.sidecar)  # the user kept the single file's sidecar
        ds = self.drive(backing, *FAST)
        dest = os.path.join(self.place("gnu-sidecar-dest"), NAME)
        r = ba.restore(self.archive_in(ds), dest, quiet=True, drive_mount=ds.mount)
        self.assertTrue(r.verified, "the sidecar's line for the archive was not checked")
        self.assertEqual(r.sha256, SMALL.sha)
        self.assertTreeDigest(dest, SMALL.digest, "after GNU split's parts with the old sidecar")
        # the same parts under a sidecar naming another archive's hash: refused
        with open(os.path.join(mydrive, SIDECAR), "w") as f:
            f.write(f"{'0' * 64}  {ARCHIVE}\n")
        dest2 = os.path.join(self.place("gnu-sidecar-dest2"), NAME)
        p = cli("restore", "--archive", self.archive_in(ds), "--dest", dest2,
                "--drive-mount", ds.mount)
        self.assertExit(p, 5, "parts whose whole does not match the sidecar")
        self.assertFalse(os.path.lexists(dest2), "a mismatching archive left a folder")
        self.assertEqual(glob.glob(os.path.join(os.path.dirname(dest2), f".{NAME}.staging-*")),
                         [], "staging folder left behind")

    def test_a_missing_middle_part_is_a_corrupt_archive_naming_the_part(self):
        backing = os.path.join(self.place("gap"), "drive")
        mydrive = os.path.join(backing, "MyDrive")
        os.makedirs(mydrive)
        parts = gnu_split(SMALL.tar, mydrive, "8M")
        self.assertGreaterEqual(len(parts), 4)
        os.remove(os.path.join(mydrive, parts[2]))  # 0001, 0002, 0004, ...
        ds = self.drive(backing, *FAST)
        dest = os.path.join(self.place("gap-dest"), NAME)
        p = cli("restore", "--archive", self.archive_in(ds), "--dest", dest,
                "--drive-mount", ds.mount)
        self.assertExit(p, 7, "parts 0001, 0002, 0004...: a part missing in the middle")
        self.assertIn("part-0003", p.stderr, "the error does not name the missing part")
        self.assertFalse(os.path.lexists(dest), "a folder was made from a gap-toothed archive")
        self.assertEqual(glob.glob(os.path.join(os.path.dirname(dest), f".{NAME}.staging-*")),
                         [], "staging folder left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
