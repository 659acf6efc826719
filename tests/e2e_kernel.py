"""Every way in, in a real Jupyter kernel (ipykernel, driven through jupyter_client):

- the whole bootstrap_assets.py pasted as a cell (CONFIG block edited, or `%env` settings),
  then save() in the next cell;
- `%run bootstrap_assets.py ARGS` (restore, `save`, `--help`, `--version`, a failure);
- `!python bootstrap_assets.py ARGS`;
- `import bootstrap_assets as ba`: ba.restore, ba.save, ba.autosave(every=...), .stop();
- Colab's Drive: a stand-in `google.colab` (tests/fake_colab) whose drive.mount serves a
  folder through drivesim, proving the tool mounts Drive itself and flush_drive=True; and a
  kernel with no `google` package at all, which must be told "Drive is not mounted".

Each case checks the tree, the cell's status (a failing cell fails, so "Run all" stops) and
what the cell showed: the tool's message alone, never a traceback; progress as one line
redrawn with \\r.

jupyter_client lives in the test venv ($TEST_VENV, made by .ci/run from
.ci/test-requirements.txt), not in the python3 that runs `make e2e`: each kernel is started
by tests/kernel_driver.py under $TEST_VENV/bin/python. Without that venv the suite is
skipped, or fails under CI=true. Drive cases need FUSE and ../shared/drivesim.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import bootstrap_assets as ba  # noqa: E402
from drivesim_fixture import DRIVESIM, sha256_file, tree_digest, unmount  # noqa: E402

SCRIPT = os.path.join(REPO, "bootstrap_assets.py")
DRIVER = os.path.join(HERE, "kernel_driver.py")
NOTEBOOK = os.path.join(REPO, "examples", "colab_quickstart.ipynb")
FAKE_COLAB = os.path.join(HERE, "fake_colab")
TEST_VENV = os.environ.get("TEST_VENV", "/tmp/bootstrap-assets-ci-venv")
VENV_PYTHON = os.path.join(TEST_VENV, "bin", "python")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
W = None  # the module's work folder
SOURCE = None  # the sample _assets the archives hold
WANT = None  # its tree_digest


def missing_tools():
    """Why the kernel cannot be started here, or None."""
    if not os.path.exists(VENV_PYTHON):
        return f"no test venv at {TEST_VENV}"
    found = subprocess.run([VENV_PYTHON, "-c", "import ipykernel, jupyter_client"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if found.returncode:
        return f"{VENV_PYTHON} cannot import ipykernel and jupyter_client"
    return None


def setUpModule():
    global W, SOURCE, WANT
    problem = missing_tools()
    if problem:
        message = (f"{problem}: create it with `python3 -m venv {TEST_VENV} && "
                   f"{TEST_VENV}/bin/pip install -r .ci/test-requirements.txt` (or set "
                   f"TEST_VENV)")
        if os.environ.get("CI") == "true":
            raise RuntimeError(message)
        raise unittest.SkipTest(message)
    W = tempfile.mkdtemp(prefix="e2e-kernel-")
    SOURCE = os.path.join(W, "source", "_assets")
    os.makedirs(os.path.join(SOURCE, "weights"))
    os.makedirs(os.path.join(SOURCE, "images"))
    with open(os.path.join(SOURCE, "config.yaml"), "w") as f:
        f.write("lr: 0.001\n")
    for i in range(20):
        with open(os.path.join(SOURCE, "images", f"img_{i:02d}.jpg"), "wb") as f:
            f.write(os.urandom(2000 + i))
    # Incompressible and large enough that a restore through drivesim at 4 MB/s takes
    # about a second: several progress updates
    with open(os.path.join(SOURCE, "weights", "shard-0.bin"), "wb") as f:
        f.write(os.urandom(4 << 20))
    os.symlink("shard-0.bin", os.path.join(SOURCE, "weights", "latest.bin"))
    WANT = tree_digest(SOURCE)


def tearDownModule():
    if W:
        shutil.rmtree(W, ignore_errors=True)


def make_archive(folder):
    """folder/assets.tar.gz of SOURCE (one top folder `_assets`) with its .sha256 sidecar."""
    os.makedirs(folder, exist_ok=True)
    archive = os.path.join(folder, "assets.tar.gz")
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(SOURCE, arcname="_assets")
    with open(archive + ".sha256", "w") as f:
        f.write(f"{sha256_file(archive)}  assets.tar.gz\n")
    return archive


class Cell:
    """A cell's outcome as the kernel reported it."""

    def __init__(self, reply):
        self.status = reply["status"]
        self.streams = reply["streams"]
        self.results = reply["results"]
        self.error = reply["error"]
        self.stdout = "".join(text for name, text in self.streams if name == "stdout")
        self.stderr = "".join(text for name, text in self.streams if name == "stderr")
        traceback = (self.error or {}).get("traceback") or []
        self.traceback = ANSI.sub("", "\n".join(traceback))
        # everything the notebook shows under the cell
        self.shown = self.stdout + self.stderr + "\n".join(self.results) + self.traceback

    def __repr__(self):
        return (f"Cell(status={self.status!r}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r}, results={self.results!r}, error={self.error!r})")


