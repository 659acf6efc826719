"""Start and stop ../shared/drivesim (a FUSE mount that behaves like Google Drive) from tests.

    with DriveSim(backing, mount, "--read-mbps", "5") as ds:
        ...                      # ds.mount is mounted; ds.stats() reads the --stats JSON
    # unmounted here, even if the drivesim process died and left a dead mount

    ops = read_oplog(path)       # a --oplog FILE as [(n, op, (path, ...)), ...]
    kill_points(ops)             # call numbers for a --kill-at-op sweep
    copy_backing(src, dst)       # a copy of a BACKING folder with mtimes kept to the ns

    class MyTests(DriveSimTestCase):   # the e2e tests' base class
        def test_x(self):
            ds = self.mount(backing, "--read-mbps", "5")   # stopped at cleanup
            self.assertTreeDigest(dest, tree_digest(source))

Used by tests/e2e_*.py, tests/helpers.py (clean_env, temporaries) and bench/bench.py. The shared tools live beside the repository
(../shared); SHARED_DIR overrides that.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bootstrap_assets.py")
SHARED = os.path.abspath(os.environ.get("SHARED_DIR") or os.path.join(REPO, "..", "shared"))
DRIVESIM = os.path.join(SHARED, "drivesim", "drivesim")
MAKE_ASSETS = os.path.join(SHARED, "datasets", "make_assets.py")
SEED_RESTORE = os.path.join(SHARED, "baselines", "seed_restore.py")


def _unescape(field):
    """/proc/self/mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted(path):
    """True if `path` is a mount point in /proc/self/mountinfo: also true for a dead FUSE
    mount, where stat() fails with ENOTCONN."""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape(line.split()[4]) == path for line in f if line.strip())
    except OSError:
        return os.path.ismount(path)


