"""Issue 18 point 4, demand first: in a background restore, job.wait(paths) and
job.files(pattern) for files the stream has not reached yet read them ahead of it by ranges
(a plain tar, a .tar.gz from its restart points, parts); the stream reads past them
without installing them again; each is verified against the index like the stream's (a
damaged one ends the restore with its own error, exit 7, nothing unverified visible); a
tampered index is still exit 5. The command line: `wait PATH` asks a detached
`restore --background` for PATH first through the request file beside dest.

The source is slowed (tests/progressive_case.SlowReads: every read of the archive sleeps;
or HTTPFixture trickling) so that the stream cannot reach the end of the archive before
what is asked for is seen in place: the order is deterministic.
"""
import collections
import os
import shutil
import threading
import time
import unittest
from unittest import mock

import helpers as h
import progressive_tools as pt
from helpers import ba
from progressive_case import ProgressiveCase


class Installs:
    """Counts _Installer.file calls by path (and keeps their order) while active."""

    def __init__(self):
        self.order, self.count, self.lock = [], collections.Counter(), threading.Lock()
        real = ba._Installer.file
        owner = self

        def file(installer, entry, pieces):
            real(installer, entry, pieces)
            with owner.lock:
                owner.order.append(entry.path)
                owner.count[entry.path] += 1
        self.patch = mock.patch.object(ba._Installer, "file", file)

    def __enter__(self):
        self.patch.start()
        return self

    def __exit__(self, *exc):
        self.patch.stop()


