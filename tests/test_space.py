"""Out of space on the destination: small tmpfs mounts (root only, skipped otherwise).

The module keeps a safety margin of free space (SPACE_MARGIN, 16 MiB at the time of
writing), so the filesystems here are sized above it and the archives overflow what is left.
"""
import os
import re

import helpers as h
from helpers import D, F, ba


class NoSpaceTests(h.BATestCase):

    def margin(self):
        return getattr(ba, "SPACE_MARGIN", 0)

    def fs_mb(self):
        """tmpfs size: the margin plus 4 MiB of usable room."""
        return (self.margin() >> 20) + 4

    def room(self):
        return 4 << 20

    def mnt(self, options):
        return h.mount_tmpfs(self, os.path.join(self.tmp, "mnt"), options)

    def _check_nospace(self, archive, dest, before, **kw):
        e = self.assertBAError("NoSpace", self.restore, archive, dest, **kw)
        self.assertTrue(re.search(r"\d", str(e)), "no numbers in the message: %s" % e)
        self.assertUntouched(dest, before)
        parent = os.path.dirname(dest)
        lock = "." + os.path.basename(dest) + ".lock"
        left = [x for x in os.listdir(parent) if x not in (os.path.basename(dest), lock)]
        self.assertEqual(left, [], "left behind on the full filesystem")
        return e

    def test_archive_larger_than_the_free_bytes_is_nospace_and_leaves_nothing(self):
        mnt = self.mnt("size=%dm" % self.fs_mb())
        members = [D("top"), F("top/big1.bin", bytes(self.room() // 2 + 1_000_000)),
                   F("top/big2.bin", bytes(self.room() // 2 + 1_000_000)), F("top/small.txt", b"s")]
        archive = h.write_bytes(os.path.join(self.src_dir, "a.tar.gz"), h.archive_bytes(members))
        for engine in h.engines():
            with self.subTest(engine=engine):
                self._check_nospace(archive, os.path.join(mnt, "_assets"), None, engine=engine)

    def test_bytes_dest_exists(self):
        """A new version that does not fit: the old dest stays exactly as it was."""
        mnt = self.mnt("size=%dm" % self.fs_mb())
        archive = os.path.join(self.src_dir, "a.tar.gz")
        small = [D("top"), F("top/a.txt", b"v1\n")]
        h.write_bytes(archive, h.archive_bytes(small), mtime=h.MTIME)
        dest = os.path.join(mnt, "_assets")
        for engine in h.engines():
            with self.subTest(engine=engine):
                h.write_bytes(archive, h.archive_bytes(small), mtime=h.MTIME)
                self.restore(archive, dest, engine=engine, force=True)
                before = h.state(dest)
                big = [D("top"), F("top/a.txt", b"v2\n"), F("top/big.bin", bytes(self.room() + 2_000_000))]
                h.write_bytes(archive, h.archive_bytes(big), mtime=h.MTIME + 100)
                self._check_nospace(archive, dest, before, engine=engine)

    def test_more_members_than_free_inodes_is_nospace_and_leaves_nothing(self):
        mnt = self.mnt("size=%dm,nr_inodes=40" % self.fs_mb())
        members = [D("top")] + [F("top/f%03d.txt" % i, b"x") for i in range(100)]
        archive = h.write_bytes(os.path.join(self.src_dir, "a.tar.gz"), h.archive_bytes(members))
        for engine in h.engines():
            with self.subTest(engine=engine):
                self._check_nospace(archive, os.path.join(mnt, "_assets"), None, engine=engine)

    def test_gzip_bomb_is_nospace_and_leaves_nothing(self):
        """A 4 MB .tar.gz declaring a 4 GiB member: NoSpace, nothing left behind."""
        mnt = self.mnt("size=%dm" % (self.fs_mb() + 8))
        data = h.gzip_bomb_tar_gz(prefix_members=[D("top"), F("top/first.txt", b"first\n")],
                                  member_name="top/bomb.bin")
        self.assertLess(len(data), 8 << 20)
        archive = h.write_bytes(os.path.join(self.src_dir, "bomb.tar.gz"), data)
        for engine in h.engines():
            with self.subTest(engine=engine):
                self._check_nospace(archive, os.path.join(mnt, "_assets"), None, engine=engine)

    def test_gzip_bomb_builder_is_valid(self):
        """Self-check of the helper: the stream starts with a tar header of the bomb member."""
        import tarfile
        import zlib
        data = h.gzip_bomb_tar_gz(size=8 << 20)
        d = zlib.decompressobj(31)
        head = d.decompress(data, 4096)
        ti = tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
        self.assertEqual((ti.name, ti.size), ("bomb.bin", 8 << 20))
        raw = zlib.decompressobj(-15).decompress(data[10:-8])
        self.assertEqual(len(raw), 512 + (8 << 20) + 1024)

    def test_fits_in_room_above_margin(self):
        """Sanity of the sizing above: a small archive does restore into the same tmpfs."""
        mnt = self.mnt("size=%dm" % self.fs_mb())
        members = [D("top"), F("top/a.bin", bytes(1_000_000)), F("top/b.txt", b"b")]
        archive = h.write_bytes(os.path.join(self.src_dir, "a.tar.gz"), h.archive_bytes(members))
        dest = os.path.join(mnt, "_assets")
        self.restore(archive, dest)
        self.assertTree(dest, h.expected_tree(members, strip_top=True))
