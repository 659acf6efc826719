"""Issue 18, point 3: a full save (or a compaction) of a folder restore --only made loses
nothing. The files the folder never restored are carried over from the archive it came from
(its base and layers, each member read by ranges and verified against the index the sidecar
vouches for) into the new archive, in the order a save of the complete folder gives; the
user's changes (modified, added, deleted) are the folder's own. Where the files cannot be
read that way (no index, a server without ranges) the save refuses before writing anything
and names the restore that completes the folder. A damaged old member fails the save with
nothing published.
"""
import contextlib
import io
import os
import shutil
import unittest
from unittest import mock

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import URL_PATH
from test_only import OnlyCase, ReadCounter

NEW = b"a file made in the partial folder\n"


class PartialSaveCase(OnlyCase):

    def partial(self, fmt="tar", *patterns):
        """make_big saved as fmt, restored with --only weights/** (and patterns) into
        self.dest; then one held file changed, one added, one deleted."""
        self.make_big(fmt)
        self.only(self.dest, "weights/**", *patterns)
        self.changed = "weights/model-00000.bin"
        h.write_bytes(os.path.join(self.dest, self.changed), pt._random(1_000_000, 99))
        h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
        os.remove(os.path.join(self.dest, "weights/model-00003.bin"))

    def want(self):
        """The original tree plus exactly the changes made to the partial folder."""
        want = self.out("want")
        shutil.copytree(self.local, want, symlinks=True)
        shutil.copy2(os.path.join(self.dest, self.changed), os.path.join(want, self.changed))
        h.write_bytes(os.path.join(want, "notes.txt"), NEW)
        os.chmod(os.path.join(want, "notes.txt"),
                 os.stat(os.path.join(self.dest, "notes.txt")).st_mode & 0o777)
        os.remove(os.path.join(want, "weights/model-00003.bin"))
        return h.saved_view(want)

    def assertFullRestoreIsWanted(self, archive=None):
        dest = self.out("full")
        r = self.restore(archive or self.archive, dest, drive_mount="")
        got = h.strip_special(h.snapshot(dest, dir_modes=True))
        want = self.want()
        if got != want:
            self.fail("the full restore differs:\n%s" % h.summarize(got, want))
        return dest, r

    def untouched(self):
        """A check that the drive folder (archive, parts, sidecar, layers) is as it is now."""
        before = h.state(self.drive)
        return lambda: self.assertEqual(h.state(self.drive), before, "the drive changed")


