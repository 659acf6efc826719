#!/usr/bin/env python3
"""Benchmark bootstrap_assets.py against the link limit and against GNU tar.

    python3 bench/bench.py [--scale 0.25] [--runs 3] [--dir DIR] [--out FILE] [--strict]
                           [--part-size SIZE] [--parts-from save|split] [--cache-reserve SIZE]
                           [--svg PATH]
                           [--only drive,split,local,http,save,cache,progressive,only,
                                   partial-save,demand]
    python3 bench/bench.py --svg-from REPORT [--svg PATH]   (draws a saved report; runs nothing)
    make bench BENCH_ARGS="--scale 0.05 --runs 1"
    make chart   (bench/chart.svg, the README's, from the newest run in bench/RESULTS.md)

Data (generated once and cached in DIR, default $BENCH_DIR or /tmp/bootstrap-bench): the
`mixed` profile of ../shared/datasets/make_assets.py at --scale, packed with GNU tar as
assets.tar.gz and assets.tar (one top folder `_assets`).

Over drivesim at its defaults (100 MB/s, 20 ms per open), archive MyDrive/assets.tar.gz
with a sha256sum sidecar:
  cat ARCHIVE > /dev/null (the link limit) | seed_restore.py (copy, then extract) |
  ours, each engine                                   target: ours / cat
Local, warm page cache:
  tar xf assets.tar   | ours on assets.tar, each engine         target: ours / tar
  tar xzf assets.tar.gz | ours --engine python on it            target: ours / tar
                        | ours --engine tar on it               (for information)
Also: peak RSS of our restore process and the time of the no-op re-run (targets).

Over ../shared/httpsim at 25 MB/s per connection and 200 MB/s for the link (30 ms to first
byte), the same assets.tar.gz with its sidecar:
  the link's limit (size / 200 MB/s, computed) | curl, one stream > /dev/null |
  ours --connections 1, 4, 8, 16           targets: ours (8, the default) / the link,
                                           ours (8) / curl, and its peak RSS

Split archives (when the tool has `save --part-size`), over drivesim at its defaults: the same
`_assets` as a plain tar in parts of --part-size (32M below scale 0.5, else 1G),
MyDrive/split/assets.tar.part-0001..., made by our `save --format tar --full --part-size`
from a copy of the folder (--parts-from save) or by GNU `split -b` of assets.tar with a
sidecar line for the whole (--parts-from split):
  cat ARCHIVE.part-* > /dev/null | ours, each engine          target: ours / cat
The peak size of the mount's local content cache (drivesim --cache-dir on the destination's
filesystem, --cache-reserve: by default the disk's size, so every closed file is evicted at
once, as on a full disk; a fresh mount per run) while ours restores the split archive, and
while it restores the same bytes as one file, MyDrive/single/assets.tar: MiB, and as a share
of the archive's size (for information).

Save, over drivesim at its defaults (write 60 MB/s), of a copy of the same `_assets`:
  dd if=LOCAL_FILE of=MNT/x bs=1M conv=fsync, LOCAL_FILE as large as the saved archive |
  ours `save --full` (read back and verified)             target: ours / dd
  ours `save --full --no-verify`                          target: ours / dd
  then make_assets.py mutate and `save --incremental`: bytes written to the mount (drivesim
  stats) as a share of a full save's                      target
  dd as above, LOCAL_FILE as large as the split plain tar |
  ours `save --full --format tar --part-size SIZE` to MyDrive/split/assets.tar
  (read back and verified)                                target: ours / dd

Progressive restore (files in place as they are verified; --only progressive runs just these), over drivesim at its
defaults: our own `save --full` (default order: smallest top-level entry first) of a copy of
the same `_assets` to MyDrive/assets.tar.gz, and in each round:
  cat ARCHIVE > /dev/null (the link's limit) |
  `restore(..., background=True)` in a `python -c` driver process, times from just before the
  process starts (start-up and import included):
    job.wait("config.yaml", "tokenizer/")                 target: seconds
    job.wait("weights/")                 target: 1.15 x (weights' stored bytes / cat's speed) + 1 s
    the first of job.files("images/**"), after weights/   target: seconds
    the whole process (job.result())                      target: ours / cat
  a background restore killed (SIGKILL) once job.progress passes half its bytes, then a
  foreground restore of the same folder: bytes it reads (drivesim stats) / the archive's
  size                                                    target
Demand first (--only demand), over drivesim at its defaults: the same save, and in each
round cat of it, then `restore(..., background=True)` in a driver process whose first call
is job.wait(the last file in archive order)           target: seconds after the call
  the whole process                                     target: ours / cat
  (and, for information, the same restore asking for nothing, in the same round)
Then, locally: our `save --full --format gz --level 1` of the folder, its size against one
gzip stream (zlib, level 1) of the same tar stream it holds   target: ours / one stream
(and, for information, of GNU tar's assets.tar).

Save of a partial folder (issue 18; --only partial-save), over drivesim at its defaults:
our own `save --full` (default order) of a copy of the same `_assets`, `restore --only
'weights/**'` of it, one new file of 1 MiB added, then:
  `save` (a layer): bytes written to the mount (drivesim stats) / the new file's bytes +
  64 KiB of layer overhead (headers, index, sidecar)      target
  dd as above, LOCAL_FILE as large as the new full archive |
  ours `save --full`, carrying every file the folder never restored over from the archive
  on the mount (read by ranges, verified)                 target: ours / dd
Partial restore (--only only runs just these): our `save --full` (default order, --format
auto: a plain tar) of a copy of the folder to MyDrive/assets.tar, then per round, over
drivesim at defaults, httpsim (the http rows' caps) and moto_server (s3://, $TEST_VENV,
unthrottled; bytes counted by a proxy, tests/byte_proxy.py):
  the weights' byte range (dd from the mount, curl -r from the server) |
  restore --only 'weights/**'    targets: bytes read <= 1.05 x theirs + the index,
                                          time <= 1.15 x the baseline + 1 s
  the same command again (the no-op re-run)  target: seconds, and no archive data read
  restore --only 'images/class_07/', and 'images/*/img_0000*.jpg' (a range per class
  folder)                        target: bytes read <= 1.10 x theirs + the index

The figure each target sets is in TARGETS (below), the one place it is written; the report
prints it beside each row. Each figure is the median of --runs runs, methods interleaved
within a round. Runs' outputs are set aside, not deleted, between runs (see Scratch for
why). Prints a markdown table; --out also writes it to a file. Draws the Drive rows (restore and save against cat / dd, the
link's limit, and the seed method) as an SVG bar chart into --svg (bench/results/chart.svg).
Exit 0 unless --strict and a target is missed.
"""
import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

from drivesim_fixture import MAKE_ASSETS, SEED_RESTORE, DriveSim, sha256_file  # noqa: E402

SCRIPT = os.path.join(REPO, "bootstrap_assets.py")
# What each row must meet, written once: a ratio to the row's baseline (no more than), or for
# the no-op re-run seconds and for peak RSS MiB (less than). The restore targets are for the
# engine `--engine auto` picks; the others are measured for information.
TARGETS = {
    "drive restore": 1.10,    # ours / cat of the archive, over drivesim
    "no-op re-run": 0.5,      # seconds, the whole process
    "split restore": 1.10,    # ours / cat of all the parts, over drivesim
    "local tar": 1.15,        # ours / tar xf, on assets.tar
    "local tar.gz": 1.5,      # ours --engine python / tar xzf, on assets.tar.gz
    "http": 1.3,              # ours --connections 8 (the default) / the link's limit
    "http against curl": 1 / 2.5,  # ours --connections 8 / one curl stream
    "save": 1.15,             # ours save --full, and --no-verify / dd of as many bytes
    "incremental save": 0.10,  # bytes a layer writes / bytes a full save writes
    "split save": 1.15,       # ours save --part-size / dd of as many bytes
    # the progressive rows: an archive from our own save (default order) over
    # drivesim, restore(background=True) in a driver process, times from the process's start
    "ready config": 1.5,      # seconds: job.wait("config.yaml", "tokenizer/")
    "ready weights": (1.15, 1.0),  # job.wait("weights/") <= 1.15 x (weights' bytes / cat's
                              # speed) + 1 s
    "first image": 1.0,       # seconds: first of job.files("images/**") after weights/
    "background restore": 1.05,  # the whole background restore (process) / cat
    "demand first": 2.0,      # seconds: job.wait(the last file) after restore(background=True)
    "resume read": 0.55,      # bytes a restore resumed after kill -9 at half way reads /
                              # the archive's size
    "gz size": 1.02,          # save --format gz / one gzip stream of the same tar, same level
    # a partial folder (restore --only 'weights/**') with one new file
    "partial layer": 1.0,     # bytes its `save` writes / the new file + LAYER_OVERHEAD
    "partial full save": 1.15,  # its `save --full` (the rest carried over) / dd, as many bytes
    # the --only rows (bench_only): our save (default order) as a plain tar
    "only read": 1.05,        # bytes restore --only 'weights/**' reads <= 1.05 x theirs + index
    "only time": (1.15, 1.0),  # restore --only 'weights/**' <= 1.15 x reading their range + 1 s
    "only spread read": 1.10,  # bytes --only 'images/class_07/' reads <= 1.10 x theirs + index
    "restore RSS": 100,       # MiB, our restore (drive, split and local rows)
    "http RSS": 150,          # MiB, our restore from http, any --connections
}
DEFAULT_ENGINE = "python"
DEFAULT_MARK = {DEFAULT_ENGINE: " (the default)"}
NAME = "_assets"
MB = 1e6
MIB = 1 << 20
# the split archive and the same bytes as one file, under the split rows' drivesim backing
SPLIT_REL = os.path.join("MyDrive", "split", "assets.tar")
SINGLE_REL = os.path.join("MyDrive", "single", "assets.tar")
DEFAULT_SVG = os.path.join(HERE, "results", "chart.svg")
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, **kw)
    if r.returncode:
        sys.exit(f"bench: {' '.join(cmd)} -> exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def parse_size(text):
    """32M, 1G, 512K, 1.5G (powers of 1024) or a bare number of bytes, as the tool's
    --part-size reads them."""
    t = text.strip().upper()
    unit = t[-1] if t and t[-1] in SIZE_UNITS else ""
    try:
        n = int(float(t[: len(t) - len(unit)]) * SIZE_UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 32M, 1G)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return n


def size_text(n):
    """32 MiB, 1 GiB, 1.5 GiB, 252 GiB (4 digits at most)."""
    for unit in ("T", "G", "M", "K"):
        if n >= SIZE_UNITS[unit]:
            return f"{n / SIZE_UNITS[unit]:.4g} {unit}iB"
    return f"{n} B"


def size_arg(n):
    """n as --part-size and GNU split -b write it: 32M, 1G (powers of 1024), else bytes."""
    for unit in ("T", "G", "M", "K"):
        if n % SIZE_UNITS[unit] == 0:
            return f"{n // SIZE_UNITS[unit]}{unit}"
    return str(n)


def part_names(archive):
    """ARCHIVE.part-0001, ARCHIVE.part-0002, ... in order (not a save's temporary files)."""
    folder, base = os.path.split(archive)
    prefix = base + ".part-"
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.startswith(prefix) and n[len(prefix):].isdigit())


