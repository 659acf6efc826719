"""Issue 18, first slice: restore --only GLOB. With an index and a source read by ranges only
the matching files' byte ranges (coalesced) and the index are read, counted here at the
source (every chunk the module reads from the archive file, or the bytes an HTTP server
sent); without them one pass skips the rest. The folder remembers what it holds (marker,
status); a later --only adds to it, reading only the new files; a plain restore completes
it; the same --only again reads nothing. Saves from a partial folder never drop a file it
did not restore: a layer holds only real changes, a full save carries them over
(test_partial_save.py).
"""
import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
import unittest
from unittest import mock

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import URL_PATH, ProgressiveCase


class ReadCounter:
    """Counts every byte the module reads from archive files on a path (index included),
    and the calls; forbid=True makes any read an error."""

    def __init__(self, forbid=False):
        self.bytes = self.calls = 0
        self.forbid = forbid

    def __enter__(self):
        self.original = ba._PathSource.chunks
        counter = self

        def chunks(source, offset=0, end=None):
            counter.calls += 1
            if counter.forbid:
                raise AssertionError("the archive's data was read (offset %d)" % offset)
            for data in counter.original(source, offset, end):
                counter.bytes += len(data)
                yield data
        ba._PathSource.chunks = chunks
        return self

    def __exit__(self, *exc):
        ba._PathSource.chunks = self.original


class OnlyCase(ProgressiveCase):

    def make_big(self, fmt="tar"):
        """make_tree with 4 weight shards of 3 MB (the subset measured), saved as fmt."""
        self.files = pt.make_tree(self.local, weights=(4, 3_000_000))
        self.archive = os.path.join(self.drive, "assets.tar" + (".gz" if fmt == "gz" else ""))
        self.saved = self.save(format=fmt)
        return self.saved

    def index_bytes(self):
        """The index as stored: from its offset to the archive's end."""
        return len(pt.stored(self.archive)) - int(pt.index_lines(self.archive)[0][2])

    def stored_bytes(self, prefix):
        """The bytes the files under prefix take in the archive's tar (headers, padding)."""
        total = 0
        for m in pt.members(self.archive):
            if m.isfile() and pt.rel(m.name).startswith(prefix):
                total += 512 + m.size + (-m.size) % 512
        return total

    def held(self, dest):
        return {rel for rel in pt.tree_files(dest)}

    def want_files(self, prefix):
        return {k for k in self.files if k.startswith(prefix)}

    def only(self, dest, *patterns, **kw):
        kw.setdefault("drive_mount", "")
        return self.restore(self.archive, dest, only=list(patterns), **kw)


