"""Shared helpers for the unit tests of bootstrap_assets (stdlib only, Python 3.9+).

Archive builders (tar in every format/compression, zip, raw bytes), tree snapshots and
comparison, a temp-dir test base class, a small HTTP server with Range support / dropped
connections / trickling, fault injection (flaky reads, dead mount) and tmpfs mounts; the
crash sweep (SaveTestCase.crash_sweep) and the `slow` mark.

The test files import this module as plain `import helpers as h`: tests/ is on sys.path
whichever way they run (tests/run.py puts it there, as does Python for a test file run as a
script: `python3 tests/test_save.py`), and this module puts the repository there for
`bootstrap_assets`.
"""
import bz2
import contextlib
import email.utils
import errno
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types
import unittest
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (REPO, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bootstrap_assets as ba  # noqa: E402
# shared with the e2e tests
from drivesim_fixture import clean_env, sha256_file, temporaries  # noqa: E402,F401

MODULE_PATH = os.path.join(REPO, "bootstrap_assets.py")
MARKER = ".bootstrap_assets.json"
ENV_VARS = ("BOOTSTRAP_ASSETS_ARCHIVE", "BOOTSTRAP_ASSETS_DEST", "BOOTSTRAP_ASSETS_DRIVE_MOUNT")
MTIME = 1_600_000_000  # default member mtime
EXIT_CODES = {
    "BootstrapError": 1, "UsageError": 2, "SourceMissing": 3, "DeadMount": 4,
    "ChecksumMismatch": 5, "UnsafeArchive": 6, "CorruptArchive": 7, "NoSpace": 8,
    "DestinationChanged": 9, "Locked": 10, "Unsupported": 11, "AccessDenied": 12,
}


def slow(test):
    """Mark a test method or class as slow: `make test` (tests/run.py unit) leaves it out,
    `make test-slow` (tests/run.py slow) runs only such tests; CI runs both."""
    test.slow = True
    return test


def engines():
    return list(ba.available_engines())


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def rand_bytes(n, seed=1):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n)) if n < 4096 else \
        r.getrandbits(8 * n).to_bytes(n, "little")


# --------------------------------------------------------------------------------------
# member specs and archive builders
# --------------------------------------------------------------------------------------

def F(name, data=b"", mode=0o644, mtime=MTIME, **kw):
    d = dict(kind="file", name=name, data=data, mode=mode, mtime=mtime)
    d.update(kw)
    return d


def D(name, mode=0o755, mtime=MTIME, **kw):
    d = dict(kind="dir", name=name, mode=mode, mtime=mtime)
    d.update(kw)
    return d


def L(name, target, **kw):
    d = dict(kind="symlink", name=name, target=target, mode=0o777, mtime=MTIME)
    d.update(kw)
    return d


def H(name, target, **kw):
    d = dict(kind="hardlink", name=name, target=target, mode=0o644, mtime=MTIME)
    d.update(kw)
    return d


def CHR(name, major=1, minor=3):
    return dict(kind="chr", name=name, major=major, minor=minor, mode=0o666, mtime=MTIME)


def BLK(name, major=7, minor=0):
    return dict(kind="blk", name=name, major=major, minor=minor, mode=0o660, mtime=MTIME)


def FIFO(name):
    return dict(kind="fifo", name=name, mode=0o644, mtime=MTIME)


_TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
              "fifo": tarfile.FIFOTYPE}


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, end=True):
    """Uncompressed tar stream of the member specs (names are written verbatim).
    end=False: without the end-of-archive zero blocks."""
    buf = io.BytesIO()
    tf = tarfile.open(fileobj=buf, mode="w", format=fmt)
    with tf:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = _TAR_TYPES[m["kind"]]
            ti.mode = m.get("mode", 0o644)
            ti.mtime = m.get("mtime", MTIME)
            ti.uid = m.get("uid", 0)
            ti.gid = m.get("gid", 0)
            ti.uname = m.get("uname", "root")
            ti.gname = m.get("gname", "root")
            data = None
            if m["kind"] == "file":
                data = m["data"]
                ti.size = len(data)
            elif m["kind"] in ("symlink", "hardlink"):
                ti.linkname = m["target"]
            elif m["kind"] in ("chr", "blk"):
                ti.devmajor, ti.devminor = m["major"], m["minor"]
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        if not end:
            return buf.getvalue()[:tf.offset]
    return buf.getvalue()


