"""Beyond Colab: Kaggle's places (read-only /kaggle/input, writable /kaggle/working), a
`tar` on the PATH that is BSD tar (macOS, libarchive) and never taken for GNU tar, and the
`bootstrap-assets` command that `pip install` makes."""
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402
from helpers import D, F, L, ba  # noqa: E402

MEMBERS = [D("_assets"), F("_assets/a.txt", b"alpha\n"), F("_assets/w/shard.bin", b"w" * 5000),
           L("_assets/latest", "a.txt")]
WANT = h.expected_tree(MEMBERS, strip_top=True)
BSD_BANNER = "bsdtar 3.7.2 - libarchive 3.7.2 zlib/1.2.12 liblzma/5.4.1 bz2lib/1.0.8"
GNU_BANNER = "tar (GNU tar) 1.35\nCopyright (C) 2023 Free Software Foundation, Inc."


def fake_program(folder, name, banner, log, then=None):
    """An executable `name` in folder that logs its arguments; `--version` prints banner,
    anything else runs `then` with the same arguments (or fails)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    lines = ["#!/bin/sh", f"echo \"$@\" >> '{log}'", 'if [ "$1" = --version ]; then']
    lines += [f"    echo '{line}'" for line in banner.splitlines()]
    lines += ["    exit 0", "fi", f'exec {then} "$@"' if then else "exit 64"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class TarOnThePathTests(h.BATestCase):
    """Which `tar` the tar engine uses is decided by what it says it is."""

    def setUp(self):
        super().setUp()
        self.bin = os.path.join(self.tmp, "bin")
        self.log = os.path.join(self.tmp, "tar-calls.txt")
        os.environ["PATH"] = self.bin + os.pathsep + os.environ.get("PATH", "")
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                                     h.archive_bytes(MEMBERS))

    def calls(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def assertNoGnuTar(self):
        self.assertIsNone(ba._gnu_tar())
        self.assertEqual(ba.available_engines(), ["python"])
        rc, out, err = self.run_main(["--archive", self.archive, "--dest", self.dest,
                                      "--engine", "tar"])
        self.assertEqual(rc, 2, err)
        self.assertIn("needs GNU tar", err)
        self.assertFalse(os.path.exists(self.dest))
        result = self.restore(self.archive)
        self.assertEqual(result.engine, "python")
        self.assertTree(self.dest, WANT)

    def test_bsd_tar_is_not_gnu_tar(self):
        fake_program(self.bin, "tar", BSD_BANNER, self.log)
        self.assertNoGnuTar()
        self.assertTrue(self.calls())
        self.assertEqual(set(self.calls()), {"--version"}, "BSD tar was asked to extract")

    def test_real_bsdtar_is_not_gnu_tar(self):
        bsdtar = shutil.which("bsdtar")
        if not bsdtar:
            if os.environ.get("CI") == "true":
                self.fail("bsdtar is missing: apt-get install libarchive-tools")
            self.skipTest("bsdtar not installed (apt-get install libarchive-tools)")
        os.makedirs(self.bin)
        os.symlink(bsdtar, os.path.join(self.bin, "tar"))
        self.assertNoGnuTar()

    def test_gnu_tar_is_used_when_it_says_so(self):
        gnu = shutil.which("tar")
        if not gnu or b"(GNU tar)" not in subprocess.run([gnu, "--version"],
                                                         capture_output=True).stdout:
            self.skipTest("no GNU tar on this machine to stand behind the fake")
        fake = fake_program(self.bin, "tar", GNU_BANNER, self.log, then=gnu)
        self.assertEqual(ba._gnu_tar(), fake)
        result = self.restore(self.archive, engine="tar")
        self.assertEqual(result.engine, "tar")
        self.assertTree(self.dest, WANT)
        self.assertTrue(any("--extract" in call for call in self.calls()), self.calls())

    def test_gtar_beside_a_bsd_tar_is_found(self):
        fake_program(self.bin, "tar", BSD_BANNER, self.log)
        gtar = fake_program(self.bin, "gtar", GNU_BANNER, self.log)
        self.assertEqual(ba._gnu_tar(), gtar)