class ByRangesTests(OnlyCase):

    def check_weights(self, fmt):
        self.make_big(fmt)
        with ReadCounter() as counted:
            r = self.only(self.dest, "weights/**")
        self.assertEqual(self.held(self.dest), self.want_files("weights/"))
        for rel in self.want_files("weights/"):
            with open(os.path.join(self.dest, rel), "rb") as f:
                self.assertEqual(f.read(), self.files[rel])
        self.assertTrue(r.progressive)
        self.assertIn("by ranges", r.summary())
        limit = 1.05 * self.stored_bytes("weights/") + self.index_bytes()
        self.assertLessEqual(counted.bytes, limit, "%d bytes read, limit %d (%s)"
                             % (counted.bytes, limit, r.summary()))
        return counted.bytes / self.stored_bytes("weights/")

    def test_weights_plain_tar_reads_only_their_bytes(self):
        self.check_weights("tar")

    def test_weights_gz_reads_only_their_bytes(self):
        self.check_weights("gz")

    def test_weights_zst_read_from_the_frame_before_them(self):
        """A .tar.zst has restart points too: a new zstd frame that decompresses alone (a
        `zstd` process of its own where Python has no zstd module); GNU tar reads the frames
        as one stream."""
        if ba._zstd_module is None and not shutil.which("zstd"):
            self.skipTest("neither Python's zstd module nor a zstd program")
        with mock.patch.object(ba, "RESTART_EVERY_ZST", 1 << 20):
            self.files = pt.make_tree(self.local, weights=(4, 3_000_000))
            self.archive = os.path.join(self.drive, "assets.tar.zst")
            self.saved = self.save(format="zst")
        self.assertIsNotNone(self.saved.index_sha256, self.saved.summary())
        self.assertGreater(pt.stored(self.archive).count(b"\x28\xb5\x2f\xfd"), 4)
        with ReadCounter() as counted:
            r = self.only(self.dest, "weights/**")
        self.assertTrue(r.progressive, r.summary())
        for rel in self.want_files("weights/"):
            with open(os.path.join(self.dest, rel), "rb") as f:
                self.assertEqual(f.read(), self.files[rel])
        weights = sum(512 + len(data) + (-len(data)) % 512 for rel, data in self.files.items()
                      if rel.startswith("weights/"))  # random: zstd stores them as they are
        limit = 1.05 * weights + (2 << 20) + self.index_bytes()
        self.assertLessEqual(counted.bytes, limit)
        if shutil.which("tar") and shutil.which("zstd"):
            out = os.path.join(self.tmp, "gnu")
            os.makedirs(out)
            run = subprocess.run(["tar", "--zstd", "-xf", self.archive, "-C", out],
                                 capture_output=True)
            self.assertEqual((run.returncode, run.stderr), (0, b""))

    def test_a_folder_spread_through_the_archive(self):
        self.make_big("tar")
        with ReadCounter() as counted:
            self.only(self.dest, "images/class_02/", "config.yaml")
        self.assertEqual(self.held(self.dest),
                         self.want_files("images/class_02/") | {"config.yaml"})
        wanted = self.stored_bytes("images/class_02/") + self.stored_bytes("config.yaml")
        self.assertLessEqual(counted.bytes, 1.10 * wanted + self.index_bytes())

    def test_segments_are_coalesced_and_bounded(self):
        self.make_big("gz")
        src = ba._PathSource(self.archive, 2.0, "")
        with open(self.archive + ".sha256", "rb") as f:
            raw = f.read()
        lines = ba._index_lines(raw, ba._expected_hashes(
            ba._sidecar_entries(raw, "x"), src.name), None)
        _, index, fmt = ba._vouched_index(src, lines)
        wanted = [e for e in index.members if e.kind == "f" and e.path.startswith("weights/")]
        segments = ba._segments(index, fmt, wanted)
        self.assertEqual(len(segments), 1, "contiguous members are one read")
        _, start, stop, members = segments[0]
        self.assertEqual(len(members), len(wanted))
        self.assertIsNotNone(stop)
        self.assertLessEqual(stop - start, 1.05 * self.stored_bytes("weights/") + (2 << 20))
        apart = [e for e in index.members if e.kind == "f"][::40]
        self.assertGreater(len(ba._segments(index, fmt, apart)), 1)

    def test_over_http_by_ranges(self):
        self.make_big("tar")
        url = self.slow_http()
        self.full_speed()
        before = self.http.sent(URL_PATH)
        r = self.restore(url, self.dest, only=["weights/**"], drive_mount="")
        read = self.http.sent(URL_PATH) - before
        self.assertEqual(self.held(self.dest), self.want_files("weights/"))
        self.assertIn("by ranges", r.summary())
        self.assertLessEqual(read, 1.05 * self.stored_bytes("weights/") + self.index_bytes())

    def test_the_progress_line_counts_the_ranges_not_the_archive(self):
        self.make_big("tar")
        totals = []
        update = ba._Progress.update

        def recorded(progress, done, files, **kw):
            totals.append(progress.total)
            return update(progress, done, files, **kw)
        with mock.patch.object(ba._Progress, "update", recorded):
            self.only(self.dest, "weights/**")
        self.assertTrue(totals)
        self.assertEqual(set(totals), {self.stored_bytes("weights/")})

    @unittest.skipUnless(hasattr(os, "posix_fadvise"), "posix_fadvise is Linux's")
    def test_a_bounded_read_asks_the_kernel_not_to_read_ahead(self):
        self.make("tar")
        src = ba._PathSource(self.archive, 2.0, "")
        with mock.patch.object(os, "posix_fadvise", wraps=os.posix_fadvise) as advise:
            self.assertEqual(b"".join(src.chunks(1024, 4096)),
                             pt.stored(self.archive)[1024:4096])
            bounded = [c.args[3] for c in advise.call_args_list]
            advise.reset_mock()
            b"".join(src.chunks(0))
            whole = [c.args[3] for c in advise.call_args_list]
        self.assertEqual(bounded, [os.POSIX_FADV_RANDOM])
        self.assertEqual(whole, [os.POSIX_FADV_SEQUENTIAL])

    def test_spread_files_over_http_are_fetched_several_at_once(self):
        self.make_big("tar")
        url = self.slow_http()
        self.full_speed()
        state = {"now": 0, "most": 0}
        lock = threading.Lock()
        fetch = ba._RangedDownload._fetch

        def counted(download, client, piece):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            try:
                time.sleep(0.05)  # a round trip, so the fetches overlap
                return fetch(download, client, piece)
            finally:
                with lock:
                    state["now"] -= 1
        before = self.http.sent(URL_PATH)
        with mock.patch.object(ba._RangedDownload, "_fetch", counted):
            r = self.restore(url, self.dest, only=["images/class_02/", "images/class_00/"],
                             drive_mount="", connections=4)
        read = self.http.sent(URL_PATH) - before
        want = self.want_files("images/class_02/") | self.want_files("images/class_00/")
        self.assertEqual(self.held(self.dest), want)
        for rel in want:
            with open(os.path.join(self.dest, rel), "rb") as f:
                self.assertEqual(f.read(), self.files[rel])
        self.assertIn("by ranges", r.summary())
        self.assertGreater(state["most"], 1, "segments were fetched one after another")
        self.assertLessEqual(state["most"], 4)
        wanted = self.stored_bytes("images/class_02/") + self.stored_bytes("images/class_00/")
        self.assertLessEqual(read, 1.10 * wanted + self.index_bytes())

    def test_spans_come_in_order_whatever_the_connections(self):
        data = os.urandom(3 << 20)
        url = self.slow_http(data=data, sidecar=False)
        self.full_speed()
        spans = [(10, 20), (20, 5000), (70_000, 70_001), (100_000, 100_000 + (2 << 20) + 7),
                 (len(data) - 3, len(data))]
        want = b"".join(data[a:b] for a, b in spans)
        for connections in (1, 2, 8):
            src = ba._HttpSource(url, 2.0, connections)
            chunks = list(src.spans(spans))
            self.assertEqual(b"".join(chunks), want, "%d connection(s)" % connections)
            bounds, at = {0}, 0
            for a, b in spans:
                at += b - a
                bounds.add(at)
            at = 0
            for chunk in chunks:  # no chunk straddles two spans
                self.assertFalse(any(at < x < at + len(chunk) for x in bounds))
                at += len(chunk)

    def test_links_only_when_named_and_their_target_is_held(self):
        self.make("tar")
        self.only(self.dest, "config_link.yaml", "weights/**")
        self.assertFalse(os.path.lexists(os.path.join(self.dest, "config_link.yaml")))
        dest = self.out()
        self.only(dest, "config_link.yaml", "config.yaml")
        self.assertEqual(os.readlink(os.path.join(dest, "config_link.yaml")), "config.yaml")

    def test_a_pattern_that_matches_nothing(self):
        self.make("tar")
        e = self.assertBAError("UsageError", self.only, self.dest, "nothing/**")
        self.assertIn("no file of", str(e))
        self.assertFalse(os.path.exists(self.dest))