def has_flag(command, flag):
    """Whether this bootstrap_assets.py knows `command ... flag` (older commits lack some)."""
    r = subprocess.run([sys.executable, SCRIPT, command, "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    return r.returncode == 0 and flag in r.stdout


# -- data --------------------------------------------------------------------------
def prepare(top, scale):
    """The cached source tree and archives for this scale (built once, atomically)."""
    base = os.path.join(top, f"mixed-scale{scale:g}")
    src_parent = os.path.join(base, "src")
    if not os.path.isdir(os.path.join(src_parent, NAME)):
        tmp = src_parent + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"bench: generating the mixed profile at scale {scale:g} in {src_parent} ...")
        t0 = time.monotonic()
        sh([sys.executable, MAKE_ASSETS, "create", os.path.join(tmp, NAME),
            "--profile", "mixed", "--scale", str(scale)])
        os.rename(tmp, src_parent)
        log(f"bench: generated in {time.monotonic() - t0:.1f} s")
    archives = {}
    for name, flags in (("assets.tar.gz", "czf"), ("assets.tar", "cf")):
        path = os.path.join(base, name)
        if not os.path.exists(path):
            log(f"bench: tar {flags} {path} ...")
            sh(["tar", flags, path + ".tmp", "-C", src_parent, NAME])
            os.rename(path + ".tmp", path)
        archives[name] = path
    # the Drive: MyDrive/assets.tar.gz and its sha256sum sidecar
    mydrive = os.path.join(base, "drive", "MyDrive")
    os.makedirs(mydrive, exist_ok=True)
    on_drive = os.path.join(mydrive, "assets.tar.gz")
    if not (os.path.exists(on_drive) and os.path.samefile(on_drive, archives["assets.tar.gz"])):
        if os.path.exists(on_drive):
            os.remove(on_drive)
        os.link(archives["assets.tar.gz"], on_drive)
        with open(on_drive + ".sha256", "w") as f:
            f.write(f"{sha256_file(on_drive)}  assets.tar.gz\n")
    files = sum(len(fs) for _, _, fs in os.walk(os.path.join(src_parent, NAME)))
    return dict(base=base, src=os.path.join(src_parent, NAME), drive=os.path.dirname(mydrive),
                files=files, **archives)


def copy_source(data, work):
    """A copy of the source tree that saves may mark and mutate_assets may change."""
    src = os.path.join(work, "save-src", NAME)
    log(f"bench: copying {data['src']} (the copy gets our marker and is mutated)")
    shutil.copytree(data["src"], src, symlinks=True)
    return src


def build_split(data, src, work, part_size, how):
    """A drivesim backing with the `_assets` tree as a plain tar in parts,
    MyDrive/split/assets.tar.part-NNNN, and the same bytes as one file,
    MyDrive/single/assets.tar, each with a sidecar. how: "save" (our `save --format tar
    --full --part-size` from `src`, a copy of the tree) or "split" (GNU split of
    assets.tar, the sidecar a sha256sum line for the whole). None (after a warning) when
    the archive fits in one part."""
    drive = os.path.join(work, "split-drive")
    split_archive = os.path.join(drive, SPLIT_REL)
    single = os.path.join(drive, SINGLE_REL)
    for path in (split_archive, single):
        os.makedirs(os.path.dirname(path))
    log(f"bench: split: making {SPLIT_REL} in parts of {size_text(part_size)} ({how}) ...")
    if how == "save":
        sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", split_archive,
            "--format", "tar", "--full", "--part-size", size_arg(part_size), "--quiet"])
    else:
        sh(["split", "-b", size_arg(part_size), "-d", "-a", "4", "--numeric-suffixes=1",
            data["assets.tar"], split_archive + ".part-"])
        with open(split_archive + ".sha256", "w") as f:
            f.write(f"{sha256_file(data['assets.tar'])}  assets.tar\n")
    parts = part_names(split_archive)
    if len(parts) < 2:
        log(f"bench: WARNING: the archive fits in one part of {size_text(part_size)}: no "
            "split rows (use a smaller --part-size)")
        return None
    # the same bytes as one file, for the cache rows
    h = hashlib.sha256()
    with open(single, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
    with open(single + ".sha256", "w") as f:
        f.write(f"{h.hexdigest()}  assets.tar\n")
    os.sync()  # not to pay for this writeback in the timed runs
    return dict(drive=drive, parts=len(parts), size=os.path.getsize(single), how=how,
                part_size=part_size)


def code_version():
    """The commit the measured bootstrap_assets.py comes from, when REPO is a git checkout."""
    try:
        r = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True)
    except OSError:
        return "unknown (no git)"
    return f"commit {r.stdout.strip()}" if r.returncode == 0 else "unknown (not a git checkout)"


def tree_size(root):
    n = total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f != ".bootstrap_assets.json":
                n += 1
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return n, total


# -- running --------------------------------------------------------------------
class Method:
    """One timed command. `make(workdir)` gives (argv, the folder it produced)."""

    def __init__(self, name, make, baseline=None, target=None, ours=False, measure="time",
                 cleanup=None):
        self.name, self.make, self.baseline, self.target, self.ours = \
            name, make, baseline, target, ours
        self.measure = measure  # what the ratio compares: "time" or "written" (bytes)
        self.cleanup = cleanup  # run after each run, outside the timed region
        self.times, self.rss_kb, self.cpu, self.read, self.written = [], [], [], [], []

    def figure(self, measure=None):
        measure = measure or self.measure
        return statistics.median(self.written if measure == "written" else self.times)


GNU_TIME = "/usr/bin/time"  # measures a child's peak RSS without our own as a floor


def run_timed(argv):
    """(seconds, peak RSS in KiB, CPU seconds (user + sys) of the process and the children
    it waited for).

    A forked child's ru_maxrss starts at its parent's RSS (the copy it execs from), so the
    command is started by GNU time, a small process, when it is there; else by us, and
    figures under our own RSS are a floor, not a measure."""
    tmp = os.environ.get("TMPDIR", "/tmp")
    log_path = os.path.join(tmp, f"bench-{os.getpid()}.out")
    rss_path = os.path.join(tmp, f"bench-{os.getpid()}.rss")
    if os.access(GNU_TIME, os.X_OK):
        argv = [GNU_TIME, "-f", "%M %U %S", "-o", rss_path] + argv
    with open(log_path, "w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(
            os, "waitstatus_to_exitcode") else (status >> 8)
        out.seek(0)
        text = out.read()
    os.remove(log_path)
    if proc.returncode:
        sys.exit(f"bench: {' '.join(argv)} -> exit {proc.returncode}\n{text}")
    rss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if argv[0] == GNU_TIME:
        with open(rss_path) as f:
            fields = f.read().split()[-3:]
        os.remove(rss_path)
        rss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    return seconds, rss, cpu


class Scratch:
    """Where timed runs write, and where their outputs wait until deleting them cannot slow
    the runs that follow.

    This machine's root filesystem is ext4 without a journal. There, creating a file in a
    block group where files were deleted in the last minute first skips every such inode
    (find_inode_bit -> recently_deleted, per create): 8000 creates took 0.19 s of kernel time
    in a fresh folder and 4.8 s right after 8000 deletions beside it. A new notebook VM has
    no such deletions, and the methods that create files would pay for the previous run's
    cleanup, so outputs are moved aside; they are deleted only when space runs short, and
    the next run then waits out the minute."""

    QUIET_AFTER_DELETE = 61.0  # seconds; the kernel's window is 60 s for written-back inodes

    def __init__(self, work, reserve):
        self.work, self.reserve = work, reserve
        self.trash = os.path.join(work, "trash")
        self.deleted_at = None
        self.count = 0
        if os.path.exists(work):
            self._delete(work)
        os.makedirs(self.trash)

    def _delete(self, path):
        shutil.rmtree(path, ignore_errors=True)
        os.sync()
        self.deleted_at = time.monotonic()

    def fresh(self, label):
        """An empty folder for a run, with enough space and no recent deletions."""
        if shutil.disk_usage(self.work).free < self.reserve and os.listdir(self.trash):
            log("bench: low on space: deleting earlier runs' outputs, then waiting "
                f"{self.QUIET_AFTER_DELETE:.0f} s (see Scratch)")
            self._delete(self.trash)
            os.makedirs(self.trash)
        if self.deleted_at is not None:
            time.sleep(max(0.0, self.deleted_at + self.QUIET_AFTER_DELETE - time.monotonic()))
        self.count += 1
        folder = os.path.join(self.work, f"{label}-{self.count}")
        os.makedirs(folder)
        return folder

    def discard(self, folder):
        """Outside the timed region: set a run's output aside, and flush dirty pages so the
        next run does not pay for this one's writeback."""
        if os.path.exists(folder):
            os.rename(folder, os.path.join(self.trash, os.path.basename(folder)))
        os.sync()

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)


def run_round(methods, scratch, ds, expect, check):
    for m in methods:
        folder = scratch.fresh("run")
        argv, produced = m.make(folder)
        before = ds.stats() if ds else {}
        seconds, rss, cpu = run_timed(argv)
        m.cpu.append(cpu)
        if ds:
            after = ds.stats()
            m.read.append(after.get("bytes_read", 0) - before.get("bytes_read", 0))
            m.written.append(after.get("bytes_written", 0) - before.get("bytes_written", 0))
        m.times.append(seconds)
        m.rss_kb.append(rss)
        if check and produced:  # first round: the output is the whole tree
            got = tree_size(produced)
            if got != expect:
                sys.exit(f"bench: {m.name} produced {got} (files, bytes), expected {expect}")
        log(f"  {m.name:<44} {seconds:7.2f} s  cpu {cpu:6.2f} s  rss {rss / 1024:6.1f} MiB")
        scratch.discard(folder)
        if m.cleanup:
            m.cleanup()


def in_dest(folder):
    return os.path.join(folder, NAME)


def default_target(key, engine):
    """TARGETS[key] for the engine `--engine auto` picks; None (for information) for others."""
    return TARGETS[key] if engine == DEFAULT_ENGINE else None


def ours(archive, engine, dest_of, *extra):
    def make(folder):
        dest = dest_of(folder)
        argv = [sys.executable, SCRIPT, "--archive", archive, "--dest", dest, "--quiet"]
        if engine:
            argv += ["--engine", engine]
        return argv + list(extra), dest
    return make


