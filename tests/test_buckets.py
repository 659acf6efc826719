"""s3:// and gs:// without an emulator: where credentials come from, and the errors for
none, for a refusal (AccessDenied, exit 12) and for a missing key, against a tiny server on
127.0.0.1 that answers as the store does; and the pure logic of layers in a bucket (which
objects are a base's layers, which go with a rotated-out base, when a save compacts)."""
import os
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import helpers as h
from helpers import ba

DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
          b'<Message>Access Denied</Message></Error>')
MISSING = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
LISTING = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Prefix>p/'
           b'</Prefix><Contents><Key>p/assets.tar.gz</Key></Contents></ListBucketResult>')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        srv = self.server
        with srv.lock:
            srv.seen.append((self.path, self.headers.get("Authorization", "")))
        if srv.deny:
            status, body = 403, DENIED
        elif "list-type=2" in self.path:
            status, body = 200, LISTING
        else:
            status, body = 404, MISSING
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class S3SettingsTests(h.BATestCase):

    def setUp(self):
        super().setUp()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.lock, self.server.seen, self.server.deny = threading.Lock(), [], False
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        for name in list(os.environ):
            if name.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR")):
                del os.environ[name]
        os.environ["HOME"] = self.tmp  # no ~/.aws of the machine's
        os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:%d" % self.server.server_address[1]

    def run_restore(self, url="s3://bkt/p/assets.tar"):
        return self.run_main(["--archive", url, "--dest", self.dest, "--quiet",
                              "--retry-for", "1"])

    def test_no_credentials(self):
        rc, out, err = self.run_restore()
        self.assertEqual(rc, 2, err)
        self.assertIn("No AWS credentials", err)
        self.assertIn("AWS_ACCESS_KEY_ID", err)
        self.assertEqual(self.server.seen, [], "a request went out without credentials")
        self.assertUntouched(self.dest, None)

    def test_credentials_file_and_profile(self):
        folder = os.path.join(self.tmp, ".aws")
        os.makedirs(folder)
        h.write_bytes(os.path.join(folder, "credentials"),
                      b"[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"
                      b"[team]\naws_access_key_id = AKIDTEAM\naws_secret_access_key = t\n")
        h.write_bytes(os.path.join(folder, "config"), b"[profile team]\nregion = eu-west-3\n")
        os.environ["AWS_PROFILE"] = "team"
        rc, out, err = self.run_restore()
        self.assertEqual(rc, 3, err)
        authorization = self.server.seen[0][1]
        self.assertIn("Credential=AKIDTEAM/", authorization)
        self.assertIn("/eu-west-3/s3/aws4_request", authorization)

    def test_missing_key_lists_the_folder(self):
        os.environ.update(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="secret")
        rc, out, err = self.run_restore()
        self.assertEqual(rc, 3, err)
        self.assertIn("s3://bkt/p/assets.tar does not exist", err)
        self.assertIn("Did you mean s3://bkt/p/assets.tar.gz?", err)
        self.assertUntouched(self.dest, None)

    def test_access_denied(self):
        os.environ.update(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="secret",
                          AWS_SESSION_TOKEN="token")
        self.server.deny = True
        rc, out, err = self.run_restore()
        self.assertEqual(rc, 12, err)
        self.assertIn("refused access to s3://bkt/p/assets.tar (AccessDenied", err)
        self.assertIn("AWS_ACCESS_KEY_ID", err)
        self.assertUntouched(self.dest, None)
        h.write_bytes(os.path.join(self.src_dir, "a.txt"), b"a\n")
        rc, out, err = self.run_main(["save", "--archive", "s3://bkt/p/assets.tar", "--dest",
                                      self.src_dir, "--quiet", "--retry-for", "1"])
        self.assertEqual(rc, 12, err)

    def test_not_an_object_address(self):
        os.environ.update(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="secret")
        for url in ("s3://bkt/", "s3://ab/x.tar", "s3://bkt/folder/"):
            with self.subTest(url=url):
                rc, out, err = self.run_restore(url)
                self.assertEqual(rc, 2, err)
                self.assertIn("s3://BUCKET/KEY", err)

    def test_gcs_no_credentials(self):
        os.environ["PATH"] = self.tmp  # no gcloud
        rc, out, err = self.run_restore("gs://bkt/p/assets.tar")
        self.assertEqual(rc, 2, err)
        self.assertIn("auth.authenticate_user()", err)
        self.assertIn("GOOGLE_OAUTH_ACCESS_TOKEN", err)
        self.assertUntouched(self.dest, None)

    def test_gcs_access_denied(self):
        os.environ["STORAGE_EMULATOR_HOST"] = os.environ.pop("AWS_ENDPOINT_URL")
        os.environ["GOOGLE_OAUTH_ACCESS_TOKEN"] = "ya29.token"
        self.server.deny = True
        rc, out, err = self.run_restore("gs://bkt/p/assets.tar")
        self.assertEqual(rc, 12, err)
        self.assertIn("refused access to gs://bkt/p/assets.tar", err)
        self.assertEqual(self.server.seen[0][1], "Bearer ya29.token")
        self.assertUntouched(self.dest, None)


