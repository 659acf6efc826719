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

import helpers as h
from helpers import D, F, L, ba

MEMBERS = [D("_assets"), F("_assets/a.txt", b"alpha\n"), F("_assets/w/shard.bin", b"w" * 5000),
           L("_assets/latest", "a.txt")]
WANT = h.expected_tree(MEMBERS, strip_top=True)
BSD_BANNER = "bsdtar 3.7.2 - libarchive 3.7.2 zlib/1.2.12 liblzma/5.4.1 bz2lib/1.0.8"
GNU_BANNER = "tar (GNU tar) 1.35\nCopyright (C) 2023 Free Software Foundation, Inc."


class KaggleTests(h.SaveTestCase):
    """A Kaggle notebook: KAGGLE_KERNEL_RUN_TYPE set, datasets under ROOT/input (read-only
    on Kaggle), ROOT standing in for /kaggle."""

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "kaggle")
        self.inputs = os.path.join(self.root, "input")
        os.makedirs(os.path.join(self.root, "working"))
        self.dataset = os.path.join(self.inputs, "my-assets")
        self.input_archive = h.write_bytes(os.path.join(self.dataset, "assets.tar.gz"),
                                           h.archive_bytes(MEMBERS))
        patch = mock.patch.object(ba, "_KAGGLE_ROOT", self.root)
        patch.start()
        self.addCleanup(patch.stop)
        for name in ba.KAGGLE_ENV:
            os.environ.pop(name, None)
        os.environ["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"
        self.kaggle_dest = os.path.join(self.root, "temp", "_assets")

    def test_restore_without_flags_uses_the_one_archive_and_kaggles_scratch_folder(self):
        h.write_bytes(os.path.join(self.dataset, "README.md"), b"not an archive\n")
        result = ba.restore(quiet=True)
        self.assertEqual(result.dest, self.kaggle_dest)
        self.assertTree(self.kaggle_dest, WANT)
        rc, out, err = self.run_main([])
        self.assertEqual(rc, 0, err)
        self.assertIn(f"already restored from {self.input_archive}", out)

    def test_each_kaggle_variable_is_enough(self):
        for name in ba.KAGGLE_ENV:
            with self.subTest(variable=name):
                for other in ba.KAGGLE_ENV:
                    os.environ.pop(other, None)
                os.environ[name] = "x"
                self.assertEqual(ba._settings(None, None, None)[:2],
                                 (self.input_archive, self.kaggle_dest))

    def test_not_kaggle_without_its_variables_or_its_input_folder(self):
        colab = (ba.ARCHIVE, ba.DEST)
        os.environ.pop("KAGGLE_KERNEL_RUN_TYPE")
        self.assertEqual(ba._settings(None, None, None)[:2], colab)
        os.environ["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"
        shutil.rmtree(self.inputs)
        self.assertEqual(ba._settings(None, None, None)[:2], colab)

    def test_flags_environment_and_an_edited_config_beat_kaggles_places(self):
        other = os.path.join(self.tmp, "other.tar.gz")
        self.assertEqual(ba._settings(other, self.dest, None)[:2], (other, self.dest))
        os.environ["BOOTSTRAP_ASSETS_ARCHIVE"] = other
        os.environ["BOOTSTRAP_ASSETS_DEST"] = self.dest
        self.assertEqual(ba._settings(None, None, None)[:2], (other, self.dest))
        del os.environ["BOOTSTRAP_ASSETS_ARCHIVE"], os.environ["BOOTSTRAP_ASSETS_DEST"]
        with mock.patch.object(ba, "ARCHIVE", other), mock.patch.object(ba, "DEST", self.dest):
            self.assertEqual(ba._settings(None, None, None)[:2], (other, self.dest))

    def test_several_archives_are_listed_with_the_flag_to_pass(self):
        second = h.write_bytes(os.path.join(self.inputs, "zeta", "v2", "more assets.zip"),
                               b"PK\x05\x06" + bytes(18))
        parts = os.path.join(self.inputs, "big", "assets.tar")
        h.write_bytes(parts + ".part-0001", b"x")
        h.write_bytes(parts + ".part-0002", b"y")
        h.write_bytes(os.path.join(self.inputs, "deep", "a", "b", "c", "x.tar"), b"x")
        rc, out, err = self.run_main([])
        self.assertEqual(rc, 2, err)
        listed = re.findall(r"^  --archive (.*)$", err, re.M)
        self.assertEqual(listed, [parts, self.input_archive, f"'{second}'"], err)
        self.assertFalse(os.path.exists(os.path.join(self.root, "temp")))

    def test_a_long_list_is_cut(self):
        for i in range(ba.KAGGLE_LISTED + 5):
            h.write_bytes(os.path.join(self.inputs, "shards", f"shard-{i:03d}.zip"), b"x")
        rc, out, err = self.run_main([])
        self.assertEqual(rc, 2, err)
        self.assertEqual(len(re.findall(r"^  --archive ", err, re.M)), ba.KAGGLE_LISTED)
        self.assertIn(f"... and 6 more under {self.inputs}", err)

    def test_no_archive_says_to_add_the_dataset(self):
        shutil.rmtree(self.dataset)
        rc, out, err = self.run_main([])
        self.assertEqual(rc, 3, err)
        self.assertIn(f"{self.inputs} holds none", err)
        self.assertIn("Add Input", err)

    def test_save_needs_an_archive_in_working_and_names_it(self):
        ba.restore(quiet=True)
        h.write_bytes(os.path.join(self.kaggle_dest, "new.txt"), b"work\n")
        before = h.snapshot(self.inputs)
        working = os.path.join(self.root, "working", "assets.tar.gz")
        rc, out, err = self.run_main(["save"])
        self.assertEqual(rc, 2, err)
        self.assertIn("read-only", err)
        self.assertIn(f"--archive {working}", err)
        rc, out, err = self.run_main(["save", "--archive", self.input_archive])
        self.assertEqual(rc, 2, err)
        self.assertIn(f"Cannot save to {self.input_archive}", err)
        self.assertIn(f"--archive {working}", err)
        self.assertEqual(h.snapshot(self.inputs), before)
        rc, out, err = self.run_main(["save", "--archive", working, "--quiet"])
        self.assertEqual(rc, 0, err)
        fresh = os.path.join(self.tmp, "next", "_assets")
        self.restore(working, fresh)
        self.assertEqual(h.snapshot(fresh), h.snapshot(self.kaggle_dest))

    def test_shipped_colab_places_are_the_config_blocks(self):
        with open(h.MODULE_PATH) as f:
            source = f.read()
        for name, shipped in (("ARCHIVE", ba._COLAB_ARCHIVE), ("DEST", ba._COLAB_DEST)):
            self.assertIn(f"\n{name} = {shipped!r}", source.replace('"', "'"))


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


class ConsoleScriptTests(h.BATestCase):
    """`bootstrap-assets` as pip writes it (pyproject.toml's [project.scripts]): a wrapper
    that imports the module and exits with main()'s return value."""

    def setUp(self):
        super().setUp()
        self.archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar.gz"),
                                     h.archive_bytes(MEMBERS))
        self.command = os.path.join(self.tmp, "bin", "bootstrap-assets")
        os.makedirs(os.path.dirname(self.command))
        with open(self.command, "w") as f:
            f.write(f"#!{sys.executable}\n" + textwrap.dedent("""\
                import re
                import sys
                from bootstrap_assets import main
                if __name__ == "__main__":
                    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
                    sys.exit(main())
                """))
        os.chmod(self.command, 0o755)

    def run_command(self, *args):
        env = h.clean_env()
        env["PYTHONPATH"] = h.REPO
        return subprocess.run([self.command, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, env=env,
                              cwd=self.tmp, timeout=120, stdin=subprocess.DEVNULL)

    def test_arguments_exit_codes_and_help_name_the_command(self):
        done = self.run_command("--archive", self.archive, "--dest", self.dest, "--quiet")
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""))
        self.assertTree(self.dest, WANT)
        done = self.run_command("--version")
        self.assertEqual(done.stdout, f"bootstrap_assets {ba.VERSION}\n")
        done = self.run_command("--archive", self.archive + ".missing", "--dest", self.dest)
        self.assertEqual(done.returncode, 3, done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        done = self.run_command("restore", "--engine", "nonsense")
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("See: bootstrap-assets restore --help", done.stderr)
        done = self.run_command("--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(done.stdout.startswith("usage: bootstrap-assets "), done.stdout)