def bench_save(data, scratch, runs, src, part_size=None):
    """Full saves against dd through drivesim, then an incremental save after mutate; with
    part_size, also a full plain-tar save in parts of that size against dd of as many bytes.
    `src` is a copy of the tree (copy_source). Returns (methods, a line describing the
    archive)."""
    work = scratch.work
    mydrive = os.path.join(work, "save-drive", "MyDrive")
    os.makedirs(mydrive)
    on_backing = os.path.join(mydrive, "assets.tar.gz")
    mnt = os.path.join(data["base"], "mnt-save")
    with DriveSim(os.path.dirname(mydrive), mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar.gz")

        def save(*flags, to=archive):
            return [sys.executable, SCRIPT, "save", "--dest", src, "--archive", to,
                    "--quiet"] + list(flags)

        # a first save: the archive's size for dd's input; warms the page cache with src
        log("bench: save: a first full save (not timed)")
        run_timed(save("--full"))
        # over the default part size (1 GiB) the default save writes parts
        pieces = part_names(on_backing) or [on_backing]
        size = sum(os.path.getsize(p) for p in pieces)
        with open(pieces[0], "rb") as f:
            magic = f.read(2)
        fmt = "gzip" if magic == b"\x1f\x8b" else "plain tar"
        if len(pieces) > 1:
            fmt += f", {len(pieces)} parts (the default part size)"
        dd_input = os.path.join(work, "dd-input.bin")
        with open(dd_input, "wb") as out:  # a local file exactly as large as the archive
            for piece in pieces:
                with open(piece, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        sh(["sh", "-c", 'cat "$1" > /dev/null', "cat", dd_input])
        dd_out = os.path.join(mnt, "MyDrive", "dd.bin")  # removed through the mount
        dd = Method("drive: dd if=local of=MNT/x bs=1M conv=fsync",
                    lambda f: (["dd", f"if={dd_input}", f"of={dd_out}", "bs=1M", "conv=fsync",
                                "status=none"], None),
                    cleanup=lambda: os.path.exists(dd_out) and os.remove(dd_out))
        full = Method("drive: ours save --full", lambda f: (save("--full"), None),
                      baseline=dd, target=TARGETS["save"], ours=True)
        no_verify = Method("drive: ours save --full --no-verify",
                           lambda f: (save("--full", "--no-verify"), None), baseline=dd,
                           target=TARGETS["save"], ours=True)
        methods = [dd, full, no_verify]
        split_methods, split_info = [], ""
        if part_size:
            # the same tree as a plain tar in parts; dd writes as many bytes as one file
            split_archive = os.path.join(mnt, SPLIT_REL)
            split_backing = os.path.join(os.path.dirname(mydrive), SPLIT_REL)
            os.makedirs(os.path.dirname(split_archive))  # through the mount
            split_flags = ("--full", "--format", "tar", "--part-size", size_arg(part_size))
            log("bench: save: a first split save (not timed)")
            run_timed(save(*split_flags, to=split_archive))
            parts = part_names(split_backing)
            pieces = parts or [split_backing]  # one file if it fits in one part
            split_size = sum(os.path.getsize(p) for p in pieces)
            dd_split_input = os.path.join(work, "dd-split-input.bin")
            with open(dd_split_input, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            sh(["sh", "-c", 'cat "$1" > /dev/null', "cat", dd_split_input])
            dd_split_out = os.path.join(mnt, "MyDrive", "dd-split.bin")
            dd_split = Method("drive: dd as above, as large as the split .tar",
                              lambda f: (["dd", f"if={dd_split_input}", f"of={dd_split_out}",
                                          "bs=1M", "conv=fsync", "status=none"], None),
                              cleanup=lambda: (os.path.exists(dd_split_out)
                                               and os.remove(dd_split_out)))
            count = f"{len(parts)} parts" if parts else "one file"
            split_save = Method(f"drive: ours save --full --format tar --part-size "
                                f"{size_arg(part_size)} ({count})",
                                lambda f: (save(*split_flags, to=split_archive), None),
                                baseline=dd_split, target=TARGETS["split save"], ours=True)
            split_methods = [dd_split, split_save]
            split_info = (f"; split: MyDrive/split/assets.tar, plain tar {split_size / MB:.1f} "
                          f"MB in {count} (parts of at most {size_text(part_size)}), dd's "
                          f"input a local file of that size")
            if len(parts) < 2:
                log(f"bench: WARNING: save --part-size {size_arg(part_size)} wrote one file, "
                    "not parts")
        # the split saves first: the round's last save leaves the marker on assets.tar.gz,
        # which the incremental save below needs
        rounds = split_methods + methods
        log(f"bench: save over drivesim ({size / MB:.0f} MB archive, {fmt})")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round(rounds, scratch, ds, None, check=False)

        # the last full save left the folder's marker matching the archive: mutate, then a
        # layer. Its bytes are deterministic: one run.
        sh([sys.executable, MAKE_ASSETS, "mutate", src])
        incremental = Method("drive: ours save --incremental after mutate",
                             lambda f: (save("--incremental"), None), baseline=full,
                             target=TARGETS["incremental save"], ours=True,
                             measure="written")
        log("bench: save --incremental after make_assets.py mutate")
        run_round([incremental], scratch, ds, None, check=False)
        layers = [n for n in os.listdir(mydrive) if ".layer-" in n and ".tmp-" not in n]
        if not layers:
            log("bench: WARNING: save --incremental wrote no layer")
    info = (f"archive {size / MB:.1f} MB ({fmt}); dd's input a local file of the same size, "
            f"page cache warm; the incremental row compares bytes written (drivesim stats) "
            f"with a full save's, one run{split_info}")
    return methods + [incremental] + split_methods, info


HTTPSIM = os.path.join(os.path.dirname(MAKE_ASSETS), "..", "httpsim", "httpsim.py")
HTTP_PER_CONN, HTTP_LINK = 25, 200  # MB/s: httpsim's caps for the http rows
HTTP_CONNECTIONS = (1, 4, 8, 16)
HTTP_DEFAULT_CONNECTIONS = 8  # the tool's --connections default: the row with the targets


def bench_http(data, scratch, runs, expect):
    """Restore of MyDrive/assets.tar.gz (and its sidecar) from httpsim at 25 MB/s per
    connection and 200 MB/s for the link (30 ms to first byte): one curl stream, ours at
    each --connections, and the link's limit (size / 200 MB/s)."""
    root = data["drive"]
    port_file = os.path.join(scratch.work, "httpsim-port")
    sim = subprocess.Popen([sys.executable, HTTPSIM, root, "--port", "0", "--port-file",
                            port_file, "--per-conn-mbps", str(HTTP_PER_CONN), "--total-mbps",
                            str(HTTP_LINK)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or sim.poll() is not None:
                sys.exit("bench: httpsim did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            url = f"http://127.0.0.1:{f.read().strip()}/MyDrive/assets.tar.gz"
        size = os.path.getsize(data["assets.tar.gz"])
        link = Method(f"http: the link's limit (size / {HTTP_LINK} MB/s)", None)
        link.times, link.cpu, link.rss_kb = [size / (HTTP_LINK * MB)], [0.0], [0]
        curl = None
        if shutil.which("curl"):
            curl = Method("http: curl, one stream > /dev/null",
                          lambda f: (["curl", "-sSf", "-o", "/dev/null", url], None))
        else:
            log("bench: WARNING: no curl: no curl row")
        ours_rows = [
            Method(f"http: ours --connections {n}"
                   f"{' (the default)' if n == HTTP_DEFAULT_CONNECTIONS else ''}",
                   ours(url, DEFAULT_ENGINE, in_dest, "--connections", str(n)), baseline=link,
                   target=TARGETS["http"] if n == HTTP_DEFAULT_CONNECTIONS else None)
            for n in HTTP_CONNECTIONS]
        timed = ([curl] if curl else []) + ours_rows
        log(f"bench: http from httpsim ({size / MB:.0f} MB archive)")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round(timed, scratch, None, expect, check=(i == 0))
    finally:
        sim.terminate()
        sim.wait()
    rows = [link] + timed
    if curl:
        default = ours_rows[HTTP_CONNECTIONS.index(HTTP_DEFAULT_CONNECTIONS)]
        against = Method(f"http: ours --connections {HTTP_DEFAULT_CONNECTIONS} (the default), "
                         "against curl", None, baseline=curl,
                         target=TARGETS["http against curl"])
        against.times, against.cpu, against.rss_kb = default.times, default.cpu, default.rss_kb
        rows.append(against)
    return rows, ours_rows


def bench_cache(data, split, scratch, runs, reserve, tell_tool):
    """Peak size of the mount's content cache (drivesim --cache-dir, sampled every 0.1 s)
    while ours restores the split archive, and the same bytes as one file: each run on a
    fresh mount with an empty cache on the destination's filesystem. Returns
    {"split"|"single": {"peak": [bytes], "read": [bytes], "times": [s]}}."""
    mnt = os.path.join(data["base"], "mnt-cache")
    out = {kind: dict(peak=[], read=[], times=[]) for kind in ("split", "single")}
    for i in range(runs):
        log(f" round {i + 1}/{runs}")
        for kind, rel in (("split", SPLIT_REL), ("single", SINGLE_REL)):
            cache = scratch.fresh("cache")
            folder = scratch.fresh("run")
            argv = [sys.executable, SCRIPT, "--archive", os.path.join(mnt, rel), "--dest",
                    os.path.join(folder, NAME), "--quiet"]
            if tell_tool:
                argv += ["--drive-cache", cache]
            with DriveSim(split["drive"], mnt, "--cache-dir", cache,
                          "--cache-reserve", str(reserve)) as ds:
                seconds, rss, cpu = run_timed(argv)
                stats = ds.stats(settle=0.35)  # the 0.1 s sampler's last word
            if "cache_peak" not in stats:
                sys.exit(f"bench: drivesim reported no cache_peak: {stats}")
            out[kind]["peak"].append(stats["cache_peak"])
            out[kind]["read"].append(stats.get("bytes_read", 0))
            out[kind]["times"].append(seconds)
            log(f"  cache: restore of {kind:<6} {seconds:7.2f} s  cache peak "
                f"{stats['cache_peak'] / MIB:7.1f} MiB  evictions "
                f"{stats.get('cache_evictions', 0)}")
            scratch.discard(folder)
            scratch.discard(cache)
    return out


# -- progressive restore ----------------------------------------------------------------
# restore(background=True) in a process of its own, as a notebook's `import` would run it:
# every time is taken against CLOCK_MONOTONIC (shared by all processes) from just before the
# process is started, so interpreter start-up and the import are included.
PROGRESSIVE_DRIVER = r"""
import json, sys, threading, time
repo, archive, dest, small, weights, images = sys.argv[1:7]
sys.path.insert(0, repo)
import bootstrap_assets as b
t = {"imported": time.monotonic()}
job = b.restore(archive, dest, quiet=True, background=True)
t["called"] = time.monotonic()
seen = []
def drain():
    for path in job.files(images):
        if not seen:
            t["first_image"] = time.monotonic()
        seen.append(path)
reader = threading.Thread(target=drain)
reader.start()
job.wait(*small.split(","))
t["small"] = time.monotonic()
job.wait(weights)
t["weights"] = time.monotonic()
result = job.result()
t["done"] = time.monotonic()
reader.join()
print(json.dumps(dict(t, images=len(seen), progressive=getattr(result, "progressive", None))),
      flush=True)
"""
# the same start, then a line once job.progress reaches SHARE of the bytes; bench kills it
KILLED_DRIVER = r"""
import sys, time
repo, archive, dest, share = sys.argv[1:5]
sys.path.insert(0, repo)
import bootstrap_assets as b
def get(p, key):
    return p[key] if isinstance(p, dict) else getattr(p, key)
job = b.restore(archive, dest, quiet=True, background=True)
while not job.done:
    p = job.progress
    if get(p, "total_bytes") and get(p, "bytes") >= float(share) * get(p, "total_bytes"):
        print(get(p, "bytes"), get(p, "total_bytes"), get(p, "files"), get(p, "total_files"),
              flush=True)
        time.sleep(3600)  # killed here (SIGKILL) by bench.py
    time.sleep(0.002)
print("done", flush=True)
"""
# the mixed profile's top-level entries, in the order of the default save (smallest first)
READY_SMALL = ("config.yaml", "tokenizer/")
READY_WEIGHTS = "weights/"
READY_IMAGES = "images/**"
KILL_AT = 0.5  # the share of job.progress's bytes at which the restore is killed
GZ_LEVEL = 1   # save --format gz's default level, and the one-stream gzip's


class TarStream:
    """The tar stream of a stored archive (one file, or its parts in order), plain or gzip
    (any number of members), as a file object for tarfile's stream mode; `stored(offset)`
    maps an offset in the tar stream to the bytes read off the stored file(s) by then (to
    within one 64 KiB chunk for gzip)."""

    CHUNK = 1 << 16

    def __init__(self, pieces):
        import zlib
        self._zlib = zlib
        self.pieces = list(pieces)
        self.sizes = [os.path.getsize(p) for p in self.pieces]
        self.files = iter(self.pieces)
        self.current = None
        self.raw = self.out = 0
        self.marks = [(0, 0)]  # (tar bytes out, stored bytes in) after each chunk
        self.pending = b""
        self.inflate = None
        with open(self.pieces[0], "rb") as f:
            magic = f.read(4)
        if magic[:4] == b"\x28\xb5\x2f\xfd":
            sys.exit("bench: a zstd archive: the progressive rows read plain tar or gzip")
        self.gzip = magic[:2] == b"\x1f\x8b"
        self.members = 0

    def _raw(self):
        while True:
            if self.current is None:
                path = next(self.files, None)
                if path is None:
                    return b""
                self.current = open(path, "rb")
            block = self.current.read(self.CHUNK)
            if block:
                self.raw += len(block)
                return block
            self.current.close()
            self.current = None

    def read(self, n=-1):
        while n < 0 or len(self.pending) < n:
            block = self._raw()
            if not block:
                break
            if self.gzip:
                out = []
                while block:
                    if self.inflate is None:
                        self.inflate = self._zlib.decompressobj(31)
                        self.members += 1
                    out.append(self.inflate.decompress(block))
                    block = b""
                    if self.inflate.eof:
                        block, self.inflate = self.inflate.unused_data, None
                block = b"".join(out)
            self.out += len(block)
            self.marks.append((self.out, self.raw))
            self.pending += block
        if n < 0:
            n = len(self.pending)
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def drain(self):
        """Read to the end (the bytes after the tar's end blocks too); the tar stream's
        length."""
        while self.read(1 << 20):
            pass
        return self.out

    def stored(self, offset):
        import bisect
        i = bisect.bisect_left(self.marks, (offset, -1))
        return self.marks[min(i, len(self.marks) - 1)][1]

    def close(self):
        if self.current:
            self.current.close()


def archive_layout(pieces):
    """Where the mixed profile's top-level entries lie in a stored archive: "spans":
    {"weights": (the stored offset of its first file's header, the stored offset after its
    last file's data), ...}, "order": the top-level names in the order they first appear
    (folders' own headers included), "files": {top: regular files}."""
    import tarfile
    stream = TarStream(pieces)
    spans, order, files = {}, [], {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                parts = member.name.lstrip("./").split("/")
                if parts[0] == NAME:
                    parts = parts[1:]
                if not parts or not parts[0]:
                    continue
                top = parts[0]
                if top not in order:
                    order.append(top)
                if not member.isreg():  # folders' headers: a few bytes, anywhere
                    continue
                end = member.offset_data + -(-member.size // 512) * 512
                lo, hi = spans.get(top, (member.offset, end))
                spans[top] = (min(lo, member.offset), max(hi, end))
                files[top] = files.get(top, 0) + 1
    finally:
        stream.close()
    layout = {top: (stream.stored(lo), stream.stored(hi)) for top, (lo, hi) in spans.items()}
    return dict(spans=layout, order=order, files=files)


def gzip_size(chunks, level):
    """Bytes of one gzip stream (zlib, the level given) of the concatenated chunks."""
    import zlib
    deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
    n = 0
    for block in chunks:
        n += len(deflate.compress(block))
    return n + len(deflate.flush())


def file_chunks(path):
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def stream_chunks(stream):
    yield from iter(lambda: stream.read(1 << 20), b"")


# The drivers import bootstrap_assets as a notebook's kernel does, with Python's bytecode
# cache (kept under the bench's own folder): the first import of a fresh download compiles
# the file, once a VM (first_import, reported beside the rows), and every later one loads the
# cache. PYTHONDONTWRITEBYTECODE, which some shells set, would make every import compile.
PYCACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-pycache-{os.getpid()}")


def driver_env(pycache=PYCACHE):
    env = dict(os.environ, PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def first_import():
    """Seconds `import bootstrap_assets` takes in a fresh process without bytecode (the file
    compiled), then with it: (median of 3 cold, median of 3 cached). Leaves PYCACHE warm."""
    code = f"import sys, time; sys.path.insert(0, {REPO!r}); t = time.monotonic(); " \
           "import bootstrap_assets; print(time.monotonic() - t)"
    cold, warm = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as empty:
            cold.append(float(subprocess.run([sys.executable, "-c", code], env=driver_env(
                empty), stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout))
        warm.append(float(subprocess.run([sys.executable, "-c", code], env=driver_env(),
                                         stdout=subprocess.PIPE, universal_newlines=True,
                                         check=True).stdout))
    return statistics.median(cold), statistics.median(warm[1:])


def run_driver(argv):
    """Start a driver process (GNU time around it, for CPU and RSS; Python's bytecode cache
    on, see PYCACHE); wait for it. Returns (the monotonic time just before the start, the
    time it ended, its stdout, CPU s, RSS KiB)."""
    rss_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-{os.getpid()}.drv")
    timed = os.access(GNU_TIME, os.X_OK)
    if timed:
        argv = [GNU_TIME, "-f", "%M %U %S", "-o", rss_path] + argv
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, universal_newlines=True,
                            env=driver_env())
    out, err = proc.communicate()
    ended = time.monotonic()
    if proc.returncode:
        sys.exit(f"bench: {' '.join(argv)} -> exit {proc.returncode}\n{out}{err}")
    rss = cpu = 0
    if timed:
        with open(rss_path) as f:
            fields = f.read().split()[-3:]
        os.remove(rss_path)
        rss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    return started, ended, out, cpu, rss


def read_marker(dest):
    try:
        with open(os.path.join(dest, ".bootstrap_assets.json")) as f:
            import json
            return json.load(f)
    except (OSError, ValueError):
        return {}


def bench_progressive(data, scratch, runs, src, expect):
    """Issue 17's rows: our own `save` (default order, --full) of a copy of the folder to a
    drivesim backing, then over drivesim at defaults, interleaved per round: cat of the
    archive; restore(background=True) in a driver process (wait config and tokenizer, wait
    weights, the first of files("images/**"), the whole job); a background restore killed
    (SIGKILL) when job.progress passes half the bytes, then a foreground restore that
    resumes it (bytes read, drivesim stats). Returns (rows: [table line], missed: [name],
    info: a header line)."""
    import json
    drive = os.path.join(scratch.work, "progressive-drive")
    backing = os.path.join(drive, "MyDrive", "assets.tar.gz")
    os.makedirs(os.path.dirname(backing))
    log("bench: progressive: our save (default order) of the folder, not timed")
    sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", backing, "--full",
        "--quiet"])
    pieces = part_names(backing) or [backing]
    size = sum(os.path.getsize(p) for p in pieces)
    with open(pieces[0], "rb") as f:
        fmt = "gzip" if f.read(2) == b"\x1f\x8b" else "plain tar"
    if len(pieces) > 1:
        fmt += f", {len(pieces)} parts"
    layout = archive_layout(pieces)
    spans = layout["spans"]
    for top in ("config.yaml", "tokenizer", "weights", "images"):
        if top not in spans:
            sys.exit(f"bench: progressive: no {top} in the saved archive (the mixed profile's "
                     f"top-level entries are {layout['order']})")
    weights_bytes = spans["weights"][1] - spans["weights"][0]
    images_total = layout["files"].get("images", 0)
    os.sync()

    mnt = os.path.join(data["base"], "mnt-progressive")
    cat = Method("progressive: cat archive > /dev/null (our save)",
                 lambda f: (["sh", "-c", 'cat "$@" > /dev/null', "cat"]
                            + [os.path.join(mnt, os.path.relpath(p, drive)) for p in pieces],
                            None))
    compiled, cached = first_import()
    runs_bg, runs_kill = [], []
    with DriveSim(drive, mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar.gz")
        log(f"bench: progressive over drivesim ({size / MB:.0f} MB archive, {fmt}; order "
            f"{', '.join(layout['order'])})")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round([cat], scratch, ds, None, check=False)

            # the background restore, waited on as a notebook would
            folder = scratch.fresh("run")
            dest = in_dest(folder)
            before = ds.stats().get("bytes_read", 0)
            started, ended, out, cpu, rss = run_driver(
                [sys.executable, "-c", PROGRESSIVE_DRIVER, REPO, archive, dest,
                 ",".join(READY_SMALL), READY_WEIGHTS, READY_IMAGES])
            read = ds.stats().get("bytes_read", 0) - before
            t = json.loads(out.strip().splitlines()[-1])
            if t["images"] != images_total:
                sys.exit(f"bench: progressive: job.files({READY_IMAGES!r}) yielded "
                         f"{t['images']} paths, the archive has {images_total} images")
            if i == 0:
                got = tree_size(dest)
                if got != expect:
                    sys.exit(f"bench: progressive: the background restore produced {got} "
                             f"(files, bytes), expected {expect}")
            run = dict(small=t["small"] - started, weights=t["weights"] - started,
                       first_image=t["first_image"] - t["weights"],
                       small_from_call=t["small"] - t["called"], whole=ended - started,
                       done=t["done"] - started, imported=t["imported"] - started,
                       cpu=cpu, rss=rss, read=read, progressive=t["progressive"])
            runs_bg.append(run)
            log(f"  background: config+tokenizer {run['small']:.2f} s, weights "
                f"{run['weights']:.2f} s, first image +{run['first_image']:.2f} s, whole "
                f"{run['whole']:.2f} s (import {run['imported']:.2f} s), progressive="
                f"{run['progressive']}")
            scratch.discard(folder)

            # kill -9 at half way, then resume
            folder = scratch.fresh("run")
            dest = in_dest(folder)
            before = ds.stats().get("bytes_read", 0)
            proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, REPO, archive, dest,
                                     str(KILL_AT)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                    universal_newlines=True)
            line = proc.stdout.readline().split()
            if len(line) != 4:
                proc.kill()
                out, err = proc.communicate()
                sys.exit(f"bench: progressive: the restore to kill ended before half way "
                         f"({' '.join(line)}{out}{err})")
            os.kill(proc.pid, 9)
            proc.communicate()
            killed_read = ds.stats().get("bytes_read", 0) - before
            at_kill = dict(bytes=int(line[0]), total=int(line[1]), files=int(line[2]),
                           total_files=int(line[3]), visible=tree_size(dest)[0]
                           if os.path.isdir(dest) else 0,
                           state=read_marker(dest).get("state"))
            before = ds.stats().get("bytes_read", 0)
            seconds, rss2, cpu2 = run_timed([sys.executable, SCRIPT, "--archive", archive,
                                             "--dest", dest, "--quiet"])
            resumed_read = ds.stats().get("bytes_read", 0) - before
            got = tree_size(dest)
            if got != expect:
                sys.exit(f"bench: progressive: the resumed restore produced {got} (files, "
                         f"bytes), expected {expect}")
            runs_kill.append(dict(killed_read=killed_read, read=resumed_read, seconds=seconds,
                                  cpu=cpu2, rss=rss2, **at_kill))
            log(f"  kill -9 at {at_kill['bytes'] / at_kill['total']:.0%} of the bytes "
                f"({at_kill['files']}/{at_kill['total_files']} files, {at_kill['visible']} "
                f"visible, marker state {at_kill['state']!r}; {killed_read / MB:.1f} MB read), "
                f"resumed: {resumed_read / MB:.1f} MB read ({resumed_read / size:.0%}) in "
                f"{seconds:.2f} s")
            scratch.discard(folder)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    lines, missed = [], []

    def row(name, seconds, cpu, read, base, ratio, target, ok):
        result = "" if ok is None else ("pass" if ok else "FAIL")
        if result == "FAIL":
            missed.append(name)
        lines.append(f"| {name} | {seconds} | {cpu} | {read} |  | {base} | {ratio} | {target} "
                     f"| {result} |")

    cat_s = cat.figure()
    speed = size / cat_s
    row(cat.name, f"{cat_s:.2f}", f"{statistics.median(cat.cpu):.2f}",
        f"{statistics.median(cat.read) / MB:.1f}", "", "", "", None)
    small = med(runs_bg, "small")
    row(f"progressive: job.wait({', '.join(map(repr, READY_SMALL))}) from process start",
        f"{small:.2f}", "", "", "", "", f"<= {TARGETS['ready config']} s",
        small <= TARGETS["ready config"])
    weights = med(runs_bg, "weights")
    k, plus = TARGETS["ready weights"]
    transfer = weights_bytes / speed
    limit = k * transfer + plus
    row(f"progressive: job.wait({READY_WEIGHTS!r}) from process start", f"{weights:.2f}", "",
        "", f"weights' {weights_bytes / MB:.1f} MB / cat's {speed / MB:.1f} MB/s = "
        f"{transfer:.2f} s", f"{weights / transfer:.2f}",
        f"<= {k:.2f} x + {plus:g} s (= {limit:.2f} s)", weights <= limit)
    first = med(runs_bg, "first_image")
    row(f"progressive: first of job.files({READY_IMAGES!r}) after weights/ in place",
        f"{first:.3f}", "", "", "", "", f"<= {TARGETS['first image']} s",
        first <= TARGETS["first image"])
    whole = med(runs_bg, "whole")
    row("progressive: whole background restore (process)", f"{whole:.2f}",
        f"{med(runs_bg, 'cpu'):.2f}", f"{med(runs_bg, 'read') / MB:.1f}",
        cat.name.split(": ", 1)[1], f"{whole / cat_s:.2f}",
        f"<= {TARGETS['background restore']:.2f} x",
        whole / cat_s <= TARGETS["background restore"])
    resumed = med(runs_kill, "read")
    row(f"progressive: restore resumed after kill -9 at {KILL_AT:.0%} (bytes read)",
        f"{med(runs_kill, 'seconds'):.2f}", f"{med(runs_kill, 'cpu'):.2f}",
        f"{resumed / MB:.1f}", f"archive size ({size / MB:.1f} MB)", f"{resumed / size:.2f}",
        f"<= {TARGETS['resume read']:.2f} x (bytes read)",
        resumed / size <= TARGETS["resume read"])
    rss_kib = max(max(r["rss"] for r in runs_bg), max(r["rss"] for r in runs_kill))
    lines.append(f"| peak RSS of the background restore's process and the resumed restore | "
                 f"{rss_kib / 1024:.1f} MiB | | | | | | < {TARGETS['restore RSS']} MiB | "
                 f"{'pass' if rss_kib / 1024 < TARGETS['restore RSS'] else 'FAIL'} |")
    if rss_kib / 1024 >= TARGETS["restore RSS"]:
        missed.append("peak RSS (progressive)")
    not_progressive = sum(1 for r in runs_bg if r["progressive"] is not True)
    info = (
        f"- progressive: our `save --full` (default order: {', '.join(layout['order'])}) of "
        f"a copy of the folder, MyDrive/assets.tar.gz {size / MB:.1f} MB ({fmt}; weights "
        f"{weights_bytes / MB:.1f} MB at stored bytes {spans['weights'][0] / MB:.1f}-"
        f"{spans['weights'][1] / MB:.1f} MB; images from {spans['images'][0] / MB:.1f} MB, "
        f"{images_total} files), over drivesim at defaults; each round: cat of it, then "
        "`restore(..., background=True)` in a `python -c` driver (times from just before the "
        "process starts, start-up and import included: median import "
        f"{med(runs_bg, 'imported'):.2f} s, bytecode cached; the first import of a fresh "
        f"download compiles the file, once a VM: {compiled:.2f} s where a cached import takes "
        f"{cached:.2f} s; config and tokenizer "
        f"{med(runs_bg, 'small_from_call'):.2f} s after the call; `job.result()` "
        f"{med(runs_bg, 'done'):.2f} s), then a background restore killed (SIGKILL) when "
        f"`job.progress` passed {KILL_AT:.0%} of the bytes (median "
        f"{med(runs_kill, 'bytes') / MB:.1f} MB installed, {med(runs_kill, 'visible'):.0f} "
        "files visible, marker state "
        f"{runs_kill[-1]['state']!r}, {med(runs_kill, 'killed_read') / MB:.1f} MB read by "
        "then) and a foreground restore of the same dest that resumes it; "
        + (f"**{not_progressive} of {len(runs_bg)} background restores were not progressive "
           "(RestoreResult.progressive)**" if not_progressive else
           "every background restore reported RestoreResult.progressive"))
    return lines, missed, info


# -- demand first ------------------------------------------------------------------------
# restore(background=True) whose first call is job.wait(the archive's last file): that file
# is read ahead of the stream; times against CLOCK_MONOTONIC, as in PROGRESSIVE_DRIVER
DEMAND_DRIVER = r"""
import json, sys, time
repo, archive, dest, last = sys.argv[1:5]
sys.path.insert(0, repo)
import bootstrap_assets as b
t = {"imported": time.monotonic()}
job = b.restore(archive, dest, quiet=True, background=True)
t["called"] = time.monotonic()
if last:  # else the same restore asked for nothing: the baseline of what asking costs
    job.wait(last)
t["last"] = time.monotonic()
result = job.result()
t["done"] = time.monotonic()
print(json.dumps(dict(t, progressive=result.progressive, archive_bytes=result.archive_bytes)),
      flush=True)
"""


def last_file(pieces):
    """(the stored archive's last regular file, relative to the folder; its size)."""
    import tarfile
    stream = TarStream(pieces)
    last = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isreg():
                    last = member
    finally:
        stream.close()
    parts = last.name.lstrip("./").split("/")
    return "/".join(parts[1:] if parts[0] == NAME else parts), last.size


def bench_demand(data, scratch, runs, src, expect):
    """Issue 18's demand-first row: our own `save --full` (default order) of a copy of the
    folder to a drivesim backing; each round over drivesim at defaults: cat of the archive,
    restore(background=True) in a driver process that asks for nothing (how long the same
    restore takes without a read ahead), then one whose first call is job.wait(the last
    file in archive order). Returns (rows, missed, info) as bench_progressive."""
    import json
    drive = os.path.join(scratch.work, "demand-drive")
    backing = os.path.join(drive, "MyDrive", "assets.tar.gz")
    os.makedirs(os.path.dirname(backing))
    log("bench: demand: our save (default order) of the folder, not timed")
    sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", backing, "--full",
        "--quiet"])
    pieces = part_names(backing) or [backing]
    size = sum(os.path.getsize(p) for p in pieces)
    last, last_size = last_file(pieces)
    os.sync()
    mnt = os.path.join(data["base"], "mnt-demand")
    cat = Method("demand: cat archive > /dev/null (our save)",
                 lambda f: (["sh", "-c", 'cat "$@" > /dev/null', "cat"]
                            + [os.path.join(mnt, os.path.relpath(p, drive)) for p in pieces],
                            None))
    runs_, plain = [], []
    with DriveSim(drive, mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar.gz")
        log(f"bench: demand over drivesim ({size / MB:.0f} MB archive; its last file {last}, "
            f"{last_size:,} bytes)")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round([cat], scratch, ds, None, check=False)
            folder = scratch.fresh("run")
            started, ended, out, cpu, rss = run_driver(
                [sys.executable, "-c", DEMAND_DRIVER, REPO, archive, in_dest(folder), ""])
            plain.append(ended - started)
            log(f"  asking for nothing: whole {plain[-1]:.2f} s")
            scratch.discard(folder)
            folder = scratch.fresh("run")
            dest = in_dest(folder)
            before = ds.stats().get("bytes_read", 0)
            started, ended, out, cpu, rss = run_driver(
                [sys.executable, "-c", DEMAND_DRIVER, REPO, archive, dest, last])
            read = ds.stats().get("bytes_read", 0) - before
            t = json.loads(out.strip().splitlines()[-1])
            if i == 0:
                got = tree_size(dest)
                if got != expect:
                    sys.exit(f"bench: demand: the background restore produced {got} (files, "
                             f"bytes), expected {expect}")
            run = dict(last=t["last"] - t["imported"], whole=ended - started, cpu=cpu,
                       read=read, progressive=t["progressive"])
            runs_.append(run)
            log(f"  wait({last!r}) {run['last']:.2f} s after the call, whole "
                f"{run['whole']:.2f} s, {read / MB:.1f} MB read")
            scratch.discard(folder)

    lines, missed = [], []
    cat_s = cat.figure()
    lines.append(f"| {cat.name} | {cat_s:.2f} | {statistics.median(cat.cpu):.2f} | "
                 f"{statistics.median(cat.read) / MB:.1f} |  |  |  |  |  |")
    first = statistics.median(r["last"] for r in runs_)
    ok = first <= TARGETS["demand first"]
    lines.append(f"| demand: job.wait(the archive's last file) after restore(background=True) "
                 f"| {first:.2f} |  |  |  |  |  | <= {TARGETS['demand first']} s | "
                 f"{'pass' if ok else 'FAIL'} |")
    if not ok:
        missed.append("demand first")
    whole = statistics.median(r["whole"] for r in runs_)
    read = statistics.median(r["read"] for r in runs_)
    ok = whole / cat_s <= TARGETS["background restore"]
    lines.append(f"| demand: whole background restore (process) | {whole:.2f} | "
                 f"{statistics.median(r['cpu'] for r in runs_):.2f} | {read / MB:.1f} |  | "
                 f"{cat.name.split(': ', 1)[1]} | {whole / cat_s:.2f} | <= "
                 f"{TARGETS['background restore']:.2f} x | {'pass' if ok else 'FAIL'} |")
    if not ok:
        missed.append("demand: whole background restore")
    alone = statistics.median(plain)
    lines.append(f"| demand: the same background restore asking for nothing (process) | "
                 f"{alone:.2f} |  |  |  | {cat.name.split(': ', 1)[1]} | {alone / cat_s:.2f} "
                 f"| (what the read ahead adds: {whole / alone:.2f} x) |  |")
    not_progressive = sum(1 for r in runs_ if r["progressive"] is not True)
    info = (f"- demand: our `save --full` (default order) of a copy of the folder, "
            f"MyDrive/assets.tar.gz {size / MB:.1f} MB, over drivesim at defaults; each round: "
            f"cat of it, then `restore(..., background=True)` in a `python -c` driver whose "
            f"first call is `job.wait({last!r})` ({last_size:,} bytes, the last file in "
            f"archive order; time from just before the call); bytes read off the mount "
            f"(drivesim stats) {read / MB:.1f} MB, {read / size:.3f} x the archive"
            + (f"; **{not_progressive} of {len(runs_)} restores were not progressive**"
               if not_progressive else ""))
    return lines, missed, info


LAYER_OVERHEAD = 64 << 10  # a layer's headers, deleted list, index and end blocks


def bench_partial_save(data, scratch, runs, src):
    """Issue 18's save rows: our `save --full` (default order) of a copy of the folder to a
    drivesim backing; over drivesim at defaults, `restore --only 'weights/**'` of it and one
    new file of 1 MiB; `save` (a layer: bytes written against the new file's + the
    overhead, one run), then rounds of dd (as many bytes as the new full archive) and
    `save --full` (the files the folder lacks carried over from the archive on the mount).
    Returns (rows: [table line], missed: [name], info: a header line)."""
    drive = os.path.join(scratch.work, "partial-drive")
    backing = os.path.join(drive, "MyDrive", "assets.tar.gz")
    os.makedirs(os.path.dirname(backing))
    log("bench: partial-save: our save (default order) of the folder, not timed")
    sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", backing, "--full",
        "--quiet"])
    mnt = os.path.join(data["base"], "mnt-partial")
    partial = os.path.join(scratch.work, "partial", NAME)
    with DriveSim(drive, mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar.gz")

        def save(*flags):
            return [sys.executable, SCRIPT, "save", "--dest", partial, "--archive", archive,
                    "--quiet"] + list(flags)
        log("bench: partial-save: restore --only 'weights/**' (not timed)")
        sh([sys.executable, SCRIPT, "restore", "--archive", archive, "--dest", partial,
            "--only", "weights/**", "--quiet"])
        new_file = os.path.join(partial, "notes", "new.bin")
        os.makedirs(os.path.dirname(new_file))
        with open(new_file, "wb") as f:
            f.write(os.urandom(1 << 20))
        change = Method("partial: the new file + 64 KiB", None)
        change.times, change.written = [0.0], [(1 << 20) + LAYER_OVERHEAD]
        layer = Method("partial: ours save (one new file: a layer)", lambda f: (save(), None),
                       baseline=change, target=TARGETS["partial layer"], ours=True,
                       measure="written")
        log("bench: partial-save: save of the new file")
        run_round([layer], scratch, ds, None, check=False)
        log("bench: partial-save: a first save --full (not timed): the new archive's size")
        run_timed(save("--full"))
        pieces = part_names(backing) or [backing]
        size = sum(os.path.getsize(p) for p in pieces)
        dd_input = os.path.join(scratch.work, "dd-partial-input.bin")
        with open(dd_input, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        sh(["sh", "-c", 'cat "$1" > /dev/null', "cat", dd_input])
        dd_out = os.path.join(mnt, "MyDrive", "dd-partial.bin")
        dd = Method("partial: dd as large as the new full archive",
                    lambda f: (["dd", f"if={dd_input}", f"of={dd_out}", "bs=1M", "conv=fsync",
                                "status=none"], None),
                    cleanup=lambda: os.path.exists(dd_out) and os.remove(dd_out))
        full = Method("partial: ours save --full (the rest carried over)",
                      lambda f: (save("--full"), None), baseline=dd,
                      target=TARGETS["partial full save"], ours=True)
        log(f"bench: partial-save over drivesim ({size / MB:.0f} MB new archive)")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round([dd, full], scratch, ds, None, check=False)
    rows, missed = [], []
    for m in (layer, dd, full):
        row, failed = method_row(m)
        rows.append(row)
        if failed:
            missed.append(m.name)
    held = tree_size(partial)
    info = (f"- partial-save: restore --only 'weights/**' ({held[0]} files, {held[1] / MB:.1f} "
            f"MB held) + one new file of 1 MiB; the new full archive {size / MB:.1f} MB; the "
            f"layer row compares bytes written (drivesim stats) with the new file's + 64 KiB, "
            f"one run; the full save's with dd of as many bytes")
    return rows, missed, info
ONLY_WEIGHTS, ONLY_SPREAD = "weights/**", "images/class_07/"
# the first 1 % of the images, a few at the head of each class folder: one range per folder
ONLY_SCATTERED = "images/*/img_0000*.jpg"
S3_BUCKET = "bench-only"


def only_layout(archive, patterns):
    """What restore --only reads of a plain tar saved by our save: {pattern: (the stored
    bytes of its files, runs of neighbouring members, the first one's header, the end of
    the last one's padded data)}, and "index": the index's bytes (from its sidecar line to
    the end)."""
    import tarfile
    import bootstrap_assets as ba
    import progressive_tools as pt
    found = {pattern: [0, 0, None, None, False] for pattern in patterns}
    matchers = {pattern: ba._matcher([pattern]) for pattern in patterns}
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            path = pt.rel(member.name)
            end = member.offset_data + -(-member.size // 512) * 512
            for pattern, seen in found.items():
                hit = member.isreg() and matchers[pattern](path)
                if hit:
                    seen[0] += end - member.offset
                    seen[1] += not seen[4]
                    seen[2] = member.offset if seen[2] is None else seen[2]
                    seen[3] = end
                seen[4] = hit if member.isreg() else seen[4]
    layout = {pattern: tuple(seen[:4]) for pattern, seen in found.items()}
    layout["index"] = os.path.getsize(archive) - pt.index_lines(archive)[0][2]
    return layout


def bench_only(data, scratch, runs, src):
    """Issue 18's rows: our `save --full` (default order, --format auto: a plain tar for
    assets.tar) of a copy of the folder, then `restore --only 'weights/**'`, `--only
    'images/class_07/'` and `--only 'images/*/img_0000*.jpg'` over drivesim at defaults,
    over httpsim (25 MB/s per connection, 200 MB/s for the link, 30 ms to first byte) and
    from moto_server (s3://, unthrottled, bytes counted by a proxy), against reading the
    weights' byte range (dd from the mount, curl -r from the server). Returns (rows,
    missed, info)."""
    import json
    from byte_proxy import CountingProxy
    drive = os.path.join(scratch.work, "only-drive")
    backing = os.path.join(drive, "MyDrive", "assets.tar")
    os.makedirs(os.path.dirname(backing))
    log("bench: only: our save (default order, --format auto) of the folder, not timed")
    sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", backing, "--full",
        "--part-size", "0", "--quiet"])
    with open(backing, "rb") as f:
        f.seek(257)
        if f.read(5) != b"ustar":
            sys.exit("bench: only: our save of assets.tar did not write a plain tar")
    layout = only_layout(backing, (ONLY_WEIGHTS, ONLY_SPREAD, ONLY_SCATTERED))
    w_bytes, _, w_start, w_end = layout[ONLY_WEIGHTS]
    index = layout["index"]
    size = os.path.getsize(backing)
    expect_w = tree_size(os.path.join(src, "weights"))
    lines, missed = [], []

    def row(name, seconds, cpu, read, base, ratio, target, ok):
        result = "" if ok is None else ("pass" if ok else "FAIL")
        if result == "FAIL":
            missed.append(name)
        lines.append(f"| {name} | {seconds} | {cpu} | {read} |  | {base} | {ratio} | {target} "
                     f"| {result} |")

    one = "--connections 1"

    def restore_argv(archive, key, folder):
        pattern = key.replace(f" {one}", "")
        return [sys.executable, SCRIPT, "restore", "--archive", archive, "--dest",
                in_dest(folder), "--only", pattern, "--drive-mount", "", "--quiet"] + \
            (one.split() if key != pattern else [])

    def timed(argv, env):
        """run_timed(argv) with env's variables added to ours (a store's credentials)."""
        old_env = dict(os.environ)
        os.environ.update(env or {})
        try:
            return run_timed(argv)
        finally:
            os.environ.clear()
            os.environ.update(old_env)

    def measure(where, baseline_argv, archive, count, env=None, single=False):
        """Per round, each in a fresh folder: the baseline, then restore --only each
        pattern (single: the weights with --connections 1 too); the rows of the medians
        (seconds, CPU, bytes counted by count())."""
        alone = (f"{ONLY_WEIGHTS} {one}", f"{ONLY_SCATTERED} {one}") if single else ()
        noop = []
        got = {key: [] for key in ("base", ONLY_WEIGHTS, ONLY_SPREAD, ONLY_SCATTERED) + alone}
        for i in range(runs):
            log(f" {where}: round {i + 1}/{runs}")
            for key in got:
                folder = scratch.fresh("only")
                argv = baseline_argv if key == "base" else restore_argv(archive, key, folder)
                before = count()
                seconds, _, cpu = timed(argv, env)
                read = count() - before
                if key == ONLY_WEIGHTS and i == 0:
                    have = tree_size(os.path.join(in_dest(folder), "weights"))
                    if have != expect_w:
                        sys.exit(f"bench: only: {where}: --only {key} produced {have} "
                                 f"(files, bytes) in weights/, expected {expect_w}")
                if key == ONLY_WEIGHTS:  # the same command again: the no-op re-run
                    before = count()
                    again, _, again_cpu = timed(argv, env)
                    noop.append((again, again_cpu, count() - before))
                got[key].append((seconds, cpu, read))
                log(f"  {key:<24} {seconds:7.2f} s  cpu {cpu:6.2f} s  read "
                    f"{read / MB:8.2f} MB")
                scratch.discard(folder)
        med = {key: tuple(statistics.median(r[n] for r in got[key]) for n in range(3))
               for key in got}
        base_s, base_cpu, base_read = med["base"]
        row(f"only {where}: baseline, the weights' byte range ({baseline_argv[0]})",
            f"{base_s:.2f}", f"{base_cpu:.2f}", f"{base_read / MB:.1f}", "", "", "", None)
        for key, factor in ((ONLY_WEIGHTS, TARGETS["only read"]),
                            (ONLY_SPREAD, TARGETS["only spread read"]),
                            (ONLY_SCATTERED, TARGETS["only spread read"])):
            seconds, cpu, read = med[key]
            files, ranges = layout[key][:2]
            limit = factor * files + index
            row(f"only {where}: restore --only '{key}', bytes read", f"{seconds:.2f}",
                f"{cpu:.2f}", f"{read / MB:.1f}",
                f"its files {files / MB:.1f} MB ({ranges} range(s)) + index",
                f"{read / (files + index):.3f}",
                f"<= {factor:.2f} x files + index (= {limit / MB:.1f} MB)", read <= limit)
            if key == ONLY_WEIGHTS:
                k, plus = TARGETS["only time"]
                row(f"only {where}: restore --only '{key}', time", f"{seconds:.2f}",
                    f"{cpu:.2f}", "", "the baseline", f"{seconds / base_s:.2f}",
                    f"<= {k:.2f} x + {plus:g} s (= {k * base_s + plus:.2f} s)",
                    seconds <= k * base_s + plus)
        seconds, cpu, read = (statistics.median(r[n] for r in noop) for n in range(3))
        row(f"only {where}: the same --only '{ONLY_WEIGHTS}' again (no-op re-run)",
            f"{seconds:.2f}", f"{cpu:.2f}", f"{read / 1e3:.1f} kB", "", "",
            f"<= {TARGETS['no-op re-run']} s, no archive data read",
            seconds <= TARGETS["no-op re-run"] and read < 64 << 10)
        for key in alone:
            seconds, cpu, read = med[key]
            pattern = key.replace(f" {one}", "")
            row(f"only {where}: restore --only '{pattern}' {one} (for information)",
                f"{seconds:.2f}", f"{cpu:.2f}", f"{read / MB:.1f}", "the baseline",
                f"{seconds / base_s:.2f}", "", None)

    # drivesim at its defaults
    mnt = os.path.join(data["base"], "mnt-only")
    with DriveSim(drive, mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar")
        dd = ["dd", f"if={archive}", "of=/dev/null", "bs=1M", "iflag=skip_bytes,count_bytes",
              f"skip={w_start}", f"count={w_end - w_start}", "status=none"]
        measure("drivesim", dd, archive, lambda: ds.stats().get("bytes_read", 0))

    # httpsim, the caps of the http rows
    port_file = os.path.join(scratch.work, "only-httpsim-port")
    stats = os.path.join(scratch.work, "only-httpsim-stats.json")
    sim = subprocess.Popen([sys.executable, HTTPSIM, drive, "--port", "0", "--port-file",
                            port_file, "--per-conn-mbps", str(HTTP_PER_CONN), "--total-mbps",
                            str(HTTP_LINK), "--stats", stats], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or sim.poll() is not None:
                sys.exit("bench: only: httpsim did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            url = f"http://127.0.0.1:{f.read().strip()}/MyDrive/assets.tar"

        def sent():
            time.sleep(0.3)  # httpsim rewrites its counters every 0.1 s
            with open(stats) as f:
                return json.load(f)["bytes_sent"]
        measure("https (httpsim)", ["curl", "-sSf", "-r", f"{w_start}-{w_end - 1}", "-o",
                                    "/dev/null", url], url, sent, single=True)
    finally:
        sim.terminate()
        sim.wait()

    # moto_server (s3://), through a proxy that counts what it sends
    venv = os.environ.get("TEST_VENV", "/tmp/bootstrap-assets-ci-venv")
    moto_bin = os.path.join(venv, "bin", "moto_server")
    s3_note = ""
    if not os.access(moto_bin, os.X_OK):
        s3_note = f"; s3:// not measured: no moto_server in {venv} (set TEST_VENV)"
        log(f"bench: only: WARNING{s3_note}")
    else:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        moto = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proxy = CountingProxy(port)
        env = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=proxy.endpoint)
        saved_env = dict(os.environ)
        try:
            os.environ.update(env)
            import bootstrap_assets as ba
            store = ba._S3(f"s3://{S3_BUCKET}/assets.tar", 30)
            deadline = time.monotonic() + 30
            while True:
                try:
                    store.call("PUT", "", doing="creating the bucket")
                    break
                except ba.BootstrapError:
                    if time.monotonic() > deadline:
                        sys.exit("bench: only: moto_server did not start")
                    time.sleep(0.2)
            log("bench: only: uploading the archive to moto (not timed)")
            sh([sys.executable, "-c", S3_PUT, REPO, f"s3://{S3_BUCKET}/assets.tar", backing])
            key_url = store.object_url("assets.tar")
            os.environ.clear()
            os.environ.update(saved_env)
            curl = ["curl", "-sSf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                    "testing:testing", "-r", f"{w_start}-{w_end - 1}", "-o", "/dev/null",
                    key_url]
            measure("s3:// (moto, unthrottled)", curl, f"s3://{S3_BUCKET}/assets.tar",
                    lambda: proxy.sent, env, single=True)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            proxy.close()
            moto.terminate()
            moto.wait()
    ranges = ", ".join(f"{key} {layout[key][0] / MB:.1f} MB in {layout[key][1]} range(s)"
                       for key in (ONLY_SPREAD, ONLY_SCATTERED))
    info = (f"- only: our `save --full --part-size 0` (default order, --format auto) of a copy "
            f"of the folder to MyDrive/assets.tar ({size / MB:.1f} MB, plain tar; weights "
            f"{w_bytes / MB:.1f} MB at stored bytes {w_start / MB:.1f}-{w_end / MB:.1f} MB; "
            f"{ranges}; index {index / 1e3:.0f} kB); each round, in a fresh folder: the "
            f"baseline, then `restore --only` each pattern (--connections default; over "
            f"http and from moto also the weights and the scattered images with "
            f"--connections 1, for information: moto answers each ranged GET in time that "
            f"grows with the object, not the range); bytes "
            f"read: drivesim and httpsim --stats, for moto a counting proxy (response headers "
            f"included){s3_note}")
    return lines, missed, info


# Uploads a file to s3:// with the module's own signed PUT (the object and its sidecar as
# they are, so the proxy-counted restore reads the archive the layout was taken from).
S3_PUT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import bootstrap_assets as ba
url, path = sys.argv[2], sys.argv[3]
store = ba._S3(url, 30)
for name in (path, path + ".sha256"):
    with open(name, "rb") as f:
        store.put(store.key + name[len(path):], f.read())
"""


def bench_gz_size(data, scratch, src):
    """Our `save --format gz --level GZ_LEVEL` (one file) of the folder, against one gzip
    stream (zlib, the same level) of the very tar stream it holds, and (for information) of
    GNU tar's assets.tar. Returns (rows, missed, info)."""
    folder = os.path.join(scratch.work, "gz-size")
    out = os.path.join(folder, "assets.tar.gz")
    os.makedirs(folder)
    log(f"bench: save --format gz --level {GZ_LEVEL} (local, for its size)")
    sh([sys.executable, SCRIPT, "save", "--dest", src, "--archive", out, "--format", "gz",
        "--level", str(GZ_LEVEL), "--full", "--part-size", "0", "--no-verify", "--quiet"])
    pieces = part_names(out) or [out]
    ours_size = sum(os.path.getsize(p) for p in pieces)
    stream = TarStream(pieces)
    if not stream.gzip:
        sys.exit("bench: save --format gz did not write gzip")
    log("bench: gzip of the same tar stream, one stream")
    one = gzip_size(stream_chunks(stream), GZ_LEVEL)
    stream.close()
    tar_bytes, members = stream.out, stream.members
    gnu = gzip_size(file_chunks(data["assets.tar"]), GZ_LEVEL)
    lines, missed = [], []
    ratio = ours_size / one
    ok = ratio <= TARGETS["gz size"]
    if not ok:
        missed.append("gz size")
    lines.append(f"| save --format gz --level {GZ_LEVEL}: archive size | {ours_size / MB:.1f} "
                 f"MB | | | | one-stream gzip -{GZ_LEVEL} of the same tar ({one / MB:.1f} MB) | "
                 f"{ratio:.4f} | <= {TARGETS['gz size']:.2f} x (size) | "
                 f"{'pass' if ok else 'FAIL'} |")
    lines.append(f"| save --format gz --level {GZ_LEVEL}: archive size, against GNU tar | "
                 f"{ours_size / MB:.1f} MB | | | | gzip -{GZ_LEVEL} of `tar cf` of the folder "
                 f"({gnu / MB:.1f} MB) | {ours_size / gnu:.4f} | (info) | |")
    info = (f"- gz size: our `save --full --format gz --level {GZ_LEVEL} --part-size 0` of the "
            f"folder: {ours_size} bytes in {len(pieces)} file(s), {members} gzip member(s), "
            f"holding a {tar_bytes} byte tar stream (index included); against zlib level "
            f"{GZ_LEVEL}, one stream, of that same tar stream ({one} bytes) and of GNU tar's "
            f"assets.tar ({gnu} bytes)")
    return lines, missed, info


# -- the chart ----------------------------------------------------------------------
# Bars of the report's Drive rows: each group's link limit, the seed method where it applies,
# and ours. Rows are found by name, so a report from a run without split rows draws without
# that group; any report this script printed (or RESULTS.md, newest run first) can be drawn.
CHART_GROUPS = (
    ("restore over drivesim, one file", (
        (r"drive: cat archive > /dev/null", "cat (the link's limit)", "limit"),
        (r"drive: seed_restore\.py.*", "seed method (cp + extractall)", "seed"),
        (r"drive: ours --engine python.*", "bootstrap_assets restore", "ours"))),
    ("restore over drivesim, split archive ({parts})", (
        (r"drive: cat split \.tar parts.*", "cat of the parts (the link's limit)", "limit"),
        (r"drive: ours on split \.tar --engine python.*", "bootstrap_assets restore", "ours"))),
    ("save over drivesim, one file", (
        (r"drive: dd if=local of=MNT/x .*", "dd (the link's limit)", "limit"),
        (r"drive: ours save --full", "bootstrap_assets save (read back)", "ours"))),
    ("save over drivesim, split archive ({parts})", (
        (r"drive: dd as above, as large as the split \.tar", "dd (the link's limit)", "limit"),
        (r"drive: ours save --full --format tar --part-size.*", "bootstrap_assets save (read back)",
         "ours"))),
)
CHART_COLOURS = {"limit": "#8c8c8c", "seed": "#d55e00", "ours": "#0072b2"}
CHART_KEYS = (("limit", "the link's limit (cat, dd)"), ("seed", "seed method"),
              ("ours", "bootstrap_assets"))


def parse_report(text):
    """The first run in a markdown report: ({"date", "commit", "command", "runs", "data"},
    {method: (median seconds, ratio to its baseline or None)}). Takes bench.py's report, or
    RESULTS.md (newest run first)."""
    import re
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("- date:")), None)
    if start is None:
        raise ValueError("no benchmark report in it (no '- date:' line)")
    info = {"command": ""}
    heading = next((line for line in reversed(lines[:start]) if line.startswith("#")), "")
    found = re.search(r"`([^`]*bench\.py[^`]*)`", heading)
    if found:
        info["command"] = found[1]
    rows, in_table = {}, False
    for line in lines[start:]:
        if line.startswith("- ") and not in_table:
            key, _, value = line[2:].partition(": ")
            info[key] = value
        elif line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            try:
                rows[cells[0]] = (float(cells[1]), float(cells[6]) if cells[6] else None)
            except (IndexError, ValueError):
                pass  # the header, its rule, and rows in MiB
        elif in_table:
            break
    if not rows:
        raise ValueError("the report has no table of results")
    found = re.search(r"commit ([\w-]+)", info.get("python", ""))
    info["commit"] = found[1] if found else "unknown"
    info["date"] = info.get("date", "").replace("T", " ")[:16]
    found = re.match(r"median of (\d+)", info.get("runs", ""))
    info["runs"] = found[1] if found else "?"
    return info, rows


def chart_bars(rows):
    """[(group title, [(label, kind, seconds, the report's ratio to the limit or None)])]."""
    import re
    groups = []
    for title, wanted in CHART_GROUPS:
        bars = []
        for pattern, label, kind in wanted:
            name = next((n for n in rows if re.fullmatch(pattern, n)), None)
            if name is None:
                continue
            parts = re.search(r"\((\d+ parts|one file)\)", name)
            if parts:
                title = title.format(parts=parts[1])
            bars.append((label, kind) + rows[name])
        if len(bars) >= 2 and bars[0][1] == "limit":
            groups.append((title.format(parts="parts"), bars))
    return groups


def render_svg(report_text):
    """A horizontal bar chart (hand-written SVG) of the report's Drive rows."""
    import re
    from xml.sax.saxutils import escape
    info, rows = parse_report(report_text)
    groups = chart_bars(rows)
    if not groups:
        raise ValueError("the report has none of the drive rows the chart draws")
    label_w, bar_w, value_w, row_h, group_h = 250, 400, 110, 22, 28
    width = label_w + bar_w + value_w + 20
    top = 92
    height = top + sum(group_h + row_h * len(bars) for _, bars in groups) + 40
    longest = max(s for _, bars in groups for _, _, s, _ in bars)
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 3600)
                if longest / s <= 8)
    scale = bar_w / (step * (int(longest / step) + 1))
    data = info.get("data", "")
    # where the run kept its files does not change its figures, and would not fit
    command = re.sub(r" --(dir|out|svg)[ =]\S+", "", info["command"]) or "bench/bench.py"
    subtitle = (f"median of {info['runs']} runs; {data.split(';')[0]}; run of {info['date']}, "
                f"commit {info['commit']}")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">bootstrap_assets against '
        "the link's limit: seconds, shorter is better</text>",
        f'<text x="10" y="40" fill="#444444">{escape(subtitle)}</text>',
        f'<text x="10" y="56" fill="#444444">{escape(command)}; '
        f'drivesim: 100 MB/s read, 60 MB/s write, 20 ms per open</text>',
    ]
    x = 10
    for kind, text in CHART_KEYS:
        out.append(f'<rect x="{x}" y="66" width="12" height="12" fill="{CHART_COLOURS[kind]}"/>')
        out.append(f'<text x="{x + 17}" y="76">{escape(text)}</text>')
        x += 40 + 6 * len(text)
    axis_bottom = height - 34
    ticks = int(longest / step) + 1
    for i in range(ticks + 1):
        tx = label_w + i * step * scale
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_bottom}" '
                   f'stroke="#e0e0e0"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_bottom + 14}" text-anchor="middle" '
                   f'fill="#444444">{i * step:g} s</text>')
    y = top
    for title, bars in groups:
        out.append(f'<text x="10" y="{y + 19}" font-weight="bold">{escape(title)}</text>')
        y += group_h
        for label, kind, seconds, ratio in bars:
            w = seconds * scale
            value = f"{seconds:.2f} s" + (f"  ({ratio:.2f} x)" if ratio else "")
            out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
                       f'{escape(label)}</text>')
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                       f'fill="{CHART_COLOURS[kind]}"/>')
            out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(value)}</text>')
            y += row_h
    out.append(f'<text x="10" y="{height - 6}" fill="#444444">ratios: against the link\'s '
               f'limit measured in the same run (x = times as long)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(report_text, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(render_svg(report_text))
    log(f"bench: chart written to {path}")


SECTIONS = ("drive", "split", "local", "http", "save", "cache", "progressive", "only",
            "partial-save", "demand")


def sections(text):
    chosen = {t.strip() for t in text.split(",") if t.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; not "
                                         f"{', '.join(sorted(unknown)) or 'none'}")
    return chosen


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.25, help="make_assets.py --scale (0.25)")
    p.add_argument("--runs", type=int, default=3, help="runs per method; medians (3)")
    p.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/tmp/bootstrap-bench"),
                   help="cache of generated data and scratch space ($BENCH_DIR)")
    p.add_argument("--out", help="also write the markdown report here")
    p.add_argument("--svg", default=DEFAULT_SVG, metavar="PATH",
                   help="draw the chart of the Drive rows here (default: "
                   "bench/results/chart.svg, not committed)")
    p.add_argument("--svg-from", metavar="REPORT",
                   help="run nothing: draw --svg from a saved report (--out's file, or "
                   "bench/RESULTS.md, whose newest run comes first)")
    p.add_argument("--engines", help="comma-separated engines (default: all available)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--part-size", type=parse_size, metavar="SIZE",
                   help="part size of the split-archive rows: 32M, 1G (powers of 1024) or "
                   "bytes (default: 32M at --scale below 0.5, else 1G)")
    p.add_argument("--parts-from", choices=("save", "split"), default="save",
                   help="how the split archive the restore rows read is made: our `save "
                   "--format tar --full --part-size` (save, the default) or GNU `split -b` "
                   "of assets.tar with a sidecar line for the whole (split)")
    p.add_argument("--cache-reserve", type=parse_size, metavar="SIZE",
                   help="drivesim --cache-reserve for the cache-peak rows (default: the "
                   "size of the disk, so every closed file is evicted at once, as on a full "
                   "disk; 256M is drivesim's own default, which evicts nothing on a roomy "
                   "disk)")
    p.add_argument("--only", type=sections, metavar="SECTIONS",
                   help="run only these sections, comma-separated, of: " + ", ".join(SECTIONS)
                   + " (default: all; cache needs split; progressive is the rows of the progressive restore: "
                   "background restore, resume after kill -9, gz size)")
    args = p.parse_args(argv)
    if args.only is None:
        args.only = set(SECTIONS)
    if args.part_size is None:
        args.part_size = parse_size("32M" if args.scale < 0.5 else "1G")
    return args


