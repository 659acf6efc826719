"""Issue 17, progressive restore: into a destination that does not exist yet, each file
appears at its final path only when complete and verified against the index; the marker says
"restoring" until the end; a failure midway (a damaged member) leaves only verified files and
an "incomplete" marker with the reason and the exit code; the next restore resumes, keeping
what is verified and reading only what is missing.

A watcher thread reads every file the moment it is visible and checks it against the source:
it must never see a partial or wrong file. Slow sources are tests/helpers.HTTPFixture
trickling; damaged archives are made here (progressive_tools.damage_member).
"""
import os
import threading
import time
import unittest
from unittest import mock

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import URL_PATH, ProgressiveCase

OURS = {pt.MARKER, pt.MARKER + ".tmp", ".bootstrap_assets.installed"}
DAMAGED = "images/class_02/img_010.jpg"  # about 60 % into the default order


class Watcher(threading.Thread):
    """Reads every regular file under dest as soon as it is visible, checks it against
    `files` ({relpath: bytes}); records what it saw wrong, the first time each file was
    seen (monotonic) and the marker states seen."""

    def __init__(self, dest, files):
        super().__init__(daemon=True)
        self.dest, self.files = dest, files
        self.stop = threading.Event()
        self.wrong, self.seen, self.states = [], {}, set()

    def run(self):
        while True:
            last = self.stop.is_set()
            self.scan()
            if last:
                return
            time.sleep(0.002)

    def scan(self):
        if not os.path.isdir(self.dest):
            return
        try:
            marker = pt.read_marker(self.dest)
        except (ValueError, OSError):
            marker = None
        if marker is not None:
            self.states.add(marker.get("state"))
        for d, dirs, names in os.walk(self.dest):
            for n in names:
                path = os.path.join(d, n)
                rel = os.path.relpath(path, self.dest)
                if rel in OURS or rel in self.seen or os.path.islink(path):
                    continue
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    continue
                self.seen[rel] = time.monotonic()
                want = self.files.get(rel)
                if want is None:
                    self.wrong.append("%s is not a file of the source" % rel)
                elif data != want:
                    self.wrong.append("%s visible with %d bytes, sha %s (want %d bytes, sha %s)"
                                      % (rel, len(data), pt.sha256(data)[:12], len(want),
                                         pt.sha256(want)[:12]))

    def finish(self):
        self.stop.set()
        self.join(10)
        return self


