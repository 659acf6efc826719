"""Issue 17, the save side: every save writes an index after the tar's end blocks (invisible
to GNU tar, bsdtar and tarfile), a .tar.gz has independent restart points inside one gzip
member, the sidecar's `# index` line vouches for the index, the priority order (--first,
default: smallest top-level entry first), and restore's answer to an index that was tampered
with (exit 5, nothing installed) or to an archive without one (today's staging).

Everything runs in-process on plain temp folders; the archives are read here with our own
small readers (tests/progressive_tools.py) and with the real programs.
"""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import unittest
import warnings
import zipfile
from unittest import mock

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import ProgressiveCase

RESTART_EVERY = getattr(ba, "RESTART_EVERY", 1 << 20)
INDEX_LINE = re.compile(r"^# index [0-9a-f]{64} [0-9a-f]{64} \d+ \d+$")


def _bsdtar():
    path = shutil.which("bsdtar")
    if not path and os.environ.get("CI") == "true":
        raise AssertionError("bsdtar missing under CI (apt-get install libarchive-tools)")
    return path


class IndexWrittenTests(ProgressiveCase):

    def test_two_saves_of_the_same_tree_have_different_indexes(self):
        """The index names the save that wrote it: otherwise the base rotated to .1 and the
        one before it (same tree) share an index hash, and a restore of .1 mid-save could
        take the other's hash, and so the other's layers (none), for its own."""
        first = self.make("tar", incremental="never")
        second = self.save(incremental="never", format="tar")
        self.assertNotEqual(first.index_sha256, second.index_sha256)

    def test_a_restore_from_version_1_mid_save_applies_its_own_layers(self):
        """A save killed between moving the base to .1 and putting the new one in place:
        the restore takes .1 and its layer, though .2 holds the same tree."""
        self.make("tar", incremental="never")
        self.save(incremental="never", format="tar")  # .1 now holds the same tree
        with open(os.path.join(self.local, "config.yaml"), "ab") as f:
            f.write(b"layer: 1\n")
        self.assertEqual(self.save(incremental="always", format="tar").action, "layer")
        want = h.saved_view(self.local)
        with open(self.archive + ".sha256") as f:
            sidecar = f.read()
        name = os.path.basename(self.archive)
        os.replace(self.archive + ".1", self.archive + ".2")
        os.replace(self.archive, self.archive + ".1")
        hashes = [line.split()[0] for line in sidecar.splitlines()
                  if line.endswith("  " + name)]
        with open(self.archive + ".sha256", "w") as f:  # as the mid-save sidecar lists it
            f.write(sidecar + "".join(f"{d}  {name}.1\n" for d in hashes))
        r = self.restore(self.archive, self.dest, drive_mount="")
        self.assertIn(".1", r.archive)
        self.assertEqual(r.layers, 1, r.summary())
        self.assertEqual(h.strip_special(h.snapshot(self.dest, dir_modes=True)), want)

    def check_index(self, fmt):
        r = self.make(fmt)
        self.assertEqual(r.action, "saved")
        line, index = pt.index_of(self.archive)
        archive_sha, index_sha, offset, length = line
        self.assertEqual(archive_sha, r.sha256)
        self.assertEqual(len(index), length, "the index is shorter than its sidecar line says")
        self.assertEqual(pt.sha256(index), index_sha, "the index's bytes do not hash to its line")
        self.assertEqual(r.index_sha256, index_sha, "SaveResult.index_sha256")
        doc = json.loads(index.decode("utf-8"))
        self.assertIsInstance(doc, dict)
        text = index.decode("utf-8")
        for relpath, data in self.files.items():
            self.assertIn(pt.sha256(data), text, "the index lacks %s's sha256" % relpath)
            self.assertIn(relpath.split("/")[-1], text, "the index lacks %s" % relpath)
        # after the tar's two end blocks, in the same stream, and nothing after it
        raw = pt.tar_stream(pt.stored(self.archive))
        end = pt.tar_end(raw)
        self.assertEqual(raw[end - 1024:end], bytes(1024))
        at = raw.find(index, end - 1024)
        self.assertGreaterEqual(at, end, "the index is not after the end-of-archive blocks")
        self.assertEqual(raw[at + length:].strip(b"\0"), b"", "bytes after the index")
        if fmt == "tar":
            self.assertEqual(offset, at, "a plain tar's index offset is its tar offset")
        return r

    def test_a_plain_tar_save_writes_an_index_the_sidecar_vouches_for(self):
        self.check_index("tar")

    def test_a_gz_save_writes_an_index_at_a_restart_point_the_sidecar_vouches_for(self):
        self.check_index("gz")

    def test_the_sidecar_has_one_index_line_per_archive_file_and_sha256sum_still_passes(self):
        self.make("gz")
        with open(os.path.join(self.local, "config.yaml"), "ab") as f:
            f.write(b"changed: true\n")
        r2 = self.save(archive=self.archive, format="gz")
        self.assertEqual(r2.action, "layer")
        lines = [ln for ln in pt.sidecar_text(self.archive).splitlines() if ln.startswith("# index")]
        for ln in lines:
            self.assertRegex(ln, INDEX_LINE)
        files = [n for _, n in h.sidecar_lines(self.archive)]
        self.assertEqual(len(files), 2, files)  # the base and its layer
        hashes = {d for d, _ in h.sidecar_lines(self.archive)}
        self.assertEqual({ln.split()[2] for ln in lines}, hashes,
                         "one `# index` line per archive file, keyed by its sha256")
        self.assertSidecarConsistent()
        layer = os.path.join(self.drive, [n for n in files if ".layer-" in n][0])
        shutil.copy(self.archive + ".sha256", layer + ".sha256")
        line, index = pt.index_of(layer)
        self.assertEqual(pt.sha256(index), line[1], "the layer's index")
        self.assertEqual(r2.index_sha256, line[1])

    def test_parts_carry_one_index_for_the_whole(self):
        self.make("tar", part_size=1 << 20)
        self.assertGreater(self.saved.parts, 2)
        self.assertFalse(os.path.exists(self.archive))
        line, index = pt.index_of(self.archive)  # parts joined: offset in the whole
        self.assertEqual(line[0], self.saved.sha256)
        self.assertEqual(pt.sha256(index), line[1])

    def test_split_keeps_the_index(self):
        r = self.make("tar", part_size=0)
        before = pt.index_of(self.archive)
        s = ba.split(self.archive, part_size=1 << 20, quiet=True, drive_mount="", retry_for=2.0)
        self.assertEqual(s.action, "split")
        self.assertEqual(s.sha256, r.sha256)
        self.assertEqual(pt.index_of(self.archive), before)

    def test_every_regular_file_is_in_the_index_and_no_member_is_added(self):
        self.make("tar")
        names = [pt.rel(m.name) for m in pt.members(self.archive)]
        self.assertEqual(sorted(n for n in names if n), sorted(h.saved_view(self.local)))