class DemandFirstTests(ProgressiveCase):

    def setUp(self):
        super().setUp()
        # the small tree (about 5.5 MB) is read ahead of from its second MiB on
        patch = mock.patch.object(ba, "AHEAD_GAP", 1 << 20)
        patch.start()
        self.addCleanup(patch.stop)

    def installs(self):
        installs = Installs().__enter__()
        self.addCleanup(installs.__exit__)
        return installs

    def check_last_files_first(self, fmt="tar", **save_kw):
        self.make(fmt, **save_kw)
        order = self.file_order()
        asked = order[-3:]
        installs = self.installs()
        job = self.background(self.slow_local(0.3))
        job.wait(*asked, timeout=30)
        self.assertFalse(job.done, "wait returned only at the end")
        for r in asked:
            with open(os.path.join(self.dest, r), "rb") as f:
                self.assertEqual(pt.sha256(f.read()), pt.sha256(self.files[r]), r)
        self.assertFalse(os.path.exists(os.path.join(self.dest, order[-4])),
                         "the stream reached the end first: nothing was read ahead")
        with installs.lock:
            before = list(installs.order)
        self.assertLessEqual(set(asked), set(before))
        self.assertLess(len(before), len(order) // 2,
                        "the files asked for were not installed before most others")
        self.full_speed()
        result = job.result(timeout=60)
        self.assertComplete(self.dest)
        twice = [path for path, n in installs.count.items() if n > 1]
        self.assertEqual(twice, [], "installed twice")
        self.assertEqual(sorted(installs.count), sorted(order))
        self.assertEqual(job.progress.files, len(order))
        asked_bytes = sum(len(self.files[r]) + 3 * 512 for r in asked)
        if fmt == "gz":  # read from the restart point before them: at most that far back
            asked_bytes += ba.RESTART_EVERY
        self.assertLessEqual(result.archive_bytes, len(pt.stored(self.archive)) + asked_bytes)
        return job

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_a_plain_tar_gives_the_last_files_first(self):
        self.check_last_files_first("tar")

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_a_gz_gives_the_last_files_first_from_their_restart_points(self):
        self.check_last_files_first("gz")

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_parts_give_the_last_files_first(self):
        self.check_last_files_first("tar", part_size=1 << 20)

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_a_file_of_a_layer_comes_ahead_of_the_base_in_its_final_content(self):
        self.make("tar")
        base_order = self.file_order()
        h.write_bytes(os.path.join(self.local, "images/class_09/new.jpg"), pt._random(5000, 9))
        with open(os.path.join(self.local, base_order[-1]), "ab") as f:
            f.write(b"changed")
        self.assertEqual(self.save(format="tar").action, "layer")
        self.files = pt.tree_files(self.local)
        installs = self.installs()
        job = self.background(self.slow_local(0.3))  # the base is slow, the layer is not
        job.wait("images/class_09/new.jpg", base_order[-1], timeout=30)
        self.assertFalse(job.done)
        for r in ("images/class_09/new.jpg", base_order[-1]):
            with open(os.path.join(self.dest, r), "rb") as f:
                self.assertEqual(f.read(), self.files[r], r)
        self.assertFalse(os.path.exists(os.path.join(self.dest, base_order[-3])),
                         "the stream reached the end of the base first")
        self.full_speed()
        self.assertEqual(job.result(timeout=60).layers, 1)
        self.assertComplete(self.dest)
        self.assertEqual([p for p, n in installs.count.items() if n > 1], [],
                         "installed twice")

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_files_iterator_asks_for_its_next_files(self):
        self.make("tar")
        order = self.file_order()
        last_class = os.path.dirname(order[-1])  # the folder the archive ends with
        before = [r for r in order if not r.startswith(last_class + "/")][-1]
        pattern = last_class + "/**"
        # the stream reaches the folder before it after 5 reads (about 4.4 MB): 3 s or
        # more; the reader asks after AHEAD_PATIENCE, its files come in one read
        job = self.background(self.slow_local(0.6))
        first = next(iter(job.files(pattern)))
        self.assertTrue(first.startswith(os.path.join(self.dest, last_class)), first)
        self.assertFalse(os.path.exists(os.path.join(self.dest, before)),
                         "the stream reached that folder first: nothing was read ahead")
        self.full_speed()
        got = [os.path.relpath(p, self.dest) for p in job.files(pattern)]
        self.assertEqual(sorted(got), sorted(r for r in order if r.startswith(last_class + "/")))
        job.result(timeout=60)
        self.assertComplete(self.dest)

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_files_asks_for_nothing_while_a_wait_is_under_way(self):
        self.make("tar")
        order = self.file_order()
        last_class = os.path.dirname(order[-1])
        installs = self.installs()
        job = self.background(self.slow_local(0.3))
        waiting = threading.Thread(target=job.wait, args=("weights/",), kwargs={"timeout": 30})
        waiting.start()
        self.assertTrue(h.wait_for(lambda: job._waits == 1, timeout=10))
        seen = []
        reader = threading.Thread(target=lambda: seen.extend(job.files(last_class + "/**")))
        reader.start()
        waiting.join(30)
        with installs.lock:
            before = list(installs.order)
        self.assertTrue(all(r in before for r in order if r.startswith("weights/")))
        self.assertEqual([r for r in before if r.startswith(last_class + "/")], [],
                         "files() read ahead of what wait() waits for")
        self.full_speed()
        reader.join(60)
        self.assertEqual(len(seen), sum(r.startswith(last_class + "/") for r in order))
        job.result(timeout=60)
        self.assertComplete(self.dest)

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_what_the_stream_is_about_to_give_is_not_read_ahead(self):
        self.make("tar")
        installs = self.installs()
        job = self.background(self.slow_local(0.3))
        job.wait("config.yaml", "tokenizer/", timeout=30)
        self.full_speed()
        result = job.result(timeout=60)
        self.assertComplete(self.dest)
        self.assertLessEqual(result.archive_bytes, len(pt.stored(self.archive)))
        self.assertEqual(installs.order, self.file_order())

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_a_damaged_member_read_ahead_ends_the_restore_with_its_error(self):
        self.make("tar")
        order = self.file_order()
        pt.damage_member(self.archive, order[-1])
        fg = self.foreground_error(self.archive, self.dest)
        self.assertEqual(fg.exit_code, 7)
        shutil.rmtree(self.dest)
        installs = self.installs()
        job = self.background(self.slow_local(0.6))  # the stream: 3 s or more to the end
        with self.assertRaises(ba.BootstrapError) as cm:
            job.wait(order[-1], timeout=30)
        self.assertFalse(os.path.exists(os.path.join(self.dest, order[-2])),
                         "the error came from the stream, at the end")
        self.assertIs(type(cm.exception), type(fg))
        self.assertEqual(str(cm.exception), str(fg))
        self.assertTrue(job.done)
        self.assertNotIn(order[-1], installs.order)
        self.assertFalse(os.path.exists(os.path.join(self.dest, order[-1])))
        self.assertOnlyVerified(self.dest)
        self.assertEqual(pt.read_marker(self.dest)["state"], "incomplete")
        prefix = ba._staging_prefix(self.dest)
        self.assertEqual([n for n in os.listdir(os.path.dirname(self.dest))
                          if n.startswith(prefix)], [], "a staging folder stays")

    @h.slow  # a slowed source watched while it runs: a second or more
    def test_a_tampered_index_is_still_exit_5_and_installs_nothing(self):
        self.make("tar")
        order = self.file_order()
        pt.tamper_index(self.archive)
        job = self.background(self.slow_local(0.05))
        with self.assertRaises(ba.ChecksumMismatch) as cm:
            job.wait(order[-1], timeout=30)
        self.assertEqual(cm.exception.exit_code, 5)
        self.assertFalse(os.path.exists(os.path.join(self.dest, order[-1])))
        self.assertEqual([p for p in pt.visible_entries(self.dest) if not os.path.isdir(
            os.path.join(self.dest, p))] if os.path.isdir(self.dest) else [], [])


