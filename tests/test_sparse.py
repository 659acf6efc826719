"""GNU sparse members (`tar -S`): old GNU type 'S' and pax 0.0, 0.1 and 1.0 are extracted as
sparse files by every engine (holes stay holes), counted in the space plan by their data,
and every map is checked before anything is written. Saves store sparse files dense.

The archives are made in-test: by GNU tar itself where it is on the PATH, and by hand for
the maps no honest writer makes.
"""
import io
import os
import shutil
import subprocess
import tarfile
import unittest
from unittest import mock

import helpers as h
from helpers import ba

GiB = 1 << 30
# 7 stretches (old GNU needs an extension block), whole blocks as `tar -S` writes them, one
# at an offset off the block grid
STRETCHES = [(0, b"head" * 1024), (1 * GiB, b"A" * 5120), (2 * GiB + 7, b"B" * 512),
             (3 * GiB, b"C" * 4096), (5 * GiB, b"D" * 4096), (7 * GiB, b"E" * 1024),
             (9 * GiB - 4090, b"tail" * 1000)]
SIZE = 9 * GiB


def make_sparse_file(path, stretches=STRETCHES, size=SIZE):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset, data in stretches:
            os.pwrite(fd, data, offset)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    os.utime(path, (h.MTIME, h.MTIME))
    return path


def regions(path):
    """[(start, end)] of the data a file holds (its holes left out)."""
    out, fd = [], os.open(path, os.O_RDONLY)
    try:
        end, offset = os.fstat(fd).st_size, 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, offset))
    finally:
        os.close(fd)
    return out


def gnu_tar():
    return shutil.which("tar") if ba._gnu_tar() else None


