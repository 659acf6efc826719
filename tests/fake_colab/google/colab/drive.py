"""A stand-in for Colab's `google.colab.drive`, for tests only (tests/e2e_kernel.py and the
example notebook's CI run put tests/fake_colab on the kernel's PYTHONPATH).

Every call is recorded as one JSON line in $FAKE_COLAB_LOG, so a test can prove the tool
mounted Drive (or flushed it) by itself. With $FAKE_COLAB_BACKING set, mount() does what
Colab's does: it serves that folder (which holds MyDrive/) at the mount point, here through
drivesim ($FAKE_COLAB_DRIVESIM, extra arguments in $FAKE_COLAB_DRIVESIM_ARGS), and
flush_and_unmount() unmounts it, which waits for drivesim to finish its writes.
"""
import json
import os
import shlex
import shutil
import subprocess
import time

_mounted = []  # mount points this kernel mounted, newest last


def _record(call, **arguments):
    log = os.environ.get("FAKE_COLAB_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(dict(arguments, call=call, pid=os.getpid())) + "\n")


def _unmount(mountpoint):
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"
    deadline = time.monotonic() + 10
    while os.path.ismount(mountpoint):
        subprocess.run([fusermount, "-u", mountpoint], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"fake google.colab: cannot unmount {mountpoint}")
        time.sleep(0.1)


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    _record("mount", mountpoint=mountpoint, force_remount=force_remount)
    backing = os.environ.get("FAKE_COLAB_BACKING")
    if not backing:
        return
    if os.path.ismount(mountpoint):
        if not force_remount:
            print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
                  f"call drive.mount(\"{mountpoint}\", force_remount=True).")
            return
        _unmount(mountpoint)
    os.makedirs(mountpoint, exist_ok=True)
    command = [os.environ["FAKE_COLAB_DRIVESIM"], backing, mountpoint]
    command += shlex.split(os.environ.get("FAKE_COLAB_DRIVESIM_ARGS", ""))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    _record("drivesim", mountpoint=mountpoint, drivesim_pid=process.pid)
    deadline = time.monotonic() + timeout_ms / 1000
    while not os.path.ismount(mountpoint):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fake google.colab: drivesim did not mount {mountpoint}")
        time.sleep(0.05)
    _mounted.append(mountpoint)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms=24 * 60 * 60 * 1000):
    _record("flush_and_unmount")
    while _mounted:
        _unmount(_mounted.pop())
    print("All changes made in this colab session should now be visible in Drive.")