class FullSaveTests(PartialSaveCase):

    def check_full(self, fmt):
        self.partial(fmt)
        old = self.out("old")
        self.restore(self.archive, old, drive_mount="")  # the old archive, in full
        s = self.save(self.dest, incremental="never")
        self.assertEqual(s.action, "saved", s.summary())
        lacking = len(self.files) - len(self.want_files("weights/"))
        self.assertEqual(s.carried, lacking, s.summary())
        self.assertIn("carried over", s.summary())
        self.assertEqual(s.format, fmt, "--format auto keeps the base's (the folder holds "
                                        "too little to sample)")
        dest, _ = self.assertFullRestoreIsWanted()
        for rel in self.files:  # carried files keep their recorded mode and mtime
            if not rel.startswith("weights/"):
                a, b = os.stat(os.path.join(old, rel)), os.stat(os.path.join(dest, rel))
                self.assertEqual((a.st_mode, int(a.st_mtime)), (b.st_mode, int(b.st_mtime)),
                                 rel)
        marker = pt.read_marker(self.dest)
        self.assertEqual(marker["only"]["held"],
                         sorted(self.want_files("weights/") - {"weights/model-00003.bin"}
                                | {"notes.txt"}))
        self.assertEqual(marker["only"]["files"], len(self.files))  # one added, one gone
        self.assertEqual(self.held(self.dest), set(marker["only"]["held"]),
                         "the partial folder itself is left as it was")
        # the folder saved from again: nothing changed, then a layer of a new change only
        self.assertEqual(self.save(self.dest).action, "unchanged")
        h.write_bytes(os.path.join(self.dest, "more.txt"), b"more\n")
        s = self.save(self.dest)
        self.assertEqual((s.action, s.files, s.deleted), ("layer", 1, 0), s.summary())
        self.assertLessEqual(s.bytes_written, len(b"more\n") + (64 << 10), s.summary())
        return s

    def test_full_save_of_a_partial_tar(self):
        self.check_full("tar")

    @h.slow  # a second or more: make test-slow
    def test_full_save_of_a_partial_gz(self):
        self.check_full("gz")

    def test_an_archive_in_parts(self):
        """The old archive in parts is read by ranges across them; the new one is written
        in parts too, beside them, and replaces them only once verified."""
        self.files = pt.make_tree(self.local, weights=(4, 3_000_000))
        self.archive = os.path.join(self.drive, "assets.tar")
        self.save(format="tar", part_size=2 << 20)
        self.assertGreater(len(pt.part_files(self.archive)), 4)
        self.only(self.dest, "weights/**")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
        s = self.save(self.dest, incremental="never", part_size=2 << 20)
        self.assertGreater(s.parts, 4, s.summary())
        got = pt.tree_files(self.restore_fresh()[0])
        self.assertEqual(got, dict(self.files, **{"notes.txt": NEW}))

    def test_default_order_over_the_union(self):
        """The new archive lays out held and carried files as a save of the complete
        folder does (smallest top-level entry first), not held files first."""
        self.partial("tar")
        s = self.save(self.dest, incremental="never", format="tar")
        complete = self.out("complete")
        shutil.copytree(self.local, complete, symlinks=True)
        self.save(complete, os.path.join(self.drive, "complete.tar"), format="tar")
        want = [p for p in self.file_order(os.path.join(self.drive, "complete.tar"))
                if p != "weights/model-00003.bin"]
        got = [p for p in self.file_order() if p != "notes.txt"]
        self.assertEqual(got, want, s.summary())

    def test_first_rules_over_the_union(self):
        self.partial("tar")
        self.save(self.dest, incremental="never", format="tar",
                  first=["images/class_02/**", "notes.txt"])
        order = self.file_order()
        self.assertEqual(order[:26], ["images/class_02/img_%03d.jpg" % i for i in range(25)]
                         + ["notes.txt"])

    def test_reads_only_the_lacking_files_by_ranges(self):
        """The old archive is read for the files the folder lacks (+ its index), not whole."""
        self.partial("tar")
        lacking = sum(512 + len(data) + (-len(data)) % 512 for rel, data in self.files.items()
                      if not rel.startswith("weights/"))
        limit = 1.10 * lacking + self.index_bytes()
        with ReadCounter() as counted:
            self.save(self.dest, incremental="never", format="tar", verify=False)
        self.assertLessEqual(counted.bytes, limit)
        self.assertLess(counted.bytes, len(pt.stored(self.archive + ".1")) / 2,
                        "the old archive was read whole")

    def test_compaction_carries_over_too(self):
        """incremental=auto: layers past half the base compact into a full archive, which
        carries over what the folder never restored."""
        self.partial("tar")
        self.assertEqual(self.save(self.dest).action, "layer")  # the three changes
        self.changes = ["weights/model-0000%d.bin" % i for i in range(3)]
        for rel in self.changes:  # the layers now pass half the base
            h.write_bytes(os.path.join(self.dest, rel), pt._random(3_000_000, 7))
        s = self.save(self.dest)
        self.assertEqual(s.action, "saved", s.summary())
        self.assertGreater(s.carried, 0)
        self.assertEqual(ba._find_layers(self.archive, s.sha256), [], "layers left")
        full = self.out("full")
        self.restore(self.archive, full, drive_mount="")
        got = pt.tree_files(full)
        for rel in self.changes:
            self.assertEqual(got[rel], pt._random(3_000_000, 7))
        for rel, data in self.files.items():
            if not rel.startswith("weights/"):
                self.assertEqual(got[rel], data, rel)
        self.assertEqual(got["notes.txt"], NEW)
        self.assertNotIn("weights/model-00003.bin", got)

    def test_a_full_save_after_a_layer_takes_the_chain_final_content(self):
        """Files a layer changed that the folder does not hold come from the layer."""
        self.make_big("tar")
        other = self.out("other")
        self.restore(self.archive, other, drive_mount="")
        h.write_bytes(os.path.join(other, "config.yaml"), b"model: changed\n")
        os.remove(os.path.join(other, "tokenizer/merges.txt"))
        self.assertEqual(self.save(other).action, "layer")
        self.only(self.dest, "weights/**")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
        s = self.save(self.dest, incremental="never")
        self.assertEqual(s.action, "saved", s.summary())
        got = pt.tree_files(self.restore_fresh()[0])
        self.assertEqual(got["config.yaml"], b"model: changed\n")
        self.assertNotIn("tokenizer/merges.txt", got)
        self.assertEqual(got["notes.txt"], NEW)
        self.assertEqual(got["images/class_03/img_024.jpg"],
                         self.files["images/class_03/img_024.jpg"])

    def test_a_folder_restored_over_https_carries_from_there(self):
        """Restored with --only from a URL whose server answers Range requests, then saved
        in full to the mount: what it lacks is read by ranges from the URL."""
        self.make("tar")
        url = self.slow_http()
        self.http.server.trickle.pop(URL_PATH)
        self.restore(url, self.dest, only=["weights/**"], drive_mount="")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
        target = os.path.join(self.tmp, "mine", "assets.tar")
        before = len(self.http.requests())
        s = self.save(self.dest, target, incremental="never")
        self.assertEqual(s.carried, len(self.files) - len(self.want_files("weights/")))
        ranged = [r for r in self.http.requests()[before:] if r[1] == URL_PATH and r[2]]
        self.assertTrue(ranged, "the URL was not read by ranges")
        got = pt.tree_files(self.restore_fresh(target)[0])
        self.assertEqual(got, dict(self.files, **{"notes.txt": NEW}))

    def test_a_file_made_where_an_unrestored_one_lies_is_the_users(self):
        self.make_big("tar")
        self.only(self.dest, "weights/**")
        mine = "images/class_02/img_000.jpg"
        h.write_bytes(os.path.join(self.dest, mine), b"mine\n")
        s = self.save(self.dest, incremental="never")
        self.assertEqual(s.carried, len(self.files) - len(self.want_files("weights/")) - 1)
        got = pt.tree_files(self.restore_fresh()[0])
        self.assertEqual(got, dict(self.files, **{mine: b"mine\n"}))

    def test_a_deleted_unrestored_folder_comes_back(self):
        """What the folder never held cannot be deleted by accident: removing the folder
        above held files removes those files only."""
        self.make_big("tar")
        self.only(self.dest, "images/class_01/", "config.yaml")
        shutil.rmtree(os.path.join(self.dest, "images"))
        self.save(self.dest, incremental="never")
        got = pt.tree_files(self.restore_fresh()[0])
        self.assertEqual(set(got), set(self.files) - self.want_files("images/class_01/"))
        self.assertEqual(got["images/class_02/img_000.jpg"],
                         self.files["images/class_02/img_000.jpg"])


