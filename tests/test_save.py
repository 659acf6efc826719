"""save(): round trip, skipped entries, tar interop, formats, unchanged, sidecar, temporaries,
out of space, missing source, lock, and crashes between the publishing steps (the `save` and
`status` commands are in tests/test_cli.py).

Everything runs in-process on plain temp folders (drive_mount=""); drivesim and kill -9 of a
real save are covered by the e2e suite.
"""
import errno
import json
import os
import shutil
import socket
import subprocess
import tarfile
import unittest
from unittest import mock

import helpers as h
from helpers import ba

TOP = h.SAVE_TOP


def zstd_available():
    return ba._zstd_module is not None or shutil.which("zstd") is not None


class RoundTripTests(h.SaveTestCase):

    def test_round_trip_every_engine(self):
        h.save_tree(self.local)
        want = h.saved_view(self.local)
        self.assertIn("weights/big.bin", want)
        r = self.save()
        self.assertEqual(r.action, "saved")
        self.assertEqual(r.written, self.archive)
        self.assertEqual(r.sha256, h.sha256_file(self.archive))
        self.assertEqual(r.bytes_written, os.path.getsize(self.archive))
        self.assertTrue(r.verified)
        self.assertEqual(r.warnings, [])
        self.assertEqual(r.versions, [os.path.basename(self.archive)])
        self.assertEqual(r.files, sum(1 for v in want.values() if v[0] != "dir"))
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, rr = self.assertRestores(want, engine=engine)
                self.assertEqual(rr.action, "restored")
                self.assertTrue(rr.verified)
                self.assertEqual(rr.checksum_source, "sidecar")
        self.assertSidecarConsistent()

    def test_members_under_one_top_folder_after_a_pax_header_without_the_marker(self):
        """Members under one top folder named like the local folder; a full save starts with a
        pax global header; the marker is never packed; the saved names are the tree's."""
        h.save_tree(self.local, big=False)
        self.save()
        self.save(incremental="never")  # the local marker now exists: still not packed
        with tarfile.open(self.archive, "r:*") as tf:
            members = tf.getmembers()
        with open(self.archive, "rb") as f:
            first = tarfile.TarInfo.frombuf(f.read(512), "utf-8", "surrogateescape")
        self.assertEqual(first.type, tarfile.XGLTYPE, "no pax global header first")
        names = [m.name for m in members]
        self.assertTrue(all(n == TOP or n.startswith(TOP + "/") for n in names), names)
        self.assertFalse(any(n.endswith(h.MARKER) for n in names), names)
        self.assertEqual(sorted(n[len(TOP) + 1:] for n in names if n != TOP),
                         sorted(h.snapshot(self.local)))
        # two full saves of the same tree have different hashes (the global header's comment)
        self.assertEqual(len({d for d, _ in h.sidecar_lines(self.archive)}), 2)

    def test_gnu_tar_extracts_every_saved_format(self):
        h.save_tree(self.local)
        want = h.saved_view(self.local)
        tar = shutil.which("tar")
        if not tar:
            self.skipTest("no tar")
        fmts = ["tar", "gz"] + (["zst"] if shutil.which("zstd") else [])
        for fmt in fmts:
            with self.subTest(format=fmt):
                archive = os.path.join(self.drive, fmt, "assets.tar.gz")
                self.save(archive=archive, format=fmt, incremental="never")
                out = self.subdir("tarxf-")
                r = subprocess.run([tar, "xf", archive, "-C", out], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
                self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
                self.assertEqual(sorted(os.listdir(out)), [TOP])
                got = h.strip_special(h.snapshot(os.path.join(out, TOP), dir_modes=True))
                self.assertEqual(got, want, h.summarize(got, want))

    def test_skips_special_and_escaping_entries_with_warnings(self):
        os.makedirs(os.path.join(self.local, "sub"))
        h.write_bytes(os.path.join(self.local, "keep.txt"), b"keep\n")
        os.mkfifo(os.path.join(self.local, "sub", "pipe"))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(self.local, "sock"))
        os.symlink("/etc/passwd", os.path.join(self.local, "abs_link"))
        os.symlink(os.path.join(self.local, "keep.txt"), os.path.join(self.local, "abs_inside"))
        os.symlink("../../outside", os.path.join(self.local, "sub", "escape"))
        os.symlink("../sub/escape", os.path.join(self.local, "sub", "via_escape"))
        os.symlink("../keep.txt", os.path.join(self.local, "sub", "ok_link"))
        r = self.save()
        self.assertEqual(r.action, "saved")
        text = "\n".join(r.warnings)
        for name in ("sub/pipe", "sock", "abs_link", "sub/escape", "sub/via_escape"):
            self.assertTrue(any(name in w for w in r.warnings), "no warning about %s: %s" % (name, text))
        self.assertNotIn("ok_link", text)
        self.assertNotIn("abs_inside", text)  # inside the folder: kept, stored relative
        want = {"keep.txt": ("file", 0o644, b"keep\n"), "sub": ("dir", 0o755),
                "sub/ok_link": ("link", "../keep.txt"), "abs_inside": ("link", "keep.txt")}
        for engine in h.engines():
            with self.subTest(engine=engine):
                self.assertRestores(want, engine=engine)
        # the warnings come again with "unchanged"
        r2 = self.save()
        self.assertEqual(r2.action, "unchanged")
        self.assertEqual(sorted(r2.warnings), sorted(r.warnings))
        # a full save's summary carries them
        self.assertIn("sub/pipe", self.save(incremental="never").summary())


