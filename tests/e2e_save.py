"""End-to-end tests of `save` over drivesim (a FUSE mount that behaves like Google Drive):
round trip, kill -9 at every step of a save, ENOSPC/EDQUOT, incremental layers, autosave.

Run with `make e2e` (python3 tests/run.py e2e; -k save for this file only). Needs /dev/fuse
and ../shared/drivesim. Takes about two to three minutes on 2 cores, most of it the crash
sweep (a save killed at 20+ chosen calls, for a full and for an incremental save).

The scenario shared by the sweep, the fault and the autosave tests (built once):
  drive (old state): MyDrive/assets.tar.gz + .1 + .2 (three full saves of T0) and a layer
      on the current base that makes it T_old; one sidecar for all.
  local folder (template): the folder that was saved, its marker matching that chain, then
      changed into T_new (make_assets.py mutate, a new 8 MB file, a mode-only change).
Every drivesim mount of that state is at the same MOUNT path, so the marker's record of the
chain (path, size, mtime through the mount) matches and the incremental path is taken.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import bootstrap_assets as ba  # noqa: E402
from drivesim_fixture import (MARKER, MAKE_ASSETS, SCRIPT, DriveSim,  # noqa: E402
                              DriveSimTestCase, clean_env, cli, copy_backing, diff_text,
                              file_hashes, kill_points, read_oplog, run, sha256_file,
                              temporaries, tree_digest, write_random)

NAME = "_assets"
ARCHIVE = "assets.tar.gz"
W = None          # module work dir
SCN = None        # the shared scenario (see the module docstring)


# -- helpers ------------------------------------------------------------------------
def add_extras(root):
    """What make_assets.py does not make: modes, links inside the folder, empty folders."""
    os.makedirs(os.path.join(root, "scripts"))
    with open(os.path.join(root, "scripts", "train.sh"), "w") as f:
        f.write("#!/bin/sh\necho training\n")
    os.chmod(os.path.join(root, "scripts", "train.sh"), 0o755)
    with open(os.path.join(root, "secret.key"), "wb") as f:
        f.write(os.urandom(100))
    os.chmod(os.path.join(root, "secret.key"), 0o600)
    os.makedirs(os.path.join(root, "private"))
    with open(os.path.join(root, "private", "notes.txt"), "w") as f:
        f.write("group-readable\n")
    os.chmod(os.path.join(root, "private", "notes.txt"), 0o640)
    os.chmod(os.path.join(root, "private"), 0o750)
    os.makedirs(os.path.join(root, "empty"))
    os.makedirs(os.path.join(root, "cache", "nested", "deeper"))
    with open(os.path.join(root, "zero-bytes.bin"), "wb"):
        pass
    os.symlink("weights/model-00000-of-00002.safetensors", os.path.join(root, "latest.bin"))
    os.symlink("../config.yaml", os.path.join(root, "scripts", "config.yaml"))
    os.symlink("images/class_00", os.path.join(root, "first_class"))


def make_assets(*args):
    run([sys.executable, MAKE_ASSETS] + [str(a) for a in args])


def mutate(folder):
    """make_assets.py mutate, with our marker kept out of its reach (it deletes 10 random
    files; a training run would not delete the marker)."""
    marker = os.path.join(folder, MARKER)
    aside = os.path.join(os.path.dirname(folder), MARKER + ".aside")
    had = os.path.exists(marker)
    if had:
        os.rename(marker, aside)
    try:
        make_assets("mutate", folder)
    finally:
        if had:
            os.rename(aside, marker)


class Scenario:
    """The old drive state and a local folder holding the new tree (module docstring)."""

    def __init__(self, top):
        self.top = top
        self.mnt = os.path.join(top, "mnt")            # every mount of this state is here
        self.drive = os.path.join(top, "drive-old")      # BACKING template, old state
        self.local = os.path.join(top, "local", NAME)    # template: new tree, old marker
        os.makedirs(os.path.join(self.drive, "MyDrive"))
        make_assets("create", self.local, "--profile", "mixed", "--scale", "0.005")
        add_extras(self.local)
        with DriveSim(self.drive, self.mnt) as ds:
            archive = self.archive_in(ds)
            for _ in range(3):
                r = ba.save(self.local, archive, incremental="never", quiet=True,
                            drive_mount="")
                assert r.action == "saved", r
            # T_old: a small change, saved as a layer of the current base
            with open(os.path.join(self.local, "config.yaml"), "a") as f:
                f.write("warmup: 100\n")
            write_random(os.path.join(self.local, "notes", "old.bin"), 300_000, 3)
            os.remove(os.path.join(self.local, "images", "class_01", "img_000001.jpg"))
            r = ba.save(self.local, archive, incremental="always", quiet=True, drive_mount="")
            assert r.action == "layer", r
        self.old = tree_digest(self.local)
        # T_new: a training run's changes and a new 8 MB file, not saved yet
        mutate(self.local)
        write_random(os.path.join(self.local, "checkpoints", "optimizer.bin"), 8 << 20, 4)
        for name in ("scripts/train.sh", "secret.key", "config.yaml"):  # a mode-only change
            if os.path.isfile(os.path.join(self.local, name)):
                path = os.path.join(self.local, name)
                os.chmod(path, os.stat(path).st_mode & 0o777 ^ 0o040)
                break
        os.symlink("nowhere-yet", os.path.join(self.local, "dangling-inside"))
        self.new = tree_digest(self.local)
        self.new_bytes = sum(os.lstat(os.path.join(d, f)).st_size
                             for d, _, fs in os.walk(self.local) for f in fs if f != MARKER)
        assert self.old != self.new
        self.old_drive = file_hashes(os.path.join(self.drive, "MyDrive"))
        with open(os.path.join(self.local, MARKER), "rb") as f:
            self.old_marker = f.read()

    @staticmethod
    def archive_in(ds):
        return os.path.join(ds.mount, "MyDrive", ARCHIVE)

    def copy(self, label):
        """(backing, local folder): fresh copies of the old drive and of the local folder."""
        where = os.path.join(self.top, label)
        backing = copy_backing(self.drive, os.path.join(where, "drive"))
        local = os.path.join(where, "local", NAME)
        shutil.copytree(self.local, local, symlinks=True)
        return backing, local


def setUpModule():
    global W, SCN
    W = tempfile.mkdtemp(prefix="bootstrap-e2e-save-")
    try:
        SCN = Scenario(os.path.join(W, "scenario"))
    except BaseException:  # tearDownModule does not run when setUpModule fails
        shutil.rmtree(W, ignore_errors=True)
        raise


def tearDownModule():
    if W:
        shutil.rmtree(W, ignore_errors=True)


class SaveCase(DriveSimTestCase):

    def empty_drive(self, label):
        """(backing folder, drivesim on it, archive path on the mount) for a Drive with an
        empty MyDrive."""
        backing = os.path.join(W, label)
        os.makedirs(os.path.join(backing, "MyDrive"))
        ds = self.mount(backing)
        return backing, ds, Scenario.archive_in(ds)

    def new_dest(self, label):
        return os.path.join(tempfile.mkdtemp(prefix=f"content-{label}-", dir=W), NAME)

    def restore_ok(self, archive, label, *args):
        dest = self.new_dest(label)
        p = cli("restore", "--archive", archive, "--dest", dest, "--quiet", *args)
        self.assertEqual(p.returncode, 0, f"restore {label}: {p.stdout}{p.stderr}")
        return dest


# -- 1. round trip --------------------------------------------------------------------
class RoundTrip(SaveCase):
    def test_save_is_read_back_and_restores_the_source(self):
        src = os.path.join(W, "rt-src", NAME)
        shutil.copytree(SCN.local, src, symlinks=True)
        os.remove(os.path.join(src, MARKER))
        want = tree_digest(src)
        # skipped with a warning: a FIFO and a symlink leaving the folder
        os.mkfifo(os.path.join(src, "cache", "pipe"))
        os.symlink("/etc/passwd", os.path.join(src, "escape"))
        os.symlink("../../outside", os.path.join(src, "cache", "escape2"))
        backing, ds, archive = self.empty_drive("rt-drive")

        read0 = ds.counter("bytes_read")
        r = ba.save(src, archive, quiet=True, drive_mount="")
        read = ds.counter("bytes_read") - read0
        self.assertEqual(r.action, "saved")
        self.assertTrue(r.verified)
        size = os.path.getsize(os.path.join(backing, "MyDrive", ARCHIVE))
        self.assertEqual(r.bytes_written, size)
        self.assertEqual(r.sha256, sha256_file(os.path.join(backing, "MyDrive", ARCHIVE)))
        self.assertGreaterEqual(read, size, f"verify read {read} bytes of a {size}-byte "
                                            "archive off the mount: not read back")
        # Read once, not twice. The margin is for the mount, not the tool: under load, a read
        # back that meets bytes not yet visible is retried, and the kernel may fetch a FUSE
        # read-ahead window again (one CI run read 16.83 MB back for a 15.81 MB archive).
        self.assertLess(read, size * 1.05 + (2 << 20), f"verify read {read} bytes for {size}")
        warned = " ".join(r.warnings)
        for skipped in ("cache/pipe", "escape", "cache/escape2"):
            self.assertIn(skipped, warned, f"no warning about {skipped}: {r.warnings}")
        with open(os.path.join(backing, "MyDrive", ARCHIVE + ".sha256")) as f:
            self.assertIn(f"{r.sha256}  {ARCHIVE}\n", f.read())

        # restore over the mount == the source (skipped entries absent)
        dest = self.restore_ok(archive, "rt")
        self.assertTreeDigest(dest, want, "after save -> restore")
        # plain `tar xf` of the saved archive gives the same tree under _assets/
        plain = tempfile.mkdtemp(prefix="rt-tar-", dir=W)
        run(["tar", "xf", os.path.join(backing, "MyDrive", ARCHIVE), "-C", plain])
        self.assertEqual(os.listdir(plain), [NAME])
        self.assertTreeDigest(os.path.join(plain, NAME), want, "after plain tar xf")

        # nothing changed: "unchanged", nothing written, archive untouched
        mtime = os.stat(os.path.join(backing, "MyDrive", ARCHIVE)).st_mtime_ns
        changes0 = ds.counter("changes")
        again = ba.save(src, archive, quiet=True, drive_mount="")
        self.assertEqual(again.action, "unchanged")
        self.assertEqual(ds.counter("changes"), changes0, "an unchanged save wrote to the mount")
        self.assertEqual(os.stat(os.path.join(backing, "MyDrive", ARCHIVE)).st_mtime_ns, mtime)

        # --no-verify (CLI): the archive is not read back
        read0 = ds.counter("bytes_read")
        p = cli("save", "--dest", src, "--archive", archive, "--full", "--no-verify",
                "--drive-mount", "")
        read = ds.counter("bytes_read") - read0
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("NOT read back", p.stdout)
        self.assertLess(read, size / 20, f"--no-verify still read {read} bytes off the mount")
        self.assertTreeDigest(self.restore_ok(archive, "rt2"), want, "after save --no-verify")


# -- 2. kill -9 at every step ------------------------------------------------------------
class CrashSweep(SaveCase):
    """A clean save of the changed folder is logged (--oplog); then, for each chosen call
    number N, the old state is copied afresh, the save runs as a process that drivesim
    SIGKILLs at call N, and a restore must give the old or the new tree exactly; then a new
    save on that crashed state must succeed and restore to the new tree."""

    def one_run(self, label, flag, *drivesim_args):
        backing, local = SCN.copy(label)
        ds = DriveSim(backing, SCN.mnt, *drivesim_args)
        ds.start()
        try:
            p = cli("save", "--dest", local, "--archive", Scenario.archive_in(ds), flag,
                    "--quiet", timeout=120)
        finally:
            ds.cleanup()
        return backing, local, p

    def check_after_crash(self, label, backing, local, flag):
        """(restored tree is "old" or "new", problems) for a crashed state."""
        problems = []
        mydrive = os.path.join(backing, "MyDrive")
        with DriveSim(backing, SCN.mnt) as ds:
            archive = Scenario.archive_in(ds)
            dest = self.new_dest(label)
            p = cli("restore", "--archive", archive, "--dest", dest, "--quiet")
            got = None
            if p.returncode:
                problems.append(f"restore after the crash exited {p.returncode}: "
                                f"{p.stderr.strip()[-300:]}")
            else:
                digest = tree_digest(dest)
                shutil.rmtree(os.path.dirname(dest), ignore_errors=True)
                got = "old" if digest == SCN.old else "new" if digest == SCN.new else None
                if got is None:
                    near = SCN.new if len(set(digest.items()) ^ set(SCN.new.items())) < len(
                        set(digest.items()) ^ set(SCN.old.items())) else SCN.old
                    problems.append(f"restore after the crash gave neither tree: "
                                    f"{diff_text(digest, near)}")
            p = cli("save", "--dest", local, "--archive", archive, flag, "--quiet")
            if p.returncode:
                problems.append(f"the save after the crash exited {p.returncode}: "
                                f"{p.stderr.strip()[-300:]}")
            else:
                left = temporaries(os.path.join(mydrive, ARCHIVE))
                if left:
                    problems.append(f"the save after the crash left temporaries {left}")
                dest = self.new_dest(label + "-again")
                p = cli("restore", "--archive", archive, "--dest", dest, "--quiet")
                if p.returncode:
                    problems.append(f"restore after the re-save exited {p.returncode}: "
                                    f"{p.stderr.strip()[-300:]}")
                elif tree_digest(dest) != SCN.new:
                    problems.append("restore after the re-save is not the new tree: "
                                    + diff_text(tree_digest(dest), SCN.new))
                shutil.rmtree(os.path.dirname(dest), ignore_errors=True)
        return got, problems

    def sweep(self, mode, flag):
        oplog = os.path.join(W, f"oplog-{mode}.txt")
        backing, local, p = self.one_run(f"sweep-{mode}-clean", flag, "--oplog", oplog)
        self.assertEqual(p.returncode, 0, f"the clean {mode} save failed: {p.stderr}")
        ops = read_oplog(oplog)
        self.assertTrue(ops, "drivesim logged no changing call")
        got, problems = self.check_after_crash(f"{mode}-clean", backing, local, flag)
        self.assertEqual((got, problems), ("new", []), "the clean save")
        if mode == "incremental":
            names = {os.path.basename(p) for _, op, paths in ops for p in paths}
            self.assertTrue(any(".layer-2" in n for n in names),
                            f"--incremental wrote no layer 2: {sorted(names)}")
        points = kill_points(ops, at_least=20)
        self.assertGreaterEqual(len(points), 20)
        ops_by_n = {n: (op, paths) for n, op, paths in ops}
        outcomes, failures, unreached = {}, [], []
        for n in points:
            label = f"sweep-{mode}-{n}"
            backing, local, p = self.one_run(label, flag, "--kill-at-op", n)
            op, paths = ops_by_n[n]
            names = " ".join(os.path.basename(x) for x in paths)
            what = f"kill at call {n}/{len(ops)} ({op} {names})"
            got, problems = self.check_after_crash(label, backing, local, flag)
            if p.returncode == 0 and n > len(ops) - 3:
                # the kernel cut this run's writes into fewer calls than the logged run's,
                # so it finished before call n: then it must have saved the new tree
                unreached.append(n)
                if got != "new":
                    failures.append(f"{what}: the save finished, yet it gave {got!r}")
            elif p.returncode != -signal.SIGKILL:
                failures.append(f"{what}: the save was not killed (exit {p.returncode}) "
                                f"{p.stderr.strip()[-200:]}")
            outcomes[n] = got
            failures += [f"{what}: {x}" for x in problems]
            shutil.rmtree(os.path.join(SCN.top, label), ignore_errors=True)
        summary = " ".join(f"{n}{ops_by_n[n][0][0]}:{outcomes[n] or '?'}" for n in points)
        sys.stdout.write(f"\n  {mode} sweep, {len(points)} of {len(ops)} calls (c create, "
                         f"w write, f fsync, r rename, u unlink) -> {summary}\n")
        if unreached:
            sys.stdout.write(f"  not reached (the run ended first): {unreached}\n")
        self.assertEqual(failures, [], f"{len(failures)} problem(s) in the {mode} sweep")
        self.assertLessEqual(len(unreached), 2, f"call numbers drift between runs: {unreached}")
        self.assertIn("old", outcomes.values(), "no crash point gave the old tree")

    def test_full_save_killed_at_any_call_restores_old_or_new(self):
        self.sweep("full", "--full")

    def test_incremental_save_killed_at_any_call_restores_old_or_new(self):
        self.sweep("incremental", "--incremental")


# -- 3. out of space while writing --------------------------------------------------------
class NoSpaceWhileWriting(SaveCase):
    def check(self, errno_name):
        backing, local = SCN.copy(f"nospace-{errno_name}")
        half = SCN.new_bytes // 2
        ds = self.mount(backing, "--fault", f"op=write,errno={errno_name},after={half},secs=30",
                        mnt=SCN.mnt)
        t0 = time.monotonic()
        p = cli("save", "--dest", local, "--archive", Scenario.archive_in(ds), "--full",
                "--quiet")
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 8, f"{errno_name}: {p.stdout}{p.stderr}")
        self.assertGreater(ds.counter("faults"), 0, "the fault never fired")
        self.assertLess(took, 25, "NoSpace should come at once, not after retrying")
        ds.cleanup()
        mydrive = os.path.join(backing, "MyDrive")
        self.assertEqual(temporaries(os.path.join(mydrive, ARCHIVE)), [], "temporary left behind")
        self.assertEqual(file_hashes(mydrive), SCN.old_drive,
                         "archive, versions, layers or sidecar changed by a failed save")
        with open(os.path.join(local, MARKER), "rb") as f:
            self.assertEqual(f.read(), SCN.old_marker, "the local marker changed")

    def test_enospc_mid_write_is_exit_8_and_changes_nothing(self):
        self.check("ENOSPC")

    def test_edquot_mid_write_is_exit_8_and_changes_nothing(self):
        self.check("EDQUOT")


# -- 4. incremental after mutate ------------------------------------------------------------
class IncrementalAfterMutate(SaveCase):
    def test_layer_is_small_and_restores_the_mutated_tree(self):
        src = os.path.join(W, "inc-src", NAME)
        make_assets("create", src, "--profile", "mixed", "--scale", "0.05")
        _, ds, archive = self.empty_drive("inc-drive")
        w0 = ds.counter("bytes_written")
        full = ba.save(src, archive, quiet=True, drive_mount="")
        full_written = ds.counter("bytes_written") - w0
        self.assertEqual(full.action, "saved")
        restored = self.restore_ok(archive, "inc")
        mutate(restored)
        want = tree_digest(restored)
        w0 = ds.counter("bytes_written")
        layer = ba.save(restored, archive, quiet=True, drive_mount="")
        layer_written = ds.counter("bytes_written") - w0
        self.assertEqual(layer.action, "layer", "incremental='auto' wrote a full archive "
                                                "for a ~6 % change")
        self.assertGreater(layer.deleted, 0)
        self.assertLessEqual(layer_written, 0.10 * full_written,
                             f"the layer wrote {layer_written} bytes, the full save "
                             f"{full_written}")
        sys.stdout.write(f"\n  full save wrote {full_written / 1e6:.1f} MB, the layer "
                         f"{layer_written / 1e6:.1f} MB "
                         f"({layer_written / full_written:.1%})\n")
        self.assertTreeDigest(self.restore_ok(archive, "inc2"), want, "restore of base + layer")


# -- 5. autosave -----------------------------------------------------------------------------
class AutosaveProcess(SaveCase):
    def start(self, local, archive, every):
        log = os.path.join(os.path.dirname(local), "autosave.log")
        out = open(log, "w")
        self.addCleanup(out.close)
        proc = subprocess.Popen([sys.executable, SCRIPT, "autosave", "--every", every,
                                 "--dest", local, "--archive", archive], cwd=REPO,
                                env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        self.wait_for(lambda: "autosave: every" in self.text(log), 20, proc, log,
                      "autosave never started")
        return proc, log

    @staticmethod
    def text(log):
        with open(log, errors="replace") as f:
            return f.read()

    def wait_for(self, predicate, timeout, proc, log, message):
        deadline = time.monotonic() + timeout
        while not predicate():
            if proc.poll() is not None:
                self.fail(f"{message}: autosave exited {proc.returncode}\n{self.text(log)}")
            if time.monotonic() > deadline:
                self.fail(f"{message} within {timeout} s\n{self.text(log)}")
            time.sleep(0.1)

    def stop(self, proc, log):
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail(f"autosave did not end after SIGTERM\n{self.text(log)}")
        self.assertEqual(rc, 0, self.text(log))

    def test_autosave_saves_on_change_idles_and_saves_on_sigterm(self):
        backing, local = SCN.copy("autosave")
        ds = self.mount(backing, mnt=SCN.mnt)
        archive = Scenario.archive_in(ds)
        proc, log = self.start(local, archive, "1s")
        # the folder differs from the last save: the first rounds save it
        self.wait_for(lambda: self.text(log).count("autosave: saved") >= 1, 30, proc, log,
                      "no save of the changed folder")
        self.assertTreeDigest(self.restore_ok(archive, "auto1"), SCN.new, "after the first save")
        # idle: three rounds or more, nothing written
        time.sleep(1.5)
        before = ds.stats()
        time.sleep(3.5)
        after = ds.stats()
        self.assertIsNone(proc.poll(), self.text(log))
        for key in ("bytes_written", "changes", "creates", "renames"):
            self.assertEqual(after.get(key), before.get(key), f"idle autosave changed {key}")
        self.assertEqual(self.text(log).count("autosave: saved"), 1, self.text(log))
        # a change is saved by the next round
        write_random(os.path.join(local, "notes", "epoch2.bin"), 200_000, 7)
        w0 = before.get("bytes_written", 0)
        self.wait_for(lambda: self.text(log).count("autosave: saved") >= 2, 30, proc, log,
                      "the change was not saved")
        self.assertGreater(ds.counter("bytes_written"), w0 + 200_000)
        # a last change and SIGTERM at once: saved before exit 0
        with open(os.path.join(local, "config.yaml"), "a") as f:
            f.write("final: true\n")
        want = tree_digest(local)
        self.stop(proc, log)
        self.assertTreeDigest(self.restore_ok(archive, "auto2"), want, "after SIGTERM")
        self.assertEqual(temporaries(os.path.join(backing, "MyDrive", ARCHIVE)), [])

    def test_sigterm_runs_the_final_save(self):
        """--every 1h: no round can run, so only the final save can save the change."""
        backing, local = SCN.copy("autosave-final")
        ds = self.mount(backing, mnt=SCN.mnt)
        archive = Scenario.archive_in(ds)
        proc, log = self.start(local, archive, "1h")
        self.assertEqual(ds.counter("changes"), 0, "autosave saved before its first round")
        self.stop(proc, log)
        self.assertGreater(ds.counter("bytes_written"), 0, "SIGTERM did not save")
        self.assertIn("autosave: saved", self.text(log))
        self.assertTreeDigest(self.restore_ok(archive, "auto-final"), SCN.new, "after SIGTERM")


if __name__ == "__main__":
    unittest.main(verbosity=2)
