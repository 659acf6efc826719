"""Versions (ARCHIVE.1, .2 ... kept by full saves), incremental layers, compaction, status."""
import json
import os
import shutil

import helpers as h
from helpers import ba

TOP = h.SAVE_TOP
DELETED = ".bootstrap_assets.deleted"
SIZE_RE = r"\d[\d.,]*\s*(?:bytes|B|KB|MB|GB|KiB|MiB|GiB)\b"


def layer_files(archive):
    return sorted((n for n in h.archive_family(archive) if ".layer-" in n),
                  key=lambda n: (n.rsplit(".layer-", 1)[0], int(n.rsplit("-", 1)[1])))


class VersionTests(h.SaveTestCase):

    def set_version(self, i):
        h.write_bytes(os.path.join(self.local, "version.txt"), b"version %d\n" % i)
        h.write_bytes(os.path.join(self.local, "v%d" % i, "only.bin"), h.rand_bytes(4000, i))
        return h.saved_view(self.local)

    def test_three_full_saves_keep_two(self):
        views = []
        for i in range(3):
            views.append(self.set_version(i))
            r = self.save(incremental="never", keep=2)
            self.assertEqual(r.action, "saved")
        names = ["assets.tar.gz", "assets.tar.gz.1", "assets.tar.gz.2"]
        self.assertEqual(r.versions, names)
        self.assertEqual(h.archive_family(self.archive), names)
        self.assertFalse(os.path.exists(self.archive + ".3"))
        self.assertSidecarConsistent()
        for version, view in ((0, views[2]), (1, views[1]), (2, views[0])):
            for engine in h.engines():
                with self.subTest(version=version, engine=engine):
                    dest, r = self.assertRestores(view, version=version, engine=engine)
                    self.assertTrue(r.verified)
                    self.assertTrue(r.archive.endswith(".%d" % version if version else ".tar.gz"))
        self.assertBAError("SourceMissing", self.restore, self.archive, self.out(), version=3,
                           drive_mount="")
        # a fourth save drops the oldest
        views.append(self.set_version(3))
        self.save(incremental="never", keep=2)
        self.assertEqual(h.archive_family(self.archive), names)
        self.assertRestores(views[1], version=2)
        self.assertSidecarConsistent()

    def test_keep_one_and_three(self):
        for keep in (1, 3):
            with self.subTest(keep=keep):
                archive = os.path.join(self.drive, "k%d" % keep, "assets.tar.gz")
                views = []
                for i in range(5):
                    views.append(self.set_version(i))
                    self.save(archive=archive, incremental="never", keep=keep)
                want = ["assets.tar.gz"] + ["assets.tar.gz.%d" % i for i in range(1, keep + 1)]
                self.assertEqual(h.archive_family(archive), want)
                for version in range(keep + 1):
                    self.assertRestores(views[4 - version], archive=archive, version=version)
                self.assertSidecarConsistent(archive)

    def test_status_lists_current_versions_and_the_folder_state(self):
        lines = ba.status(self.archive, self.local, drive_mount="")
        self.assertEqual(lines[0], "archive %s" % self.archive)
        self.assertTrue(any("current: missing" in l for l in lines), lines)
        self.assertTrue(lines[-1].startswith("folder %s" % self.local) and "absent" in lines[-1],
                        lines)
        os.makedirs(self.local)
        self.assertIn("empty", ba.status(self.archive, self.local, drive_mount="")[-1])
        shas = []
        for i in range(3):
            self.set_version(i)
            shas.append(self.save(incremental="never").sha256)
        h.write_bytes(os.path.join(self.local, "layered.txt"), b"l1\n")
        self.assertEqual(self.save().action, "layer")
        h.write_bytes(os.path.join(self.local, "layered2.txt"), b"l2\n")
        self.assertEqual(self.save().action, "layer")
        lines = ba.status(self.archive, self.local, drive_mount="")
        self.assertEqual(len(lines), 5, lines)
        for line, label, name, sha in ((lines[1], "current", "assets.tar.gz", shas[2]),
                                       (lines[2], "--previous 1", "assets.tar.gz.1", shas[1]),
                                       (lines[3], "--previous 2", "assets.tar.gz.2", shas[0])):
            with self.subTest(label=label):
                self.assertIn("%s: %s " % (label, name), line)
                self.assertIn(sha[:16], line)
                self.assertRegex(line, SIZE_RE)
        self.assertRegex(lines[1], r"\b2 layer")
        self.assertNotRegex(lines[2], r"layer")
        self.assertIn("no local changes", lines[4])
        self.assertRegex(lines[4], r"\d+ entries")
        h.write_bytes(os.path.join(self.local, "version.txt"), b"edited locally, much longer\n")
        last = ba.status(self.archive, self.local, drive_mount="")[-1]
        self.assertRegex(last, r"1 local change")
        self.assertIn("version.txt", last)
        foreign = os.path.join(self.tmp, "foreign", TOP)
        h.write_bytes(os.path.join(foreign, "x"), b"x")
        self.assertIn("foreign", ba.status(self.archive, foreign, drive_mount="")[-1])