class Kernel:
    """A real kernel, started by kernel_driver.py under the test venv's python, with the
    given working folder and environment."""

    def __init__(self, cwd, env):
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [VENV_PYTHON, DRIVER], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, universal_newlines=True, bufsize=1)
        first = self.process.stdout.readline()
        if not first:
            raise RuntimeError(f"the kernel did not start:\n{self.driver_log()}")

    def driver_log(self):
        self._log.seek(0)
        return self._log.read()

    def run(self, code, timeout=120):
        self.process.stdin.write(json.dumps({"code": code, "timeout": timeout}) + "\n")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the kernel driver ended:\n{self.driver_log()}")
        cell = Cell(json.loads(line))
        if cell.status == "timeout":
            raise AssertionError(f"the cell did not finish within {timeout} s: {cell!r}")
        return cell

    def close(self):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self._log.close()


class KernelTestCase(unittest.TestCase):
    """A work folder holding bootstrap_assets.py (as after `!wget`), an archive folder
    standing in for Drive, and a kernel started on demand."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="case-", dir=W)
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.work)
        shutil.copy(SCRIPT, self.work)
        self.archive = make_archive(os.path.join(self.tmp, "archives"))
        self.dest = os.path.join(self.tmp, "content", "_assets")
        self.colab_log = os.path.join(self.tmp, "colab-calls.jsonl")
        self.mounts = []
        self.kernels = []

    def tearDown(self):
        for kernel in self.kernels:
            kernel.close()
        for mount in self.mounts:
            unmount(mount)
        for pid in self.drivesim_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def kernel(self, colab=False, **env):
        """Start a kernel; colab=True puts the stand-in google.colab on its path."""
        kernel = Kernel(self.work, self.kernel_env(colab, **env))
        self.kernels.append(kernel)
        return kernel

    def kernel_env(self, colab=False, **env):
        environment = {k: v for k, v in os.environ.items()
                       if not k.startswith(("BOOTSTRAP_ASSETS_", "FAKE_COLAB_"))
                       and k not in ("PYTHONPATH", "JPY_PARENT_PID")}
        # `!python` is the kernel's python, as in Colab or a Jupyter started from a venv
        environment["PATH"] = os.path.dirname(VENV_PYTHON) + os.pathsep + os.environ["PATH"]
        environment.update(IPYTHONDIR=os.path.join(self.tmp, "ipython"),
                           JUPYTER_RUNTIME_DIR=os.path.join(self.tmp, "runtime"),
                           FAKE_COLAB_LOG=self.colab_log, PYTHONUNBUFFERED="1")
        if colab:
            environment["PYTHONPATH"] = FAKE_COLAB
        environment.update(env)
        return environment

    def colab_calls(self):
        if not os.path.exists(self.colab_log):
            return []
        with open(self.colab_log) as f:
            return [json.loads(line) for line in f]

    def drivesim_pids(self):
        return [c["drivesim_pid"] for c in self.colab_calls() if c["call"] == "drivesim"]

    def restored_from(self, archive):
        """The tree the archive restores to now, in a fresh folder."""
        dest = tempfile.mkdtemp(prefix="check-", dir=self.tmp)
        ba.restore(archive, os.path.join(dest, "_assets"), quiet=True, drive_mount="")
        return tree_digest(os.path.join(dest, "_assets"))

    def assertRestored(self, dest=None, want=None):
        self.assertEqual(tree_digest(dest or self.dest), want or WANT)
        self.assertTrue(os.path.exists(os.path.join(dest or self.dest, ba.MARKER_NAME)))

    def assertWorked(self, cell):
        self.assertEqual(cell.status, "ok", cell)
        self.assertNotIn("Traceback", cell.shown, cell)

    def assertFailedWithMessageAlone(self, cell, message):
        """The cell failed (status error: "Run all" stops) and showed the tool's message and
        nothing of Python's: no traceback, no SystemExit, no IPython "To exit" warning."""
        self.assertEqual(cell.status, "error", cell)
        self.assertIn(message, cell.shown, cell)
        for noise in ("Traceback", "SystemExit", "To exit", "File \"", "ModuleNotFoundError"):
            self.assertNotIn(noise, cell.shown, cell)

    def assertProgressInPlace(self, text):
        """Several progress updates, each redrawing one line with \\r; at most the line's
        final newline, never one line per update."""
        self.assertGreaterEqual(text.count("\r"), 2, repr(text))
        self.assertLessEqual(text.count("\n"), 1, repr(text))