class SpacePlanTests(ProgressiveCase):
    """Drive's cache on dest's disk holds a file whole while it is open (see
    _restore_space_plan): a read ahead of the one file the stream reads too adds nothing; of
    another part its size, set aside while it runs, or no read ahead when the disk lacks it."""

    def demand(self, source, in_cache, free):
        space = ba._SpaceGuard(self.tmp, 0, in_cache)
        space.free = free
        demand = ba._Demand([(source, None, "tar")], {}, set(), None, space)
        self.addCleanup(demand.halt)
        return demand, space

    def test_one_file_read_by_the_stream_too_takes_no_more_room(self):
        self.make("tar")
        source = ba._PathSource(self.archive, 2.0, "")
        demand, space = self.demand(source, source.size, 10 * source.size)
        self.assertEqual(demand._room(source), 0)
        self.assertEqual(space.in_cache, source.size)

    def test_another_part_is_set_aside_or_not_read_ahead_without_room(self):
        self.make("tar", part_size=1 << 20)
        source = ba._PathSource(self.archive, 2.0, "")
        part = max(size for _, size, _ in source.files)
        self.assertGreater(len(source.files), 2)
        demand, space = self.demand(source, 2 * part, ba.SPACE_MARGIN + 3 * part + 4096)
        self.assertEqual(demand._room(source), part)
        self.assertEqual(space.in_cache, 3 * part)
        space.in_cache = 2 * part
        space.free -= 4096 + 1
        self.assertIsNone(demand._room(source), "read ahead without room for its part")
        self.assertEqual(space.in_cache, 2 * part)

    def test_no_cache_on_dests_disk_no_room_needed(self):
        self.make("tar", part_size=1 << 20)
        source = ba._PathSource(self.archive, 2.0, "")
        demand, _ = self.demand(source, 0, 0)
        self.assertEqual(demand._room(source), 0)


class RequestFileTests(h.BATestCase):
    """`wait PATH` appends a JSON list of its patterns a line to .DEST.restore.want; the
    restore --background process reads each complete line once."""

    def test_each_line_once_and_a_file_begun_again_from_its_start(self):
        dest = os.path.join(self.tmp, "_assets")
        demand = ba._Demand([], {}, set(), None, None, ba._demand_path(dest))
        demand.halt()  # its thread no longer looks: this test does
        got = []
        demand._schedule = lambda patterns, limit: got.append(patterns)
        ba._ask_background(dest, ["weights/", "config.yaml"])
        with open(ba._demand_path(dest), "a") as f:
            f.write('not json\n["images/**"]\n["tok')
        demand._requests()
        self.assertEqual(got, [("weights/", "config.yaml"), ("images/**",)])
        with open(ba._demand_path(dest), "a") as f:
            f.write('enizer/"]\n')
        demand._requests()
        demand._requests()
        self.assertEqual(got[2:], [("tokenizer/",)])
        os.unlink(ba._demand_path(dest))  # as restore --background does before it starts
        ba._ask_background(dest, ["a"])
        demand._requests()
        self.assertEqual(got[3:], [("a",)])


class CommandLineDemandTests(ProgressiveCase):

    @h.slow  # a detached restore over a trickling server: a few seconds
    def test_wait_asks_the_detached_restore_for_its_paths_first(self):
        self.make("tar")
        order = self.file_order()
        url = self.slow_http(chunk=16384, delay=0.04)  # ~400 KB/s: the whole in ~14 s
        rc, out, err = self.run_main(["restore", "--background", "--archive", url, "--dest",
                                      self.dest, "--retry-for", "5"])
        self.assertEqual(rc, 0, err)
        self.assertTrue(h.wait_for(lambda: pt.lock_pid(self.dest), timeout=15))
        pid = pt.lock_pid(self.dest)
        t0 = time.monotonic()
        rc, out, err = self.run_main(["wait", order[-1], "--dest", self.dest, "--timeout",
                                      "30", "--quiet"])
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        with open(os.path.join(self.dest, order[-1]), "rb") as f:
            self.assertEqual(f.read(), self.files[order[-1]])
        self.assertLess(took, 8.0, "wait took as long as the stream")
        self.assertFalse(os.path.exists(os.path.join(self.dest, order[-2])),
                         "the stream reached the end first: nothing was read ahead")
        self.full_speed()
        rc, out, err = self.run_main(["wait", "--dest", self.dest, "--timeout", "60"])
        self.assertEqual(rc, 0, err)
        self.assertComplete(self.dest)
        self.assertTrue(h.wait_for(lambda: not os.path.exists(os.path.join(
            os.path.dirname(self.dest), ".%s.restore.want" % os.path.basename(self.dest))),
            timeout=10), "the request file stays after the restore")
        h.wait_for(lambda: pt.lock_pid(self.dest) != pid, timeout=10)


if __name__ == "__main__":
    unittest.main()
