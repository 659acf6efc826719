"""Split archives (ARCHIVE.part-0001, ...): save and restore in parts, GNU split interop,
versions and layers of split archives, crashes while publishing parts, the `split` command,
--part-size, Drive's local cache in the space plan (tmpfs, root only), and the messages for
Drive's download quota and for archives that live in a shared drive.

Everything runs in-process on plain temp folders (drive_mount="" unless a fake Drive mount is
needed, where os.path.ismount is patched to say yes for it).
"""
import contextlib
import errno
import io
import os
import re
import shutil
import subprocess
import tarfile
import time
from unittest import mock

import helpers as h
from helpers import D, F, ba

TOP = h.SAVE_TOP
PART = 64 * 1024
ENV_DRIVE_CACHE = "BOOTSTRAP_ASSETS_DRIVE_CACHE"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def part_paths(archive):
    """ARCHIVE.part-NNNN (exactly four digits) in name order."""
    folder, base = os.path.split(archive)
    prefix = base + ".part-"
    names = sorted(n for n in os.listdir(folder)
                   if n.startswith(prefix) and re.fullmatch(r"\d{4}", n[len(prefix):]))
    return [os.path.join(folder, n) for n in names]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def concat(paths):
    return b"".join(read_bytes(p) for p in paths)


def write_parts(archive, data, size):
    """data cut into ARCHIVE.part-0001 ... of `size` bytes (what GNU split makes)."""
    paths = []
    for i, start in enumerate(range(0, len(data), size), 1):
        paths.append(h.write_bytes("%s.part-%04d" % (archive, i), data[start:start + size]))
    return paths


def parts_lines(archive):
    """{version name: (whole sha256, [part sha256, ...])} from the sidecar's `# parts` lines."""
    out = {}
    path = archive + ".sha256"
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# parts "):
                fields = line.split(" ", 4)
                if len(fields) == 5:
                    out[fields[4]] = (fields[2], fields[3].split(","))
    return out