def bench_drive(data, scratch, runs, engines, expect):
    """Restore of MyDrive/assets.tar.gz over drivesim: cat (the link's limit), the seed
    method, ours with each engine; then the no-op re-run. Returns (rows, the no-op row)."""
    mnt = os.path.join(data["base"], "mnt")
    with DriveSim(data["drive"], mnt) as ds:
        archive = os.path.join(mnt, "MyDrive", "assets.tar.gz")
        cat = Method("drive: cat archive > /dev/null",
                     lambda f: (["sh", "-c", 'cat "$1" > /dev/null', "cat", archive], None))
        seed = Method("drive: seed_restore.py (cp + extractall)",
                      lambda f: ([sys.executable, SEED_RESTORE, archive, f], in_dest(f)),
                      baseline=cat)
        drive = [cat, seed] + [
            Method(f"drive: ours --engine {e}{DEFAULT_MARK.get(e, '')}", ours(archive, e, in_dest),
                   baseline=cat, target=default_target("drive restore", e), ours=True)
            for e in engines]
        log(f"bench: over drivesim ({os.path.getsize(data['assets.tar.gz']) / MB:.0f} MB "
            "archive)")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round(drive, scratch, ds, expect, check=(i == 0))

        # the no-op re-run: restore once, then time the runs that find nothing to do
        noop_folder = scratch.fresh("noop")
        noop_dest = os.path.join(noop_folder, NAME)
        run_timed([sys.executable, SCRIPT, "--archive", archive, "--dest", noop_dest,
                   "--quiet"])
        noop = Method("drive: ours, no-op re-run (whole process)", None,
                      target=TARGETS["no-op re-run"], ours=True)
        for _ in range(max(runs, 3)):
            before = ds.stats().get("bytes_read", 0)
            seconds, rss, cpu = run_timed([sys.executable, SCRIPT, "--archive", archive,
                                           "--dest", noop_dest, "--quiet"])
            noop.cpu.append(cpu)
            noop.read.append(ds.stats().get("bytes_read", 0) - before)
            noop.times.append(seconds)
            noop.rss_kb.append(rss)
        scratch.discard(noop_folder)
    return drive, noop