class OnePassTests(OnlyCase):

    def test_without_an_index_one_pass_skips_the_rest(self):
        self.files = pt.make_tree(self.local, links=False)
        self.archive = os.path.join(self.drive, "other.tar")
        os.makedirs(self.drive, exist_ok=True)
        with tarfile.open(self.archive, "w") as tar:
            tar.add(self.local, arcname="_assets")
        written = []
        original = ba._PythonWriter.add

        def add(writer, member, pieces):
            written.append("/".join(member.parts))
            return original(writer, member, pieces)
        with mock_attr(ba._PythonWriter, "add", add):
            r = self.only(self.dest, "weights/**", "config.yaml")
        self.assertEqual(self.held(self.dest), self.want_files("weights/") | {"config.yaml"})
        self.assertFalse([p for p in written if "class_" in p and p.endswith(".jpg")],
                         "skipped members are not written")
        self.assertFalse(r.progressive)
        self.assertIn("one pass that skipped the rest", r.summary())
        self.assertIn("no .sha256", r.summary())
        marker = pt.read_marker(self.dest)
        self.assertEqual(marker["only"]["patterns"], ["weights/**", "config.yaml"])
        self.assertEqual(marker["only"]["files"], len(self.files))
        self.assertFalse(os.path.exists(os.path.join(self.dest, "images")))


