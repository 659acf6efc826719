"""HTTP sources: Range resume after a dropped connection, sidecar at URL + ".sha256"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402
from helpers import D, F, L, ba  # noqa: E402

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

    def test_404_archive(self):
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