def bench_split_restore(data, split, scratch, runs, engines, expect):
    """Restore of the split archive over drivesim: cat of all its parts, ours with each
    engine."""
    mnt_split = os.path.join(data["base"], "mnt-split")
    with DriveSim(split["drive"], mnt_split) as ds:
        archive = os.path.join(mnt_split, SPLIT_REL)
        cat_parts = Method(f"drive: cat split .tar parts > /dev/null ({split['parts']} parts)",
                           lambda f: (["sh", "-c", 'cat "$1".part-* > /dev/null', "cat",
                                       archive], None))
        rows = [cat_parts] + [
            Method(f"drive: ours on split .tar --engine {e}{DEFAULT_MARK.get(e, '')}",
                   ours(archive, e, in_dest), baseline=cat_parts,
                   target=default_target("split restore", e), ours=True)
            for e in engines]
        log(f"bench: split over drivesim ({split['size'] / MB:.0f} MB plain tar in "
            f"{split['parts']} parts)")
        for i in range(runs):
            log(f" round {i + 1}/{runs}")
            run_round(rows, scratch, ds, expect, check=(i == 0))
    return rows


def bench_local(data, scratch, runs, engines, expect):
    """Restore of the local assets.tar and assets.tar.gz, page cache warm, against GNU tar."""
    tar, tgz = data["assets.tar"], data["assets.tar.gz"]
    for path in (tar, tgz):  # warm the page cache
        sh(["sh", "-c", 'cat "$1" > /dev/null', "cat", path])
    tar_x = Method("local: tar xf assets.tar",
                   lambda f: (["tar", "xf", tar, "-C", f], in_dest(f)))
    tar_xz = Method("local: tar xzf assets.tar.gz",
                    lambda f: (["tar", "xzf", tgz, "-C", f], in_dest(f)))
    local = [tar_x] + [
        Method(f"local: ours --engine {e}{DEFAULT_MARK.get(e, '')} on .tar", ours(tar, e, in_dest),
               baseline=tar_x, target=default_target("local tar", e), ours=True)
        for e in engines]
    local += [tar_xz, Method("local: ours --engine python on .tar.gz",
                             ours(tgz, "python", in_dest), baseline=tar_xz,
                             target=TARGETS["local tar.gz"], ours=True)]
    if "tar" in engines:
        local.append(Method("local: ours --engine tar on .tar.gz", ours(tgz, "tar", in_dest),
                            baseline=tar_xz, ours=True))
    log("bench: local")
    for i in range(runs):
        log(f" round {i + 1}/{runs}")
        run_round(local, scratch, None, expect, check=(i == 0))
    return local


