"""Archives as users really bring them (found by trying the tool as a new user would):
absolute links inside the folder, empty archives, `tar czf a.tgz ./_assets`, zips made by
macOS Finder and by Windows tools. Each promise with every engine where engines apply."""
import os
import shutil
import subprocess
import tarfile

import helpers as h
from helpers import D, F, L

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40)


class AbsoluteLinkTests(h.SaveTestCase):
    """A link to an absolute path inside the folder survives save -> restore."""

    def test_save_stores_absolute_link_inside_folder_relative_and_restore_keeps_it(self):
        h.write_bytes(os.path.join(self.local, "checkpoints", "ckpt-1000.pt"), b"weights")
        os.makedirs(os.path.join(self.local, "runs", "a"))
        os.symlink(os.path.join(self.local, "checkpoints", "ckpt-1000.pt"),
                   os.path.join(self.local, "latest.pt"))
        os.symlink(os.path.join(self.local, "checkpoints"),
                   os.path.join(self.local, "runs", "a", "ckpts"))
        r = self.save()
        self.assertEqual(r.action, "saved")
        self.assertEqual(list(r.warnings), [])
        links = {n: t for n, kind, _, t in h.tar_members_of(self.archive) if kind == tarfile.SYMTYPE}
        self.assertEqual(links, {"_assets/latest.pt": "checkpoints/ckpt-1000.pt",
                                 "_assets/runs/a/ckpts": "../../checkpoints"})
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, _ = self.restore_fresh(engine=engine)
                self.assertEqual(os.readlink(os.path.join(dest, "latest.pt")),
                                 "checkpoints/ckpt-1000.pt")
                self.assertEqual(os.readlink(os.path.join(dest, "runs/a/ckpts")),
                                 "../../checkpoints")
                with open(os.path.join(dest, "latest.pt"), "rb") as f:
                    self.assertEqual(f.read(), b"weights")
        # the local folder still has its absolute links, and counts as unchanged
        self.assertEqual(self.save().action, "unchanged")

    def test_save_skips_absolute_link_leaving_folder_with_warning(self):
        h.write_bytes(os.path.join(self.local, "keep.txt"), b"keep")
        outside = h.write_bytes(os.path.join(self.tmp, "local", "other", "x.txt"), b"x")
        os.symlink(outside, os.path.join(self.local, "to_sibling"))
        os.symlink(self.local + "/../other/x.txt", os.path.join(self.local, "dotdot"))
        r = self.save()
        for name in ("to_sibling", "dotdot"):
            self.assertTrue(any(name in w and "leaves the folder" in w for w in r.warnings),
                            r.warnings)
        names = [n for n, *_ in h.tar_members_of(self.archive)]
        self.assertNotIn("_assets/to_sibling", names)
        self.assertNotIn("_assets/dotdot", names)