class ProgressiveRestoreTests(ProgressiveCase):

    def check_fresh(self, **save_kw):
        self.make(**save_kw)
        w = Watcher(self.dest, self.files)
        w.start()
        r = self.restore(self.archive, self.dest, drive_mount="")
        w.finish()
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.progressive, r.summary())
        self.assertTrue(r.verified)
        self.assertEqual(w.wrong, [])
        self.assertComplete(self.dest)
        self.assertNoStaging(self.dest)
        marker = pt.read_marker(self.dest)
        self.assertNotIn("state", marker, "a finished restore's marker has no state")
        return r

    def test_plain_tar(self):
        self.check_fresh(fmt="tar")

    def test_gz(self):
        self.check_fresh(fmt="gz")

    def test_parts(self):
        r = self.check_fresh(fmt="tar", part_size=1 << 20)
        self.assertGreater(r.parts, 2)

    def test_base_and_layers(self):
        self.make("tar")
        with open(os.path.join(self.local, "config.yaml"), "ab") as f:
            f.write(b"epochs: 9\n")
        os.remove(os.path.join(self.local, "images/class_01/img_004.jpg"))
        h.write_bytes(os.path.join(self.local, "images/class_09/new.jpg"), pt._random(5000, 9))
        r2 = self.save(format="tar")
        self.assertEqual(r2.action, "layer")
        with open(os.path.join(self.local, "tokenizer/merges.txt"), "ab") as f:
            f.write(b"zz 1\n")
        self.assertEqual(self.save(format="tar").action, "layer")
        self.files = pt.tree_files(self.local)
        w = Watcher(self.dest, self.files)
        w.start()
        r = self.restore(self.archive, self.dest, drive_mount="")
        w.finish()
        self.assertEqual(r.layers, 2)
        self.assertTrue(r.progressive, "every layer is indexed: " + r.summary())
        self.assertEqual(w.wrong, [], "a file visible before its final content")
        self.assertComplete(self.dest)

    def read_ahead_taken(self, **restore_kw):
        """(the RestoreResult or the error raised, [(stored offset asked, whether the
        read-ahead served it)] of each read); checks that no reader thread outlives it."""
        asked, take = [], ba._ReadAhead.take

        def spy(read_ahead, source, stored_offset):
            stage = take(read_ahead, source, stored_offset)
            asked.append((stored_offset, stage is not None))
            return stage
        threads = threading.active_count()
        with mock.patch.object(ba._ReadAhead, "take", spy):
            try:
                outcome = self.restore(self.archive, self.dest, drive_mount="", **restore_kw)
            except ba.BootstrapError as exc:
                outcome = exc
        self.assertTrue(h.wait_for(lambda: threading.active_count() == threads, timeout=5),
                        "a reader thread outlived the restore")
        return outcome, asked

    def check_read_ahead_taken(self, fmt):
        self.make(fmt)
        r, asked = self.read_ahead_taken()
        self.assertTrue(r.progressive, r.summary())
        self.assertTrue(asked and asked[0][1],
                        "the first read did not take what was read ahead: %s" % asked)
        self.assertComplete(self.dest)
        self.assertLessEqual(r.archive_bytes, os.path.getsize(self.archive))

    def test_a_fresh_restore_reads_a_tar_while_it_fetches_the_index(self):
        self.check_read_ahead_taken("tar")

    def test_a_fresh_restore_reads_a_tar_gz_while_it_fetches_the_index(self):
        self.check_read_ahead_taken("gz")

    def test_no_read_ahead_for_a_partial_restore(self):
        self.make("tar")
        r, asked = self.read_ahead_taken(only=["weights/**"])
        self.assertEqual(r.only["patterns"], ["weights/**"])
        self.assertNotIn(True, [served for _, served in asked], "--only took a read-ahead")

    def test_a_tampered_index_stops_the_read_ahead_too(self):
        self.make("tar")
        pt.tamper_index(self.archive)
        error, asked = self.read_ahead_taken()
        self.assertIsInstance(error, ba.ChecksumMismatch)
        self.assertEqual(asked, [])
        self.assertFalse(os.path.exists(self.dest))

    @h.slow  # a second or more: make test-slow
    def test_marker_says_restoring_until_the_end_and_files_appear_in_archive_order(self):
        self.make("tar")
        url = self.slow_local()
        w = Watcher(self.dest, self.files)
        w.start()
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", self.restore(
            url, self.dest, retry_for=5.0, drive_mount="")), daemon=True)
        t.start()
        self.assertTrue(h.wait_for(lambda: len(w.seen) >= 3, timeout=30),
                        "no file visible while the slow restore runs")
        marker = pt.read_marker(self.dest)
        self.assertEqual(marker and marker.get("state"), "restoring")
        self.assertTrue(t.is_alive(), "the slow restore already ended; nothing was observed")
        self.full_speed()
        t.join(60)
        w.finish()
        self.assertIn("r", out, "the restore raised")
        self.assertTrue(out["r"].progressive)
        self.assertEqual(w.wrong, [])
        self.assertIn("restoring", w.states)
        self.assertNotIn("state", pt.read_marker(self.dest))
        self.assertComplete(self.dest)
        # files appear in archive order (a scan of the watcher may see a few at once)
        order = self.file_order()
        first = min(w.seen, key=w.seen.get)
        self.assertIn(first, order[:5], "the first file visible is not one of the first")
        self.assertLessEqual(w.seen["config.yaml"], w.seen[order[-1]])


    def test_https_with_range_is_progressive_too(self):
        """The spec: a seekable source is a file or parts on a mount, https with Range, s3/gs."""
        self.make("tar")
        url = self.slow_http(chunk=1 << 20, delay=0)
        r = self.restore(url, self.dest, retry_for=5.0)
        self.assertTrue(r.progressive, r.summary())
        self.assertComplete(self.dest)