def report_header(args, argv, load_before, expect, sizes, save_info, split, parts_ok,
                  reserve, tell_tool):
    """The report's title and its list of what was run, on what."""
    lines = [
        "## bootstrap_assets benchmark",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {sh(['nproc']).strip()}), "
        f"{platform.platform()}",
        f"- python: {platform.python_version()} ({sys.executable}); code: {code_version()}",
        f"- command: python3 bench/bench.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        "- load average (1 min) before / after: {:.2f} / {:.2f} (other work on the machine "
        "skews the figures)".format(load_before[0], os.getloadavg()[0]),
        f"- data: mixed profile, scale {args.scale:g}: {expect[0]} files, "
        f"{expect[1] / MB:.1f} MB; assets.tar.gz {sizes['assets.tar.gz'] / MB:.1f} MB, "
        f"assets.tar {sizes['assets.tar'] / MB:.1f} MB",
        f"- runs: median of {args.runs}; drivesim at defaults (read 100 MB/s, 20 ms per "
        "open), archive with a sha256sum sidecar; CPU s is user + sys of the command and its "
        "children (not drivesim's)",
        "- outputs of timed runs are set aside until the end, not deleted between runs: on "
        "this machine's ext4 (no journal) creating files next to ones deleted in the last "
        "minute costs up to 25x the kernel time (see Scratch in bench.py)",
        f"- save: a copy of the same folder saved over drivesim at defaults (write 60 MB/s, "
        f"read 100 MB/s) to MyDrive/assets.tar.gz: {save_info}" if save_info else
        "- save: not measured (--only)",
    ]
    if not args.only & {"split", "cache"}:
        lines.append("- split: not measured (--only)")
    elif split:
        made = ("our `save --format tar --full --part-size "
                f"{size_arg(split['part_size'])}` of a copy of the folder" if
                split["how"] == "save" else
                f"GNU `split -b {size_arg(split['part_size'])} -d -a 4 --numeric-suffixes=1` of "
                "assets.tar, with a sidecar line for the whole")
        lines.append(
            f"- split: MyDrive/split/assets.tar, plain tar {split['size'] / MB:.1f} MB in "
            f"{split['parts']} parts of at most {size_text(split['part_size'])}, made by "
            f"{made}; restored over drivesim at defaults, timed against cat of all parts "
            "in the same round")
        evicts = " (the disk: every closed file evicted at once)" \
            if args.cache_reserve is None else ""
        lines.append(
            "- cache: peak size of drivesim's content cache (--cache-dir on the "
            f"destination's filesystem, --cache-reserve {reserve} = {size_text(reserve)}"
            f"{evicts}; sampled every 0.1 s, so up to ~10 MB low), max over runs, a fresh "
            "mount and empty cache each run, restoring MyDrive/split/assets.tar and the same "
            "bytes as one file, MyDrive/single/assets.tar; ratio = peak / the archive's size; "
            f"ours {'given' if tell_tool else 'not given'} --drive-cache")
    elif not parts_ok:
        lines.append("- split: not measured: this bootstrap_assets.py has no "
                     "`save --part-size`")
    else:
        lines.append(f"- split: not measured: the archive fits in one part of "
                     f"{size_text(args.part_size)}")
    return lines