def compress(raw, comp):
    if comp in ("tar", None, "none"):
        return raw
    if comp == "gz":
        return gzip.compress(raw, mtime=0)
    if comp == "bz2":
        return bz2.compress(raw)
    if comp == "xz":
        return lzma.compress(raw)
    if comp == "zst":
        zstd = shutil.which("zstd")
        if not zstd:
            raise unittest.SkipTest("no zstd binary to build a .zst archive")
        return subprocess.run([zstd, "-q", "-c"], input=raw, stdout=subprocess.PIPE,
                              check=True).stdout
    raise ValueError(comp)


def multi_member_gz(raw, parts=2):
    """Several gzip members concatenated (what pigz and `cat a.gz b.gz` make)."""
    step = max(1, len(raw) // parts + 1)
    return b"".join(gzip.compress(raw[i:i + step], mtime=0) for i in range(0, len(raw), step))


def multi_stream_bz2(raw, parts=2):
    step = max(1, len(raw) // parts + 1)
    return b"".join(bz2.compress(raw[i:i + step]) for i in range(0, len(raw), step))


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            zi = zipfile.ZipInfo(m["name"], date_time=time.localtime(m.get("mtime", MTIME))[:6])
            zi.compress_type = zipfile.ZIP_DEFLATED
            if m["kind"] == "dir":
                if not zi.filename.endswith("/"):
                    zi.filename += "/"
                zi.external_attr = (stat.S_IFDIR | m.get("mode", 0o755)) << 16 | 0x10
                zf.writestr(zi, b"")
            elif m["kind"] == "symlink":
                zi.external_attr = (stat.S_IFLNK | 0o777) << 16
                zi.create_system = 3
                zf.writestr(zi, m["target"].encode())
            else:
                zi.external_attr = (stat.S_IFREG | m.get("mode", 0o644)) << 16
                zi.create_system = 3
                zf.writestr(zi, m["data"])
    return buf.getvalue()


def archive_bytes(members, comp="gz", fmt=tarfile.PAX_FORMAT):
    if comp == "zip":
        return zip_bytes(members)
    return compress(tar_bytes(members, fmt), comp)


def write_bytes(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def write_sidecar(archive, hexdigest=None):
    hexdigest = hexdigest or sha256_file(archive)
    with open(archive + ".sha256", "w") as f:
        f.write("%s  %s\n" % (hexdigest, os.path.basename(archive)))
    return hexdigest


def expected_tree(members, strip_top=False):
    """The snapshot() a correct restore of `members` produces (dirs without modes)."""
    out = {}

    def norm(name):
        name = name.rstrip("/")
        if name.startswith("./"):
            name = name[2:]
        if strip_top:
            name = name.split("/", 1)[1] if "/" in name else ""
        return name

    for m in members:
        name = norm(m["name"])
        if not name or name == ".":
            continue
        parts = name.split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), ("dir",))
        if m["kind"] == "file":
            out[name] = ("file", m.get("mode", 0o644) & 0o777, m["data"])
        elif m["kind"] == "dir":
            out[name] = ("dir",)
        elif m["kind"] == "symlink":
            out[name] = ("link", m["target"])
        elif m["kind"] == "hardlink":
            out[name] = out[norm(m["target"])]
    return out


# --------------------------------------------------------------------------------------
# sample trees on disk
# --------------------------------------------------------------------------------------

SAMPLE_FILES = {
    # rel path: (data, mode, mtime)
    "README.txt": (b"hello assets\n", 0o644, MTIME + 1),
    "bin/run.sh": (b"#!/bin/sh\necho hi\n", 0o755, MTIME + 2),
    "bin/suid_tool": (b"\x7fELF pretend\n", 0o4755, MTIME + 3),
    "bin/sgid_tool": (b"sgid\n", 0o2750, MTIME + 4),
    "data/blob.bin": (None, 0o644, MTIME + 5),  # random 64 KiB
    "data/private.key": (b"secret\n", 0o600, MTIME + 6),
    "data/ro.txt": (b"read only\n", 0o444, MTIME + 7),
    "data/nested/deep/file.txt": (b"deep\n" * 100, 0o640, MTIME + 8),
    "zero.bin": (b"", 0o644, MTIME + 9),
    "name with spaces.txt": (b"spaces\n", 0o644, MTIME + 10),
    "na\u00efve-\u00fc.txt": (b"unicode\n", 0o644, MTIME + 11),
}
SAMPLE_EMPTY_DIRS = ["empty_dir", "empty_nested/inner"]
SAMPLE_LINKS = {"links/readme_link": "../README.txt", "links/data_link": "../data",
                "self_link.txt": "README.txt"}


def make_sample_tree(root, symlinks=True, special_modes=True, seed=1, extra=None):
    """A small `_assets`-like tree. Returns root."""
    os.makedirs(root, exist_ok=True)
    files = dict(SAMPLE_FILES)
    if extra:
        files.update(extra)
    for rel, (data, mode, mtime) in sorted(files.items()):
        if data is None:
            data = rand_bytes(64 * 1024, seed)
        if not special_modes:
            mode &= 0o777
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        os.utime(p, (mtime, mtime))
    for rel in SAMPLE_EMPTY_DIRS:
        os.makedirs(os.path.join(root, rel), exist_ok=True)
    if symlinks:
        for rel, target in SAMPLE_LINKS.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            os.symlink(target, p)
    return root


def tar_tree(src, archive, comp="gz", style="top", fmt=tarfile.PAX_FORMAT):
    """Archive a tree with tarfile. style "top": members under basename(src)/ ;
    "contents": members ./x (like `tar -C src .`)."""
    raw = io.BytesIO()
    arc = os.path.basename(src.rstrip("/")) if style == "top" else "."
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tf:
        tf.add(src, arcname=arc)
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    with open(archive, "wb") as f:
        f.write(compress(raw.getvalue(), comp))
    return archive


# --------------------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------------------

def snapshot(root, dir_modes=False, mtimes=False, include_marker=False, full_modes=True):
    """{relpath: entry} for everything under root (not following symlinks).
    file: ("file", perm, bytes[, mtime]); dir: ("dir"[, perm]); symlink: ("link", target);
    anything else: ("other", st_mode). perm is mode & 0o7777 (setuid etc visible)."""
    out = {}
    mask = 0o7777 if full_modes else 0o777
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            if rel == MARKER and not include_marker:
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode & mask) if dir_modes else ("dir",)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
                e = ("file", st.st_mode & mask, data)
                out[rel] = e + (int(st.st_mtime),) if mtimes else e
            else:
                out[rel] = ("other", st.st_mode)
    return out


