"""End-to-end test of `restore --only` (a partial restore by ranges) over drivesim, as real
processes: an archive of make_assets.py --profile mixed --scale 0.05 saved by our `save`
(default order), then `restore --only 'weights/**'` from the mount: the tree is exactly the
weights, and the bytes drivesim served are at most 1.05 x the weights' bytes in the archive
+ the index; the same command again reads nothing; a plain restore completes the folder. A
partial folder changed, saved as a layer then in full, restores in full as the original plus
exactly the changes; over httpsim --no-range the full save refuses before writing.

Run with `python3 tests/run.py e2e -k e2e_only`. Needs /dev/fuse and ../shared.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import progressive_tools as pt  # noqa: E402
from drivesim_fixture import (DRIVESIM, MAKE_ASSETS, SHARED, DriveSimTestCase, cli,  # noqa: E402
                              run, tree_digest)

NAME, ARCHIVE = "_assets", "assets.tar"
HTTPSIM = os.path.join(SHARED, "httpsim", "httpsim.py")


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

    def test_a_partial_folder_saved_as_a_layer_then_in_full_loses_nothing(self):
        """restore --only 'weights/**' from the mount; a held file changed, one added, one
        deleted; save (a layer of those three), then save --full (the files the folder
        never restored carried over from the archive by ranges); a full restore elsewhere
        is the original plus exactly the changes."""
        src = os.path.join(self.top, "src", NAME)
        run([sys.executable, MAKE_ASSETS, "create", src, "--profile", "mixed", "--scale", "0.05"])
        backing = os.path.join(self.top, "backing")
        stored = os.path.join(backing, "MyDrive", ARCHIVE)
        p = cli("save", "--dest", src, "--archive", stored, "--drive-mount", "", "--quiet")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        ds = self.mount(backing)
        archive = os.path.join(ds.mount, "MyDrive", ARCHIVE)
        dest = os.path.join(self.top, "out", NAME)
        p = cli("restore", "--archive", archive, "--dest", dest, "--only", "weights/**",
                "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        weights = sorted(r for r, e in tree_digest(dest).items() if e[0] == "file")
        self.assertGreaterEqual(len(weights), 2, "the mixed profile has weights/")
        want = os.path.join(self.top, "want", NAME)
        shutil.copytree(src, want, symlinks=True)
        for root in (dest, want):  # the same changes to the folder and to the expectation
            with open(os.path.join(root, weights[0]), "r+b") as f:
                f.write(b"changed in the partial folder")
            os.remove(os.path.join(root, weights[1]))
            with open(os.path.join(root, "notes.txt"), "wb") as f:
                f.write(b"a new file\n")
        p = cli("save", "--dest", dest, "--archive", archive, "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("layer 1 (2 changed, 1 deleted)", p.stdout + p.stderr)
        p = cli("save", "--full", "--dest", dest, "--archive", archive, "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("carried over", p.stdout + p.stderr)
        full = os.path.join(self.top, "full", NAME)
        p = cli("restore", "--archive", archive, "--dest", full, "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(tree_digest(full), tree_digest(want))

    def test_a_server_without_ranges_refuses_the_full_save(self):
        """restore --only from httpsim --no-range (one pass that skips the rest); save
        --full of it refuses before writing and names the restore that completes it."""
        if not os.path.exists(HTTPSIM):
            self.skipTest("httpsim not found beside the repository")
        src = os.path.join(self.top, "src", NAME)
        run([sys.executable, MAKE_ASSETS, "create", src, "--profile", "mixed", "--scale", "0.02"])
        served = os.path.join(self.top, "served")
        os.makedirs(served)
        p = cli("save", "--dest", src, "--archive", os.path.join(served, ARCHIVE),
                "--drive-mount", "", "--quiet")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        port_file = os.path.join(self.top, "httpsim-port")
        server = subprocess.Popen([sys.executable, HTTPSIM, served, "--port", "0",
                                   "--port-file", port_file, "--no-range", "--latency-ms", "0",
                                   "--per-conn-mbps", "0", "--total-mbps", "0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.terminate)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        with open(port_file) as f:
            url = "http://127.0.0.1:%s/%s" % (f.read().strip(), ARCHIVE)
        dest = os.path.join(self.top, "out", NAME)
        p = cli("restore", "--archive", url, "--dest", dest, "--only", "weights/**",
                "--drive-mount", "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("one pass", p.stdout + p.stderr)
        with open(os.path.join(dest, "notes.txt"), "wb") as f:
            f.write(b"a new file\n")
        mine = os.path.join(self.top, "mine")
        p = cli("save", "--full", "--dest", dest, "--archive", os.path.join(mine, ARCHIVE),
                "--drive-mount", "")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("Range", p.stderr)
        self.assertIn("Nothing was written", p.stderr)
        self.assertIn("restore --dest %s --archive '%s'" % (dest, url), p.stderr)
        self.assertFalse(os.path.exists(os.path.join(mine, ARCHIVE)))


if __name__ == "__main__":
    unittest.main()