def edited_config(path, **settings):
    """The file's text with CONFIG lines `NAME = ...` replaced, as a user edits them."""
    with open(path) as f:
        text = f.read()
    for name, value in settings.items():
        text, count = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", text, count=1)
        assert count == 1, name
    return text


class PastedCellTests(KernelTestCase):
    def test_pasted_cell_with_config_edited_restores_and_defines_save(self):
        kernel = self.kernel()
        cell = kernel.run(edited_config(SCRIPT, ARCHIVE=self.archive, DEST=self.dest))
        self.assertWorked(cell)
        self.assertRestored()
        self.assertIn(f"to {self.dest}", cell.stdout)
        self.assertEqual(kernel.run(edited_config(SCRIPT, ARCHIVE=self.archive,
                                                  DEST=self.dest)).status, "ok")
        with open(os.path.join(self.dest, "notes.txt"), "w") as f:
            f.write("the session's work\n")
        cell = kernel.run("print(save().summary())")  # the pasted cell defined save()
        self.assertWorked(cell)
        self.assertIn("layer", cell.stdout)
        want = dict(WANT, **{"notes.txt": tree_digest(self.dest)["notes.txt"]})
        self.assertEqual(self.restored_from(self.archive), want)

    def test_pasted_cell_takes_env_settings(self):
        kernel = self.kernel()
        self.assertWorked(kernel.run(f"%env BOOTSTRAP_ASSETS_ARCHIVE={self.archive}\n"
                                     f"%env BOOTSTRAP_ASSETS_DEST={self.dest}"))
        with open(SCRIPT) as f:
            cell = kernel.run(f.read())
        self.assertWorked(cell)
        self.assertRestored()

    def test_failing_pasted_cell_fails_with_the_message_alone(self):
        missing = os.path.join(self.tmp, "archives", "nope.tar.gz")
        cell = self.kernel().run(edited_config(SCRIPT, ARCHIVE=missing, DEST=self.dest))
        self.assertFailedWithMessageAlone(
            cell, f"bootstrap_assets: error: The archive {missing} does not exist")
        self.assertEqual(cell.error["ename"], "CellFailed")
        self.assertFalse(os.path.exists(os.path.dirname(self.dest)),
                         "a failed run left the destination's parent behind")