class _ListedStore:
    """What _bucket_layers asks of a store: a listing and the objects' sizes."""

    def __init__(self, key, objects):
        self.key, self.objects = key, objects

    def keys(self, prefix):
        return sorted(k for k in self.objects if k.startswith(prefix))

    def head(self, key):
        size = self.objects.get(key)
        return None if size is None else {"size": size, "validator": "v-" + key}


class BucketLayerLogicTests(unittest.TestCase):
    BASE = "a" * 64
    OLD = "b" * 64

    def test_layer_names_stop_at_the_first_gap(self):
        prefix = "assets.tar.gz.aaaa.layer-"
        names = [prefix + "2", prefix + "1", prefix + "4", prefix + "3.tmp-9-ff", prefix + "x",
                 "assets.tar.gz", "assets.tar.gz.bbbb.layer-3"]
        self.assertEqual(ba._layer_names(names, prefix), [prefix + "1", prefix + "2"])
        self.assertEqual(ba._layer_names(names[2:], prefix), [])

    def test_bucket_layers_are_those_the_sidecar_names(self):
        prefix = "p/" + ba._layer_prefix("assets.tar.gz", self.BASE)
        name = prefix.rpartition("/")[2]
        store = _ListedStore("p/assets.tar.gz", {
            "p/assets.tar.gz": 100, prefix + "1": 10, prefix + "2": 20, prefix + "3": 30,
            "p/" + ba._layer_prefix("assets.tar.gz", self.OLD) + "1": 5})
        sidecar = {"assets.tar.gz": {self.BASE}, name + "1": {"1" * 64},
                   name + "2": {"2" * 64}}
        found = ba._bucket_layers(store, self.BASE, sidecar)
        self.assertEqual([(k, v["size"]) for k, v in found],
                         [(prefix + "1", 10), (prefix + "2", 20)])  # 3: copied, not named
        del store.objects[prefix + "1"]  # named but gone: nothing after it either
        self.assertEqual(ba._bucket_layers(store, self.BASE, sidecar), [])
        self.assertEqual(ba._bucket_layers(store, self.OLD, sidecar), [])

    def test_orphan_layers_go_with_their_base_last_first(self):
        kept = ba._layer_prefix("assets.tar.gz", self.BASE)
        gone = ba._layer_prefix("assets.tar.gz", self.OLD)
        names = ["assets.tar.gz", "assets.tar.gz.1", "assets.tar.gz.sha256", kept + "1",
                 gone + "1", gone + "2", gone + "10", gone + "3.tmp-1-ab",
                 "other.tar.gz." + self.OLD[:16] + ".layer-1"]
        self.assertEqual(ba._orphan_layers("assets.tar.gz", names, [{self.BASE}, {"c" * 64}]),
                         [gone + "10", gone + "2", gone + "1"])
        self.assertEqual(ba._orphan_layers("assets.tar.gz", names, [{self.BASE}, None]), [])
        self.assertEqual(ba._orphan_layers("assets.tar.gz", names,
                                           [{self.BASE}, {self.OLD, "c" * 64}]), [])


class LayerPlanTests(h.BATestCase):
    """_layer_plan counts the layers from the chain's sizes, the same for Drive and buckets."""

    def plan(self, chain, incremental="auto"):
        entries, _ = ba._save_entries(self.src_dir)
        marker = {"archive": {"prefix": "src"},
                  "manifest": {"a.txt": self.old_a, "gone.txt": self.old_gone}}
        return ba._layer_plan(self.src_dir, entries, marker, chain, incremental)

    def setUp(self):
        super().setUp()
        h.write_bytes(os.path.join(self.src_dir, "a.txt"), b"a\n")
        h.write_bytes(os.path.join(self.src_dir, "gone.txt"), b"gone\n")
        entries, _ = ba._save_entries(self.src_dir)
        manifest = {path: entry for path, entry, _ in entries}
        self.old_a, self.old_gone = manifest["a.txt"], manifest["gone.txt"]
        os.unlink(os.path.join(self.src_dir, "gone.txt"))
        h.write_bytes(os.path.join(self.src_dir, "new.bin"), b"n" * 1000)

    def test_the_next_number_and_what_changed(self):
        plan = self.plan([{"size": 10_000}, {"size": 100}, {"size": 200}])
        self.assertEqual(plan["number"], 3)
        self.assertEqual(plan["deleted"], ["src/gone.txt"])
        self.assertEqual([e[0] for e in plan["changed"]], ["new.bin"])

    def test_compacts_when_the_layers_exceed_the_share_of_the_base(self):
        self.assertIsNotNone(self.plan([{"size": 10_000}, {"size": 3_900}]))
        self.assertIsNone(self.plan([{"size": 10_000}, {"size": 4_100}]))
        self.assertIsNotNone(self.plan([{"size": 10_000}, {"size": 4_100}], "always"))
        self.assertIsNone(self.plan([{"size": 10_000}], "never"))
