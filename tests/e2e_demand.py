"""End-to-end tests of demand first (issue 18 point 4) over drivesim, as real processes: a
reader that asks a background restore for the last files of the archive gets them ahead of
the stream (checked with the restore's journal, in install order, while the marker still
says "restoring"); the tree in the end is the archive's; what the restore reads off the
mount (drivesim --stats) is no more than the archive, the files asked for and the index
(read first, at the archive's end, and maybe again by the kernel's read-ahead past the
end of the stream and of the read ahead).
Both ways in: `restore --background` then `wait PATH` (the request file), and
restore(background=True) then job.wait(PATH) in a `python -c` driver; and parts with Drive's
content cache (drivesim --cache-dir) on the destination's disk, where the cache holds no
more than the stream's two parts and the read ahead's one at once.

Run with `python3 tests/run.py e2e -k e2e_demand`. Needs /dev/fuse and ../shared (drivesim,
datasets/make_assets.py). The source is make_assets.py --profile mixed --scale 0.05 (about
68 MB, 400 files), saved once by our own `save` (plain tar, default order), read at
20 MB/s so that the stream takes a few seconds.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import progressive_tools as pt  # noqa: E402
from drivesim_fixture import (MARKER, DriveSimTestCase, clean_env, cli,  # noqa: E402
                              diff_text, said, saved_mixed_profile, tree_digest)

NAME = "_assets"
ARCHIVE = "assets.tar"
JOURNAL = ".bootstrap_assets.installed"
W = None       # module work dir
SRC = None     # the source folder (saved once, as W/master/assets.tar)
DIGEST = None  # tree_digest(SRC)
READ_MBPS = "20"

DRIVER = r"""
import json, sys, time
repo, archive, dest, cache = sys.argv[1:5]
asked = sys.argv[5:]
sys.path.insert(0, repo)
import bootstrap_assets as b
t0 = time.monotonic()
job = b.restore(archive, dest, quiet=True, background=True, drive_mount="",
                drive_cache=cache or None)
job.wait(*asked)
took = time.monotonic() - t0
with open(dest + "/.bootstrap_assets.installed") as f:
    journal = [line.split(" ", 3)[3].rstrip("\n") for line in f]
state = json.load(open(dest + "/.bootstrap_assets.json")).get("state")
result = job.result()
print(json.dumps({"took": took, "journal": journal, "state": state,
                  "archive_bytes": result.archive_bytes}), flush=True)