def strip_special(snap):
    """What a restore of a tree with snapshot `snap` must give: no setuid/setgid/sticky."""
    out = {}
    for k, v in snap.items():
        if v[0] in ("file", "dir") and len(v) > 1:
            out[k] = (v[0], v[1] & 0o777) + tuple(v[2:])
        else:
            out[k] = v
    return out


def state(path):
    """Everything about path, for "untouched" checks (None if it does not exist)."""
    if not os.path.lexists(path):
        return None
    return snapshot(path, dir_modes=True, mtimes=True, include_marker=True)


def staging_leftovers(dest):
    parent, name = os.path.split(os.path.abspath(dest).rstrip("/"))
    return sorted(glob.glob(os.path.join(glob.escape(parent), "." + glob.escape(name) + ".staging-*")))


def summarize(snap_a, snap_b):
    """Short human diff of two snapshots (for assertion messages)."""
    lines = []
    for k in sorted(set(snap_a) | set(snap_b)):
        a, b = snap_a.get(k), snap_b.get(k)
        if a != b:
            def short(e):
                if e is None:
                    return "MISSING"
                return repr(tuple(x if not isinstance(x, bytes) or len(x) < 40 else
                                  "<%d bytes sha %s>" % (len(x), sha256_bytes(x)[:8]) for x in e))
            lines.append("  %s: got %s, want %s" % (k, short(a), short(b)))
    return "\n".join(lines[:40])


# --------------------------------------------------------------------------------------
# test base class
# --------------------------------------------------------------------------------------

class BATestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="ba-unit-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        p = mock.patch.dict(os.environ)
        p.start()
        self.addCleanup(p.stop)
        for v in ENV_VARS:
            os.environ.pop(v, None)
        self.src_dir = os.path.join(self.tmp, "src")
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.src_dir)
        os.makedirs(self.work)
        self.dest = os.path.join(self.work, "_assets")

    def subdir(self, prefix="case-"):
        return tempfile.mkdtemp(prefix=prefix, dir=self.tmp)

    def restore(self, archive, dest=None, **kw):
        kw.setdefault("quiet", True)
        kw.setdefault("retry_for", 2.0)
        kw.setdefault("lock_timeout", 5.0)
        return ba.restore(archive, dest if dest is not None else self.dest, **kw)

    def assertBAError(self, cls_name, fn, *a, **kw):
        """fn raises ba.<cls_name> with the documented exit_code; returns the exception."""
        cls = getattr(ba, cls_name)
        try:
            fn(*a, **kw)
        except ba.BootstrapError as e:
            self.assertIsInstance(e, cls, "expected %s, got %s: %s" % (cls_name, type(e).__name__, e))
            self.assertEqual(e.exit_code, EXIT_CODES[cls_name], "exit_code of %s" % type(e).__name__)
            return e
        self.fail("expected %s, nothing raised" % cls_name)

    def assertTree(self, root, expected, msg=""):
        got = snapshot(root)
        if got != expected:
            self.fail("tree %s differs %s:\n%s" % (root, msg, summarize(got, expected)))

    def assertNoStaging(self, dest):
        self.assertEqual(staging_leftovers(dest), [], "staging folder left beside dest")

    def assertUntouched(self, dest, before):
        after = state(dest)
        if before is None:
            self.assertFalse(os.path.lexists(dest), "dest was created by a failed restore: %s" % dest)
        else:
            self.assertIsNotNone(after, "dest vanished after a failed restore")
            if after != before:
                self.fail("dest changed by a failed restore:\n" + summarize(after, before))
        self.assertNoStaging(dest)

    def assertMarker(self, dest):
        p = os.path.join(dest, MARKER)
        self.assertTrue(os.path.isfile(p), "no marker in %s" % dest)
        with open(p) as f:
            json.load(f)

    def run_main(self, argv):
        """ba.main(argv) in-process; returns (rc, stdout, stderr). SystemExit is a failure."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = ba.main(argv)
            except SystemExit as e:  # pragma: no cover - reported as a failure
                self.fail("main(%r) called sys.exit(%r); it must return the code" % (argv, e.code))
        return rc, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head):
        srv = self.server
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.command, path, rng))
            gets = sum(1 for c, p, _ in srv.requests if c == "GET" and p == path)
            data = srv.files.get(path)
        if data is None:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        total = len(data)
        start, end, status = 0, total - 1, 200
        if rng:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
                status = 206
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % total)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
        body = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"%s"' % sha256_bytes(data)[:16])
        self.send_header("Last-Modified", email.utils.formatdate(srv.mtimes.get(path, MTIME), usegmt=True))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, total))
        self.end_headers()
        if head:
            return
        try:
            drop = srv.drop_after.get(path)
            if drop is not None and len(body) > drop:
                with srv.lock:
                    srv.drop_after.pop(path, None)
                self.wfile.write(body[:drop])
                self.wfile.flush()
                with srv.lock:
                    srv.sent[path] = srv.sent.get(path, 0) + min(drop, len(body))
                self.close_connection = True
                return
            pos = 0
            while pos < len(body):
                trickle = srv.trickle.get(path)
                if srv.stop.is_set():
                    self.close_connection = True
                    return
                n = trickle[0] if trickle else len(body)
                self.wfile.write(body[pos:pos + n])
                pos += n
                with srv.lock:
                    srv.sent[path] = srv.sent.get(path, 0) + n
                if trickle:
                    time.sleep(trickle[1])
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class HTTPFixture:
    """ThreadingHTTPServer on 127.0.0.1 serving in-memory files.
    files: url path -> bytes; drop_after: path -> bytes sent before the connection is closed,
    once, on the next GET whose body is longer (a one-byte probe passes); trickle: path -> (chunk_bytes, sleep_seconds)."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        s = self.server
        s.lock = threading.Lock()
        s.files, s.mtimes, s.requests, s.sent = {}, {}, [], {}
        s.drop_after, s.trickle = {}, {}
        s.stop = threading.Event()
        self.thread = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def put(self, path, data, mtime=MTIME):
        with self.server.lock:
            self.server.files[path] = data
            self.server.mtimes[path] = mtime
        return self.base + path

    def requests(self):
        with self.server.lock:
            return list(self.server.requests)

    def sent(self, path):
        with self.server.lock:
            return self.server.sent.get(path, 0)

    def close(self):
        self.server.stop.set()
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------
# subprocess restores
# --------------------------------------------------------------------------------------