class RunMagicTests(KernelTestCase):
    def test_run_restore_save_help_version(self):
        kernel = self.kernel()
        flags = f"--archive {self.archive} --dest {self.dest}"
        cell = kernel.run(f"%run bootstrap_assets.py {flags}")
        self.assertWorked(cell)
        self.assertRestored()
        with open(os.path.join(self.dest, "config.yaml"), "a") as f:
            f.write("epochs: 3\n")
        changed = tree_digest(self.dest)
        cell = kernel.run(f"%run bootstrap_assets.py save {flags}")
        self.assertWorked(cell)
        self.assertIn("layer", cell.stdout)
        self.assertEqual(self.restored_from(self.archive), changed)

        before = os.listdir(os.path.dirname(self.archive))
        cell = kernel.run(f"%run bootstrap_assets.py --help {flags}")
        self.assertWorked(cell)
        self.assertIn("usage:", cell.stdout)
        self.assertIn("exit codes:", cell.stdout)
        cell = kernel.run("%run bootstrap_assets.py --version")
        self.assertWorked(cell)
        self.assertEqual(cell.stdout.strip(), f"bootstrap_assets {ba.VERSION}")
        self.assertEqual(os.listdir(os.path.dirname(self.archive)), before)
        self.assertEqual(tree_digest(self.dest), changed)

    def test_failing_run_fails_with_the_message_alone(self):
        cell = self.kernel().run(f"%run bootstrap_assets.py --archive {self.archive} --dest "
                                 f"{self.dest} --engine nonsense")
        self.assertFailedWithMessageAlone(cell, "bootstrap_assets: error: argument --engine")
        self.assertFalse(os.path.exists(self.dest))


class ShellEscapeTests(KernelTestCase):
    def test_shell_python_restores_then_fails_with_exit_code(self):
        kernel = self.kernel()
        cell = kernel.run(f"!python bootstrap_assets.py --archive {self.archive} "
                          f"--dest {self.dest}\nprint('exit', _exit_code)")
        self.assertWorked(cell)
        self.assertRestored()
        self.assertIn("exit 0", cell.stdout)
        self.assertIn("restored", cell.stdout)

        mount = os.path.join(self.tmp, "drive")
        os.makedirs(mount)
        cell = kernel.run(f"!python bootstrap_assets.py --drive-mount {mount} --archive "
                          f"{mount}/MyDrive/assets.tar.gz --dest {self.dest}\n"
                          f"print('exit', _exit_code)")
        self.assertIn("Google Drive is not mounted", cell.stdout)
        self.assertIn("cannot be done from a `!python` command", cell.stdout)
        self.assertIn("exit 3", cell.stdout)
        self.assertNotIn("Traceback", cell.shown)


class ImportTests(KernelTestCase):
    def test_restore_save_autosave_stop(self):
        kernel = self.kernel()
        a, d = repr(self.archive), repr(self.dest)
        cell = kernel.run(f"import bootstrap_assets as ba\n"
                          f"r = ba.restore(archive={a}, dest={d})\nprint(r.summary())")
        self.assertWorked(cell)
        self.assertRestored()
        self.assertTrue(cell.stdout.startswith("restored "), cell)
        cell = kernel.run(f"print(ba.restore(archive={a}, dest={d}).action)")
        self.assertEqual(cell.stdout.strip(), "unchanged", cell)

        with open(os.path.join(self.dest, "a.txt"), "w") as f:
            f.write("first change\n")
        cell = kernel.run(f"s = ba.save(dest={d}, archive={a})\nprint(s.action, s.summary())")
        self.assertWorked(cell)
        self.assertEqual(self.restored_from(self.archive), tree_digest(self.dest))

        cell = kernel.run(f"saver = ba.autosave(every='1s', dest={d}, archive={a})")
        self.assertWorked(cell)
        with open(os.path.join(self.dest, "b.txt"), "w") as f:
            f.write("saved by a round of autosave\n")
        cell = kernel.run("import time\nwhile saver.rounds < 2: time.sleep(0.1)\n"
                          "print('error:', saver.error)")
        self.assertWorked(cell)
        self.assertIn("error: None", cell.stdout)
        self.assertEqual(self.restored_from(self.archive), tree_digest(self.dest))
        with open(os.path.join(self.dest, "c.txt"), "w") as f:
            f.write("saved by the final save of stop()\n")
        cell = kernel.run("last = saver.stop()\nprint('stopped', saver.error)")
        self.assertWorked(cell)
        self.assertIn("stopped None", cell.stdout)
        self.assertEqual(self.restored_from(self.archive), tree_digest(self.dest))
        self.assertIn("c.txt", self.restored_from(self.archive))

    def test_api_failure_raises_the_tools_exception(self):
        cell = self.kernel().run(f"import bootstrap_assets as ba\nba.restore(archive="
                                 f"{self.archive + '.missing'!r}, dest={self.dest!r})")
        self.assertEqual(cell.status, "error", cell)
        self.assertEqual(cell.error["ename"], "SourceMissing", cell)
        self.assertFalse(os.path.exists(os.path.dirname(self.dest)))