class ReadersTests(ProgressiveCase):
    """GNU tar, bsdtar and tarfile (r:*, r|*, r|gz) extract exactly the folder: no extra
    file, nothing on stderr, no warning."""

    def extract_with(self, argv):
        out = self.subdir("x-")
        p = subprocess.run(argv + ["-C", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stderr, b"", "%s wrote to stderr: %s" % (argv[0], p.stderr))
        self.assertEqual(sorted(os.listdir(out)), [pt.TOP])
        got = h.strip_special(h.snapshot(os.path.join(out, pt.TOP), dir_modes=True))
        self.assertEqual(got, self.want(), h.summarize(got, self.want()))
        return p

    def test_gnu_tar_extracts_exactly_the_folder(self):
        for fmt in ("tar", "gz"):
            with self.subTest(format=fmt):
                self.make(fmt) if fmt == "tar" else self.save(
                    archive=os.path.join(self.drive, "x.tar.gz"), format="gz",
                    incremental="never")
                archive = self.archive if fmt == "tar" else os.path.join(self.drive, "x.tar.gz")
                self.extract_with(["tar", "-xf", archive])
                p = subprocess.run(["tar", "-tvf", archive], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
                self.assertEqual((p.returncode, p.stderr), (0, b""))

    def test_bsdtar_extracts_exactly_the_folder(self):
        bsdtar = _bsdtar()
        if not bsdtar:
            self.skipTest("no bsdtar (apt-get install libarchive-tools)")
        self.make("tar")
        gz = os.path.join(self.drive, "x.tar.gz")
        self.save(archive=gz, format="gz", incremental="never")
        for archive in (self.archive, gz):
            with self.subTest(archive=os.path.basename(archive)):
                self.extract_with([bsdtar, "-xf", archive])

    def extract_tarfile(self, archive, mode):
        out = self.subdir("tf-")
        err = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            with open(archive, "rb") as f, tarfile.open(fileobj=f, mode=mode) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(out, filter="tar")
                else:
                    tf.extractall(out)
        self.assertEqual(err.getvalue(), "")
        self.assertEqual([str(w.message) for w in caught], [])
        self.assertEqual(sorted(os.listdir(out)), [pt.TOP])
        got = h.strip_special(h.snapshot(os.path.join(out, pt.TOP), dir_modes=True))
        self.assertEqual(got, self.want(), h.summarize(got, self.want()))

    @h.slow  # a second or more: make test-slow
    def test_tarfile_every_mode_extracts_exactly_the_folder(self):
        self.make("tar")
        gz = os.path.join(self.drive, "x.tar.gz")
        self.save(archive=gz, format="gz", incremental="never")
        for archive, modes in ((self.archive, ("r:*", "r|*", "r:", "r|")),
                               (gz, ("r:*", "r|*", "r:gz", "r|gz"))):
            for mode in modes:
                with self.subTest(archive=os.path.basename(archive), mode=mode):
                    self.extract_tarfile(archive, mode)

    def test_gzip_module_reads_the_gz_as_one_stream(self):
        self.make("gz")
        with open(self.archive, "rb") as f:
            data = f.read()
        import gzip
        self.assertEqual(gzip.decompress(data), pt.tar_stream(data))


class RestartPointTests(ProgressiveCase):

    def setUp(self):
        super().setUp()
        self.make("gz", level=6)
        self.data = pt.stored(self.archive)
        self.raw = pt.tar_stream(self.data)

    def test_one_gzip_member(self):
        self.assertEqual(pt.gzip_members(self.data), 1)

    def test_restart_points_at_member_headers_at_least_every_restart_every(self):
        points = pt.restart_points(self.data)
        members = pt.members(self.data)
        headers = {m.offset for m in members}
        end = pt.tar_end(self.raw)
        in_tar = [u for _, u in points if u < end]
        self.assertGreater(len(in_tar), 1, "no restart point inside the tar: %s" % points)
        # pax headers come before the member they describe: a header offset or the
        # extended header in front of it
        starts = headers | {m.offset - 1024 for m in members} | {m.offset - 1536 for m in members}
        for u in in_tar:
            self.assertTrue(u == 0 or u in starts or pt.header_ok(self.raw[u:u + 512]),
                            "restart point at tar offset %d is not at a header" % u)
        biggest = max(m.size for m in members) + 3 * 512
        gaps = [b - a for a, b in zip(in_tar, in_tar[1:] + [end])]
        self.assertLessEqual(max(gaps), RESTART_EVERY + biggest,
                             "a stretch of %d tar bytes without a restart point" % max(gaps))

    def test_any_file_decompresses_alone_from_the_restart_point_before_it(self):
        points = pt.restart_points(self.data)
        import zlib
        for m in pt.members(self.data):
            if not m.isfile():
                continue
            comp, unc = max(p for p in points if p[1] <= m.offset)
            d = zlib.decompressobj(-15)
            need = m.offset_data + m.size - unc
            out = d.decompress(self.data[comp:], need)
            while len(out) < need and d.unconsumed_tail:
                out += d.decompress(d.unconsumed_tail, need - len(out))
            got = out[m.offset_data - unc:]
            want = self.files[pt.rel(m.name)]
            self.assertEqual(pt.sha256(got), pt.sha256(want), m.name)

    def test_the_index_offset_is_a_restart_point(self):
        (_, _, offset, _), index = pt.index_of(self.archive)
        self.assertIn(offset, {c for c, _ in pt.restart_points(self.data)} | {offset})
        json.loads(index)

    def test_size_within_two_percent_of_one_stream_at_the_same_level(self):
        one = pt.gz_one_stream(self.raw, 6)
        self.assertLessEqual(len(self.data), 1.02 * len(one),
                             "%d bytes vs one stream's %d" % (len(self.data), len(one)))


class OrderTests(ProgressiveCase):

    def groups_in_order(self, order):
        """The top-level names of the files in archive order, runs collapsed."""
        tops = []
        for relpath in order:
            top = relpath.split("/", 1)[0]
            if not tops or tops[-1] != top:
                tops.append(top)
        return tops

    def tar_tf(self, archive=None):
        p = subprocess.run(["tar", "tf", archive or self.archive], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=True)
        return [pt.rel(n) for n in p.stdout.decode().splitlines()]

    def test_default_order_is_smallest_top_level_entry_first_links_last(self):
        self.make("tar")
        order = self.file_order()
        self.assertEqual(self.groups_in_order(order), list(pt.GROUPS),
                         "top-level entries not contiguous in size order: %s" % order[:12])
        listed = self.tar_tf()
        kinds = {pt.rel(m.name): m for m in pt.members(self.archive)}
        links = [i for i, n in enumerate(listed) if n in kinds and kinds[n].issym()]
        files = [i for i, n in enumerate(listed) if n in kinds and kinds[n].isfile()]
        self.assertEqual(len(links), 2)
        self.assertGreater(min(links), max(files), "a symlink before a file: %s" % listed)

    def test_first_globs_come_first_in_the_order_given(self):
        self.make("tar", first=["weights/**", "config.yaml", "images/class_02/img_00*.jpg"])
        order = self.file_order()
        weights = sorted(n for n in self.files if n.startswith("weights/"))
        class2 = sorted(n for n in self.files if re.match(r"images/class_02/img_00\d\.jpg$", n))
        head = order[:len(weights) + 1 + len(class2)]
        self.assertEqual(sorted(head[:len(weights)]), weights)
        self.assertEqual(head[len(weights)], "config.yaml")
        self.assertEqual(sorted(head[len(weights) + 1:]), class2)
        rest = order[len(head):]
        self.assertEqual(self.groups_in_order(rest), ["tokenizer", "images"])

    def test_folder_pattern_with_a_trailing_slash_and_double_star(self):
        for first, want in ((["tokenizer/"], lambda n: n.startswith("tokenizer/")),
                            (["**/img_001.jpg"], lambda n: n.endswith("/img_001.jpg")),
                            (["images/class_0?/img_01*"],
                             lambda n: re.match(r"images/class_0\d/img_01", n))):
            with self.subTest(first=first):
                shutil.rmtree(os.path.dirname(self.local), ignore_errors=True)
                shutil.rmtree(self.drive, ignore_errors=True)
                self.make("tar", first=first)
                order = self.file_order()
                matching = [n for n in self.files if want(n)]
                self.assertTrue(matching)
                self.assertEqual(sorted(order[:len(matching)]), sorted(matching), order[:10])

    def test_cli_first_is_repeatable(self):
        self.files = pt.make_tree(self.local)
        archive = os.path.join(self.drive, "cli.tar")
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", archive,
                                      "--format", "tar", "--first", "images/class_03/**",
                                      "--first", "config.yaml", "--quiet", "--drive-mount", ""])
        self.assertEqual(rc, 0, err)
        order = self.file_order(archive)
        n = sum(1 for k in self.files if k.startswith("images/class_03/"))
        self.assertTrue(all(x.startswith("images/class_03/") for x in order[:n]), order[:n + 1])
        self.assertEqual(order[n], "config.yaml")

    def test_config_block_first(self):
        with mock.patch.object(ba, "FIRST", ["weights/model-00001.bin"]):
            self.make("tar")
        self.assertEqual(self.file_order()[0], "weights/model-00001.bin")

    def test_gz_keeps_the_same_order(self):
        self.make("gz")
        self.assertEqual(self.groups_in_order(self.file_order()), list(pt.GROUPS))