class FormatTests(h.SaveTestCase):
    MAGIC = {"gz": b"\x1f\x8b", "zst": b"\x28\xb5\x2f\xfd"}

    def check_magic(self, path, fmt):
        with open(path, "rb") as f:
            head = f.read(512)
        if fmt == "tar":
            with open(path, "rb") as f:
                f.seek(257)
                self.assertEqual(f.read(5), b"ustar")
        else:
            self.assertTrue(head.startswith(self.MAGIC[fmt]), "%s does not start like %s" % (path, fmt))

    @h.slow  # a second or more: make test-slow
    def test_every_format_restores_with_every_engine_and_zstd_without_support_is_unsupported(self):
        h.save_tree(self.local, big=False)
        want = h.saved_view(self.local)
        for fmt in ("tar", "gz", "zst"):
            with self.subTest(format=fmt):
                archive = os.path.join(self.drive, fmt, "assets.tar.gz")
                if fmt == "zst" and not zstd_available():
                    self.assertBAError("Unsupported", self.save, archive=archive, format=fmt)
                    self.assertEqual(h.archive_family(archive), [], "written despite Unsupported")
                    continue
                r = self.save(archive=archive, format=fmt, incremental="never")
                self.assertEqual((r.action, r.format), ("saved", fmt))
                self.check_magic(archive, fmt)
                for engine in h.engines():
                    self.assertRestores(want, archive=archive, engine=engine,
                                        msg="format %s engine %s" % (fmt, engine))
                # a layer in the same format
                h.write_bytes(os.path.join(self.local, "added-%s.txt" % fmt), b"added\n" * 50)
                r2 = self.save(archive=archive, format=fmt)
                self.assertEqual((r2.action, r2.format), ("layer", fmt))
                self.check_magic(r2.written, fmt)
                want2 = h.saved_view(self.local)
                for engine in h.engines():
                    self.assertRestores(want2, archive=archive, engine=engine,
                                        msg="format %s + layer, engine %s" % (fmt, engine))
                self.assertSidecarConsistent(archive)
                os.unlink(os.path.join(self.local, "added-%s.txt" % fmt))
                os.unlink(os.path.join(self.local, h.MARKER))

    def test_higher_gz_level_writes_no_more_bytes(self):
        h.write_bytes(os.path.join(self.local, "text.txt"), b"compress me please\n" * 20000)
        fast = self.save(archive=os.path.join(self.drive, "l1", "a.tar.gz"), format="gz", level=1,
                         incremental="never")
        best = self.save(archive=os.path.join(self.drive, "l9", "a.tar.gz"), format="gz", level=9,
                         incremental="never")
        self.assertLessEqual(best.bytes_written, fast.bytes_written)
        self.assertRestores(h.saved_view(self.local), archive=best.written)

    def test_auto_format_honours_level_when_it_picks_gzip(self):
        h.write_bytes(os.path.join(self.local, "text.json"),
                      json.dumps({"k%d" % j: j % 7 for j in range(60000)}).encode())
        fast = self.save(archive=os.path.join(self.drive, "a1", "a.tar.gz"), incremental="never")
        best = self.save(archive=os.path.join(self.drive, "a9", "a.tar.gz"), level=9,
                         incremental="never")
        self.assertEqual((fast.format, best.format), ("gz", "gz"))
        self.assertLess(best.bytes_written, fast.bytes_written)
        self.assertRestores(h.saved_view(self.local), archive=best.written)

    def test_level_that_cannot_apply_is_a_usage_error_and_writes_nothing(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a\n")
        for fmt, level in (("tar", 5), ("gz", 10), ("auto", -1), ("zst", 0), ("zst", 23)):
            with self.subTest(fmt=fmt, level=level):
                archive = os.path.join(self.drive, "bad-level", "a.tar")
                self.assertBAError("UsageError", self.save, archive=archive, format=fmt,
                                   level=level)
                self.assertEqual(h.archive_family(archive), [])

    def test_auto_random_is_tar_text_is_gz(self):
        rnd = os.path.join(self.tmp, "rnd", TOP)
        txt = os.path.join(self.tmp, "txt", TOP)
        for i in range(4):
            h.write_bytes(os.path.join(rnd, "w%d.bin" % i), h.rand_bytes(300_000, 10 + i))
            h.write_bytes(os.path.join(txt, "t%d.json" % i),
                          json.dumps({"k%d" % j: j for j in range(15000)}).encode())
        h.write_bytes(os.path.join(rnd, "note.txt"), b"small text\n")
        a_rnd = os.path.join(self.drive, "rnd", "assets.tar.gz")
        a_txt = os.path.join(self.drive, "txt", "assets.tar.gz")
        r1 = self.save(rnd, a_rnd)
        r2 = self.save(txt, a_txt)
        self.assertEqual(r1.format, "tar")
        self.assertEqual(r2.format, "gz")
        self.check_magic(a_rnd, "tar")
        self.check_magic(a_txt, "gz")
        self.assertLess(r2.bytes_written, r2.bytes_packed / 2)
        self.assertRestores(h.saved_view(rnd), archive=a_rnd)
        self.assertRestores(h.saved_view(txt), archive=a_txt)

    def test_bad_arguments_are_usage_errors_and_write_nothing(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a")
        for kw in (dict(format="bz2"), dict(format="zip"), dict(incremental="sometimes"),
                   dict(keep=0), dict(archive="https://example.com/assets.tar.gz")):
            with self.subTest(**{k: str(v) for k, v in kw.items()}):
                self.assertBAError("UsageError", self.save, **kw)
        self.assertEqual(h.archive_family(self.archive), [])
        self.assertFalse(os.path.exists(self.archive + ".sha256"))


class UnchangedTests(h.SaveTestCase):

    def test_unchanged_writes_nothing(self):
        h.save_tree(self.local, big=False)
        self.save()
        h.write_bytes(os.path.join(self.local, "x.txt"), b"x")
        self.save()  # a layer
        before = h.folder_state(self.drive)
        marker_before = h.state(os.path.join(self.local, h.MARKER))
        r = self.save()
        self.assertEqual(r.action, "unchanged")
        self.assertIsNone(r.written)
        self.assertEqual(r.bytes_written, 0)
        self.assertEqual(h.folder_state(self.drive), before, "the archive folder changed")
        self.assertEqual(h.state(os.path.join(self.local, h.MARKER)), marker_before)
        self.assertIn("nothing", r.summary())

    def test_restored_folder_saves_unchanged(self):
        """A folder restored from a saved archive is in step with it: nothing to save."""
        h.save_tree(self.local, big=False)
        self.save()
        dest, _ = self.restore_fresh()
        before = h.folder_state(self.drive)
        r = self.save(dest=dest)
        self.assertEqual(r.action, "unchanged")
        self.assertEqual(h.folder_state(self.drive), before)

    def test_archive_replaced_behind_our_back_means_full_save(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a" * 5000)
        self.save()
        other = os.path.join(self.tmp, "other", TOP)
        h.write_bytes(os.path.join(other, "b.txt"), b"b")
        self.save(dest=other)  # someone else saved meanwhile
        h.write_bytes(os.path.join(self.local, "c.txt"), b"c")
        r = self.save()
        self.assertEqual(r.action, "saved", "a layer on someone else's base would be wrong")
        self.assertRestores(h.saved_view(self.local))
        self.assertSidecarConsistent()


class SidecarAndTemporaryTests(h.SaveTestCase):

    def test_sidecar_one_line_per_name_through_a_history(self):
        h.save_tree(self.local, big=False)
        steps = [
            lambda: None,
            lambda: h.write_bytes(os.path.join(self.local, "a.txt"), b"a"),
            lambda: h.write_bytes(os.path.join(self.local, "b.txt"), b"b"),
            lambda: os.unlink(os.path.join(self.local, "README.txt")),
        ]
        for i, step in enumerate(steps):
            step()
            self.save()
            self.assertSidecarConsistent()
            self.save(incremental="never")
            self.assertSidecarConsistent()
        self.assertEqual(sorted(n for n in h.archive_family(self.archive) if ".layer-" not in n),
                         ["assets.tar.gz", "assets.tar.gz.1", "assets.tar.gz.2"])

    def test_stale_temporaries_removed_by_next_save(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a")
        self.save()
        stale = ["assets.tar.gz.tmp-99999", "assets.tar.gz.0123456789abcdef.layer-1.tmp-4242",
                 "assets.tar.gz.sha256.tmp-31337"]
        for name in stale:
            h.write_bytes(os.path.join(self.drive, name), b"half written")
        h.write_bytes(os.path.join(self.drive, "unrelated.tmp-1"), b"not ours")
        r = self.save()  # nothing changed: still cleans
        self.assertEqual(r.action, "unchanged")
        self.assertEqual(h.temporaries(self.archive), [])
        self.assertTrue(os.path.exists(os.path.join(self.drive, "unrelated.tmp-1")))
        for name in stale:
            h.write_bytes(os.path.join(self.drive, name), b"half written")
        h.write_bytes(os.path.join(self.local, "b.txt"), b"b")
        self.assertEqual(self.save().action, "layer")
        self.assertEqual(h.temporaries(self.archive), [])
        self.assertSidecarConsistent()


class SourceAndLockTests(h.SaveTestCase):

    def test_missing_source_is_source_missing_and_makes_no_archive_folder(self):
        e = self.assertBAError("SourceMissing", self.save)
        self.assertIn(self.local, str(e))
        self.assertFalse(os.path.exists(self.drive), "the archive folder was created")
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", self.archive,
                                      "--drive-mount", ""])
        self.assertEqual(rc, 3, err)
        self.assertNotIn("Traceback", err)

    def test_empty_source_is_source_missing_and_never_replaces_an_archive(self):
        os.makedirs(self.local)
        self.assertBAError("SourceMissing", self.save)
        self.assertFalse(os.path.exists(self.drive))
        # an archive exists already: an empty folder (or one holding only the marker) does not
        # replace it
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a")
        self.save()
        before = h.folder_state(self.drive)
        os.unlink(os.path.join(self.local, "a.txt"))
        self.assertTrue(os.path.exists(os.path.join(self.local, h.MARKER)))
        for incremental in ("auto", "always", "never"):
            self.assertBAError("SourceMissing", self.save, incremental=incremental)
        self.assertEqual(h.folder_state(self.drive), before)
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", self.archive,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 3, err)
        self.assertNotIn("Traceback", err)

    def test_source_is_a_file(self):
        h.write_bytes(self.local, b"not a folder")
        self.assertBAError("SourceMissing", self.save)
        self.assertFalse(os.path.exists(self.drive))

    @h.slow  # a second or more: make test-slow
    def test_save_into_a_locked_folder_is_locked_naming_the_holder(self):
        h.write_bytes(os.path.join(self.local, "a.txt"), b"a")
        self.save()
        h.write_bytes(os.path.join(self.local, "b.txt"), b"b")
        before = h.folder_state(self.drive)
        with h.hold_lock(self.local):
            e = self.assertBAError("Locked", self.save, lock_timeout=0.3)
            self.assertIn(str(os.getpid()), str(e))
            rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", self.archive,
                                          "--drive-mount", "", "--lock-timeout", "0.3"])
            self.assertEqual(rc, 10, err)
            self.assertNotIn("Traceback", err)
            # a restore into the same folder waits on the same lock
            self.assertBAError("Locked", self.restore, self.archive, self.local,
                               lock_timeout=0.3, drive_mount="")
        self.assertEqual(h.folder_state(self.drive), before)
        self.assertEqual(self.save().action, "layer")