def start_cli(args, tmp, env=None):
    """`python bootstrap_assets.py ARGS` in its own session; returns (Popen, out, err paths)."""
    out = os.path.join(tmp, "cli-%d.out" % time.monotonic_ns())
    err = out[:-4] + ".err"
    fo, fe = open(out, "wb"), open(err, "wb")
    try:
        p = subprocess.Popen([sys.executable, MODULE_PATH] + list(args), stdout=fo, stderr=fe,
                             stdin=subprocess.DEVNULL, env=env or clean_env(), cwd=tmp,
                             start_new_session=True)
    finally:
        fo.close()
        fe.close()
    return p, out, err


def kill_group(p):
    """SIGKILL the process we started, then whatever is left of its own process group."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_for(cond, timeout=15.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


# --------------------------------------------------------------------------------------
# fault injection
# --------------------------------------------------------------------------------------

def _fspath(p):
    if isinstance(p, int):
        return None
    try:
        p = os.fspath(p)
    except TypeError:
        return None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return os.path.abspath(p)


class _FlakyFile:
    """Proxy of a real file object whose reads go through FlakyReads.check()."""

    def __init__(self, real, owner):
        self._real = real
        self._owner = owner

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __iter__(self):
        return iter(self._real)

    def close(self):
        try:
            self._owner.fds.discard(self._real.fileno())
        except (ValueError, OSError):
            pass
        return self._real.close()

    def read(self, *a):
        self._owner.check()
        return self._real.read(*a)

    def read1(self, *a):
        self._owner.check()
        return self._real.read1(*a)

    def readinto(self, b):
        self._owner.check()
        return self._real.readinto(b)

    def readinto1(self, b):
        self._owner.check()
        return self._real.readinto1(b)


class _Patches:
    """A context manager that patches names while it is entered (see _patch)."""

    def _patch(self, target, new):
        patcher = mock.patch(target, new)
        patcher.start()
        self._patches.append(patcher)

    def __exit__(self, *exc):
        for p in reversed(self._patches):
            p.stop()
        self._patches = []
        return False


class FlakyReads(_Patches):
    """Reads of `path` (through open()/io.open()/os.open()+os.read/pread/readv) raise
    OSError(err) on the read calls numbered in `fail_calls` (1-based, counted over every
    reopen). `self.raised` counts injected errors, `self.calls` all read calls."""

    def __init__(self, path, err=errno.EIO, fail_calls=(2, 3, 4), fail_from=None):
        self.path = os.path.abspath(path)
        self.err = err
        self.fail_calls = fail_calls if isinstance(fail_calls, range) else set(fail_calls)
        self.fail_from = fail_from  # every call numbered >= fail_from fails too
        self.calls = 0
        self.raised = 0
        self.fds = set()
        self.lock = threading.Lock()
        self._patches = []

    def check(self):
        with self.lock:
            self.calls += 1
            fail = self.calls in self.fail_calls or (
                self.fail_from is not None and self.calls >= self.fail_from)
            if fail:
                self.raised += 1
        if fail:
            raise OSError(self.err, os.strerror(self.err))

    def __enter__(self):
        import builtins
        real_open, real_io_open = builtins.open, io.open
        real_os_open, real_os_read = os.open, os.read
        real_pread, real_readv, real_close = os.pread, os.readv, os.close
        owner = self

        def wrap_open(opener):
            def _open(file, *a, **kw):
                f = opener(file, *a, **kw)
                mode = a[0] if a else kw.get("mode", "r")
                target = _fspath(file)
                if isinstance(file, int) and file in owner.fds:
                    target = owner.path
                if target == owner.path and "r" in mode and "+" not in mode:
                    try:
                        owner.fds.add(f.fileno())
                    except (ValueError, OSError, AttributeError):
                        pass
                    return _FlakyFile(f, owner)
                return f
            return _open

        def _os_open(path, flags, *a, **kw):
            fd = real_os_open(path, flags, *a, **kw)
            if _fspath(path) == owner.path and (flags & 3) == os.O_RDONLY:
                owner.fds.add(fd)
            return fd

        def _os_read(fd, n):
            if fd in owner.fds:
                owner.check()
            return real_os_read(fd, n)

        def _pread(fd, n, off):
            if fd in owner.fds:
                owner.check()
            return real_pread(fd, n, off)

        def _readv(fd, bufs):
            if fd in owner.fds:
                owner.check()
            return real_readv(fd, bufs)

        def _close(fd):
            owner.fds.discard(fd)
            return real_close(fd)

        for target, new in (("builtins.open", wrap_open(real_open)), ("io.open", wrap_open(real_io_open)),
                            ("os.open", _os_open), ("os.read", _os_read), ("os.pread", _pread),
                            ("os.readv", _readv), ("os.close", _close)):
            self._patch(target, new)
        return self


class DeadMountSim(_Patches):
    """Every stat/open/listing of a path at or under `prefix` fails with ENOTCONN, as on a
    FUSE mount whose daemon died ("Transport endpoint is not connected")."""

    FUNCS = ("stat", "lstat", "open", "scandir", "listdir", "statvfs", "access", "readlink")

    def __init__(self, prefix):
        self.prefix = os.path.abspath(prefix)
        self.hits = 0
        self._patches = []

    def _dead(self, p):
        p = _fspath(p)
        return p is not None and (p == self.prefix or p.startswith(self.prefix + os.sep))

    def _raise(self, p):
        self.hits += 1
        raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), os.fspath(p))

    def __enter__(self):
        import builtins
        for fname in self.FUNCS:
            real = getattr(os, fname)

            def make(real):
                def f(path=".", *a, **kw):
                    if self._dead(path):
                        self._raise(path)
                    return real(path, *a, **kw)
                return f
            self._patch("os." + fname, make(real))
        for target, real in (("builtins.open", builtins.open), ("io.open", io.open)):
            def make_open(real):
                def f(file, *a, **kw):
                    if self._dead(file):
                        self._raise(file)
                    return real(file, *a, **kw)
                return f
            self._patch(target, make_open(real))
        return self


# --------------------------------------------------------------------------------------
# tmpfs
# --------------------------------------------------------------------------------------

def mount_tmpfs(testcase, path, options):
    """Mount a tmpfs at path (unmounted at cleanup) or skip the test if not permitted."""
    os.makedirs(path, exist_ok=True)
    if not shutil.which("mount"):
        raise unittest.SkipTest("no mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise unittest.SkipTest("cannot mount tmpfs: %s" % r.stdout.decode(errors="replace").strip())

    def umount():
        if subprocess.run(["umount", path], stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
    testcase.addCleanup(umount)
    return path


def gzip_bomb_tar_gz(member_name="bomb.bin", size=4 << 30, prefix_members=()):
    """A valid .tar.gz (one gzip member, one deflate stream) whose tar has `member_name`
    declaring `size` bytes of zeros, built in ~1 s without compressing gigabytes: after a
    Z_FULL_FLUSH deflate output is independent of earlier input, so the compressed form of
    1 MiB of zeros can be repeated. The gzip CRC is left 0 (a restore must stop long
    before the trailer)."""
    assert size % (1 << 20) == 0
    raw_head = tar_bytes(list(prefix_members), end=False)
    ti = tarfile.TarInfo(member_name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = MTIME
    header = ti.tobuf(tarfile.GNU_FORMAT)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(raw_head + header), c.flush(zlib.Z_FULL_FLUSH)]
    mib = bytes(1 << 20)
    chunk = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    chunk2 = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    assert chunk == chunk2
    out.append(chunk * (size // (1 << 20)))
    out.append(c.compress(b"\0" * 1024) + c.flush(zlib.Z_FINISH))
    total = len(raw_head) + len(header) + size + 1024
    gz_head = b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + b"\x02\x03"
    trailer = (0).to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little")
    return gz_head + b"".join(out) + trailer


def fake_module(name, **attrs):
    import importlib.machinery
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


# --------------------------------------------------------------------------------------
# save side: a local folder and an archive folder ("the Drive") in plain temp dirs
# --------------------------------------------------------------------------------------

SAVE_TOP = "_assets"  # the local folder's name = the top folder inside a saved archive


class SimulatedCrash(BaseException):
    """Raised by CrashAt: not an Exception, so no `except Exception` in the module eats it."""


class CrashAt(_Patches):
    """Count the calls that change a filesystem (os.rename, os.replace, os.unlink, os.remove)
    and make call number `n` (0-based) and every later one raise SimulatedCrash without
    doing anything, as if the process had been killed just before it. n=None only counts.
    `self.calls` lists (function name, basename of the first argument) of the calls made."""

    FUNCS = ("rename", "replace", "unlink", "remove")

    def __init__(self, n=None, only=None):
        self.n, self.only = n, only
        self.calls = []
        self.crashed = False
        self._patches = []

    def __enter__(self):
        for fname in self.FUNCS:
            real = getattr(os, fname)

            def make(real, fname):
                def f(*a, **kw):
                    if self.crashed:
                        raise SimulatedCrash("already dead")
                    if self.only is None or self.only(fname, a):
                        if self.n is not None and len(self.calls) == self.n:
                            self.crashed = True
                            raise SimulatedCrash("killed before %s(%r)" % (fname, a[:2]))
                        self.calls.append((fname, os.path.basename(os.fspath(a[0]))))
                    return real(*a, **kw)
                return f
            self._patch("os." + fname, make(real, fname))
        return self


@contextlib.contextmanager
def hold_lock(dest):
    """Hold the lock file beside dest (what a running restore/save holds) with flock."""
    import fcntl
    path = os.path.join(os.path.dirname(os.path.abspath(dest)),
                        "." + os.path.basename(os.path.abspath(dest)) + ".lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("pid %d (test holder)" % os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)


def sidecar_lines(archive):
    """[(hex, name)] of ARCHIVE.sha256 in file order ([] if missing); `#` comment lines
    (which sha256sum -c skips too) are left out."""
    path = archive + ".sha256"
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.strip() and not line.startswith("#"):
                digest, _, name = line.partition("  ")
                out.append((digest, name.lstrip("*")))
    return out


def archive_family(archive):
    """Names in the archive's folder that belong to it (base, versions, layers, temporaries),
    not the sidecar."""
    folder, base = os.path.split(archive)
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder)
                  if (n == base or n.startswith(base + ".")) and n != base + ".sha256")


def folder_state(folder):
    """{name: (size, mtime_ns, inode, sha256)} of the regular files in folder (not recursive)."""
    out = {}
    if not os.path.isdir(folder):
        return None
    for n in sorted(os.listdir(folder)):
        p = os.path.join(folder, n)
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[n] = (st.st_size, st.st_mtime_ns, st.st_ino, sha256_file(p))
        else:
            out[n] = ("other", st.st_mode)
    return out


def tar_members_of(path):
    """[(name, type, size, linkname)] of a saved archive or layer (any compression tarfile reads;
    zstd through the zstd program)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"\x28\xb5\x2f\xfd":
        raw = subprocess.run(["zstd", "-dqc", path], stdout=subprocess.PIPE, check=True).stdout
        tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    else:
        tf = tarfile.open(path, mode="r:*")
    with tf:
        return [(m.name, m.type, m.size, m.linkname) for m in tf.getmembers()]


