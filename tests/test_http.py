"""HTTP sources: Range resume after a dropped connection, sidecar at URL + ".sha256";
parallel ranged reads against ../shared/httpsim (drops, 503s, no ranges) and a server whose
file changes between ranges or that redirects."""
import email.utils
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import helpers as h
from helpers import D, F, L, ba

MEMBERS = [D("top"), F("top/a.bin", h.rand_bytes(300_000, 31)), F("top/b.txt", b"bee\n" * 100),
           L("top/link", "b.txt"), D("top/empty")]
WANT = h.expected_tree(MEMBERS, strip_top=True)


class HTTPTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.http = h.HTTPFixture()
        self.addCleanup(self.http.close)
        self.data = h.archive_bytes(MEMBERS)
        self.url = self.http.put("/assets.tar.gz", self.data)

    def archive_gets(self):
        return [r for r in self.http.requests() if r[0] == "GET" and r[1] == "/assets.tar.gz"]

    def test_plain_download_no_sidecar(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                r = self.restore(self.url, dest, engine=engine)
                self.assertEqual(r.action, "restored")
                self.assertFalse(r.verified)
                self.assertIsNone(r.checksum_source)
                self.assertEqual(r.sha256, h.sha256_bytes(self.data))
                self.assertTree(dest, WANT)
                self.assertNoStaging(dest)
        self.assertTrue(any(p == "/assets.tar.gz.sha256" for _, p, _ in self.http.requests()),
                        "the sidecar URL was not tried")

    @h.slow  # a second or more: make test-slow
    def test_dropped_connection_resumes_with_range(self):
        for sidecar in (False, True):
            for engine in h.engines():
                with self.subTest(sidecar=sidecar, engine=engine):
                    srv = self.http.server
                    with srv.lock:
                        srv.requests.clear()
                        srv.files.pop("/assets.tar.gz.sha256", None)
                    if sidecar:
                        self.http.put("/assets.tar.gz.sha256",
                                      ("%s  assets.tar.gz\n" % h.sha256_bytes(self.data)).encode())
                    srv.drop_after["/assets.tar.gz"] = 100_000
                    dest = os.path.join(self.subdir(), "_assets")
                    r = self.restore(self.url, dest, engine=engine, retry_for=20)
                    self.assertTree(dest, WANT)
                    self.assertEqual(r.sha256, h.sha256_bytes(self.data))
                    self.assertEqual(r.verified, sidecar)
                    self.assertEqual(r.checksum_source, "sidecar" if sidecar else None)
                    gets = self.archive_gets()
                    self.assertGreaterEqual(len(gets), 2, gets)
                    ranges = [rng for _, _, rng in gets[1:] if rng]
                    self.assertTrue(ranges, "no Range request after the drop: %s" % gets)
                    start = int(ranges[0].split("=")[1].split("-")[0])
                    self.assertGreater(start, 0)
                    self.assertLessEqual(start, 100_000)
                    self.assertNoStaging(dest)

    def test_sidecar_mismatch_over_http(self):
        self.http.put("/assets.tar.gz.sha256", ("%s  assets.tar.gz\n" % ("1" * 64)).encode())
        e = self.assertBAError("ChecksumMismatch", self.restore, self.url)
        self.assertIn("1" * 64, str(e))
        self.assertIn(h.sha256_bytes(self.data), str(e))
        self.assertUntouched(self.dest, None)

    def test_404_is_a_missing_source_not_a_corrupt_archive(self):
        url = self.http.base + "/missing.tar.gz"
        with self.assertRaises(ba.BootstrapError) as cm:
            self.restore(url, retry_for=0.5)
        self.assertNotIsInstance(cm.exception, ba.CorruptArchive,
                                 "a 404 is a missing source, not a damaged archive")
        self.assertUntouched(self.dest, None)

    def test_html_page_over_http(self):
        self.http.put("/page.tar.gz", b"<!DOCTYPE html><html><body>Sign in to Google Drive</body></html>\n" * 5)
        e = self.assertBAError("CorruptArchive", self.restore, self.http.base + "/page.tar.gz")
        self.assertTrue("web page" in str(e).lower() or "html" in str(e).lower(), str(e))
        self.assertUntouched(self.dest, None)

    def test_rerun_same_url_unchanged(self):
        self.restore(self.url)
        r = self.restore(self.url)
        self.assertEqual(r.action, "unchanged")
        self.assertTree(self.dest, WANT)


# ---------------------------------------------------------------- parallel ranged reads --
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("SHARED_DIR") or os.path.join(REPO, "..", "shared"))
HTTPSIM = os.path.join(SHARED, "httpsim", "httpsim.py")
# Random bytes do not compress: the archive is about 12 MB, enough for several pieces.
BIG = [D("top"), F("top/big.bin", h.rand_bytes(12_000_000, 77)), F("top/a.txt", b"alpha\n"),
       L("top/link", "a.txt")]