def method_row(m):
    """(the table row of a timed method, whether it missed its target)."""
    med = statistics.median(m.times)
    read = f"{statistics.median(m.read) / MB:.1f}" if m.read else ""
    written = (f"{statistics.median(m.written) / MB:.1f}" if m.written and any(m.written)
               else "")
    ratio, target, result = "", "", ""
    if m.baseline:
        ratio = m.figure() / m.baseline.figure(m.measure)
        unit = " (bytes written)" if m.measure == "written" else ""
        target = f"<= {m.target:.2f} x{unit}" if m.target else "(info)"
        if m.target:
            result = "pass" if ratio <= m.target else "FAIL"
        ratio = f"{ratio:.2f}"
    elif m.target:  # an absolute time
        target = f"< {m.target} s"
        result = "pass" if med < m.target else "FAIL"
    base = m.baseline.name.split(": ", 1)[1] if m.baseline else ""
    return (f"| {m.name} | {med:.2f} | {statistics.median(m.cpu):.2f} | {read} "
            f"| {written} | {base} | {ratio} | {target} "
            f"| {result} |"), result == "FAIL"


def cache_rows(cache, split):
    rows = []
    for kind, label in (("split", f"restore of split .tar ({split['parts']} parts)"),
                        ("single", "restore of the same .tar as one file")):
        c = cache[kind]
        peak = max(c["peak"])
        rows.append(f"| drive cache peak: {label} | {peak / MIB:.1f} MiB | | "
                    f"{statistics.median(c['read']) / MB:.1f} | | archive size "
                    f"({split['size'] / MIB:.1f} MiB) | {peak / split['size']:.2f} "
                    f"| (info) | |")
    return rows