class AbsoluteLinkRestoreTests(h.BATestCase):

    def _archive(self, members, comp="gz", name="a.tar.gz"):
        return h.write_bytes(os.path.join(self.subdir("arch-"), name), h.archive_bytes(members, comp))

    def test_restore_accepts_absolute_link_into_dest_and_writes_it_relative(self):
        for engine in h.engines():
            for layout in ("top", "dotted_top", "contents", "zip"):
                with self.subTest(engine=engine, layout=layout):
                    dest = os.path.join(self.subdir(), "content", "_assets")
                    pre = {"top": "_assets/", "dotted_top": "./_assets/", "contents": "./",
                           "zip": "_assets/"}[layout]
                    members = [D(pre + "checkpoints"), F(pre + "checkpoints/ckpt-1000.pt", b"w"),
                               L(pre + "latest.pt", dest + "/checkpoints/ckpt-1000.pt"),
                               # its folder has no member of its own
                               L(pre + "runs/a/best.pt", dest + "/checkpoints/ckpt-1000.pt"),
                               L(pre + "self", dest),
                               # a link through the absolute one: judged once it is known
                               L(pre + "via", "latest.pt")]
                    comp = "zip" if layout == "zip" else "gz"
                    r = self.restore(self._archive(members, comp), dest, engine=engine)
                    snap = h.snapshot(dest)
                    self.assertEqual(snap["latest.pt"], ("link", "checkpoints/ckpt-1000.pt"))
                    self.assertEqual(snap["runs/a/best.pt"], ("link", "../../checkpoints/ckpt-1000.pt"))
                    self.assertEqual(snap["self"], ("link", "."))
                    self.assertEqual(snap["via"], ("link", "latest.pt"))
                    with open(os.path.join(dest, "runs/a/best.pt"), "rb") as f:
                        self.assertEqual(f.read(), b"w")
                    self.assertNoStaging(dest)
                    # the marker records what is on disk: the next restore finds no change
                    self.assertEqual(self.restore(r.archive, dest, engine=engine).action, "unchanged")

    def test_absolute_link_is_judged_against_dest_not_the_staging_folder(self):
        """The staging folder is dest's sibling: a link into it (or beside dest) leaves."""
        for engine in h.engines():
            with self.subTest(engine=engine):
                work = self.subdir()
                dest = os.path.join(work, "_assets")
                for target in (os.path.join(work, "._assets.staging-1/root/x"),
                               os.path.join(work, "_assets.old/x"),
                               work, dest + "/../_assets/x", "/etc/passwd"):
                    archive = self._archive([F("ok.txt", b"ok"), L("evil", target)])
                    before = h.state(dest)
                    e = self.assertBAError("UnsafeArchive", self.restore, archive, dest, engine=engine)
                    self.assertIn("evil", str(e))
                    self.assertUntouched(dest, before)

    def test_nothing_is_written_through_an_absolute_link_into_dest(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                members = [D("d"), L("link", dest + "/d"), F("link/x.txt", b"through")]
                e = self.assertBAError("UnsafeArchive", self.restore, self._archive(members), dest,
                                       engine=engine)
                self.assertIn("link", str(e))
                self.assertUntouched(dest, None)

    def test_absolute_link_replaced_by_a_later_member_is_refused(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                members = [F("a.txt", b"a"), L("l", dest + "/a.txt"), F("l", b"replaced")]
                self.assertBAError("UnsafeArchive", self.restore, self._archive(members), dest,
                                   engine=engine)
                self.assertUntouched(dest, None)

    def test_absolute_link_in_read_only_folder_keeps_the_folder_mode(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                members = [F("a.txt", b"a"), D("ro", mode=0o555), L("ro/l", dest + "/a.txt")]
                self.restore(self._archive(members), dest, engine=engine)
                self.addCleanup(os.chmod, os.path.join(dest, "ro"), 0o755)
                self.assertEqual(os.readlink(os.path.join(dest, "ro/l")), "../a.txt")
                self.assertEqual(os.stat(os.path.join(dest, "ro")).st_mode & 0o777, 0o555)
                self.assertEqual(int(os.stat(os.path.join(dest, "ro")).st_mtime), h.MTIME)


class EmptyArchiveTests(h.BATestCase):
    """An archive with nothing to install is exit 7; dest stays as it was."""

    CASES = {
        "tar_no_members": lambda: h.tar_bytes([]),
        "gz_no_members": lambda: h.archive_bytes([], "gz"),
        "tar_only_dot": lambda: h.archive_bytes([D("./")], "tar"),
        "gz_only_dot": lambda: h.archive_bytes([D(".")], "gz"),
        "only_empty_top_folder": lambda: h.archive_bytes([D("_assets")], "gz"),
        "zip_no_entries": lambda: h.zip_bytes([]),
        "zip_only_macos_metadata": lambda: h.zip_bytes([D("__MACOSX"), F("__MACOSX/._a", APPLEDOUBLE)]),
    }

    def test_empty_archive_is_exit_7_and_dest_untouched(self):
        good = h.write_bytes(os.path.join(self.tmp, "good.tar.gz"),
                             h.archive_bytes([F("keep.txt", b"keep")]))
        for name, build in self.CASES.items():
            for engine in h.engines():
                for existing in (False, True):
                    with self.subTest(case=name, engine=engine, existing=existing):
                        dest = os.path.join(self.subdir(), "_assets")
                        if existing:
                            self.restore(good, dest, engine=engine)
                        before = h.state(dest)
                        archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets.tar.gz"),
                                                build())
                        e = self.assertBAError("CorruptArchive", self.restore, archive, dest,
                                               engine=engine, force=True)
                        self.assertIn("the archive holds no files", str(e))
                        self.assertUntouched(dest, before)

    def test_archive_of_empty_folders_is_not_empty(self):
        members = [D("_assets"), D("_assets/a"), D("_assets/b")]
        archive = h.write_bytes(os.path.join(self.tmp, "assets.tar.gz"), h.archive_bytes(members))
        self.restore(archive)
        self.assertEqual(sorted(os.listdir(self.dest)), sorted(["a", "b", h.MARKER]))


class DotSlashLayoutTests(h.SaveTestCase):
    """`tar czf assets.tar.gz ./_assets`: the folder named like dest is unwrapped."""

    MEMBERS = [D("{p}_assets"), F("{p}_assets/a.png", b"png"), D("{p}_assets/sub"),
               F("{p}_assets/sub/b.bin", b"bin")]
    WANT = {"a.png": ("file", 0o644, b"png"), "sub": ("dir",), "sub/b.bin": ("file", 0o644, b"bin")}

    def _members(self, prefix, top="_assets"):
        return [dict(m, name=m["name"].format(p=prefix).replace("_assets", top, 1))
                for m in self.MEMBERS]

    def test_lone_folder_named_like_dest_is_unwrapped_with_or_without_dot_slash(self):
        for prefix in ("", "./"):
            for engine in h.engines():
                with self.subTest(prefix=prefix, engine=engine):
                    archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets.tar.gz"),
                                            h.archive_bytes(self._members(prefix)))
                    dest = os.path.join(self.subdir(), "_assets")
                    self.restore(archive, dest, engine=engine)
                    self.assertTree(dest, self.WANT)

    def test_dot_slash_lone_folder_named_otherwise_is_kept(self):
        for engine in h.engines():
            with self.subTest(engine=engine):
                archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets.tar.gz"),
                                        h.archive_bytes(self._members("./", top="models")))
                dest = os.path.join(self.subdir(), "_assets")
                self.restore(archive, dest, engine=engine)
                self.assertTree(dest, {"models": ("dir",), **{"models/" + k: v for k, v in self.WANT.items()}})

    def test_gnu_tar_czf_dot_slash_assets_lands_in_dest(self):
        tar = shutil.which("tar")
        if not tar:
            self.skipTest("no tar program")
        h.write_bytes(os.path.join(self.local, "a.png"), b"png")
        h.write_bytes(os.path.join(self.local, "sub", "b.bin"), b"bin")
        archive = os.path.join(self.drive, "assets.tar.gz")
        os.makedirs(self.drive)
        subprocess.run([tar, "czf", archive, "./_assets"], cwd=os.path.dirname(self.local), check=True)
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, _ = self.restore_fresh(archive, engine=engine)
                self.assertEqual(h.snapshot(dest), {k: (v[0], 0o644, v[2]) if v[0] == "file" else v
                                                    for k, v in self.WANT.items()})

    def test_layer_saved_over_a_dot_slash_restore_applies(self):
        archive = h.write_bytes(os.path.join(self.drive, "assets.tar.gz"),
                                h.archive_bytes(self._members("./")))
        self.restore(archive, self.local)
        h.write_bytes(os.path.join(self.local, "new.txt"), b"new")
        os.unlink(os.path.join(self.local, "sub", "b.bin"))
        r = self.save(incremental="always")
        self.assertEqual(r.action, "layer")
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, r2 = self.restore_fresh(archive, engine=engine)
                self.assertEqual(r2.layers, 1)
                self.assertTree(dest, {"a.png": ("file", 0o644, b"png"), "sub": ("dir",),
                                       "new.txt": ("file", 0o644, b"new")})