def tar_member_data(path, name):
    with tarfile.open(path, mode="r:*") as tf:
        return tf.extractfile(name).read()


def save_tree(root, big=True, seed=3):
    """make_sample_tree plus what a save must carry: a file over 1 MiB, relative links with
    '..' at several depths, a dangling link inside, unicode names, modes, a private folder."""
    make_sample_tree(root, seed=seed)
    extra = {
        "deep/a/b/c/leaf.txt": (b"leaf\n", 0o644),
        "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb.txt": (b"nihongo\n", 0o644),
        "emoji-\U0001F600.bin": (rand_bytes(3000, seed + 1), 0o600),
        "private/secret.txt": (b"s\n", 0o600),
    }
    if big:
        extra["weights/big.bin"] = (rand_bytes(1_500_000, seed + 2), 0o644)
    for rel, (data, mode) in extra.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
    os.chmod(os.path.join(root, "private"), 0o700)
    links = {"deep/a/b/c/up3": "../../../../README.txt",
             "deep/a/b/c/updir": "../../../../data/nested",
             "deep/a/b/sibling": "c/leaf.txt",
             "deep/through_link": "../links/readme_link",
             "dangling_inside": "no_such_file.txt"}
    for rel, target in links.items():
        os.symlink(target, os.path.join(root, rel))
    return root