"""


def setUpModule():
    global W, SRC, DIGEST
    W, SRC = saved_mixed_profile(NAME, ARCHIVE, "e2e_demand")
    DIGEST = tree_digest(SRC)


def tearDownModule():
    if W:
        shutil.rmtree(W, ignore_errors=True)


class DemandCase(DriveSimTestCase):
    """What the cases below check (no test of its own)."""
    maxDiff = 4000

    def driver(self, cache=""):
        proc = subprocess.run([sys.executable, "-c", DRIVER, REPO, self.archive, self.dest,
                               cache] + self.asked, env=clean_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=180)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def check_ahead(self, journal, state):
        """The files asked for were installed ahead of the stream: at the time they were
        in place, the restore was still running and had not installed the first half of
        the archive."""
        self.assertEqual(state, "restoring", "wait returned only at the end")
        self.assertLessEqual(set(self.asked), set(journal))
        half = self.order[len(self.order) // 2]
        self.assertFalse(half in journal, f"the stream had passed half way ({len(journal)} "
                         f"of {len(self.order)} files installed): nothing was read ahead")

    def check_end(self, read):
        got = {k: v for k, v in tree_digest(self.dest).items()
               if not os.path.basename(k).startswith(".bootstrap_assets")}
        self.assertEqual(got, DIGEST, diff_text(got, DIGEST))
        with open(os.path.join(self.dest, MARKER)) as f:
            self.assertNotIn("state", json.load(f))
        asked = sum(self.sizes[r] + 1024 for r in self.asked)  # each with its header
        # The kernel adds its own: the index, read first, may be read again past the end of
        # a read that stops where it begins (the stream's and the one ahead of it); and an
        # open of the file (the index's read, the read ahead) drops what the kernel had read
        # ahead for the stream (FUSE keeps no page cache across opens), which is read again:
        # 256 KiB at most each. The restore asking for nothing reads up to 270 KB over the
        # archive here too.
        self.assertLessEqual(read, self.size + asked + 2 * self.index + (512 << 10),
                             f"read {read} bytes: more than the {self.size}-byte archive, "
                             f"the {asked} bytes asked for and the {self.index}-byte index")


class DemandFirstE2E(DemandCase):

    def setUp(self):
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="case-", dir=W)
        backing = os.path.join(self.top, "backing")
        shutil.copytree(os.path.join(W, "master"), os.path.join(backing, "MyDrive"))
        local = os.path.join(backing, "MyDrive", ARCHIVE)
        self.order = [pt.rel(m.name) for m in pt.members(local) if m.isfile()]
        self.sizes = {pt.rel(m.name): m.size for m in pt.members(local) if m.isfile()}
        self.size = os.path.getsize(local)
        self.index = self.size - pt.index_line(local)[2]  # the index and what follows it
        self.ds = self.mount(backing, "--read-mbps", READ_MBPS)
        self.archive = os.path.join(self.ds.mount, "MyDrive", ARCHIVE)
        self.dest = os.path.join(self.top, "content", NAME)
        self.asked = self.order[-3:]

    def test_cli_wait_for_the_last_files_gets_them_ahead_of_the_stream(self):
        p = cli("restore", "--background", "--archive", self.archive, "--dest", self.dest,
                timeout=60)
        self.assertEqual(p.returncode, 0, said(p))
        w = cli("wait", *self.asked, "--dest", self.dest, "--timeout", "60", timeout=120)
        self.assertEqual(w.returncode, 0, said(w))
        with open(os.path.join(self.dest, JOURNAL)) as f:
            journal = [line.split(" ", 3)[3].rstrip("\n") for line in f]
        with open(os.path.join(self.dest, MARKER)) as f:
            state = json.load(f).get("state")
        self.check_ahead(journal, state)
        w = cli("wait", "--dest", self.dest, "--timeout", "120", timeout=180)
        self.assertEqual(w.returncode, 0, said(w))
        self.check_end(self.ds.counter("bytes_read"))

    def test_job_wait_for_the_last_files_gets_them_ahead_of_the_stream(self):
        out = self.driver()
        self.check_ahead(out["journal"], out["state"])
        stream_s = self.size / (float(READ_MBPS) * 1e6)
        self.assertLess(out["took"], stream_s / 2,
                        f"the last files took {out['took']:.2f} s; the stream alone takes "
                        f"{stream_s:.2f} s")
        self.check_end(self.ds.counter("bytes_read"))


class DemandFirstInDrivesCacheE2E(DemandCase):
    """Parts of 8 MiB, Drive's content cache (drivesim --cache-dir) on the destination's disk
    and evicting every closed file at once (a reserve larger than the disk): the cache then
    holds what the restore has open, the stream's part (two at a part's end) and the one the
    read ahead opens, which the space plan counts (see _Demand._room)."""

    PART = 8 << 20

    def setUp(self):
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="cache-", dir=W)
        backing = os.path.join(self.top, "backing")
        local = os.path.join(backing, "MyDrive", ARCHIVE)
        p = cli("save", "--dest", SRC, "--archive", local, "--format", "tar", "--part-size",
                str(self.PART), "--drive-mount", "", "--quiet", timeout=300)
        self.assertEqual(p.returncode, 0, said(p))
        self.assertGreater(len(pt.part_files(local)), 4)
        members = pt.members(local)
        self.order = [pt.rel(m.name) for m in members if m.isfile()]
        self.sizes = {pt.rel(m.name): m.size for m in members if m.isfile()}
        data = pt.stored(local)
        self.size = len(data)
        self.index = self.size - pt.index_line(local, data)[2]
        self.drive_cache = os.path.join(self.top, "DriveFS")
        cache = os.path.join(self.drive_cache, "acct", "content_cache")
        os.makedirs(cache)
        st = os.statvfs(self.top)
        self.ds = self.mount(backing, "--read-mbps", READ_MBPS, "--cache-dir", cache,
                             "--cache-reserve", str(st.f_blocks * st.f_frsize + (1 << 30)))
        self.archive = os.path.join(self.ds.mount, "MyDrive", ARCHIVE)
        self.dest = os.path.join(self.top, "content", NAME)
        self.asked = self.order[-3:]

    def test_job_wait_for_the_last_files_gets_them_ahead_of_the_stream(self):
        out = self.driver(self.drive_cache)
        self.check_ahead(out["journal"], out["state"])
        stats = self.ds.stats()
        self.check_end(stats["bytes_read"])
        self.assertIn("cache_peak", stats)
        self.assertLessEqual(stats["cache_peak"], 3 * self.PART + (1 << 20),
                             f"Drive's cache held {stats['cache_peak']} bytes at once: more "
                             f"than the stream's two parts and the read ahead's one")


if __name__ == "__main__":
    unittest.main()