class ForeignZipTests(h.BATestCase):
    """Zips made by macOS Finder and by Windows tools land where the user expects."""

    def _restore_zip(self, members, **kw):
        archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets.zip"), h.zip_bytes(members))
        dest = os.path.join(self.subdir(), "_assets")
        return dest, self.restore(archive, dest, **kw)

    def test_macos_finder_zip_skips_metadata_says_so_and_unwraps(self):
        members = [D("_assets"), F("_assets/a.png", b"png"), D("_assets/sub"),
                   F("_assets/sub/b.bin", b"bin"),
                   D("__MACOSX"), D("__MACOSX/_assets"), F("__MACOSX/_assets/._a.png", APPLEDOUBLE),
                   D("__MACOSX/_assets/sub"), F("__MACOSX/_assets/sub/._b.bin", APPLEDOUBLE),
                   F("_assets/sub/._b.bin", APPLEDOUBLE)]
        dest, r = self._restore_zip(members)
        self.assertTree(dest, {"a.png": ("file", 0o644, b"png"), "sub": ("dir",),
                               "sub/b.bin": ("file", 0o644, b"bin")})
        self.assertEqual(r.files, 2)
        self.assertIn("skipped 6 macOS metadata entries", r.summary())

    def test_dot_underscore_file_that_is_not_appledouble_is_kept(self):
        dest, r = self._restore_zip([F("._config", b"user data"), F("a.txt", b"a")])
        self.assertTree(dest, {"._config": ("file", 0o644, b"user data"), "a.txt": ("file", 0o644, b"a")})
        self.assertIsNone(r.note)

    def test_zip_backslash_names_are_separators(self):
        members = [F("_assets\\a.png", b"png"), F("_assets\\sub\\b.bin", b"bin"), D("_assets\\empty\\")]
        dest, _ = self._restore_zip(members)
        self.assertTree(dest, {"a.png": ("file", 0o644, b"png"), "sub": ("dir",),
                               "sub/b.bin": ("file", 0o644, b"bin"), "empty": ("dir",)})

    def test_zip_backslash_traversal_is_refused(self):
        for name in ("..\\..\\escaped_bs.txt", "sub\\..\\..\\escaped_bs.txt", "\\escaped_bs.txt"):
            with self.subTest(name=name):
                work = self.subdir()
                dest = os.path.join(work, "_assets")
                archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets.zip"),
                                        h.zip_bytes([F("ok.txt", b"ok"), F(name, b"x")]))
                e = self.assertBAError("UnsafeArchive", self.restore, archive, dest)
                self.assertIn("escaped_bs.txt", str(e))
                self.assertUntouched(dest, None)
                self.assertEqual(os.listdir(work), [])
                self.assertFalse(os.path.exists(os.path.join(self.tmp, "escaped_bs.txt")))


if __name__ == "__main__":
    import unittest
    unittest.main()
