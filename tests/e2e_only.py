"""End-to-end tests of `restore --only` (a partial restore by ranges), as real processes:
an archive of make_assets.py --profile mixed --scale 0.05 saved by our `save` (default
order, a plain tar), restored from drivesim, from ../shared/httpsim (Range, and
--no-range), from moto_server (s3://) and from gcp-storage-emulator (gs://, spread files
only), both in $TEST_VENV, with the bytes each served counted (drivesim and httpsim --stats;
the emulators through a counting proxy, tests/byte_proxy.py):

- `--only 'weights/**'`: the tree is exactly the weights, and the bytes read are at most
  1.05 x the weights' bytes in the archive + the index (+ the sidecar); the same command
  again reads nothing of the archive; a second `--only` adds its files reading only them
  (1.10 x); status names what the folder holds; a plain restore completes it;
- files spread through the archive (a range per folder), read by several requests at once
  over https, s3:// and gs://; connections cut mid-range, resumed from the byte reached;
- a server without ranges: one pass that skips the rest, the tree exact, and the summary
  says why;
- a tampered index: exit 5, nothing installed;
- kill -9 during a partial restore, then the same command completes it;
- a partial folder changed, saved as a layer then in full (the files it never restored
  carried over from the archive by ranges), restores in full elsewhere as the original plus
  exactly the changes; over httpsim --no-range the full save refuses before writing.

Run with `python3 tests/run.py e2e -k e2e_only`. Needs /dev/fuse, ../shared and, for s3://
and gs://, the emulators in $TEST_VENV (the tests that need one are skipped without it).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import progressive_tools as pt  # noqa: E402
from byte_proxy import CountingProxy  # noqa: E402
from drivesim_fixture import (DRIVESIM, MAKE_ASSETS, SCRIPT, SHARED,  # noqa: E402
                              DriveSimTestCase, clean_env, cli, run, tree_digest)

NAME, ARCHIVE = "_assets", "assets.tar"
HTTPSIM = os.path.join(SHARED, "httpsim", "httpsim.py")
TEST_VENV = os.environ.get("TEST_VENV", "/tmp/bootstrap-assets-ci-venv")
WEIGHTS, CLASS = "weights/**", "images/class_07/"
# the first 1 % of the images: a few in each class folder, so as many ranges as folders
SPREAD = "images/*/img_0000*.jpg"


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


class Saved:
    """The source folder and our save of it (MyDrive/assets.tar in a backing folder), made
    once for all the tests; what the tests compare against."""
    top = None

    @classmethod
    def get(cls):
        if cls.top is None:
            cls.top = tempfile.mkdtemp(prefix="bootstrap-e2e-only-src-")
            cls.src = os.path.join(cls.top, "src", NAME)
            run([sys.executable, MAKE_ASSETS, "create", cls.src, "--profile", "mixed",
                 "--scale", "0.05"])
            cls.backing = os.path.join(cls.top, "backing")
            cls.stored = os.path.join(cls.backing, "MyDrive", ARCHIVE)
            p = cli("save", "--dest", cls.src, "--archive", cls.stored, "--drive-mount", "",
                    "--part-size", "0", "--quiet")
            if p.returncode:
                raise RuntimeError(p.stdout + p.stderr)
            members = [m for m in pt.members(cls.stored) if m.isfile()]
            cls.bytes = {pt.rel(m.name): 512 + m.size + (-m.size) % 512 for m in members}
            cls.index = os.path.getsize(cls.stored) - pt.index_lines(cls.stored)[0][2]
            cls.sidecar = os.path.getsize(cls.stored + ".sha256")
            cls.digest = tree_digest(cls.src)
        return cls


def tearDownModule():
    if Saved.top:
        shutil.rmtree(Saved.top, True)


class OnlyCase(DriveSimTestCase):
    """The checks every source shares; a subclass gives source() (the archive's address,
    and a function counting the bytes served so far) and env (the CLI's environment)."""
    env = None

    def setUp(self):
        if not os.path.exists(MAKE_ASSETS):
            self.skipTest("make_assets.py not found beside the repository")
        super().setUp()
        self.saved = Saved.get()
        self.top = tempfile.mkdtemp(prefix="bootstrap-e2e-only-")
        self.addCleanup(shutil.rmtree, self.top, True)
        self.dest = os.path.join(self.top, "out", NAME)

    def cli(self, *args, timeout=120):
        env = dict(clean_env(), **(self.env or {}))
        return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def restore(self, *only, code=0):
        args = ["restore", "--archive", self.archive, "--dest", self.dest, "--drive-mount", ""]
        for pattern in only:
            args += ["--only", pattern]
        before = self.served()
        p = self.cli(*args)
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        return p.stdout + p.stderr, self.served() - before

    def want(self, *prefixes):
        return {r: e for r, e in self.saved.digest.items() if e[0] == "file" and
                r.startswith(prefixes)}

    def files(self):
        return {r: e for r, e in tree_digest(self.dest).items() if e[0] == "file"}

    def stored_bytes(self, *prefixes):
        return sum(n for r, n in self.saved.bytes.items() if r.startswith(prefixes))

    def assertRead(self, read, prefixes, factor, what):
        wanted = self.stored_bytes(*prefixes)
        limit = factor * wanted + self.saved.index + self.saved.sidecar
        print(f"\n{self.id()}: {what}: {read:,} bytes read for {wanted:,} bytes of files + "
              f"{self.saved.index:,} of index", file=sys.stderr)
        self.assertLessEqual(read, limit, f"{what}: {read:,} bytes read, limit {limit:,.0f}")

    def check_only_then_add_then_complete(self):
        out, read = self.restore(WEIGHTS)
        self.assertIn("by ranges", out)
        self.assertEqual(self.files(), self.want("weights/"))
        self.assertRead(read, ("weights/",), 1.05, "--only 'weights/**'")

        out, read = self.restore(WEIGHTS)
        self.assertIn("nothing to do", out)
        self.assertLessEqual(read, self.saved.sidecar + 4096, "the same --only read data")

        out, read = self.restore(CLASS)
        self.assertEqual(self.files(), self.want("weights/", CLASS))
        self.assertRead(read, (CLASS,), 1.10, "a second --only 'images/class_07/'")
        p = self.cli("status", "--archive", self.archive, "--dest", self.dest, "--drive-mount",
                     "")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        held = len(self.want("weights/", CLASS))
        self.assertIn(f"{WEIGHTS} and {CLASS}: {held} of {len(self.want(''))} files",
                      p.stdout)

        self.restore()
        self.assertEqual(tree_digest(self.dest), self.saved.digest)

    def check_spread(self):
        out, read = self.restore(SPREAD)
        self.assertIn("by ranges", out)
        want = {r: e for r, e in self.want("images/").items()
                if os.path.basename(r).startswith("img_0000")}
        self.assertEqual(self.files(), want)
        reads = int(out.split("--only read by ranges (")[1].split()[0])
        self.assertGreaterEqual(reads, 10, "the files are spread: one read per folder")
        wanted = {r: n for r, n in self.saved.bytes.items() if r in want}
        limit = 1.10 * sum(wanted.values()) + self.saved.index + self.saved.sidecar
        print(f"\n{self.id()}: {reads} reads, {read:,} bytes for {sum(wanted.values()):,} "
              f"bytes of files + {self.saved.index:,} of index", file=sys.stderr)
        self.assertLessEqual(read, limit)


class OverDrivesim(OnlyCase):

    def setUp(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("needs /dev/fuse for drivesim (FUSE)")
        if not os.path.exists(DRIVESIM):
            self.skipTest("drivesim not found beside the repository")
        super().setUp()

    def serve(self, backing, *args):
        self.ds = self.mount(backing, *args)
        self.archive = os.path.join(self.ds.mount, "MyDrive", ARCHIVE)

    def served(self):
        return self.ds.counter("bytes_read")

    def test_only_adds_and_completes(self):
        self.serve(self.saved.backing)
        self.check_only_then_add_then_complete()

    def test_files_spread_through_the_archive(self):
        self.serve(self.saved.backing)
        self.check_spread()

    def test_a_tampered_index_is_exit_5_and_installs_nothing(self):
        backing = os.path.join(self.top, "backing")
        shutil.copytree(self.saved.backing, backing)
        pt.tamper_index(os.path.join(backing, "MyDrive", ARCHIVE))
        self.serve(backing)
        out, _ = self.restore(WEIGHTS, code=5)
        self.assertIn("index", out)
        self.assertFalse(os.path.lexists(self.dest), "a tampered index installed something")

    def test_killed_partial_restore_then_the_same_command_completes_it(self):
        self.serve(self.saved.backing, "--read-mbps", "4")  # the weights take about 6 s
        args = [sys.executable, SCRIPT, "restore", "--archive", self.archive, "--dest",
                self.dest, "--drive-mount", "", "--only", WEIGHTS, "--quiet"]
        p = subprocess.Popen(args, env=clean_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        first = os.path.join(self.dest, "weights", sorted(self.want("weights/"))[0][8:])
        self.assertTrue(wait_for(lambda: os.path.exists(first), 60),
                        "the first weights file never appeared")
        self.assertIsNone(p.poll(), "the restore ended before it could be killed")
        p.kill()
        p.wait()
        self.assertNotEqual(self.files(), self.want("weights/"), "nothing left to resume")
        with open(os.path.join(self.dest, ".bootstrap_assets.json")) as f:
            self.assertEqual(json.load(f)["state"], "restoring")
        out, read = self.restore(WEIGHTS)
        self.assertEqual(self.files(), self.want("weights/"))
        self.assertRead(read, ("weights/",), 1.05, "the resumed --only")
        _, read = self.restore(WEIGHTS)
        self.assertLessEqual(read, self.saved.sidecar + 4096, "the same --only read data")


class HttpSim:
    """../shared/httpsim serving root on 127.0.0.1, no caps, --stats counting."""

    def __init__(self, root, work, *options):
        self.stats_path = os.path.join(work, "httpsim-stats.json")
        port_file = os.path.join(work, "httpsim-port")
        self.process = subprocess.Popen(
            [sys.executable, HTTPSIM, root, "--port", "0", "--port-file", port_file,
             "--stats", self.stats_path, "--latency-ms", "5", "--per-conn-mbps", "0",
             "--total-mbps", "0"] + list(options),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: os.path.exists(port_file) and
                        os.path.exists(self.stats_path), 20):
            self.close()
            raise RuntimeError("httpsim did not start")
        with open(port_file) as f:
            self.base = "http://127.0.0.1:%s" % f.read().strip()

    def sent(self):
        time.sleep(0.3)  # httpsim rewrites its counters every 0.1 s
        with open(self.stats_path) as f:
            return json.load(f)["bytes_sent"]

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class OverHttpsim(OnlyCase):

    def serve(self, *options):
        if not os.path.exists(HTTPSIM):
            self.skipTest("httpsim not found beside the repository")
        self.sim = HttpSim(self.saved.backing, self.top, *options)
        self.addCleanup(self.sim.close)
        self.archive = self.sim.base + "/MyDrive/" + ARCHIVE

    def served(self):
        return self.sim.sent()

    def test_only_adds_and_completes(self):
        self.serve()
        self.check_only_then_add_then_complete()

    def test_files_spread_through_the_archive(self):
        self.serve()
        self.check_spread()

    def test_dropped_connections_are_resumed_from_the_byte_reached(self):
        self.serve("--drop-after", "300000", "--drop-every", "3")
        out, read = self.restore(SPREAD, WEIGHTS)
        want = {r: e for r, e in self.want("images/").items()
                if os.path.basename(r).startswith("img_0000")}
        self.assertEqual(self.files(), dict(want, **self.want("weights/")))
        with open(self.sim.stats_path) as f:
            self.assertGreater(json.load(f)["drops"], 0, "no connection was cut")
        files = sum(n for r, n in self.saved.bytes.items() if r in want or
                    r.startswith("weights/"))
        self.assertLessEqual(read, 1.10 * files + self.saved.index + self.saved.sidecar)

    def test_without_ranges_one_pass_skips_the_rest_and_says_why(self):
        self.serve("--no-range")
        out, _ = self.restore(WEIGHTS)
        self.assertEqual(self.files(), self.want("weights/"))
        self.assertIn("in one pass that skipped the rest", out)
        self.assertIn("Range", out)
        out, _ = self.restore(CLASS)
        self.assertEqual(self.files(), self.want("weights/", CLASS))
        self.restore()
        self.assertEqual(tree_digest(self.dest), self.saved.digest)


class OverMoto(OnlyCase):

    URL = "s3://only-e2e/project/" + ARCHIVE

    def setUp(self):
        program = os.path.join(TEST_VENV, "bin", "moto_server")
        if not os.access(program, os.X_OK):
            self.skipTest("moto_server not found in %s (set TEST_VENV)" % TEST_VENV)
        super().setUp()
        import e2e_buckets
        moto = e2e_buckets.Emulator([program, "-H", "127.0.0.1", "-p", "PORT"],
                                    os.path.join(self.top, "moto.log"))
        self.addCleanup(moto.close)
        self.proxy = CountingProxy(moto.port)
        self.addCleanup(self.proxy.close)
        self.env = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=self.proxy.endpoint)
        saved_env = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved_env)))
        for name in list(os.environ):
            if name.startswith("AWS_"):
                del os.environ[name]
        os.environ.update(self.env)
        from helpers import ba
        store = ba._S3(self.URL, 5)
        store.call("PUT", "", doing="creating the bucket")
        for suffix in ("", ".sha256"):
            with open(self.saved.stored + suffix, "rb") as f:
                store.put(store.key + suffix, f.read())
        self.archive = self.URL

    def served(self):
        time.sleep(0.1)  # the last bytes of a closed connection
        return self.proxy.sent

    def test_only_adds_and_completes(self):
        self.check_only_then_add_then_complete()

    def test_files_spread_through_the_archive(self):
        self.check_spread()