def rss_rows(restoring, http_ours, saving):
    """The peak-RSS rows and the names of the targets they miss."""
    rows, missed = [], []
    if restoring:
        peak = max(max(m.rss_kb) for m in restoring) / 1024
        worst = max(restoring, key=lambda m: max(m.rss_kb))
        result = "pass" if peak < TARGETS["restore RSS"] else "FAIL"
        if result == "FAIL":
            missed.append("peak RSS")
        rows.append(f"| peak RSS of our restore (worst: {worst.name}) | {peak:.1f} MiB | | | | "
                    f"| | < {TARGETS['restore RSS']} MiB | {result} |")
    if http_ours:
        http_peak = max(max(m.rss_kb) for m in http_ours) / 1024
        result = "pass" if http_peak < TARGETS["http RSS"] else "FAIL"
        if result == "FAIL":
            missed.append("peak RSS (http)")
        rows.append(f"| peak RSS of our restore from http (any --connections) | "
                    f"{http_peak:.1f} MiB | | | | | | < {TARGETS['http RSS']} MiB | {result} |")
    if not saving:
        return rows, missed
    save_peak = max(saving, key=lambda m: max(m.rss_kb))
    rows.append(f"| peak RSS of our save (worst: {save_peak.name}) | "
                f"{max(save_peak.rss_kb) / 1024:.1f} MiB | | | | | | (info) | |")
    return rows, missed


def main(argv=None):
    args = parse_args(argv)
    if args.svg_from:
        with open(args.svg_from) as f:
            write_svg(f.read(), args.svg)
        return 0

    import bootstrap_assets as ba
    load_before = os.getloadavg()
    engines = args.engines.split(",") if args.engines else ba.available_engines()
    data = prepare(os.path.abspath(args.dir), args.scale)
    expect = tree_size(data["src"])
    # room for a run's output and the seed method's copy of the archive, beside the trash
    scratch = Scratch(os.path.join(data["base"], "work"), 3 * expect[1] + (2 << 30))
    src_copy = copy_source(data, scratch.work)
    only = args.only
    # split archives: only with a bootstrap_assets.py that writes them
    parts_ok = has_flag("save", "--part-size")
    split = None
    if parts_ok and only & {"split", "cache"}:
        split = build_split(data, src_copy, scratch.work, args.part_size, args.parts_from)
    elif not parts_ok:
        log("bench: WARNING: this bootstrap_assets.py has no `save --part-size`: no split rows")
    os.sync()
    sizes = {k: os.path.getsize(data[k]) for k in ("assets.tar.gz", "assets.tar")}

    drive, noop = bench_drive(data, scratch, args.runs, engines, expect) \
        if "drive" in only else ([], None)
    split_drive = bench_split_restore(data, split, scratch, args.runs, engines,
                                      expect) if split and "split" in only else []
    local = bench_local(data, scratch, args.runs, engines, expect) if "local" in only else []
    http, http_ours = bench_http(data, scratch, args.runs, expect) \
        if "http" in only else ([], [])
    # before bench_save, which mutates the copy
    progressive, progressive_missed, progressive_info = [], [], []
    if "progressive" in only:
        import inspect
        if "background" not in inspect.signature(ba.restore).parameters:
            log("bench: WARNING: this bootstrap_assets.py has no restore(background=True): "
                "no progressive rows")
            progressive_info.append("- progressive: not measured: this bootstrap_assets.py "
                                    "has no restore(background=True)")
        else:
            rows, missed_, info = bench_progressive(data, scratch, args.runs, src_copy, expect)
            progressive += rows
            progressive_missed += missed_
            progressive_info.append(info)
        rows, missed_, info = bench_gz_size(data, scratch, src_copy)
        progressive += rows
        progressive_missed += missed_
        progressive_info.append(info)
    if "demand" in only:
        rows, missed_, info = bench_demand(data, scratch, args.runs, src_copy, expect)
        progressive += rows
        progressive_missed += missed_
        progressive_info.append(info)
    if "partial-save" in only:  # before bench_save, which mutates the copy
        rows, missed_, info = bench_partial_save(data, scratch, args.runs, src_copy)
        progressive += rows
        progressive_missed += missed_
        progressive_info.append(info)
    if "only" in only:  # before bench_save, which mutates the copy
        rows, missed_, info = bench_only(data, scratch, args.runs, src_copy)
        progressive += rows
        progressive_missed += missed_
        progressive_info.append(info)
    saving, save_info = bench_save(data, scratch, args.runs, src_copy,
                                   args.part_size if parts_ok else None) \
        if "save" in only else ([], None)
    cache, reserve, tell_tool = None, args.cache_reserve, False
    if split and "cache" in only:
        if reserve is None:
            st = os.statvfs(scratch.work)
            reserve = st.f_blocks * st.f_frsize
        tell_tool = has_flag("restore", "--drive-cache")
        log(f"bench: Drive's content cache (drivesim --cache-dir, --cache-reserve {reserve})")
        cache = bench_cache(data, split, scratch, args.runs, reserve, tell_tool)
    scratch.close()
    shutil.rmtree(PYCACHE, ignore_errors=True)

    lines = report_header(args, argv, load_before, expect, sizes, save_info, split, parts_ok,
                          reserve, tell_tool)
    lines += progressive_info
    lines += [
        "",
        "| method | median s | CPU s | MB read off mount | MB written to mount | baseline "
        "| ratio | target | result |",
        "|---|---:|---:|---:|---:|---|---:|---|---|",
    ]
    missed = []
    for m in drive + ([noop] if noop else []) + split_drive + local + http + saving:
        row, failed = method_row(m)
        lines.append(row)
        if failed:
            missed.append(m.name)
    lines += progressive
    missed += progressive_missed
    if cache:
        lines += cache_rows(cache, split)
    rows, rss_missed = rss_rows([m for m in drive + split_drive + local if m.ours], http_ours,
                                saving)
    lines += rows
    missed += rss_missed
    per_method = drive + split_drive + local + http_ours + saving
    lines += ["", "Peak RSS per method (MiB, max over runs): " + ", ".join(
        f"{m.name.split(': ', 1)[1]} {max(m.rss_kb) / 1024:.0f}"
        for m in per_method) if per_method else "", ""]
    report = "\n".join(lines)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")
    try:
        write_svg(report, args.svg)
    except ValueError as e:  # e.g. --only progressive: no rows the chart draws
        log(f"bench: no chart: {e}")
    if missed:
        log(f"bench: targets missed: {', '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