class LayerTests(h.SaveTestCase):

    BASE = {"a.txt": b"a\n", "keep.txt": b"keep\n" * 50, "d/x.txt": b"x\n", "d/y.txt": b"y\n",
            "f2d": b"file, later a folder\n", "gone.txt": b"gone\n",
            "dir2file/c.txt": b"c\n", "dir2file/sub/e.txt": b"e\n"}

    def make_base(self):
        for rel, data in self.BASE.items():
            h.write_bytes(os.path.join(self.local, rel), data)
        h.write_bytes(os.path.join(self.local, "pad.bin"), h.rand_bytes(200_000, 9))
        os.symlink("a.txt", os.path.join(self.local, "lnk"))
        os.symlink("keep.txt", os.path.join(self.local, "l2f"))
        os.symlink("d/x.txt", os.path.join(self.local, "f2l"))
        os.unlink(os.path.join(self.local, "f2l"))
        h.write_bytes(os.path.join(self.local, "f2l"), b"file, later a link\n")
        r = self.save()
        self.assertEqual(r.action, "saved")
        return r

    def mutate(self):
        L = self.local
        h.write_bytes(os.path.join(L, "a.txt"), b"a, modified and longer\n")
        h.write_bytes(os.path.join(L, "new.txt"), b"new\n")
        h.write_bytes(os.path.join(L, "newdir", "n.txt"), b"n\n")
        os.makedirs(os.path.join(L, "emptynew"))
        os.unlink(os.path.join(L, "gone.txt"))
        os.unlink(os.path.join(L, "f2d"))
        h.write_bytes(os.path.join(L, "f2d", "in.txt"), b"inside\n")
        shutil.rmtree(os.path.join(L, "dir2file"))
        h.write_bytes(os.path.join(L, "dir2file"), b"now a file\n")
        os.unlink(os.path.join(L, "l2f"))
        h.write_bytes(os.path.join(L, "l2f"), b"was a link\n")
        os.unlink(os.path.join(L, "f2l"))
        os.symlink("keep.txt", os.path.join(L, "f2l"))
        os.chmod(os.path.join(L, "d", "y.txt"), 0o600)
        os.utime(os.path.join(L, "d", "y.txt"), (h.MTIME, h.MTIME))  # a content-free change

    def test_layer_holds_the_changes_and_a_deleted_list_first(self):
        base = self.make_base()
        self.mutate()
        r = self.save()
        self.assertEqual(r.action, "layer")
        self.assertEqual(r.layer, 1)
        self.assertEqual(os.path.basename(r.written),
                         "assets.tar.gz.%s.layer-1" % base.sha256[:16])
        self.assertEqual(r.sha256, h.sha256_file(r.written))
        members = h.tar_members_of(r.written)
        self.assertEqual(members[0][0], DELETED)
        deleted = json.loads(h.tar_member_data(r.written, DELETED).decode())
        self.assertIsInstance(deleted, list)
        must = {TOP + "/" + p for p in ("gone.txt", "f2d", "dir2file", "l2f", "f2l")}
        may = {TOP + "/dir2file/c.txt", TOP + "/dir2file/sub", TOP + "/dir2file/sub/e.txt"}
        self.assertLessEqual(must, set(deleted), deleted)
        self.assertLessEqual(set(deleted), must | may, deleted)
        self.assertNotIn(TOP + "/a.txt", deleted)
        names = {m[0] for m in members[1:]} - {TOP}
        want = {TOP + "/" + p for p in ("a.txt", "new.txt", "newdir", "newdir/n.txt", "emptynew",
                                        "f2d", "f2d/in.txt", "dir2file", "l2f", "f2l")}
        self.assertLessEqual(want, names)
        unchanged = {TOP + "/" + p for p in ("keep.txt", "d", "d/x.txt", "pad.bin", "lnk")}
        self.assertEqual(names & unchanged, set(), "unchanged entries in the layer")
        self.assertLessEqual(names, want | {TOP + "/d/y.txt"})
        self.assertEqual(r.deleted, len(deleted))
        self.assertLess(r.bytes_written, base.bytes_written / 4)
        self.assertSidecarConsistent()

    def test_base_plus_layers_every_engine(self):
        self.make_base()
        views = [h.saved_view(self.local)]
        steps = [
            self.mutate,
            lambda: (os.unlink(os.path.join(self.local, "new.txt")),
                     shutil.rmtree(os.path.join(self.local, "f2d")),
                     h.write_bytes(os.path.join(self.local, "f2d"), b"a file again\n"),
                     h.write_bytes(os.path.join(self.local, "newdir", "m.txt"), b"m\n")),
            lambda: (h.write_bytes(os.path.join(self.local, "a.txt"), b"third\n"),
                     shutil.rmtree(os.path.join(self.local, "newdir")),
                     os.rename(os.path.join(self.local, "keep.txt"),
                               os.path.join(self.local, "renamed.txt"))),
        ]
        for i, step in enumerate(steps, 1):
            step()
            views.append(h.saved_view(self.local))
            r = self.save()
            self.assertEqual((r.action, r.layer), ("layer", i))
            for engine in h.engines():
                with self.subTest(layer=i, engine=engine):
                    dest, rr = self.assertRestores(views[-1], engine=engine)
                    self.assertTrue(rr.verified)
            self.assertEqual(self.save().action, "unchanged")
        self.assertEqual(len(layer_files(self.archive)), 3)
        self.assertSidecarConsistent()
        # a folder restored from base + layers is in step with the chain: the next change
        # makes a fourth layer from there
        dest, _ = self.restore_fresh()
        self.assertEqual(self.save(dest=dest).action, "unchanged")
        h.write_bytes(os.path.join(dest, "from_restored.txt"), b"r\n")
        r = self.save(dest=dest)
        self.assertEqual((r.action, r.layer), ("layer", 4))
        self.assertRestores(h.saved_view(dest))

    def test_symlink_retargeted(self):
        """A link whose target changed (same kind) goes into a layer that restores."""
        self.make_base()
        os.unlink(os.path.join(self.local, "lnk"))
        os.symlink("keep.txt", os.path.join(self.local, "lnk"))
        r = self.save()
        self.assertEqual(r.action, "layer")
        for engine in h.engines():
            with self.subTest(engine=engine):
                self.assertRestores(h.saved_view(self.local), engine=engine)

    def test_mode_only_change_is_saved(self):
        """chmod changes what a restore must give (modes round trip), so it is a change."""
        self.make_base()
        os.chmod(os.path.join(self.local, "a.txt"), 0o755)
        os.chmod(os.path.join(self.local, "d"), 0o700)
        r = self.save()
        self.assertNotEqual(r.action, "unchanged", "a chmod was not saved")
        self.assertRestores(h.saved_view(self.local))

    def test_incremental_never_is_always_full(self):
        self.make_base()
        for i in range(3):
            if i:
                h.write_bytes(os.path.join(self.local, "n%d.txt" % i), b"%d" % i)
            r = self.save(incremental="never")  # also with nothing changed (i == 0)
            self.assertEqual(r.action, "saved")
            self.assertEqual(r.written, self.archive)
        self.assertEqual(layer_files(self.archive), [])
        self.assertRestores(h.saved_view(self.local))
        self.assertSidecarConsistent()

    def test_incremental_always_even_when_large(self):
        self.make_base()
        h.write_bytes(os.path.join(self.local, "pad.bin"), h.rand_bytes(200_000, 10))
        h.write_bytes(os.path.join(self.local, "more.bin"), h.rand_bytes(200_000, 11))
        r = self.save(incremental="always")
        self.assertEqual(r.action, "layer")
        self.assertRestores(h.saved_view(self.local))
        # the same change with auto would have been a full save
        h.write_bytes(os.path.join(self.local, "more.bin"), h.rand_bytes(200_000, 12))
        self.assertEqual(self.save().action, "saved")
        self.assertRestores(h.saved_view(self.local))
        self.assertSidecarConsistent()

    def test_compaction_past_half_of_the_base(self):
        h.write_bytes(os.path.join(self.local, "pad.bin"), h.rand_bytes(200_000, 9))
        base = self.save()
        self.assertEqual(base.format, "tar")
        views, actions = [], []
        for i in range(3):  # 40 KB each: 40, 80 (< 50 % of ~200 KB), then 120 (> 50 %)
            h.write_bytes(os.path.join(self.local, "add%d.bin" % i), h.rand_bytes(40_000, 20 + i))
            r = self.save()
            actions.append(r.action)
            views.append(h.saved_view(self.local))
        self.assertEqual(actions, ["layer", "layer", "saved"])
        self.assertRestores(views[-1])
        old_layers = [n for n in layer_files(self.archive) if base.sha256[:16] in n]
        self.assertEqual(len(old_layers), 2, "the old base's layers go with it to .1")
        self.assertTrue(os.path.exists(self.archive + ".1"))
        self.assertEqual(h.sha256_file(self.archive + ".1"), base.sha256)
        status = ba.status(self.archive, self.local, drive_mount="")
        self.assertNotRegex(status[1], "layer")
        self.assertRegex(status[2], r"--previous 1: .*\b2 layer")
        self.assertSidecarConsistent()
        # a change that alone exceeds half the base is a full save straight away
        h.write_bytes(os.path.join(self.local, "pad.bin"), h.rand_bytes(200_000, 30))
        self.assertEqual(self.save().action, "saved")
        self.assertRestores(h.saved_view(self.local))

    def test_version_restore_includes_its_layers(self):
        """restore(version=1) gives ARCHIVE.1 plus its layers: the tree as last saved on it."""
        self.make_base()
        self.mutate()
        self.assertEqual(self.save().action, "layer")
        want1 = h.saved_view(self.local)
        h.write_bytes(os.path.join(self.local, "after.txt"), b"after\n")
        self.assertEqual(self.save(incremental="never").action, "saved")
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, r = self.assertRestores(want1, version=1, engine=engine)
        rc, out, err = self.run_main(["restore", "--previous", "1", "--archive", self.archive,
                                      "--dest", self.out(), "--drive-mount", "", "--quiet"])
        self.assertEqual(rc, 0, err)

    def test_dropped_base_takes_its_layers(self):
        self.make_base()
        h.write_bytes(os.path.join(self.local, "x.txt"), b"x")
        self.assertEqual(self.save(keep=1).action, "layer")
        first_layers = layer_files(self.archive)
        self.assertEqual(len(first_layers), 1)
        self.save(keep=1, incremental="never")  # base A (with its layer) -> .1
        self.assertTrue(set(first_layers) <= set(layer_files(self.archive)))
        h.write_bytes(os.path.join(self.local, "y.txt"), b"y")
        self.save(keep=1, incremental="never")  # A is dropped: so is its layer
        self.assertEqual(h.archive_family(self.archive), ["assets.tar.gz", "assets.tar.gz.1"])
        self.assertSidecarConsistent()
        self.assertRestores(h.saved_view(self.local))