def rchar():
    """Bytes this process has read through read() calls so far (None if unknown)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def fake_drive_mount(mount):
    """os.path.ismount says yes for `mount` (a plain folder standing in for Drive's mount)."""
    real = os.path.ismount
    mount = os.path.abspath(mount)

    def ismount(path):
        try:
            if os.path.abspath(os.fspath(path)) == mount:
                return True
        except TypeError:
            pass
        return real(path)
    with mock.patch("os.path.ismount", ismount):
        yield


class PartsTestCase(h.SaveTestCase):

    def setUp(self):
        super().setUp()
        os.environ.pop(ENV_DRIVE_CACHE, None)

    def fill(self, root=None, size=1_000_000, seed=1):
        """An `_assets`-like folder with one incompressible file of `size` bytes."""
        root = root or self.local
        h.write_bytes(os.path.join(root, "weights", "big.bin"), h.rand_bytes(size, seed))
        h.write_bytes(os.path.join(root, "README.txt"), b"readme %d\n" % seed)
        h.write_bytes(os.path.join(root, "sub", "deep", "small.txt"), b"small\n" * (10 + seed))
        os.chmod(os.path.join(root, "sub", "deep", "small.txt"), 0o600)
        os.makedirs(os.path.join(root, "empty"), exist_ok=True)
        if not os.path.lexists(os.path.join(root, "link")):
            os.symlink("README.txt", os.path.join(root, "link"))
        return h.saved_view(root)

    def split(self, archive=None, **kw):
        kw.setdefault("quiet", True)
        kw.setdefault("drive_mount", "")
        kw.setdefault("dest", self.dest)
        kw.setdefault("lock_timeout", 5.0)
        kw.setdefault("retry_for", 2.0)
        kw.setdefault("part_size", PART)
        return ba.split(archive or self.archive, **kw)

    def assertParts(self, archive, part_size=PART, at_least=2):
        """ARCHIVE is split: no single file, parts numbered 0001.. without gaps, each at most
        part_size. Returns the part paths."""
        parts = part_paths(archive)
        self.assertFalse(os.path.exists(archive), "a single file beside the parts: %s" % archive)
        self.assertGreaterEqual(len(parts), at_least, "parts: %s" % parts)
        self.assertEqual([os.path.basename(p) for p in parts],
                         ["%s.part-%04d" % (os.path.basename(archive), i)
                          for i in range(1, len(parts) + 1)])
        sizes = [os.path.getsize(p) for p in parts]
        self.assertLessEqual(max(sizes), part_size, "a part over the part size: %s" % sizes)
        self.assertTrue(all(sizes), "an empty part: %s" % sizes)
        return parts

    def assertPartsLine(self, archive, name, parts):
        """The sidecar's `# parts` line for version `name` has the whole hash and each part's."""
        lines = parts_lines(archive)
        self.assertIn(name, lines, "no `# parts` line for %s: %s" % (name, lines))
        whole, hashes = lines[name]
        self.assertEqual(whole, h.sha256_bytes(concat(parts)), "whole hash of %s" % name)
        self.assertEqual(hashes, [h.sha256_file(p) for p in parts], "part hashes of %s" % name)
        return whole

    def assertSha256sumC(self, archive):
        if not shutil.which("sha256sum"):
            return
        folder, base = os.path.split(archive)
        r = subprocess.run(["sha256sum", "-c", base + ".sha256"], cwd=folder,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(r.returncode, 0, "sha256sum -c: %s" % r.stdout.decode(errors="replace"))

    def current_line(self, lines, label="current"):
        found = [l for l in lines if l.strip().startswith(label + ":")]
        self.assertEqual(len(found), 1, lines)
        return found[0]


# --------------------------------------------------------------------------------------
# save in parts
# --------------------------------------------------------------------------------------

class SaveInPartsTests(PartsTestCase):

    def test_small_part_size_writes_parts_that_concatenate_to_the_archive(self):
        want = self.fill(size=1_000_000)
        for fmt in ("tar", "gz"):
            with self.subTest(format=fmt):
                archive = os.path.join(self.drive, fmt, "assets.tar.gz")
                r = self.save(archive=archive, format=fmt, part_size=PART, incremental="never")
                self.assertEqual((r.action, r.format), ("saved", fmt))
                parts = self.assertParts(archive)
                self.assertGreaterEqual(len(parts), 15)  # ~1 MB in 64 KiB parts
                self.assertEqual(r.parts, len(parts))
                whole = concat(parts)
                self.assertEqual(r.sha256, h.sha256_bytes(whole))
                if fmt == "gz":
                    self.assertTrue(whole.startswith(b"\x1f\x8b"))
                else:
                    self.assertEqual(whole[257:262], b"ustar")
                with tarfile.open(fileobj=io.BytesIO(whole), mode="r:*") as tf:
                    names = [m.name for m in tf.getmembers()]
                    big = tf.extractfile(TOP + "/weights/big.bin").read()
                self.assertTrue(all(n == TOP or n.startswith(TOP + "/") for n in names), names)
                self.assertEqual(sorted(n[len(TOP) + 1:] for n in names if n != TOP),
                                 sorted(h.snapshot(self.local)))
                self.assertEqual(big, read_bytes(os.path.join(self.local, "weights", "big.bin")))
                self.assertPartsLine(archive, "assets.tar.gz", parts)
                self.assertSha256sumC(archive)
                self.assertSidecarConsistent(archive)
                dest, rr = self.assertRestores(want, archive=archive)
                self.assertTrue(rr.verified)
                self.assertEqual(rr.parts, len(parts))
                os.unlink(os.path.join(self.local, h.MARKER))

    def test_archive_smaller_than_the_part_size_is_one_file(self):
        want = self.fill(size=50_000)
        r = self.save(part_size=4 * PART)
        self.assertEqual(r.action, "saved")
        self.assertEqual(r.parts, 0)
        self.assertTrue(os.path.isfile(self.archive))
        self.assertEqual(part_paths(self.archive), [])
        self.assertEqual(parts_lines(self.archive), {})
        self.assertEqual(r.sha256, h.sha256_file(self.archive))
        self.assertSidecarConsistent()
        dest, rr = self.assertRestores(want)
        self.assertEqual(rr.parts, 0)

    def test_part_size_zero_is_always_one_file(self):
        want = self.fill(size=1_000_000)
        r = self.save(part_size=0, format="tar")
        self.assertEqual((r.action, r.parts), ("saved", 0))
        self.assertTrue(os.path.isfile(self.archive))
        self.assertGreater(os.path.getsize(self.archive), 1_000_000)
        self.assertEqual(part_paths(self.archive), [])
        self.assertSidecarConsistent()
        self.assertRestores(want)

    def test_default_part_size_is_one_gib_so_small_archives_stay_single(self):
        self.assertEqual(ba.DEFAULT_PART_SIZE, 1 << 30)
        want = self.fill(size=300_000)
        r = self.save()
        self.assertEqual((r.action, r.parts), ("saved", 0))
        self.assertTrue(os.path.isfile(self.archive))
        self.assertEqual(part_paths(self.archive), [])
        self.assertRestores(want)

    def test_cli_save_with_part_size_then_restore(self):
        want = self.fill(size=300_000)
        rc, out, err = self.run_main(["save", "--archive", self.archive, "--dest", self.local,
                                      "--drive-mount", "", "--part-size", "64K", "--full",
                                      "--quiet"])
        self.assertEqual(rc, 0, err)
        parts = self.assertParts(self.archive)
        self.assertPartsLine(self.archive, "assets.tar.gz", parts)
        dest = self.out()
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", dest,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 0, err)
        got = h.strip_special(h.snapshot(dest, dir_modes=True))
        self.assertEqual(got, want, h.summarize(got, want))


# --------------------------------------------------------------------------------------
# restore of parts
# --------------------------------------------------------------------------------------

GNU_MEMBERS = [D("top"), F("top/a.txt", b"alpha\n"), F("top/big.bin", h.rand_bytes(300_000, 5)),
               D("top/sub"), F("top/sub/z.txt", b"zed\n", mode=0o600)]


class RestorePartsTests(PartsTestCase):

    def gnu_split(self, data, name="assets.tar", size="64K", keep_sidecar=False):
        """`split -b SIZE -d -a 4 --numeric-suffixes=1 NAME NAME.part-` in a fresh folder,
        then the original file is deleted (optionally keeping its sidecar line)."""
        if not shutil.which("split"):
            self.skipTest("no split program")
        folder = self.subdir("gnusplit-")
        path = h.write_bytes(os.path.join(folder, name), data)
        if keep_sidecar:
            h.write_sidecar(path)
        r = subprocess.run(["split", "-b", size, "-d", "-a", "4", "--numeric-suffixes=1",
                            name, name + ".part-"], cwd=folder, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.skipTest("split failed: %s" % r.stdout.decode(errors="replace"))
        os.unlink(path)
        parts = part_paths(path)
        self.assertGreaterEqual(len(parts), 4)
        self.assertEqual(concat(parts), data)
        return path, parts

    def test_restore_finds_parts_by_the_archive_name(self):
        want = self.fill(size=400_000)
        r = self.save(part_size=PART, format="gz")
        parts = self.assertParts(self.archive)
        whole = h.sha256_bytes(concat(parts))
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, rr = self.assertRestores(want, engine=engine)
                self.assertEqual(rr.action, "restored")
                self.assertTrue(rr.verified)
                self.assertEqual(rr.parts, len(parts))
                self.assertEqual(rr.sha256, whole)
                self.assertEqual(r.sha256, whole)
                self.assertNoStaging(dest)

    def test_gnu_split_parts_restore_without_a_sidecar_unverified(self):
        data = h.archive_bytes(GNU_MEMBERS, "tar")
        archive, parts = self.gnu_split(data)
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = self.out()
                r = self.restore(archive, dest, engine=engine, drive_mount="")
                self.assertEqual(r.action, "restored")
                self.assertFalse(r.verified)
                self.assertEqual(r.parts, len(parts))
                self.assertEqual(r.sha256, h.sha256_bytes(data))
                self.assertTree(dest, h.expected_tree(GNU_MEMBERS, strip_top=True))

    def test_gnu_split_parts_with_the_old_single_file_sidecar_line_restore_verified(self):
        data = h.archive_bytes(GNU_MEMBERS, "tar")
        archive, parts = self.gnu_split(data, keep_sidecar=True)
        with open(archive + ".sha256") as f:
            self.assertEqual(f.read(), "%s  assets.tar\n" % h.sha256_bytes(data))
        dest = self.out()
        r = self.restore(archive, dest, drive_mount="")
        self.assertTrue(r.verified)
        self.assertEqual(r.parts, len(parts))
        self.assertTree(dest, h.expected_tree(GNU_MEMBERS, strip_top=True))

    def test_gnu_split_corrupted_part_with_the_old_sidecar_line_is_checksum_mismatch(self):
        data = h.archive_bytes(GNU_MEMBERS, "tar")
        archive, parts = self.gnu_split(data, keep_sidecar=True)
        with open(parts[1], "r+b") as f:  # byte 98304 of the stream: inside big.bin's data
            f.seek(PART // 2)
            b = f.read(1)
            f.seek(PART // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        dest = self.out()
        self.assertBAError("ChecksumMismatch", self.restore, archive, dest, drive_mount="")
        self.assertUntouched(dest, None)
        rc, out, err = self.run_main(["restore", "--archive", archive, "--dest", dest,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 5, err)
        self.assertUntouched(dest, None)

    def test_missing_middle_part_is_corrupt_archive_and_dest_untouched(self):
        # parts written by save (with a `# parts` line), over a folder restored before
        old = self.fill(size=20_000, seed=1)
        self.save(part_size=0)
        dest, _ = self.assertRestores(old)
        before = h.state(dest)
        self.fill(size=400_000, seed=2)
        self.save(part_size=PART, incremental="never")
        parts = self.assertParts(self.archive, at_least=4)
        os.unlink(parts[2])
        e = self.assertBAError("CorruptArchive", self.restore, self.archive, dest,
                               drive_mount="")
        self.assertIn("part-0003", str(e))
        self.assertUntouched(dest, before)
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", dest,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 7, err)
        self.assertIn("part-0003", err)
        self.assertUntouched(dest, before)

    def test_missing_middle_part_of_saved_parts_without_an_older_version_is_corrupt_archive(self):
        self.fill(size=400_000)
        self.save(part_size=PART)
        parts = self.assertParts(self.archive, at_least=4)
        os.unlink(parts[2])
        dest = self.out()
        e = self.assertBAError("CorruptArchive", self.restore, self.archive, dest,
                               drive_mount="")
        self.assertIn("part-0003", str(e))
        self.assertUntouched(dest, None)

    def test_missing_middle_part_of_gnu_split_parts_is_corrupt_archive(self):
        data = h.archive_bytes(GNU_MEMBERS, "tar")
        archive, parts = self.gnu_split(data)
        os.unlink(parts[2])
        dest = self.out()
        e = self.assertBAError("CorruptArchive", self.restore, archive, dest, drive_mount="")
        self.assertIn("part-0003", str(e))
        self.assertUntouched(dest, None)

    def test_single_file_wins_over_parts_of_the_same_name_and_status_says_ignored(self):
        single_members = [D("top"), F("top/from_single.txt", b"the single file\n")]
        split_members = [D("top"), F("top/from_parts.bin", h.rand_bytes(200_000, 8))]
        folder = self.subdir("both-")
        archive = h.write_bytes(os.path.join(folder, "assets.tar"),
                                h.archive_bytes(single_members, "tar"))
        write_parts(archive, h.archive_bytes(split_members, "tar"), PART)
        dest = self.out()
        r = self.restore(archive, dest, drive_mount="")
        self.assertEqual(r.parts, 0)
        self.assertTree(dest, h.expected_tree(single_members, strip_top=True))
        lines = ba.status(archive, dest, drive_mount="")
        self.assertIn("ignored", self.current_line(lines), lines)

    def test_noop_rerun_after_restoring_parts_does_not_read_them(self):
        want = self.fill(size=300_000)
        self.save(part_size=PART)
        parts = self.assertParts(self.archive)
        dest, r1 = self.assertRestores(want)
        self.assertEqual(r1.action, "restored")
        before = h.state(dest)
        # same sizes, mtimes and inodes, different bytes: only reading the parts would notice
        for i, p in enumerate(parts):
            st = os.stat(p)
            with open(p, "r+b") as f:
                f.write(h.rand_bytes(st.st_size, 100 + i))
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        t0 = time.monotonic()
        with h.FlakyReads(parts[0], errno.EIO, fail_calls=(), fail_from=1) as fr:
            r2 = self.restore(self.archive, dest, drive_mount="")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(r2.action, "unchanged")
        self.assertEqual(fr.calls, 0, "the first part was read")
        self.assertEqual(list(r2.local_changes), [])
        self.assertEqual(h.state(dest), before)
        self.assertNoStaging(dest)

    def test_status_names_the_count_of_parts(self):
        self.fill(size=300_000, seed=1)
        self.save(part_size=PART)
        n0 = len(self.assertParts(self.archive))
        self.fill(size=200_000, seed=2)
        self.save(part_size=PART, incremental="never")
        n1 = len(part_paths(self.archive + ".1"))
        lines = ba.status(self.archive, self.local, drive_mount="")
        self.assertRegex(self.current_line(lines), r"current: assets\.tar\.gz\s+\(%d parts\)"
                         % len(part_paths(self.archive)))
        self.assertRegex(self.current_line(lines, "--previous 1"),
                         r"--previous 1: assets\.tar\.gz\.1\s+\(%d parts\)" % n1)
        self.assertEqual(n1, n0)
        self.assertNotIn("ignored", "\n".join(lines))


# --------------------------------------------------------------------------------------
# versions and layers of split archives
# --------------------------------------------------------------------------------------

class PartsVersionTests(PartsTestCase):

    def set_tree(self, i, size=150_000):
        h.write_bytes(os.path.join(self.local, "version.txt"), b"version %d\n" % i)
        h.write_bytes(os.path.join(self.local, "weights", "big.bin"), h.rand_bytes(size, 40 + i))
        return h.saved_view(self.local)

    def groups(self, archive):
        """{"" | ".1" | ...: [part numbers]} of the archive family; fails on anything else."""
        base = os.path.basename(archive)
        out = {}
        for name in h.archive_family(archive):
            m = re.fullmatch(re.escape(base) + r"(\.\d+)?\.part-(\d{4})", name)
            self.assertTrue(m, "not a part of a version: %s" % name)
            out.setdefault(m.group(1) or "", []).append(int(m.group(2)))
        for nums in out.values():
            self.assertEqual(sorted(nums), list(range(1, len(nums) + 1)))
        return out

    def test_three_split_saves_keep_two_versions_of_parts(self):
        views = []
        for i in range(3):
            views.append(self.set_tree(i))
            r = self.save(incremental="never", keep=2, part_size=PART)
            self.assertEqual(r.action, "saved")
            self.assertGreaterEqual(r.parts, 2)
        groups = self.groups(self.archive)
        self.assertEqual(sorted(groups), ["", ".1", ".2"])
        for suffix in ("", ".1", ".2"):
            self.assertFalse(os.path.exists(self.archive + suffix))
            self.assertPartsLine(self.archive, "assets.tar.gz" + suffix,
                                 part_paths(self.archive + suffix))
        self.assertSidecarConsistent()
        for version, view in ((0, views[2]), (1, views[1]), (2, views[0])):
            with self.subTest(version=version):
                dest, r = self.assertRestores(view, version=version)
                self.assertTrue(r.verified)
                self.assertEqual(r.parts, len(groups[".%d" % version if version else ""]))
        self.assertBAError("SourceMissing", self.restore, self.archive, self.out(), version=3,
                           drive_mount="")
        # a fourth save drops the oldest, all its parts
        views.append(self.set_tree(3))
        self.save(incremental="never", keep=2, part_size=PART)
        self.assertEqual(sorted(self.groups(self.archive)), ["", ".1", ".2"])
        self.assertRestores(views[1], version=2)
        self.assertSidecarConsistent()

    def test_versions_that_share_identical_parts_stay_restorable(self):
        """Two saves that differ only in a small file near the start of the stream: the
        parts after it are byte for byte the same in both versions (same hash)."""
        self.fill(size=300_000)
        h.write_bytes(os.path.join(self.local, "README.txt"), b"version A\n")
        first = h.saved_view(self.local)
        self.save(incremental="never", part_size=PART)
        h.write_bytes(os.path.join(self.local, "README.txt"), b"version B\n")
        second = h.saved_view(self.local)
        self.save(incremental="never", part_size=PART)
        shared = ({h.sha256_file(p) for p in part_paths(self.archive)}
                  & {h.sha256_file(p) for p in part_paths(self.archive + ".1")})
        self.assertTrue(shared, "the setup should make identical parts")
        self.assertSidecarConsistent()
        self.assertRestores(second)
        dest, r = self.assertRestores(first, version=1)
        self.assertTrue(r.verified)

    def test_switching_between_single_and_split_keeps_versions_restorable(self):
        views = []
        sizes = [0, PART, 0, PART]  # single, split, single, split
        for i, part_size in enumerate(sizes):
            views.append(self.set_tree(i))
            r = self.save(incremental="never", keep=2, part_size=part_size)
            self.assertEqual(r.action, "saved")
            self.assertEqual(bool(r.parts), bool(part_size), "save %d" % i)
            for version in range(min(i, 2) + 1):
                name = self.archive + (".%d" % version if version else "")
                split = bool(sizes[i - version])
                with self.subTest(save=i, version=version, split=split):
                    if split:
                        self.assertParts(name)
                    else:
                        self.assertTrue(os.path.isfile(name))
                        self.assertEqual(part_paths(name), [], "stale parts beside %s" % name)
                    dest, rr = self.assertRestores(views[i - version], version=version)
                    self.assertTrue(rr.verified)
            self.assertFalse(os.path.lexists(self.archive + ".3"))
            self.assertEqual(part_paths(self.archive + ".3"), [])
            self.assertSidecarConsistent()


class PartsLayerTests(PartsTestCase):

    def test_layer_over_a_restored_split_archive_is_one_file_named_after_the_whole_hash(self):
        self.fill(size=300_000)
        self.save(part_size=PART)
        whole = h.sha256_bytes(concat(self.assertParts(self.archive)))
        restored = self.out("restored")
        self.restore(self.archive, restored, drive_mount="")
        self.assertEqual(self.save(dest=restored, part_size=PART).action, "unchanged")
        h.write_bytes(os.path.join(restored, "note.txt"), b"a small change\n")
        h.write_bytes(os.path.join(restored, "more.bin"), h.rand_bytes(100_000, 12))  # > PART
        r = self.save(dest=restored, incremental="always", part_size=PART)
        self.assertEqual(r.action, "layer")
        self.assertEqual(r.parts, 0)
        self.assertEqual(os.path.basename(r.written), "assets.tar.gz.%s.layer-1" % whole[:16])
        self.assertTrue(os.path.isfile(r.written))
        self.assertEqual(r.sha256, h.sha256_file(r.written))
        self.assertEqual([n for n in h.archive_family(self.archive) if ".layer-" in n],
                         [os.path.basename(r.written)], "a layer was split")
        self.assertSidecarConsistent()
        want = h.saved_view(restored)
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, rr = self.assertRestores(want, engine=engine)
                self.assertTrue(rr.verified)

    def test_split_of_a_base_keeps_its_layers(self):
        """A single file and its split form have the same hash, so the same layers."""
        self.fill(size=300_000)
        base = self.save(part_size=0)
        h.write_bytes(os.path.join(self.local, "added.txt"), b"added\n")
        layer = self.save()
        self.assertEqual(layer.action, "layer")
        want = h.saved_view(self.local)
        r = self.split()
        self.assertEqual(r.action, "split")
        parts = self.assertParts(self.archive)
        self.assertEqual(h.sha256_bytes(concat(parts)), base.sha256)
        self.assertTrue(os.path.isfile(layer.written))
        self.assertRestores(want)
        self.assertRestores(want, version=1)
        self.assertSidecarConsistent()


# --------------------------------------------------------------------------------------
# crashes while publishing parts
# --------------------------------------------------------------------------------------

@h.slow
class PartsCrashTests(PartsTestCase):
    """A split save, a switch between one file and parts, and split, each crashed before
    every step (slow: each sweep runs the whole operation once per step)."""

    def set_tree(self, i, size=130_000):
        h.write_bytes(os.path.join(self.local, "version.txt"), b"version %d\n" % i)
        h.write_bytes(os.path.join(self.local, "weights", "big.bin"), h.rand_bytes(size, 60 + i))
        return h.saved_view(self.local)

    def sweep(self, prepare, act, again):
        """The crash sweep (h.SaveTestCase.crash_sweep), and after each crash and the run
        that follows it, every kept version restores."""
        def every_kept_version_restores():
            for version in self.kept_versions():
                self.restore_fresh(version=version)
        return self.crash_sweep(prepare, act, again, afterwards=every_kept_version_restores)

    def kept_versions(self):
        """N for every ARCHIVE.N (single file or parts) in the archive's folder."""
        base = os.path.basename(self.archive)
        found = set()
        for name in h.archive_family(self.archive):
            m = re.fullmatch(re.escape(base) + r"\.(\d+)(\.part-\d{4})?", name)
            if m:
                found.add(int(m.group(1)))
        return sorted(found)

    def saves(self, part_sizes, last_part_size):
        """prepare(): full saves with these part sizes, then a new tree to save."""
        def prepare():
            views = []
            for i, part_size in enumerate(part_sizes):
                views.append(self.set_tree(i))
                self.save(incremental="never", part_size=part_size)
            return views[-1], self.set_tree(len(part_sizes))

        def again():
            # another tree, so that no part of it equals a part of the crashed save's output
            view = self.set_tree(9)
            self.save(incremental="never", part_size=last_part_size)
            return view
        return prepare, lambda: self.save(incremental="never", part_size=last_part_size), again

    def test_crash_at_each_step_of_a_split_save_with_rotation(self):
        steps = self.sweep(*self.saves([PART, PART, PART], PART))
        self.assertTrue(any(f == "unlink" for f, _ in steps), "no version dropped: %s" % steps)

    def test_crash_at_each_step_of_a_switch_from_single_to_split(self):
        self.sweep(*self.saves([0, 0], PART))

    def test_crash_at_each_step_of_a_switch_from_split_to_single(self):
        self.sweep(*self.saves([PART, PART], 0))

    def test_crash_at_each_step_of_split(self):
        def prepare():
            self.set_tree(0)
            self.save(incremental="never", part_size=0)
            view = self.set_tree(1)
            self.save(incremental="never", part_size=0)
            return view, view

        def again():
            self.split()
            return h.saved_view(self.local)
        self.sweep(prepare, lambda: self.split(), again)


# --------------------------------------------------------------------------------------
# the split command
# --------------------------------------------------------------------------------------

class SplitCommandTests(PartsTestCase):

    def single(self, size=400_000, seed=1):
        want = self.fill(size=size, seed=seed)
        r = self.save(part_size=0, incremental="never")
        self.assertEqual(r.parts, 0)
        self.assertTrue(os.path.isfile(self.archive))
        return want, r.sha256

    def test_split_turns_a_single_file_into_parts_and_keeps_it_as_version_1(self):
        want, old_sha = self.single()
        self.assertEqual(h.sha256_file(self.archive), old_sha)
        r = self.split()
        self.assertEqual(r.action, "split")
        parts = self.assertParts(self.archive)
        self.assertEqual(r.parts, len(parts))
        self.assertEqual(h.sha256_bytes(concat(parts)), old_sha)
        self.assertEqual(self.assertPartsLine(self.archive, "assets.tar.gz", parts), old_sha)
        self.assertTrue(os.path.isfile(self.archive + ".1"))
        self.assertEqual(h.sha256_file(self.archive + ".1"), old_sha)
        self.assertSha256sumC(self.archive)
        self.assertSidecarConsistent()
        dest, rr = self.assertRestores(want)
        self.assertTrue(rr.verified)
        self.assertEqual(rr.parts, len(parts))
        self.assertRestores(want, version=1)

    def test_split_shifts_older_versions_up(self):
        first, sha0 = self.single(seed=1)
        second, sha1 = self.single(seed=2)
        self.split()
        self.assertParts(self.archive)
        self.assertEqual(h.sha256_file(self.archive + ".1"), sha1)
        self.assertEqual(h.sha256_file(self.archive + ".2"), sha0)
        self.assertRestores(second)
        self.assertRestores(second, version=1)
        self.assertRestores(first, version=2)
        self.assertSidecarConsistent()

    def test_split_with_keep_zero_deletes_the_single_file(self):
        want, old_sha = self.single()
        r = self.split(keep=0)
        self.assertEqual(r.action, "split")
        parts = self.assertParts(self.archive)
        self.assertEqual(h.sha256_bytes(concat(parts)), old_sha)
        self.assertFalse(os.path.exists(self.archive + ".1"))
        self.assertEqual(h.archive_family(self.archive), [os.path.basename(p) for p in parts])
        self.assertSidecarConsistent()
        self.assertRestores(want)

    def test_split_of_an_already_split_archive_is_unchanged(self):
        want, _ = self.single()
        self.split()
        before = h.folder_state(self.drive)
        r = self.split()
        self.assertEqual(r.action, "unchanged")
        self.assertEqual(h.folder_state(self.drive), before)
        self.assertRestores(want)

    def test_split_of_a_file_that_fits_one_part_is_unchanged_and_writes_nothing(self):
        self.single(size=20_000)
        before = h.folder_state(self.drive)
        r = self.split(part_size=4 * PART)
        self.assertEqual(r.action, "unchanged")
        self.assertEqual(h.folder_state(self.drive), before)

    def test_split_with_a_sidecar_line_that_does_not_match_is_checksum_mismatch(self):
        self.single()
        with open(self.archive, "r+b") as f:  # the file no longer matches its sidecar line
            f.seek(200_000)
            b = f.read(1)
            f.seek(200_000)
            f.write(bytes([b[0] ^ 0xFF]))
        before = h.folder_state(self.drive)
        self.assertBAError("ChecksumMismatch", self.split)
        self.assertEqual(h.folder_state(self.drive), before, "the folder changed")
        self.assertEqual(part_paths(self.archive), [])

    def test_split_of_a_foreign_archive_without_sidecar(self):
        src = os.path.join(self.tmp, "made", "stuff")
        h.write_bytes(os.path.join(src, "big.bin"), h.rand_bytes(300_000, 21))
        h.write_bytes(os.path.join(src, "a.txt"), b"a\n")
        archive = h.tar_tree(src, os.path.join(self.drive, "foreign", "assets.tar"), comp="tar")
        old_sha = h.sha256_file(archive)
        want = h.saved_view(src)
        r = self.split(archive)
        self.assertEqual(r.action, "split")
        parts = self.assertParts(archive)
        self.assertEqual(h.sha256_bytes(concat(parts)), old_sha)
        self.assertPartsLine(archive, "assets.tar", parts)
        dest, rr = self.assertRestores(want, archive=archive)
        self.assertTrue(rr.verified)

    def test_split_of_a_missing_archive_is_source_missing(self):
        os.makedirs(self.drive)
        self.assertBAError("SourceMissing", self.split)
        self.assertEqual(os.listdir(self.drive), [])

    def test_split_command_cuts_the_archive_into_parts_that_restore(self):
        want, old_sha = self.single()
        rc, out, err = self.run_main(["split", "--archive", self.archive, "--part-size", "64K",
                                      "--dest", self.dest])
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.strip(), "no summary printed")
        parts = self.assertParts(self.archive)
        self.assertEqual(h.sha256_bytes(concat(parts)), old_sha)
        self.assertRestores(want)


# --------------------------------------------------------------------------------------
# --part-size
# --------------------------------------------------------------------------------------

class PartSizeArgumentTests(PartsTestCase):

    def cli_save(self, archive, value, dest=None):
        return self.run_main(["save", "--archive", archive, "--dest", dest or self.local,
                              "--drive-mount", "", "--full", "--quiet", "--part-size", value])

    def test_part_size_values_are_accepted(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a small folder\n")
        for value in ("32M", "1G", "512K", "0", "1.5G", "1000000"):
            with self.subTest(value=value):
                archive = os.path.join(self.drive, "v-" + value, "assets.tar.gz")
                rc, out, err = self.cli_save(archive, value)
                self.assertEqual(rc, 0, err)
                self.assertTrue(os.path.isfile(archive))
                self.assertEqual(part_paths(archive), [])

    def test_part_size_suffixes_are_powers_of_1024(self):
        self.fill(size=300_000)
        rc, out, err = self.cli_save(self.archive, "64K")
        self.assertEqual(rc, 0, err)
        sizes = [os.path.getsize(p) for p in self.assertParts(self.archive, part_size=65536)]
        self.assertGreater(max(sizes), 64000, sizes)

    def test_bad_part_size_is_a_usage_error(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        for value in ("abc", "-1", "12X"):
            with self.subTest(value=value):
                rc, out, err = self.cli_save(self.archive, value)
                self.assertEqual(rc, 2, err)
                self.assertEqual(h.archive_family(self.archive), [])
                rc, out, err = self.run_main(["split", "--archive", self.archive,
                                              "--dest", self.dest, "--part-size", value])
                self.assertEqual(rc, 2, err)


# --------------------------------------------------------------------------------------
# Drive's local cache in the space plan (tmpfs)
# --------------------------------------------------------------------------------------

class DriveCacheSpaceTests(PartsTestCase):
    """A tmpfs of SPACE_MARGIN + 32 MiB holds the destination and Drive's cache folder."""

    def mnt(self, room_mb=32):
        size = (getattr(ba, "SPACE_MARGIN", 0) >> 20) + room_mb
        mnt = h.mount_tmpfs(self, os.path.join(self.tmp, "mnt"), "size=%dm" % size)
        cache = os.path.join(mnt, "DriveFS")
        os.makedirs(cache)
        return mnt, cache

    def members(self):
        return [D("top"), F("top/big.bin", os.urandom(20 << 20)), F("top/a.txt", b"a\n")]

    def test_single_file_that_fits_once_but_not_beside_drives_copy_is_refused_up_front(self):
        mnt, cache = self.mnt()
        members = self.members()
        archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar"),
                                h.archive_bytes(members, "tar"))
        dest = os.path.join(mnt, "_assets")
        r0 = rchar()
        e = self.assertBAError("NoSpace", self.restore, archive, dest, drive_mount="",
                               drive_cache=cache)
        r1 = rchar()
        if r0 is not None and r1 is not None:
            self.assertLess(r1 - r0, 6 << 20, "read %d bytes before refusing" % (r1 - r0))
        msg = str(e)
        self.assertIn("split", msg)
        self.assertIn("local copy", msg.lower())
        self.assertUntouched(dest, None)
        lock = "." + os.path.basename(dest) + ".lock"
        left = [x for x in os.listdir(mnt) if x not in ("_assets", lock, "DriveFS")]
        self.assertEqual(left, [], "left behind on the full filesystem")
        self.assertEqual(os.listdir(cache), [])
        rc, out, err = self.run_main(["restore", "--archive", archive, "--dest", dest,
                                      "--drive-mount", "", "--drive-cache", cache, "--quiet"])
        self.assertEqual(rc, 8, err)
        self.assertIn("split", err)
        self.assertUntouched(dest, None)
        # it does fit once: without Drive's copy in the plan the same restore works
        r = self.restore(archive, dest, drive_mount="")
        self.assertEqual(r.action, "restored")
        self.assertTree(dest, h.expected_tree(members, strip_top=True))

    def test_the_same_data_in_parts_restores(self):
        mnt, cache = self.mnt()
        members = self.members()
        data = h.archive_bytes(members, "tar")
        archive = os.path.join(self.src_dir, "assets.tar")
        parts = write_parts(archive, data, 1 << 20)
        with open(archive + ".sha256", "w") as f:
            f.write("%s  assets.tar\n" % h.sha256_bytes(data))
        dest = os.path.join(mnt, "_assets")
        r = self.restore(archive, dest, drive_mount="", drive_cache=cache)
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.verified)
        self.assertEqual(r.parts, len(parts))
        self.assertTree(dest, h.expected_tree(members, strip_top=True))
        self.assertNoStaging(dest)

    def test_single_file_save_that_does_not_fit_beside_drives_copy_is_refused(self):
        mnt, cache = self.mnt()
        self.local = os.path.join(mnt, TOP)
        h.write_bytes(os.path.join(self.local, "big.bin"), os.urandom(26 << 20))
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        h.write_bytes(os.path.join(self.drive, "other.txt"), b"not ours\n")
        before = h.folder_state(self.drive)
        for label, kw in (("part_size=0", dict(part_size=0)), ("default part size", {})):
            with self.subTest(label):
                e = self.assertBAError("NoSpace", self.save, drive_cache=cache, format="tar",
                                       **kw)
                self.assertIn("--part-size", str(e))
                self.assertEqual(h.folder_state(self.drive), before)
        rc, out, err = self.run_main(["save", "--archive", self.archive, "--dest", self.local,
                                      "--drive-mount", "", "--drive-cache", cache,
                                      "--part-size", "0", "--format", "tar", "--quiet"])
        self.assertEqual(rc, 8, err)
        self.assertIn("--part-size", err)
        self.assertEqual(h.folder_state(self.drive), before)
        # in parts it fits: Drive keeps only the parts being uploaded
        want = h.saved_view(self.local)
        r = self.save(drive_cache=cache, format="tar", part_size=1 << 20)
        self.assertEqual(r.action, "saved")
        self.assertGreaterEqual(r.parts, 2)
        self.assertRestores(want)


# --------------------------------------------------------------------------------------
# Drive's download quota, shared drives
# --------------------------------------------------------------------------------------

SMALL = [D("top"), F("top/a.txt", b"alpha\n"), F("top/b.bin", h.rand_bytes(50_000, 4))]


class DriveMessageTests(PartsTestCase):

    def drive_archive(self):
        mount = os.path.join(self.tmp, "gdrive")
        archive = h.write_bytes(os.path.join(mount, "MyDrive", "proj", "assets.tar.gz"),
                                h.archive_bytes(SMALL))
        return mount, archive

    def drivefs_log(self, quota):
        cache = os.path.join(self.tmp, "DriveFS")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        lines = ["%s INFO cloud_sync: download started for item 1AbCdEfGh\n" % stamp]
        if quota:
            lines.append("%s ERROR cloud_sync: download failed: status QUOTA_EXCEEDED "
                         "(downloadQuotaExceeded) for item 1AbCdEfGh\n" % stamp)
        lines.append("%s INFO fuse: read error EIO\n" % stamp)
        h.write_bytes(os.path.join(cache, "Logs", "drive_fs.txt"), "".join(lines).encode())
        return cache

    def failing_restore(self, quota):
        mount, archive = self.drive_archive()
        cache = self.drivefs_log(quota)
        with fake_drive_mount(mount), \
                h.FlakyReads(archive, errno.EIO, fail_calls=(), fail_from=2) as fr:
            with self.assertRaises(ba.BootstrapError) as cm:
                self.restore(archive, self.dest, drive_mount=mount, drive_cache=cache,
                             retry_for=0.5)
            rc, out, err = self.run_main(["restore", "--archive", archive, "--dest", self.dest,
                                          "--drive-mount", mount, "--drive-cache", cache,
                                          "--retry-for", "0.3", "--quiet"])
        self.assertGreater(fr.raised, 0)
        self.assertNotEqual(rc, 0)
        self.assertUntouched(self.dest, None)
        return str(cm.exception), err

    @h.slow  # a second or more: make test-slow
    def test_persistent_eio_with_quota_exceeded_in_the_drivefs_log_says_quota_and_copy(self):
        msg, err = self.failing_restore(quota=True)
        self.assertIn("quota", msg.lower())
        self.assertIn("copy", msg.lower())
        self.assertIn("quota", err.lower())

    @h.slow  # a second or more: make test-slow
    def test_persistent_eio_without_a_quota_line_does_not_mention_quota(self):
        msg, err = self.failing_restore(quota=False)
        self.assertNotIn("quota", msg.lower())
        self.assertNotIn("quota", err.lower())

    def missing_in_my_drive(self, elsewhere):
        mount = os.path.join(self.tmp, "gdrive")
        h.write_bytes(os.path.join(mount, "MyDrive", "notes.txt"), b"n\n")
        if elsewhere:
            h.write_bytes(os.path.join(mount, elsewhere, "proj", "assets.tar.gz"),
                          h.archive_bytes(SMALL))
        archive = os.path.join(mount, "MyDrive", "proj", "assets.tar.gz")
        with fake_drive_mount(mount):
            e = self.assertBAError("SourceMissing", self.restore, archive, drive_mount=mount)
        self.assertUntouched(self.dest, None)
        return mount, str(e)

    def test_archive_in_a_shared_drive_names_it_and_says_add_shortcut(self):
        mount, msg = self.missing_in_my_drive(os.path.join("Shareddrives", "Team"))
        self.assertIn(os.path.join(mount, "Shareddrives", "Team", "proj"), msg)
        self.assertIn("Add shortcut", msg)

    def test_archive_behind_a_shortcut_target_names_it_and_says_add_shortcut(self):
        mount, msg = self.missing_in_my_drive(os.path.join(".shortcut-targets-by-id",
                                                           "1AbCdEfGhIjK"))
        self.assertIn(os.path.join(mount, ".shortcut-targets-by-id", "1AbCdEfGhIjK", "proj"),
                      msg)
        self.assertIn("Add shortcut", msg)

    def test_missing_archive_with_no_shared_copy_does_not_mention_shortcuts(self):
        mount, msg = self.missing_in_my_drive(None)
        self.assertNotIn("Add shortcut", msg)
        self.assertNotIn("Shareddrives", msg)


if __name__ == "__main__":
    import unittest
    unittest.main()
