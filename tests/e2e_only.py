"""End-to-end test of `restore --only` (a partial restore by ranges) over drivesim, as real
processes: an archive of make_assets.py --profile mixed --scale 0.05 saved by our `save`
(default order), then `restore --only 'weights/**'` from the mount: the tree is exactly the
weights, and the bytes drivesim served are at most 1.05 x the weights' bytes in the archive
+ the index; the same command again reads nothing; a plain restore completes the folder.

Run with `python3 tests/run.py e2e -k e2e_only`. Needs /dev/fuse and ../shared.
"""
import os
import shutil
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import progressive_tools as pt  # noqa: E402
from drivesim_fixture import (DRIVESIM, MAKE_ASSETS, DriveSimTestCase, cli, run,  # noqa: E402
                              tree_digest)

NAME, ARCHIVE = "_assets", "assets.tar"


class OnlyOverDrivesim(DriveSimTestCase):

    def setUp(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("needs /dev/fuse for drivesim (FUSE)")
        if not os.path.exists(DRIVESIM) or not os.path.exists(MAKE_ASSETS):
            self.skipTest("drivesim or make_assets.py not found beside the repository")
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="bootstrap-e2e-only-")
        self.addCleanup(shutil.rmtree, self.top, True)

    def test_only_weights_reads_their_bytes_and_the_index(self):
        src = os.path.join(self.top, "src", NAME)
        run([sys.executable, MAKE_ASSETS, "create", src, "--profile", "mixed", "--scale", "0.05"])
        backing = os.path.join(self.top, "backing")
        stored = os.path.join(backing, "MyDrive", ARCHIVE)
        p = cli("save", "--dest", src, "--archive", stored, "--drive-mount", "", "--quiet")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        weights = sum(512 + m.size + (-m.size) % 512 for m in pt.members(stored)
                      if m.isfile() and pt.rel(m.name).startswith("weights/"))
        self.assertGreater(weights, 0, "the mixed profile has weights/")
        index = os.path.getsize(stored) - pt.index_lines(stored)[0][2]
        ds = self.mount(backing)
        archive = os.path.join(ds.mount, "MyDrive", ARCHIVE)
        dest = os.path.join(self.top, "out", NAME)
        p = cli("restore", "--archive", archive, "--dest", dest, "--only", "weights/**",
                "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("by ranges", p.stdout + p.stderr)
        read = ds.counter("bytes_read")
        got = {r for r, e in tree_digest(dest).items() if e[0] == "file"}
        want = {r for r, e in tree_digest(src).items() if e[0] == "file"
                and r.startswith("weights/")}
        self.assertEqual(got, want)
        ratio = (read - index) / weights
        print(f"\n--only 'weights/**' over drivesim: {read:,} bytes read for {weights:,} "
              f"bytes of weights + {index:,} of index ({ratio:.4f} x)", file=sys.stderr)
        self.assertLessEqual(read, 1.05 * weights + index)
        p = cli("restore", "--archive", archive, "--dest", dest, "--only", "weights/**",
                "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("nothing to do", p.stdout + p.stderr)
        sidecar = os.path.getsize(stored + ".sha256")  # read by every restore; the data not
        self.assertLessEqual(ds.counter("bytes_read") - read, sidecar,
                             "the same --only read nothing of the archive")
        p = cli("restore", "--archive", archive, "--dest", dest, "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(tree_digest(dest), tree_digest(src))


if __name__ == "__main__":
    unittest.main()