def saved_view(root):
    """What restoring a save of root must give: snapshot with dir modes, without the
    setuid/setgid/sticky bits (a save stores permission bits only)."""
    view = strip_special(snapshot(root, dir_modes=True))
    view.pop(MARKER + ".tmp", None)  # the marker being replaced by a save running meanwhile
    return view


class SaveTestCase(BATestCase):
    """self.local: the folder saved (named _assets); self.archive in self.drive."""

    def setUp(self):
        super().setUp()
        self.local = os.path.join(self.tmp, "local", SAVE_TOP)
        self.drive = os.path.join(self.tmp, "drive")
        self.archive = os.path.join(self.drive, "assets.tar.gz")
        self._outs = 0

    def save(self, dest=None, archive=None, **kw):
        kw.setdefault("quiet", True)
        kw.setdefault("drive_mount", "")
        kw.setdefault("lock_timeout", 5.0)
        kw.setdefault("retry_for", 2.0)
        return ba.save(dest or self.local, archive or self.archive, **kw)

    def out(self, label="out"):
        """A fresh (absent) restore destination named _assets."""
        self._outs += 1
        return os.path.join(self.tmp, "%s-%d" % (label, self._outs), SAVE_TOP)

    def restore_fresh(self, archive=None, **kw):
        """Restore into a fresh folder; returns (dest, result)."""
        kw.setdefault("drive_mount", "")
        dest = self.out()
        r = self.restore(archive or self.archive, dest, **kw)
        return dest, r

    def assertRestores(self, want, archive=None, msg="", **kw):
        dest, r = self.restore_fresh(archive, **kw)
        got = strip_special(snapshot(dest, dir_modes=True))
        if got != want:
            self.fail("restored tree differs %s:\n%s" % (msg, summarize(got, want)))
        return dest, r

    def assertSidecarConsistent(self, archive=None):
        """One line per archive file on disk (base, versions, layers), no line for anything
        else, no temporaries, and `sha256sum -c` passes in the archive's folder."""
        archive = archive or self.archive
        folder, base = os.path.split(archive)
        lines = sidecar_lines(archive)
        names = [n for _, n in lines]
        dup = sorted({n for n in names if names.count(n) > 1})
        self.assertEqual(dup, [], "names with more than one sidecar line: %s" % lines)
        self.assertEqual(temporaries(archive), [], "temporaries left")
        self.assertEqual(sorted(names), archive_family(archive),
                         "sidecar names != archive files on disk")
        if shutil.which("sha256sum"):
            r = subprocess.run(["sha256sum", "-c", "--strict", base + ".sha256"], cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(r.returncode, 0, "sha256sum -c: %s" % r.stdout.decode(errors="replace"))
        return lines

    def crash_sweep(self, prepare, act, again, afterwards=None):
        """Crash `act` before each of its filesystem-changing steps, in a fresh setup each
        time; return the steps.

        prepare() sets up the archive's folder and the local folder and returns the (old,
        new) trees; act() is the run that crashes (a save, a split). Its steps are counted
        in a clean run first. For each crash point: a restore gives the old or the new tree
        exactly; again() (the next run after the crash; it returns the tree it should
        leave) succeeds, a restore then gives that tree and no temporaries are left;
        afterwards(), when given, checks more; and the sidecar is tidy."""
        old, new = prepare()
        with CrashAt() as counting:
            act()
        steps = counting.calls[:]
        self.assertGreaterEqual(len(steps), 3, steps)
        for n in range(len(steps) + 1):
            label = "#%d %s %s" % ((n,) + steps[n]) if n < len(steps) else "none"
            shutil.rmtree(self.drive)
            shutil.rmtree(os.path.dirname(self.local))
            prepare()
            with CrashAt(n):
                try:
                    act()
                except SimulatedCrash:
                    pass
            with self.subTest(crash_before=label, check="restore after the crash"):
                dest, r = self.restore_fresh()
                got = strip_special(snapshot(dest, dir_modes=True))
                if got not in (old, new):
                    self.fail("neither the old nor the new tree; vs old:\n%s\nvs new:\n%s"
                              % (summarize(got, old), summarize(got, new)))
            with self.subTest(crash_before=label, check="running it again"):
                self.assertRestores(again(), msg="after the run that followed the crash")
                self.assertEqual(temporaries(self.archive), [])
            if afterwards:
                with self.subTest(crash_before=label, check="afterwards"):
                    afterwards()
            with self.subTest(crash_before=label, check="sidecar tidy afterwards"):
                self.assertSidecarConsistent()
        return steps