class DamagedTests(PartialSaveCase):

    def test_a_damaged_old_member_fails_the_save_and_publishes_nothing(self):
        self.partial("tar")
        victim = "images/class_02/img_010.jpg"
        data = bytearray(pt.stored(self.archive))
        at = data.find(self.files[victim])
        self.assertGreater(at, 0)
        data[at + 100] ^= 0xFF
        st = os.stat(self.archive)
        with open(self.archive, "r+b") as f:
            f.write(data)
        os.utime(self.archive, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same identity
        check = self.untouched()
        marker = pt.read_marker(self.dest)
        e = self.assertBAError("CorruptArchive", self.save, self.dest, incremental="never")
        self.assertIn(victim, str(e))
        self.assertIn("Nothing was published", str(e))
        check()
        self.assertEqual(pt.read_marker(self.dest), marker)

    def test_a_tampered_index_is_exit_5_before_writing(self):
        self.partial("tar")
        offset = pt.index_lines(self.archive)[0][2]
        st = os.stat(self.archive)
        with open(self.archive, "r+b") as f:
            f.seek(offset + 40)
            byte = f.read(1)
            f.seek(offset + 40)
            f.write(bytes([byte[0] ^ 0x01]))
        os.utime(self.archive, ns=(st.st_atime_ns, st.st_mtime_ns))
        check = self.untouched()
        self.assertBAError("ChecksumMismatch", self.save, self.dest, incremental="never")
        check()

    def test_an_archive_replaced_since_refuses_before_writing(self):
        """Another folder saved in full over the archive: the one this folder was restored
        from is now ARCHIVE.1, not what the marker names; nothing is guessed."""
        self.partial("tar")
        h.write_bytes(os.path.join(self.local, "elsewhere.txt"), b"another session\n")
        self.save(incremental="never")
        check = self.untouched()
        for incremental in ("never", "auto"):
            e = self.assertBAError("BootstrapError", self.save, self.dest,
                                   incremental=incremental)
            self.assertIn("no longer the archive this folder was restored from", str(e))
            self.assertIn("Nothing was written", str(e))
        check()

    def test_a_local_file_where_the_archive_has_a_folder_it_lacks(self):
        """A file the user made at `images`, where the archive has a folder of files the
        folder never restored: both cannot be kept, and none of them is dropped."""
        self.make_big("tar")
        self.only(self.dest, "weights/**")
        h.write_bytes(os.path.join(self.dest, "images"), b"not a folder\n")
        check = self.untouched()
        e = self.assertBAError("BootstrapError", self.save, self.dest, incremental="never")
        self.assertIn("%s/images is a file where" % self.dest, str(e))
        self.assertIn("Nothing was written", str(e))
        check()

    def test_no_index_refuses_before_writing(self):
        """A base another tool made (no index): the files cannot be read by ranges."""
        self.files = pt.make_tree(self.local)
        self.archive = os.path.join(self.drive, "assets.tar")
        os.makedirs(self.drive)
        with ba_tarfile(self.archive) as tar:
            tar.add(self.local, "_assets")
        self.only(self.dest, "weights/**")
        h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
        check = self.untouched()
        e = self.assertBAError("BootstrapError", self.save, self.dest, incremental="never")
        self.assertIn("vouches for an index", str(e))
        self.assertIn("Nothing was written", str(e))
        self.assertIn("python bootstrap_assets.py restore --dest %s --archive '%s'"
                      % (self.dest, self.archive), str(e))
        check()
        # auto: the compaction it cannot make becomes another layer
        self.assertEqual(self.save(self.dest).action, "layer")

    def test_a_server_without_ranges_refuses_before_writing(self):
        self.make("tar")
        url = self.slow_http()
        self.http.server.trickle.pop(URL_PATH)
        probe = ba._HttpSource._probe

        def no_ranges(source):  # a server that answers Range requests with the whole file
            probe(source)
            source.ranged = False
        with mock.patch.object(ba._HttpSource, "_probe", no_ranges):
            self.restore(url, self.dest, only=["weights/**"], drive_mount="")
            h.write_bytes(os.path.join(self.dest, "notes.txt"), NEW)
            target = os.path.join(self.tmp, "mine", "assets.tar")
            e = self.assertBAError("BootstrapError", self.save, self.dest, target,
                                   incremental="never")
        self.assertIn("Range", str(e))
        self.assertIn("restore --dest %s --archive '%s'" % (self.dest, url), str(e))
        self.assertFalse(os.path.exists(target))


class DriveCacheTests(PartialSaveCase):

    def test_reading_the_archive_counts_in_drives_cache(self):
        """Drive's cache holds a file read through the mount until it is closed: a full
        save of a partial folder holds the new archive and the old one it reads there, and
        is refused up front (exit 8) when both cannot fit."""
        self.partial("tar")
        cache = os.path.join(self.tmp, "DriveFS")
        os.makedirs(cache)
        size = len(pt.stored(self.archive))
        check = self.untouched()
        with mock.patch.object(ba, "_free_bytes",
                               lambda path: ba.SPACE_MARGIN + int(1.5 * size)):
            e = self.assertBAError("NoSpace", self.save, self.dest, incremental="never",
                                   drive_cache=cache)
        self.assertIn("split the archive the folder was restored from", str(e))
        check()

    def test_what_each_source_holds_at_once(self):
        one = mock.Mock(files=[("a", 100, 0)])
        parts = mock.Mock(files=[("p1", 30, 0), ("p2", 60, 0), ("p3", 50, 0)])
        url = object()
        self.assertEqual(ba._carry_in_cache([(one, None, None)]), 100)
        self.assertEqual(ba._carry_in_cache([(one, None, None), (parts, None, None)]), 120)
        self.assertEqual(ba._carry_in_cache([(url, None, None)]), 0)
        self.assertEqual(ba._carry_in_cache(None), 0)


class CommandLineTests(PartialSaveCase):

    def test_save_full_in_process(self):
        self.partial("tar")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = ba.main(["save", "--dest", self.dest, "--archive", self.archive,
                            "--drive-mount", "", "--full", "-q"])
        self.assertEqual(code, 0, out.getvalue() + err.getvalue())
        self.assertFullRestoreIsWanted()

    def test_refusal_in_process(self):
        """The refusal is exit 1 with the command that completes the folder on stderr."""
        self.partial("tar")
        os.remove(self.archive + ".sha256")  # nothing vouches for the index any more
        check = self.untouched()
        code, out, err = self.run_main(["save", "--dest", self.dest, "--archive", self.archive,
                                        "--drive-mount", "", "--full", "-q"])
        self.assertEqual(code, 1, out + err)
        self.assertIn("python bootstrap_assets.py restore --dest %s --archive '%s'"
                      % (self.dest, self.archive), err)
        check()


@contextlib.contextmanager
def ba_tarfile(path):
    import tarfile
    with tarfile.open(path, "w") as tar:
        yield tar


if __name__ == "__main__":
    unittest.main()