class BackgroundTests(KernelTestCase):
    """Start working before the restore ends, in every way in: an archive saved by our own
    save (indexed), restored in the background while the next cells run."""

    def saved_archive(self):
        archive = os.path.join(self.tmp, "archives", "saved.tar.gz")
        ba.save(SOURCE, archive, format="gz", quiet=True, drive_mount="")
        return archive

    def test_import_background_wait_files_result(self):
        archive, kernel = self.saved_archive(), self.kernel()
        cell = kernel.run(f"import bootstrap_assets as ba\n"
                          f"job = ba.restore(archive={archive!r}, dest={self.dest!r}, "
                          f"background=True)\nprint('started', type(job).__name__)")
        self.assertWorked(cell)
        self.assertIn("started RestoreJob", cell.stdout)
        cell = kernel.run("job.wait('config.yaml', 'weights/')\n"
                          "print(open(job.dest + '/config.yaml').read())\n"
                          "print(sorted(p.rsplit('/', 1)[1] for p in job.files('images/**')))\n"
                          "r = job.result()\nprint('progressive', r.progressive, job.done)")
        self.assertWorked(cell)
        self.assertIn("progressive True True", cell.stdout)
        self.assertIn("img_00.jpg", cell.stdout)
        self.assertRestored()

    def test_pasted_cell_then_background_restore(self):
        archive, kernel = self.saved_archive(), self.kernel()
        other = os.path.join(self.tmp, "content", "second", "_assets")
        self.assertWorked(kernel.run(edited_config(SCRIPT, ARCHIVE=archive, DEST=self.dest)))
        self.assertRestored()
        cell = kernel.run(f"job = restore(dest={other!r}, background=True)\n"
                          f"job.wait('weights/shard-0.bin')\nprint(job.result().progressive)")
        self.assertWorked(cell)
        self.assertIn("True", cell.stdout)
        self.assertRestored(other)

    def test_run_magic_background_then_shell_wait(self):
        archive, kernel = self.saved_archive(), self.kernel()
        cell = kernel.run(f"%run bootstrap_assets.py restore --background --archive {archive} "
                          f"--dest {self.dest}")
        self.assertWorked(cell)
        self.assertIn("in the background", cell.stdout)
        cell = kernel.run(f"!python bootstrap_assets.py wait config.yaml images/ --dest "
                          f"{self.dest}\nprint('exit', _exit_code)\n"
                          f"!python bootstrap_assets.py wait --dest {self.dest}\n"
                          f"print('exit', _exit_code)")
        self.assertWorked(cell)
        self.assertEqual(cell.stdout.count("exit 0"), 2, cell)
        self.assertRestored()

    def test_failing_background_restore_fails_the_waiting_cell_with_its_message(self):
        kernel = self.kernel()
        missing = os.path.join(self.tmp, "archives", "nope.tar.gz")
        cell = kernel.run(f"import bootstrap_assets as ba\n"
                          f"job = ba.restore(archive={missing!r}, dest={self.dest!r}, "
                          f"background=True)")
        self.assertWorked(cell)
        cell = kernel.run("job.wait('config.yaml')")
        self.assertEqual(cell.status, "error", cell)
        self.assertEqual(cell.error["ename"], "SourceMissing", cell)