BIG_WANT = h.expected_tree(BIG, strip_top=True)


class HttpSim:
    """../shared/httpsim serving one folder on 127.0.0.1 (a port of its own choosing)."""

    def __init__(self, root, *options):
        self.root = root
        self.stats_path = os.path.join(root, "..", "httpsim-stats.json")
        port_file = os.path.join(root, "..", "httpsim-port")
        self.process = subprocess.Popen(
            [sys.executable, HTTPSIM, root, "--port", "0", "--port-file", port_file,
             "--stats", self.stats_path, "--latency-ms", "0", "--per-conn-mbps", "0",
             "--total-mbps", "0"] + list(options),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not h.wait_for(lambda: os.path.exists(port_file), timeout=20):
            self.close()
            raise RuntimeError("httpsim did not start")
        with open(port_file) as f:
            self.base = "http://127.0.0.1:%s" % f.read().strip()

    def stats(self):
        time.sleep(0.3)  # httpsim rewrites its counters every 0.1 s
        with open(self.stats_path) as f:
            return json.load(f)

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class ParallelRangeTests(h.BATestCase):

    def serve(self, *options, sidecar=True):
        if not os.path.exists(HTTPSIM):
            self.fail("httpsim not found at %s: shared/ belongs beside the repository "
                      "(or set SHARED_DIR)" % HTTPSIM)
        root = os.path.join(self.subdir("www-"), "root")
        self.data = h.archive_bytes(BIG, comp="tar")
        h.write_bytes(os.path.join(root, "assets.tar"), self.data)
        if sidecar:
            h.write_bytes(os.path.join(root, "assets.tar.sha256"),
                          ("%s  assets.tar\n" % h.sha256_bytes(self.data)).encode())
        sim = HttpSim(root, *options)
        self.addCleanup(sim.close)
        return sim, sim.base + "/assets.tar"

    def check_restored(self, r, dest):
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.verified)
        self.assertEqual(r.sha256, h.sha256_bytes(self.data))
        self.assertTree(dest, BIG_WANT)
        self.assertNoStaging(dest)

    def test_pieces_in_order_exactly(self):
        sim, url = self.serve()
        for connections in (16, 4):
            with self.subTest(connections=connections):
                dest = os.path.join(self.subdir(), "_assets")
                self.check_restored(self.restore(url, dest, connections=connections), dest)
        stats = sim.stats()
        # 16 connections cut 12 MB into 2 MiB pieces, 4 into 8 MiB ones
        self.assertGreaterEqual(stats["ranged"], 6 + 2, stats)
        self.assertLessEqual(stats["bytes_sent"], 2 * len(self.data) + 10_000, stats)

    def test_one_connection_is_one_stream(self):
        sim, url = self.serve()
        self.check_restored(self.restore(url, self.dest, connections=1), self.dest)
        stats = sim.stats()
        self.assertEqual(stats["gets"], 3, stats)  # probe, sidecar, the stream

    def test_dropped_connections_resume_their_range(self):
        sim, url = self.serve("--drop-after", "300K", "--drop-every", "3")
        r = self.restore(url, self.dest, connections=8, retry_for=20)
        self.check_restored(r, self.dest)
        self.assertGreater(sim.stats()["drops"], 0)

    @h.slow
    def test_503_with_retry_after(self):
        sim, url = self.serve("--fail-first", "2")
        r = self.restore(url, self.dest, connections=8, retry_for=20)
        self.check_restored(r, self.dest)
        self.assertEqual(sim.stats()["failed_503"], 2)

    def test_server_without_ranges_falls_back_to_one_stream(self):
        sim, url = self.serve("--no-range", "--drop-after", "5M", "--drop-every", "3")
        r = self.restore(url, self.dest, connections=8, retry_for=20)
        self.check_restored(r, self.dest)
        stats = sim.stats()
        self.assertEqual(stats["ranged"], 0, stats)
        self.assertGreater(stats["drops"], 0, stats)

    def test_connections_flag(self):
        sim, url = self.serve()
        rc, out, err = self.run_main(["--archive", url, "--dest", self.dest, "--quiet",
                                      "--connections", "0"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--connections", err)
        self.assertUntouched(self.dest, None)
        rc, out, err = self.run_main(["--archive", url, "--dest", self.dest, "--quiet",
                                      "--connections", "3"])
        self.assertEqual(rc, 0, err)
        self.assertTree(self.dest, BIG_WANT)


class _ChangingHandler(BaseHTTPRequestHandler):
    """/file: version 0 of the data until `switch_after` GETs were answered, then version 1,
    each with its own validator. /go/<name>: a redirect to /cdn/<name>?sig=1, which alone
    serves the file (as a presigned URL does)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv = self.server
        path, _, query = self.path.partition("?")
        with srv.lock:
            srv.log.append((path, self.headers.get("Range")))
        if path.startswith("/go/"):
            self.send_response(302)
            self.send_header("Location", "/cdn/%s?sig=1" % path[len("/go/"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = path.rsplit("/", 1)[-1]
        if not (path.startswith("/cdn/") and query == "sig=1") and path != "/file":
            return self.answer(403, b"signature required\n", {})
        if name.endswith(".sha256"):
            return self.answer(200, srv.sidecar, {})
        with srv.lock:
            srv.gets += 1
            version = 0 if srv.gets <= srv.switch_after else 1
        data = srv.versions[version]
        validator = {"ETag": '"v%d"' % version} if srv.etags else \
            {"Last-Modified": email.utils.formatdate(1_600_000_000 + version, usegmt=True)}
        start, end, status = 0, len(data) - 1, 200
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if rng and (not if_range or not srv.honour_if_range or if_range in validator.values()):
            first, last = rng.split("=")[1].split("-")
            start, status = int(first), 206
            end = min(int(last), end) if last else end
            validator["Content-Range"] = "bytes %d-%d/%d" % (start, end, len(data))
        self.answer(status, data[start:end + 1], validator)

    def answer(self, status, body, headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client saw the change and hung up
            self.close_connection = True


class ChangingServerTests(h.BATestCase):

    def serve(self, switch_after, etags=True, honour_if_range=True):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ChangingHandler)
        server.daemon_threads = True
        server.lock, server.log, server.gets = threading.Lock(), [], 0
        self.data = h.archive_bytes(BIG, comp="tar")
        other = h.archive_bytes(BIG[:2] + [F("top/a.txt", b"omega\n")], comp="tar")
        server.versions = (self.data, other)
        server.sidecar = ("%s  assets.tar\n" % h.sha256_bytes(self.data)).encode()
        server.switch_after, server.etags = switch_after, etags
        server.honour_if_range = honour_if_range
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.server = server
        return "http://127.0.0.1:%d" % server.server_address[1]

    def test_version_change_between_ranges_fails_cleanly(self):
        for etags in (True, False):
            for honour_if_range in (True, False):
                with self.subTest(etags=etags, honour_if_range=honour_if_range):
                    base = self.serve(2, etags=etags, honour_if_range=honour_if_range)
                    dest = os.path.join(self.subdir(), "_assets")
                    e = self.assertBAError("CorruptArchive", self.restore, base + "/file",
                                           dest, connections=4, sha256=h.sha256_bytes(self.data))
                    self.assertIn("changed on the server", str(e))
                    self.assertIn("Run this again", str(e))
                    self.assertUntouched(dest, None)

    def test_redirect_resolved_once(self):
        base = self.serve(10 ** 6)
        r = self.restore(base + "/go/assets.tar", self.dest, connections=4)
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.verified, "the sidecar behind the redirect was not read")
        self.assertEqual(r.sha256, h.sha256_bytes(self.data))
        self.assertTree(self.dest, BIG_WANT)
        with self.server.lock:
            log = list(self.server.log)
        self.assertEqual([p for p, _ in log].count("/go/assets.tar"), 1, log)
        self.assertGreaterEqual([p for p, _ in log].count("/cdn/assets.tar"), 3, log)


class RetryPolicyTests(h.BATestCase):
    """One answer, for https, S3 and GCS alike, to "may asking again help?"."""

    def test_which_http_statuses_are_worth_retrying(self):
        codes = (400, 401, 403, 404, 408, 410, 412, 416, 429, 500, 502, 503, 504)
        self.assertEqual([code for code in codes if ba._worth_retrying(code)],
                         [408, 429, 500, 502, 503, 504])