@contextlib.contextmanager
def mock_attr(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


class RemembersTests(OnlyCase):

    def test_marker_and_status_say_what_it_holds(self):
        self.make_big("tar")
        self.only(self.dest, "weights/**", "config.yaml")
        only = pt.read_marker(self.dest)["only"]
        self.assertEqual(only["patterns"], ["weights/**", "config.yaml"])
        self.assertEqual(set(only["held"]), self.want_files("weights/") | {"config.yaml"})
        self.assertEqual(only["files"], len(self.files))
        line = ba.status(self.archive, self.dest, drive_mount="")[-1]
        self.assertIn("weights/** and config.yaml: 5 of %d files" % len(self.files), line)
        self.assertIn("no local changes", line, "unrestored files are not deletions")

    def test_same_only_again_reads_nothing(self):
        self.make_big("gz")
        self.only(self.dest, "weights/**")
        with ReadCounter(forbid=True):
            r = self.only(self.dest, "weights/**")
        self.assertEqual(r.action, "unchanged")
        self.assertLess(r.seconds, 0.5)

    def test_a_later_only_adds_reading_only_the_new_files(self):
        self.make_big("tar")
        self.only(self.dest, "weights/**")
        before = {rel: os.stat(os.path.join(self.dest, rel)).st_ino
                  for rel in self.want_files("weights/")}
        with ReadCounter() as counted:
            r = self.only(self.dest, "images/class_01/")
        self.assertEqual(self.held(self.dest),
                         self.want_files("weights/") | self.want_files("images/class_01/"))
        self.assertEqual(r.resumed, len(before))
        self.assertEqual(before, {rel: os.stat(os.path.join(self.dest, rel)).st_ino
                                  for rel in before}, "files held are kept, not rewritten")
        limit = 1.10 * self.stored_bytes("images/class_01/") + self.index_bytes()
        self.assertLessEqual(counted.bytes, limit)
        self.assertEqual(pt.read_marker(self.dest)["only"]["patterns"],
                         ["weights/**", "images/class_01/"])

    def test_a_plain_restore_completes_it(self):
        self.make("gz")
        self.only(self.dest, "tokenizer/")
        r = self.restore(self.archive, self.dest, drive_mount="")
        self.assertEqual(r.action, "restored")
        self.assertComplete(self.dest)
        self.assertNotIn("only", pt.read_marker(self.dest))
        self.assertEqual(self.restore(self.archive, self.dest, drive_mount="").action,
                         "unchanged")

    def test_local_changes_are_judged_on_the_held_files_only(self):
        self.make("tar")
        self.only(self.dest, "config.yaml")
        self.assertEqual(ba.status(self.archive, self.dest, drive_mount="")[-1].count(
            "deleted"), 0)
        with open(os.path.join(self.dest, "config.yaml"), "ab") as f:
            f.write(b"mine: 1\n")
        e = self.assertBAError("DestinationChanged", self.only, self.dest, "tokenizer/")
        self.assertIn("modified config.yaml", str(e))
        self.assertNotIn("deleted tokenizer", str(e))
        self.assertNotIn("deleted images", str(e))
        r = self.only(self.dest, "tokenizer/", force=True)
        self.assertTrue(r.moved_aside)
        self.assertEqual(self.held(self.dest), self.want_files("tokenizer/"))

    def test_interrupted_only_resumes_with_the_same_command(self):
        self.make_big("tar")
        calls = []
        original = ba._Installer.file

        def file(installer, entry, pieces):
            if len(calls) == 2:
                raise KeyboardInterrupt
            calls.append(entry.path)
            return original(installer, entry, pieces)
        with mock_attr(ba._Installer, "file", file):
            with self.assertRaises(KeyboardInterrupt):
                self.only(self.dest, "weights/**")
        self.assertEqual(pt.read_marker(self.dest)["state"], "incomplete")
        r = self.only(self.dest, "weights/**")
        self.assertEqual(r.resumed, 2)
        self.assertEqual(self.held(self.dest), self.want_files("weights/"))
        self.assertEqual(pt.read_marker(self.dest)["only"]["patterns"], ["weights/**"])


class SaveTests(OnlyCase):

    def test_a_layer_records_only_real_changes(self):
        self.make("tar")
        self.only(self.dest, "weights/**", "config.yaml")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), b"new\n")
        os.remove(os.path.join(self.dest, "config.yaml"))
        s = self.save(self.dest, format="tar")
        self.assertEqual(s.action, "layer")
        self.assertEqual(s.files, 1)
        self.assertEqual(s.deleted, 1, "the one file the user deleted; not the unrestored")
        full = self.out()
        self.restore(self.archive, full, drive_mount="")
        got = pt.tree_files(full)
        want = dict(self.files, **{"notes.txt": b"new\n"})
        del want["config.yaml"]
        self.assertEqual(set(got), set(want))
        self.assertEqual(pt.read_marker(self.dest)["only"]["held"],
                         sorted(self.want_files("weights/") | {"notes.txt"}))

    def test_a_full_save_keeps_what_it_did_not_restore(self):
        """A full save carries the files the folder lacks over from its archive (the cases
        are in test_partial_save.py)."""
        self.make("tar")
        self.only(self.dest, "weights/**")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), b"new\n")
        s = self.save(self.dest, incremental="never")
        self.assertEqual(s.action, "saved")
        self.assertEqual(s.carried, len(self.files) - len(self.want_files("weights/")))
        got = pt.tree_files(self.restore_fresh()[0])
        self.assertEqual(got, dict(self.files, **{"notes.txt": b"new\n"}))


class CommandLineTests(OnlyCase):

    def test_only_is_repeatable(self):
        self.make("tar")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = ba.main(["restore", "--archive", self.archive, "--dest", self.dest,
                            "--drive-mount", "", "--only", "weights/**", "--only",
                            "config.yaml", "-q"])
        self.assertEqual(code, 0)
        self.assertEqual(self.held(self.dest), self.want_files("weights/") | {"config.yaml"})

    def test_config_block_only(self):
        self.make("tar")
        with mock_attr(ba, "ONLY", ["tokenizer/"]):
            self.restore(self.archive, self.dest, drive_mount="")
        self.assertEqual(self.held(self.dest), self.want_files("tokenizer/"))


if __name__ == "__main__":
    unittest.main()