class KaggleKernelTests(KernelTestCase):
    """A Kaggle kernel (its variables set; a folder standing in for /kaggle): no flags."""

    def test_restore_and_save_with_kaggles_places(self):
        root = os.path.join(self.tmp, "kaggle")
        shutil.copytree(os.path.dirname(self.archive), os.path.join(root, "input", "my-assets"))
        os.makedirs(os.path.join(root, "working"))
        local = os.path.join(root, "temp", "_assets")
        saved = os.path.join(root, "working", "assets.tar.gz")
        kernel = self.kernel(KAGGLE_KERNEL_RUN_TYPE="Interactive",
                             KAGGLE_URL_BASE="https://www.kaggle.com")
        cell = kernel.run(f"import bootstrap_assets as ba\nba._KAGGLE_ROOT = {root!r}\n"
                          f"print(ba.restore().summary())")
        self.assertWorked(cell)
        self.assertIn(f"to {local}", cell.stdout)
        self.assertRestored(local)
        with open(os.path.join(local, "notes.txt"), "w") as f:
            f.write("the session's work\n")
        cell = kernel.run("ba.save()")
        self.assertEqual(cell.status, "error", cell)
        self.assertEqual(cell.error["ename"], "UsageError", cell)
        self.assertIn(f"--archive {saved}", cell.error["evalue"])
        cell = kernel.run(f"print(ba.save(archive={saved!r}).summary())")
        self.assertWorked(cell)
        self.assertEqual(self.restored_from(saved), tree_digest(local))


class DriveTestCase(KernelTestCase):
    """Drive as Colab has it: the archive under DRIVE_MOUNT/MyDrive, the mount made by
    google.colab.drive.mount (the stand-in serves a folder through drivesim)."""

    def setUp(self):
        super().setUp()
        if not os.path.exists("/dev/fuse") or not os.path.exists(DRIVESIM):
            self.skipTest("needs /dev/fuse and ../shared/drivesim")
        self.backing = os.path.join(self.tmp, "backing")
        make_archive(os.path.join(self.backing, "MyDrive"))
        self.mount = os.path.join(self.tmp, "drive")
        self.mounts.append(self.mount)
        self.drive_archive = os.path.join(self.mount, "MyDrive", "assets.tar.gz")
        self.settings = dict(BOOTSTRAP_ASSETS_ARCHIVE=self.drive_archive,
                             BOOTSTRAP_ASSETS_DEST=self.dest,
                             BOOTSTRAP_ASSETS_DRIVE_MOUNT=self.mount)
        self.backing_archive = os.path.join(self.backing, "MyDrive", "assets.tar.gz")