class TamperedIndexTests(ProgressiveCase):
    """An index that does not hash to what the sidecar (or a pin) says: exit 5, nothing
    installed, no dest, no staging folder left."""

    def check_refused(self, **kw):
        e = self.assertBAError("ChecksumMismatch", self.restore, self.archive, self.dest,
                               drive_mount="", **kw)
        self.assertFalse(os.path.lexists(self.dest), "dest created from a tampered archive")
        self.assertNoStaging(self.dest)
        return e

    def test_tampered_index_in_a_plain_tar_is_exit_5_and_installs_nothing(self):
        self.make("tar")
        pt.tamper_index(self.archive)
        self.check_refused()
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", self.dest,
                                      "--quiet", "--drive-mount", ""])
        self.assertEqual(rc, 5, err)
        self.assertFalse(os.path.lexists(self.dest))

    def test_tampered_index_in_a_gz_is_exit_5_and_installs_nothing(self):
        self.make("gz")
        new = pt.tamper_index(self.archive)
        with tarfile.open(fileobj=io.BytesIO(new), mode="r:gz") as tf:
            tf.getmembers()  # still a well-formed archive for every reader
        self.check_refused()

    def test_a_resigned_sidecar_does_not_beat_a_pinned_index_hash(self):
        r = self.make("tar")
        pin = r.index_sha256
        self.assertTrue(pin)
        pt.tamper_index(self.archive)
        # whoever can replace the archive can replace the sidecar too
        text = pt.sidecar_text(self.archive)
        data = pt.stored(self.archive)
        old_sha, old_index, off, length = pt.index_lines(self.archive)[0]
        bad_index = pt.read_index_at(data, off, length)
        text = text.replace(old_index, pt.sha256(bad_index)).replace(old_sha, pt.sha256(data))
        with open(self.archive + ".sha256", "w") as f:
            f.write(text)
        self.check_refused(sha256=pin)

    def test_a_pinned_whole_archive_hash_is_not_beaten_by_a_forged_index_line(self):
        """Whoever replaces the archive can write the sidecar: a `# index` line naming the
        pinned whole-archive hash but the attacker's index must not make anything visible."""
        r = self.make("tar")
        pin = r.sha256
        other = os.path.join(self.tmp, "evil", pt.TOP)
        h.write_bytes(os.path.join(other, "config.yaml"), b"model: evil\n")
        h.write_bytes(os.path.join(other, "tokenizer/vocab.json"), b"{}")
        evil_archive = os.path.join(self.tmp, "evil-drive", "assets.tar")
        e = self.save(dest=other, archive=evil_archive, format="tar")
        _, evil_index, off, length = pt.index_lines(evil_archive)[0]
        shutil.copy(evil_archive, self.archive)
        with open(self.archive + ".sha256", "w") as f:
            f.write("%s  assets.tar\n# index %s %s %d %d\n# index %s %s %d %d\n"
                    % (e.sha256, pin, evil_index, off, length, e.sha256, evil_index, off, length))
        watcher_seen = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                if os.path.exists(os.path.join(self.dest, "config.yaml")):
                    watcher_seen.append("config.yaml")
                    return
                time.sleep(0.001)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            err = self.foreground_error(self.archive, self.dest, sha256=pin)
        finally:
            stop.set()
            t.join(5)
        self.assertIsNotNone(err, "the evil archive was restored under a pinned hash")
        self.assertEqual(err.exit_code, 5, str(err))
        self.assertEqual(watcher_seen, [], "a file of the evil archive became visible")
        self.assertFalse(os.path.lexists(self.dest), "dest created from the evil archive")

    def test_a_pinned_index_hash_keeps_progressive_restore(self):
        r = self.make("tar")
        rr = self.restore(self.archive, self.dest, drive_mount="", sha256=r.index_sha256)
        self.assertTrue(rr.progressive)
        self.assertComplete(self.dest)

    def test_a_pinned_whole_archive_hash_means_staging_as_today(self):
        r = self.make("tar")
        rr = self.restore(self.archive, self.dest, drive_mount="", sha256=r.sha256)
        self.assertFalse(rr.progressive)
        self.assertTrue(rr.verified)
        self.assertComplete(self.dest)