class OverGcsEmulator(OnlyCase):

    URL = "gs://only-e2e/project/" + ARCHIVE

    def setUp(self):
        program = os.path.join(TEST_VENV, "bin", "gcp-storage-emulator")
        if not os.access(program, os.X_OK):
            self.skipTest("gcp-storage-emulator not found in %s (set TEST_VENV)" % TEST_VENV)
        super().setUp()
        import e2e_buckets
        emulator = e2e_buckets.Emulator(
            [program, "start", "-H", "127.0.0.1", "--port", "PORT", "-q", "--in-memory",
             "--default-bucket", "only-e2e"], os.path.join(self.top, "gcs.log"))
        self.addCleanup(emulator.close)
        self.proxy = CountingProxy(emulator.port)
        self.addCleanup(self.proxy.close)
        self.env = dict(STORAGE_EMULATOR_HOST=self.proxy.endpoint)
        saved_env = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved_env)))
        for name in list(os.environ):
            if name.startswith(("GOOGLE_", "STORAGE_EMULATOR")):
                del os.environ[name]
        os.environ.update(self.env)
        from helpers import ba
        store = ba._GCS(self.URL, 5)
        for suffix in ("", ".sha256"):
            with open(self.saved.stored + suffix, "rb") as f:
                store.put(store.key + suffix, f.read())
        self.archive = self.URL

    def served(self):
        time.sleep(0.1)  # the last bytes of a closed connection
        return self.proxy.sent

    def test_files_spread_through_the_archive(self):
        self.check_spread()



class PartialSaveOverDrivesim(DriveSimTestCase):
    """A partial folder saved as a layer, then in full (the files it never restored carried
    over from the archive), and a server without ranges refusing the full save."""

    def setUp(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("needs /dev/fuse for drivesim (FUSE)")
        if not os.path.exists(DRIVESIM) or not os.path.exists(MAKE_ASSETS):
            self.skipTest("drivesim or make_assets.py not found beside the repository")
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="bootstrap-e2e-only-")
        self.addCleanup(shutil.rmtree, self.top, True)

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
