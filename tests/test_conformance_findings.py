"""What tests/conformance.py found restoring archives other tools made, each kept as a
regression test with the archive built here."""
import io
import os
import shutil
import subprocess
import tarfile
import unittest

import helpers as h


def dump_folder(name, listing):
    """A GNU incremental dump's folder entry (typeflag 'D'), its data the names it held."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = b"D", 0o755, h.MTIME, len(listing)
    return info, listing


class IncrementalDumpTests(h.BATestCase):
    """`tar -g SNAPSHOT -czf a.tgz _assets` (a level-0 incremental dump, GNU tar's usual
    backup) stores folders as 'D' entries; they used to be refused as unsafe (exit 6), while
    GNU tar extracts them as plain folders."""

    def archive(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for info, data in (dump_folder("_assets/", b"Da.txt\0Dsub\0\0"),
                               dump_folder("_assets/sub/", b"Yb.txt\0\0")):
                tar.addfile(info, io.BytesIO(data))
            for name, data in (("_assets/a.txt", b"alpha\n"), ("_assets/sub/b.txt", b"b\n")):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), h.MTIME
                tar.addfile(info, io.BytesIO(data))
        return h.write_bytes(os.path.join(self.src_dir, "dump.tar.gz"),
                             h.compress(buf.getvalue(), "gz"))

    def test_dump_folders_are_restored_as_folders(self):
        archive = self.archive()
        want = {"a.txt": ("file", 0o644, b"alpha\n"), "sub": ("dir",),
                "sub/b.txt": ("file", 0o644, b"b\n")}
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                r = self.restore(archive, dest, engine=engine)
                self.assertEqual(r.action, "restored")
                self.assertTree(dest, want)
                self.assertNoStaging(dest)

    @unittest.skipUnless(shutil.which("tar"), "needs GNU tar")
    def test_what_gnu_tar_makes_with_g(self):
        src = os.path.join(self.tmp, "made", "_assets")
        h.write_bytes(os.path.join(src, "sub", "b.txt"), b"b\n")
        h.write_bytes(os.path.join(src, "a.txt"), b"alpha\n")
        archive = os.path.join(self.src_dir, "level0.tar")
        subprocess.run(["tar", "--format=gnu", "-g", os.path.join(self.tmp, "snap"), "-cf",
                        archive, "-C", os.path.dirname(src), "_assets"], check=True)
        with open(archive, "rb") as f:
            self.assertIn(b"D", {f.read()[156:157]})  # the first entry is a dump folder
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                self.restore(archive, dest, engine=engine)
                self.assertEqual(h.snapshot(dest), h.snapshot(src))