class LayerOverRestoredArchiveTests(h.SaveTestCase):
    """Layers on top of archives this tool did not write (restored first, then saved)."""

    def foreign_tree(self, root):
        h.write_bytes(os.path.join(root, "a.txt"), b"a\n")
        h.write_bytes(os.path.join(root, "pad.bin"), h.rand_bytes(100_000, 4))
        h.write_bytes(os.path.join(root, "d", "x.txt"), b"x\n")
        os.symlink("a.txt", os.path.join(root, "lnk"))
        return root

    def check(self, archive, local):
        self.restore(archive, local, drive_mount="")
        self.assertEqual(self.save(dest=local, archive=archive).action, "unchanged")
        h.write_bytes(os.path.join(local, "new.txt"), b"new\n")
        os.unlink(os.path.join(local, "d", "x.txt"))
        h.write_bytes(os.path.join(local, "a.txt"), b"a changed\n")
        r = self.save(dest=local, archive=archive)
        self.assertEqual(r.action, "layer")
        want = h.saved_view(local)
        for engine in h.engines():
            with self.subTest(engine=engine):
                self.assertRestores(want, archive=archive, engine=engine)
        self.assertSidecarConsistent(archive)

    def test_archive_of_any_layout_with_or_without_sidecar_takes_a_layer(self):
        cases = [("top folder named like the local one", "_assets", "top", True),
                 ("top folder with another name", "assets_v1", "top", True),
                 ("./ contents", "_assets", "contents", True),
                 ("no sidecar", "_assets", "top", False),
                 ("gz, ./ contents, no sidecar", "stuff", "contents", False)]
        for i, (label, top, style, sidecar) in enumerate(cases):
            with self.subTest(label):
                src = self.foreign_tree(os.path.join(self.tmp, "made%d" % i, top))
                archive = h.tar_tree(src, os.path.join(self.drive, "c%d" % i, "assets.tar.gz"),
                                     comp="gz", style=style)
                if sidecar:
                    h.write_sidecar(archive)
                self.check(archive, os.path.join(self.tmp, "local%d" % i, TOP))

    def test_restored_into_differently_named_folder(self):
        h.save_tree(self.local, big=False)
        self.save()
        other = os.path.join(self.tmp, "elsewhere", "my_assets")
        self.restore(self.archive, other, drive_mount="")
        h.write_bytes(os.path.join(other, "added.txt"), b"added\n")
        self.assertEqual(self.save(dest=other).action, "layer")
        self.assertRestores(h.saved_view(other))


if __name__ == "__main__":
    import unittest
    unittest.main()
