"""The base class of the unit tests of the index and the progressive restore (test_index.py,
test_progressive.py, test_background.py, test_demand.py): a saved small mixed tree
(progressive_tools.make_tree) on plain temp folders, restores into fresh destinations, and a
slow HTTP source (tests/helpers.HTTPFixture trickling) for what must be observed while a
restore runs."""
import os
import time

import helpers as h
import progressive_tools as pt
from helpers import ba

URL_PATH = "/assets.tar"


class SlowReads(h.FlakyReads):
    """Every read call of `path` (open()/os.read/pread, as FlakyReads sees them) first sleeps
    `delay` seconds: a slow local source for this process's restores (the module reads 1 MiB
    at a time). Set .delay = 0 to let it go at full speed."""

    def __init__(self, path, delay):
        super().__init__(path, fail_calls=())
        self.delay = delay

    def check(self):
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)


class ProgressiveCase(h.SaveTestCase):
    """self.local holds make_tree's tree (self.files: {relpath: bytes}) once make() ran."""

    def make(self, fmt="tar", links=True, **kw):
        """Build the tree, save it as `fmt`; returns the SaveResult."""
        self.files = pt.make_tree(self.local, links=links)
        self.archive = os.path.join(self.drive, "assets.tar" + (".gz" if fmt == "gz" else ""))
        kw.setdefault("format", fmt)
        self.saved = self.save(**kw)
        return self.saved

    def want(self):
        return h.saved_view(self.local)

    def assertComplete(self, dest, msg=""):
        got = h.strip_special(h.snapshot(dest, dir_modes=True))
        want = self.want()
        if got != want:
            self.fail("restored tree differs %s:\n%s" % (msg, h.summarize(got, want)))

    def assertOnlyVerified(self, dest, msg=""):
        """Every regular file visible under dest is one of the source's, byte for byte;
        nothing else but folders, the marker and (finished) links is there."""
        for relpath in sorted(pt.visible_entries(dest)):
            path = os.path.join(dest, relpath)
            if relpath in (pt.MARKER + ".tmp", ".bootstrap_assets.installed"):
                continue
            if os.path.islink(path) or os.path.isdir(path):
                continue
            self.assertIn(relpath, self.files, "%s: %s is not a file of the source %s"
                          % (dest, relpath, msg))
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(pt.sha256(data), pt.sha256(self.files[relpath]),
                             "%s is visible with wrong content %s" % (relpath, msg))

    def file_order(self, archive=None):
        """The archive's regular files, relative to the folder, in archive order."""
        return [pt.rel(m.name) for m in pt.members(archive or self.archive) if m.isfile()]

    def slow_http(self, data=None, chunk=16384, delay=0.02, sidecar=True):
        """Serve the saved archive (and its sidecar) over HTTP at ~800 KB/s; returns its URL.
        self.http.server.trickle.pop(URL_PATH) lets it go at full speed."""
        self.http = h.HTTPFixture()
        self.addCleanup(self.http.close)
        url = self.http.put(URL_PATH, data if data is not None else pt.stored(self.archive))
        if sidecar:
            self.http.put(URL_PATH + ".sha256", pt.sidecar_text(self.archive).replace(
                os.path.basename(self.archive), os.path.basename(URL_PATH)).encode())
        self.http.server.trickle[URL_PATH] = (chunk, delay)
        return url

    def slow_local(self, delay=0.4):
        """self.archive, read slowly by this process (SlowReads) until full_speed()."""
        self.slow = SlowReads(self.archive, delay)
        self.slow.__enter__()
        self.addCleanup(self.slow.__exit__, None, None, None)
        return self.archive

    def full_speed(self):
        if getattr(self, "slow", None) is not None:
            self.slow.delay = 0
        if getattr(self, "http", None) is not None:
            self.http.server.trickle.pop(URL_PATH, None)

    def background(self, archive, dest=None, **kw):
        kw.setdefault("quiet", True)
        kw.setdefault("retry_for", 5.0)
        kw.setdefault("lock_timeout", 5.0)
        kw.setdefault("drive_mount", "")
        t0 = time.monotonic()
        job = ba.restore(archive, dest or self.dest, background=True, **kw)
        self.started_in = time.monotonic() - t0
        self.addCleanup(self._end_job, job)
        return job

    def _end_job(self, job):
        """Never leave a restore thread running into the next test."""
        self.full_speed()
        try:
            job.result(timeout=60)
        except Exception:
            pass

    def foreground_error(self, archive, dest, **kw):
        """The exception a foreground restore raises (None if it succeeds)."""
        kw.setdefault("drive_mount", "")
        try:
            self.restore(archive, dest, **kw)
        except ba.BootstrapError as exc:
            return exc
        return None