class NoSpaceTests(h.SaveTestCase):
    """The archive folder on a small tmpfs (root only; skipped when mount is not permitted)."""

    def setUp(self):
        super().setUp()
        h.write_bytes(os.path.join(self.local, "small.txt"), b"small\n" * 100)
        h.write_bytes(os.path.join(self.local, "rnd.bin"), h.rand_bytes(100_000, 5))

    def mount(self, options):
        h.mount_tmpfs(self, self.drive, options)

    def check_nospace(self, before, **kw):
        e = self.assertBAError("NoSpace", self.save, **kw)
        self.assertEqual(h.folder_state(self.drive), before, "archive folder changed")
        self.assertEqual(h.temporaries(self.archive), [], "temporary left")
        return e

    def test_save_too_big_for_the_free_space_is_refused_before_writing(self):
        self.mount("size=1m")
        self.save()
        before = h.folder_state(self.drive)
        h.write_bytes(os.path.join(self.local, "huge.bin"), h.rand_bytes(2_000_000, 6))
        for incremental in ("auto", "never"):
            self.check_nospace(before, incremental=incremental)
        rc, out, err = self.run_main(["save", "--dest", self.local, "--archive", self.archive,
                                      "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 8, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(h.folder_state(self.drive), before)
        os.unlink(os.path.join(self.local, "huge.bin"))
        self.assertEqual(self.save().action, "unchanged")

    def test_enospc_while_writing(self):
        """The space check passes (it is skipped) and the write itself hits ENOSPC."""
        self.mount("size=1m")
        self.save()
        want = h.saved_view(self.local)
        before = h.folder_state(self.drive)
        h.write_bytes(os.path.join(self.local, "huge.bin"), h.rand_bytes(2_000_000, 6))
        for incremental in ("auto", "never"):
            with self.subTest(incremental=incremental), \
                    mock.patch.object(ba, "_check_room", lambda *a, **k: None):
                e = self.check_nospace(before, incremental=incremental)
                self.assertRegex(str(e), r"\d")
        with mock.patch.object(ba, "_check_room", lambda *a, **k: None):
            rc, out, err = self.run_main(["save", "--dest", self.local, "--archive",
                                          self.archive, "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 8, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(h.folder_state(self.drive), before)
        self.assertRestores(want)
        os.unlink(os.path.join(self.local, "huge.bin"))
        h.write_bytes(os.path.join(self.local, "fits.txt"), b"fits\n")
        self.assertEqual(self.save().action, "layer")
        self.assertRestores(h.saved_view(self.local))
        self.assertSidecarConsistent()

    def test_enospc_on_the_sidecar(self):
        """Room for the new archive but no inode left for the sidecar's temporary file."""
        self.mount("size=4m,nr_inodes=4")  # root, archive, sidecar + one for the new archive
        self.save()
        want = h.saved_view(self.local)
        before = h.folder_state(self.drive)
        h.write_bytes(os.path.join(self.local, "more.txt"), b"more\n")
        import builtins
        real_open, real_os_open, opened = builtins.open, os.open, []

        def recording_open(file, *a, **kw):
            opened.append(str(file))
            return real_open(file, *a, **kw)

        def recording_os_open(path, *a, **kw):  # the sidecar's temporary is made this way
            opened.append(str(path))
            return real_os_open(path, *a, **kw)
        for incremental in ("auto", "never"):
            with self.subTest(incremental=incremental), \
                    mock.patch("builtins.open", recording_open), \
                    mock.patch("os.open", recording_os_open):
                del opened[:]
                self.check_nospace(before, incremental=incremental)
                self.assertTrue(any(".sha256.tmp-" in p for p in opened),
                                "the save did not get as far as the sidecar: %s" % opened)
        self.assertRestores(want)

    def test_edquot_while_writing(self):
        """EDQUOT (quota) is out of space too; no tmpfs needed."""
        self.save()
        before = h.folder_state(self.drive)
        h.write_bytes(os.path.join(self.local, "more.bin"), h.rand_bytes(50_000, 8))
        real_write = os.write

        def write(fd, data):
            try:
                name = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                name = ""
            if ".tmp-" in os.path.basename(name) and os.path.dirname(name) == self.drive:
                raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
            return real_write(fd, data)
        for incremental in ("auto", "never"):
            with self.subTest(incremental=incremental), mock.patch("os.write", write):
                self.check_nospace(before, incremental=incremental)
        self.assertEqual(self.save().action, "layer")


class PublishPlanTests(unittest.TestCase):
    """_plan_publish alone: a folder's names, the sidecar's hashes and the written files in,
    the journal out; no filesystem (recorded() gives each name a made-up size and mtime)."""

    @staticmethod
    def recorded(name):
        return [len(name), 7]

    def plan(self, names, before, written, keep, rotate=True, sets_before=None):
        return ba._plan_publish("/drive/a.tar", set(names), before, sets_before or {},
                                written, "a.tar", "whole", rotate, keep, self.recorded)

    def test_rotation_removes_the_oldest_first_and_the_layers_of_no_kept_base_last(self):
        plan = self.plan(["a.tar", "a.tar.1", "a.tar.2", "a.tar.sha256", "new.tmp",
                          "a.tar.h0.layer-1", "a.tar.h2.layer-1"],
                         {"a.tar": {"h0"}, "a.tar.1": {"h1"}, "a.tar.2": {"h2"}},
                         [("new.tmp", "hn")], keep=2)
        self.assertEqual(plan.journal["drops"], [["a.tar.2", 7, 7]])
        self.assertEqual([m[:2] for m in plan.journal["moves"]],
                         [["a.tar.1", "a.tar.2"], ["a.tar", "a.tar.1"], ["new.tmp", "a.tar"]])
        self.assertEqual(plan.journal["deletes"], [["a.tar.h2.layer-1", 16, 7]])
        self.assertEqual(plan.journal["after"],
                         {"a.tar": ["hn"], "a.tar.1": ["h0"], "a.tar.2": ["h1"]})
        self.assertEqual(plan.transition["a.tar"], {"h0", "hn"})
        self.assertEqual(plan.transition["a.tar.2"], {"h1", "h2"})
        self.assertEqual(plan.kept, ["a.tar", "a.tar.1", "a.tar.2"])

    def test_keep_0_removes_the_previous_version_after_it_moved_aside(self):
        plan = self.plan(["a.tar", "t"], {"a.tar": {"h0"}}, [("t", "hn")], keep=0)
        self.assertEqual(plan.journal["drops"], [])
        self.assertEqual([m[:2] for m in plan.journal["moves"]],
                         [["a.tar", "a.tar.1"], ["t", "a.tar"]])
        # recorded under its name before the rename, which keeps size and mtime
        self.assertEqual(plan.journal["deletes"], [["a.tar.1", 5, 7]])
        self.assertEqual(plan.journal["after"], {"a.tar": ["hn"]})
        self.assertEqual(plan.kept, ["a.tar"])

    def test_parts_move_in_with_part_0001_last_and_a_part_set(self):
        plan = self.plan([], {}, [("p1", "d1"), ("p2", "d2")], keep=2)
        self.assertEqual([m[:2] for m in plan.journal["moves"]],
                         [["p2", "a.tar.part-0002"], ["p1", "a.tar.part-0001"]])
        self.assertEqual(plan.journal["parts"], {"a.tar": [["whole", ["d1", "d2"]]]})
        self.assertEqual(plan.journal["after"],
                         {"a.tar.part-0001": ["d1"], "a.tar.part-0002": ["d2"]})
        self.assertEqual((plan.journal["drops"], plan.journal["deletes"]), ([], []))

    def test_without_rotation_only_the_new_files_move(self):
        plan = self.plan(["a.tar", "l.tmp"], {"a.tar": {"h0"}}, [("l.tmp", "hl")], keep=2,
                         rotate=False)
        self.assertEqual([m[:2] for m in plan.journal["moves"]], [["l.tmp", "a.tar"]])
        self.assertEqual((plan.journal["drops"], plan.journal["deletes"]), ([], []))


class CrashTests(h.SaveTestCase):
    """A save dying between its publishing steps (simulated in-process: every rename, replace
    or unlink from the n-th on raises, as if the process had been killed just before it)."""

    def tree(self, i):
        return {"a.txt": b"version %d\n" % i, "data/common.bin": h.rand_bytes(20_000, 1),
                "data/v%d.bin" % i: h.rand_bytes(5_000, 100 + i)}

    def set_tree(self, i):
        if os.path.isdir(self.local):
            for name in os.listdir(self.local):
                if name != h.MARKER:
                    p = os.path.join(self.local, name)
                    shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        for rel, data in self.tree(i).items():
            h.write_bytes(os.path.join(self.local, rel), data)
        return h.saved_view(self.local)

    def test_crash_after_current_moved_to_1(self):
        views = [self.set_tree(i) for i in range(1)]
        self.save()
        views.append(self.set_tree(1))
        self.save(incremental="never")
        new = self.set_tree(2)

        def is_final_rename(fname, args):
            return fname == "rename" and os.path.basename(args[1]) == "assets.tar.gz"
        with h.CrashAt(0, only=is_final_rename) as crash, self.assertRaises(h.SimulatedCrash):
            self.save(incremental="never")
        self.assertTrue(crash.crashed)
        self.assertFalse(os.path.exists(self.archive))
        self.assertTrue(os.path.exists(self.archive + ".1"))
        self.assertNotEqual(h.temporaries(self.archive), [])
        for engine in h.engines():
            dest, r = self.assertRestores(views[1], engine=engine, msg="after the crash")
            self.assertIn(".1", r.note or "")
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", self.out(),
                                      "--drive-mount", ""])
        self.assertEqual(rc, 0, err)
        self.assertIn(".1", out)
        # the local folder kept its marker of the old chain: the next save is a full one
        r = self.save()
        self.assertEqual(r.action, "saved")
        self.assertRestores(new)
        self.assertSidecarConsistent()
        self.assertEqual(self.save().action, "unchanged")

    def sweep(self, prepare, incremental):
        """The crash sweep (h.SaveTestCase.crash_sweep) of a save: after each crash the next
        save succeeds and a restore then gives the new tree."""
        trees = []

        def prepared():
            trees[:] = prepare()
            return trees

        def again():
            r = self.save(incremental=incremental)
            self.assertIn(r.action, ("saved", "layer", "unchanged"))
            return trees[1]
        self.crash_sweep(prepared, lambda: self.save(incremental=incremental), again)

    @h.slow
    def test_crash_sweep_full_save_with_rotation(self):
        views = {}

        def prepare():
            for i in range(3):
                views[i] = self.set_tree(i)
                self.save(incremental="never")
            views[3] = self.set_tree(3)
            return views[2], views[3]
        self.sweep(prepare, "never")

    @h.slow
    def test_crash_sweep_layer(self):
        views = {}

        def prepare():
            views[0] = self.set_tree(0)
            self.save()
            os.unlink(os.path.join(self.local, "data", "v0.bin"))
            h.write_bytes(os.path.join(self.local, "a.txt"), b"changed\n")
            h.write_bytes(os.path.join(self.local, "new", "n.txt"), b"new\n")
            views[1] = h.saved_view(self.local)
            return views[0], views[1]
        self.sweep(prepare, "auto")

    @h.slow
    def test_crash_sweep_full_save_over_layers(self):
        """The current base has layers; a full save moves it (with them) to .1. Whatever the
        instant of the crash, a restore gives base+layers (old) or the new base."""
        views = {}

        def prepare():
            self.set_tree(0)
            self.save()
            h.write_bytes(os.path.join(self.local, "a.txt"), b"layer one\n")
            self.assertEqual(self.save().action, "layer")
            h.write_bytes(os.path.join(self.local, "l2.txt"), b"layer two\n")
            self.assertEqual(self.save().action, "layer")
            views["old"] = h.saved_view(self.local)
            views["new"] = self.set_tree(5)
            return views["old"], views["new"]
        self.sweep(prepare, "never")


if __name__ == "__main__":
    import unittest
    unittest.main()