class DamagedMidwayTests(ProgressiveCase):
    """A plain tar with bytes in the middle of DAMAGED's data changed."""

    def fail_midway(self, resign, same_identity=False):
        self.make("tar")
        original_sidecar = pt.sidecar_text(self.archive)
        st = os.stat(self.archive)
        original, _ = pt.damage_member(self.archive, DAMAGED)
        if same_identity:  # bytes that rotted in place: size and mtime as saved
            os.utime(self.archive, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.identity = (st.st_atime_ns, st.st_mtime_ns) if same_identity else None
        if resign:  # the sidecar vouches for the damaged whole: only the index catches it
            pt.resign(self.archive, self.saved.sha256)
        w = Watcher(self.dest, self.files)
        w.start()
        try:
            self.restore(self.archive, self.dest, drive_mount="")
        except ba.BootstrapError as exc:
            e = exc
        else:
            self.fail("a damaged member restored without an error")
        w.finish()
        self.assertIn(type(e).__name__, ("ChecksumMismatch", "CorruptArchive"), str(e))
        self.assertIn(e.exit_code, (5, 7))
        self.assertEqual(w.wrong, [], "a reader saw a wrong file")
        self.assertTrue(os.path.isdir(self.dest), "verified files should stay")
        self.assertOnlyVerified(self.dest)
        self.assertFalse(os.path.exists(os.path.join(self.dest, DAMAGED)),
                         "the damaged file is visible")
        order = self.file_order()
        earlier = order[:order.index(DAMAGED)]
        missing = [p for p in earlier if not os.path.isfile(os.path.join(self.dest, p))]
        self.assertEqual(missing, [], "files before the damage are not kept")
        marker = pt.read_marker(self.dest)
        self.assertEqual(marker.get("state"), "incomplete", marker)
        self.assertTrue(marker.get("reason"), "the marker records no reason")
        self.assertEqual(marker.get("exit_code"), e.exit_code)
        return e, original, original_sidecar, earlier

    def resume(self, original, original_sidecar, earlier):
        inodes = {p: os.stat(os.path.join(self.dest, p)).st_ino for p in earlier}
        pt.restore_bytes(self.archive, original)
        if self.identity:
            os.utime(self.archive, ns=self.identity)
        with open(self.archive + ".sha256", "w") as f:
            f.write(original_sidecar)
        w = Watcher(self.dest, self.files)
        w.start()
        r = self.restore(self.archive, self.dest, drive_mount="")
        w.finish()
        self.assertEqual(r.action, "restored")
        self.assertTrue(r.progressive)
        self.assertEqual(w.wrong, [])
        self.assertComplete(self.dest)
        self.assertNotIn("state", pt.read_marker(self.dest))
        rewritten = [p for p in earlier if os.stat(os.path.join(self.dest, p)).st_ino != inodes[p]]
        self.assertEqual(rewritten, [], "the resume rewrote files it had verified")

    def test_damage_in_place_then_repaired_resumes(self):
        """The same file (size, mtime) read damaged once, then read right: a resume."""
        e, original, sidecar, earlier = self.fail_midway(resign=False, same_identity=True)
        self.resume(original, sidecar, earlier)

    def test_damage_with_the_sidecar_stale_keeps_verified_files_then_resumes(self):
        """The damaged archive replaced by an intact copy (a new upload, same bytes as saved)."""
        e, original, sidecar, earlier = self.fail_midway(resign=False)
        self.resume(original, sidecar, earlier)

    def test_damage_the_sidecar_vouches_for_keeps_verified_files_then_resumes(self):
        e, original, sidecar, earlier = self.fail_midway(resign=True)
        self.resume(original, sidecar, earlier)

    def drop_last_journal_line(self):
        """What a kill between a file's rename into place and its journal line leaves;
        returns that file's path."""
        journal = os.path.join(self.dest, ".bootstrap_assets.installed")
        with open(journal) as f:
            lines = f.read().splitlines()
        with open(journal, "w") as f:
            f.write("".join(line + "\n" for line in lines[:-1]))
        return lines[-1].split(" ", 3)[3]

    def test_a_file_renamed_into_place_before_its_journal_line_is_kept_on_resume(self):
        """A kill between a file's rename into place and its journal line leaves a file the
        journal does not name: its content is hashed against the plan, and it is kept, not
        taken for a local change (exit 9)."""
        e, original, sidecar, earlier = self.fail_midway(resign=True)
        self.drop_last_journal_line()
        self.resume(original, sidecar, earlier)

    def test_a_file_changed_in_place_and_not_journalled_is_a_local_change(self):
        e, original, sidecar, earlier = self.fail_midway(resign=True)
        changed = self.drop_last_journal_line()
        with open(os.path.join(self.dest, changed), "r+b") as f:
            f.write(b"X")
        pt.restore_bytes(self.archive, original)
        with open(self.archive + ".sha256", "w") as f:
            f.write(sidecar)
        e2 = self.foreground_error(self.archive, self.dest)
        self.assertEqual(getattr(e2, "exit_code", None), 9, e2)
        self.assertIn(changed, str(e2))

    def test_cli_exit_code_and_message_name_the_file(self):
        self.make("tar")
        pt.damage_member(self.archive, DAMAGED)
        rc, out, err = self.run_main(["restore", "--archive", self.archive, "--dest", self.dest,
                                      "--quiet", "--drive-mount", ""])
        self.assertIn(rc, (5, 7), err)
        self.assertIn("img_010.jpg", err, "the message should name the damaged file")
        self.assertEqual(pt.read_marker(self.dest).get("exit_code"), rc)

    def test_a_rerun_on_a_still_damaged_archive_fails_the_same_way_and_keeps_the_files(self):
        e, _, _, earlier = self.fail_midway(resign=False)
        e2 = self.foreground_error(self.archive, self.dest)
        self.assertIsNotNone(e2)
        self.assertEqual((type(e2), e2.exit_code), (type(e), e.exit_code))
        self.assertOnlyVerified(self.dest)
        self.assertTrue(all(os.path.isfile(os.path.join(self.dest, p)) for p in earlier))
        self.assertEqual(pt.read_marker(self.dest).get("state"), "incomplete")

    def test_a_new_save_after_the_failure_is_restored_exactly(self):
        """Resume never keeps a file the new index does not vouch for."""
        self.fail_midway(resign=False)
        with open(os.path.join(self.local, "config.yaml"), "wb") as f:
            f.write(b"model: bigger\n")
        os.remove(os.path.join(self.local, "tokenizer/vocab.json"))
        self.save(incremental="never", format="tar")
        self.files = pt.tree_files(self.local)
        r = self.restore(self.archive, self.dest, drive_mount="")
        self.assertEqual(r.action, "restored")
        self.assertComplete(self.dest)
        with open(os.path.join(self.dest, "config.yaml"), "rb") as f:
            self.assertEqual(f.read(), b"model: bigger\n")

    def test_resume_over_http_reads_only_what_is_missing(self):
        self.make("tar")
        original_sidecar = pt.sidecar_text(self.archive)
        original, damaged = pt.damage_member(self.archive, DAMAGED)
        url = self.slow_http(data=damaged, chunk=1 << 20, delay=0)
        self.full_speed()
        e = self.foreground_error(url, self.dest, retry_for=2.0)
        self.assertIsNotNone(e, "the damaged archive restored")
        self.assertEqual(pt.read_marker(self.dest).get("state"), "incomplete")
        self.http.put(URL_PATH, original)
        self.http.put(URL_PATH + ".sha256", original_sidecar.encode())
        before = self.http.sent(URL_PATH)
        r = self.restore(url, self.dest, retry_for=2.0)
        read = self.http.sent(URL_PATH) - before
        self.assertTrue(r.progressive)
        self.assertComplete(self.dest)
        info = next(m for m in pt.members(original) if pt.rel(m.name) == DAMAGED)
        need = len(original) - info.offset + (1 << 16)
        self.assertLessEqual(read, need, "the resume read %d bytes; from the damaged member on "
                             "there are %d" % (read, len(original) - info.offset))


if __name__ == "__main__":
    unittest.main(verbosity=2)