class OldArchiveTests(ProgressiveCase):
    """Archives without an index restore exactly as today: staging, then one rename."""

    def check_old(self, archive, **kw):
        kw.setdefault("drive_mount", "")
        r = self.restore(archive, self.dest, **kw)
        self.assertEqual(r.action, "restored")
        self.assertFalse(r.progressive)
        self.assertIn("index", r.summary().lower(), "the summary should say why the files "
                                                    "appeared at once: %s" % r.summary())
        self.assertComplete(self.dest)
        self.assertNoStaging(self.dest)
        return r

    def test_tarfile_made_tar_gz_with_a_sidecar(self):
        self.files = pt.make_tree(self.local)
        archive = h.tar_tree(self.local, os.path.join(self.drive, "old.tar.gz"), comp="gz")
        h.write_sidecar(archive)
        r = self.check_old(archive)
        self.assertTrue(r.verified)

    def test_gnu_tar_made_plain_tar(self):
        self.files = pt.make_tree(self.local)
        os.makedirs(self.drive)
        archive = os.path.join(self.drive, "gnu.tar")
        subprocess.run(["tar", "cf", archive, "-C", os.path.dirname(self.local), pt.TOP],
                       check=True)
        h.write_sidecar(archive)
        self.check_old(archive)

    def test_zip(self):
        self.files = pt.make_tree(self.local, links=False)
        os.makedirs(self.drive)
        archive = os.path.join(self.drive, "a.zip")
        with zipfile.ZipFile(archive, "w") as zf:
            for relpath in sorted(self.files):
                zf.write(os.path.join(self.local, relpath), pt.TOP + "/" + relpath)
        r = self.restore(archive, self.dest, drive_mount="")
        self.assertFalse(r.progressive)
        self.assertEqual(pt.tree_files(self.dest), self.files)

    def test_engine_tar_stages_as_today(self):
        if "tar" not in ba.available_engines():
            self.skipTest("no GNU tar engine")
        self.make("tar")
        r = self.restore(self.archive, self.dest, drive_mount="", engine="tar")
        self.assertFalse(r.progressive)
        self.assertComplete(self.dest)

    def test_an_older_restore_in_dest_is_swapped_not_progressive(self):
        self.make("tar")
        first = self.restore(self.archive, self.dest, drive_mount="")
        self.assertTrue(first.progressive)
        with open(os.path.join(self.local, "config.yaml"), "ab") as f:
            f.write(b"more: 1\n")
        self.save(incremental="never", format="tar")
        r = self.restore(self.archive, self.dest, drive_mount="")
        self.assertEqual(r.action, "restored")
        self.assertFalse(r.progressive, "dest held an older restore: staging and swap")
        self.assertComplete(self.dest)
        self.assertNoStaging(self.dest)


if __name__ == "__main__":
    unittest.main(verbosity=2)