class DriveTests(DriveTestCase):
    def test_restore_mounts_drive_itself_and_save_flushes(self):
        kernel = self.kernel(colab=True, FAKE_COLAB_BACKING=self.backing,
                             FAKE_COLAB_DRIVESIM=DRIVESIM,
                             FAKE_COLAB_DRIVESIM_ARGS="--read-mbps 4", **self.settings)
        cell = kernel.run("import bootstrap_assets as ba\nprint(ba.restore().summary())")
        self.assertWorked(cell)
        self.assertRestored()
        self.assertEqual([c["call"] for c in self.colab_calls()], ["mount", "drivesim"])
        self.assertEqual(self.colab_calls()[0]["mountpoint"], self.mount)
        self.assertIn(f"Mounted at {self.mount}", cell.stdout)
        self.assertProgressInPlace(cell.stderr)

        with open(os.path.join(self.dest, "checkpoint.pt"), "wb") as f:
            f.write(os.urandom(1000))
        cell = kernel.run("print(ba.save(flush_drive=True).summary())")
        self.assertWorked(cell)
        calls = [c["call"] for c in self.colab_calls()]
        self.assertEqual(calls[2:], ["flush_and_unmount", "mount", "drivesim"], calls)
        self.assertEqual(self.restored_from(self.backing_archive), tree_digest(self.dest))
        cell = kernel.run("r = ba.save(flush_drive=True)\nprint(r.action)")
        self.assertWorked(cell)
        self.assertIn("unchanged", cell.stdout)
        calls = [c["call"] for c in self.colab_calls()]
        self.assertEqual(calls[5:], ["flush_and_unmount", "mount", "drivesim"], calls)

    def test_run_magic_mounts_drive_too(self):
        kernel = self.kernel(colab=True, FAKE_COLAB_BACKING=self.backing,
                             FAKE_COLAB_DRIVESIM=DRIVESIM, **self.settings)
        cell = kernel.run("%run bootstrap_assets.py")
        self.assertWorked(cell)
        self.assertRestored()
        self.assertEqual(self.colab_calls()[0]["call"], "mount")

    def test_kernel_without_google_is_told_drive_is_not_mounted(self):
        os.makedirs(self.mount)
        kernel = self.kernel(colab=False, **self.settings)
        cell = kernel.run("import importlib.util\nprint(importlib.util.find_spec('google'))")
        self.assertEqual(cell.stdout.strip(), "None", "this kernel has a `google` package")
        cell = kernel.run("%run bootstrap_assets.py")
        self.assertFailedWithMessageAlone(cell, f"Google Drive is not mounted at {self.mount}")
        self.assertIn("drive.mount(", cell.shown)
        cell = kernel.run("import bootstrap_assets as ba\ntry:\n    ba.restore()\n"
                          "except ba.SourceMissing as exc:\n    print('SourceMissing:', exc)")
        self.assertWorked(cell)
        self.assertIn("SourceMissing: Google Drive is not mounted", cell.stdout)
        self.assertFalse(os.path.exists(os.path.dirname(self.dest)))
        self.assertEqual(self.colab_calls(), [])


class NotebookTests(DriveTestCase):
    """examples/colab_quickstart.ipynb, executed top to bottom by `jupyter nbconvert
    --execute` as "Run all" would, in a Colab-like kernel over drivesim."""

    def test_quickstart_runs_top_to_bottom(self):
        jupyter = os.path.join(TEST_VENV, "bin", "jupyter")
        notebook = shutil.copy(NOTEBOOK, self.work)
        env = self.kernel_env(colab=True, FAKE_COLAB_BACKING=self.backing,
                              FAKE_COLAB_DRIVESIM=DRIVESIM, **self.settings)
        done = subprocess.run(
            [jupyter, "nbconvert", "--to", "notebook", "--execute",
             "--ExecutePreprocessor.timeout=300", "--output-dir", self.tmp,
             "--output", "executed.ipynb", notebook],
            cwd=self.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, stdin=subprocess.DEVNULL, timeout=600)
        self.assertEqual(done.returncode, 0, done.stdout[-3000:])
        with open(os.path.join(self.tmp, "executed.ipynb")) as f:
            executed = json.load(f)
        outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
        self.assertFalse([o for o in outputs if o["output_type"] == "error"], outputs)
        shown = "".join("".join(o.get("text", "")) for o in outputs)
        self.assertIn(f"to {self.dest}", shown)
        self.assertIn("no local changes", shown)
        self.assertNotIn("Traceback", shown)

        digest = tree_digest(self.dest)
        self.assertEqual(set(digest) - set(WANT), {"checkpoints", "checkpoints/epoch-1.txt",
                                                   "checkpoints/epoch-2.txt"})
        self.assertEqual(self.restored_from(self.backing_archive), digest)
        calls = [c["call"] for c in self.colab_calls() if c["call"] != "drivesim"]
        self.assertEqual(calls, ["mount", "flush_and_unmount", "mount"])


if __name__ == "__main__":
    unittest.main()