def pax_sparse_tar(records, data, name="vm.img"):
    """A pax member carrying the given sparse records (as GNU tar writes 0.0/0.1/1.0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("GNUSparseFile.0/" + name)
        info.size, info.mtime = len(data), h.MTIME
        info.pax_headers = {k: str(v) for k, v in records.items()}
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pax_00_tar(pairs, realsize, data, numblocks=None):
    """pax 0.0: repeated GNU.sparse.offset / numbytes records (tarfile keeps one of each
    key, so this header is written by hand)."""
    records = [(b"GNU.sparse.size", b"%d" % realsize),
               (b"GNU.sparse.numblocks", b"%d" % (len(pairs) if numblocks is None else numblocks))]
    for offset, length in pairs:
        records += [(b"GNU.sparse.offset", b"%d" % offset), (b"GNU.sparse.numbytes", b"%d" % length)]
    payload = b"".join(ba._pax_record(k, v) for k, v in records)
    return (ba._ustar_block(b"././@PaxHeader", b"x", len(payload)) + payload
            + bytes(-len(payload) % 512)
            + ba._ustar_block(b"vm.img", b"0", len(data), 0o644, h.MTIME) + data
            + bytes(-len(data) % 512) + bytes(1024))


def old_gnu_tar(pairs, realsize, data, name=b"vm.img"):
    """Old GNU type 'S': four map entries in the header, 21 in each extension block."""
    def number(value):  # octal, or GNU base-256 from 8 GiB on
        return b"%011o\0" % value if value < 8 ** 11 else b"\x80" + value.to_bytes(11, "big")

    def entry(offset, length):
        return number(offset) + number(length)
    entries = [entry(o, n) for o, n in pairs]
    head, rest = entries[:4], entries[4:]
    block = bytearray(ba._ustar_block(name, b"S", len(data), 0o644, h.MTIME))
    block[257:265] = b"ustar  \0"
    block[345:500] = bytes(155)
    for i, e in enumerate(head):
        block[386 + 24 * i:410 + 24 * i] = e
    block[482] = 1 if rest else 0
    block[483:495] = number(realsize)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    out = bytes(block)
    while rest:
        chunk, rest = rest[:21], rest[21:]
        ext = bytearray(512)
        for i, e in enumerate(chunk):
            ext[24 * i:24 * i + 24] = e
        ext[504] = 1 if rest else 0
        out += bytes(ext)
    return out + data + bytes(-len(data) % 512) + bytes(1024)


class SparseTests(h.BATestCase):

    def restore_each_engine(self, archive):
        out = []
        for engine in h.engines():
            dest = os.path.join(self.subdir(), "_assets")
            try:
                self.restore(archive, dest, engine=engine)
                out.append((engine, None, dest))
            except ba.BootstrapError as exc:
                self.assertFalse(os.path.lexists(dest), f"{engine}: dest left behind")
                self.assertEqual(h.staging_leftovers(dest), [])
                out.append((engine, exc, dest))
        return out

    def assertSameSparseFile(self, got, want):
        """Same size and bytes (compared where either file holds data: elsewhere both read
        as zeros), and holes kept: the copy takes no more disk than its data needs."""
        st = os.stat(got)
        self.assertEqual(st.st_size, os.stat(want).st_size)
        with open(got, "rb") as a, open(want, "rb") as b:
            for start, end in regions(got) + regions(want):
                a.seek(start)
                b.seek(start)
                self.assertEqual(a.read(end - start), b.read(end - start), (start, end))
        self.assertLess(st.st_blocks * 512, 4 << 20, "holes were written out")

    def assertRefused(self, data, cls, words=()):
        archive = h.write_bytes(os.path.join(self.subdir(), "bad.tar"), data)
        for engine, exc, _ in self.restore_each_engine(archive):
            with self.subTest(engine=engine):
                self.assertIsInstance(exc, getattr(ba, cls), f"{engine}: {exc!r}")
                for word in words:
                    self.assertIn(word, str(exc))

    # ---- archives GNU tar writes ---------------------------------------------------------
    def test_gnu_tar_sparse_formats_restore_as_sparse_files_with_each_engine(self):
        tar = gnu_tar()
        if not tar:
            self.skipTest("GNU tar is not on the PATH (it writes the archives of this test)")
        src = os.path.join(self.tmp, "tree")
        os.makedirs(src)
        original = make_sparse_file(os.path.join(src, "vm.img"))
        if len(regions(original)) < 5:
            self.skipTest(f"{self.tmp} keeps no holes in files")
        h.write_bytes(os.path.join(src, "notes.txt"), b"notes")
        for options in (["--format=gnu"], ["--format=posix", "--sparse-version=0.0"],
                        ["--format=posix", "--sparse-version=0.1"],
                        ["--format=posix", "--sparse-version=1.0"]):
            with self.subTest(options=options):
                archive = os.path.join(self.subdir(), "sparse.tar")
                subprocess.run([tar, "-S", *options, "-cf", archive, "-C", src, "."], check=True)
                self.assertLess(os.path.getsize(archive), 1 << 20)
                for engine, exc, dest in self.restore_each_engine(archive):
                    with self.subTest(engine=engine):
                        self.assertIsNone(exc, f"{engine}: {exc}")
                        self.assertSameSparseFile(os.path.join(dest, "vm.img"), original)
                        with open(os.path.join(dest, "notes.txt"), "rb") as f:
                            self.assertEqual(f.read(), b"notes")

    # ---- maps written by hand ------------------------------------------------------------
    def test_hand_made_maps_of_every_format_restore_with_each_engine(self):
        pairs = [(o, len(d)) for o, d in STRETCHES]
        data = b"".join(d for _, d in STRETCHES)
        want = make_sparse_file(os.path.join(self.tmp, "want.img"))
        sparse_map = ",".join(f"{o},{n}" for o, n in pairs)
        lines = f"{len(pairs)}\n" + "".join(f"{o}\n{n}\n" for o, n in pairs)
        lines = lines.encode() + bytes(-len(lines) % 512)
        cases = {
            "old GNU 'S' with an extension block": old_gnu_tar(pairs, SIZE, data),
            "pax 0.0": pax_00_tar(pairs, SIZE, data),
            "pax 0.1": pax_sparse_tar({"GNU.sparse.size": SIZE, "GNU.sparse.numblocks": len(pairs),
                                       "GNU.sparse.name": "vm.img", "GNU.sparse.map": sparse_map},
                                      data),
            "pax 1.0": pax_sparse_tar({"GNU.sparse.major": 1, "GNU.sparse.minor": 0,
                                       "GNU.sparse.name": "vm.img", "GNU.sparse.realsize": SIZE},
                                      lines + data),
        }
        for label, raw in cases.items():
            with self.subTest(format=label):
                archive = h.write_bytes(os.path.join(self.subdir(), "vm.tar"), raw)
                for engine, exc, dest in self.restore_each_engine(archive):
                    with self.subTest(engine=engine):
                        self.assertIsNone(exc, f"{engine}: {exc}")
                        self.assertEqual(sorted(os.listdir(dest)),
                                         [".bootstrap_assets.json", "vm.img"])
                        self.assertSameSparseFile(os.path.join(dest, "vm.img"), want)

    def test_space_plan_counts_a_sparse_member_by_its_data(self):
        """9 GiB of holes and 17 KiB of data restore where a few MiB are free; 9 MiB of data
        do not."""
        pairs = [(o, len(d)) for o, d in STRETCHES]
        sparse = h.write_bytes(os.path.join(self.tmp, "sparse.tar"),
                               pax_00_tar(pairs, SIZE, b"".join(d for _, d in STRETCHES)))
        dense = h.write_bytes(os.path.join(self.tmp, "dense.tar"),
                              h.tar_bytes([h.F("big.bin", bytes(9 << 20))]))
        room = ba.SPACE_MARGIN + (4 << 20)
        with mock.patch.object(ba, "_free_bytes", lambda path: room):
            for engine, exc, dest in self.restore_each_engine(sparse):
                with self.subTest(engine=engine):
                    self.assertIsNone(exc, f"{engine}: {exc}")
                    self.assertEqual(os.path.getsize(os.path.join(dest, "vm.img")), SIZE)
            for engine, exc, _ in self.restore_each_engine(dense):
                with self.subTest(engine=engine, archive="dense"):
                    self.assertIsInstance(exc, ba.NoSpace)

    def test_damaged_or_hostile_maps_are_corrupt(self):
        data = b"x" * 20

        def v01(sparse_map, realsize=100):
            return pax_sparse_tar({"GNU.sparse.size": realsize, "GNU.sparse.map": sparse_map,
                                   "GNU.sparse.name": "vm.img"}, data)

        cases = {
            "overlapping": v01("0,10,5,10"),
            "out of order": v01("50,10,0,10"),
            "past the full size": v01("0,10,95,10"),
            "adds up to less than the data": v01("0,10"),
            "adds up to more than the data": v01("0,10,20,30"),
            "a stretch of part of a block before another": v01("0,10,20,10"),
            "odd count": v01("0,10,5"),
            "not decimal": v01("0,1e1,20,10"),
            "negative": v01("0,10,-20,10"),
            "full size past any file": v01("0,10,20,10", realsize=1 << 50),
            "records but no map": pax_sparse_tar({"GNU.sparse.size": 100}, data),
            "0.0 records that do not pair up": pax_00_tar([(0, 10), (20, 10)], 100, data,
                                                          numblocks=3),
            "1.0 map that never ends": pax_sparse_tar(
                {"GNU.sparse.major": 1, "GNU.sparse.minor": 0, "GNU.sparse.realsize": 100},
                b"999999\n0\n10\n" + bytes(499) + data),
            "1.0 map of a number that is not one": pax_sparse_tar(
                {"GNU.sparse.major": 1, "GNU.sparse.minor": 0, "GNU.sparse.realsize": 100},
                b"1\n0x0\n20\n" + bytes(503) + data),
            "old GNU past its full size": old_gnu_tar([(0, 10), (95, 10)], 100, data),
            "old GNU overlapping": old_gnu_tar([(0, 10), (5, 10)], 100, data),
        }
        for label, raw in cases.items():
            with self.subTest(case=label):
                self.assertRefused(raw, "CorruptArchive", ["vm.img"])

    def test_numblocks_that_disagrees_with_the_map_is_corrupt(self):
        raw = pax_sparse_tar({"GNU.sparse.size": 100, "GNU.sparse.map": "0,10,20,10",
                              "GNU.sparse.numblocks": 3, "GNU.sparse.name": "vm.img"},
                             b"x" * 20)
        self.assertRefused(raw, "CorruptArchive", ["numblocks"])

    def test_unknown_sparse_version_is_unsupported_and_says_which(self):
        raw = pax_sparse_tar({"GNU.sparse.major": 2, "GNU.sparse.minor": 0,
                              "GNU.sparse.realsize": 100}, b"x" * 512)
        self.assertRefused(raw, "Unsupported", ["2", "1.0"])

    def test_sparse_map_on_a_link_or_folder_is_corrupt(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("folder")
            info.type = tarfile.DIRTYPE
            info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": "0"}
            tar.addfile(info)
        self.assertRefused(buf.getvalue(), "CorruptArchive", ["sparse"])

    def test_sparse_name_rules_apply_to_the_real_name(self):
        """GNU.sparse.name replaces the header's name: it is judged like any name."""
        raw = pax_sparse_tar({"GNU.sparse.size": 100, "GNU.sparse.map": "0,20",
                              "GNU.sparse.name": "../../escape.img"}, b"x" * 20)
        self.assertRefused(raw, "UnsafeArchive", ["escape.img"])

    def test_sparse_name_replaces_the_header_name(self):
        """As with GNU tar, the header's own name (GNUSparseFile.N/... when tar writes it)
        is not used: here it would escape, and nothing is written there."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("../../escape.img")
            info.size, info.mtime = 20, h.MTIME
            info.pax_headers = {"GNU.sparse.size": "100", "GNU.sparse.map": "0,20",
                                "GNU.sparse.name": "vm.img"}
            tar.addfile(info, io.BytesIO(b"x" * 20))
        archive = h.write_bytes(os.path.join(self.subdir(), "vm.tar"), buf.getvalue())
        for engine, exc, dest in self.restore_each_engine(archive):
            with self.subTest(engine=engine):
                self.assertIsNone(exc, f"{engine}: {exc}")
                with open(os.path.join(dest, "vm.img"), "rb") as f:
                    self.assertEqual(f.read(), b"x" * 20 + bytes(80))
                self.assertFalse(os.path.lexists(os.path.join(dest, "..", "..", "escape.img")))

    # ---- save ----------------------------------------------------------------------------
    def test_save_stores_a_sparse_file_dense_and_it_round_trips(self):
        """Saved archives stay plain tar (any tar reads them), so holes are stored as zeros:
        the estimate and the archive count the full size, and a restore gives the same
        bytes."""
        folder = os.path.join(self.work, "_assets")
        os.makedirs(folder)
        size = 24 << 20
        original = make_sparse_file(os.path.join(folder, "disk.img"),
                                    [(0, b"start"), (size - 5, b"end!!")], size)
        archive = os.path.join(self.tmp, "drive", "assets.tar")
        os.makedirs(os.path.dirname(archive))
        checked = []
        real_check_room = ba._check_room
        with mock.patch.object(ba, "_check_room",
                               lambda path, nbytes: (checked.append(nbytes),
                                                     real_check_room(path, nbytes))[1]):
            r = ba.save(folder, archive, format="tar", quiet=True, drive_mount="")
        self.assertGreaterEqual(min(checked), size)
        self.assertGreaterEqual(r.bytes_written, size)
        with tarfile.open(archive) as tar:
            member = tar.getmember("_assets/disk.img")
            self.assertFalse(member.issparse())
            self.assertEqual(member.size, size)
        dest = os.path.join(self.subdir(), "_assets")
        self.restore(archive, dest)
        with open(os.path.join(dest, "disk.img"), "rb") as a, open(original, "rb") as b:
            while True:
                x, y = a.read(1 << 20), b.read(1 << 20)
                self.assertEqual(x, y)
                if not x:
                    break


if __name__ == "__main__":
    unittest.main()