def _fusermount():
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def unmount(path, timeout=3.0):
    """Unmount `path`: fusermount -u, retried while busy, then lazy (-uz). Returns True if
    it is no longer mounted."""
    deadline = time.monotonic() + timeout
    while mounted(path):
        subprocess.run([_fusermount(), "-u", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if not mounted(path):
            break
        if time.monotonic() > deadline:
            subprocess.run([_fusermount(), "-uz", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            break
        time.sleep(0.2)
    return not mounted(path)


class DriveSimError(RuntimeError):
    pass


class DriveSim:
    """drivesim BACKING MOUNT [args...] as a subprocess.

    start() waits until MOUNT is mounted (or raises DriveSimError with drivesim's stderr);
    stop() unmounts (lazily if busy or dead), waits for the process and kills it if it
    lingers. Stats are kept in STATS (a temp file unless given)."""

    def __init__(self, backing, mount, *args, stats=None, timeout=20.0):
        self.backing = os.path.abspath(backing)
        self.mount = os.path.abspath(mount)
        self.args = [str(a) for a in args]
        self.timeout = timeout
        self._tmp = tempfile.mkdtemp(prefix="drivesim-fixture-")
        self.stats_path = stats or os.path.join(self._tmp, "stats.json")
        self.stderr_path = os.path.join(self._tmp, "stderr.txt")
        self.proc = None

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        if not os.path.exists(DRIVESIM):
            raise DriveSimError(f"drivesim not found at {DRIVESIM}: shared/ belongs beside the "
                                "repository, or set SHARED_DIR")
        if mounted(self.mount):
            raise DriveSimError(f"{self.mount} is already mounted")
        os.makedirs(self.mount, exist_ok=True)
        cmd = [DRIVESIM, self.backing, self.mount, "--stats", self.stats_path] + self.args
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + self.timeout
        while not os.path.ismount(self.mount):
            problem = None
            if self.proc.poll() is not None:
                problem = f"drivesim exited with {self.proc.returncode} before mounting"
            elif time.monotonic() > deadline:
                problem = f"drivesim did not mount within {self.timeout:g} s"
            if problem:
                self.stop()
                message = (f"{problem} {self.mount}:\n{self.stderr()}\n"
                           f"command: {' '.join(cmd)}")
                self.cleanup()
                raise DriveSimError(message)
            time.sleep(0.05)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Unmount and end the process. Safe to call twice and after a crash."""
        if self.proc is None:
            return
        if self.alive():
            unmount(self.mount)
        else:
            # the process died (--crash-after-read): the mount is stale, ENOTCONN on every call
            if mounted(self.mount):
                subprocess.run([_fusermount(), "-uz", self.mount], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # lazily unmounted but still held open: end it
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            unmount(self.mount, timeout=2)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # -- observation ----------------------------------------------------------
    def stats(self, settle=0.25):
        """drivesim's counters (opens, bytes_read, ...). drivesim rewrites the file every
        0.1 s, so by default wait a little for the last reads to show up."""
        if settle and self.alive():
            time.sleep(settle)
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def counter(self, key, settle=0.25):
        """One of drivesim's counters (0 if the stats file is not there yet)."""
        return self.stats(settle).get(key, 0)


class DriveSimTestCase(unittest.TestCase):
    """A test that starts drivesim mounts with self.mount(); each one is stopped (lazily
    unmounted if dead) at the test's cleanup."""
    maxDiff = 4000

    def mount(self, backing, *args, mnt=None):
        """drivesim on backing at mnt (default: a fresh temporary folder, removed at
        cleanup); returns the started DriveSim."""
        if mnt is None:
            mnt = tempfile.mkdtemp(prefix="drivesim-mnt-")
            self.addCleanup(_remove_mount_point, mnt)
        ds = DriveSim(backing, mnt, *args)
        ds.start()
        self.addCleanup(ds.cleanup)
        return ds

    def assertTreeDigest(self, root, want, msg=""):
        """root holds exactly the tree_digest `want` (our marker aside)."""
        self.assertTrue(os.path.isdir(root), f"{root} missing {msg}")
        got = tree_digest(root)
        if got != want:
            self.fail(f"{root} differs {msg}: {diff_text(got, want)}")


def _remove_mount_point(path):
    """The empty folder a stopped drivesim was mounted on (never a folder still mounted)."""
    if not mounted(path):
        try:
            os.rmdir(path)
        except OSError:
            pass


# -- crash sweeps -------------------------------------------------------------------
def read_oplog(path):
    """drivesim --oplog FILE as [(n, op, (path, ...))], n counting from 1 at mount time."""
    ops = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[0].isdigit():
                ops.append((int(fields[0]), fields[1], tuple(fields[2:])))
    return ops


def kill_points(ops, at_least=20, min_bulk_writes=8, bulk=None):
    """Call numbers to pass to --kill-at-op, spread over a run logged by --oplog: the first
    and the last call, every call that is not a bulk write (create, fsync, rename, unlink,
    writes of small files such as a sidecar, ...), and evenly spaced bulk writes, enough
    of them to reach `at_least` points in all (and at least min_bulk_writes). A bulk write
    is a write to the file most written to, unless `bulk(path)` says otherwise."""
    if not ops:
        return []
    if bulk is None:
        counts = {}
        for _, op, paths in ops:
            if op == "write":
                counts[paths[0]] = counts.get(paths[0], 0) + 1
        busiest = max(counts, key=counts.get) if counts else None
        bulk = lambda path: path == busiest  # noqa: E731
    chosen = {ops[0][0], ops[-1][0]}
    writes = []
    for n, op, paths in ops:
        if op == "write" and bulk(paths[0]):
            writes.append(n)
        else:
            chosen.add(n)
    want = min(len(writes), max(min_bulk_writes, at_least - len(chosen)))
    if want == 1:
        chosen.add(writes[0])
    elif want > 1:
        chosen.update(writes[round(i * (len(writes) - 1) / (want - 1))] for i in range(want))
    extra = iter(n for n in writes if n not in chosen)
    while len(chosen) < min(at_least, len(ops)):
        chosen.add(next(extra))
    return sorted(chosen)


def copy_backing(src, dst):
    """Copy a BACKING folder, keeping modes and mtimes (to the ns): a file's identity as seen
    through the mount (path, size, mtime) is then the same in the copy, mounted at the same
    MOUNT, as in the original."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def clean_env():
    """The environment for a subprocess run of the tool: none of our settings leak in, its
    output comes as it is written, and it leaves no __pycache__ beside the script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTSTRAP_ASSETS_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run(cmd, **kw):
    """A helper program (tar, make_assets.py, ...) that must succeed: its CompletedProcess,
    or RuntimeError with its output."""
    r = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, **kw)
    if r.returncode:
        raise RuntimeError(f"{cmd} -> {r.returncode}\n{r.stdout.decode()}{r.stderr.decode()}")
    return r


def cli(*args, timeout=120):
    """python bootstrap_assets.py ARGS -> CompletedProcess (text); killed by a signal: < 0."""
    return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], cwd=REPO,
                          env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, stdin=subprocess.DEVNULL)


def said(p):
    """A CompletedProcess of cli() as a failure message: its exit code and output's ends."""
    return f"exit {p.returncode}\nstdout: {p.stdout[-1500:]}\nstderr: {p.stderr[-1500:]}"


def saved_mixed_profile(name, archive, prefix, scale="0.05"):
    """A module's fixture: make_assets.py's mixed profile at scale in a new temporary folder,
    saved there by our `save` (default order, a plain tar) as master/<archive>; returns (the
    folder, the profile's path). Skips the module without FUSE, drivesim or make_assets.py."""
    if not os.path.exists("/dev/fuse"):
        raise unittest.SkipTest(f"{prefix} needs /dev/fuse for drivesim (FUSE)")
    if not os.path.exists(DRIVESIM) or not os.path.exists(MAKE_ASSETS):
        raise unittest.SkipTest("drivesim or make_assets.py not found beside the repository")
    folder = tempfile.mkdtemp(prefix=f"bootstrap-{prefix.replace('_', '-')}-")
    try:
        src = os.path.join(folder, "src", name)
        run([sys.executable, MAKE_ASSETS, "create", src, "--profile", "mixed", "--scale", scale])
        p = cli("save", "--dest", src, "--archive", os.path.join(folder, "master", archive),
                "--format", "tar", "--drive-mount", "", "--quiet")
        assert p.returncode == 0, said(p)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, src


MARKER = ".bootstrap_assets.json"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root, skip_marker=True):
    """{relative path: what is there} for every entry under root (but our marker, unless
    skip_marker is False): files by sha256 and permission bits, folders by permission bits,
    symlinks by target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if skip_marker and rel in (MARKER, MARKER + ".tmp"):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", sha256_file(path), oct(st.st_mode & 0o7777))
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def diff_text(got, want):
    """What differs between two tree_digest results, briefly."""
    missing = sorted(set(want) - set(got))[:8]
    extra = sorted(set(got) - set(want))[:8]
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])[:8]
    return f"missing {missing}, extra {extra}, differ {differ}"


def write_random(path, nbytes, seed):
    """A file of nbytes pseudo-random (incompressible) bytes, the same for the same seed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(nbytes))


def file_hashes(folder):
    """{name: sha256} of the files in a folder (a backing MyDrive)."""
    return {n: sha256_file(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, n))}


def temporaries(archive):
    """Names of the temporary files a save of archive left beside it (ARCHIVE.*.tmp-*)."""
    folder, base = os.path.split(archive)
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.startswith(base + ".") and ".tmp-" in n)
