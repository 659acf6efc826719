#!/usr/bin/env python3
"""bootstrap_assets: keep a project's `_assets` folder on Google Drive as ONE archive.

An ephemeral notebook (Colab, Kaggle, a rented Jupyter box) loses its local disk with the
VM, and reading thousands of files straight off the Drive mount is ~10x too slow. So the
folder lives on Drive as one archive, and each session starts with

    !wget -q https://.../bootstrap_assets.py && python bootstrap_assets.py

which reads the archive once, in large sequential chunks, decompresses it and checks every
member against the safety rules as it streams. With the index every `save` writes at the
archive's end, each file appears at its final path as soon as it is verified against it (a
notebook can wait for what it needs, or restore only that); any other archive is hashed
(sha256) as it is read and extracted into a staging folder beside the destination, which is
renamed into place once the hash is verified. Re-running it with nothing changed does
nothing. `save` packs
the folder back in one streaming pass, verifies what reached the mount, and swaps it in so
that a crash at any instant leaves a complete archive; after a restore it writes only the
changes, as a layer beside the base. `autosave` does that every N minutes.

Ways in:
    python bootstrap_assets.py [restore] [--archive PATH_OR_URL] [--dest DIR] [--sha256 HEX]
                               [--only GLOB] [--background]
    python bootstrap_assets.py wait [PATH ...] | save | autosave --every 15m | status | demo
                               (--help: all flags)
    import bootstrap_assets; bootstrap_assets.restore(...), .save(...), .autosave(every="15m")
        (restore(background=True) returns a RestoreJob: .wait(paths), .files(pattern))
    paste this whole file into a notebook cell (edit the CONFIG block below): it restores,
        and save() / autosave() are then defined for the next cells
    %run bootstrap_assets.py [ARGS] in a cell: ARGS as on the command line

Standard library only; CPython 3.9 to 3.14; Linux and macOS. GNU tar and zstd are used when
present, never required. Exit codes are listed with the exceptions below.

The file, top to bottom (one `# ---- name --` banner each):
    exceptions                      every failure, with its exit code
    small helpers                   records, backoff and retries, sizes, the NoSpace message
    settings                        flags, environment, then CONFIG; Kaggle's own places
    locate: the Drive mount         is it mounted, why a file is missing, Drive's cache
    names on the mount              versions, layers, parts, and the .sha256 sidecar
    locate: a path                  a file (or its parts) on a mount, read with retries
    locate: a URL                   ranged, parallel HTTP reads
    locate: object stores           s3:// and gs://; _open_source picks the source
    stream and hash: the pipe       stages in threads; sha256 as the bytes are read
    decompress: formats             detection; gzip, bz2, xz, zstd; external programs
    tar, read by hand               headers, pax, long names, sparse files: _tar_members
    validate: every member          names, the tree model, no writing through links, _scan
    write: the writers              the space guard, the python engine, the GNU tar engine
    extraction: one pass            source to writer for tar and zip; the hash check
    the destination and its marker  what dest holds, the lock, staging, the marker
    install                         the finished folder into place, the old one aside
    restore: progressive            the index trusted; files in place as verified; asked-for first
    report: progress and results    progress lines, RestoreResult, SaveResult
    save: walk                      what a save packs
    save: what a partial folder lacks  carried over from its archive by ranges, verified
    save: pack                      the tar stream
    save: compress                  gz or zst, and whether it pays
    save: write                     files or parts on the mount, room checks, _write_stream
    save: read back                 what reached the mount, hashed again
    save: publish                   the crash-safe swap, versions, the sidecar
    save: publish to a bucket       the same on s3:// and gs://
    restore                         restore()
    background: wait on it          RestoreJob (restore(background=True)), wait, --background
    save                            save(): a full archive or a layer
    split                           split(): an archive into parts, in place
    status                          status()
    autosave                        autosave(), Autosave
    demo                            demo()
    CLI                             main(): the parser, errors to exit codes
"""

# ------------------------------------------------------------------------------------------
# CONFIG: when you paste this file into a notebook cell, edit these lines.
# Flags (--archive, --dest, ...) and environment variables override them.
ARCHIVE = "/content/drive/MyDrive/Colab Notebooks/My_AI_Project/assets.tar.gz"
DEST = "/content/_assets"
SHA256 = ""  # expected sha256 of the archive, kept OUTSIDE Drive ("" = use ARCHIVE.sha256)
ENGINE = "auto"  # auto | python | tar
FIRST = []  # save: globs of files to put first in the archive, e.g. ["config.yaml", "weights/"]
ONLY = []  # restore: only the files these globs name, e.g. ["weights/**", "config.yaml"]
DRIVE_MOUNT = "/content/drive"
DRIVE_CACHE = "/root/.config/Google/DriveFS"  # where Colab's Drive mount keeps its local copies
# ------------------------------------------------------------------------------------------

import argparse
import collections
import errno
import fcntl
import hashlib
import itertools
import json
import math
import os
import queue
import shutil
import signal
import stat
import sys
import threading
import time
import types
import zlib

try:  # Python 3.14+
    from compression import zstd as _zstd_module  # novm: stdlib from 3.14; fallback below
except ImportError:
    _zstd_module = None

# Modules that only some runs need (URLs, zip, bz2/xz, the demo) are imported where they are
# used: interpreter start-up is paid on every restore, including the no-op re-run.

__all__ = [
    "restore", "save", "split", "status", "wait", "autosave", "Autosave", "demo",
    "available_engines", "RestoreJob", "JobProgress", "RestoreResult", "SaveResult", "CellFailed", "main",
    "BootstrapError", "UsageError", "SourceMissing", "DeadMount", "ChecksumMismatch",
    "UnsafeArchive", "CorruptArchive", "NoSpace", "DestinationChanged", "Locked",
    "Unsupported", "AccessDenied",
]

VERSION = "0.1.0"
ENV_ARCHIVE = "BOOTSTRAP_ASSETS_ARCHIVE"
ENV_DEST = "BOOTSTRAP_ASSETS_DEST"
ENV_DRIVE_MOUNT = "BOOTSTRAP_ASSETS_DRIVE_MOUNT"
ENV_DRIVE_CACHE = "BOOTSTRAP_ASSETS_DRIVE_CACHE"
ENGINES = ("auto", "python", "tar")

CHUNK = 1 << 20  # read and decompress in 1 MiB pieces: large enough for the mount, small for RSS
QUEUE_DEPTH = 8  # pieces in flight between two pipeline stages (8 MiB each)
# The reader may run further ahead (32 MiB), so the link never waits for a core that is
# busy for a moment (on a 2-core VM the cores also serve the mount's own daemon).
READ_AHEAD_DEPTH = 32
READ_AHEAD_SKIP = 4 * CHUNK  # a fresh restore's first read may begin this far in (see _ReadAhead)
# An http(s) archive is read by DEFAULT_CONNECTIONS Range requests at once: object stores
# and CDNs cap each stream well below the link. The pieces that arrived ahead of the
# pipeline stay within HTTP_WINDOW bytes, whatever the count and the archive's size.
DEFAULT_CONNECTIONS = 8
HTTP_WINDOW = 48 << 20
HTTP_MIN_PIECE = 1 << 20
HTTP_MAX_PIECE = 16 << 20
HTTP_TIMEOUT = 30.0
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 60.0  # seconds: the longest Retry-After waited for; the backoff's limit still holds
BLOCK = 512
# Where a ustar header block keeps each field (POSIX's layout, GNU's sparse fields in the
# prefix's place): the reader, the writer and format detection all take them from here.
_FIELD = types.SimpleNamespace(
    name=slice(0, 100), mode=slice(100, 108), ids=slice(108, 124), size=slice(124, 136),
    mtime=slice(136, 148), checksum=slice(148, 156), typeflag=slice(156, 157),
    linkname=slice(157, 257), magic=slice(257, 263), magic_and_version=slice(257, 265),
    prefix=slice(345, 500), gnu_extended=482, gnu_realsize=slice(483, 495))
MARKER_NAME = ".bootstrap_assets.json"
# What a progressive restore has installed, while it runs: "sha256 size mtime path" lines.
JOURNAL_NAME = ".bootstrap_assets.installed"
MARKER_FILES = (MARKER_NAME, MARKER_NAME + ".tmp", JOURNAL_NAME)  # ours, never the user's
# A save's index follows the tar's end blocks (see _IndexBuilder). In a compressed archive
# it and every restart point start afresh (a full flush), at a member's header at least
# every RESTART_EVERY bytes of tar: any file is then read by decompressing at most that
# much before it, and the archive grows by well under 1 %.
INDEX_VERSION = "bootstrap_assets index 1"
RESTART_EVERY = 1 << 20
# A zstd restart point is a new frame, made by a `zstd` process of its own when Python has
# no zstd module: far apart, so a 20 GB archive takes a few hundred processes, not 20,000.
RESTART_EVERY_ZST = 64 << 20
# restore --only reads neighbouring wanted members as one read when the gap between them
# is under this (a new read costs about that much time on a mount), or when the next one's
# restart point lies inside the read already (a .tar.gz)
COALESCE_GAP = 256 << 10
# Demand first: a file a background restore's reader asks for is read ahead of the stream
# when the stream would first read this many bytes the reader did not ask for (nearer, the
# stream gives it sooner than a read of its own); job.files() asks for its next files this
# many bytes at a time, as the reader catches up with what is in place.
AHEAD_GAP = 4 << 20
AHEAD_BATCH = 8 << 20
# ... once it has had no new file for this long: a data loader started beside a cell's
# job.wait() or just before the stream reaches its files does not pull them out of order
AHEAD_PATIENCE = 0.5
AHEAD_POLL = 0.1  # seconds between two looks of restore --background for what `wait` asks
MAX_INDEX = 256 << 20  # an index larger than this (about 2 million files) is not ours
DELETED_NAME = ".bootstrap_assets.deleted"  # in a layer: JSON list of paths the layer deletes
LAYER_INFIX = ".layer-"
BACKGROUND_HOLDER = " (background restore)"  # how a background restore's lock names it
ENV_BACKGROUND = "BOOTSTRAP_ASSETS_BACKGROUND"  # set for the process restore --background starts
PART_INFIX = ".part-"  # ARCHIVE.part-0001, ...: one archive stream cut into plain files
# Drive's mount keeps a local copy of a file for as long as it is open, on the VM's own
# disk: parts of 1 GiB let a 20 GB archive pass through about 1 GiB of that disk, not 20.
DEFAULT_PART_SIZE = 1 << 30
CACHE_WAIT = 30.0  # seconds to wait for the mount to evict closed parts when the disk is full
MAX_SIDECAR = 1 << 20
MAX_META_SIZE = 1 << 20  # a pax header or GNU long name larger than this is an attack
MAX_TRAILING = 64 << 20  # data after the tar end-of-archive marker that we tolerate
MAX_LINK_DEPTH = 40  # symlink hops before resolution gives up, as the kernel does
MAX_MTIME = 1 << 40  # seconds either side of 1970 (34,000 years): every OS's time_t holds it
MAX_NAME_BYTES = 255  # one path component, on every filesystem a notebook has
MAX_PATH_BYTES = 4095  # a whole path (PATH_MAX less its NUL): also the most a link may hold
# The most one file may hold (ext4, a notebook's usual disk, stops at 16 TiB): a member that
# declares more is a damaged header, not a restore that needs a larger disk.
MAX_FILE_SIZE = 1 << 43
# The most a member can have grown from its compressed bytes: gzip's deflate peaks at 1032:1;
# bzip2, xz and zstd have no such bound (a run of zeros shrinks without end).
MAX_EXPANSION = {"tar": 1, "gz": 1032}
SPACE_MARGIN = 16 << 20  # free space left untouched on the destination filesystem
DEFAULT_KEEP = 2  # previous versions a full save keeps (ARCHIVE.1, ARCHIVE.2)
DEFAULT_LOCK_TIMEOUT = 10.0  # seconds to wait for another run on the same folder (--lock-timeout)
DEFAULT_RETRY_FOR = 60.0  # seconds to keep retrying a failing mount or download (--retry-for)
DEFAULT_LEVELS = {"tar": 0, "gz": 1, "zst": 3}
COMPACT_SHARE = 0.5  # layers may add up to this share of the base before a save compacts
PROGRESS_EVERY = 0.25  # seconds between live progress updates (about 4 a second)
PLAIN_PROGRESS_EVERY = 10.0  # seconds between progress lines when output is a log
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in
    ("EIO", "ENOTCONN", "ETIMEDOUT", "ECONNRESET", "ESTALE", "ECONNABORTED", "EAGAIN")
    if hasattr(errno, name)
)
NO_SPACE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT))
# A folder we may not create files in: a read-only mount (Kaggle's /kaggle/input), a folder
# of someone else's, a Drive folder shared with us read-only.
NOT_WRITABLE_ERRNOS = frozenset((errno.EROFS, errno.EACCES, errno.EPERM))


# ---------------------------------------------------------------------------- exceptions --
class BootstrapError(Exception):
    """Any failure the tool reports to the user (exit 1 when nothing more specific fits)."""

    exit_code = 1


class UsageError(BootstrapError):
    """A flag or setting is wrong (exit 2)."""

    exit_code = 2


class SourceMissing(BootstrapError):
    """The archive is not there, or Drive is not mounted (exit 3)."""

    exit_code = 3


class DeadMount(BootstrapError):
    """The archive's mount stopped answering: "Transport endpoint is not connected" (exit 4)."""

    exit_code = 4


class ChecksumMismatch(BootstrapError):
    """The archive's sha256 is not the expected one (exit 5)."""

    exit_code = 5


class UnsafeArchive(BootstrapError):
    """A member would escape the destination or create something dangerous (exit 6)."""

    exit_code = 6


class CorruptArchive(BootstrapError):
    """The file is not a readable archive: truncated, damaged, or not an archive at all (exit 7)."""

    exit_code = 7


class _Truncated(CorruptArchive):
    """The archive ends early; restore adds the fix, which it alone knows (see _extract_one)."""


class NoSpace(BootstrapError):
    """The destination filesystem has not enough room (exit 8)."""

    exit_code = 8


class DestinationChanged(BootstrapError):
    """The destination has files we did not put there; not replaced without --force (exit 9)."""

    exit_code = 9


class Locked(BootstrapError):
    """Another run is restoring or saving the same destination (exit 10)."""

    exit_code = 10


class Unsupported(BootstrapError):
    """The archive needs a decompressor this machine lacks, or a password (exit 11)."""

    exit_code = 11


class AccessDenied(BootstrapError):
    """A bucket refused the credentials: not allowed, expired, or wrong (exit 12)."""

    exit_code = 12


# ------------------------------------------------------------------------- small helpers --
class _Record(types.SimpleNamespace):
    """Fields given by keyword over the defaults the class annotates (each list default
    fresh per record), with a readable repr and equality: what a dataclass gives, without
    importing that module (inspect and more, about 15 ms of every run's start-up)."""

    def __init__(self, **fields):
        names = type(self).__annotations__
        unknown = fields.keys() - names.keys()
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values = {}
        for name in names:
            if name in fields:
                values[name] = fields[name]
            elif hasattr(type(self), name):
                default = getattr(type(self), name)
                values[name] = list(default) if isinstance(default, list) else default
            else:
                raise TypeError(f"{type(self).__name__} needs the field {name!r}")
        super().__init__(**values)


class _Backoff:
    """The waits between retries of a transient failure: `first` seconds, doubling up to
    5 s. wait() returns False, without waiting, once `limit` seconds have passed since the
    Backoff was made (by the caller, when its first try began or failed)."""

    def __init__(self, limit, first=0.2, stop=None):
        self.limit, self.delay = limit, first
        self.started = time.monotonic()
        self.stop = stop  # an Event that ends the waiting early (and wait() returns False)

    def wait(self, at_least=0.0):
        """at_least: what the other side asked for (an HTTP Retry-After)."""
        if time.monotonic() - self.started >= self.limit:
            return False
        pause, self.delay = max(self.delay, at_least), min(self.delay * 2, 5.0)
        if self.stop is not None:
            return not self.stop.wait(pause)
        time.sleep(pause)
        return True


def _retried(action, retry_for, failures, judge, give_up, stop=None, first=0.2):
    """action(), tried again while it fails transiently, with _Backoff's waits (from
    `first` seconds), for up to retry_for seconds. For each of the failures (exception
    classes) caught, judge(exc) raises what a failure that is not transient becomes, or
    returns the seconds to wait at least (what the other side asked for); once the time is
    up, give_up(exc) is raised."""
    backoff = _Backoff(retry_for, first=first, stop=stop)
    while True:
        try:
            return action()
        except failures as exc:
            if not backoff.wait(judge(exc)):
                raise give_up(exc) from None


class _Background(threading.Thread):
    """action() in a thread of its own: a round trip on the mount that what follows need not
    wait for. result() waits for it, then returns what action returned or raises what it
    raised."""

    def __init__(self, action, name):
        super().__init__(name=name, daemon=True)
        self.action, self.value, self.error = action, None, None
        self.start()

    def run(self):
        try:
            self.value = self.action()
        except BaseException as exc:  # handed to whoever asks for the result
            self.error = exc

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def _mb_per_s(nbytes, seconds):
    return nbytes / seconds / 1e6 if seconds else 0.0


def _human(nbytes):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def _human_binary(nbytes):
    for unit in ("", "K", "M", "G"):
        if nbytes < 1024 or nbytes % 1024:
            return f"{nbytes}{unit}"
        nbytes //= 1024
    return f"{nbytes}T"


def _in_kernel():
    """True inside a Jupyter/IPython kernel (pasted cell or import), not in `!python`."""
    return "ipykernel" in sys.modules


def _command_line():
    """The arguments of this run: sys.argv[1:], except in a kernel whose sys.argv is still
    the kernel's own (`ipykernel_launcher.py -f …/kernel-1234.json`, Colab's
    colab_kernel_launcher.py, VS Code's `--f=…json`), which are not ours: a pasted cell or
    `ba.main()` then runs with none. `%run bootstrap_assets.py ARGS` sets sys.argv to the
    script and ARGS, honoured exactly as on the command line."""
    argv = sys.argv[1:]
    if not _in_kernel() or not sys.argv:
        return argv
    launcher = sys.argv[0]
    if launcher.endswith("kernel_launcher.py") or f"{os.sep}ipykernel{os.sep}" in launcher:
        return []
    for word, following in zip(argv, argv[1:] + [""]):
        if word.startswith(("-f=", "--f=")):
            following = word.split("=", 1)[1]
        elif word != "-f":
            continue
        if following.endswith(".json"):  # the kernel's connection file
            return []
    return argv


def _colab_available():
    """True when google.colab can be imported (find_spec of a submodule raises, rather than
    answering None, when its parent package `google` is missing: plain Jupyter, Kaggle)."""
    import importlib.util
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def _in_notebook_output():
    """True when our output lands in a notebook cell, where `\\r` redraws a line."""
    return _in_kernel() or any(
        name in os.environ
        for name in ("JPY_PARENT_PID", "COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE"))


def _is_url(text):
    return text.startswith(("http://", "https://", "s3://", "gs://"))


def _is_within(path, root):
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _mount_point(path):
    """The mount point holding path, for messages about space (path's folder if that
    cannot be told)."""
    try:
        folder = os.path.realpath(path)
        while not os.path.ismount(folder):
            folder = os.path.dirname(folder)
    except OSError:
        return os.path.dirname(path)
    return folder


def _no_space(where, doing, needs, free, fix):
    """The NoSpace error, its words built alike everywhere: "Not enough space on WHERE
    DOING: NEEDS, FREE. FIX"; where=None is the local disk Drive's cache is on ("Not enough
    local space DOING: NEEDS; FREE. FIX"); needs=None says the space ran out while doing
    it ("Ran out of space on WHERE while DOING (FREE). FIX")."""
    if needs is None:
        text = f"Ran out of space on {where} while {doing} ({free})"
    elif where is None:
        text = f"Not enough local space {doing}: {needs}; {free}"
    else:
        text = f"Not enough space on {where} {doing}: {needs}, {free}"
    return NoSpace(f"{text}. {fix}")


def _remove_tree(path):
    """Delete a tree of ours, including read-only folders an archive may have made.

    Iterative: an archive's folders may nest thousands deep, deeper than the recursion of
    shutil.rmtree (before Python 3.13) can go."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    pending = [path]  # folders still to empty; a folder stays until its subfolders are gone
    while pending:
        folder = pending[-1]
        os.chmod(folder, stat.S_IRWXU)
        subfolders = []
        with os.scandir(folder) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subfolders:
            pending += subfolders
        else:
            os.rmdir(folder)
            pending.pop()


# ------------------------------------------------------------------------------ settings --
# The CONFIG block's values as shipped: Colab's places. Left as shipped in a Kaggle
# notebook, they give way to Kaggle's (see _settings).
_COLAB_ARCHIVE = "/content/drive/MyDrive/Colab Notebooks/My_AI_Project/assets.tar.gz"
_COLAB_DEST = "/content/_assets"
_KAGGLE_ROOT = "/kaggle"  # a module constant so that tests can point it elsewhere
# Set in every Kaggle notebook's kernel (interactive or a "Save Version" run)
KAGGLE_ENV = ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "KAGGLE_DATA_PROXY_URL")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz",
                    ".tar.zst", ".tzst", ".zip")
KAGGLE_SEARCH_DEPTH = 3  # /kaggle/input/DATASET/FOLDER/FILE: deeper is a dataset's content
KAGGLE_LISTED = 20  # archives an error lists; a dataset of many zips would flood the cell


def _on_kaggle():
    """A Kaggle notebook: its environment variables, and the folder its datasets are in."""
    return (any(os.environ.get(name) for name in KAGGLE_ENV)
            and os.path.isdir(os.path.join(_KAGGLE_ROOT, "input")))


def _kaggle_dest():
    """/kaggle/temp/_assets: what /kaggle/working holds becomes the notebook's output when a
    version is saved (20 GB at most); /kaggle/temp is the session's scratch space."""
    return os.path.join(_KAGGLE_ROOT, "temp", "_assets")


def _archives_under(root):
    """Archives (or the first part of one) under root, down to KAGGLE_SEARCH_DEPTH, sorted."""
    found = []

    def visit(folder, depth):
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            try:
                is_folder = entry.is_dir()
            except OSError:
                continue
            if is_folder:
                if depth < KAGGLE_SEARCH_DEPTH:
                    visit(entry.path, depth + 1)
            elif entry.name.endswith(PART_INFIX + "0001"):
                found.append(entry.path[:-len(PART_INFIX + "0001")])
            elif entry.name.lower().endswith(ARCHIVE_SUFFIXES):
                found.append(entry.path)

    visit(root, 1)
    return found


def _kaggle_save_fix(name):
    working = os.path.join(_KAGGLE_ROOT, "working")
    return (f"pass --archive {working}/{name} (what {working} holds is kept as the "
            f"notebook's output when you save a version; make that output a dataset to "
            f"restore it in a later session)")


def _kaggle_archive(saving):
    """The archive when none is given in a Kaggle notebook: the one archive under
    /kaggle/input, where Kaggle mounts the notebook's datasets (read-only); else an error
    that names the flag to pass, and the archives there to pass it with."""
    import shlex
    inputs = os.path.join(_KAGGLE_ROOT, "input")
    found = _archives_under(inputs)
    if saving:
        name = os.path.basename(found[0]) if len(found) == 1 else "assets.tar.gz"
        raise UsageError(f"In a Kaggle notebook, save needs --archive: {inputs}, where the "
                         f"datasets are, is read-only. Fix: {_kaggle_save_fix(name)}.")
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceMissing(
            f"In a Kaggle notebook, no archive was given and {inputs} holds none (no "
            f"{', '.join(ARCHIVE_SUFFIXES)} file in its datasets, down to "
            f"{KAGGLE_SEARCH_DEPTH} folders deep). Fix: add the dataset that holds your "
            f"archive to the notebook (Add Input) and run again, or pass --archive with its "
            f"path or URL.")
    choices = "\n".join(f"  --archive {shlex.quote(path)}" for path in found[:KAGGLE_LISTED])
    if len(found) > KAGGLE_LISTED:
        choices += f"\n  ... and {len(found) - KAGGLE_LISTED} more under {inputs}"
    raise UsageError(f"In a Kaggle notebook, no archive was given and {inputs} holds "
                     f"{len(found)}. Fix: pass the one to restore:\n{choices}")


def _settings(archive, dest, drive_mount, saving=False):
    """Arguments, else environment variables, else the CONFIG block; in a Kaggle notebook,
    Kaggle's places for what the CONFIG block holds as shipped."""
    kaggle = _on_kaggle()
    archive = archive or os.environ.get(ENV_ARCHIVE) or (
        _kaggle_archive(saving) if kaggle and ARCHIVE == _COLAB_ARCHIVE else ARCHIVE)
    if not _is_url(archive):
        archive = os.path.abspath(os.path.expanduser(archive))
    dest = dest or os.environ.get(ENV_DEST) or (
        _kaggle_dest() if kaggle and DEST == _COLAB_DEST else DEST)
    dest = os.path.abspath(os.path.expanduser(dest))
    if os.path.islink(dest):
        # A link the user made (/content/_assets -> a larger disk) is kept: the folder is
        # its target, and the staging folder goes beside the target, so that the final
        # rename stays on one filesystem and replaces the folder, not the link.
        dest = os.path.realpath(dest)
    if saving and kaggle and _is_within(archive, os.path.join(_KAGGLE_ROOT, "input")):
        raise UsageError(f"Cannot save to {archive}: {_KAGGLE_ROOT}/input, where Kaggle "
                         f"mounts the datasets, is read-only. Nothing was written. Fix: "
                         f"{_kaggle_save_fix(os.path.basename(archive))}.")
    if drive_mount is None:
        drive_mount = os.environ.get(ENV_DRIVE_MOUNT, DRIVE_MOUNT)
    return archive, dest, drive_mount


# --------------------------------------------------------------- locate: the Drive mount --
def _drive_mount_fix(drive_mount):
    return (f"In a notebook cell, run: from google.colab import drive; "
            f"drive.mount('{drive_mount}')")


def _dead_mount_error(path, drive_mount, detail):
    mount = drive_mount if drive_mount and _is_within(path, drive_mount) else _mount_point(path)
    return DeadMount(
        f"The mount at {mount} is dead ({detail}) while reading {path}. "
        f"This is Drive's mount dropping, not a problem with the archive. Fix: in a notebook "
        f"cell run: from google.colab import drive; drive.flush_and_unmount(); "
        f"drive.mount('{mount}', force_remount=True) -- or restart the runtime -- "
        f"then run this again.")


def _check_drive_mounted(path, drive_mount):
    """Mount Drive from a Colab kernel, or explain how, when the archive lives on Drive."""
    if not drive_mount or not _is_within(path, drive_mount):
        return
    try:
        os.stat(drive_mount)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise _dead_mount_error(path, drive_mount, os.strerror(exc.errno)) from None
    if os.path.ismount(drive_mount):
        return
    if _in_kernel() and _colab_available():
        from google.colab import drive
        drive.mount(drive_mount)
        return
    raise SourceMissing(
        f"Google Drive is not mounted at {drive_mount}, so {path} cannot be read. "
        f"{_drive_mount_fix(drive_mount)} -- then run this again. (Mounting needs the "
        f"notebook kernel; it cannot be done from a `!python` command.)")


def _describe_missing(path):
    """What is in the nearest existing folder above path, so a typo is obvious."""
    folder = os.path.dirname(path)
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ""
    lines = []
    for name in names[:30]:
        full = os.path.join(folder, name)
        try:
            st = os.stat(full)
            size = "folder" if stat.S_ISDIR(st.st_mode) else _human(st.st_size)
        except OSError:
            size = "?"
        lines.append(f"  {name}  ({size})")
    if len(names) > 30:
        lines.append(f"  ... and {len(names) - 30} more")
    wanted = os.path.relpath(path, folder).split(os.sep)[0]
    import difflib
    hint = difflib.get_close_matches(wanted, names, n=1)
    listing = "\n".join(lines) if lines else "  (empty)"
    text = f"\n{folder} holds:\n{listing}"
    if hint:
        text += f"\nDid you mean {os.path.join(folder, hint[0])}?"
    return text


def _shared_copy_hint(path, drive_mount):
    """Where a file missing under MyDrive shows up instead, when it lives in a shared drive
    or behind a shortcut; "" when it is nowhere else either."""
    my_drive = os.path.join(drive_mount or "", "MyDrive")
    if not drive_mount or not _is_within(path, my_drive) or path == my_drive:
        return ""
    import glob
    parts = os.path.relpath(path, my_drive).split(os.sep)
    for skip in range(len(parts)):
        tail = os.path.join(*[glob.escape(p) for p in parts[skip:]])
        for shared in ("Shareddrives", ".shortcut-targets-by-id"):
            found = sorted(glob.glob(os.path.join(glob.escape(drive_mount), shared, "*", tail)))
            if found:
                return (f"\nIt is not in your MyDrive, but {found[0]} exists. Drive shows "
                        f"shared drives under {drive_mount}/Shareddrives, and a folder "
                        f"shared with you only after you right-click it in Drive and choose "
                        f"\"Add shortcut to Drive\". Point --archive at {found[0]}, or add "
                        f"that shortcut to MyDrive.")
    return ""


def _quota_hint(path, drive_cache):
    """The fix when Drive's own log says the file's download quota is exceeded, else ""."""
    if not drive_cache:
        return ""
    log = os.path.join(drive_cache, "Logs", "drive_fs.txt")
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - (4 << 20)))
            if b"QUOTA_EXCEEDED" not in f.read():
                return ""
    except OSError:
        return ""
    return (f"Drive refuses to send {path}: its log {log} says QUOTA_EXCEEDED. A file "
            f"that many people download (a shared file) hits Drive's download quota and is "
            f"blocked for up to a day. Fix: in Drive, right-click the file, choose \"Make a "
            f"copy\" (the copy is yours, with its own quota), then point --archive at the "
            f"copy and run this again.")


def _cache_setting(drive_cache):
    """The folder of Drive's local cache: the argument, else the environment, else CONFIG."""
    return drive_cache or os.environ.get(ENV_DRIVE_CACHE) or DRIVE_CACHE


class _DriveCache:
    """The local copy Drive's mount keeps of every byte read or written through it.

    Colab's mount (DriveFS) keeps it on the VM's own disk, the disk of /content, and evicts
    it only as that disk fills up, never while the file is open (googlecolab/colabtools
    #1915). So a 20 GB archive read as one file needs 20 GB of that disk beside the 20 GB
    it extracts to; read as parts of 1 GiB, each closed when read, about two parts.
    """

    def __init__(self, folder):
        self.folder = folder

    @classmethod
    def on_disk_of(cls, setting, archive, local, drive_mount):
        """The cache that will hold archive's bytes on local's disk (None: on any disk),
        or None."""
        folder = _cache_setting(setting)
        explicit = bool(setting or os.environ.get(ENV_DRIVE_CACHE))
        if _is_url(archive) or not (explicit or (drive_mount and _is_within(archive,
                                                                          drive_mount))):
            return None
        try:
            if os.stat(folder).st_dev != os.stat(local or folder).st_dev:
                return None
        except OSError:
            return None
        return cls(folder)

    def reclaimable(self):
        """Bytes the cache holds now: the mount gives them back as the disk fills up."""
        total, pending = 0, [self.folder]
        while pending:
            try:
                with os.scandir(pending.pop()) as listing:
                    for entry in listing:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
        return total


# -------------------------------------------------------------------- names on the mount --
def _part_name(name, number):
    return f"{name}{PART_INFIX}{number:04d}"


def _part_numbers(names, name):
    """{part number: file name} for the parts of `name` among a folder's names."""
    prefix = name + PART_INFIX
    return {int(n[len(prefix):]): n for n in names
            if n.startswith(prefix) and n[len(prefix):].isdigit()}


def _version_files(names, name):
    """Every file of the version `name` among a folder's names: the single file, then its
    parts in order."""
    parts = _part_numbers(names, name)
    return ([name] if name in names else []) + [parts[k] for k in sorted(parts)]


def _versions_among(names, name):
    """How many previous versions of the archive `name` a folder's names hold: NAME.1 ...
    NAME.N, each a file or parts, up to the first gap."""
    count = 0
    while _version_files(names, f"{name}.{count + 1}"):
        count += 1
    return count


def _kept_versions(archive):
    """How many previous versions of archive are kept (0 when the folder cannot be listed)."""
    folder, name = os.path.split(archive)
    try:
        return _versions_among(os.listdir(folder), name)
    except OSError:
        return 0


def _published_identity(archive, count):
    """The identity of the version just moved into place: one file, or `count` parts."""
    paths = [archive] if count == 1 else [_part_name(archive, k) for k in range(1, count + 1)]
    return _identity(archive, [(path, st.st_size, st.st_mtime_ns)
                               for path, st in zip(paths, map(os.stat, paths))])


def _older_version_flag(archive, version=0):
    """`--previous N`, the version before `version`, when it is kept (its file or parts are
    there); "" otherwise, so that a message never suggests a restore that cannot work."""
    if not archive or _is_url(archive):
        return ""
    folder, name = os.path.split(_version_path(archive, version + 1))
    try:
        names = os.listdir(folder)
    except OSError:
        return ""
    return f"--previous {version + 1}" if _version_files(names, name) else ""


def _no_such_version(archive, version):
    """The SourceMissing for --previous N beyond the versions kept, or None when the
    current archive is missing too (the usual message then says what is there)."""
    folder, name = os.path.split(archive)
    try:
        if not _version_files(os.listdir(folder), name):
            return None
    except OSError:
        return None
    kept = _kept_versions(archive)
    if not kept:
        return SourceMissing(
            f"No previous versions of {archive} are kept, so there is no --previous "
            f"{version} to restore (no {name}.1, nor its parts). A full save keeps the "
            f"archive it replaces as {name}.1 (save --keep, {DEFAULT_KEEP} by default). "
            f"Restore the current archive: run this again without --previous.")
    return SourceMissing(
        f"Only {kept} previous version(s) of {archive} are kept ({name}.1"
        f"{f' to {name}.{kept}' if kept > 1 else ''}), so there is no --previous {version} "
        f"to restore. Pass --previous {kept if kept == 1 else f'1 to {kept}'}; "
        f"`python bootstrap_assets.py status` lists them with their dates.")


def _version_path(archive, version):
    return f"{archive}.{version}" if version else archive


def _layer_prefix(archive_path, base_sha):
    """Layers are named after their base's hash, so renaming a base never separates them."""
    return f"{os.path.basename(archive_path)}.{base_sha[:16]}{LAYER_INFIX}"


def _find_layers(archive_path, base_sha, names=None):
    """The layer files of the base with this hash, in order (stops at the first gap).

    archive_path is the main archive's path (not ARCHIVE.N): layers carry its name. names:
    its folder's listing, when the caller has one (a listing is a round trip on the mount).
    """
    folder = os.path.dirname(archive_path)
    names = os.listdir(folder) if names is None else names
    return [os.path.join(folder, name) for name in
            _layer_names(names, _layer_prefix(archive_path, base_sha))]


def _listing(folder):
    """os.listdir(folder), or None when that fails: the caller then lists again where it
    always did, and meets the error there."""
    try:
        return os.listdir(folder)
    except OSError:
        return None


def _layer_names(names, prefix):
    """prefix1, prefix2, ... among names, up to the first gap."""
    numbers = {int(n[len(prefix):]) for n in names
               if n.startswith(prefix) and n[len(prefix):].isdigit()}
    layers, k = [], 1
    while k in numbers:
        layers.append(f"{prefix}{k}")
        k += 1
    return layers


def _archive_files(archive, version, sidecar):
    """The files holding version N of the archive, as [(path, size, mtime_ns)], and the
    whole-stream hashes the sidecar's `# parts` lines accept for them (None: no such line).
    None when there is no such version.

    A single file wins over parts of the same name. Parts named in a `# parts` line are
    matched by their identity (size and mtime): a save that dies while renaming a version's
    parts leaves some under the version's name and the rest under the names its sidecar's
    journal moves them to or from, and every part is looked for in all of these. Parts
    without such a line (cut by hand with GNU split) must run from 0001 without a gap.
    """
    path = _version_path(archive, version)
    try:
        st = os.stat(path)
        return [(path, st.st_size, st.st_mtime_ns)], None
    except FileNotFoundError:
        pass
    folder, name = os.path.split(path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return None
    present = _part_numbers(names, name)
    states = _sidecar_part_sets(sidecar or b"").get(name)
    if states:
        identities = _sidecar_identities(sidecar)
        journal = _sidecar_journal(sidecar) or {}
        moves = [move[:2] for move in journal.get("moves", [])]
        # Prefer what the journal leads to (the new version), then any, always in one order.
        newer = {whole for whole, _ in journal.get("parts", {}).get(name, [])}
        for whole, hashes in sorted(states, key=lambda state: (state[0] not in newer,
                                                               state[1] is None, state[0])):
            files = _parts_by_identity(folder, name, moves, hashes, identities) if hashes \
                else _contiguous_parts(folder, name, present, archive=archive, version=version)
            if files:
                return files, {whole}
        if moves:
            raise SourceMissing(f"The parts of {path} are incomplete: a save or split was "
                                f"interrupted while it renamed them.")
        # Not found as recorded (a part lost, or the folder copied with new mtimes): the
        # parts that are there, each one the sidecar counts, checked by the whole's hash.
        count = max(len(hashes or ()) for _, hashes in states)
        return (_contiguous_parts(folder, name, present, count, archive, version),
                {w for w, _ in states})
    files = _contiguous_parts(folder, name, present, archive=archive, version=version)
    return (files, None) if files else None


def _parts_by_identity(folder, name, moves, hashes, identities):
    files = []
    for number, digest in enumerate(hashes, 1):
        own = _part_name(name, number)
        elsewhere = [a if b == own else b for a, b in moves if own in (a, b)]
        for candidate in [own] + (elsewhere if digest in identities else []):
            part = os.path.join(folder, candidate)
            try:
                st = os.stat(part)
            except FileNotFoundError:
                continue
            if identities.get(digest, [st.st_size, st.st_mtime_ns]) == [st.st_size,
                                                                          st.st_mtime_ns]:
                files.append((part, st.st_size, st.st_mtime_ns))
                break
        else:
            return None
    return files


def _contiguous_parts(folder, name, present, count=0, archive=None, version=0):
    files, count = [], max(count, max(present, default=0))
    for number in range(1, count + 1):
        if number not in present:
            older = _older_version_flag(archive, version)
            raise CorruptArchive(f"{os.path.join(folder, _part_name(name, number))} is "
                                 f"missing: the archive {os.path.join(folder, name)} is "
                                 f"{count} parts, and this one is not there. The parts are "
                                 f"one stream, in order: put it back"
                                 + (f", or restore the previous version ({older})." if older
                                    else "."))
        st = os.stat(os.path.join(folder, present[number]))
        files.append((os.path.join(folder, present[number]), st.st_size, st.st_mtime_ns))
    return files


def _identity(path, files):
    """What the marker records of an archive, to tell later whether it changed."""
    if len(files) == 1 and files[0][0] == path:
        return {"path": path, "size": files[0][1], "mtime_ns": files[0][2]}
    return {"path": path, "size": sum(size for _, size, _ in files),
            "parts": [[os.path.basename(p), size, mtime] for p, size, mtime in files]}


def _parse_sha256(text, origin):
    text = (text or "").strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(f"{origin} must be 64 hex digits (a sha256), got {text[:80]!r}.")
    return text


def _sidecar_entries(content, where):
    """{file name: {sha256, ...}} from `sha256sum` lines (`<hex>  <name>`, `<hex> *<name>`,
    or a bare hex). While a save swaps files, a name may carry two hashes: its content
    before and after, so that whatever instant a crash hits, every file verifies."""
    entries = {}
    for line in content.decode("utf-8", "surrogateescape").splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):  # comments (sha256sum -c skips them too)
            continue
        try:
            digest = _parse_sha256(words[0], f"A line of the checksum file {where}")
        except UsageError as exc:
            raise BootstrapError(f"{exc} Fix or delete that file.") from None
        name = words[1].strip().lstrip("*") if len(words) > 1 else ""
        entries.setdefault(name, set()).add(digest)
    if not entries:
        raise BootstrapError(f"The checksum file {where} is empty. Delete it, or write the "
                             f"archive's hash into it with: sha256sum ARCHIVE > {where}")
    return entries


def _expected_hashes(entries, name, fallback=True):
    """The hashes the sidecar accepts for name; a lone line about another file also covers
    a renamed archive (but not a line about one of its own versions or layers)."""
    if name in entries:
        return frozenset(entries[name])
    if not fallback:
        return None
    if "" in entries:
        return frozenset(entries[""])
    if len(entries) == 1 and not next(iter(entries)).startswith(name + "."):
        return frozenset(next(iter(entries.values())))
    return None


def _sidecar_identities(content):
    """{sha256: [size, mtime_ns]} from the `# identity` comment lines save writes.

    They let the next save tell which of two hashes a name holds after a crash mid-save
    (renames keep a file's size and mtime), without reading the file.
    """
    identities = {}
    for line in content.decode("utf-8", "surrogateescape").splitlines():
        words = line.split()
        if len(words) == 5 and words[:2] == ["#", "identity"] and all(
                w.isdigit() for w in words[3:]):
            identities[words[2]] = [int(words[3]), int(words[4])]
    return identities


def _sidecar_part_sets(content):
    """{version name: {(whole sha256, (part sha256, ...) or None)}} from the `# parts`
    comment lines save writes for an archive stored as parts. A name carries two sets while
    a save renames files, like a file's line; None: the parts' own hashes are not known."""
    sets = {}
    for line in content.decode("utf-8", "surrogateescape").splitlines():
        words = line.split(None, 4)
        if len(words) < 5 or words[:2] != ["#", "parts"]:
            continue
        hashes = None if words[3] == "-" else tuple(words[3].split(","))
        digests = [words[2]] + list(hashes or ())
        if all(len(d) == 64 and not d.strip("0123456789abcdef") for d in digests):
            sets.setdefault(words[4].strip(), set()).add((words[2], hashes))
    return sets


def _sidecar_journal(content):
    """The `# journal` line of a sidecar written while a save moves files (see _publish)."""
    for line in (content or b"").decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("# journal "):
            try:
                journal = json.loads(line[len("# journal "):])
            except ValueError:
                return None
            return journal if isinstance(journal, dict) else None
    return None


def _sidecar_indexes(content):
    """{archive sha256: [index sha256, offset, length]} from the `# index` lines save
    writes: the index of the archive with that hash (see _IndexBuilder) has that hash, and
    lies at that offset of the stored file, that many bytes once decompressed."""
    indexes = {}
    for line in (content or b"").decode("utf-8", "surrogateescape").splitlines():
        words = line.split()
        if len(words) == 6 and words[:2] == ["#", "index"] and all(
                len(d) == 64 and not d.strip("0123456789abcdef") for d in words[2:4]) and \
                all(w.isdigit() for w in words[4:]):
            indexes[words[2]] = [words[3], int(words[4]), int(words[5])]
    return indexes


def _sidecar_text(entries, part_sets, identities, journal=None, indexes=None):
    """A sha256sum line for every file, a `# parts` line for every version stored as parts,
    the `# index` line of each archive that has one, and while files move, the `# journal`
    of those moves."""
    lines = "".join(f"{digest}  {name}\n" for name in sorted(entries)
                    for digest in sorted(entries[name]))
    lines += "".join(f"# parts {whole} {','.join(hashes) if hashes else '-'} {name}\n"
                     for name in sorted(part_sets)
                     for whole, hashes in sorted(part_sets[name], key=str))
    listed = {digest for hashes in entries.values() for digest in hashes}
    lines += "".join(f"# identity {digest} {size} {mtime_ns}\n"
                     for digest, (size, mtime_ns) in sorted(identities.items())
                     if digest in listed)
    listed |= {whole for states in part_sets.values() for whole, _ in states}
    lines += "".join(f"# index {digest} {index_sha} {offset} {length}\n"
                     for digest, (index_sha, offset, length) in sorted((indexes or {}).items())
                     if digest in listed)
    if journal:
        lines += f"# journal {json.dumps(journal)}\n"
    return lines


def _read_sidecar(archive, retry_for, raw=False):
    """The entries of ARCHIVE.sha256 (one file for the archive, its versions and layers);
    with raw, its bytes (None when there is none)."""
    sidecar = archive + ".sha256"

    def read():
        try:
            with open(sidecar, "rb") as f:
                return f.read(MAX_SIDECAR)
        except FileNotFoundError:
            return None

    def failed(exc):
        if exc.errno == errno.ENOTCONN:
            return _dead_mount_error(sidecar, None, exc.strerror)
        return BootstrapError(f"Cannot read the checksum file {sidecar}: {exc}")

    def judge(exc):
        if exc.errno not in TRANSIENT_ERRNOS:
            raise failed(exc) from None
        return 0.0

    content = _retried(read, retry_for, OSError, judge, failed)
    if raw:
        return content
    return {} if content is None else _sidecar_entries(content, sidecar)


def _layers_of(archive, base_sha, sidecar, retry_for, store=None, names=None):
    """[(path or address, identity)] of the layers of the base with this hash, in order:
    files beside an archive on a mount (names: its folder's listing, when the caller has
    one); objects beside one in a bucket (store: the bucket's, when the caller has it), of
    those its sidecar names (a layer is named only once complete); none for a URL."""
    if not base_sha or (_is_url(archive) and not _is_bucket(archive)):
        return []
    if not _is_bucket(archive):
        return [(path, _PathSource.identity_of(path)) for path in
                _find_layers(archive, base_sha, names)]
    store = store or _bucket(archive, retry_for)
    return [(store.address(key), {"path": store.address(key), **held})
            for key, held in _bucket_layers(store, base_sha, sidecar)]


def _chain_on_drive(archive, base_sha, sidecar, names=None):
    """Identities of the base and its layers as they are on the mount now (names: the
    folder's listing, when the caller has one)."""
    try:
        found = _archive_files(archive, 0, sidecar)
    except (SourceMissing, CorruptArchive):
        found = None
    if found is None:
        return None
    layers = _find_layers(archive, base_sha, names) if base_sha else []
    return [_identity(archive, found[0])] + [_PathSource.identity_of(p) for p in layers]


# ------------------------------------------------------------------------ locate: a path --
class _PathSource:
    """An archive on a filesystem (Drive, gcsfuse, NFS, local), one file or its parts in
    order, read as one stream with retries.

    Transient errors (a mount hiccup) make the reader back off, reopen the file, seek to the
    offset reached and go on, for up to retry_for seconds of continuous failure. Each file is
    closed as soon as it is read: Drive's mount keeps a local copy of an open file.
    """

    def __init__(self, path, retry_for, drive_mount, sidecar=None, drive_cache=None, version=0):
        """Find the archive, or the version asked for, as one file or as parts (sidecar: its
        bytes, which tell parts caught mid-rename where to look); a Drive that is not
        mounted, a folder or nothing under that name is an error that says so."""
        archive = os.path.abspath(os.path.expanduser(path))
        self.archive, self.version = archive, version
        self.path = _version_path(archive, version)
        self.name = os.path.basename(self.path)
        self.retry_for = retry_for
        self.drive_mount = drive_mount
        self.drive_cache = drive_cache
        _check_drive_mounted(self.path, drive_mount)
        if os.path.isdir(self.path):
            raise SourceMissing(f"{self.path} is a folder, not an archive. Point --archive at "
                                f"the archive file."
                                f"{_describe_missing(os.path.join(self.path, '?'))}")
        found = self._retrying(lambda: _archive_files(archive, version, sidecar), "checking",
                               self.path)
        if found is None and version:
            missing = _no_such_version(archive, version)
            if missing:
                raise missing
        if found is None:
            raise SourceMissing(f"The archive {self.path} does not exist (nor parts "
                                f"{_part_name(self.name, 1)}, ...)."
                                f"{_describe_missing(self.path)}"
                                f"{_shared_copy_hint(self.path, drive_mount)}")
        self.files, self.whole = found
        self.size = sum(size for _, size, _ in self.files)
        self.identity = _identity(self.path, self.files)
        if os.path.isdir(archive + ".sha256"):
            raise SourceMissing(f"{archive}.sha256 is a folder; it should be the archive's "
                                f"checksum file. Remove or rename it.")

    @property
    def parts(self):
        return len(self.files) if self.identity.get("parts") else 0

    def _retrying(self, action, doing, path, offset=None):
        """action(), retried while the mount fails with a transient errno for retry_for
        seconds; a missing file, another errno or a dead mount becomes the error that says so."""
        def judge(exc):
            if isinstance(exc, FileNotFoundError):
                raise SourceMissing(f"The archive {path} does not exist."
                                    f"{_describe_missing(path)}") from None
            if exc.errno not in TRANSIENT_ERRNOS:
                raise BootstrapError(f"Cannot read {path}: {exc}") from None
            return 0.0

        def give_up(exc):
            where = f" at byte {offset:,}" if offset is not None else ""
            if exc.errno == errno.ENOTCONN:
                return _dead_mount_error(path, self.drive_mount,
                                         f"{os.strerror(exc.errno)}, for "
                                         f"{self.retry_for:g} s{where}")
            quota = _quota_hint(path, self.drive_cache)
            if quota:
                return BootstrapError(quota)
            return BootstrapError(
                f"{doing.capitalize()} {path} kept failing for {self.retry_for:g} s"
                f"{where}: {exc}. The mount may be unhealthy; run this again, or "
                f"remount Drive.")
        return _retried(action, self.retry_for, OSError, judge, give_up)

    @staticmethod
    def identity_of(path):
        st = os.stat(path)
        return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def chunks(self, offset=0, end=None):
        """The stream from offset on (to end, when given): the part holding offset, then
        every later part."""
        start = 0
        for path, size, _ in self.files:
            if end is not None and start >= end:
                return
            if offset < start + size or (size == 0 and offset == start):
                stop = None if end is None or end - start >= size else end - start
                yield from self._file_chunks(path, offset - start, size, stop)
                offset = start + size
            start += size

    def _file_chunks(self, path, offset, size, stop=None):
        """The bytes of one file (or part) from offset on (to stop), reopening it after a
        transient error; a file that ends before its recorded size changed while it was
        read."""
        handle = None
        bounded = stop is not None  # else read to the end, as a whole file
        stop = size if stop is None else stop

        def drop_handle():
            nonlocal handle
            stale, handle = handle, None
            if stale is not None:
                try:
                    stale.close()
                except OSError:  # closing a file on a dead mount fails too
                    pass

        def read_next():
            nonlocal handle
            if handle is None:
                handle = open(path, "rb", buffering=0)
                handle.seek(offset)
                # The kernel reads ahead of a sequential reader, and on a mount what it reads
                # ahead crosses the link: a bounded read (a range of a partial restore, before
                # a gap it skips) says its reads are random, so the kernel reads what is asked
                # (1 MiB at a time) and not the few hundred KB after the range; measured over
                # drivesim, as fast.
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_RANDOM if bounded
                                     else os.POSIX_FADV_SEQUENTIAL)
            try:
                return handle.read(min(CHUNK, stop - offset) if bounded else CHUNK)
            except OSError:
                drop_handle()
                raise

        try:
            while not bounded or offset < stop:
                data = self._retrying(read_next, "reading", path, offset)
                if not data:
                    break
                offset += len(data)
                yield data
        finally:
            drop_handle()
        if offset != stop:
            raise CorruptArchive(
                f"{path} changed while it was read: {size:,} bytes were expected, "
                f"{offset:,} were read. Drive may still be syncing it; wait and run this again.")


# ------------------------------------------------------------------------- locate: a URL --
class _HttpStatus(Exception):
    """An HTTP answer that is not the data asked for; _HttpSource decides what it means."""

    def __init__(self, code, reason, retry_after=None, body=b""):
        super().__init__(f"HTTP {code} {reason}")
        self.code, self.reason, self.retry_after, self.body = code, reason, retry_after, body


def _worth_retrying(code):
    """Whether an HTTP status may go away if the same request is sent again: a server error
    (5xx), a request timeout (408) or too many requests (429); any other 4xx will not."""
    return code >= 500 or code in (408, 429)


def _retry_after(value):
    """Seconds a 503/429 answer's Retry-After asks for (a number or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _status_error(response):
    retry_after = _retry_after(response.getheader("Retry-After"))
    return _HttpStatus(response.status, response.reason, retry_after,
                       response.read(MAX_SIDECAR))


def _content_range(response):
    """(first, total) from `Content-Range: bytes FIRST-LAST/TOTAL`; None when absent or odd."""
    value = response.getheader("Content-Range") or ""
    try:
        span, total = value.split(" ", 1)[1].split("/")
        return int(span.split("-")[0]), int(total)
    except (IndexError, ValueError):
        return None


class _HttpClient:
    """One keep-alive connection, opened again for another host or after a failure.
    abort() may be called from another thread: it ends a read that is blocked."""

    def __init__(self):
        self.key = self.connection = None

    def request(self, method, url, headers, body=None):
        import http.client
        import urllib.parse
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if self.connection is None or key != self.key:
            self.close()
            kind = (http.client.HTTPSConnection if parts.scheme == "https" else
                    http.client.HTTPConnection)
            self.key, self.connection = key, kind(parts.netloc, timeout=HTTP_TIMEOUT)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(headers, **{"User-Agent": f"bootstrap_assets/{VERSION}"})
        try:
            self.connection.request(method, target, body=body, headers=headers)
            return self.connection.getresponse()
        except BaseException:
            self.close()
            raise

    def close(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def abort(self):
        import socket
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _HttpSource:
    """An archive at an http(s) URL, read with up to `connections` concurrent Range requests
    whose pieces are handed on in order, or as one stream when the server offers no ranges
    (or connections is 1). A broken connection is resumed from the byte it reached.

    The URL is followed through its redirects once (a Hugging Face file URL to its CDN, a
    short link to a presigned URL) and every request then goes where it led. Each answer must
    carry the validator (ETag, else Last-Modified) the first one had, so pieces of two
    versions of the file are never joined.
    """

    def __init__(self, url, retry_for, connections=DEFAULT_CONNECTIONS, shown=None):
        import urllib.parse
        self.path = shown or url
        self.name = os.path.basename(urllib.parse.urlsplit(self.path).path) or url
        self.retry_for = retry_for
        self.connections = connections
        self.location, self.size, self.ranged = url, -1, False
        self.etag = self.modified = None
        self._retrying(self._probe, "checking")
        self.validator = self.etag or self.modified or ""
        self.identity = {"path": self.path, "size": self.size, "validator": self.validator}

    def _headers(self, method, url, headers):
        """The headers a request to url carries: a store's source adds its signature."""
        return headers

    def _probe(self):
        """Follow the redirects with a one-byte GET (a presigned URL is signed for GET, not
        HEAD): where the file is, its size, its validators, and whether ranges work."""
        import urllib.parse
        client = _HttpClient()
        url = self.location
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = client.request("GET", url,
                                          self._headers("GET", url, {"Range": "bytes=0-0"}))
                location = response.getheader("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urllib.parse.urljoin(url, location)
                    client.close()
                    continue
                self.location = url
                if response.status == 416:  # no byte 0: an empty file
                    self.size = 0
                    return
                if response.status not in (200, 206):
                    raise _status_error(response)
                self.etag = response.getheader("ETag")
                self.modified = response.getheader("Last-Modified")
                span = _content_range(response) if response.status == 206 else None
                if span is not None:
                    response.read()  # the one byte: the connection closes cleanly
                self.ranged = span is not None
                self.size = span[1] if span else int(response.getheader("Content-Length") or -1)
                return
            raise BootstrapError(f"{self.path} redirects more than {MAX_REDIRECTS} times. "
                                 f"Check the URL in a browser.")
        finally:
            client.close()

    def _refusal(self, failure):
        """The error to raise for an HTTP answer, or None when asking again may help."""
        if failure.code in (404, 410):
            return SourceMissing(f"The archive {self.path} does not exist (HTTP "
                                 f"{failure.code}). Check the URL.")
        if failure.code == 412:
            return self._changed("a newer one")
        if not _worth_retrying(failure.code):
            return BootstrapError(f"{self.path} answered HTTP {failure.code} "
                                  f"{failure.reason}. Check the URL and its sharing settings.")
        return None

    def _changed(self, now):
        return CorruptArchive(
            f"the file changed on the server while it was being downloaded (its version was "
            f"{self.validator}, it is now {now}): the pieces read would mix two versions, so "
            f"none were used. Nothing was changed. Run this again to restore the new version.")

    def _retrying(self, action, doing, offset=None, stop=None):
        import http.client

        def judge(exc):
            if not isinstance(exc, _HttpStatus):
                return 0.0
            refusal = self._refusal(exc)
            if refusal is not None:
                raise refusal from None
            return exc.retry_after or 0.0

        def give_up(exc):
            where = f" at byte {offset:,}" if offset is not None else ""
            return BootstrapError(f"{doing.capitalize()} {self.path} kept failing for "
                                  f"{self.retry_for:g} s{where}: {exc}. Check the "
                                  f"network and run this again.")
        return _retried(action, self.retry_for,
                        (_HttpStatus, OSError, http.client.HTTPException), judge, give_up, stop)

    def _sidecar_url(self):
        import urllib.parse
        parts = urllib.parse.urlsplit(self.path)
        return urllib.parse.urlunsplit(parts._replace(path=parts.path + ".sha256"))

    def read_sidecar(self, raw=False):
        """The entries of the file's .sha256 beside it (the query, if any, kept), or {};
        with raw, its bytes (None when there is none)."""
        import urllib.parse
        url = self._sidecar_url()
        client = _HttpClient()

        def fetch():
            nonlocal url
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    response = client.request("GET", url, self._headers("GET", url, {}))
                    location = response.getheader("Location")
                    if response.status in (301, 302, 303, 307, 308) and location:
                        url = urllib.parse.urljoin(url, location)
                        client.close()
                        continue
                    if response.status in (401, 403, 404, 410):
                        return None
                    if response.status != 200:
                        raise _status_error(response)
                    return response.read(MAX_SIDECAR)
                return None
            finally:
                client.close()
        content = self._retrying(fetch, "fetching the checksum of")
        if raw:
            return content
        return {} if content is None else _sidecar_entries(content, self._sidecar_url())

    def _open(self, client, start, end=None):
        """A response whose body goes on from byte start (to end, when given) of this same
        version of the file; what a server that ignores Range sends before start is skipped."""
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            if self.validator and not self.validator.startswith("W/"):
                headers["If-Range"] = self.validator
        response = client.request("GET", self.location,
                                  self._headers("GET", self.location, headers))
        if response.status not in (200, 206):
            raise _status_error(response)
        etag, modified = response.getheader("ETag"), response.getheader("Last-Modified")
        if (self.etag and etag and etag != self.etag) or \
                (not self.etag and self.modified and modified and modified != self.modified):
            client.close()
            raise self._changed(etag or modified)
        if response.status == 206:
            span = _content_range(response)
            if span is None or span[0] != start or span[1] != self.size:
                client.close()
                raise self._changed(f"{span[1]:,} bytes long" if span else
                                    f"{response.getheader('Content-Range')!r}")
        else:
            skip = start
            while skip:
                piece = response.read(min(skip, CHUNK))
                if not piece:
                    raise ConnectionResetError("the connection closed before byte "
                                               f"{start:,}")
                skip -= len(piece)
        return response

    def chunks(self, offset=0, end=None):
        """The file from offset on (to end, when given: a ranged source only)."""
        stop = self.size if end is None or not self.ranged else min(end, self.size)
        if self.ranged and self.connections > 1 and stop - offset > HTTP_MIN_PIECE:
            return _RangedDownload(self, [(offset, stop)]).chunks()
        return self._stream(offset, None if stop == self.size else stop)

    def spans(self, spans):
        """The bytes of several [(start, end)] of a ranged file, one after another, no chunk
        straddling two: up to `connections` of them (or pieces of a long one) fetched at
        once, so a partial restore's many short reads do not each wait a round trip."""
        if self.connections > 1:
            return _RangedDownload(self, spans).chunks()
        return (data for start, end in spans for data in self._stream(start, end))

    def _stream(self, offset, end=None):
        """The file from offset on (to end), over one connection, resumed where a drop
        left it."""
        import http.client
        client = _HttpClient()
        stop = self.size if end is None else end
        try:
            backoff = _Backoff(self.retry_for)
            while self.size < 0 or offset < stop:
                response = self._retrying(lambda: self._open(client, offset, end),
                                          "downloading", offset)
                try:
                    while True:
                        data = response.read(CHUNK)
                        if not data:
                            break
                        offset += len(data)
                        backoff = _Backoff(self.retry_for)
                        yield data
                    if self.size < 0:
                        return
                    failure = f"the connection closed at byte {offset:,}"
                except (OSError, http.client.HTTPException) as exc:
                    failure = exc
                client.close()
                if offset < stop and not backoff.wait():
                    raise BootstrapError(f"Downloading {self.path} kept failing for "
                                         f"{self.retry_for:g} s at byte {offset:,}: {failure}. "
                                         f"Check the network and run this again.")
        finally:
            client.close()
        if offset != stop:
            raise CorruptArchive(f"{self.path} sent {offset:,} bytes, but announced "
                                 f"{self.size:,}. Run this again.")


class _Piece:
    def __init__(self, at, start, end):
        self.at = at  # where it begins in the stream of all spans
        self.start, self.end = start, end  # its bytes of the file
        self.chunks = collections.deque()


class _RangedDownload:
    """Spans of a file read by several connections at once, each fetching the next piece
    not yet taken, handed on in order as one stream (a piece never straddles two spans).
    Memory is bounded: a piece is taken only when it ends within HTTP_WINDOW bytes of what
    the consumer has had, so pieces are sized for the window to hold one and a half per
    connection: room for the pieces that finish before the one the consumer waits for."""

    def __init__(self, source, spans):
        self.source = source
        self.spans = collections.deque((start, end) for start, end in spans if end > start)
        self.end = sum(end - start for start, end in self.spans)  # the stream's length
        self.piece = max(HTTP_MIN_PIECE, min(HTTP_MAX_PIECE,
                                             HTTP_WINDOW * 2 // (3 * source.connections)
                                             // HTTP_MIN_PIECE * HTTP_MIN_PIECE))
        self.taken = self.consumed = 0  # positions in the stream
        self.pieces = {}
        self.condition = threading.Condition()
        self.failure = None
        self.stopped = False
        self.stopping = threading.Event()  # ends a worker's wait between retries
        self.clients = []
        count = sum(-(-(end - start) // self.piece) for start, end in self.spans)
        self.threads = [threading.Thread(target=self._work, name=f"range-{n}", daemon=True)
                        for n in range(min(source.connections, count))]

    def chunks(self):
        """The spans' bytes in order, as the workers' ranges arrive; on the way out (the
        end, an error, or the consumer stopping) stop the workers and wait for them."""
        for thread in self.threads:
            thread.start()
        position = piece_at = 0
        try:
            while position < self.end:
                with self.condition:
                    while True:
                        if self.failure is not None:
                            raise self.failure
                        piece = self.pieces.get(piece_at)
                        if piece is not None and piece.chunks:
                            data = piece.chunks.popleft()
                            break
                        self.condition.wait()
                    position += len(data)
                    self.consumed = position
                    if position == piece.at + piece.end - piece.start:
                        del self.pieces[piece_at]
                        piece_at = position
                    self.condition.notify_all()
                yield data
        finally:
            self.stopping.set()
            with self.condition:
                self.stopped = True
                for client in self.clients:
                    client.abort()
                self.condition.notify_all()
            for thread in self.threads:
                thread.join()

    def _take(self):
        with self.condition:
            while not self.stopped and self.spans and \
                    self.taken + min(self.piece, self.spans[0][1] - self.spans[0][0]) - \
                    self.consumed > HTTP_WINDOW:
                self.condition.wait()
            if self.stopped or not self.spans:
                return None
            start, end = self.spans[0]
            piece = _Piece(self.taken, start, min(start + self.piece, end))
            if piece.end == end:
                self.spans.popleft()
            else:
                self.spans[0] = (piece.end, end)
            self.pieces[piece.at] = piece
            self.taken += piece.end - piece.start
            return piece

    def _work(self):
        client = _HttpClient()
        with self.condition:
            self.clients.append(client)
        try:
            while True:
                piece = self._take()
                if piece is None:
                    return
                self._fetch(client, piece)
        except BaseException as exc:  # handed to the consumer, which raises it
            with self.condition:
                if self.failure is None and not self.stopped:
                    self.failure = exc
                self.condition.notify_all()
        finally:
            client.close()

    def _fetch(self, client, piece):
        """Download one piece into piece.chunks, resuming from the byte reached after a
        dropped connection, until retry_for seconds pass without progress."""
        import http.client
        source, position = self.source, piece.start
        backoff = _Backoff(source.retry_for, stop=self.stopping)
        while position < piece.end:
            response = source._retrying(lambda: source._open(client, position, piece.end),
                                        "downloading", position, self.stopping)
            try:
                while position < piece.end:
                    data = response.read(min(CHUNK, piece.end - position))
                    if not data:
                        raise ConnectionResetError(f"the connection closed at byte "
                                                   f"{position:,}")
                    with self.condition:
                        if self.stopped:
                            return
                        piece.chunks.append(data)
                        self.condition.notify_all()
                    position += len(data)
                    backoff = _Backoff(source.retry_for, stop=self.stopping)
                if not response.isclosed():  # a server that ignored Range sends on
                    client.close()
            except (OSError, http.client.HTTPException) as exc:
                client.close()
                with self.condition:
                    if self.stopped:
                        return
                if not backoff.wait():
                    raise BootstrapError(f"Downloading {source.path} kept failing for "
                                         f"{source.retry_for:g} s at byte {position:,}: "
                                         f"{exc}. Check the network and run this again.")


# ----------------------------------------------------------------- locate: object stores --
# An s3:// archive is one object, KEY, with its sidecar KEY.sha256 and previous versions
# KEY.1, KEY.2 beside it, as on Drive. A store has no rename: a save uploads to a temporary
# key, verifies it, then copies it into place (see _publish_in_bucket).
UPLOAD_PART = 16 << 20  # upload pieces: S3 wants 5 MiB or more, GCS multiples of 256 KiB
UPLOAD_CONNECTIONS = 4  # S3 parts sent at once (GCS takes a resumable upload's in order)
S3_COPY_LIMIT = 5 << 30  # the largest object one CopyObject request can copy
S3_COPY_PART = 1 << 30
S3_DENIED = frozenset(("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                       "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
                       "AllAccessDisabled", "AccountProblem"))


def _is_bucket(text):
    return text.startswith(("s3://", "gs://"))


def _bucket(url, retry_for):
    return (_GCS if url.startswith("gs://") else _S3)(url, retry_for)


def _xml_values(data, tag):
    """Every <tag> text of an S3 XML answer, namespace or not."""
    import re
    return [value for value in re.findall(
        rb"<(?:\w+:)?%s>([^<]*)</(?:\w+:)?%s>" % (tag.encode(), tag.encode()), data or b"")]


def _aws_settings():
    """(access key, secret key, session token, region, where they came from), from the
    standard variables, else ~/.aws/credentials and ~/.aws/config (AWS_PROFILE)."""
    import configparser
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    profile = os.environ.get("AWS_PROFILE") or "default"
    config = configparser.ConfigParser(interpolation=None)
    config.read(os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config"))
    section = "default" if profile == "default" else f"profile {profile}"
    region = region or config.get(section, "region", fallback=None) or "us-east-1"
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN"), region,
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    path = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser(
        "~/.aws/credentials")
    credentials = configparser.ConfigParser(interpolation=None)
    credentials.read(path)
    key = credentials.get(profile, "aws_access_key_id", fallback=None)
    secret = credentials.get(profile, "aws_secret_access_key", fallback=None)
    if not (key and secret):
        raise UsageError(
            f"No AWS credentials for s3://: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            f"(and AWS_SESSION_TOKEN for temporary ones), or put them under [{profile}] in "
            f"{path} (AWS_PROFILE picks another section). In Colab: keep them in the "
            f"notebook's secrets and set os.environ from google.colab.userdata.")
    return (key, secret, credentials.get(profile, "aws_session_token", fallback=None), region,
            f"{path} [{profile}]")


class _ObjectStore:
    """What s3:// and gs:// share: the object's address, the signed and retried request, and
    the listing that makes a mistyped key obvious. Subclasses give sign(), refusal() and
    keys()."""

    scheme, key_word = None, None  # "s3", "KEY" / "gs", "PATH"

    def __init__(self, url, retry_for):
        self.url, self.retry_for = url, retry_for
        self.bucket, _, self.key = url[len(self.scheme) + 3:].partition("/")
        example = (f"--archive takes {self.scheme}://BUCKET/{self.key_word}, e.g. "
                   f"{self.scheme}://my-bucket/assets/assets.tar.gz.")
        if not self.bucket:
            raise UsageError(f"{url} names no bucket: {example}")
        # S3 and Cloud Storage: 3 to 63 characters; Cloud Storage: up to 222 with dots
        longest = 222 if self.scheme == "gs" and "." in self.bucket else 63
        if not 3 <= len(self.bucket) <= longest:
            raise UsageError(f"{url}: the bucket name {self.bucket!r} has {len(self.bucket)} "
                             f"characters, and a bucket name has 3 to 63 "
                             f"{'(222 with dots) ' if self.scheme == 'gs' else ''}"
                             f"characters. Check the name in --archive: {example}")
        if not self.key or self.key.endswith("/"):
            what = "no object inside the bucket" if not self.key else \
                f"a folder ({self.key!r}), not an object"
            raise UsageError(f"{url} names {what}: {example}")

    def address(self, key):
        return f"{self.scheme}://{self.bucket}/{key}"

    def _request(self, method, url, key, headers, body, client, doing, judge):
        """A request to the store, signed by it and retried while it fails transiently.
        judge(response, body) -> (True, what to return) for an answer, or (False, an
        _HttpStatus) for a failure, which the store's refusal() may make final."""
        import http.client
        own = client is None
        client = client or _HttpClient()
        backoff = _Backoff(self.retry_for)
        try:
            while True:
                wait = 0.0
                try:
                    response = client.request(method, url, self.sign(method, url, headers or {}),
                                              body)
                    data = response.read()
                    answered, outcome = judge(response, data)
                    if answered:
                        return outcome
                    refusal = self.refusal(outcome, key)
                    if refusal is not None:
                        raise refusal
                    failure, wait = outcome, outcome.retry_after or 0.0
                except (OSError, http.client.HTTPException) as exc:
                    client.close()
                    failure = exc
                if not backoff.wait(wait):
                    raise BootstrapError(f"{doing.capitalize()} {self.address(key)} kept "
                                         f"failing for {self.retry_for:g} s: {failure}. Check "
                                         f"the network and run this again.")
        finally:
            if own:
                client.close()

    def listing(self, key):
        """What the key's folder holds, so a typo is obvious ("" when it cannot be listed)."""
        folder = key.rpartition("/")[0]
        prefix = f"{folder}/" if folder else ""
        try:
            keys = self.keys(prefix, delimiter=True)
        except SourceMissing as exc:  # the bucket
            return f" {exc}"
        except BootstrapError:
            return ""
        import difflib
        shown = [k[len(prefix):] for k in keys]
        lines = [f"  {name}" for name in shown[:30]]
        if len(shown) > 30:
            lines.append(f"  ... and {len(shown) - 30} more")
        text = f"\n{self.address(prefix)} holds:\n" + ("\n".join(lines) or "  (nothing)")
        hint = difflib.get_close_matches(key[len(prefix):], shown, n=1)
        return text + (f"\nDid you mean {self.address(prefix + hint[0])}?" if hint else "")


class _S3(_ObjectStore):
    """A bucket through the S3 REST API, each request signed with AWS Signature Version 4.
    AWS_ENDPOINT_URL (an S3-compatible store, a local emulator) is addressed path-style."""

    scheme, key_word = "s3", "KEY"

    def __init__(self, url, retry_for):
        import urllib.parse
        super().__init__(url, retry_for)
        bucket = self.bucket
        self.access_key, self.secret, self.token, self.region, self.credentials = \
            _aws_settings()
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            self.base = f"{endpoint.rstrip('/')}/{urllib.parse.quote(bucket)}"
        elif "." in bucket:  # a dotted name breaks the certificate of bucket.s3...
            self.base = f"https://s3.{self.region}.amazonaws.com/{bucket}"
        else:
            self.base = f"https://{bucket}.s3.{self.region}.amazonaws.com"

    def object_url(self, key, query=""):
        import urllib.parse
        return f"{self.base}/{urllib.parse.quote(key, safe='/~')}" + (f"?{query}" if query
                                                                        else "")

    def sign(self, method, url, headers):
        """headers with an AWS Signature Version 4 added (the payload unsigned, so that a
        body can stream)."""
        import hmac
        import urllib.parse
        parts = urllib.parse.urlsplit(url)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        headers = dict(headers, **{"x-amz-date": stamp,
                                   "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        if self.token:
            headers["x-amz-security-token"] = self.token
        signed = {"host": parts.netloc}
        signed.update((name.lower(), str(value).strip()) for name, value in headers.items()
                      if name.lower().startswith("x-amz-"))
        names = ";".join(sorted(signed))

        def encode(text):
            return urllib.parse.quote(text, safe="-_.~")
        query = "&".join(sorted(f"{encode(k)}={encode(v)}" for k, v in
                                urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
        canonical = "\n".join([method, parts.path or "/", query,
                               "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
                               names, "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{self.region}/s3/aws4_request"
        text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                          hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={names}, Signature={signature}")
        return headers

    def refusal(self, failure, key):
        """The error for an S3 error answer about key, or None when asking again may help."""
        code = b"".join(_xml_values(failure.body, "Code")[:1]).decode(errors="replace")
        detail = b"".join(_xml_values(failure.body, "Message")[:1]).decode(errors="replace")
        what = self.address(key)
        if code == "NoSuchBucket" or (failure.code == 404 and not key):
            return SourceMissing(f"There is no bucket {self.bucket} (at {self.base}). Check "
                                 f"the name in --archive, or create it: aws s3 mb "
                                 f"s3://{self.bucket}")
        if failure.code == 404:
            return SourceMissing(f"The archive {what} does not exist.{self.listing(key)}")
        if code in S3_DENIED or failure.code in (401, 403):
            return AccessDenied(
                f"The store refused access to {what} ({code or failure.code}"
                f"{': ' + detail if detail else ''}). Credentials used: {self.credentials}, "
                f"region {self.region}. Fix: use keys whose policy allows s3:GetObject, "
                f"s3:PutObject, s3:DeleteObject and s3:ListBucket on {self.bucket}, check "
                f"AWS_DEFAULT_REGION, or renew expired temporary credentials.")
        if not _worth_retrying(failure.code):
            return BootstrapError(f"{what}: the store answered HTTP {failure.code} "
                                  f"{code or failure.reason}{': ' + detail if detail else ''}.")
        return None

    def call(self, method, key, query="", headers=None, body=None, client=None,
             missing=False, doing="reaching"):
        """(status, headers, body) of a request about key, retried while it fails
        transiently; None for a missing object when missing is set."""
        def judge(response, data):
            if response.status == 404 and missing and b"NoSuchBucket" not in data:
                return True, None
            # CopyObject and CompleteMultipartUpload can fail after a 200
            if response.status < 300 and not (method != "GET" and b"<Error>" in data):
                return True, (response.status, response.headers, data)
            return False, _HttpStatus(response.status if response.status >= 300 else 500,
                                      response.reason,
                                      _retry_after(response.getheader("Retry-After")), data)
        return self._request(method, self.object_url(key, query), key, headers, body,
                             client, doing, judge)

    def keys(self, prefix, delimiter=False):
        """The keys under prefix (with delimiter: this level's keys and folders)."""
        import urllib.parse
        found, token = [], None
        while True:
            fields = {"list-type": "2", "prefix": prefix}
            if delimiter:
                fields["delimiter"] = "/"
            if token:
                fields["continuation-token"] = token
            query = urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)
            _, _, data = self.call("GET", "", query, doing="listing")
            found += [k.decode() for k in _xml_values(data, "Key")]
            found += [p.decode() for p in _xml_values(data, "Prefix")[1:]]
            tokens = _xml_values(data, "NextContinuationToken")
            if not tokens:
                return sorted(found)
            token = tokens[0].decode()

    def head(self, key):
        """{size, validator} of the object, or None when there is none."""
        answer = self.call("HEAD", key, missing=True, doing="checking")
        if answer is None:
            return None
        headers = answer[1]
        return {"size": int(headers.get("Content-Length") or 0),
                "validator": headers.get("ETag") or headers.get("Last-Modified") or ""}

    def read(self, key):
        answer = self.call("GET", key, missing=True, doing="reading")
        return None if answer is None else answer[2][:MAX_SIDECAR]

    def put(self, key, data):
        self.call("PUT", key, body=data, doing="writing")

    def delete(self, key):
        self.call("DELETE", key, missing=True, doing="deleting")

    def copy(self, source, target, size):
        """A server-side copy, complete or not at all: one request, or for an object larger
        than one copy may be, a multipart upload of ranges of it."""
        import urllib.parse
        origin = {"x-amz-copy-source": urllib.parse.quote(f"/{self.bucket}/{source}",
                                                          safe="/~")}
        if size <= S3_COPY_LIMIT:
            self.call("PUT", target, headers=origin, doing="copying to")
            return
        upload = self._start(target)
        try:
            etags = []
            for number, start in enumerate(range(0, size, S3_COPY_PART), 1):
                end = min(start + S3_COPY_PART, size) - 1
                _, _, data = self.call("PUT", target, f"partNumber={number}&uploadId={upload}",
                                       dict(origin, **{"x-amz-copy-source-range":
                                                       f"bytes={start}-{end}"}),
                                       doing="copying to")
                etags.append(_xml_values(data, "ETag")[0].decode())
            self._complete(target, upload, etags)
        except BaseException:
            self._abort(target, upload)
            raise

    def _start(self, key):
        _, _, data = self.call("POST", key, "uploads=", doing="starting the upload of")
        return _xml_values(data, "UploadId")[0].decode()

    def _complete(self, key, upload, etags):
        body = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            for n, etag in enumerate(etags, 1)) + "</CompleteMultipartUpload>"
        self.call("POST", key, f"uploadId={upload}", body=body.encode(),
                  doing="finishing the upload of")

    def _abort(self, key, upload):
        try:
            self.call("DELETE", key, f"uploadId={upload}", missing=True,
                      doing="abandoning the upload of")
        except BootstrapError:
            pass  # the store drops an unfinished upload by its lifecycle rules

    def upload(self, key, pieces, progress, share):
        """Upload the stream to key (one PUT when small, else a multipart upload, which the
        store shows under key only once complete) -> (sha256, size). Up to
        UPLOAD_CONNECTIONS parts are sent at once, each over its own connection."""
        hasher, size, buffer = hashlib.sha256(), 0, bytearray()
        upload, etags, senders, failures = None, [], [], []
        slots = threading.BoundedSemaphore(UPLOAD_CONNECTIONS)

        def put_part(number, data):
            try:
                _, headers, _ = self.call("PUT", key, f"partNumber={number}&uploadId={upload}",
                                          body=data, doing="uploading")
                etags[number - 1] = headers.get("ETag")
            except BaseException as exc:  # raised by the uploading thread below
                failures.append(exc)
            finally:
                slots.release()

        def send_part():
            nonlocal upload
            upload = upload or self._start(key)
            slots.acquire()
            if failures:
                slots.release()
                raise failures[0]
            etags.append(None)
            sender = threading.Thread(target=put_part, name="upload-part", daemon=True,
                                      args=(len(etags), bytes(buffer[:UPLOAD_PART])))
            del buffer[:UPLOAD_PART]
            senders.append(sender)
            sender.start()
        try:
            for piece in pieces:
                hasher.update(piece)
                size += len(piece)
                buffer += piece
                while len(buffer) >= UPLOAD_PART:
                    send_part()
                progress.update(size, None, share=share())
            if upload is None:
                self.call("PUT", key, body=bytes(buffer), doing="uploading")
            else:
                if buffer:
                    send_part()
                for sender in senders:
                    sender.join()
                if failures:
                    raise failures[0]
                self._complete(key, upload, etags)
            progress.update(size, None, force=True, share=1.0)
        except BaseException:
            for sender in senders:
                sender.join()
            if upload is not None:
                self._abort(key, upload)
            raise
        return hasher.hexdigest(), size

    def clean_stale(self, name):
        """Remove what saves that died left: temporary objects and unfinished uploads."""
        import urllib.parse
        prefix = f"{name}.tmp-"
        for key in self.keys(prefix):
            self.delete(key)
        query = urllib.parse.urlencode({"uploads": "", "prefix": prefix},
                                       quote_via=urllib.parse.quote)
        _, _, data = self.call("GET", "", query, doing="listing the uploads in")
        for key, upload in zip(_xml_values(data, "Key"), _xml_values(data, "UploadId")):
            self._abort(key.decode(), upload.decode())


class _S3Source(_HttpSource):
    """An s3:// archive (or its version `version`), read as an http one with each request
    signed."""

    def __init__(self, url, retry_for, connections=DEFAULT_CONNECTIONS, version=0):
        self.store = _S3(url, retry_for)
        self.key = _version_path(self.store.key, version)
        super().__init__(self.store.object_url(self.key), retry_for, connections,
                         shown=self.store.address(self.key))

    def _headers(self, method, url, headers):
        return self.store.sign(method, url, headers)

    def _refusal(self, failure):
        return self.store.refusal(failure, self.key) or super()._refusal(failure)

    def _sidecar_url(self):
        return self.store.object_url(self.store.key + ".sha256")


class _GCS(_ObjectStore):
    """A bucket through the Cloud Storage JSON API, with an OAuth access token (gcloud's,
    or GOOGLE_OAUTH_ACCESS_TOKEN). STORAGE_EMULATOR_HOST: a local emulator, which needs
    none. The same operations as _S3, for the same save and restore."""

    scheme, key_word = "gs", "PATH"

    def __init__(self, url, retry_for):
        super().__init__(url, retry_for)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            self.base = emulator.rstrip("/") if "://" in emulator else f"http://{emulator}"
        else:
            self.base = "https://storage.googleapis.com"
        self.token, self.credentials = self._token(bool(emulator))

    @staticmethod
    def _token(emulated):
        token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
        if token:
            return token, "GOOGLE_OAUTH_ACCESS_TOKEN"
        if emulated:
            return None, "none (STORAGE_EMULATOR_HOST)"
        import subprocess
        try:
            token = subprocess.run(["gcloud", "auth", "print-access-token"],
                                   capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            token = ""
        if not token:
            raise UsageError(
                "No Google Cloud credentials for gs://: `gcloud auth print-access-token` gave "
                "no token and GOOGLE_OAUTH_ACCESS_TOKEN is not set. In Colab, run `from "
                "google.colab import auth; auth.authenticate_user()` first; elsewhere `gcloud "
                "auth login`, or set GOOGLE_OAUTH_ACCESS_TOKEN.")
        return token, "gcloud auth print-access-token"

    def _object(self, key, query="", api="storage"):
        import urllib.parse
        path = f"/{api}/v1/b/{urllib.parse.quote(self.bucket)}/o"
        if key:
            path += "/" + urllib.parse.quote(key, safe="")
        return self.base + path + (f"?{query}" if query else "")

    def media_url(self, key):
        return self._object(key, "alt=media")

    def sign(self, method, url, headers):
        """The token goes to the store only, never to where a redirect might lead."""
        if self.token and url.startswith(self.base + "/"):
            return dict(headers, Authorization=f"Bearer {self.token}")
        return headers

    def refusal(self, failure, key):
        """The error to raise for the store's answer about key, or None when asking again
        may help."""
        try:
            error = json.loads(failure.body or b"{}").get("error", {})
        except (ValueError, AttributeError):
            error = {}
        detail = error.get("message", "") if isinstance(error, dict) else ""
        what = self.address(key)
        if failure.code == 404 and (not key or "bucket" in detail.lower()):
            return SourceMissing(f"There is no bucket {self.bucket}"
                                 f"{f' ({detail})' if detail else ''}. Check the name in "
                                 f"--archive, or create it: gcloud storage buckets create "
                                 f"gs://{self.bucket}")
        if failure.code == 404:
            return SourceMissing(f"The archive {what} does not exist.{self.listing(key)}")
        if failure.code in (401, 403):
            return AccessDenied(
                f"The store refused access to {what} (HTTP {failure.code}"
                f"{': ' + detail if detail else ''}). Credentials used: {self.credentials}. "
                f"Fix: in Colab run auth.authenticate_user() again (tokens last an hour); "
                f"elsewhere `gcloud auth login`; the account needs storage.objects.get, "
                f"create, delete and list on {self.bucket}.")
        if not _worth_retrying(failure.code):
            return BootstrapError(f"{what}: the store answered HTTP {failure.code} "
                                  f"{detail or failure.reason}.")
        return None

    def call(self, method, url, key, headers=None, body=None, client=None, missing=False,
             doing="reaching", accept=()):
        """(status, headers, body) of a request to url about key, retried while it fails
        transiently; None for a missing object when missing is set. accept: statuses of
        300 or more that are answers, not failures (a resumable upload's 308)."""
        def judge(response, data):
            if response.status == 404 and missing and b"bucket" not in data.lower():
                return True, None
            if response.status < 300 or response.status in accept:
                return True, (response.status, response.headers, data)
            return False, _HttpStatus(response.status, response.reason,
                                      _retry_after(response.getheader("Retry-After")), data)
        return self._request(method, url, key, headers, body, client, doing, judge)

    def keys(self, prefix, delimiter=False):
        import urllib.parse
        found, token = [], None
        while True:
            fields = {"prefix": prefix, "fields": "items(name),prefixes,nextPageToken"}
            if delimiter:
                fields["delimiter"] = "/"
            if token:
                fields["pageToken"] = token
            query = urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)
            _, _, data = self.call("GET", self._object("", query), "", doing="listing")
            page = json.loads(data or b"{}")
            found += [item["name"] for item in page.get("items", [])]
            found += page.get("prefixes", [])
            token = page.get("nextPageToken")
            if not token:
                return sorted(found)

    def head(self, key):
        answer = self.call("GET", self._object(key), key, missing=True, doing="checking")
        if answer is None:
            return None
        resource = json.loads(answer[2])
        return {"size": int(resource.get("size", 0)),
                "validator": str(resource.get("generation", ""))}

    def read(self, key):
        answer = self.call("GET", self.media_url(key), key, missing=True, doing="reading")
        return None if answer is None else answer[2][:MAX_SIDECAR]

    def put(self, key, data):
        import urllib.parse
        query = urllib.parse.urlencode({"uploadType": "media", "name": key},
                                       quote_via=urllib.parse.quote)
        self.call("POST", self._object("", query, "upload/storage"), key, body=data,
                  headers={"Content-Type": "application/octet-stream"}, doing="writing")

    def delete(self, key):
        self.call("DELETE", self._object(key), key, missing=True, doing="deleting")

    def copy(self, source, target, size):
        """A server-side rewrite, repeated with its token until done: the target appears
        complete, or not at all."""
        import urllib.parse
        url = (self._object(source) + "/rewriteTo/b/" + urllib.parse.quote(self.bucket) +
               "/o/" + urllib.parse.quote(target, safe=""))
        token = None
        while True:
            query = f"?rewriteToken={urllib.parse.quote(token, safe='')}" if token else ""
            _, _, data = self.call("POST", url + query, target, body=b"",
                                   doing="copying to")
            answer = json.loads(data or b"{}")
            if answer.get("done", True):
                return
            token = answer["rewriteToken"]

    def upload(self, key, pieces, progress, share):
        """A resumable upload: the object appears under key only once it is complete."""
        import urllib.parse
        query = urllib.parse.urlencode({"uploadType": "resumable", "name": key},
                                       quote_via=urllib.parse.quote)
        _, headers, _ = self.call("POST", self._object("", query, "upload/storage"), key,
                                  body=b"{}", headers={"Content-Type": "application/json"},
                                  doing="starting the upload of")
        session = headers.get("Location")
        hasher, size, sent, buffer = hashlib.sha256(), 0, 0, bytearray()
        client = _HttpClient()

        def send(final):
            nonlocal sent
            chunk = bytes(buffer if final else buffer[:UPLOAD_PART])
            span = f"bytes {sent}-{sent + len(chunk) - 1}" if chunk else "bytes *"
            total = str(size) if final else "*"
            self.call("PUT", session, key, {"Content-Range": f"{span}/{total}"}, chunk,
                      client=client, doing="uploading", accept=(308,))
            sent += len(chunk)
            del buffer[:len(chunk)]
        try:
            for piece in pieces:
                hasher.update(piece)
                size += len(piece)
                buffer += piece
                while len(buffer) >= UPLOAD_PART:
                    send(False)
                progress.update(size, None, share=share())
            send(True)
            progress.update(size, None, force=True, share=1.0)
        finally:
            client.close()
        return hasher.hexdigest(), size

    def clean_stale(self, name):
        """Remove temporary objects of saves that died (their unfinished uploads expire)."""
        for key in self.keys(f"{name}.tmp-"):
            self.delete(key)


class _GCSSource(_HttpSource):
    """A gs:// archive (or its version `version`): its generation is read first and every
    range asks for that generation, so a replaced object cannot be mixed in."""

    def __init__(self, url, retry_for, connections=DEFAULT_CONNECTIONS, version=0):
        self.store = _GCS(url, retry_for)
        self.key = _version_path(self.store.key, version)
        held = self.store.head(self.key)
        if held is None:
            raise SourceMissing(f"The archive {self.store.address(self.key)} does not exist."
                                f"{self.store.listing(self.key)}")
        self.generation = held["validator"]
        super().__init__(self.store.media_url(self.key) + f"&generation={self.generation}",
                         retry_for, connections, shown=self.store.address(self.key))
        self.validator = self.generation
        self.identity["validator"] = self.generation

    def _headers(self, method, url, headers):
        return self.store.sign(method, url, headers)

    def _refusal(self, failure):
        if failure.code == 404:
            return self._changed("gone, or replaced by another generation")
        return self.store.refusal(failure, self.key) or super()._refusal(failure)

    def _sidecar_url(self):
        return self.store.media_url(self.store.key + ".sha256")


def _bucket_status(archive, retry_for):
    """status's lines for an archive in a bucket: it and its kept versions, with layers."""
    store = _bucket(archive, retry_for)
    content = store.read(store.key + ".sha256")
    sidecar = _sidecar_entries(content, store.address(store.key + ".sha256")) \
        if content is not None else {}
    lines, version = [f"archive {archive}"], 0
    while True:
        key = _version_path(store.key, version)
        held = store.head(key)
        if held is None:
            return lines + ([] if version else ["  current: missing"])
        name = key.rpartition("/")[2]
        hashes = sorted(_expected_hashes(sidecar, name, fallback=False) or [])
        layers = _bucket_layers(store, hashes[0], sidecar) if len(hashes) == 1 else []
        layer_text = (f", {len(layers)} layer(s) of "
                      f"{_human(sum(layer['size'] for _, layer in layers))}" if layers else "")
        lines.append(f"  {'current' if not version else f'--previous {version}'}: {name}  "
                     f"{_human(held['size'])}  sha256 "
                     f"{' or '.join(h[:16] for h in hashes) or 'no checksum'}{layer_text}")
        version += 1


def _bucket_layers(store, base_sha, sidecar):
    """[(key, {size, validator})] of the layers of the base with this hash, in order, up to
    the first that is missing or that the sidecar's entries do not name."""
    folder = store.key.rpartition("/")[0]
    prefix = _layer_prefix(store.key, base_sha)
    listed = [key.rpartition("/")[2] for key in
              store.keys(f"{folder}/{prefix}" if folder else prefix)]
    layers = []
    for name in _layer_names(listed, prefix):
        key = f"{folder}/{name}" if folder else name
        held = store.head(key) if _expected_hashes(sidecar, name, fallback=False) else None
        if held is None:
            break
        layers.append((key, held))
    return layers


def _open_source(archive, retry_for, drive_mount, sidecar=None, drive_cache=None, version=0,
                 connections=DEFAULT_CONNECTIONS):
    if _is_bucket(archive):
        kind = _GCSSource if archive.startswith("gs://") else _S3Source
        return kind(archive, retry_for, connections, version)
    if _is_url(archive):
        return _HttpSource(archive, retry_for, connections)
    return _PathSource(archive, retry_for, drive_mount, sidecar, drive_cache, version)


# ------------------------------------------------------------- stream and hash: the pipe --
_END = object()


class _Failed:
    def __init__(self, exc):
        self.exc = exc


class _Stage:
    """Runs an iterable in its own thread, handing items on through a small bounded queue.

    Reading, hashing, decompressing and writing then overlap on the two or more cores a
    notebook VM has: hashlib, zlib, bz2, lzma and file I/O all release the GIL.
    """

    def __init__(self, make_iterable, name, depth=QUEUE_DEPTH):
        self._queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(make_iterable,),
                                        name=name, daemon=True)
        self._thread.start()

    def _run(self, make_iterable):
        iterator = None
        try:
            iterator = iter(make_iterable())
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failed(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.exc
        return item

    def close(self):
        self._stop.set()
        self._thread.join()


class _Counter:
    bytes = 0


def _hashing(source, hasher, counter, offset=0):
    for data in source.chunks(offset):
        hasher.update(data)
        counter.bytes += len(data)
        yield data


# ------------------------------------------------------------------- decompress: formats --
def _detect_format(head, where):
    """The archive's format from its first bytes: names lie, magic numbers don't."""
    if not head:
        raise CorruptArchive(f"{where} is empty (0 bytes): a save that was cut off, or a file "
                             f"Drive has not finished syncing. Restore an older version or "
                             f"save again.")
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zst"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= BLOCK and (head[_FIELD.magic][:5] == b"ustar" or
                               _header_checksum_ok(head[:BLOCK])):
        return "tar"
    if len(head) >= BLOCK and head[:BLOCK] == bytes(BLOCK):
        # an empty tar (its end mark alone), unless a zip follows the zeros (padding)
        return "zip" if head.lstrip(b"\0").startswith(b"PK\x03\x04") else "tar"
    sniff = head[:2048].lstrip().lower()
    if sniff.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<!--")) \
            or b"<html" in sniff:
        raise CorruptArchive(
            f"{where} is a web page (HTML), not an archive: typically a Drive sharing or "
            f"virus-scan page, or a login page, saved under the archive's name. Download the "
            f"real file (for Drive: File > Download, or copy it inside Drive), then run again.")
    if b"PK\x03\x04" in head:
        # a zip with bytes before it (a self-extracting stub, padding): its directory at
        # the end says where its members are, as unzip, bsdtar and Python's zipfile read it
        return "zip"
    raise _not_an_archive(where, head)


def _not_an_archive(where, head):
    return CorruptArchive(f"{where} is not an archive this tool knows (tar, tar.gz, tar.bz2, "
                          f"tar.xz, tar.zst, zip): it starts with bytes {head[:8].hex(' ')}.")


def _decompressed(chunks, fmt, where):
    """Decompressed data in pieces of at most CHUNK, whatever the compression ratio.

    Handles concatenated members/streams (pigz, `cat a.gz b.gz`, pbzip2, multi-stream xz and
    zstd), which tarfile's stream mode does not.
    """
    if fmt == "tar":
        return chunks
    if fmt == "gz":
        return _unpack(chunks, _GzipMember, b"\x1f\x8b", where, "gzip", (zlib.error,))
    if fmt == "bz2":
        import bz2
        # bzip2 -d ignores what follows its last stream (with a warning), and GNU tar goes
        # on: so do we, up to MAX_TRAILING. gzip, xz and zstd call it an error.
        return _unpack(chunks, bz2.BZ2Decompressor, b"BZh", where, "bzip2", (OSError, ValueError),
                       ignore_trailing=True)
    if fmt == "xz":
        import lzma
        return _unpack(chunks, lzma.LZMADecompressor, b"\xfd7zXZ\x00", where, "xz",
                       (lzma.LZMAError,))
    if _zstd_module is not None:
        return _unpack(chunks, _zstd_module.ZstdDecompressor, b"\x28\xb5\x2f\xfd", where, "zstd",
                       (_zstd_module.ZstdError,))
    zstd = shutil.which("zstd")
    if zstd:
        return _external_program([zstd, "-dcq"], _zeros_at_end_dropped(chunks),
                                 lambda message: CorruptArchive(
            f"{where} is damaged: zstd could not decompress it ({message})."))
    raise Unsupported(f"{where} is compressed with zstd, and this machine can neither "
                      f"decompress it in Python (needs 3.14+) nor with a `zstd` program. Fix: "
                      f"apt-get install zstd (or brew install zstd), then run again.")


def _trailing_ok(data):
    return not data.strip(b"\0")


def _zeros_at_end_dropped(chunks):
    """chunks without the zeros at the very end (padding a copy tool or device added): the
    zstd program calls them damage, where _unpack (and so Python's own zstd) ignores them.
    A run of zeros longer than MAX_TRAILING is passed on, for zstd to judge."""
    held = []
    for chunk in chunks:
        end = len(chunk.rstrip(b"\0"))
        if end:
            yield from held
            held = []
            yield chunk[:end] if end < len(chunk) else chunk
        held.append(chunk[end:])
        if sum(map(len, held)) > MAX_TRAILING:
            yield from held
            held = []


class _GzipMember:
    """zlib's gzip decompressor behind the interface bz2, lzma and zstd share."""

    def __init__(self):
        self._zlib = zlib.decompressobj(31)
        self._tail = b""
        self.needs_input = True

    def decompress(self, data, max_length):
        out = self._zlib.decompress(self._tail + data if self._tail else data, max_length)
        self._tail = self._zlib.unconsumed_tail
        # A full output may leave more inside zlib even with no input left: ask again.
        self.needs_input = not self._tail and len(out) < max_length
        return out

    @property
    def eof(self):
        return self._zlib.eof

    @property
    def unused_data(self):
        return self._zlib.unused_data


def _unpack(chunks, make_decompressor, magic, where, label, errors, ignore_trailing=False):
    """Decompress member after member (gzip, bz2, xz and zstd decompressors share one
    interface: needs_input, eof, unused_data); between members only zeros may follow, or,
    with ignore_trailing, anything that does not start another member (read, not used, up
    to MAX_TRAILING bytes)."""
    decompressor = make_decompressor()
    between_streams = False
    pending = b""
    ignored = -1  # bytes of trailing data ignored so far; -1: none yet
    try:
        for chunk in chunks:
            data = pending + chunk if pending else chunk
            pending = b""
            while True:
                if ignored >= 0:
                    ignored += len(data)
                    if ignored > MAX_TRAILING:
                        raise CorruptArchive(f"more than {_human(MAX_TRAILING)} of data follow "
                                             f"the end of {where}'s {label} stream: this is "
                                             f"not one {label} archive")
                    break
                if between_streams:
                    if not data:
                        break
                    if len(data) < len(magic) and magic.startswith(data[:len(magic)]) \
                            and not _trailing_ok(data):
                        pending = data
                        break
                    if not data.startswith(magic):
                        if ignore_trailing and not _trailing_ok(data):
                            ignored = 0
                            continue
                        if not _trailing_ok(data):
                            raise CorruptArchive(f"{where} has unexpected data after its "
                                                 f"{label} stream (rule: only zeros may follow "
                                                 f"it; `{label} -d` refuses it too): the file "
                                                 f"is damaged.")
                        break
                    decompressor = make_decompressor()
                    between_streams = False
                out = decompressor.decompress(data, CHUNK)
                data = b""
                if out:
                    yield out
                if decompressor.eof:
                    data = decompressor.unused_data
                    between_streams = True
                elif decompressor.needs_input:
                    break
    except (EOFError,) + errors as exc:
        raise CorruptArchive(f"{where} is damaged: its {label} data does not decompress "
                             f"({exc}).") from None
    if not between_streams:
        raise _Truncated(f"{where} ends in the middle of its {label} data: it is "
                         f"truncated (a save or upload that was cut off).")


def _external_program(command, chunks, failure):
    """Pipe chunks through an external (de)compressor; our threads keep hashing and I/O.

    failure(stderr text) makes the exception raised when the program fails.
    """
    import subprocess
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    feed_error = []

    def feed():
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as exc:
            feed_error.append(exc)
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed, name=f"{command[0]}-feed", daemon=True)
    feeder.start()
    finished = False
    try:
        while True:
            out = process.stdout.read(CHUNK)
            if not out:
                break
            yield out
        finished = True
    finally:
        if not finished:  # we stopped early: the program's output is no longer wanted
            process.kill()
        process.wait()
        feeder.join()
        process.stdout.close()
        message = process.stderr.read().decode("utf-8", "replace").strip()
        process.stderr.close()
    if feed_error:
        raise feed_error[0]
    if process.returncode:
        raise failure(message)


# --------------------------------------------------------------------- tar, read by hand --
def _header_checksum_ok(block):
    try:
        recorded = int(block[_FIELD.checksum].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    before, after = block[:_FIELD.checksum.start], block[_FIELD.checksum.stop:]
    unsigned = sum(before) + 8 * 32 + sum(after)
    if recorded == unsigned:
        return True
    # some old tars summed the bytes as signed chars: each byte over 127 counts 256 less
    high = sum(b > 127 for b in before) + sum(b > 127 for b in after)
    return recorded == unsigned - 256 * high


def _number(field, what, signed=False):
    """A numeric header field: octal digits (space or NUL around them, all NULs for 0), or
    GNU base-256. Signs, blanks and anything else GNU tar would not read are damage; a
    negative base-256 number (a leading 0xff) only where signed (a time before 1970)."""
    if field[:1] == b"\x80":  # GNU base-256, for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        if signed:
            return int.from_bytes(field, "big", signed=True)
        raise CorruptArchive(f"a tar header has a negative {what}")
    text = field.split(b"\0", 1)[0]
    digits = text.strip(b" ")
    if digits.translate(None, b"01234567") or (text and not digits):
        raise CorruptArchive(f"a tar header has an unreadable {what} field {bytes(field)!r}")
    return int(digits, 8) if digits else 0


def _text(field):
    return os.fsdecode(field.split(b"\0", 1)[0])


def _starts_a_member(block):
    """True when block is a tar header (its checksum holds) or the end-of-archive marker."""
    return len(block) == BLOCK and (block == bytes(BLOCK) or _header_checksum_ok(block))


def _pax_time(value, name):
    """A pax time as GNU tar reads it: [-]SECONDS[.FRACTION], the fraction cut to the
    nanosecond (rounded down, so -1.5 is 1.5 s before 1970). Seconds, an int without a
    fraction, a float with one; clamped to MAX_MTIME either side of 1970.

    GNU tar would also read the leading digits of '999xxx9324.43' and ignore the rest, where
    Go's archive/tar refuses the archive: a time that is partly garbage is a damaged
    header here (exit 7)."""
    body = value[1:] if value[:1] == b"-" else value
    whole, dot, fraction = body.partition(b".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise CorruptArchive(f"member {name!r} has a pax time {bytes(value[:40])!r} that is "
                             f"not a number (rule: a pax time is [-]SECONDS[.FRACTION] in "
                             f"decimal digits)")
    whole = whole.lstrip(b"0") or b"0"
    seconds = int(whole) if len(whole) <= 20 else MAX_MTIME
    if not dot:
        return -seconds if value[:1] == b"-" else seconds
    nanoseconds = seconds * 10**9 + int(fraction[:9].ljust(9, b"0"))
    if value[:1] == b"-":
        nanoseconds = -nanoseconds - bool(fraction[9:].strip(b"0"))
    return nanoseconds / 1e9


def _pax_records(data, where, in_order=None):
    """{key: value} of a pax header, framed exactly: 'LENGTH key=value\\n', where LENGTH
    (decimal digits) counts the whole record and ends inside the header, as GNU tar
    demands. in_order, a list: gets every (key, value), repeated keys too."""
    records, pos = {}, 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        space = data.find(b" ", pos)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit() or len(digits) > 20:
            raise CorruptArchive(f"{where}: a pax header is unreadable")
        end = pos + int(digits)
        record = data[space + 1:end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise CorruptArchive(f"{where}: a pax header record is malformed")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "replace")] = value
        if in_order is not None:
            in_order.append((key, value))
        pos = end
    return records


class _Member:
    """One archive member, as the checks and the writers see it."""

    __slots__ = ("name", "kind", "parts", "mode", "mtime", "size", "linkname", "replaces",
                 "sparse")

    def __init__(self, name, kind, parts, mode, mtime, size, linkname="", sparse=None):
        self.name = name  # as written in the archive, for messages
        self.kind = kind  # "file" | "dir" | "symlink" | "hardlink"
        self.parts = parts  # normalised path components below the archive root
        self.mode, self.mtime, self.size = mode, mtime, size
        self.linkname = linkname
        self.replaces = False  # an earlier member (or layer) made this path already
        # a sparse file: (its full size, [(offset, length)] of the data it stores, in
        # order); size is then what the archive holds, the data alone
        self.sparse = sparse


_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
          b"5": "dir"}
_FORBIDDEN_KINDS = {b"3": "a character device", b"4": "a block device", b"6": "a FIFO",
                    b"M": "a multi-volume continuation", b"N": "an old GNU long-name entry"}
_PAX_KEYS_THAT_NAME = ("path", "linkpath", "size")


def _decimal(text, what, name):
    if not text.isdigit() or len(text) > 20:
        raise CorruptArchive(f"member {name!r} has an unreadable {what} {bytes(text[:40])!r} "
                             f"in its sparse map")
    return int(text)


def _sparse_member(stream, block, typeflag, pax, in_order, name, size):
    """(name, bytes of data stored, (full size, [(offset, length)])) of a GNU sparse member,
    in any of the forms `tar -S` writes: old GNU type 'S' (the map in the header and the
    extension blocks after it), pax 0.0 (GNU.sparse.offset/numbytes records), 0.1
    (GNU.sparse.map) and 1.0 (the map in decimal lines ahead of the data).

    The map must make sense before anything is written: entries in order, none overlapping
    the next, each inside the full size, which no file may exceed (MAX_FILE_SIZE), their
    lengths adding up to exactly the data stored, whole blocks but for the last.
    """
    keys = [k for k in pax if k.startswith("GNU.sparse.")]
    version = (pax.get("GNU.sparse.major"), pax.get("GNU.sparse.minor"))
    numbers = []
    if typeflag == b"S":
        if keys:
            raise CorruptArchive(f"member {name!r} is an old GNU sparse file with pax sparse "
                                 f"records too: the two maps may disagree")
        realsize = _number(block[_FIELD.gnu_realsize], "sparse size")
        entries = [block[386 + 24 * i:410 + 24 * i] for i in range(4)]
        extended, blocks = block[_FIELD.gnu_extended], 0
        while extended:
            blocks += 1
            if blocks > MAX_META_SIZE // BLOCK or any(e[12] == 0 for e in entries):
                raise CorruptArchive(f"member {name!r} has a sparse map that goes on past its "
                                     f"end (or past {MAX_META_SIZE:,} bytes)")
            extension = stream.take(BLOCK)
            entries += [extension[24 * i:24 * i + 24] for i in range(21)]
            extended = extension[504]
        used = [e for e in entries if e[12] != 0]  # GNU tar's end: a length field of NULs
        if any(e[12] != 0 for e in entries[len(used):]):
            raise CorruptArchive(f"member {name!r} has entries after the end of its sparse map")
        for entry in used:
            numbers += [_number(entry[:12], "sparse offset"), _number(entry[12:], "sparse length")]
    elif version not in ((None, None), (b"0", b"0"), (b"0", b"1")):
        if version not in ((b"1", b"0"), (b"1", None)):
            raise Unsupported(f"member {name!r} is a sparse file in GNU's format version "
                              f"{version[0]!r}.{version[1]!r}, which this tool does not know "
                              f"(it reads 0.0, 0.1 and 1.0). Re-create the archive with "
                              f"`tar -S --format=gnu` or without -S.")
        realsize = _decimal(pax.get("GNU.sparse.realsize", b""), "full size", name)
        blocks, lines, count = [], 0, None
        while count is None or lines < 1 + 2 * count:
            if len(blocks) * BLOCK >= min(size, MAX_META_SIZE):
                raise CorruptArchive(f"member {name!r} has a sparse map that does not end "
                                     f"within its data (or within {MAX_META_SIZE:,} bytes)")
            blocks.append(stream.take(BLOCK))
            lines += blocks[-1].count(b"\n")
            if count is None and lines:
                count = _decimal(b"".join(blocks).split(b"\n", 1)[0], "entry count", name)
        numbers = [_decimal(line, "offset or length", name)
                   for line in b"".join(blocks).split(b"\n")[1:1 + 2 * count]]
        size -= len(blocks) * BLOCK
    elif "GNU.sparse.map" in pax:
        realsize = _decimal(pax.get("GNU.sparse.size", b""), "full size", name)
        numbers = [_decimal(n, "offset or length", name)
                   for n in pax["GNU.sparse.map"].split(b",")] if pax["GNU.sparse.map"] else []
        if len(numbers) % 2:
            raise CorruptArchive(f"member {name!r} has an odd count of numbers in its sparse map")
    elif "GNU.sparse.numblocks" in pax:
        realsize = _decimal(pax.get("GNU.sparse.size", b""), "full size", name)
        pairs = [(k, v) for k, v in in_order if k in (b"GNU.sparse.offset",
                                                      b"GNU.sparse.numbytes")]
        if [k for k, _ in pairs] != [b"GNU.sparse.offset", b"GNU.sparse.numbytes"] * (
                len(pairs) // 2) or len(pairs) // 2 != _decimal(
                    pax["GNU.sparse.numblocks"], "entry count", name):
            raise CorruptArchive(f"member {name!r} has GNU.sparse.offset and numbytes records "
                                 f"that do not pair up, {pax['GNU.sparse.numblocks']!r} of each")
        numbers = [_decimal(v, "offset or length", name) for _, v in pairs]
    else:
        raise CorruptArchive(f"member {name!r} has sparse records ({', '.join(keys)}) but no "
                             f"sparse map")
    if "GNU.sparse.numblocks" in pax and len(numbers) != 2 * _decimal(
            pax["GNU.sparse.numblocks"], "entry count", name):
        raise CorruptArchive(f"member {name!r}: GNU.sparse.numblocks disagrees with its map")
    if "GNU.sparse.name" in pax:
        name = str(pax["GNU.sparse.name"], "utf-8", "surrogateescape")
    if realsize > MAX_FILE_SIZE:
        raise CorruptArchive(f"member {name!r} is a sparse file of {realsize:,} bytes, more "
                             f"than a file can hold ({_human(MAX_FILE_SIZE)}): its map is "
                             f"damaged")
    segments, end = list(zip(numbers[0::2], numbers[1::2])), 0
    for offset, length in segments:
        if offset < end or offset + length > realsize:
            raise CorruptArchive(f"member {name!r} has a sparse map entry ({offset:,}, "
                                 f"{length:,}) out of order, overlapping the one before, or "
                                 f"past the file's size of {realsize:,} bytes")
        end = offset + length
    if sum(length for _, length in segments) != size:
        raise CorruptArchive(f"member {name!r} stores {size:,} bytes of sparse data, but its "
                             f"map adds up to {sum(n for _, n in segments):,}")
    stretches = [(offset, length) for offset, length in segments if length]
    if any(length % BLOCK for _, length in stretches[:-1]):
        # GNU tar reads each stretch from blocks of its own, other readers read them end to
        # end: only whole blocks (what every `tar -S` writes) mean the same to both
        raise CorruptArchive(f"member {name!r} has a sparse stretch that is not whole "
                             f"{BLOCK}-byte blocks before its last one: readers disagree on "
                             f"where the next one's data starts")
    return name, size, (realsize, stretches)


class _TarStream:
    """Reads a tar stream piece by piece, without copying file data.

    member: the name of the member being read, for the message if the data stops inside
    it; unterminated: True once the stream has ended at a member boundary without the two
    zero blocks of the end-of-archive marker (what Go's archive/tar leaves without Close)."""

    def __init__(self, pieces):
        self._pieces = iter(pieces)
        self._buffer = memoryview(b"")
        self.member = None
        self.unterminated = False

    def _refill(self):
        for piece in self._pieces:
            if piece:
                self._buffer = memoryview(piece)
                return True
        return False

    def take(self, n):
        return b"".join(self.pieces(n))

    def at_end(self):
        """True when nothing is left to read."""
        return not self._buffer and not self._refill()

    def peek(self, n):
        """The next n bytes (fewer where the stream ends), left in place to be read again."""
        parts = []
        while n and (self._buffer or self._refill()):
            part = bytes(self._buffer[:n])
            self._buffer = self._buffer[len(part):]
            n -= len(part)
            parts.append(part)
        data = b"".join(parts)
        self._pieces = itertools.chain([self._buffer], self._pieces)
        self._buffer = memoryview(data)
        return data

    def pieces(self, n):
        while n:
            if not self._buffer and not self._refill():
                where = "a member's header" if self.member is None else \
                    f"member {self.member!r}"
                raise _Truncated(f"the archive ends in the middle of {where}: it is "
                                 f"truncated (a save or upload that was cut off).")
            part = self._buffer[:n]
            self._buffer = self._buffer[len(part):]
            n -= len(part)
            yield part

    def skip(self, n):
        for _ in self.pieces(n):
            pass

    def drain(self, limit):
        """Read to the end (finishing the decompressor's checks); fail past limit bytes."""
        total = len(self._buffer)
        self._buffer = memoryview(b"")
        for piece in self._pieces:
            total += len(piece)
            if total > limit:
                raise CorruptArchive(f"more than {_human(limit)} of data follow the end of "
                                     f"the tar archive: this is not one tar archive")


def _tar_members(stream):
    """Members of a tar stream, as GNU tar reads them (ustar, GNU long names, pax, GNU
    sparse files).

    Anything whose meaning could differ between readers (global pax names, links with data,
    sparse maps that do not add up) is refused rather than guessed, so that what we validate
    is exactly what either engine extracts.
    """
    pax, long_name, long_link, in_order = {}, None, None, []
    while True:
        stream.member = None
        if stream.at_end():
            if pax or long_name is not None or long_link is not None:
                named = long_name if long_name is not None else str(
                    pax.get("path", b"") or pax.get("linkpath", b""), "utf-8",
                    "surrogateescape")
                raise _Truncated(f"the archive ends after the extended header of a member"
                                 f"{f' ({named!r})' if named else ''}, before the member "
                                 f"itself: it is truncated (a save or upload that was cut "
                                 f"off).")
            # Ended at a member boundary without the end-of-archive marker (two zero
            # blocks): GNU tar and bsdtar read such an archive to its end, and so do we.
            stream.unterminated = True
            return
        block = stream.take(BLOCK)
        if block == bytes(BLOCK):
            return
        if not _header_checksum_ok(block):
            raise CorruptArchive("a tar header is damaged (bad header checksum): the archive "
                                 "is corrupt or not a tar archive")
        typeflag = block[_FIELD.typeflag]
        size = _number(block[_FIELD.size], "size")
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > MAX_META_SIZE:
                raise UnsafeArchive(f"a tar metadata entry declares {size:,} bytes (rule: "
                                    f"pax headers and long names stay under {MAX_META_SIZE:,})")
            payload = stream.take(size + (-size) % BLOCK)[:size]
            if typeflag == b"x":
                # several before one member: the last one counts, whole, as in GNU tar
                in_order = []
                pax = _pax_records(payload, "tar", in_order)
            elif typeflag == b"g":
                named = [k for k in _pax_records(payload, "tar") if k in _PAX_KEYS_THAT_NAME
                         or k.startswith("GNU.sparse")]
                if named:
                    raise UnsafeArchive(f"a global pax header sets {', '.join(named)} for "
                                        f"every later member (rule: names come from each "
                                        f"member's own header)")
            elif typeflag == b"L":
                long_name = os.fsdecode(payload.split(b"\0", 1)[0])
            else:
                long_link = os.fsdecode(payload.split(b"\0", 1)[0])
            continue
        name = _text(block[_FIELD.name])
        if block[_FIELD.magic] == b"ustar\x00":
            prefix = _text(block[_FIELD.prefix])
            if prefix:
                name = prefix + "/" + name
        linkname = _text(block[_FIELD.linkname])
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        if "path" in pax:
            name = str(pax["path"], "utf-8", "surrogateescape")
        if "linkpath" in pax:
            linkname = str(pax["linkpath"], "utf-8", "surrogateescape")
        if "size" in pax:
            digits = pax["size"].lstrip(b"0") or pax["size"][-1:]  # leading zeros: GNU tar's too
            if not (digits.isdigit() and len(digits) <= 20):
                raise CorruptArchive(f"member {name!r} has an unreadable pax size "
                                     f"{bytes(pax['size'][:40])!r} (rule: a pax size is "
                                     f"decimal digits only)")
            size = int(digits)
        mtime = _pax_time(pax["mtime"], name) if "mtime" in pax else \
            _number(block[_FIELD.mtime], "mtime", signed=True)
        if size > MAX_FILE_SIZE:
            raise CorruptArchive(f"member {name!r} declares {size:,} bytes, more than a file "
                                 f"can hold ({_human(MAX_FILE_SIZE)}): its header is damaged")
        # A time far out of range is harmless: clamped, as GNU tar does.
        mtime = min(max(mtime, -MAX_MTIME), MAX_MTIME)
        sparse = None
        if typeflag == b"S" or any(k.startswith("GNU.sparse.") for k in pax):
            if typeflag not in (b"S", b"0", b"\0", b"7"):
                raise CorruptArchive(f"member {name!r} of tar type {typeflag!r} carries a "
                                     f"sparse map: only regular files are sparse")
            stream.member = name
            name, size, sparse = _sparse_member(stream, block, typeflag, pax, in_order,
                                                name, size)
            typeflag = b"0"
        mode = _number(block[_FIELD.mode], "mode")
        if typeflag == b"V":  # a volume label carries no file
            stream.skip(size + (-size) % BLOCK)
            pax, long_name, long_link, in_order = {}, None, None, []
            continue
        dump_folder = typeflag == b"D"
        if dump_folder:
            # A folder of a GNU incremental dump (`tar -g`): its data lists the names the
            # folder held, which only `tar --incremental` reads; GNU tar extracts it as a
            # plain folder otherwise, and so do we.
            stream.member = name
            stream.skip(size + (-size) % BLOCK)
            typeflag, size = b"5", 0
        if typeflag in _FORBIDDEN_KINDS:
            raise UnsafeArchive(f"member {name!r} is {_FORBIDDEN_KINDS[typeflag]} (rule: only "
                                f"regular files, folders and links are extracted)")
        kind = _KINDS.get(typeflag)
        if kind is None:
            raise UnsafeArchive(f"member {name!r} has the unknown tar type {typeflag!r} (rule: "
                                f"only regular files, folders and links are extracted)")
        if kind == "file" and typeflag == b"\0" and name.endswith("/"):
            kind = "dir"  # pre-POSIX archives mark folders this way
        if name.endswith("/") and kind != "dir":
            raise UnsafeArchive(f"member {name!r} ends with '/' but is a {kind} (rule: a "
                                f"member's name must match its type)")
        if kind == "dir" and size:
            # GNU tar, bsdtar, Go and Python's tarfile read no data after a folder's header:
            # its size field is ignored (some writers put the folder's own st_size there),
            # and the next header follows at once. When what follows is not a header but
            # the block after `size` bytes is, those bytes were the folder's data, which
            # GNU tar and bsdtar step over (looking for the next header): skipped.
            ahead = stream.peek(BLOCK)
            if ahead and not _starts_a_member(ahead):  # nothing ahead: the archive's end
                stream.member = name
                stream.skip(size + (-size) % BLOCK)
            size = 0
        if kind != "file" and size:
            raise UnsafeArchive(f"member {name!r} is a {kind} that carries {size:,} bytes of "
                                f"data (rule: links and folders carry none)")
        stream.member = name
        yield _Member(name=name, kind=kind, parts=_member_parts(name, name), mode=mode & 0o777,
                      mtime=mtime, size=size, linkname=linkname, sparse=sparse)
        pax, long_name, long_link, in_order = {}, None, None, []


# ---------------------------------------------------------------- validate: every member --
def _member_parts(name, rule_subject):
    if "\0" in name:
        raise UnsafeArchive(f"member {rule_subject!r} has a NUL byte in its name (rule: "
                            f"names are plain paths)")
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in name.split("/")):
        raise UnsafeArchive(f"member {rule_subject[:300]!r} has a name part longer than "
                            f"{MAX_NAME_BYTES} bytes (rule: names every filesystem can hold)")
    if name.startswith("/"):
        raise UnsafeArchive(f"member {rule_subject!r} has an absolute path (rule: every "
                            f"member must stay inside the destination)")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"member {rule_subject!r} has a '..' component (rule: every "
                            f"member must stay inside the destination)")
    return parts


def _below(target, folder):
    """The components of the absolute path target below folder (given as it is named, or
    by its real path), or None when target is not inside it. A target with '..' is never
    inside: what '..' means depends on links the path goes through."""
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if not target.startswith("/") or ".." in parts:
        return None
    for root in dict.fromkeys((os.path.abspath(folder), os.path.realpath(folder))):
        base = [p for p in root.split("/") if p]
        if parts[:len(base)] == base:
            return tuple(parts[len(base):])
    return None


def _relative_target(start, target):
    """The relative link text from the folder start to target (both components below one
    root), the way `ln -r` writes it."""
    common = 0
    while common < min(len(start), len(target)) and start[common] == target[common]:
        common += 1
    return "/".join([".."] * (len(start) - common) + list(target[common:])) or "."


class _TreeModel:
    """The tree the archive has built so far, so each member is judged against it.

    Rules: no member is written through a symlink; nothing replaces an earlier member of a
    different kind (or any symlink); every symlink must resolve inside the root, and may not
    climb ('..') out of a part of its target that does not exist yet, since a later member
    could make that part a symlink; hard links point at regular files extracted earlier.
    """

    def __init__(self):
        self.kinds = {(): "dir"}
        self.links = {}

    def check_parents(self, parts, name):
        for i in range(1, len(parts)):
            kind = self.kinds.get(parts[:i])
            if kind == "symlink":
                raise UnsafeArchive(f"member {name!r} would be written through the symlink "
                                    f"{'/'.join(parts[:i])!r} (rule: nothing is extracted "
                                    f"through a link)")
            if kind in ("file", "hardlink"):
                raise UnsafeArchive(f"member {name!r} lies below the file "
                                    f"{'/'.join(parts[:i])!r} (rule: a member's parents "
                                    f"must be folders)")

    def _resolve(self, start, target, name, depth=0):
        """Where a symlink at start/... pointing at target lands, as components below root."""
        if depth > MAX_LINK_DEPTH:
            raise UnsafeArchive(f"member {name!r}: its symlink chain is longer than "
                                f"{MAX_LINK_DEPTH} links (rule: links must resolve)")
        if target.startswith("/"):
            raise UnsafeArchive(f"member {name!r} is a symlink to the absolute path {target!r} "
                                f"(rule: links must stay inside the destination)")
        here, missing = list(start), False
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if missing:
                    raise UnsafeArchive(f"member {name!r} is a symlink to {target!r}, which "
                                        f"climbs out of a path that does not exist yet (rule: "
                                        f"links must stay inside the destination)")
                if not here:
                    raise UnsafeArchive(f"member {name!r} is a symlink to {target!r}, which "
                                        f"points outside the destination (rule: links must "
                                        f"stay inside the destination)")
                here.pop()
                continue
            here.append(part)
            kind = self.kinds.get(tuple(here))
            if kind == "symlink" and not missing:
                linked = self.links[tuple(here)]
                if linked is None:  # an absolute link, made relative once the layout is known
                    missing = True
                else:
                    here = list(self._resolve(tuple(here[:-1]), linked, name, depth + 1))
            elif kind is None:
                missing = True
        return tuple(here)

    def admit(self, member, inside=None):
        """inside: for a symlink to an absolute path in the destination, that path's
        components below it (the link is judged and written once the layout is known)."""
        parts, name = member.parts, member.name
        if not parts:
            if member.kind == "dir":
                return
            raise UnsafeArchive(f"member {name!r} has an empty name (rule: every member "
                                f"names a path inside the destination)")
        self.check_parents(parts, name)
        earlier = self.kinds.get(parts)
        kind = "file" if member.kind == "hardlink" else member.kind
        if earlier is not None and not (earlier == kind and kind in ("file", "dir")):
            raise UnsafeArchive(f"member {name!r} replaces an earlier {earlier} of the same "
                                f"name with a {member.kind} (rule: members may not change "
                                f"what an earlier member made)")
        if "\0" in member.linkname:
            raise UnsafeArchive(f"member {name!r} has a NUL byte in its link target (rule: "
                                f"names are plain paths)")
        if member.kind in ("symlink", "hardlink") and not member.linkname:
            raise UnsafeArchive(f"member {name!r} is a link with an empty target (rule: "
                                f"links must resolve inside the destination)")
        if len(os.fsencode(member.linkname)) > MAX_PATH_BYTES:
            raise UnsafeArchive(f"member {name!r} is a link to a path of "
                                f"{len(os.fsencode(member.linkname)):,} bytes (rule: paths "
                                f"every filesystem can hold, {MAX_PATH_BYTES:,} bytes)")
        if member.kind == "symlink" and inside is not None:
            self.links[parts] = None  # see _Extraction.install_absolute_links
        elif member.kind == "symlink":
            self._resolve(parts[:-1], member.linkname, name)
            self.links[parts] = member.linkname
        elif member.kind == "hardlink":
            target = _member_parts(member.linkname, name)
            self.check_parents(target, name)
            if self.kinds.get(target) != "file" or target == parts:
                raise UnsafeArchive(f"member {name!r} is a hard link to {member.linkname!r}, "
                                    f"which is not a regular file extracted before it (rule: "
                                    f"hard links point at files inside the archive)")
            member.linkname = "/".join(target)
        for i in range(1, len(parts)):
            self.kinds.setdefault(parts[:i], "dir")
        self.kinds[parts] = kind
        member.replaces = earlier is not None


def _check_inside(path, parts):
    """Belt and braces beside the tree model: each folder met for the first time is a
    real folder, not a link. Its parents were met before it, so the whole chain from
    root holds no link: one lstat per folder, where a realpath per folder would cost
    (depth x depth) lstats in a tree thousands of folders deep."""
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise UnsafeArchive(f"member {'/'.join(parts)!r} would be written outside the "
                            f"destination through {path!r} (rule: nothing is extracted "
                            f"through a link)")


def _manifest_entry(st, path):
    """A manifest entry: ["d", mode], ["f", size, mtime_ns, mode] or ["l", target]; None for
    anything else. Restore and save both build entries here, so their manifests compare."""
    if stat.S_ISDIR(st.st_mode):
        return ["d", stat.S_IMODE(st.st_mode)]
    if stat.S_ISREG(st.st_mode):
        return ["f", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)]
    if stat.S_ISLNK(st.st_mode):
        return ["l", os.readlink(path)]
    return None


def _scan(root, check=False):
    """{relative path: entry} for a tree; with check, refuse anything unsafe in it.

    Entries: ["d", mode], ["f", size, mtime_ns, mode], ["l", target]. This is the manifest
    kept in the marker and what local changes are judged by. With check it is also the last
    guard after extraction, whatever engine ran: only files, folders and links that resolve
    inside root, no setuid/setgid/sticky bits, everything owned by us.
    """
    entries, pending = {}, [""]
    real_root = os.path.realpath(root)
    uid = os.geteuid()
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(root, rel)) as listing:
            for entry in listing:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if path in MARKER_FILES:
                    continue
                st = entry.stat(follow_symlinks=False)
                entries[path] = _manifest_entry(st, entry.path) or ["?"]
                if stat.S_ISDIR(st.st_mode):
                    pending.append(path)
                elif stat.S_ISLNK(st.st_mode):
                    if check and not _is_within(os.path.realpath(entry.path), real_root):
                        raise UnsafeArchive(f"member {path!r} is a symlink to "
                                            f"{entries[path][1]!r}, which points outside the "
                                            f"destination (rule: links must stay inside it)")
                elif check and entries[path] == ["?"]:
                    raise UnsafeArchive(f"member {path!r} came out as a special file (rule: "
                                        f"only regular files, folders and links)")
                if check and not stat.S_ISLNK(st.st_mode):
                    if st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
                        raise UnsafeArchive(f"member {path!r} came out with a setuid, setgid "
                                            f"or sticky bit (rule: those bits are cleared)")
                if check and st.st_uid != uid:
                    raise UnsafeArchive(f"member {path!r} came out owned by uid {st.st_uid} "
                                        f"(rule: files belong to the user running the tool)")
    return entries


# -------------------------------------------------------------------- write: the writers --
class _SpaceGuard:
    """Tracks what the extraction will take, so a bomb fails before it fills the disk.

    With Drive's cache on the same disk, what the cache holds counts as free (the mount
    gives it back as the disk fills) and `in_cache` bytes stay set aside for the parts the
    mount still has to read.
    """

    def __init__(self, folder, reclaimable=0, in_cache=0):
        self.folder = folder
        self.free = _free_bytes(folder) + reclaimable
        self.in_cache = in_cache
        self.used = 0

    def left(self):
        return self.free - SPACE_MARGIN - self.in_cache - self.used

    def take(self, nbytes, what):
        need = nbytes + (-nbytes) % 4096 + 4096
        if need > self.left():
            raise self.refusal(what, nbytes)
        self.used += need

    def refusal(self, what, nbytes):
        cache = (f" and {_human(self.in_cache)} for Drive's local copy of the parts still "
                 f"to be read" if self.in_cache else "")
        return _no_space(_mount_point(self.folder), f"for {what}", f"it needs {_human(nbytes)}",
                         f"{_human(max(self.left(), 0))} is left (of {_human(self.free)} free "
                         f"when the restore began, keeping {_human(SPACE_MARGIN)} "
                         f"spare{cache})", "Free some space, or use --dest on a larger disk.")


class _PythonWriter:
    """Extracts validated members with plain os calls: the engine that works everywhere."""

    name = "python"

    def __init__(self, root, cache_shares_disk=False):
        self.root = root
        self.umask = os.umask(0)
        os.umask(self.umask)
        self.dirs = {}  # path -> (mode, mtime or None), applied once everything is written
        self.waits_for_cache = cache_shares_disk
        self.short_since = None

    def _wait_for_room(self, exc):
        """Drive's mount evicts closed files from its cache only as the disk fills: a write
        that finds the disk full waits (CACHE_WAIT at most) for the room to come back."""
        if not self.waits_for_cache or exc.errno not in NO_SPACE_ERRNOS:
            raise exc
        now = time.monotonic()
        self.short_since = self.short_since or now
        if now - self.short_since > CACHE_WAIT:
            raise exc
        time.sleep(0.05)

    def _path(self, parts):
        return os.path.join(self.root, *parts)

    def make_parents(self, parts):
        """The folders above parts, made as needed (their modes are set by finish)."""
        if self._path(parts[:-1]) in self.dirs:  # made with its own parents before
            return
        for i in range(1, len(parts)):
            path = self._path(parts[:i])
            if path not in self.dirs:
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                _check_inside(path, parts)
                self.dirs[path] = (0o777 & ~self.umask, None)

    def add(self, member, pieces):
        self.make_parents(member.parts)
        path = self._path(member.parts)
        if member.kind == "dir":
            if path not in self.dirs:
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                _check_inside(path, member.parts)
            self.dirs[path] = (member.mode, member.mtime)
            return
        if member.replaces:  # a repeated member: the later one wins, as in tar
            os.unlink(path)
        if member.kind == "symlink":
            os.symlink(member.linkname, path)
            if os.utime in os.supports_follow_symlinks:
                os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        elif member.kind == "hardlink":
            os.link(os.path.join(self.root, member.linkname), path, follow_symlinks=False)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | getattr(os, "O_CLOEXEC", 0), member.mode)
            try:
                if member.sparse:
                    self._write_sparse(fd, member.sparse, pieces)
                else:
                    for piece in pieces:
                        self.write_piece(fd, piece)
                if member.mode & ~self.umask != member.mode:
                    os.fchmod(fd, member.mode)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)

    def write_piece(self, fd, piece):
        """Write all of piece, waiting for Drive's cache to give room back if need be."""
        while piece:
            try:
                piece = piece[os.write(fd, piece):]
            except OSError as exc:
                self._wait_for_room(exc)
                continue
            if self.short_since:
                self.short_since = None

    def _write_sparse(self, fd, sparse, pieces):
        """Each stretch of data at its offset, the holes between them left unwritten (so
        they take no disk), then the file cut to its full size."""
        size, segments = sparse
        segments = iter(segments)
        left = 0
        for piece in pieces:
            while piece:
                if not left:
                    offset, left = next(segments)
                    os.lseek(fd, offset, os.SEEK_SET)
                stretch = piece[:left]
                self.write_piece(fd, stretch)
                left -= len(stretch)
                piece = piece[len(stretch):]
        os.ftruncate(fd, size)

    def settle(self):
        """Every member handed over is on disk already."""

    def forget(self, parts):
        """A folder is deleted (by a layer's list): a member that names it again makes it
        anew."""
        path = self._path(parts)
        for known in [p for p in self.dirs if p == path or p.startswith(path + os.sep)]:
            del self.dirs[known]

    def finish(self):
        for path in sorted(self.dirs, key=len, reverse=True):
            mode, mtime = self.dirs[path]
            if not os.path.isdir(path):  # deleted by a later layer
                continue
            os.chmod(path, mode)
            if mtime is not None:
                os.utime(path, (mtime, mtime))

    def abort(self):
        pass


def _gnu_tar():
    """GNU tar's path, or None. `tar` is BSD tar on macOS and where libarchive's bsdtar is
    the default (its options differ), so what --version says decides; Homebrew installs
    GNU tar as `gtar`."""
    import subprocess
    for name in ("tar", "gtar"):
        tar = shutil.which(name)
        if not tar:
            continue
        try:
            version = subprocess.run([tar, "--version"], capture_output=True, timeout=10,
                                     stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if b"(GNU tar)" in version:
            return tar
    return None


def _utime_text(mtime):
    """mtime as decimal seconds, to the nanosecond os.utime sets from it (the float's
    fraction times 1e9, rounded down), so both engines give a file the same time."""
    if isinstance(mtime, int):
        return str(mtime)
    fraction, whole = math.modf(mtime)
    nanoseconds = int(whole) * 10**9 + math.floor(fraction * 1e9)
    seconds, rest = divmod(abs(nanoseconds), 10**9)
    return f"{'-' if nanoseconds < 0 else ''}{seconds}.{rest:09d}"


def _pax_record(key, value):
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))  # the digits may add one more
    return b"%d" % length + body


def _ustar_block(name, typeflag, size, mode=0o644, mtime=0, linkname=b""):
    block = bytearray(BLOCK)
    block[_FIELD.name.start:len(name)] = name
    block[_FIELD.mode] = b"%07o\0" % mode
    block[_FIELD.ids] = b"0000000\x000000000\0"
    block[_FIELD.size] = b"%011o\0" % size
    block[_FIELD.mtime] = b"%011o\0" % mtime
    block[_FIELD.typeflag] = typeflag
    block[_FIELD.linkname.start:_FIELD.linkname.start + len(linkname)] = linkname
    block[_FIELD.magic_and_version] = b"ustar\x0000"
    block[_FIELD.checksum] = b"%06o\0 " % (sum(block) + 8 * 32)
    return bytes(block)


_TYPEFLAGS = {"file": b"0", "dir": b"5", "symlink": b"2", "hardlink": b"1"}


def _gnu_tar_header(member):
    """The header blocks GNU tar is handed for a member, written afresh from what our parser
    read and the checks judged: name, type, mode, time, size, link target, sparse map,
    nothing else (a sparse member's map follows, as the start of its data).

    Never the archive's own blocks: GNU tar refuses some records our parser reads (a uid or
    atime out of range, a base-64 number) and would read others we ignore, so the same
    archive could end differently with each engine. Rebuilt, both engines extract the same
    validated members, and whatever else a header holds is ignored by both.
    """
    name = os.fsencode("/".join(member.parts) or ".") + (b"/" if member.kind == "dir" else b"")
    link = os.fsencode(member.linkname)
    records, sparse_map, stored = [], b"", member.size
    if member.sparse:  # as GNU's sparse format 1.0: the map in decimal lines ahead of the data
        realsize, segments = member.sparse
        if not segments or sum(segments[-1]) < realsize:
            segments = segments + [(realsize, 0)]  # GNU tar's own end mark: the file's size
        records += [_pax_record(b"GNU.sparse.major", b"1"),
                    _pax_record(b"GNU.sparse.minor", b"0"),
                    _pax_record(b"GNU.sparse.name", name),
                    _pax_record(b"GNU.sparse.realsize", b"%d" % realsize)]
        sparse_map = b"".join([b"%d\n" % len(segments)]
                              + [b"%d\n%d\n" % segment for segment in segments])
        sparse_map += bytes(-len(sparse_map) % BLOCK)
        stored += len(sparse_map)
    elif len(name) > 100:
        records.append(_pax_record(b"path", name))
    if len(link) > 100:
        records.append(_pax_record(b"linkpath", link))
    size = stored if stored < 8**11 else 0
    if size != stored:
        records.append(_pax_record(b"size", b"%d" % stored))
    mtime = member.mtime if isinstance(member.mtime, int) and 0 <= member.mtime < 8**11 else 0
    if mtime != member.mtime:
        records.append(_pax_record(b"mtime", _utime_text(member.mtime).encode()))
    header = _ustar_block(name[:100], _TYPEFLAGS[member.kind], size, member.mode, mtime,
                          link[:100])
    if not records:
        return header
    payload = b"".join(records)
    return (_ustar_block(b"././@PaxHeader", b"x", len(payload)) + payload
            + bytes(-len(payload) % BLOCK) + header + sparse_map)


class _GnuTarWriter:
    """Hands validated members to GNU tar, which creates the files.

    tar sees only headers we wrote for members we have parsed and checked (setuid bits
    already cleared), followed by our own end-of-archive marker, so its defaults as root
    (device files, owners, absolute links) never come into play; --no-same-owner makes
    files ours.
    """

    name = "tar"

    def __init__(self, root):
        self._root = root
        self._start()

    def _start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("TAR_OPTIONS", "POSIXLY_CORRECT")}
        env["LC_ALL"] = "C"
        import subprocess
        import tempfile
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [_gnu_tar(), "--extract", "--file=-", f"--directory={self._root}",
             "--no-same-owner", "--preserve-permissions", "--warning=no-timestamp",
             "--warning=no-unknown-keyword"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors, env=env)
        self._pipe = self._process.stdin

    def settle(self):
        """tar may still be writing what it was handed: let it finish, then go on with a new
        tar (a layer's list of deleted paths must not race the members before it)."""
        self.finish()
        self._start()

    def forget(self, parts):
        """tar remembers nothing between runs."""

    def _write(self, data):
        try:
            self._pipe.write(data)
        except BrokenPipeError:
            self._fail()

    def add(self, member, pieces):
        self._write(_gnu_tar_header(member))
        for piece in pieces:
            self._write(piece)
        if member.size % BLOCK:
            self._write(bytes(BLOCK - member.size % BLOCK))

    def finish(self):
        self._write(bytes(2 * BLOCK))
        try:
            self._pipe.close()
        except BrokenPipeError:
            pass
        if self._process.wait():
            self._fail()
        self._errors.close()

    def _fail(self):
        self._process.wait()
        self._errors.seek(0)
        message = self._errors.read().decode("utf-8", "replace").strip()
        if "No space left" in message or "Disk quota" in message:
            raise OSError(errno.ENOSPC, f"GNU tar: {message.splitlines()[0]}")
        raise BootstrapError(f"GNU tar failed to extract (exit {self._process.returncode}): "
                             f"{message}. Try --engine python.")

    def abort(self):
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        try:
            self._pipe.close()
        except BrokenPipeError:
            pass
        self._errors.close()


def available_engines():
    """The extraction engines this machine can run, best first is decided by 'auto'."""
    return ["python", "tar"] if _gnu_tar() else ["python"]


def _pick_engine(engine):
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}.")
    if engine == "tar" and not _gnu_tar():
        raise UsageError("--engine tar needs GNU tar on the PATH, and there is none. Use "
                         "--engine python (or auto).")
    if engine == "auto":
        return "python"
    return engine


# ------------------------------------------------------------------ extraction: one pass --
class _Extraction:
    """What the members of one restore (a base archive and its layers) have built so far."""

    def __init__(self, root, space, progress, dest):
        self.root, self.space, self.progress = root, space, progress
        self.dest = dest  # where the tree is installed: absolute links are judged against it
        self.tree = _TreeModel()
        self.largest = None  # the most one member of the archive being read can hold
        self.archive_size = 0  # of the archive being read, as stored (compressed)
        self.files = self.total = 0
        self.tops, self.dotted = set(), False
        self.absolute_links = {}  # parts -> (member, components below dest), written last
        self.skipped_metadata = 0  # macOS metadata entries of zip archives, not extracted
        self.unterminated = False  # a tar that ended without its end-of-archive marker
        # A whole path holds at most MAX_PATH_BYTES: what a member's name may take below the
        # staging root (longer than dest's own path, so what fits here fits there too).
        self.path_room = MAX_PATH_BYTES - len(os.fsencode(root)) - 1
        self.matches = None  # restore --only: which paths to write (see passes)
        self.skipped_files = self.skipped_bytes = 0  # what --only left out

    def passes(self, member):
        """False for a member restore --only leaves out: not read into the tree, not written.
        Where the archive's top folder is not known yet (see content_root) a path passes
        with or without its first component; what passed wrongly goes at the end
        (_only_prune). Folders always pass (the empty ones go at the end); a hard link
        only with the file it links to."""
        if self.matches is None or member.kind == "dir":
            return True
        path = "/".join(member.parts)
        passes = self.matches(path) or (len(member.parts) > 1 and
                                        self.matches("/".join(member.parts[1:])))
        if passes and member.kind == "hardlink":
            try:
                passes = self.tree.kinds.get(_member_parts(member.linkname,
                                                           member.linkname)) == "file"
            except UnsafeArchive:
                passes = True  # admit judges it
        if not passes:
            self.skipped_files += 1
            self.skipped_bytes += member.size
        return passes

    def admit(self, member, raw_name):
        """Judge member against the tree so far; False when it is not to be written now (a
        symlink to an absolute path inside dest, written by install_absolute_links)."""
        length = len(os.fsencode("/".join(member.parts)))
        if length > self.path_room:
            raise UnsafeArchive(f"member {member.name[:300]!r} has a path of {length:,} bytes; "
                                f"below {self.root} that passes the {MAX_PATH_BYTES:,} bytes "
                                f"a whole path may have (rule: paths every filesystem can "
                                f"hold)")
        inside = None
        if member.kind == "symlink" and member.linkname.startswith("/"):
            inside = _below(member.linkname, self.dest)
        self.tree.admit(member, inside)
        if member.parts:
            self.tops.add(member.parts[0])
        self.dotted = self.dotted or raw_name.startswith("./") or raw_name == "."
        if self.largest is not None and member.size > self.largest:
            if self.largest == self.archive_size:  # a plain tar: its data would pass its end
                raise _Truncated(f"the archive ends in the middle of member {member.name!r}, "
                                 f"which declares {member.size:,} bytes, more than the whole "
                                 f"archive holds ({self.archive_size:,} bytes): it is "
                                 f"truncated (a save or upload that was cut off), or that "
                                 f"member's header is damaged.")
            raise CorruptArchive(f"member {member.name!r} declares {member.size:,} bytes, more "
                                 f"than the whole archive could hold: its header is damaged")
        # a sparse file takes the disk its data takes (a block more per stretch at most)
        stretches = len(member.sparse[1]) if member.sparse else 0
        self.space.take(member.size + 4096 * stretches, f"member {member.name!r}")
        self.files += member.kind != "dir"
        self.total += member.size
        if inside is not None:
            self.absolute_links[member.parts] = (member, inside)
            return False
        return True

    def install_absolute_links(self):
        """Write the links to absolute paths inside dest, relative (every engine is done).

        Their text depends on where the link lands in dest, so on the layout rule, known
        only once every member is read. Each is judged by the tree model like any link."""
        unwrapped = self.content_root() != self.root
        for parts, (member, inside) in self.absolute_links.items():
            target = (parts[:1] if unwrapped else ()) + inside
            member.linkname = _relative_target(parts[:-1], target)
            self.tree._resolve(parts[:-1], member.linkname, member.name)
            self.tree.links[parts] = member.linkname
        for parts, (member, _) in self.absolute_links.items():
            path = os.path.join(self.root, *parts)
            parent = existing = os.path.dirname(path)
            while not os.path.isdir(existing):  # parents no member named: made here
                existing = os.path.dirname(existing)
            st = os.stat(existing)  # its mode and time were set already: kept as they are
            writable = stat.S_IMODE(st.st_mode) | stat.S_IWUSR | stat.S_IXUSR
            if writable != stat.S_IMODE(st.st_mode):
                os.chmod(existing, writable)
            try:
                os.makedirs(parent, exist_ok=True)
                os.symlink(member.linkname, path)
            finally:
                if writable != stat.S_IMODE(st.st_mode):
                    os.chmod(existing, stat.S_IMODE(st.st_mode))
                os.utime(existing, ns=(st.st_atime_ns, st.st_mtime_ns))
            if os.utime in os.supports_follow_symlinks:
                os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def note(self, verified):
        """What the result's summary adds about what was read, or None. verified: the
        archive's sha256 was checked (then a missing end marker cannot hide a cut)."""
        notes = []
        if self.skipped_metadata:
            notes.append(f"skipped {self.skipped_metadata} macOS metadata entries (__MACOSX/, "
                         f"._name)")
        if self.unterminated and not verified:
            notes.append("the tar data ends without its end-of-archive marker (two zero "
                         "blocks), as some writers leave it (Go's archive/tar without Close); "
                         "with no checksum to check, it may also have been cut short at a "
                         "member's end")
        return "; ".join(notes) or None

    def holds_nothing(self):
        """True when installing would give an empty folder (see README, Layout rule)."""
        made = [parts for parts in self.tree.kinds if parts]
        return not made or (made == [made[0][:1]] and self.content_root() != self.root)

    def delete(self, paths, forget):
        """Apply a layer's list of deleted paths (validated like member names); forget(parts):
        the writer drops what it remembers of a deleted folder."""
        for path in paths:
            parts = _member_parts(path, path)
            self.tree.check_parents(parts, path)
            kind = self.tree.kinds.get(parts)
            if not parts or kind is None:
                continue
            forget(parts)
            full = os.path.join(self.root, *parts)
            if kind == "dir":
                _remove_tree(full)
            elif parts not in self.absolute_links:  # not written yet
                os.unlink(full)
            for table in (self.tree.kinds, self.tree.links, self.absolute_links):
                for key in [k for k in table if k[:len(parts)] == parts]:
                    del table[key]

    def content_root(self):
        """The folder to install (see README, Layout rule): a lone top-level folder is
        unwrapped when no name starts with './' (`tar czf a.tgz _assets`), or whatever the
        names when it bears the destination's name (`tar czf a.tgz ./_assets`)."""
        if len(self.tops) == 1:
            top = next(iter(self.tops))
            if self.tree.kinds.get((top,)) == "dir" and (
                    not self.dotted or top == os.path.basename(self.dest)):
                return os.path.join(self.root, top)
        return self.root


def _stream_tar(data, extraction, writer, counter):
    """Validate and extract every member of one tar stream."""
    stream = _TarStream(data)
    for member in _tar_members(stream):
        if member.parts == (DELETED_NAME,) and member.kind == "file":
            if member.size > MAX_META_SIZE * 64:
                raise UnsafeArchive(f"member {member.name!r} is {member.size:,} bytes (rule: "
                                    f"a list of deleted paths stays under 64 MiB)")
            listing = b"".join(stream.pieces(member.size))
            stream.skip((-member.size) % BLOCK)
            try:
                paths = json.loads(listing.decode("utf-8", "surrogateescape"))
            except (ValueError, RecursionError):
                raise CorruptArchive(f"member {member.name!r} is not a JSON list of "
                                     f"paths") from None
            writer.settle()  # what the writer was handed is on disk before anything goes
            try:
                extraction.delete(paths, writer.forget)
            except (ValueError, TypeError, AttributeError, RecursionError):
                raise CorruptArchive(f"member {member.name!r} is not a JSON list of "
                                     f"paths") from None
            continue
        if not extraction.passes(member):
            stream.skip(member.size + (-member.size) % BLOCK)
            continue
        try:
            admitted = extraction.admit(member, member.name)
        except NoSpace:
            if extraction.largest is not None or \
                    member.size <= extraction.archive_size * MAX_EXPANSION["gz"]:
                raise
            # bzip2, xz and zstd shrink a run of zeros without end, so a member this far
            # beyond what the archive plausibly holds is real or a damaged size field: its
            # data decides (read, not written; a damaged one ends early, exit 7)
            stream.skip(max(0, min(member.size, extraction.space.left())))
            raise
        if admitted:
            writer.add(member, stream.pieces(member.size))
        stream.skip((-member.size) % BLOCK)
        extraction.progress.update(counter.bytes, extraction.files)
    stream.drain(MAX_TRAILING)
    extraction.unterminated = extraction.unterminated or stream.unterminated


def _zip_name(info):
    """A zip member's name as a path with '/' separators (some Windows tools write '\\')."""
    name = info.filename
    if not info.flag_bits & 0x800:
        # Info-ZIP on Linux and macOS writes UTF-8 names without setting the UTF-8 flag.
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return name.replace("\\", "/")


def _is_macos_metadata(archive, info, name):
    """What macOS Finder's "Compress" adds beside the real files: the __MACOSX/ folder and
    AppleDouble `._name` files (recognised by their magic number)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if parts[:1] == ["__MACOSX"]:
        return True
    if not parts or not parts[-1].startswith("._") or name.endswith("/") \
            or info.file_size < 4 or info.flag_bits & 0x1:
        return False
    with _zip_damaged(archive.open, info) as data:
        return _zip_damaged(data.read, 4) == b"\x00\x05\x16\x07"


def _zip_member(info, name):
    """A zip entry as a _Member, or the error its encryption or file type calls for
    (a member with no file-type bits is a regular file)."""
    mode = info.external_attr >> 16
    if not name:
        raise UnsafeArchive("a member of the zip archive has an empty name (rule: every "
                            "member names a path inside the destination)")
    if info.flag_bits & 0x41:  # bit 0: encrypted, bit 6: strong encryption
        raise Unsupported(f"member {name!r} of the zip archive is encrypted; this tool does "
                          f"not take passwords. Re-create the archive without encryption.")
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif name.endswith("/"):
        kind = "dir"
    elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits: a plain file
        raise UnsafeArchive(f"member {name!r} is a special file (rule: only regular files, "
                            f"folders and links are extracted)")
    else:
        kind = "file"
    permissions = mode & 0o777 or (0o755 if kind == "dir" else 0o644)
    return _Member(name=name, kind=kind, parts=_member_parts(name, name), mode=permissions,
                   mtime=time.mktime(info.date_time + (0, 0, -1)),
                   size=0 if kind == "dir" else info.file_size)


def _zip_damaged(action, *args):
    """action(*args) on the spooled zip: what fails while it is read is the archive's
    structure or data (an offset out of the file, a bzip2 or lzma stream that does not
    decompress), not this machine's disk."""
    import lzma
    try:
        return action(*args)
    except (OSError, lzma.LZMAError) as exc:
        raise CorruptArchive(f"the zip archive is damaged ({exc})") from None


def _extract_zip(spool, extraction, writer, counter):
    """Zip keeps its index at the end, so it is read from a local spool of the download."""
    import zipfile
    with open(spool, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and not zipfile.is_zipfile(spool):
        # taken for a zip after bytes of something else (_detect_format), but no zip
        # directory ends it
        with open(spool, "rb") as f:
            raise _not_an_archive("the file", f.read(8))
    try:
        with _zip_damaged(zipfile.ZipFile, spool) as archive:
            infos = archive.infolist()
            for info in infos:
                if info.file_size > MAX_FILE_SIZE or (extraction.largest is not None
                                                      and info.file_size > extraction.largest):
                    raise CorruptArchive(f"member {info.filename!r} declares "
                                         f"{info.file_size:,} bytes, more than the whole "
                                         f"archive could hold: its directory is damaged")
            extraction.space.take(sum(i.file_size for i in infos), "the zip archive's contents")
            for info in infos:
                name = _zip_name(info)
                if _is_macos_metadata(archive, info, name):
                    extraction.skipped_metadata += 1
                    continue
                member = _zip_member(info, name)
                if member.kind == "symlink":
                    member.linkname = _zip_damaged(archive.read, info).decode(
                        "utf-8", "surrogateescape")
                    member.size = 0
                if not extraction.passes(member) or not extraction.admit(member, name):
                    continue
                if member.kind == "file":
                    with _zip_damaged(archive.open, info) as data:
                        writer.add(member, iter(lambda: _zip_damaged(data.read, CHUNK), b""))
                else:
                    writer.add(member, ())
                extraction.progress.update(counter.bytes, extraction.files)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptArchive(f"the zip archive is damaged ({exc})") from None
    except NotImplementedError as exc:
        raise Unsupported(f"the zip archive uses a compression method Python cannot read "
                          f"({exc}). Re-create it with ordinary deflate compression.") from None


def _with_context(exc, text):
    exc.args = (f"{text}{exc}",)
    return exc


# What _extract_one read: the archive's format and sha256, the bytes read, and the writer
# to go on with (a zip replaces a GNU tar writer with the python one).
_Extracted = collections.namedtuple("_Extracted", "format sha256 read writer")


def _extract_one(source, extraction, writer, expected, checksum_source, staging):
    """One archive of the chain, read once: hash, decompress and extract overlap."""
    hasher, counter = hashlib.sha256(), _Counter()
    raw = _Stage(lambda: _hashing(source, hasher, counter), "read", READ_AHEAD_DEPTH)
    stages = [raw]
    try:
        head = b""
        for piece in raw:
            head += piece
            if len(head) >= BLOCK:
                break
        fmt = _detect_format(head, source.path)
        expansion = MAX_EXPANSION.get("gz" if fmt == "zip" else fmt)
        extraction.largest = source.size * expansion if expansion and source.size > 0 else None
        extraction.archive_size = source.size
        chunks = itertools.chain([head], raw)
        if fmt == "zip":
            if not isinstance(writer, _PythonWriter):
                writer.finish()  # zip is always extracted by the python engine
                writer = _PythonWriter(extraction.root)
            spool = os.path.join(staging, "archive.zip")
            with open(spool, "wb") as f:
                for piece in chunks:
                    f.write(piece)
                    extraction.progress.update(counter.bytes, 0)
            _check_hash(hasher, expected, checksum_source, source)
            extraction.space.free = _free_bytes(staging)
            _extract_zip(spool, extraction, writer, counter)
            os.unlink(spool)
        else:
            data = _decompressed(chunks, fmt, source.path)
            if fmt != "tar":
                data = _Stage(lambda: data, "decompress")
                stages.append(data)
            _stream_tar(data, extraction, writer, counter)
        extraction.progress.update(counter.bytes, extraction.files, force=True)
        _check_hash(hasher, expected, checksum_source, source)
    except CorruptArchive as exc:
        if expected:  # a hash mismatch explains a damaged file better than where it broke
            for stage in reversed(stages):
                stage.close()
            for _ in _hashing(source, hasher, counter, counter.bytes):
                pass
            _check_hash(hasher, expected, checksum_source, source)
        if isinstance(exc, _Truncated):
            older = _older_version_flag(getattr(source, "archive", None),
                                        getattr(source, "version", 0))
            exc.args = (f"{exc} Nothing was changed. Fix: upload the complete file again (or "
                        f"save again from a complete copy of the folder)"
                        + (f", or restore the previous version with {older}." if older
                           else "."),)
        raise _with_context(exc, f"Cannot restore {source.path}: ") from None
    except UnsafeArchive as exc:
        raise _with_context(exc, f"Refusing to restore {source.path}: ") from None
    finally:
        for stage in reversed(stages):
            stage.close()
    return _Extracted(fmt, hasher.hexdigest(), counter.bytes, writer)


def _check_hash(hasher, expected, checksum_source, source):
    if expected and hasher.hexdigest() not in expected:
        origin = "--sha256" if checksum_source == "--sha256" else "the .sha256 file"
        older = _older_version_flag(getattr(source, "archive", None),
                                    getattr(source, "version", 0))
        raise ChecksumMismatch(
            f"{source.path} does not match its checksum: expected sha256 "
            f"{' or '.join(sorted(expected))} (from {origin}), got {hasher.hexdigest()}. The "
            f"file is damaged or is not the one that was saved; nothing was changed. "
            + (f"Restore the previous version ({older}), or save again." if older else
               "Save again, or upload the file that was saved."))


# -------------------------------------------------------- the destination and its marker --
def _read_marker(dest):
    try:
        with open(os.path.join(dest, MARKER_NAME), encoding="utf-8") as f:
            marker = json.load(f)
        return marker if isinstance(marker, dict) and "manifest" in marker else None
    except (OSError, ValueError):
        return None


def _local_changes(dest, manifest):
    """What differs between dest and the manifest recorded when we installed it."""
    current = _scan(dest)
    changes = []
    for path in sorted(current):
        if path not in manifest:
            changes.append(f"added {path}")
        elif current[path] != manifest[path]:
            changes.append(f"modified {path}")
    changes += [f"deleted {path}" for path in sorted(manifest) if path not in current]
    return changes


def _inspect_dest(dest):
    """("absent" | "empty" | "ours" | "incomplete" | "foreign", marker, local changes);
    incomplete: a progressive restore that is running or was interrupted."""
    if not os.path.lexists(dest):
        return "absent", None, []
    if not os.path.isdir(dest) or os.path.islink(dest):
        return "foreign", None, [f"{dest} is not a folder"]
    marker = _read_marker(dest)
    if marker is not None and marker.get("state"):
        return "incomplete", marker, []
    if marker is None:
        with os.scandir(dest) as listing:
            if next(listing, None) is None:
                return "empty", None, []
        return "foreign", None, ["it was not made by bootstrap_assets (no marker file)"]
    return "ours", marker, _local_changes(dest, marker["manifest"])


def _changes_text(changes):
    shown = "; ".join(changes[:8])
    return shown + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")


def _not_writable(folder, exc, fix):
    return BootstrapError(f"Cannot write in {folder}: the folder is not writable "
                          f"({exc.strerror}). Nothing was changed. Fix: {fix}.")


class _NewFolders:
    """Creates a folder and its missing parents; when the run then fails, removes the ones
    it created (those still empty), so that a failed run leaves the machine as it was."""

    def __init__(self, path, fix):
        self.path, self.fix = path, fix
        self.created = []

    def __enter__(self):
        """Create the folder and its missing parents, remembering which; a file in the way or
        a folder that is not writable is an error that names it, with nothing left made."""
        missing, folder = [], self.path
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
            except FileExistsError:
                if os.path.isdir(folder):  # another run made it meanwhile
                    continue
                self._remove_created()
                raise UsageError(f"{folder} is a file, not a folder, so {self.path} cannot "
                                 f"be created. Nothing was changed. Fix: "
                                 f"{self.fix}.") from None
            except OSError as exc:
                self._remove_created()
                if exc.errno in NOT_WRITABLE_ERRNOS:
                    raise _not_writable(os.path.dirname(folder), exc, self.fix) from None
                raise
            self.created.append(folder)
        return self

    def __exit__(self, failed, *_):
        if failed is not None:
            self._remove_created()

    def _remove_created(self):
        for folder in reversed(self.created):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (someone else's now), or gone: leave the rest
                break
        self.created = []


class _Lock:
    """An exclusive lock beside the destination, so two runs never interleave. fix: what
    to do when that folder is not writable."""

    def __init__(self, path, timeout, what, fix="pass --dest with a folder in a writable place",
                 background=False):
        self.path, self.timeout, self.what, self.fix = path, timeout, what, fix
        self.purpose = BACKGROUND_HOLDER if background else ""
        self.fd = None

    def __enter__(self):
        """Take the lock, retrying for `timeout` seconds (for as long as it takes while the
        holder is a background restore); then write who holds it into the file, for the
        message of the run that has to wait. A link or folder planted under the lock's name
        is refused, never followed."""
        deadline = time.monotonic() + self.timeout
        said = False
        while True:
            try:
                # O_NOFOLLOW: a link planted at the lock's name must not make us truncate
                # and overwrite the file it points to
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                                  | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                if exc.errno in NOT_WRITABLE_ERRNOS:
                    raise _not_writable(os.path.dirname(self.path), exc, self.fix) from None
                if exc.errno in (errno.ELOOP, errno.EISDIR):
                    raise BootstrapError(
                        f"{self.path} is in the way: this tool keeps its lock file under that "
                        f"name, and there is {_kind_of(self.path)} there, not made by it. "
                        f"Nothing was changed. Fix: move {self.path} away, then run this "
                        f"again.") from None
                raise
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 4096, 0).decode("utf-8", "replace").strip()
                if BACKGROUND_HOLDER in holder.partition(":")[0]:
                    # the notebook started it to work meanwhile: what comes next waits for it
                    if not said:
                        sys.stderr.write(f"waiting for the background restore of {self.what} "
                                         f"to finish ({holder})\n")
                        said = True
                    deadline = time.monotonic() + self.timeout
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise Locked(f"Another run is working on {self.what} (lock {self.path} is "
                                 f"held by {holder or 'an unknown process'}). Wait for it to "
                                 f"finish, then run this again.") from None
                os.close(self.fd)
                time.sleep(0.1)
                continue
            # The holder before us removes the file as it lets go: a lock taken on a file
            # that is no longer at self.path locks nothing, so take the new one.
            try:
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {os.uname().nodename}{self.purpose}: "
                           f"{' '.join(sys.argv)[:200]} since {time.strftime('%H:%M:%S')}"
                  .encode(), 0)
        return self

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)  # a run leaves nothing behind; see __enter__ for the race
        except OSError:
            pass
        finally:
            os.close(self.fd)  # closing releases the flock


def _lock_path(dest):
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.lock")


def _kind_of(path):
    st = os.lstat(path)
    return ("a symlink" if stat.S_ISLNK(st.st_mode) else "a folder" if
            stat.S_ISDIR(st.st_mode) else "a special file")


def _staging_prefix(dest):
    return f".{os.path.basename(dest)}.staging-"


def _clean_stale_staging(dest, keep):
    """Remove staging folders left by runs that died (we hold the lock: none is live).
    Only folders: a file or a symlink under such a name was not made by a run of ours."""
    parent, prefix = os.path.dirname(dest), _staging_prefix(dest)
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(prefix) and path != keep and os.path.isdir(path) and \
                not os.path.islink(path):
            _remove_tree(path)


def _check_dest_is_folder(dest):
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UsageError(
            f"The destination {dest} is {'a file' if os.path.isfile(dest) else 'there'}, "
            f"not a folder: --dest (or {ENV_DEST}, or DEST in the CONFIG block) names the "
            f"folder to restore into, created if missing. Nothing was changed. Fix: pass "
            f"--dest with that folder's path (the archive itself goes to --archive), or move "
            f"the file {dest} away.")


def _restore_space_plan(source, parent, cache, files_bytes=None):
    """(reclaimable, in_cache): refuse up front a restore that cannot fit on parent's disk.

    The extracted files take at least the archive's size (files_bytes, when the restore
    judges its files' sizes itself: restore --only by ranges). When Drive's cache shares that
    disk it also holds what is being read: a single file whole until it is closed, parts
    about two at a time. What the cache holds already comes back as the disk fills.
    """
    free = _free_bytes(parent)
    reclaimable = cache.reclaimable() if cache else 0
    in_cache = 0
    if cache:
        sizes = [size for _, size, _ in getattr(source, "files", [])] or [source.size]
        in_cache = source.size if len(sizes) == 1 else 2 * max(sizes)
    need = (source.size if files_bytes is None else files_bytes) + in_cache + SPACE_MARGIN
    if need <= free + reclaimable:
        return reclaimable, in_cache
    where = _mount_point(parent)
    doing = f"to restore {source.path}"
    if not cache:
        raise _no_space(where, doing, f"it needs the archive's size ({_human(source.size)}) "
                        f"or more for the files, plus {_human(SPACE_MARGIN)} this tool always "
                        f"leaves free", f"and {_human(free)} is free",
                        "Free some space, or use --dest on a larger disk.")
    fix = "Drive keeps a local copy of a file on this disk for as long as it is open"
    if len(getattr(source, "files", ())) == 1:
        fix += (f", so an archive read as one file needs its size twice. Fix: split it into "
                f"parts once, in place on Drive: python bootstrap_assets.py split --archive "
                f"'{source.path}' (then a restore needs about two parts of room beyond the "
                f"files), or use --dest on a larger disk.")
    else:
        fix += ". Fix: free some space, use --dest on a larger disk, or save with a smaller "\
               "--part-size."
    raise _no_space(where, doing, f"it needs about {_human(need)} there ({_human(source.size)} "
                    f"or more of extracted files, plus {_human(in_cache)} for Drive's local "
                    f"copy of what is being read)", f"and {_human(free)} is free, with "
                    f"{_human(reclaimable)} more held by Drive's cache ({cache.folder})", fix)


def _cache_note(in_cache):
    return (f"; Drive's cache shares this disk and did not give back room for "
            f"{CACHE_WAIT:g} s" if in_cache else "")


def _write_marker(folder, fields):
    marker = {"tool": f"bootstrap_assets {VERSION}",
              "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    marker.update(fields)
    path = os.path.join(folder, MARKER_NAME)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(marker))  # dumps has a C encoder; dump encodes in Python
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------- install --
def _install(finished, dest, staging, force):
    """Rename the finished folder to dest, unless dest changed while it was being made.
    The folder it replaces goes into staging (removed with it) if it is ours, or aside to
    dest.old-<timestamp> under force; return that path, or None."""
    moved_aside = None
    fresh_state, _, fresh_changes = _inspect_dest(dest)
    if fresh_state == "foreign" or fresh_changes:
        if not force:
            raise DestinationChanged(
                f"{dest} changed while the archive was being restored: "
                f"{_changes_text(fresh_changes)}. Nothing was changed; run again.")
        moved_aside = _move_aside(dest)
    elif fresh_state == "ours":
        os.rename(dest, os.path.join(staging, "replaced"))
    elif fresh_state == "empty":
        os.rmdir(dest)
    os.rename(finished, dest)
    return moved_aside


def _move_aside(dest):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = f"{dest}.old-{stamp}", 1
    while os.path.lexists(aside):
        n += 1
        aside = f"{dest}.old-{stamp}-{n}"
    os.rename(dest, aside)
    return aside


# ------------------------------------------------------------------ restore: progressive --
_IndexEntry = collections.namedtuple("_IndexEntry",
                                     "path kind size mode mtime sha256 target header data")


class _Index:
    """An archive's index (see _IndexBuilder), read and checked for shape: its members in
    stream order, its restart points, the paths a layer deletes."""

    def __init__(self, data, where):
        try:
            doc = json.loads(data.decode("utf-8", "surrogateescape"))
            if doc["format"] != INDEX_VERSION:
                raise ValueError(doc["format"])
            self.prefix = doc["prefix"]
            self.restarts = [(int(tar), int(stored)) for tar, stored in doc["restarts"]]
            self.members = [_IndexEntry(str(path), kind, int(size), int(mode), int(mtime),
                                        str(value) if kind == "f" else "",
                                        str(value) if kind == "l" else "", int(header),
                                        int(data_offset))
                            for path, kind, size, mode, mtime, value, header, data_offset
                            in doc["members"]]
            self.deleted = [str(path) for path in doc["deleted"] or ()]
            if not isinstance(self.prefix, str) or any(
                    entry.kind not in ("f", "d", "l") or entry.size < 0
                    for entry in self.members):
                raise ValueError("members")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CorruptArchive(f"the index of {where} is not one this tool wrote ({exc!r}), "
                                 f"though its hash is the recorded one") from None

    def restart_before(self, header):
        """(tar offset, stored offset) of the last restart point at or before header."""
        import bisect
        return self.restarts[bisect.bisect_right(self.restarts, (header, float("inf"))) - 1]

    def path_of(self, name):
        """A member name as written (prefix included) as the index's path, or None."""
        prefix = self.prefix[2:] if self.prefix.startswith("./") else self.prefix
        return name[len(prefix):] if name.startswith(prefix) else None


def _index_lines(raw_sidecar, expected, given):
    """[(archive sha256, its `# index` line)] that what restore trusts vouches for: the
    lines of the archive's expected hashes (two while a save swaps files), or those whose
    index hash was pinned with --sha256."""
    indexes = _sidecar_indexes(raw_sidecar)
    if given:
        return [(whole, line) for whole, line in sorted(indexes.items()) if line[0] in given]
    return [(whole, indexes[whole]) for whole in sorted(expected or ()) if whole in indexes]


def _vouched_index(source, lines):
    """(archive sha256, index, format) of the first of lines whose index the archive holds;
    ChecksumMismatch when it holds none of them."""
    for number, (whole, line) in enumerate(lines, 1):
        try:
            return (whole,) + _read_index(source, line, source.path)
        except ChecksumMismatch:
            if number == len(lines):
                raise


def _inflated(chunks, where):
    """Raw deflate from a restart point of a gzip stream, in pieces of at most CHUNK."""
    inflater = zlib.decompressobj(-15)
    try:
        for data in chunks:
            while data:
                out = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
                if inflater.eof:
                    return
            while True:  # a full output may leave more inside zlib
                out = inflater.decompress(b"", CHUNK)
                if not out:
                    break
                yield out
    except zlib.error as exc:
        raise CorruptArchive(f"{where} is damaged: gzip data at a restart point does not "
                             f"decompress ({exc}).") from None


def _counted(chunks, counter):
    """The stored stream's pieces, their bytes counted (the progress line's figure)."""
    for data in chunks:
        counter.bytes += len(data)
        yield data


class _ReadAhead:
    """The archive read from its first byte while its index is still being fetched and the
    plan made: on a fresh restore the first read starts there, and the link would otherwise
    idle through the index's round trips (a tenth of a second on Drive, 3 % of a 360 MB
    restore). Handed to the first read, when that starts near byte 0 (after the top folder's
    header, say), else closed unused."""

    def __init__(self, source):
        self.source, self.taken = source, False
        self.stage = _Stage(lambda: source.chunks(0), "read", READ_AHEAD_DEPTH)

    def take(self, source, stored_offset):
        """The stage, when this read is the one it anticipated; the pieces from
        stored_offset on."""
        if self.taken or source is not self.source or stored_offset > READ_AHEAD_SKIP:
            return None
        self.taken = True
        return self.stage

    def pieces(self, stored_offset):
        """The pieces of the stage from stored_offset on."""
        for data in self.stage:
            if stored_offset >= len(data):
                stored_offset -= len(data)
                continue
            yield data[stored_offset:] if stored_offset else data
            stored_offset = 0

    def close(self):
        self.stage.close()


def _stored_stream(source, stored_offset, fmt, counter, end=None):
    """The tar stream from a restart point (to the stored offset end, when given): (stages
    to close, the tar pieces)."""
    read_ahead = getattr(source, "read_ahead", None)
    early = read_ahead and read_ahead.take(source, stored_offset)
    if early:  # counted as the pipeline takes its pieces
        stages, raw = [early], _counted(read_ahead.pieces(stored_offset), counter)
    else:
        raw = _Stage(lambda: _counted(source.chunks(stored_offset) if end is None else
                                      source.chunks(stored_offset, end), counter), "read",
                     READ_AHEAD_DEPTH)
        stages = [raw]
    if fmt == "tar":
        return stages, raw
    data = _Stage(lambda: _inflated(raw, source.path) if fmt == "gz" and stored_offset else
                  _decompressed(raw, fmt, source.path), "decompress")
    return stages + [data], data


def _read_index(source, line, where):
    """(index, format): the index at the place its sidecar line names, checked against the
    line's hash. The bytes from there to the end are the index as it is (a plain tar) or
    its raw deflate (a .tar.gz): the hash tells which."""
    index_sha, offset, length = line
    if not 0 <= offset < max(source.size, 1) or length > MAX_INDEX or \
            source.size - offset > MAX_INDEX + MAX_TRAILING:
        raise ChecksumMismatch(f"{where} does not match its checksum: the checksum file "
                               f"places its index at byte {offset:,} ({length:,} bytes), "
                               f"which this file ({source.size:,} bytes) cannot hold. It is "
                               f"damaged or is not the one that was saved; nothing was "
                               f"installed. Save again, or restore the previous version "
                               f"(--previous 1).")
    tail = b"".join(source.chunks(offset))
    candidates = [("tar", tail[:length])]
    try:
        candidates.append(("gz", zlib.decompressobj(-15).decompress(tail, length)))
    except zlib.error:
        pass
    if tail[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame of its own
        try:
            candidates.append(("zst", b"".join(_decompressed([tail], "zst", where))[:length]))
        except (CorruptArchive, Unsupported):
            pass
    for fmt, data in candidates:
        if len(data) == length and hashlib.sha256(data).hexdigest() == index_sha:
            return _Index(data, where), fmt
    raise ChecksumMismatch(f"{where} does not match its checksum: its index is not the one "
                           f"the checksum file records (sha256 {index_sha}). It is damaged "
                           f"or is not the one that was saved; nothing was installed. Save "
                           f"again, or restore the previous version (--previous 1).")


def _final_plan(indexes):
    """{path: (archive number, entry)}: what the folder holds once the base and its layers
    are applied, each path in its final content."""
    final = {}
    for number, index in enumerate(indexes):
        deleted = {index.path_of(name) for name in index.deleted} - {None}
        if deleted:  # a deleted path takes everything below it
            final = {path: held for path, held in final.items()
                     if not any("/".join(path.split("/")[:depth]) in deleted
                                for depth in range(1, path.count("/") + 2))}
        for entry in index.members:
            final[entry.path] = (number, entry)
    return final


def _check_plan(final, extraction, verified):
    """Judge every path of the plan by the rules, before anything is written: names, the
    tree model (links resolve inside, nothing written through a link), the space left."""
    for _, entry in sorted(final.values(), key=lambda item: (item[1].kind == "l", item[0],
                                                             item[1].header)):
        kind = {"f": "file", "d": "dir", "l": "symlink"}[entry.kind]
        member = _Member(entry.path, kind, _member_parts(entry.path, entry.path), entry.mode,
                         entry.mtime, entry.size if entry.path not in verified else 0,
                         entry.target)
        if not member.parts:
            raise UnsafeArchive(f"the index names the empty path {entry.path!r} (rule: every "
                                f"member names a path inside the destination)")
        extraction.admit(member, entry.path)


def _read_journal(dest):
    """{path: (sha256, size, mtime)} of the files a progressive restore into dest installed."""
    journal = {}
    try:
        with open(os.path.join(dest, JOURNAL_NAME), encoding="utf-8",
                  errors="surrogateescape") as f:
            for line in f.read().splitlines():
                words = line.split(" ", 3)
                if len(words) == 4 and words[1].isdigit() and words[2].lstrip("-").isdigit():
                    journal[words[3]] = (words[0], int(words[1]), int(words[2]))
    except FileNotFoundError:
        pass
    return journal


def _is_planned_file(dest, path, entry, planned):
    """The file at path is exactly the plan's (mode, mtime, size, and its content hashed)."""
    if planned.kind != "f" or entry[0] != "f" or entry[1] != planned.size or \
            entry[2] // 10**9 != planned.mtime or entry[3] != planned.mode:
        return False
    hasher = hashlib.sha256()
    with open(os.path.join(dest, path), "rb") as f:
        for data in iter(lambda: f.read(CHUNK), b""):
            hasher.update(data)
    return hasher.hexdigest() == planned.sha256


def _verified_in_place(dest, final, journal):
    """What an earlier, interrupted restore left in dest, judged against this plan: (the
    paths already as the plan wants them, the files it installed that this plan replaces
    or drops, the changes made since, which are the user's). journal: {path: (sha256,
    size, mtime)} of what it installed. A file it lacks but that is exactly the plan's (its
    content hashed) counts as verified: a restore killed between a rename and its journal
    line leaves one."""
    verified, stale, changes = set(), [], []
    for path, entry in _scan(dest).items():
        planned = final.get(path, (None, None))[1]
        installed = journal.get(path)
        ours = entry[0] == "f" and installed is not None and \
            (entry[1], entry[2] // 10**9) == installed[1:]
        if planned is not None and planned.kind == entry[0] == "d":
            verified.add(path)
        elif planned is not None and planned.kind == entry[0] == "l" and \
                entry[1] == planned.target:
            verified.add(path)
        elif ours and planned is not None and planned.kind == "f" and \
                installed == (planned.sha256, planned.size, planned.mtime):
            verified.add(path)
        elif not ours and planned is not None and _is_planned_file(dest, path, entry, planned):
            verified.add(path)  # renamed into place, then stopped before its journal line
        elif ours:
            stale.append(path)
        elif entry[0] == "d" and any(p.startswith(path + "/") for p in journal):
            continue  # a folder an older plan made
        else:
            changes.append(f"{'modified' if planned else 'added'} {path}")
    return verified, stale, changes


class _Installer:
    """Installs the files of a progressive restore: each written under a temporary name in
    the staging folder, hashed as it is written, and renamed to its final path only once it
    matches the index. Folders come first (from the plan), links last."""

    def __init__(self, dest, staging, events, journal):
        self.dest, self.staging, self.events = dest, staging, events
        self.writer = _PythonWriter(dest)
        self.journal = journal  # the open journal file
        self.count = 0
        # the stream and the reads ahead of it (_Demand) install files at once: the names,
        # the folders made, the journal and the job's events are theirs in turn
        self.lock = threading.Lock()

    def folders(self, final):
        for path, (_, entry) in sorted(final.items()):
            if entry.kind == "d":
                self.writer.add(_Member(path, "dir", tuple(path.split("/")), entry.mode,
                                        entry.mtime, 0), ())

    def file(self, entry, pieces):
        parts = tuple(entry.path.split("/"))
        with self.lock:
            self.writer.make_parents(parts)
            self.count += 1
            temporary = os.path.join(self.staging, f"{self.count}.part")
        hasher = hashlib.sha256()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            for piece in pieces:
                hasher.update(piece)
                self.writer.write_piece(fd, piece)
            if hasher.hexdigest() != entry.sha256:
                raise CorruptArchive(
                    f"member {entry.path!r} is damaged: its content does not match the "
                    f"archive's index (sha256 {entry.sha256} recorded, {hasher.hexdigest()} "
                    f"read). Only the files verified before it were installed. Fix: save "
                    f"again from a complete copy of the folder, or restore the previous "
                    f"version (--previous 1).")
            os.fchmod(fd, entry.mode)
            os.utime(fd, (entry.mtime, entry.mtime))
        except BaseException:
            os.close(fd)
            os.unlink(temporary)
            raise
        os.close(fd)
        with self.lock:
            os.rename(temporary, os.path.join(self.dest, *parts))
            self.installed(entry)

    def link(self, entry):
        self.writer.add(_Member(entry.path, "symlink", tuple(entry.path.split("/")),
                                entry.mode, entry.mtime, 0, entry.target), ())

    def installed(self, entry):
        """Journal the file (with the hash it was verified against) and tell the job."""
        self.journal.write(f"{entry.sha256} {entry.size} {entry.mtime} {entry.path}\n")
        self.journal.flush()
        if self.events:
            self.events.installed(entry.path, entry.size)


def _same_member(member, entry, path):
    kind = {"file": "f", "dir": "d", "symlink": "l"}.get(member.kind)
    return (path == entry.path and kind == entry.kind and
            (kind != "f" or member.size == entry.size) and
            (kind != "l" or member.linkname == entry.target) and
            int(member.mtime) == entry.mtime and (kind == "l" or member.mode == entry.mode))


def _segments(index, fmt, wanted):
    """The wanted members of one archive (in stream order) as the reads that give them:
    [(tar offset, stored offset to start at, stored offset to stop at or None, members)].
    Neighbours are read as one when the gap is under COALESCE_GAP or the next one's
    restart point is inside the read already; each read starts at the restart point before
    its first member and stops at the one after its last."""
    import bisect
    groups = []
    for entry in wanted:
        end = entry.data + entry.size + (-entry.size) % BLOCK
        start = entry.header if fmt == "tar" else index.restart_before(entry.header)[0]
        if groups and (entry.header - groups[-1][1] < COALESCE_GAP or
                       start < groups[-1][1]):
            groups[-1][1] = end
            groups[-1][2].append(entry)
        else:
            groups.append([entry.header, end, [entry]])
    segments = []
    for first, end, members in groups:
        if fmt == "tar":  # every header of a plain tar is a restart point
            segments.append((first, first, end, members))
            continue
        tar_start, stored_start = index.restart_before(first)
        after = bisect.bisect_left(index.restarts, (end, -1))
        stop = index.restarts[after][1] if after < len(index.restarts) else None
        segments.append((tar_start, stored_start, stop, members))
    return segments


def _install_from(source, index, fmt, number, final, verified, installer, progress,
                  counter, demand=None):
    """Read the files one archive of the chain still has to give, by ranges: each run of
    neighbouring wanted members from the restart point before it to the one after it (see
    _segments), and install those files. Each member read is checked against the index,
    and each file's content against its hash there: what the index does not describe is
    never installed, so the archive's own hash (which covers the same bytes again) is not
    computed. demand: the reads ahead of this one (_Demand), whose files it reads past.
    Returns the number of reads."""
    wanted = [entry for entry in index.members if entry.kind == "f"
              and final.get(entry.path, (None,))[0] == number and entry.path not in verified]
    segments = _segments(index, fmt, wanted)
    # what is left to read (a subset, or what a resume still lacks), not the archive's size
    progress.total = counter.bytes + sum((source.size if stop is None else stop) - start
                                         for _, start, stop, _ in segments)
    reader = source
    # A mount's ranges are read one after another: read by 4 or 8 threads at once, 20 spread
    # ranges took 0.4 s instead of 0.75 s over drivesim, but the kernel read 6-29 % more
    # than was asked, and the bytes off the link are what a partial restore saves.
    if getattr(source, "ranged", False) and len(segments) > 1:
        reader = _SpansAhead(source, [(stored_start, source.size if stop is None else stop)
                                      for _, stored_start, stop, _ in segments])
    try:
        for tar_start, stored_start, stop, members in segments:
            _install_segment(reader, index, fmt, tar_start, stored_start, stop,
                             {entry.path for entry in members}, members[-1].header,
                             installer, progress, counter, demand, number)
    finally:
        if reader is not source:
            reader.close()
    return len(segments)


class _SpansAhead:
    """A ranged source whose reads are known in advance (a partial restore's segments, in
    order): all of them fetched as one stream of spans (see _HttpSource.spans), each read's
    chunks(start, end) taking its span from it. What a read leaves (a decompressor that
    stopped at its last member) is skipped before the next one."""

    def __init__(self, source, spans):
        self.path, self.name, self.size = source.path, source.name, source.size
        self.spans = collections.deque(spans)
        self.stream = source.spans(spans)
        self.left = 0

    def chunks(self, offset, end=None):
        end = self.size if end is None else end
        while self.left > 0:
            self.left -= len(next(self.stream))
        span = self.spans.popleft()
        if span != (offset, end):  # the reads are _install_from's own, in its order
            raise RuntimeError(f"read {offset}-{end} asked of the spans ahead, {span} next")
        self.left = end - offset
        while self.left > 0:
            data = next(self.stream)
            self.left -= len(data)
            yield data

    def close(self):
        self.stream.close()


def _indexed_members(stream, index, tar_start, fix):
    """(member, its index entry) for each member of a read from tar_start, whose header is
    checked against the index: one it does not describe is CorruptArchive (fix: what the
    message then tells to do). A layer's list of deletions is passed over."""
    entries = iter([entry for entry in index.members if entry.header >= tar_start])
    for member in _tar_members(stream):
        if member.parts == (DELETED_NAME,) and index.deleted is not None:
            stream.skip(member.size + (-member.size) % BLOCK)
            continue
        entry = next(entries, None)
        if entry is None or not _same_member(member, entry,
                                             index.path_of("/".join(member.parts))):
            raise CorruptArchive(f"member {member.name!r} is damaged: its header does not "
                                 f"match the archive's index. {fix}")
        yield member, entry


def _install_segment(source, index, fmt, tar_start, stored_start, stop, wanted, last,
                     installer, progress, counter, demand=None, number=0, ahead=False):
    """One read of _install_from: the members from tar_start to the one at header last.
    With demand, each wanted file is installed by whichever of the stream and the reads
    ahead claims it first (the other reads past it); a read ahead (ahead=True, progress
    None) ends where the stream is about to take over."""
    stages, data = _stored_stream(source, stored_start, fmt, counter, stop)
    try:
        stream = _TarStream(data)
        for member, entry in _indexed_members(
                stream, index, tar_start, "Only the files verified before it were installed. "
                "Fix: save again from a complete copy of the folder, or restore the previous "
                "version (--previous 1)."):
            take = entry.path in wanted
            if demand is not None:
                take = demand.claim(number, entry, take, ahead)
                if take is None:
                    return
            if take:
                pieces = stream.pieces(member.size)
                installer.file(entry, pieces if demand is None else demand.watched(pieces))
                if progress is not None:
                    progress.update(counter.bytes, installer.count)
            else:
                stream.skip(member.size)
            stream.skip((-member.size) % BLOCK)
            if demand is not None and not ahead:  # past it: what a read ahead is judged by
                demand.position = (number, entry.data + entry.size)
            if entry.header == last:
                return
    except CorruptArchive as exc:
        raise _with_context(exc, f"Cannot restore {source.path}: ") from None
    except UnsafeArchive as exc:
        raise _with_context(exc, f"Refusing to restore {source.path}: ") from None
    finally:
        for stage in reversed(stages):
            stage.close()


class _AheadFailed(Exception):
    """Raised in the stream when a read ahead of it failed: the restore ends with that
    read's own error (_Demand.error)."""


class _Halted(Exception):
    """Ends a read ahead when the restore has stopped."""


class _Demand:
    """Demand first (README, Start working before the restore ends): the files a reader of a
    background restore asks for (RestoreJob.wait and files, or `wait` in another process
    through the request file beside dest, see _ask_background) are read ahead of the stream
    by ranges, in a thread of their own, when the stream would first read AHEAD_GAP bytes
    the reader did not ask for. They are installed as the stream's are (_Installer.file:
    checked against the index, renamed, journalled); each file goes to whichever of the
    two claims it first, and the other reads past it (checking its header all the same). A
    read ahead stops where the stream is about to take over, so it adds no more than the
    files asked for to what the restore reads."""

    def __init__(self, chain, final, verified, installer, space, request_file=None):
        self.chain, self.installer, self.space = chain, installer, space
        self.request_file, self.request_offset = request_file, 0
        self.files = sorted(((number, entry) for number, entry in final.values()
                             if entry.kind == "f"), key=lambda held: (held[0], held[1].header))
        self.condition = threading.Condition()
        self.work = collections.deque()  # [(archive number, entries)] to read ahead, in turn
        self.cursors = {}  # patterns -> where in self.files their next unasked file may be
        self.claimed = set(verified)  # files the stream or a read ahead took (or in place)
        self.queued = set()  # files planned for a read ahead, not reached yet
        self.asked = {}  # archive number -> {header: size} of the files asked for
        self.sums = {}  # archive number -> (sorted headers, running sums of their sizes)
        # (archive number, tar offset) the stream has reached: the header of the member it
        # reads, then the end of its data
        self.position = (0, -1)
        self.error = None  # what a read ahead failed with
        self.halted = self.closing = False
        # Reads ahead begin once the stream has begun: its first read may take the one a
        # fresh restore starts before the plan (_ReadAhead), which must not go to them.
        self.started = False
        self.counter = _Counter()  # the bytes read ahead
        self.thread = threading.Thread(target=self._run, name="demand first", daemon=True)
        self.thread.start()

    def ask(self, patterns, limit=None):
        """Read the files patterns name first (at most `limit` bytes of them, the first in
        archive order not in place yet, when given). Returns whether any is to be read
        ahead (not: they are in place, under way, or the stream gives them soon)."""
        with self.condition:
            return self._schedule(tuple(patterns), limit)

    def _schedule(self, patterns, limit):
        picked = self._pick(patterns, limit)
        if picked:
            for _, entries in picked:
                self.queued.update(entry.path for entry in entries)
            self.work.append(picked)
            self.condition.notify_all()
        return bool(picked)

    def claim(self, number, entry, wanted, ahead):
        """Whether the caller installs entry (True) or reads past it (False); for a read
        ahead, None once the stream is about to reach it. The stream tells where it is."""
        with self.condition:
            if not ahead:
                if self.error is not None:
                    raise _AheadFailed()
                self.position = (number, entry.header)
                if not self.started:
                    self.started = True
                    self.condition.notify_all()
            elif self.halted or self.closing or entry.path in self.claimed or \
                    not self._far(number, entry):
                return None if wanted else False
            if not wanted or entry.path in self.claimed:
                return False
            self.claimed.add(entry.path)
            return True

    def watched(self, pieces):
        """pieces, stopped once the other side has failed: the stream by a read ahead's
        error, a read ahead by the restore's end."""
        for piece in pieces:
            if self.error is not None or self.halted:
                raise _Halted() if self.halted else _AheadFailed()
            yield piece

    def close(self):
        """Once the stream has ended: wait for the read ahead under way, raise its error."""
        with self.condition:
            self.closing = True
            self.condition.notify_all()
        self.thread.join()
        if self.error is not None:
            raise self.error

    def halt(self):
        """The restore has stopped: end the read ahead under way, wait for it."""
        with self.condition:
            self.halted = True
            self.condition.notify_all()
        self.thread.join()

    def _far(self, number, entry):
        """True when the stream would read AHEAD_GAP bytes the reader did not ask for
        before it reaches entry."""
        import bisect
        at, header = self.position
        if number != at or entry.header <= header:
            return number > at
        headers, sums = self.sums.get(number, ((), (0,)))
        asked = sums[bisect.bisect_left(headers, entry.header)] - \
            sums[bisect.bisect_right(headers, header)]
        return entry.header - header - asked >= AHEAD_GAP

    def _pick(self, patterns, limit):
        """The files patterns name to read ahead now: [(archive number, entries)]. A file
        once in place, under way or not named stays so: the next look at the same patterns
        starts where this one found its first file (a reader's files() asks again and
        again)."""
        matchers = [_pattern(text) for text in patterns]
        picked, total, added = {}, 0, set()
        cursor = start = self.cursors.get(patterns, 0)
        for position in range(start, len(self.files)):
            number, entry = self.files[position]
            if entry.path in self.claimed or entry.path in self.queued or \
                    not any(matcher.fullmatch(entry.path) for matcher in matchers):
                cursor = position + 1 if cursor == position else cursor
                continue
            if limit is not None and total >= limit:
                break
            if entry.header not in self.asked.setdefault(number, {}):
                self.asked[number][entry.header] = entry.size
                added.add(number)
            total += entry.size
            picked.setdefault(number, []).append(entry)
        self.cursors[patterns] = cursor
        for number in added:
            sizes = self.asked[number]
            headers = sorted(sizes)
            self.sums[number] = (headers, list(itertools.accumulate(
                [sizes[header] for header in headers], initial=0)))
        far = [(number, [entry for entry in entries if self._far(number, entry)])
               for number, entries in sorted(picked.items())]
        return [(number, entries) for number, entries in far if entries]

    def _requests(self):
        """What `wait` in another process asked for since the last look: a JSON list of
        patterns a line."""
        try:
            with open(self.request_file, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.request_offset:
                    self.request_offset = 0  # removed and begun again (restore --background)
                f.seek(self.request_offset)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[:data.rfind(b"\n") + 1]
        self.request_offset += len(complete)
        for line in complete.splitlines():
            try:
                patterns = json.loads(line)
            except ValueError:
                continue  # not a line `wait` wrote
            if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
                self._schedule(tuple(patterns), None)

    def _next(self):
        """The next files to read ahead, or None once the restore ends."""
        with self.condition:
            while not (self.halted or self.closing):
                if self.request_file:
                    self._requests()
                if self.work and self.started:
                    return self.work.popleft()
                self.condition.wait(AHEAD_POLL if self.request_file else None)
            return None

    def _room(self, source):
        """Drive's cache on dest's disk holds a file whole while it is open: a read ahead
        of one file the stream reads too adds nothing, of another part or a layer its size.
        Returns the bytes set aside (taken back by the caller), or None when the disk has no
        room for them (the stream then gives those files)."""
        if not self.space.in_cache or not isinstance(source, _PathSource) or \
                (source is self.chain[self.position[0]][0] and len(source.files) == 1):
            return 0
        extra = max(size for _, size, _ in source.files)
        with self.condition:
            if self.space.left() < extra:
                return None
            self.space.in_cache += extra
        return extra

    def _run(self):
        try:
            while True:
                picked = self._next()
                if picked is None:
                    return
                for number, entries in picked:
                    source, index, fmt = self.chain[number]
                    extra = self._room(source)
                    try:
                        for tar_start, stored_start, stop, members in (
                                _segments(index, fmt, entries) if extra is not None else ()):
                            _install_segment(source, index, fmt, tar_start, stored_start, stop,
                                             {entry.path for entry in members},
                                             members[-1].header, self.installer, None,
                                             self.counter, self, number, ahead=True)
                    finally:
                        with self.condition:
                            self.space.in_cache -= extra or 0
                            self.queued.difference_update(entry.path for entry in entries)
        except _Halted:
            pass
        except BaseException as exc:  # the restore's error: the stream raises it
            with self.condition:
                self.error = exc


def _matcher(patterns):
    """A function telling whether a path (relative to dest) is one of patterns' (see
    _pattern), or None when patterns are empty (everything)."""
    compiled = [_pattern(text) for text in patterns or ()]
    if not compiled:
        return None
    return lambda path: any(regex.fullmatch(path) for regex in compiled)


def _subset(final, matches, held=()):
    """The part of the final plan a restore with --only installs: the files patterns name,
    the folders above them (and folders they name), the links they name whose target is
    inside that part, and the paths held (already in the folder, verified)."""
    import posixpath
    keep = {path for path, (_, entry) in final.items()
            if entry.kind != "l" and matches(path)} | {p for p in held if p in final}
    for path in list(keep):
        parts = path.split("/")
        keep.update("/".join(parts[:n]) for n in range(1, len(parts)))
    for path, (_, entry) in final.items():
        if entry.kind == "l" and matches(path) and not entry.target.startswith("/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                       entry.target))
            if target in keep:
                keep.add(path)
    return {path: final[path] for path in final if path in keep}


def _only_text(patterns):
    """The patterns of --only as said: `weights/** and config.yaml`."""
    quoted = list(patterns)
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _progressive_chain(source, archive, raw_sidecar, sidecar, expected, given, engine,
                       retry_for, drive_mount):
    """([(source, index, format)] of the base and its layers, None, base
    sha256) when the files can appear as they are verified; otherwise (None, why not, None).
    An index that does not match what vouches for it is exit 5 here, before anything."""
    if engine == "tar":
        return None, "--engine tar extracts the archive whole", None
    if not isinstance(source, _PathSource) and not getattr(source, "ranged", False):
        return None, ("the server does not answer Range requests, so the index at the "
                      "archive's end cannot be read first"), None
    # A pinned hash vouches for an index only when it is the index's own: an index line
    # beside a pinned whole-archive hash comes from the mount, which the pin distrusts.
    lines = _index_lines(raw_sidecar, None if given else expected, given)
    if not lines:
        if given:
            return None, ("--sha256 pins the whole archive, whose hash is known only at its "
                          "end (pin the index's hash that save prints to see files as they "
                          "are verified)"), None
        if not expected:
            return None, "no .sha256 beside the archive vouches for an index", None
        return None, ("the archive has no index (it was made by another tool or an older "
                      "version of this one)"), None
    base_sha, index, fmt = _vouched_index(source, lines)
    index_sha = dict(lines)[base_sha][0]
    if sum(line[0] == index_sha for _, line in lines) > 1:
        return None, ("two versions the checksum file accepts for it share one index, which "
                      "so cannot say whose layers apply"), None
    chain = [(source, index, fmt)]
    for layer_path, _ in _layers_of(archive, base_sha, sidecar, retry_for):
        layer = _open_source(layer_path, retry_for, drive_mount)
        layer_expected = _expected_hashes(sidecar, layer.name, fallback=False)
        layer_lines = _index_lines(raw_sidecar, layer_expected, None)
        if not layer_lines:
            return None, f"the layer {layer.name} has no index", None
        _, layer_index, layer_fmt = _vouched_index(layer, layer_lines)
        chain.append((layer, layer_index, layer_fmt))
    return chain, None, base_sha


def _writing_failure(exc, source, dest, in_cache):
    """What an OSError while installing becomes (the files verified so far stay)."""
    if not isinstance(exc, OSError):
        return exc
    if exc.errno in NO_SPACE_ERRNOS:
        return _no_space(_mount_point(dest), f"restoring {source.path} into {dest}", None,
                         f"{_human(_free_bytes(dest))} free now{_cache_note(in_cache)}",
                         "The files verified so far are in place; free some space and run "
                         "the restore again to go on, or use --dest on a larger disk.")
    return BootstrapError(f"Restoring {source.path} failed while writing under {dest}: "
                          f"{exc}. The files verified so far are in place; run the restore "
                          f"again to go on.")


def _restore_progressive(job, chain, base_sha):
    """Install the files of the chain into dest as each is verified (see README, Start
    working before the restore ends); resume what an interrupted one left."""
    dest, parent = job.dest, os.path.dirname(job.dest)
    source = chain[0][0]
    final = full = _final_plan([index for _, index, _ in chain])
    matches = _matcher(job.only)
    held_journal = None
    identities = [src.identity for src, _, _ in chain]
    archive_fields = {"identity": source.identity, "chain": identities, "sha256": base_sha,
                      "verified": job.checksum_source is not None,
                      "checksum_source": job.checksum_source, "format": chain[0][2],
                      "prefix": chain[0][1].prefix.rstrip("/").lstrip(".")}
    verified = set()
    existed = os.path.isdir(dest)
    if job.state in ("incomplete", "ours"):
        if job.state == "ours":  # a partial folder (restore --only): what it holds is kept
            held_journal = _held_journal(dest, job.marker["manifest"], full)
            journal = {path: words for path, words, _ in held_journal}
        else:
            journal = _read_journal(dest)
        verified, stale, changes = _verified_in_place(dest, full, journal)
        if changes and not job.force:
            if job.state == "ours":
                raise DestinationChanged(
                    f"{dest} holds part of the archive "
                    f"({_only_text(job.marker['only']['patterns'])}) and local changes to "
                    f"it: {_changes_text(changes)}. Nothing was changed. Save them first "
                    f"(python bootstrap_assets.py save --dest {dest} writes them as a "
                    f"layer), then restore again; or run again with --force (the folder is "
                    f"then moved to {dest}.old-<timestamp>, never deleted).")
            raise DestinationChanged(
                f"{dest} holds an interrupted restore and changes since: "
                f"{_changes_text(changes)}. Nothing was changed. Save what you need from it, "
                f"or run again with --force (the folder is then moved to "
                f"{dest}.old-<timestamp>, never deleted).")
        if changes:
            job.moved_aside, verified, existed = _move_aside(dest), set(), False
            held_journal = None
        else:  # files of an older archive's plan, verified copies of it: this one replaces
            if matches:
                final = _subset(full, matches, verified)
            for path in stale:
                if path not in final:
                    os.unlink(os.path.join(dest, path))
    if matches and final is full:
        final = _subset(full, matches, verified)
    if matches and not any(matches(path) for path in full):
        raise UsageError(f"--only {_only_text(job.only)}: no file of {source.path} matches. "
                         f"Nothing was changed. The paths are relative to the folder (e.g. "
                         f"'weights/**', 'config.yaml', 'images/class_07/'); `status` lists "
                         f"what the folder holds.")
    progress = _Progress(f"restoring {source.name}", sum(src.size for src, _, _ in chain),
                         job.quiet)
    staging = os.path.join(parent, f"{_staging_prefix(dest)}{os.getpid()}-"
                                   f"{os.urandom(4).hex()}")
    os.mkdir(staging, 0o700)
    reclaimable, in_cache = job.space
    extraction = _Extraction(dest, _SpaceGuard(staging, reclaimable, in_cache), progress,
                             dest)
    installer = demand = None
    try:
        _check_plan(final, extraction, verified)
        if not existed:
            os.mkdir(dest)
        files = [path for path, (_, entry) in final.items() if entry.kind == "f"]
        total_bytes = sum(entry.size for _, entry in final.values())
        if held_journal is not None:  # before the marker says restoring: resume keeps them
            with open(os.path.join(dest, JOURNAL_NAME), "w", encoding="utf-8",
                      errors="surrogateescape") as journal:
                journal.writelines(line for _, _, line in held_journal)
        _write_marker(dest, {"state": "restoring", "pid": os.getpid(),
                             "archive": archive_fields, "planned": files,
                             "planned_bytes": total_bytes, "manifest": {}})
        if job.events:
            job.events.plan(files, [path for path in files if path in verified], total_bytes)
        with open(os.path.join(dest, JOURNAL_NAME), "a", encoding="utf-8",
                  errors="surrogateescape") as journal:
            installer = _Installer(dest, staging, job.events, journal)
            installer.folders(final)
            counter = _Counter()
            reads = 0
            # demand first: what a reader waits for comes ahead of the stream (a job in
            # this process asks through job.events, `wait` in another through a file)
            background = os.environ.get(ENV_BACKGROUND) and not job.events
            if job.events or background:
                demand = _Demand(chain, final, verified, installer, extraction.space,
                                 _demand_path(dest) if background else None)
            try:
                if job.events:
                    job.events.serve(demand)
                for number, (src, index, fmt) in enumerate(chain):
                    progress.label = f"restoring {src.name}"
                    reads += _install_from(src, index, fmt, number, final, verified,
                                           installer, progress, counter, demand)
                if demand is not None:
                    demand.close()
            except _AheadFailed:
                raise demand.error from None
            finally:
                if demand is not None:
                    demand.halt()
                    counter.bytes += demand.counter.bytes
                if background:  # what `wait` asked of this restore
                    _unlink_if_there(_demand_path(dest))
                if job.events:
                    job.events.serve(None)
            for path, (_, entry) in final.items():
                if entry.kind == "l" and path not in verified and \
                        tuple(path.split("/")) not in extraction.absolute_links:
                    installer.link(entry)
            extraction.install_absolute_links()
            installer.writer.finish()
        manifest = _scan(dest, check=True)
        subset = _subset_fields(final, full, job)
        _write_marker(dest, dict({"archive": archive_fields, "manifest": manifest}, **subset))
        os.unlink(os.path.join(dest, JOURNAL_NAME))
    except BaseException as exc:
        failure = _writing_failure(exc, source, dest, in_cache)
        if os.path.isdir(dest) and (verified or (installer and installer.count) or existed):
            reason = str(failure) if isinstance(failure, BootstrapError) else (
                "interrupted" if isinstance(failure, KeyboardInterrupt) else repr(failure))
            _write_marker(dest, {"state": "incomplete", "reason": reason,
                                 "exit_code": getattr(failure, "exit_code", 1),
                                 "archive": archive_fields,
                                 "planned": [p for p, (_, e) in final.items()
                                             if e.kind == "f"], "manifest": {},
                                 "only_patterns": _all_patterns(job)})
        elif os.path.isdir(dest) and not existed:
            _remove_tree(dest)  # made by this run and holding nothing of the archive
        if failure is exc:
            raise
        raise failure from None
    finally:
        progress.close()
        _remove_tree(staging)
    return RestoreResult(action="restored", archive=source.path, dest=dest,
                         archive_bytes=counter.bytes, layers=len(chain) - 1,
                         files=sum(entry[0] != "d" for entry in manifest.values()),
                         bytes_extracted=extraction.total, sha256=base_sha,
                         verified=job.checksum_source is not None,
                         checksum_source=job.checksum_source, engine="python",
                         format=chain[0][2], parts=getattr(source, "parts", 0),
                         moved_aside=job.moved_aside, progressive=True,
                         resumed=len([p for p in verified if final[p][1].kind == "f"]),
                         only=subset.get("only"),
                         only_way=(f"by ranges ({reads} read(s) of the archive and its index)"
                                   if job.only else None))


def _held_text(only):
    """What a partial folder holds: `weights/** and config.yaml: 3 of 2,004 files, 512 MiB
    of 1.4 GB`."""
    return (f"{_only_text(only['patterns'])}: {len(only['held']):,} of {only['files']:,} "
            f"files, {_human(only['held_bytes'])} of {_human(only['bytes'])}")


def _all_patterns(job):
    """The --only patterns of this restore and of what the folder held before it."""
    before = (job.marker or {}).get("only", {}).get("patterns") or \
        (job.marker or {}).get("only_patterns") or []
    return list(dict.fromkeys(list(before) + list(job.only or ()))) if job.only else []


def _subset_fields(final, full, job):
    """The marker's record of a partial folder, {} for a complete one: {"only": {patterns,
    held (its files), files, bytes (the whole archive's), held_bytes}}."""
    if set(final) == set(full):
        return {}
    held = sorted(path for path, (_, entry) in final.items() if entry.kind == "f")
    return {"only": {"patterns": _all_patterns(job), "held": held,
                     "files": sum(entry.kind == "f" for _, entry in full.values()),
                     "bytes": sum(entry.size for _, entry in full.values()),
                     "held_bytes": sum(final[path][1].size for path in held)}}


def _held_journal(dest, manifest, full):
    """[(path, (sha256, size, mtime), journal line)] of the files a partial folder holds
    as the archive has them (unchanged since its marker): kept by an adding restore."""
    current = _scan(dest)
    lines = []
    for path, recorded in manifest.items():
        planned = full.get(path, (None, None))[1]
        if recorded[0] != "f" or planned is None or planned.kind != "f" or \
                current.get(path) != recorded or recorded[1] != planned.size or \
                recorded[2] // 10**9 != planned.mtime:
            continue
        words = (planned.sha256, planned.size, planned.mtime)
        lines.append((path, words, f"{planned.sha256} {planned.size} {planned.mtime} "
                                   f"{path}\n"))
    return lines


# ---------------------------------------------------------- report: progress and results --
class _Progress:
    """One self-redrawing line in a terminal or notebook cell; sparse plain lines in a log."""

    def __init__(self, label, total, quiet, stream=None):
        self.stream = stream or sys.stderr
        self.label, self.total = label, total
        self.quiet = quiet
        self.live = not quiet and (self.stream.isatty() or _in_notebook_output())
        self.started = time.monotonic()
        self.shown = 0.0
        self.drawn = False

    def update(self, done, files, force=False, share=None):
        """done: bytes so far; share: with it, done counts bytes written and share (0 to 1)
        is how far the run is, when the final size is not known in advance (compressed).
        The share shows 100 % only in the final update (force): the input is read a few
        pieces ahead of what is written, so it reaches its end before the work does."""
        if self.quiet:
            return
        if share is not None and not force:
            share = min(share, 0.99)
        now = time.monotonic()
        if not force and now - self.shown < (PROGRESS_EVERY if self.live else PLAIN_PROGRESS_EVERY):
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        line = f"{self.label}: {_human(done)}"
        if share is not None:
            eta = elapsed * (1 - share) / share if share > 0 else 0
            line += f" written ({100 * share:.0f}%)  {rate / 1e6:.1f} MB/s  ETA {eta:.0f} s"
        elif self.total > 0:
            eta = (self.total - done) / rate if rate else 0
            line += f" / {_human(self.total)} ({100 * done / self.total:.0f}%)"
            line += f"  {rate / 1e6:.1f} MB/s  ETA {eta:.0f} s"
        else:
            line += f"  {rate / 1e6:.1f} MB/s"
        if files is not None:
            line += f"  {files:,} files"
        if self.live:
            self.stream.write("\r" + line.ljust(79))
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class RestoreResult(_Record):
    """What restore() did, with its figures."""

    action: str  # "restored" or "unchanged"
    archive: str
    dest: str
    archive_bytes: int = 0
    files: int = 0
    bytes_extracted: int = 0
    seconds: float = 0.0
    sha256: str = None
    verified: bool = False
    checksum_source: str = None
    engine: str = None
    format: str = None
    moved_aside: str = None
    local_changes: list = []
    layers: int = 0
    parts: int = 0  # the files the archive is stored as (0: one file)
    note: str = None
    progressive: bool = False  # each file appeared as it was verified (else all at the end)
    staged: str = None  # why not: why the files appeared at once, at the end
    resumed: int = 0  # files an interrupted restore had verified, kept
    only: dict = None  # restore --only: what the folder holds (see _subset_fields)
    only_way: str = None  # how --only read the archive: by ranges, or one pass and why

    @property
    def mb_per_s(self):
        return _mb_per_s(self.archive_bytes, self.seconds)

    def summary(self):
        """One line on what the restore did: the action, the check, the size, time and rate."""
        if self.action == "unchanged":
            text = f"{self.dest} is already restored from {self.archive}; nothing to do"
            if self.local_changes:
                text += (f" (kept {len(self.local_changes)} local change(s), e.g. "
                         f"{self.local_changes[0]}; --force restores a fresh copy and moves "
                         f"this one aside)")
            return text + f" [{self.seconds:.2f} s]"
        check = (f"sha256 verified ({self.checksum_source})" if self.verified else
                 "NOT verified: no --sha256 and no .sha256 file beside the archive")
        layers = f" + {self.layers} layer(s)" if self.layers else ""
        parts = f" in {self.parts} parts" if self.parts else ""
        text = (f"restored {_human(self.archive_bytes)}{parts}{layers} ({self.files:,} files, "
                f"{_human(self.bytes_extracted)}) to {self.dest} in {self.seconds:.1f} s "
                f"({self.mb_per_s:.1f} MB/s, {self.format}, engine {self.engine}); {check}")
        if self.moved_aside:
            text += f"; the previous folder was moved to {self.moved_aside}"
        if self.resumed:
            text += f"; resumed: {self.resumed:,} files verified before were kept"
        if self.only:
            text += f"; {_held_text(self.only)}"
        if self.only_way:
            text += f"; --only read {self.only_way}"
        if self.staged:
            text += f"; the files appeared at once, at the end: {self.staged}"
        if self.note:
            text += f". Note: {self.note}"
        return text


class SaveResult(_Record):
    """What save() did, with its figures."""

    # "saved" (a full archive), "layer" (an incremental layer), "split" (split()), "unchanged"
    action: str
    archive: str
    written: str = None
    bytes_written: int = 0
    bytes_packed: int = 0
    files: int = 0
    deleted: int = 0
    seconds: float = 0.0
    sha256: str = None
    format: str = None
    verified: bool = False
    layer: int = 0
    parts: int = 0  # the files the archive was written as (0: one file)
    # the sha256 of the archive's index: pinned with restore --sha256, it vouches for every
    # file and lets them appear as they are verified (None: the archive has no located index)
    index_sha256: str = None
    versions: list = []
    warnings: list = []
    note: str = None
    # the files a full save of a partial folder (restore --only) carried over from its
    # archive, each verified against the index there (see _unrestored)
    carried: int = 0

    @property
    def mb_per_s(self):
        return _mb_per_s(self.bytes_written, self.seconds)

    def summary(self):
        """One line on what the save did: the action, the check, the size, time and rate."""
        if self.action == "unchanged":
            return (f"{self.note or f'nothing changed since the last save to {self.archive}'}"
                    f"; nothing written [{self.seconds:.2f} s]")
        check = ("read back and verified" if self.verified else
                 "NOT read back (--no-verify)")
        if self.action == "split":
            return (f"split {self.archive} into {self.parts} parts "
                    f"({_human(self.bytes_written)} in {self.seconds:.1f} s, "
                    f"{self.mb_per_s:.1f} MB/s); {check}; the whole has the same sha256 as "
                    f"before, {self.sha256[:16]}...; {self.note}")
        what = (f"layer {self.layer} ({self.files:,} changed, {self.deleted:,} deleted)"
                if self.action == "layer" else f"a full archive ({self.files:,} files"
                + (f", {self.carried:,} of them carried over from the archive the folder was "
                   f"partly restored from, verified against its index" if self.carried
                   else "") + ")")
        parts = f" in {self.parts} parts" if self.parts else ""
        text = (f"saved {what}: {_human(self.bytes_written)}{parts} to {self.written} in "
                f"{self.seconds:.1f} s ({self.mb_per_s:.1f} MB/s, {self.format}); {check}; "
                f"sha256 {self.sha256[:16]}...")
        if self.warnings:
            text += "\nwarnings: " + "; ".join(self.warnings)
        return text


# ---------------------------------------------------------------------------- save: walk --
class _SaveEntry(collections.namedtuple("_SaveEntry", "path manifest stat")):
    """One thing a save packs: its path relative to the folder, its manifest entry
    (["d", mode], ["f", size, mtime_ns, mode] or ["l", target], as the marker records it)
    and its lstat."""

    __slots__ = ()

    @property
    def kind(self):
        return self.manifest[0]

    @property
    def size(self):
        return self.manifest[1] if self.manifest[0] == "f" else 0


def _file_bytes(entries):
    return sum(entry.size for entry in entries)


def _file_count(entries):
    """Files and symlinks: what a result reports as files (folders are not counted)."""
    return sum(entry.kind != "d" for entry in entries)


def _save_entries(folder):
    """(entries, warnings): what a save packs, parents before children, symlinks last.

    Entries are _SaveEntry records (relative path, manifest entry, stat). Symlinks come last
    so that every folder they point through already exists when a restore checks them.
    """
    real_folder = os.path.realpath(folder)
    entries, links, warnings, pending = [], [], [], [""]
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(folder, rel)) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for entry in children:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if path in MARKER_FILES:
                continue
            st = entry.stat(follow_symlinks=False)
            manifest_entry = _manifest_entry(st, entry.path)
            if manifest_entry is None:
                warnings.append(f"skipped {path}: not a regular file, folder or symlink")
            elif manifest_entry[0] == "l":
                target = manifest_entry[1]
                if _saved_link_target(folder, path, target) is None or not _is_within(
                        os.path.realpath(entry.path), real_folder):
                    warnings.append(f"skipped {path}: a symlink to {target!r}, which leaves "
                                    f"the folder (restore would refuse it)")
                else:
                    links.append(_SaveEntry(path, manifest_entry, st))
            else:
                entries.append(_SaveEntry(path, manifest_entry, st))
                if manifest_entry[0] == "d":
                    pending.append(path)
    return entries + links, warnings


def _saved_link_target(folder, path, target):
    """The target a save stores for the link at path: a link to an absolute path inside the
    folder is stored relative to the link's own folder, so it still holds wherever the
    folder is restored; None for an absolute path outside the folder."""
    if not target.startswith("/"):
        return target
    inside = _below(target, folder)
    return None if inside is None else _relative_target(tuple(path.split("/")[:-1]), inside)


def _pattern(text):
    """A path pattern of --first, wait and files, as a compiled regex: `*` and `?` within a
    name, `**` across folders; a pattern matches the paths it names and everything below
    them, so `tokenizer/` (or `tokenizer`) is the whole folder."""
    import re
    body = text.strip()
    while body.startswith("./"):
        body = body[2:]
    body = body.strip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    return re.compile("".join(out) + "(/.*)?", re.DOTALL)


def _ordered(entries, first):
    """The order a save packs entries in: the files matching each of `first` (globs, in the
    order given, each after the folders above it), then every top-level entry whole in order
    of its total size, smallest first (configs and tokenizers before weights, weights before
    the image folder): what a notebook needs first arrives first. Symlinks stay last."""
    links = [entry for entry in entries if entry.kind == "l"]
    others = [entry for entry in entries if entry.kind != "l"]
    ordered, placed = [], set()
    by_path = {entry.path: entry for entry in others}

    def place(entry):
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            parent = by_path.get("/".join(parts[:depth]))
            if parent is not None and parent.path not in placed:
                placed.add(parent.path)
                ordered.append(parent)
        if entry.path not in placed:
            placed.add(entry.path)
            ordered.append(entry)

    for text in first:
        matcher = _pattern(text)
        for entry in others:
            if entry.kind == "f" and matcher.fullmatch(entry.path):
                place(entry)
    sizes, groups = collections.Counter(), collections.defaultdict(list)
    for entry in others:
        top = entry.path.split("/", 1)[0]
        sizes[top] += entry.size
        groups[top].append(entry)
    for top in sorted(groups, key=lambda name: (sizes[name], name)):
        for entry in groups[top]:
            place(entry)
    return ordered + links


# ------------------------------------------------------- save: what a partial folder lacks --
class _Carried(collections.namedtuple("_Carried", "st_mode st_mtime number entry")):
    """The stat of a path a full save carries over from the archive (see _unrestored): its
    mode and mtime as the index records them, the archive of the chain that holds it
    (number) and its index entry."""

    __slots__ = ()


def _unrestored(job, marker, entries, raw_sidecar):
    """What a full save (or a compaction) of a folder restore --only made carries over from
    the archive it was restored from: (chain [(source, index, format)], [_SaveEntry] of the
    paths the chain's final content has that the folder never held, with the folders above
    them, the origin's path) or (None, why not, the origin's path).

    A path the folder holds, or held and the user deleted, is the user's: never carried.
    Only an indexed chain read by ranges, vouched for as restore vouches for it, and still
    the one the marker names can give them; a tampered index is exit 5 here."""
    recorded = marker["archive"]
    origin = recorded["identity"]["path"]
    try:
        source = _open_source(origin, job.retry_for, job.drive_mount,
                              sidecar=raw_sidecar if origin == job.archive else None)
    except SourceMissing as exc:
        return None, f"it cannot be opened ({exc})", origin
    if origin != job.archive:
        raw_sidecar = source.read_sidecar(raw=True) if _is_url(origin) else \
            _read_sidecar(origin, job.retry_for, raw=True)
    sidecar = _sidecar_entries(raw_sidecar, f"{origin}.sha256") if raw_sidecar else {}
    expected = getattr(source, "whole", None) or _expected_hashes(sidecar, source.name)
    chain, why, base_sha = _progressive_chain(source, origin, raw_sidecar or b"", sidecar,
                                              expected or frozenset(), None, "python",
                                              job.retry_for, job.drive_mount)
    if chain is None:
        return None, why, origin
    if base_sha != recorded.get("sha256") or \
            [src.identity for src, _, _ in chain] != recorded.get("chain"):
        return None, "it is no longer the archive this folder was restored from", origin
    final = _final_plan([index for _, index, _ in chain])
    local = {entry.path: entry for entry in entries}
    lacking = {path for path in final if path not in marker["manifest"] and path not in local}
    for path in list(lacking):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in local and local[above].kind != "d":
                raise BootstrapError(
                    f"{job.dest}/{above} is a {'symlink' if local[above].kind == 'l' else 'file'}"
                    f" where {origin} has a folder holding {path}, which {job.dest} never "
                    f"restored: a full save cannot keep both. Nothing was written. Fix: move "
                    f"{job.dest}/{above} elsewhere, then save again.")
            if above not in local:
                lacking.add(above)
    carried = []
    for path in lacking:
        number, entry = final[path]
        manifest = {"f": ["f", entry.size, entry.mtime * 10**9, entry.mode],
                    "d": ["d", entry.mode], "l": ["l", entry.target]}[entry.kind]
        carried.append(_SaveEntry(path, manifest,
                                  _Carried(entry.mode, entry.mtime, number, entry)))
    return chain, carried, origin


def _walk_order(entries):
    """entries in the order _save_entries walks a folder that holds them all (each folder's
    children by name, a folder's contents after its siblings, symlinks last): a full save
    of a partial folder lays the union out as a save of the complete folder would."""
    children = collections.defaultdict(list)
    for entry in entries:
        children[entry.path.rpartition("/")[0]].append(entry)
    ordered, links, pending = [], [], [""]
    while pending:
        for entry in sorted(children.pop(pending.pop(), ()),
                            key=lambda e: e.path.rpartition("/")[2]):
            if entry.kind == "l":
                links.append(entry)
                continue
            ordered.append(entry)
            if entry.kind == "d":
                pending.append(entry.path)
    return ordered + links


def _carried_content(chain, ordered):
    """The content of the files carried over, in the order the pack takes them: for each,
    its pieces, then its path once they matched the sha256 its archive's index records.
    Each run of them in one archive's stream order is read by ranges (see _segments)."""
    runs = []
    for entry in ordered:
        carried = entry.stat
        if not isinstance(carried, _Carried) or entry.kind != "f":
            continue
        if runs and runs[-1][0] == carried.number and \
                carried.entry.header > runs[-1][1][-1].header:
            runs[-1][1].append(carried.entry)
        else:
            runs.append((carried.number, [carried.entry]))
    for number, members in runs:
        source, index, fmt = chain[number]
        for tar_start, stored_start, stop, group in _segments(index, fmt, members):
            yield from _carried_segment(source, index, fmt, tar_start, stored_start, stop,
                                        group)


def _batched(items):
    """_carried_content in lists of about CHUNK bytes: a stage's queue counts items, and
    the pieces of small files would let it hold little."""
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += 0 if isinstance(item, str) else len(item)
        if size >= CHUNK:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _carried_segment(source, index, fmt, tar_start, stored_start, stop, group):
    """One read of _carried_content: the members from tar_start to the last of group, each
    checked against the index, the content of group's hashed against it."""
    stages, data = _stored_stream(source, stored_start, fmt, _Counter(), stop)
    wanted = {entry.header for entry in group}
    fix = (f"Nothing was published; {source.path} is as it was. Fix: keep your changes as a "
           f"layer meanwhile (save --incremental), and look for an intact copy in the "
           f"previous version (restore --previous 1 --dest ANOTHER_FOLDER).")
    try:
        stream = _TarStream(data)
        for member, entry in _indexed_members(stream, index, tar_start, fix):
            if entry.header in wanted:
                hasher = hashlib.sha256()
                for piece in stream.pieces(member.size):
                    hasher.update(piece)
                    yield piece
                if hasher.hexdigest() != entry.sha256:
                    raise CorruptArchive(
                        f"member {entry.path!r}, which the folder never restored and a full "
                        f"save carries over, is damaged: its content does not match the "
                        f"archive's index (sha256 {entry.sha256} recorded, "
                        f"{hasher.hexdigest()} read). {fix}")
                yield entry.path
            else:
                stream.skip(member.size)
            stream.skip((-member.size) % BLOCK)
            if entry.header == group[-1].header:
                return
        raise CorruptArchive(f"the archive ends before member {group[-1].path!r} that its "
                             f"index records. {fix}")
    except (CorruptArchive, UnsafeArchive) as exc:
        raise _with_context(exc, f"Cannot carry over the files of {source.path}: ") from None
    finally:
        for stage in reversed(stages):
            stage.close()


# ---------------------------------------------------------------------------- save: pack --
def _tar_header(name, entry, st):
    import tarfile
    info = tarfile.TarInfo(name)
    info.mtime = int(st.st_mtime)
    info.mode = st.st_mode & 0o777
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry[0] == "d":
        info.type = tarfile.DIRTYPE
    elif entry[0] == "l":
        info.type, info.linkname = tarfile.SYMTYPE, entry[1]
    else:
        info.size = entry[1]
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padded(data):
    return data + bytes(-len(data) % BLOCK)


def _save_id():
    """A name no other save has: when, which process, and random bits."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(4).hex()}"


class _IndexBuilder:
    """The index a save writes after the tar's two end blocks, in the same stream: for every
    member its path (below the prefix), kind, size, mode, mtime, the sha256 of a file's
    content (a link's target), and where its header and data lie in the tar; the restart
    points, each a tar offset with its offset in the stored (compressed) file.

    Tar readers stop at the end blocks, so GNU tar, bsdtar and tarfile never see it. It is
    trusted only through its own sha256, which the sidecar's `# index` line records with
    where it lies (see _sidecar_indexes); a restore then verifies each file against it.
    """

    def __init__(self, prefix, first=(), deleted=None, fmt="tar"):
        self.prefix, self.first, self.deleted = prefix, list(first), deleted
        self.every = RESTART_EVERY_ZST if fmt == "zst" else RESTART_EVERY
        # the save that wrote it: two saves of the same tree (a base and the base a save
        # rotated to ARCHIVE.1) must not share an index, or its hash would not say which
        # archive it is, and so which layers are its own
        self.save = _save_id()
        self.members = []  # [path, kind, size, mode, mtime, sha256 or target, header, data]
        self.restarts = [[0, 0]]  # [tar offset, stored offset]; the stream's start is one
        self.sha256 = self.offset = self.length = None

    def restart(self, tar_offset):
        """A restart point at this member header, when the last is far enough behind."""
        if tar_offset - self.restarts[-1][0] < self.every:
            return None
        point = [tar_offset, None]
        self.restarts.append(point)
        return _Mark(point=point)

    def finish(self, end, stored_offset):
        """The index's bytes, to be stored at stored_offset (a restart point of its own)."""
        data = json.dumps({"format": INDEX_VERSION, "save": self.save,
                           "prefix": self.prefix, "end": end,
                           "first": self.first, "deleted": self.deleted,
                           "restarts": self.restarts, "members": self.members},
                          ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogateescape")
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.offset, self.length = stored_offset, len(data)
        return data


class _Mark:
    """A place in the packed stream the compressor must know of: a restart point (point:
    [tar offset, stored offset], the latter filled in by the compressor), or the index."""

    def __init__(self, point=None, index=None, end=0):
        self.point, self.index, self.end = point, index, end


def _pack(folder, prefix, entries, deleted, base_id, counter, warnings, index, carried=None):
    """The tar stream of a save: header and data pieces, one pass over the files, then the
    index (a _Mark the compressor turns into bytes once it knows the stored offsets).
    carried: the _carried_content of the entries whose stat is a _Carried, read ahead.

    A full archive starts with a global pax comment naming the save, so no two bases ever
    share a hash (layers are found by their base's hash). A layer starts with DELETED_NAME.
    """
    import tarfile
    offset = 0  # of the tar stream, for the index
    if base_id:
        comment = f"bootstrap_assets base {base_id}".encode()
        record = b" comment=" + comment + b"\n"
        length = len(record) + len(str(len(record)))
        length += len(str(length)) - len(str(len(record)))
        payload = str(length).encode() + record
        info = tarfile.TarInfo("pax_global_header")
        info.type, info.size = tarfile.XGLTYPE, len(payload)
        block = info.tobuf(tarfile.USTAR_FORMAT) + _padded(payload)
        offset += len(block)
        yield block
    if deleted is not None:
        listing = json.dumps(deleted).encode("utf-8", "surrogateescape")
        info = tarfile.TarInfo(DELETED_NAME)
        info.size, info.mtime = len(listing), int(time.time())
        block = info.tobuf(tarfile.PAX_FORMAT) + _padded(listing)
        offset += len(block)
        yield block
    for path, entry, st in entries:
        if entry[0] == "l":  # the manifest keeps the link as it is on disk
            entry = ["l", _saved_link_target(folder, path, entry[1])]
        mark = index.restart(offset)
        if mark:
            yield mark
        header = _tar_header(prefix + path, entry, st)
        record = [path, entry[0], entry[1] if entry[0] == "f" else 0, st.st_mode & 0o777,
                  int(st.st_mtime), entry[1] if entry[0] == "l" else "", offset,
                  offset + len(header)]
        index.members.append(record)
        offset += len(header)
        yield header
        if entry[0] != "f":
            continue
        if isinstance(st, _Carried):
            remaining = entry[1]
            while remaining:
                data = next(carried)
                remaining -= len(data)
                counter.bytes += len(data)
                yield data
            next(carried)  # its path, once its content matched the old index's sha256
            record[5] = st.entry.sha256
            yield bytes(-entry[1] % BLOCK)
            offset += entry[1] + (-entry[1] % BLOCK)
            continue
        remaining, hasher = entry[1], hashlib.sha256()
        try:
            with open(os.path.join(folder, path), "rb", buffering=0) as f:
                while remaining:
                    data = f.read(min(CHUNK, remaining))
                    if not data:
                        break
                    remaining -= len(data)
                    counter.bytes += len(data)
                    hasher.update(data)
                    yield data
        except FileNotFoundError:
            pass
        if remaining:  # the file shrank or vanished while we read it: keep the tar well-formed
            warnings.append(f"{path} changed while it was saved; the next save takes it again")
            hasher.update(bytes(remaining))
            yield bytes(remaining)
        record[5] = hasher.hexdigest()
        yield bytes(-entry[1] % BLOCK)
        offset += entry[1] + (-entry[1] % BLOCK)
    yield bytes(2 * BLOCK)
    yield _Mark(index=index, end=offset)


# ------------------------------------------------------------------------ save: compress --
def _coalesced(pieces):
    """Join small pieces (tar headers, small files) so the stages hand over ~1 MiB at a
    time; a _Mark passes through in its place."""
    pending, size = [], 0
    for piece in pieces:
        if isinstance(piece, _Mark):
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            yield piece
            continue
        if len(piece) >= CHUNK and not pending:
            yield piece
            continue
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _compressed(pieces, fmt, level):
    """The stored stream: the tar as it is, or compressed. At each restart point and before
    the index a gzip stream is fully flushed (its bytes from there decompress alone, as raw
    deflate) but stays one gzip member: tarfile's stream mode (`r|gz`) stops at a second
    member. A zstd stream starts a new frame there (frames in a row are one zstd stream to
    every reader, and each decompresses alone)."""
    if fmt == "zst" and _zstd_module is None:
        yield from _zstd_frames(pieces, level)
        return
    stored, compressor, flush = 0, None, None
    if fmt == "gz":
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        flush = lambda: compressor.flush(zlib.Z_FULL_FLUSH)  # noqa: E731
    elif fmt == "zst":
        compressor = _zstd_module.ZstdCompressor(level)
        flush = lambda: compressor.flush(_zstd_module.ZstdCompressor.FLUSH_FRAME)  # noqa: E731
    for piece in pieces:
        if isinstance(piece, _Mark):
            if flush:
                out = flush()
                stored += len(out)
                yield out
            if piece.point is not None:
                piece.point[1] = stored
                continue
            piece = piece.index.finish(piece.end, stored)
        if compressor is None:
            stored += len(piece)
            yield piece
            continue
        out = compressor.compress(piece)
        if out:
            stored += len(out)
            yield out
    if compressor is not None:
        yield compressor.flush()


def _zstd_frames(pieces, level):
    """zstd through the `zstd` program, which cannot end a frame on demand: one process,
    so one frame, from each restart point to the next (they are RESTART_EVERY_ZST apart),
    and one for the index."""
    zstd = shutil.which("zstd")
    if not zstd:
        raise Unsupported("--format zst needs Python 3.14+ or a `zstd` program; this "
                          "machine has neither. Use --format gz, or apt-get install zstd.")
    pieces, stored, mark = iter(pieces), 0, [None]

    def frame():  # the pieces up to the next mark (read by _external_program's feeder)
        mark[0] = None
        for piece in pieces:
            if isinstance(piece, _Mark):
                mark[0] = piece
                return
            yield piece

    def compressed(chunks):
        return _external_program([zstd, "-qc", f"-{level}", "-T0"], chunks,
                                 lambda message: BootstrapError(f"zstd failed: {message}"))
    while True:
        for out in compressed(frame()):
            stored += len(out)
            yield out
        if mark[0] is None:
            return
        if mark[0].point is not None:
            mark[0].point[1] = stored
            continue
        data = mark[0].index.finish(mark[0].end, stored)
        for out in compressed(iter([data])):
            stored += len(out)
            yield out


def _choose_format(folder, entries, fmt, level):
    """--format auto: gzip only pays when the data compresses; images and weights don't.

    A sample of 32 pieces of 64 KiB, spread evenly over the folder's bytes, is compressed with
    gzip level 1: if that saves under 10 %, the archive is a plain tar (fastest to write and
    to restore, and restorable everywhere); otherwise gzip, at --level if given, else 1.
    """
    if fmt != "auto":
        return fmt, level if level is not None else DEFAULT_LEVELS[fmt]
    files = [(path, entry[1]) for path, entry, _ in entries if entry[0] == "f" and entry[1]]
    total = sum(size for _, size in files)
    if not total:
        return "tar", 0
    sample, packed, position, k = 0, 0, 0, 0
    targets = [total * i // 32 for i in range(32)]
    for path, size in files:
        while k < len(targets) and targets[k] < position + size:
            try:
                with open(os.path.join(folder, path), "rb") as f:
                    f.seek(targets[k] - position)
                    data = f.read(64 << 10)
            except OSError:
                data = b""
            sample += len(data)
            packed += len(zlib.compress(data, 1))
            k += 1
        position += size
    if not sample or packed / sample > 0.90:
        return "tar", 0
    return "gz", level if level is not None else DEFAULT_LEVELS["gz"]


# --------------------------------------------------------------------------- save: write --
class _OutputFile:
    """One new file on the mount: written, hashed, fsynced, closed, and read back."""

    def __init__(self, path, verify, retry_for, fd=None):
        self.path, self.size = path, 0
        self.hasher = hashlib.sha256()
        self.fd = _create(path) if fd is None else fd
        self.reader = _ReadBack(path, retry_for) if verify else None

    def write(self, view):
        self.hasher.update(view)
        self.size += len(view)
        while view:
            view = view[os.write(self.fd, view):]
        if self.reader:
            self.reader.advance(self.size)

    def close(self):
        """fsync and close the file, so the mount can upload it and evict its local copy."""
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None

    def verified(self):
        """The file's sha256, once what reads back from the mount is compared with it."""
        digest = self.hasher.hexdigest()
        if self.reader:
            back, self.reader = self.reader.digest(self.size), None
            if back != digest:
                raise ChecksumMismatch(
                    f"The archive written to {self.path} does not read back as written (sha256 "
                    f"{digest} written, {back} read): the mount is corrupting data. The "
                    f"previous archive is untouched; try again, or remount Drive.")
        return digest

    def abandon(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.reader:
            self.reader.abandon()
            self.reader = None


def _create(path, replace=False, mode=0o644):
    """A new file, opened for writing. replace: one of that name (a dead run's temporary)
    is emptied, not an error."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
                   | getattr(os, "O_CLOEXEC", 0), mode)


class _Creating(_Background):
    """Creates a file while other work goes on (the next part's while this part is written,
    a sidecar's while the steps before it run): a create is a round trip on Drive's mount,
    which the writer then does not wait for."""

    def __init__(self, path, replace=False, mode=0o644):
        self.path = path
        super().__init__(lambda: _create(path, replace, mode), "create")

    def discard(self):
        self.join()
        if self.value is not None:
            os.close(self.value)
            os.unlink(self.path)


def _write_archive(pieces, path_of, part_size, verify, retry_for, progress, share=None):
    """Write the stream to new files on the mount: file k at path_of(k), each at most
    part_size bytes (0: one file), each closed as soon as it is full. A part's read-back
    finishes while the next part is written: the writer never waits for it but at the end.
    The progress counts the bytes written; share() says how far the input is, when
    progress has no total.

    -> (sha256 of the whole stream, its size, [(path, sha256, size) for each file]). On
    failure the files written so far are removed.
    """
    whole, written = hashlib.sha256(), 0
    outputs, files = [], []  # every file opened; (path, sha256, size) of the verified ones
    creating = None  # the next part's file, made once this part is three quarters full

    def close_current():
        outputs[-1].close()
        if len(outputs) > 1:  # the part before has had this part's time to read back
            files.append((outputs[-2].path, outputs[-2].verified(), outputs[-2].size))

    try:
        for piece in pieces:
            whole.update(piece)
            written += len(piece)
            view = memoryview(piece)
            while view:
                if not outputs or outputs[-1].fd is None:
                    if len(outputs) == 9999:
                        raise UsageError(f"The archive needs more than 9999 parts of "
                                         f"{_human(part_size)}: use a larger --part-size.")
                    fd, creating = (creating.result() if creating else None), None
                    outputs.append(_OutputFile(path_of(len(outputs) + 1), verify, retry_for,
                                               fd))
                current = outputs[-1]
                room = part_size - current.size if part_size else len(view)
                current.write(view[:room])
                view = view[room:]
                if part_size and not creating and current.size >= part_size * 3 // 4 \
                        and len(outputs) < 9999:
                    creating = _Creating(path_of(len(outputs) + 1))
                if part_size and current.size == part_size:
                    close_current()
            progress.update(written, None, share=share() if share else None)
        if creating:  # the stream ended with the part that asked for it
            creating, unused = None, creating
            unused.discard()
        if not outputs:
            outputs.append(_OutputFile(path_of(1), verify, retry_for))
        if outputs[-1].fd is not None:
            close_current()
        files.append((outputs[-1].path, outputs[-1].verified(), outputs[-1].size))
        progress.update(written, None, force=True, share=1.0 if share else None)
    except BaseException:
        if creating:
            try:
                creating.discard()
            except OSError:
                pass
        for output in outputs:
            output.abandon()
            try:
                os.unlink(output.path)
            except OSError:
                pass
        raise
    return whole.hexdigest(), written, files


def _check_room(archive, nbytes):
    folder = os.path.dirname(archive)
    free = _free_bytes(folder)
    if nbytes > free:
        raise _no_space(_mount_point(folder), f"to save {archive}",
                        f"about {_human(nbytes)} is needed", f"{_human(free)} is free",
                        "Free some space on Drive (empty its trash too). Nothing was written.")


def _check_local_room(job, estimate, layer=False, reading=0):
    """Refuse a save whose file would not fit in Drive's cache on the local disk: the mount
    keeps a local copy of a file being written until it is closed and uploaded, and of one
    being read (reading: what a partial folder's full save reads of its archive at once,
    see _carry_in_cache) until it is closed."""
    if job.cache is None:
        return
    one_file = layer or not job.part_size or estimate <= job.part_size
    in_cache = (estimate if one_file else 2 * job.part_size) + reading
    free, reclaimable = _free_bytes(job.dest), job.cache.reclaimable()
    if in_cache + SPACE_MARGIN <= free + reclaimable:
        return
    fix = ("save with --part-size 1G (parts of 1 GiB pass through the cache one or two at "
           "a time)" if one_file and not layer else "use a smaller --part-size")
    if reading:
        fix += (", or split the archive the folder was restored from into parts (python "
                "bootstrap_assets.py split)")
    raise _no_space(None, f"to save {job.archive}", f"Drive keeps a local copy of a file "
                    f"being written or read on {_mount_point(job.dest)} until it is closed, "
                    f"and this save would hold about {_human(in_cache)} there",
                    f"{_human(free)} is free, with {_human(reclaimable)} more held by Drive's "
                    f"cache ({job.cache.folder})",
                    f"Nothing was written. Fix: {fix}, or free some local space.")


def _write_stream(job, temporary, prefix, entries, deleted, base_id, fmt, level, total,
                  index, write=None, chain=None):
    """walk -> tar -> compress -> hash -> write, each stage in its own thread.
    temporary(k): the name of written file k (the parts, in order); write(pieces, progress,
    share): what writes elsewhere than to files (a bucket's upload); index: the
    _IndexBuilder that records the stream (its sha256 and place once written); chain: the
    archives the entries carried over from a partial folder's archive come from, read in
    a stage of their own, ahead of the pack, while it writes (see _unrestored)."""
    folder = os.path.dirname(job.archive)
    counter = _Counter()
    progress = _Progress(f"saving {os.path.basename(job.archive)}", total, job.quiet)
    # the carried files are read this far ahead (and their stream's own READ_AHEAD_DEPTH):
    # while the pack reads held files from the local disk, the mount's reads, which the
    # read-back shares, would otherwise sit idle
    stages = [_Stage(lambda: _batched(_carried_content(chain, entries)), "carry",
                     READ_AHEAD_DEPTH)] if chain else []
    carried = itertools.chain.from_iterable(stages[0]) if chain else None
    packed = _Stage(lambda: _coalesced(_pack(job.dest, prefix, entries, deleted, base_id,
                                             counter, job.warnings, index, carried)), "pack")
    stages.append(packed)
    if fmt != "tar":
        stages.append(_Stage(lambda: _compressed(packed, fmt, level), "compress"))
    stored = stages[-1] if fmt != "tar" else _compressed(packed, fmt, level)
    share = lambda: counter.bytes / total if total else 1.0  # noqa: E731
    try:
        if write:
            return write(stored, progress, share)
        return _write_archive(stored, lambda k: os.path.join(folder, temporary(k)),
                              job.part_size, job.verify, job.retry_for, progress, share)
    finally:
        for stage in reversed(stages):
            stage.close()
        progress.close()


# ----------------------------------------------------------------------- save: read back --
class _NotReadableYet(Exception):
    """Bytes the writer wrote that a reader of the mount does not see yet."""


class _ReadBack:
    """Reads the file being written back from the mount, trailing the writer, and hashes it.

    Reads and writes have separate bandwidth on a Drive mount, so verifying this way costs
    little more than the write itself. Cached pages are dropped first, so the bytes come
    from the mount, not from this machine's memory.
    """

    def __init__(self, path, retry_for):
        self.path, self.retry_for = path, retry_for
        self.hasher = hashlib.sha256()
        self.target, self.final = 0, False
        self.error = None
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="read-back", daemon=True)
        self.thread.start()

    def advance(self, written, final=False):
        with self.ready:
            self.target, self.final = written, final
            self.ready.notify()

    def _run(self):
        """The reading thread: hash what the writer has written so far, as it advances,
        retrying reads the mount cannot serve yet; keep the error for digest()."""
        offset, self.fd = 0, None
        try:
            while True:
                with self.ready:
                    while offset >= self.target and not self.final:
                        self.ready.wait()
                    if offset >= self.target and self.final:
                        return
                    want = min(CHUNK, self.target - offset)
                # Short first waits: bytes just written may take a moment to be readable.
                data = _retried(lambda: self._read(offset, want), self.retry_for,
                                (OSError, _NotReadableYet), self._judge, self._give_up,
                                first=0.01)
                self.hasher.update(data)
                offset += len(data)
        except BaseException as exc:
            self.error = exc
        finally:
            if self.fd is not None:
                os.close(self.fd)

    def _read(self, offset, want):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, offset, want, os.POSIX_FADV_DONTNEED)
        data = os.pread(self.fd, want, offset)
        if not data:  # written, but not visible to readers yet
            raise _NotReadableYet(f"the {want:,} bytes written at offset {offset:,} cannot "
                                  f"be read")
        return data

    def _judge(self, exc):
        if isinstance(exc, OSError):
            if exc.errno not in TRANSIENT_ERRNOS:
                raise exc
            if self.fd is not None:  # the mount may have dropped the file: open it anew
                os.close(self.fd)
                self.fd = None
        return 0.0

    @staticmethod
    def _give_up(exc):
        return exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc))

    def digest(self, written):
        self.advance(written, final=True)
        self.thread.join()
        if self.error is not None:
            raise BootstrapError(f"Reading {self.path} back to verify it failed: "
                                 f"{self.error}. The previous archive is untouched.")
        return self.hasher.hexdigest()

    def abandon(self):
        self.advance(0, final=True)
        self.thread.join()


# ------------------------------------------------------------------------- save: publish --
def _sidecar_temporary(archive):
    """The temporary file of the next sidecar, created in the background (see _Creating):
    the caller does its other round trips on the mount meanwhile."""
    return _Creating(f"{archive}.sha256.tmp-{os.getpid()}", replace=True, mode=0o666)


def _write_sidecar(archive, entries, part_sets, identities, journal=None, indexes=None,
                   temporary=None):
    """Replace ARCHIVE.sha256 atomically (write a temporary file, fsync, rename over).
    temporary: its _sidecar_temporary, when the caller started it."""
    temporary = temporary or _sidecar_temporary(archive)
    try:
        lines = _sidecar_text(entries, part_sets, identities, journal, indexes)
    except BaseException:
        temporary.discard()
        raise
    with open(temporary.result(), "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary.path, archive + ".sha256")


def _carry_out(archive, journal, identities, indexes):
    """Do a journal's steps, then write the sidecar it leads to: remove the files of the
    versions that drop out (the journal's "drops"), rename (the oldest kept version first,
    the new files last), remove what no version needs any more ("deletes"). The journal's
    keys are its format, read by the next run whatever its version, so they stay as named.

    Each step is safe to repeat after a crash: it touches a file only if the file still has
    the size and mtime the journal recorded for it (a name refilled by a later rename holds
    another file), and a rename whose target exists is done.
    """
    folder = os.path.dirname(archive)
    entries = {name: set(hashes) for name, hashes in journal["after"].items()}
    part_sets = {name: {(whole, tuple(hashes) if hashes else None) for whole, hashes in states}
                 for name, states in journal["parts"].items()}

    def recorded(name, size, mtime_ns):
        try:
            st = os.lstat(os.path.join(folder, name))
        except FileNotFoundError:
            return False
        return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)

    temporary = _sidecar_temporary(archive)  # made while the steps below run
    try:
        for name, size, mtime_ns in journal["drops"]:
            if recorded(name, size, mtime_ns):
                os.unlink(os.path.join(folder, name))
        for source, target, size, mtime_ns in journal["moves"]:
            if not os.path.lexists(os.path.join(folder, target)) and recorded(source, size,
                                                                              mtime_ns):
                os.rename(os.path.join(folder, source), os.path.join(folder, target))
        for name, size, mtime_ns in journal["deletes"]:
            if recorded(name, size, mtime_ns):
                os.unlink(os.path.join(folder, name))
    except BaseException:
        temporary.discard()
        raise
    _write_sidecar(archive, entries, part_sets, identities, indexes=indexes,
                   temporary=temporary)


def _finish_interrupted(archive, retry_for):
    """Finish the moves of a save or split that died in the middle of them (its journal is in
    the sidecar), so the next one starts from whole versions under their own names; return
    the sidecar's bytes then (None: there is none)."""
    content = _read_sidecar(archive, retry_for, raw=True)
    journal = _sidecar_journal(content)
    if not journal:
        return content
    _carry_out(archive, journal, _sidecar_identities(content), _sidecar_indexes(content))
    return _read_sidecar(archive, retry_for, raw=True)


def _publish(archive, written, final_name, digest, rotate, keep, content, known=None,
             index=None):
    """Move a written and verified version into place, keeping `keep` previous versions.

    written: [(temporary path, sha256, size)], one file or the parts in order; digest: the
    sha256 of the whole stream; content: the sidecar's bytes (None: there is none), which
    the caller read after finishing any interrupted journal.

    Crash safety, whatever instant the process dies: the sidecar is first replaced by one
    that lists, for every name about to change, both its current and its future hash, and a
    journal of the renames and deletions to come; only then are files renamed (versions
    shift up one, the current archive becomes .1, the new files take its name), then
    versions beyond `keep` (and layers of no kept base) deleted, then the sidecar is
    replaced by the final one. So every name always holds a complete file whose hash the
    sidecar accepts; a restore that finds no current archive (the instant between the two
    last renames) takes .1; a version stored as parts and caught halfway through its renames
    is found through the journal (see _archive_files); and the next save first finishes the
    journal (_finish_interrupted). The renames of one version run at once (each is a round
    trip on Drive's mount), but a new version's part 0001 moves in last, so its name is
    complete once part 0001 is there. Layers are named after their base's hash, so rotating
    a base never separates it from its layers. index: the written stream's _IndexBuilder,
    for its `# index` line (the lines of the versions kept are carried over).
    """
    folder = os.path.dirname(archive)
    content = content or b""
    before = {name: set(hashes) for name, hashes in
              (_sidecar_entries(content, archive + ".sha256") if content else {}).items() if name}
    sets_before = _sidecar_part_sets(content)
    names = set(os.listdir(folder))
    for name, hashes in (known or {}).items():
        if name not in names and _part_numbers(names, name):
            sets_before.setdefault(name, {(h, None) for h in hashes})
        else:
            before.setdefault(name, set(hashes))
    identities = _sidecar_identities(content)
    indexes = _sidecar_indexes(content)
    if index is not None and index.offset is not None:
        indexes[digest] = [index.sha256, index.offset, index.length]
    for name, hashes in before.items():
        try:
            st = os.stat(os.path.join(folder, name))
        except FileNotFoundError:
            continue
        here = [st.st_size, st.st_mtime_ns]
        if len(hashes) > 1:  # a save died mid-swap: the file's identity tells which it holds
            matching = {d for d in hashes if identities.get(d) == here}
            if len(matching) == 1:
                hashes.intersection_update(matching)
        if len(hashes) == 1:
            identities[next(iter(hashes))] = here
    for path, file_digest, _ in written:
        st = os.stat(path)
        identities[file_digest] = [st.st_size, st.st_mtime_ns]

    def recorded(name):
        st = os.lstat(os.path.join(folder, name))
        return [st.st_size, st.st_mtime_ns]

    new_files = [(os.path.basename(path), file_digest) for path, file_digest, _ in written]
    plan = _plan_publish(archive, names, before, sets_before, new_files, final_name, digest,
                         rotate, keep, recorded)
    _write_sidecar(archive, plan.transition, plan.part_sets_transition, identities, plan.journal,
                   indexes)
    _carry_out(archive, plan.journal, identities, indexes)
    return plan.kept


class _PublishPlan(_Record):
    """What _plan_publish worked out: the journal _carry_out follows, what the sidecar
    accepts meanwhile (each name's hashes before and after; the same for part sets), and
    the names of the versions kept."""

    journal: dict
    transition: dict
    part_sets_transition: dict
    kept: list


def _plan_publish(archive, names, before, sets_before, written, final_name, digest, rotate,
                  keep, recorded):
    """The journal of a publish, worked out without touching the filesystem.

    names: the file names in the archive's folder; before: {name: hashes the sidecar
    accepts for it now}; sets_before: the same for versions stored as parts ({name: {(whole,
    part hashes)}}); written: [(temporary file name, sha256)] of the new version, one file
    or its parts in order; recorded(name): [size, mtime_ns] of a file there now, which the
    journal records so that each step touches only the file it meant.

    Files are removed at two moments, each a list of names in the journal: "drops", before
    the renames (the versions that would shift past `keep`: the new version is verified by
    then, and deleting saves renaming them first), and "deletes", after them (with keep 0
    the version that just became .1, and the layers of no kept base).
    """
    base = os.path.basename(archive)
    new_hashes = dict(written)
    moves, version_moves = [], []  # (file, new name); (version, new version)
    versions_removed_first = []
    if rotate:
        oldest = _versions_among(names, base)
        versions_removed_first = [f"{base}.{i}" for i in range(max(keep, 1), oldest + 1)]
        version_moves = [(f"{base}.{i}", f"{base}.{i + 1}")
                         for i in range(min(oldest, keep - 1), 0, -1)]
        if _version_files(names, base):
            version_moves.append((base, f"{base}.1"))
        moves += [(name, target + name[len(source):])
                  for source, target in version_moves
                  for name in _version_files(names, source)]
    renamed = [(name, _part_name(final_name, k) if len(written) > 1 else final_name)
               for k, (name, _) in enumerate(written, 1)]
    moves += renamed[1:] + renamed[:1]  # part 0001 last: its name complete once it is there
    removed_first = [name for version in versions_removed_first
                     for name in _version_files(names, version)]
    after = {name: set(hashes) for name, hashes in before.items() if name not in removed_first}
    sets_after = {name: set(states) for name, states in sets_before.items()
                  if name not in versions_removed_first}
    names_after = set(names) - set(removed_first)
    for source, target in moves:
        after.pop(target, None)
        moved = {new_hashes[source]} if source in new_hashes else before.get(source, set())
        after.pop(source, None)
        if moved:
            after[target] = set(moved)
        names_after.discard(source)
        names_after.add(target)
    for source, target in version_moves:
        sets_after.pop(target, None)
        if source in sets_before:
            sets_after[target] = set(sets_before[source])
        sets_after.pop(source, None)
    sets_after.pop(final_name, None)
    if len(written) > 1:
        sets_after[final_name] = {(digest, tuple(d for _, d in written))}
    versions_removed_last = []  # with keep 0, the current version, once it is .1
    while rotate and _version_files(names_after,
                                    f"{base}.{keep + 1 + len(versions_removed_last)}"):
        versions_removed_last.append(f"{base}.{keep + 1 + len(versions_removed_last)}")
    removed_last = [name for version in versions_removed_last
                    for name in _version_files(names_after, version)]
    for version in versions_removed_last:
        sets_after.pop(version, None)
    kept_bases = {name: after.get(name, set()) | {w for w, _ in sets_after.get(name, ())}
                  for name in [base] + [f"{base}.{i}" for i in range(1, keep + 1)]
                  if _version_files(names_after, name)}
    if (removed_first or versions_removed_last) and all(kept_bases.values()):
        # every kept base's hash is known: the layers of no kept base can go
        kept_prefixes = {_layer_prefix(archive, d) for hashes in kept_bases.values()
                         for d in hashes}
        removed_last += sorted(name for name in names_after if LAYER_INFIX in name
                               and name.startswith(base + ".") and ".tmp-" not in name
                               and not any(name.startswith(p) for p in kept_prefixes))
    for name in removed_last:
        after.pop(name, None)
    transition = {name: before.get(name, set()) | after.get(name, set())
                  for name in set(before) | set(after)}
    sets_transition = {name: sets_before.get(name, set()) | sets_after.get(name, set())
                       for name in set(sets_before) | set(sets_after)}
    origin = {target: source for source, target in moves}  # a rename keeps size and mtime
    journal = {"drops": [[name] + recorded(name) for name in removed_first],
               "moves": [[source, target] + recorded(source) for source, target in moves],
               "deletes": [[name] + recorded(origin.get(name, name)) for name in removed_last],
               "after": {name: sorted(hashes) for name, hashes in after.items()},
               "parts": {name: [[whole, list(hashes) if hashes else None]
                                for whole, hashes in sorted(states, key=str)]
                         for name, states in sets_after.items()}}
    return _PublishPlan(journal=journal, transition=transition,
                        part_sets_transition=sets_transition, kept=sorted(kept_bases))


def _clean_stale_temporaries(archive, content=False, names=None):
    """Remove temporary files of saves that died (we hold the lock, so none is live), but
    none that a journal still has to move into place. content: the sidecar's bytes, and
    names: the folder's listing, when the caller has them."""
    folder, base = os.path.dirname(archive), os.path.basename(archive)
    try:
        if content is False:
            content = _read_sidecar(archive, 0, raw=True)
        journal = _sidecar_journal(content) or {}
    except BootstrapError:
        journal = {}
    pending = {move[0] for move in journal.get("moves", [])}
    for name in os.listdir(folder) if names is None else names:
        if name.startswith(base + ".") and ".tmp-" in name and name not in pending:
            os.unlink(os.path.join(folder, name))


def _flush_if_asked(flush_drive, drive_mount):
    """Colab uploads after files are closed; flushing waits for that upload to finish."""
    if flush_drive:
        from google.colab import drive
        drive.flush_and_unmount()
        drive.mount(drive_mount)


# ------------------------------------------------------------- save: publish to a bucket --
def _save_to_bucket(job, entries, incremental):
    """A save to a bucket: a layer of the changes, or a full archive (see _layer_plan)."""
    store = _bucket(job.archive, job.retry_for)
    name = store.key
    manifest = {path: entry for path, entry, _ in entries}
    marker = _read_marker(job.dest)
    recorded = (marker or {}).get("archive", {})
    content = store.read(name + ".sha256")
    sidecar = _sidecar_entries(content, store.address(name + ".sha256")) if content else {}
    current = store.head(name)
    chain = None
    if current:
        chain = [{"path": job.archive, **current}] + [
            identity for _, identity in _layers_of(job.archive, recorded.get("sha256"),
                                                   sidecar, job.retry_for, store)]
    same_chain = bool(marker) and chain is not None and recorded.get("chain") == chain
    if same_chain and marker["manifest"] == manifest and incremental != "never":
        return SaveResult(action="unchanged", archive=job.archive,
                          seconds=time.monotonic() - job.started, warnings=job.warnings)
    plan = _layer_plan(job.dest, entries, marker, chain, incremental) if same_chain else None
    carry = None
    if not plan and (marker or {}).get("only"):
        plan, carry = _partial_full(job, marker, entries, content, chain, same_chain,
                                    incremental)
    store.clean_stale(name)
    if plan:
        return _save_layer_to_bucket(job, store, plan, manifest, recorded, chain, content)
    fmt, level = _full_format(job, entries, carry)
    entries, sources, only = _union(job, entries, manifest, carry)
    total = _file_bytes(entries)
    base_id = _save_id()
    top = os.path.basename(job.dest)
    index = _IndexBuilder(top + "/", job.first, fmt=fmt)
    digest, size, temporary = _upload_verified(job, store, top + "/", entries, None, base_id,
                                               fmt, level, total, index, sources)
    try:
        versions = _publish_in_bucket(store, temporary, digest, size, job.keep, content,
                                      index)
    except BaseException:
        _drop_temporary(store, temporary)
        raise
    published = store.head(name)
    chain = [{"path": job.archive, **published}]
    _write_marker(job.dest, dict({"archive": {"identity": chain[0], "chain": chain,
                                              "sha256": digest, "verified": True,
                                              "checksum_source": "sidecar", "format": fmt,
                                              "prefix": top},
                                  "manifest": manifest}, **only))
    return SaveResult(action="saved", archive=job.archive, written=job.archive,
                      bytes_written=size, bytes_packed=total,
                      files=_file_count(entries), carried=_carried_files(carry),
                      seconds=time.monotonic() - job.started, sha256=digest, format=fmt,
                      verified=job.verify, versions=versions, warnings=job.warnings,
                      index_sha256=index.sha256 if index.offset is not None else None)


def _upload_verified(job, store, prefix, entries, deleted, base_id, fmt, level, total, index,
                     chain=None):
    """Pack and upload to a new temporary key and verify it there -> (sha256, size, key);
    on failure the temporary object is removed (or left for the next save's clean_stale).
    chain: see _write_stream."""
    temporary = f"{store.key}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        digest, size = _write_stream(job, None, prefix, entries, deleted, base_id, fmt, level,
                                     total, index, lambda pieces, progress, share:
                                     store.upload(temporary, pieces, progress, share), chain)
        _verify_in_bucket(job, store, temporary, digest, size)
    except BaseException:
        _drop_temporary(store, temporary)
        raise
    return digest, size, temporary


def _drop_temporary(store, temporary):
    try:
        store.delete(temporary)
    except BootstrapError:
        pass  # the next save removes it (clean_stale)


def _save_layer_to_bucket(job, store, plan, manifest, recorded, chain, content):
    """Upload the changes as the next layer of the base, KEY.<base hash>.layer-N: a new
    name, so no version shifts. The layer is copied into place complete, and only then
    does the sidecar name it: restore applies no layer its sidecar does not name."""
    changed, deleted, number = plan["changed"], plan["deleted"], plan["number"]
    fmt, level = _choose_format(job.dest, changed, job.format, job.level)
    total = _file_bytes(changed)
    folder = store.key.rpartition("/")[0]
    name = f"{_layer_prefix(store.key, recorded['sha256'])}{number}"
    key = f"{folder}/{name}" if folder else name
    index = _IndexBuilder(plan["prefix"], job.first, deleted, fmt)
    digest, size, temporary = _upload_verified(job, store, plan["prefix"], changed, deleted,
                                               None, fmt, level, total, index)
    where = store.address(store.key + ".sha256")
    entries = {n: set(h) for n, h in
               (_sidecar_entries(content, where) if content else {}).items() if n}
    # A base restored without a sidecar line gets one: its hash was computed as it was read.
    entries.setdefault(store.key.rpartition("/")[2], {recorded["sha256"]})
    indexes = _sidecar_indexes(content)
    if index.offset is not None:
        indexes[digest] = [index.sha256, index.offset, index.length]
    try:
        if name in entries:  # a line left by a layer since removed: unnamed before replaced
            del entries[name]
            store.put(store.key + ".sha256",
                      _sidecar_text(entries, {}, {}, indexes=indexes).encode())
        store.copy(temporary, key, size)
        entries[name] = {digest}
        store.put(store.key + ".sha256",
                  _sidecar_text(entries, {}, {}, indexes=indexes).encode())
    finally:
        _drop_temporary(store, temporary)
    address = store.address(key)
    chain = chain + [{"path": address, **store.head(key)}]
    _write_marker(job.dest, dict({"archive": dict(recorded, chain=chain), "manifest": manifest},
                                 **_held_after_layer(_read_marker(job.dest), manifest)))
    return SaveResult(action="layer", archive=job.archive, layer=number, written=address,
                      bytes_written=size, bytes_packed=total, deleted=len(deleted),
                      files=_file_count(changed), format=fmt,
                      seconds=time.monotonic() - job.started, sha256=digest,
                      verified=job.verify, warnings=job.warnings,
                      index_sha256=index.sha256 if index.offset is not None else None)


def _verify_in_bucket(job, store, temporary, digest, size):
    """Read the uploaded object back (ranged, in parallel) and compare its hash with the
    one computed as it was uploaded; with --no-verify, compare only its size."""
    if not job.verify:
        held = store.head(temporary)
        if held is None or held["size"] != size:
            raise ChecksumMismatch(f"The store holds {held['size'] if held else 'nothing'} "
                                   f"bytes at {store.address(temporary)}, {size:,} were "
                                   f"uploaded. The previous archive is untouched; save again.")
        return
    source = _open_source(store.address(temporary), job.retry_for, None)
    hasher = hashlib.sha256()
    for data in source.chunks():
        hasher.update(data)
    if hasher.hexdigest() != digest:
        raise ChecksumMismatch(
            f"The archive uploaded to {store.address(temporary)} does not read back as "
            f"written (sha256 {digest} written, {hasher.hexdigest()} read). The previous "
            f"archive is untouched; save again.")


def _publish_in_bucket(store, temporary, digest, size, keep, content, index):
    """Put a verified upload in place, keeping `keep` previous versions, by server-side
    copies (a store has no rename), each complete or not at all.

    First the sidecar is replaced by one accepting, for every name about to change, both
    what it holds and what it will hold; then the versions shift up one by copies (the
    oldest first overwritten), the current archive is copied to KEY.1 and the upload to
    KEY; then what is beyond `keep` and the temporary object are deleted and the final
    sidecar written. So at every instant each name holds a complete object its sidecar
    accepts, and the current archive is replaced only by a verified one. Layers of a base
    no longer kept go with it. index: the upload's _IndexBuilder, for its `# index` line."""
    name = store.key
    indexes = _sidecar_indexes(content)
    if index.offset is not None:
        indexes[digest] = [index.sha256, index.offset, index.length]
    before = {key: set(hashes) for key, hashes in
              (_sidecar_entries(content, store.address(name + ".sha256")) if content
               else {}).items() if key}
    folder = name.rpartition("/")[0]
    keys = [key.rpartition("/")[2] for key in store.keys(name)]
    base = name.rpartition("/")[2]
    oldest = _versions_among(keys, base)
    moves = [(f"{base}.{i}", f"{base}.{i + 1}") for i in range(min(oldest, keep - 1), 0, -1)]
    if base in keys:
        moves.append((base, f"{base}.1"))
    versions = {base} | {f"{base}.{i}" for i in range(1, max(oldest, keep) + 1)}
    after = {key: hashes for key, hashes in before.items() if key not in versions}
    for source, target in moves:
        if before.get(source):
            after[target] = set(before[source])
    after[base] = {digest}
    doomed = [f"{base}.{i}" for i in range(keep + 1, oldest + 1)]
    kept = ({base} | {target for _, target in moves} |
            {f"{base}.{i}" for i in range(1, min(oldest, keep) + 1)})
    orphans = _orphan_layers(base, keys, [after.get(key) for key in sorted(kept)])
    for key in orphans:
        after.pop(key, None)
    transition = {key: before.get(key, set()) | after.get(key, set())
                  for key in set(before) | set(after)}

    def full(key):
        return f"{folder}/{key}" if folder else key
    store.put(name + ".sha256", _sidecar_text(transition, {}, {}, indexes=indexes).encode())
    for source, target in moves:
        held = store.head(full(source))
        if held is not None:
            store.copy(full(source), full(target), held["size"])
    store.copy(temporary, name, size)
    for key in doomed + orphans:
        store.delete(full(key))
    store.delete(temporary)
    store.put(name + ".sha256", _sidecar_text(after, {}, {}, indexes=indexes).encode())
    return sorted({base} | {target for _, target in moves})


def _orphan_layers(base, names, kept_hashes):
    """The layers among names whose base is none of the kept versions (kept_hashes: the
    hashes each kept version may have), last layer first so that what remains of a chain
    never has a gap; none while a kept version's hash is unknown."""
    if not all(kept_hashes):
        return []
    prefixes = tuple(_layer_prefix(base, digest) for hashes in kept_hashes for digest in hashes)
    layers = [n for n in names if n.startswith(base + ".") and LAYER_INFIX in n and
              ".tmp-" not in n and n.rpartition(LAYER_INFIX)[2].isdigit()]
    return sorted((n for n in layers if not n.startswith(prefixes)),
                  key=lambda n: (n.rpartition(LAYER_INFIX)[0],
                                 -int(n.rpartition(LAYER_INFIX)[2])))


# ------------------------------------------------------------------------------- restore --
class _Restoring(_Record):
    """One restore's settings and what restore() decided, as its steps need them."""

    source: object  # the opened archive (_PathSource, _HttpSource, ...)
    archive: str
    dest: str
    state: str  # of dest before: "absent", "empty", "ours", "incomplete" or "foreign"
    sidecar: dict  # {name: hashes} of the archive's checksum file
    expected: frozenset = None  # the hashes the archive may have (None: not verified)
    checksum_source: str = None  # "--sha256" or "sidecar"
    engine: str = "python"
    force: bool = False
    quiet: bool = False
    retry_for: float = DEFAULT_RETRY_FOR
    drive_mount: str = None
    space: tuple = (0, 0)  # (reclaimable, in_cache): see _restore_space_plan
    events: object = None  # a RestoreJob told of each file installed, or None
    moved_aside: str = None
    only: list = []  # restore --only: the patterns asked for now ([]: everything)
    marker: dict = None  # dest's marker, when it has one


def restore(archive=None, dest=None, *, sha256=None, force=False, engine=None, quiet=False,
            drive_mount=None, lock_timeout=DEFAULT_LOCK_TIMEOUT, retry_for=DEFAULT_RETRY_FOR,
            version=0, drive_cache=None, connections=DEFAULT_CONNECTIONS, background=False,
            only=None):
    """Make dest a verified copy of the archive's contents; return a RestoreResult.

    When dest does not exist yet and the archive has an index its checksum vouches for,
    each file appears at its final path as soon as it is verified (the marker says
    "restoring" until the end). background=True returns a RestoreJob at once, to wait on
    (job.wait("weights/")) or iterate (job.files("images/**")) while the restore runs.

    archive: a path (any mount) or an http(s) URL; dest: the folder to create or replace;
    version: 0 for the current archive, N for the Nth previous one kept by save (ARCHIVE.N;
    the command line's --previous N).
    An archive stored as parts (ARCHIVE.part-0001, ...) is found by the archive's name.
    Layers written by `save --incremental` are applied on top of their base, each verified.
    drive_cache: the folder of Drive's local cache, counted in the space plan when it is on
    the destination's disk (default: Colab's). connections: how many Range requests read
    a URL at once (1: one stream). only: globs of the files to restore (the rules of
    wait(); None: the CONFIG block's ONLY, empty: everything): with an index and a source
    read by ranges only their bytes are read; a later call adds to what the folder holds,
    and a restore without only completes it. Unset arguments come from the environment
    (BOOTSTRAP_ASSETS_ARCHIVE, _DEST, _DRIVE_MOUNT, _DRIVE_CACHE) and then from the CONFIG
    block. Raises a BootstrapError subclass on failure, after which dest is exactly as it was
    (a progressive restore keeps the files it verified, and the next restore goes on).
    """
    arguments = dict(archive=archive, dest=dest, sha256=sha256, force=force, engine=engine,
                     quiet=quiet, drive_mount=drive_mount, lock_timeout=lock_timeout,
                     retry_for=retry_for, version=version, drive_cache=drive_cache,
                     connections=connections, only=only)
    if background:
        return RestoreJob(arguments)
    return _restore(**arguments)


def _restore(archive, dest, *, sha256, force, engine, quiet, drive_mount, lock_timeout,
             retry_for, version, drive_cache, connections, only=None, events=None):
    """restore(), in the foreground; events: the RestoreJob to tell of each file."""
    archive, dest, drive_mount = _settings(archive, dest, drive_mount)
    only = list(ONLY if only is None else [only] if isinstance(only, str) else only)
    only = list(dict.fromkeys(text.strip() for text in only if text.strip()))
    given = sha256 or SHA256
    given = frozenset([_parse_sha256(given, "--sha256")]) if given else None
    whole_only = (engine or ENGINE) == "tar"  # asked for GNU tar, which extracts whole
    engine = _pick_engine(engine or ENGINE)
    if version < 0:
        raise UsageError(f"--previous must be 0 (the current archive) or more, not {version}.")
    if version and _is_url(archive) and not _is_bucket(archive):
        raise UsageError("--previous works with archives on a mount or a bucket, not with "
                         "URLs.")
    if connections < 1:
        raise UsageError(f"--connections must be 1 (one stream) or more, not {connections}.")
    _check_dest_is_folder(dest)
    parent = os.path.dirname(dest)
    fix = (f"pass --dest with a folder in a writable place, e.g. --dest "
           f"/tmp/{os.path.basename(dest)}")
    started = time.monotonic()
    note = None
    background = events is not None or bool(os.environ.get(ENV_BACKGROUND))
    with _NewFolders(parent, fix), _Lock(_lock_path(dest), lock_timeout, dest, fix,
                                         background):
        raw_sidecar = None
        if not _is_url(archive):
            _check_drive_mounted(archive, drive_mount)
            raw_sidecar = _read_sidecar(archive, retry_for, raw=True)
        cache_folder = _cache_setting(drive_cache)
        try:
            source = _open_source(archive, retry_for, drive_mount, raw_sidecar, cache_folder,
                                  version, connections)
        except SourceMissing:
            if version or _is_url(archive):
                raise
            # A save was interrupted between moving the current archive to .1 and putting
            # the new one in its place: .1 is the newest complete archive.
            try:
                source = _open_source(archive, retry_for, drive_mount, raw_sidecar,
                                      cache_folder, 1)
            except SourceMissing:
                source = None
            if source is None:
                raise
            note = (f"{archive} is missing or incomplete (a save was interrupted?); restored "
                    f"the newest complete version, {source.path}")
        if given and not _is_bucket(archive):  # a bucket's sidecar also names its layers
            sidecar = {}
        elif _is_url(archive):
            raw_sidecar = source.read_sidecar(raw=True)
            sidecar = {} if raw_sidecar is None else _sidecar_entries(raw_sidecar,
                                                                      source.path + ".sha256")
        else:
            sidecar = _sidecar_entries(raw_sidecar, archive + ".sha256") if raw_sidecar \
                is not None else {}
        expected = given or getattr(source, "whole", None) or _expected_hashes(sidecar,
                                                                                source.name)
        checksum_source = "--sha256" if given else ("sidecar" if expected else None)
        state, marker, changes = _inspect_dest(dest)
        held = (marker or {}).get("only") if state == "ours" else None
        adding = False  # a partial folder of this same archive, to add files to
        if state == "ours" and not force:
            recorded = marker.get("archive", {})
            layers = _layers_of(archive, recorded.get("sha256"), sidecar, retry_for,
                                getattr(source, "store", None))
            chain = [source.identity] + [identity for _, identity in layers]
            if (recorded.get("chain") == chain and
                    (expected is None or recorded.get("sha256") in expected)):
                if not held or (only and set(only) <= set(held["patterns"])):
                    return RestoreResult(
                        action="unchanged", archive=source.path, dest=dest,
                        archive_bytes=source.size, sha256=recorded.get("sha256"),
                        verified=bool(recorded.get("verified")),
                        checksum_source=recorded.get("checksum_source"),
                        local_changes=changes, only=held,
                        seconds=time.monotonic() - started)
                adding = True
        job = _Restoring(source=source, archive=archive, dest=dest, state=state,
                         sidecar=sidecar, expected=expected, checksum_source=checksum_source,
                         engine=engine, force=force, quiet=quiet, retry_for=retry_for,
                         drive_mount=drive_mount, events=events, only=only, marker=marker)
        cache = _DriveCache.on_disk_of(drive_cache, archive, parent, drive_mount)
        chain, why, base_sha = None, None, None
        fresh = state in ("absent", "empty") and not only and not whole_only
        source.read_ahead = _ReadAhead(source) if fresh and _index_lines(
            raw_sidecar or b"", None if given else expected, given) else None
        try:
            if state in ("absent", "empty", "incomplete") or adding:
                chain, why, base_sha = _progressive_chain(
                    source, archive, raw_sidecar or b"", sidecar, expected or frozenset(),
                    given, "tar" if whole_only else "python", retry_for, drive_mount)
            else:
                why = (f"{dest} held an earlier restore, which served until the new one was "
                       f"complete")
            if chain:
                job.space = _restore_space_plan(source, parent, cache, 0 if only else None)
                result = _restore_progressive(job, chain, base_sha)
                _clean_stale_staging(dest, keep=None)
                result.note = "; ".join(text for text in (note, result.note) if text) or None
                result.seconds = time.monotonic() - started
                return result
        finally:
            if source.read_ahead:
                source.read_ahead.close()
            source.read_ahead = None
        if state == "incomplete" and not force:
            raise DestinationChanged(
                f"{dest} holds an interrupted restore ({marker.get('reason', 'stopped')}), "
                f"and {source.path} cannot go on from it ({why}). Nothing was changed. Run "
                f"again with --force to restore anyway (the folder is then moved to "
                f"{dest}.old-<timestamp>, never deleted).")
        if (state == "foreign" or changes) and not force:
            raise DestinationChanged(
                f"{dest} has local changes that restoring {source.path} would replace: "
                f"{_changes_text(changes)}. Nothing was changed. Save them first, or run "
                f"again with --force to restore anyway (the current folder is then moved to "
                f"{dest}.old-<timestamp>, never deleted).")
        if held and only and not force:  # staged whole: what it held and what is asked now
            job.only = list(dict.fromkeys(list(held["patterns"]) + only))
        job.space = _restore_space_plan(source, parent, cache)
        # the staging folder beside dest: everything of this restore, removed at the end
        staging = os.path.join(parent, f"{_staging_prefix(dest)}{os.getpid()}-"
                                       f"{os.urandom(4).hex()}")
        os.mkdir(staging, 0o700)
        try:
            result, finished = _restore_into(job, staging)
            result.moved_aside = _install(finished, dest, staging, force)
        finally:
            _remove_tree(staging)
        _clean_stale_staging(dest, keep=staging)
    result.dest = dest
    result.staged = why
    if job.only:
        result.only_way = f"in one pass that skipped the rest: {why}"
    result.note = "; ".join(text for text in (note, result.note) if text) or None
    result.local_changes = changes
    if events:
        manifest = _read_marker(dest)["manifest"]
        events.plan([path for path, entry in manifest.items() if entry[0] == "f"], [],
                    result.bytes_extracted)
        for path, entry in manifest.items():
            if entry[0] == "f":
                events.installed(path, entry[1])
    result.seconds = time.monotonic() - started
    return result


def _restore_into(job, staging):
    """Extract the archive and its layers into staging; return (the RestoreResult, the
    finished folder inside staging, to install)."""
    source, archive, dest, sidecar, engine = (job.source, job.archive, job.dest, job.sidecar,
                                              job.engine)
    expected, checksum_source, retry_for = job.expected, job.checksum_source, job.retry_for
    extraction_root = os.path.join(staging, "root")  # where the members are written
    os.mkdir(extraction_root, 0o700)
    progress = _Progress(f"restoring {source.name}", source.size, job.quiet)
    reclaimable, in_cache = job.space
    extraction = _Extraction(extraction_root, _SpaceGuard(staging, reclaimable, in_cache),
                             progress, dest)
    extraction.matches = _matcher(job.only)
    cache_shares_disk = bool(in_cache)
    writer = _GnuTarWriter(extraction_root) if engine == "tar" else \
        _PythonWriter(extraction_root, cache_shares_disk)
    # the archive's folder, listed for its layers while the archive streams, not after it
    listing = None if _is_url(archive) else \
        _Background(lambda: _listing(os.path.dirname(archive)), "list")
    try:
        fmt, base_sha, read, writer = _extract_one(source, extraction, writer, expected,
                                                   checksum_source, staging)
        if extraction.matches and not extraction.files:
            raise UsageError(f"--only {_only_text(job.only)}: no file of {source.path} "
                             f"matches. Nothing was changed at {dest}. The paths are "
                             f"relative to the folder (e.g. 'weights/**', 'config.yaml', "
                             f"'images/class_07/').")
        if extraction.holds_nothing():
            raise CorruptArchive(f"Cannot restore {source.path}: the archive holds no files "
                                 f"(it is empty, or holds only an empty folder). Nothing was "
                                 f"changed at {dest}. Fix: save again from the folder that has "
                                 f"the files, or pass --archive with the right archive.")
        layers = _layers_of(archive, base_sha, sidecar, retry_for,
                            getattr(source, "store", None),
                            listing.result() if listing else None)
        chain = [source.identity]
        for layer_path, _ in layers:
            if engine == "tar":
                writer.finish()
                writer = _GnuTarWriter(extraction_root)
            layer = _open_source(layer_path, retry_for, job.drive_mount)
            layer_expected = _expected_hashes(sidecar, layer.name, fallback=False)
            progress.label, progress.total = f"applying {layer.name}", layer.size
            writer = _extract_one(layer, extraction, writer, layer_expected,
                                  checksum_source, staging).writer
            read += layer.size
            chain.append(layer.identity)
        writer.finish()
        engine_used, writer = writer.name, None
        try:
            extraction.install_absolute_links()
        except UnsafeArchive as exc:
            raise _with_context(exc, f"Refusing to restore {source.path}: ") from None
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise _no_space(_mount_point(staging), f"restoring {source.path} into {dest}",
                            None, f"{_human(extraction.total)} extracted, "
                            f"{_human(_free_bytes(staging))} and "
                            f"{os.statvfs(staging).f_favail:,} inodes free now"
                            f"{_cache_note(in_cache)}", f"Nothing was changed at {dest}. Free "
                            f"some space, or use --dest on a larger disk.") from None
        raise BootstrapError(f"Restoring {source.path} failed while writing under "
                             f"{staging}: {exc}. Nothing was changed at {dest}.") from None
    finally:
        if writer is not None:
            writer.abort()
        progress.close()
    # the tree to install: the archive's lone top folder (see content_root), or the root
    finished = extraction.content_root()
    prefix = os.path.relpath(finished, extraction_root)
    try:
        for name in MARKER_FILES:  # a file of that name is ours to replace; anything else not
            path = os.path.join(finished, name)
            if os.path.lexists(path) and not os.path.isfile(path) or os.path.islink(path):
                raise UnsafeArchive(f"member {name!r} takes the name of this tool's marker "
                                    f"file, as something other than a file (rule: the "
                                    f"marker's name is the tool's)")
        subset = {}
        if extraction.matches:
            subset = _only_prune(finished, extraction, job.only)
        manifest = _scan(finished, check=True)
    except UnsafeArchive as exc:
        raise _with_context(exc, f"Refusing to restore {source.path}: ") from None
    _write_marker(finished, dict({
        "archive": {"identity": source.identity, "chain": chain, "sha256": base_sha,
                    "verified": expected is not None, "checksum_source": checksum_source,
                    "format": fmt, "prefix": "" if prefix == "." else prefix},
        "manifest": manifest,
    }, **subset))
    return RestoreResult(action="restored", archive=source.path, dest=dest,
                         archive_bytes=read, layers=len(layers),
                         files=sum(entry[0] != "d" for entry in manifest.values()),
                         bytes_extracted=extraction.total, sha256=base_sha,
                         verified=expected is not None, checksum_source=checksum_source,
                         engine=engine_used, format=fmt, parts=getattr(source, "parts", 0),
                         note=extraction.note(expected is not None),
                         only=subset.get("only")), finished


def _only_prune(root, extraction, patterns):
    """After a staged restore --only: remove what passed only because the archive's top
    folder was not known yet, links whose target is not in the folder, and folders left
    empty that no pattern names (each parent keeps its time). Returns the marker's record
    of the partial folder (see _subset_fields)."""
    matches = extraction.matches
    removed_files = removed_bytes = 0
    for folder, dirs, files in os.walk(root, topdown=False):
        rel = os.path.relpath(folder, root)
        rel = "" if rel == "." else rel
        st = os.stat(folder)
        changed = False
        for name in files + dirs:
            path = f"{rel}/{name}" if rel else name
            full = os.path.join(folder, name)
            if os.path.islink(full):
                gone = not matches(path) or not os.path.exists(full)
            elif os.path.isdir(full):
                gone = not os.listdir(full) and not matches(path)
            else:
                gone = not matches(path)
                if gone:
                    removed_files += 1
                    removed_bytes += os.lstat(full).st_size
            if gone:
                if os.path.isdir(full) and not os.path.islink(full):
                    os.rmdir(full)
                else:
                    os.unlink(full)
                changed = True
        if changed:
            os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns))
    held, held_bytes = [], 0
    for path, entry in _scan(root).items():
        if entry[0] == "f":
            held.append(path)
            held_bytes += entry[1]
    held.sort()
    return {"only": {"patterns": list(patterns), "held": held,
                     "files": len(held) + extraction.skipped_files + removed_files,
                     "bytes": held_bytes + extraction.skipped_bytes + removed_bytes,
                     "held_bytes": held_bytes}}


# ----------------------------------------------------------------- background: wait on it --
JobProgress = collections.namedtuple("JobProgress", "bytes files total_bytes total_files")


class RestoreJob:
    """A restore running in a thread of this process (restore(background=True)): the
    notebook waits for what a cell needs (wait), iterates the files as they land (files),
    or takes the result (result). Paths and patterns are relative to dest: `config.yaml`,
    `tokenizer/` (a whole folder), `images/**/*.jpg`."""

    def __init__(self, arguments):
        self.dest = _settings(arguments["archive"], arguments["dest"],
                              arguments["drive_mount"])[1]
        self._changed = threading.Condition()
        self._planned = None  # every file's path, once the restore knows them
        self._installed, self._in_place = [], set()  # in the order they were installed
        self._bytes = self._total_bytes = 0
        self._result = self._error = None
        self._done = False
        # demand first: the restore's reads ahead (_Demand) while it streams, and what was
        # asked before they started
        self._demand, self._asks = None, []
        self._waits = 0  # wait() calls under way: what they ask for comes before files()'s
        self._thread = threading.Thread(target=self._run, args=(dict(arguments, quiet=True),),
                                        name=f"restore {self.dest}")
        self._thread.start()

    def __repr__(self):
        state = "failed" if self._error else "done" if self._done else "running"
        return f"<RestoreJob {self.dest}: {state}, {self.progress}>"

    def _run(self, arguments):
        try:
            result = _restore(**arguments, events=self)
        except BaseException as exc:  # handed to whoever waits, as a foreground run raises
            result, error = None, exc
        else:
            error = None
        with self._changed:
            self._result, self._error, self._done = result, error, True
            self._changed.notify_all()

    def plan(self, files, in_place, total_bytes):
        """The restore knows every file it will install; in_place: those already there."""
        with self._changed:
            self._planned, self._total_bytes = list(files), total_bytes
            for path in in_place:
                self._add(path)
            self._changed.notify_all()

    def installed(self, path, size):
        with self._changed:
            self._bytes += size
            self._add(path)
            self._changed.notify_all()

    def serve(self, demand):
        """The restore reads ahead what wait() and files() ask for through demand (None:
        no longer)."""
        with self._changed:
            self._demand, asks, self._asks = demand, self._asks, []
        for patterns, limit in asks if demand is not None else ():
            demand.ask(patterns, limit)

    def _ask(self, patterns, limit=None):
        """Ask the restore for these files first; whether it reads any of them ahead."""
        with self._changed:
            demand = self._demand
            if demand is None and not self._done:
                self._asks.append((patterns, limit))
        return demand is not None and demand.ask(patterns, limit)

    def _add(self, path):
        if path not in self._in_place:
            self._in_place.add(path)
            self._installed.append(path)

    @property
    def done(self):
        return self._done

    @property
    def progress(self):
        return JobProgress(self._bytes, len(self._installed), self._total_bytes,
                           len(self._planned or ()))

    def wait(self, *patterns, timeout=None):
        """Block until the files the patterns name (every file, with none) are in place;
        raise the restore's own error if it failed, TimeoutError after timeout seconds.
        Files the restore will not reach soon are read ahead of it (demand first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        matchers = [_pattern(p) for p in patterns]
        if patterns:
            self._ask(patterns)
        with self._changed:
            self._waits += 1
            try:
                return self._wait(patterns, matchers, deadline, timeout)
            finally:
                self._waits -= 1

    def _wait(self, patterns, matchers, deadline, timeout):
        """wait(), with self._changed held."""
        left, seen = None, 0
        while True:
            if self._error is not None:
                raise self._error
            if left is None and self._planned is not None:
                left = set()
                for text, matcher in zip(patterns, matchers):
                    matched = {p for p in self._planned if matcher.fullmatch(p)}
                    if not matched:
                        raise UsageError(f"{text!r} names no file of the archive being "
                                         f"restored into {self.dest}.")
                    left |= matched
            if left is not None and patterns:
                left.difference_update(self._installed[seen:])
                seen = len(self._installed)
                if not left:
                    return
            if self._done:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{', '.join(patterns) or 'the restore'} not in place "
                                   f"in {self.dest} after {timeout:g} s")
            self._changed.wait(remaining)

    def files(self, pattern="**"):
        """Yield the path of each file matching pattern as soon as it is in place (those
        already there first), until the restore ends; then raise its error, if it failed.
        A reader that has had every one in place and nothing new for AHEAD_PATIENCE (at
        once while its last ask had files read ahead) has its next ones read ahead of the
        restore (demand first), unless a wait() of the job is under way: what a cell waits
        for comes first."""
        matcher, position = _pattern(pattern), 0
        since, served, may_ask = time.monotonic(), False, True
        while True:
            ask = False
            with self._changed:
                while position == len(self._installed) and not self._done:
                    patience = 0 if served else since + AHEAD_PATIENCE - time.monotonic()
                    if may_ask and patience <= 0 and not self._waits:
                        ask = True
                        break
                    self._changed.wait(patience if may_ask and patience > 0 else None)
                batch, position = self._installed[position:], len(self._installed)
                finished, error = self._done, self._error
            if ask:  # once per catch-up, outside the lock
                served, may_ask = self._ask([pattern], AHEAD_BATCH), False
                continue
            may_ask = True
            for path in batch:
                if matcher.fullmatch(path):
                    since = time.monotonic()
                    yield os.path.join(self.dest, path)
            if finished and position == len(self._installed):
                if error is not None:
                    raise error
                return

    def result(self, timeout=None):
        """The RestoreResult, once the restore has ended (or raise its error)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the restore into {self.dest} still runs after {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._result


def _status_path(dest):
    """Where restore --background records its process and, at its end, its exit code."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.restore.json")


def _demand_path(dest):
    """Where `wait` asks restore --background for files first: a JSON list of patterns a
    line (see _Demand)."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.restore.want")


def _ask_background(dest, patterns):
    """Ask the restore --background into dest for the files patterns name first. A folder
    where this cannot write leaves the restore to give them in its own order."""
    try:
        with open(_demand_path(dest), "a", encoding="utf-8") as f:
            f.write(json.dumps(list(patterns)) + "\n")
    except OSError:
        pass


def _unlink_if_there(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _log_path(dest):
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.restore.log")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _failure(exit_code, message):
    """The exception a restore in another process ended with, from its exit code."""
    classes = {cls.exit_code: cls for cls in BootstrapError.__subclasses__()}
    return classes.get(exit_code, BootstrapError)(message)


def wait(*patterns, dest=None, timeout=None, quiet=False):
    """Block until the files the patterns name (every file, with none) are in place in dest,
    restored by a restore in another process (restore --background); raise what that
    restore ended with if it failed. Patterns as for RestoreJob."""
    dest = _settings(None, dest, None)[1]
    deadline = None if timeout is None else time.monotonic() + timeout
    matchers = [_pattern(p) for p in patterns]
    progress = _Progress(f"waiting for {', '.join(patterns) or 'the restore'}", 0, quiet)
    # The marker (with its list of planned files) is parsed, and the patterns matched against
    # that list, only when a new marker has replaced it, not at every look.
    marker_path, seen, marker, needed = os.path.join(dest, MARKER_NAME), None, None, None
    asked = not patterns
    try:
        while True:
            try:
                st = os.stat(marker_path)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != seen:
                seen, needed = stamp, None
                marker = _read_json(marker_path) if stamp else None
            background = _read_json(_status_path(dest)) or {}
            state = (marker or {}).get("state")
            if marker and not state:
                files = [p for p, entry in marker.get("manifest", {}).items() if entry[0] != "d"]
                for text, matcher in zip(patterns, matchers):
                    if not any(matcher.fullmatch(p) for p in files):
                        raise UsageError(f"{text!r} names no file restored into {dest}.")
                return
            if state == "incomplete":
                raise _failure(marker.get("exit_code", 1), marker.get("reason", "stopped"))
            if state == "restoring":
                if needed is None:
                    planned = marker.get("planned", [])
                    for text, matcher in zip(patterns, matchers):
                        if not any(matcher.fullmatch(p) for p in planned):
                            raise UsageError(f"{text!r} names no file of the archive being "
                                             f"restored into {dest}.")
                    needed = [p for p in planned if not matchers or
                              any(m.fullmatch(p) for m in matchers)]
                done = _read_journal(dest)
                if matchers and all(p in done for p in needed):
                    return  # (everything: only once the restore has ended)
                progress.total = marker.get("planned_bytes", 0)
                progress.update(sum(size for _, size, _ in done.values()), len(done))
                if not _alive(marker.get("pid", 0)):
                    raise BootstrapError(f"The restore into {dest} (pid {marker.get('pid')}) "
                                         f"stopped before it finished. Run the restore again: "
                                         f"it keeps the files verified so far.")
            elif "exit_code" in background:
                if background["exit_code"]:
                    raise _failure(background["exit_code"], background.get("message", ""))
            elif not _alive(background.get("pid", 0)):
                raise BootstrapError(f"No restore is running into {dest}, and it holds no "
                                     f"restored folder. Start one: python bootstrap_assets.py "
                                     f"restore --background --dest {dest}")
            if deadline is not None and time.monotonic() > deadline:
                raise BootstrapError(f"{', '.join(patterns) or 'The restore'} not in place "
                                     f"in {dest} after {timeout:g} s; the restore goes on "
                                     f"(log: {_log_path(dest)}).")
            if not asked:  # demand first: the restore reads these ahead of its stream
                _ask_background(dest, patterns)
                asked = True
            time.sleep(0.1)
    finally:
        progress.close()


def _start_background(argv, dest):
    """Start `restore` with argv in a process of its own that outlives the cell; its output
    goes to a log beside dest. Return what to tell the user."""
    import subprocess
    script = globals().get("__file__")
    if not script or not os.path.isfile(script):
        raise UsageError("--background starts this file again as its own process, and this "
                         "run has no file (a pasted cell?). In a cell use: job = "
                         "restore(background=True), then job.wait('weights/').")
    dest = _settings(None, dest, None)[1]
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    _unlink_if_there(_demand_path(dest))  # asked of an earlier restore
    log = _log_path(dest)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(script), *argv], stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, **{ENV_BACKGROUND: "1"}))
    _write_status(dest, {"pid": process.pid, "log": log})
    return (f"restoring into {dest} in the background (pid {process.pid}, log {log}). Wait "
            f"for what a cell needs with: python {os.path.basename(script)} wait [PATH ...] "
            f"--dest {dest}")


def _write_status(dest, fields):
    path = _status_path(dest)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(fields))
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------- save --
class _SaveJob(_Record):
    """The settings of one save, as its steps need them."""

    archive: str
    dest: str
    format: str
    level: int = None
    keep: int = DEFAULT_KEEP
    verify: bool = True
    retry_for: float = DEFAULT_RETRY_FOR
    quiet: bool = False
    part_size: int = DEFAULT_PART_SIZE
    cache: object = None  # the _DriveCache on the local folder's disk, if any
    flush_drive: bool = False
    drive_mount: str = None
    started: float = 0.0
    warnings: list = []
    first: list = []  # globs of the files packed first


def save(dest=None, archive=None, *, format="auto", level=None, keep=DEFAULT_KEEP,
         verify=True, incremental="auto", quiet=False, drive_mount=None,
         lock_timeout=DEFAULT_LOCK_TIMEOUT, retry_for=DEFAULT_RETRY_FOR, flush_drive=False,
         part_size=None, drive_cache=None, first=None):
    """Pack the local folder back into the archive on the mount; return a SaveResult.

    incremental: "auto" (a layer of the changes when the folder was restored or saved from
    this archive and the layers stay under half the base), "always" (a layer whenever
    possible), "never" (always a full archive). A full save keeps `keep` previous versions
    (ARCHIVE.1 ...). part_size: a full archive larger than this is written as parts
    ARCHIVE.part-0001, ... of at most this size (None: DEFAULT_PART_SIZE, 0: always one
    file); layers are always one file. drive_cache: see restore(). first: globs of the files
    to put first in the archive, in that order (None: the CONFIG block's FIRST); the rest
    follows by top-level entry, smallest first. Raises a BootstrapError
    subclass on failure, after which the archive, its versions and its sidecar are as they
    were.
    """
    archive, dest, drive_mount = _settings(archive, dest, drive_mount, saving=True)
    if _is_url(archive) and not _is_bucket(archive):
        raise UsageError(f"save writes to a mounted folder or a bucket (s3://, gs://), not "
                         f"to a URL ({archive}).")
    if format not in DEFAULT_LEVELS and format != "auto":
        raise UsageError(f"--format must be auto, tar, gz or zst, not {format!r}.")
    if level is not None:
        levels = {"tar": (), "gz": range(0, 10), "zst": range(1, 23), "auto": range(0, 10)}
        if level not in levels[format]:
            raise UsageError(
                f"--level {level} does not apply to --format {format}: a plain tar is not "
                f"compressed (drop --level)." if format == "tar" else
                f"--level {level} is out of range for --format {format}: gz takes 0 to 9 "
                f"(auto picks gzip), zst 1 to 22.")
    if incremental not in ("auto", "always", "never"):
        raise UsageError(f"incremental must be auto, always or never, not {incremental!r}.")
    if keep < 1:
        raise UsageError("--keep must be at least 1: the previous archive is what a crash "
                         "falls back to.")
    part_size = DEFAULT_PART_SIZE if part_size is None else part_size
    if part_size < 0:
        raise UsageError(f"--part-size must be 0 (one file) or more, not {part_size}.")
    if flush_drive and not _in_kernel():
        raise UsageError("--flush needs the notebook kernel (it calls drive.flush_and_unmount);"
                         " from `!python` it cannot work. Use bootstrap_assets.save("
                         "flush_drive=True) in a cell.")
    started = time.monotonic()
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise SourceMissing(f"{dest} is a file, not a folder: save packs the folder --dest "
                            f"names. Nothing was written. Pass --dest with the folder to save.")
    if not os.path.isdir(dest):
        raise SourceMissing(f"There is no folder {dest} to save. Restore it first, or pass "
                            f"--dest with the folder to save.")
    lock_fix = (f"a save keeps its lock file beside the folder it saves: copy {dest} to a "
                f"writable place and save the copy (--dest)")
    with _Lock(_lock_path(dest), lock_timeout, dest, lock_fix):
        entries, warnings = _save_entries(dest)
        first = list(FIRST if first is None else [first] if isinstance(first, str) else first)
        entries = _ordered(entries, first)
        if not entries:
            raise SourceMissing(f"{dest} is empty; refusing to replace {archive} with an "
                                f"empty archive. Nothing was written.")
        if _is_bucket(archive):
            return _save_to_bucket(_SaveJob(archive=archive, dest=dest, format=format,
                                            level=level, keep=keep, verify=verify,
                                            retry_for=retry_for, quiet=quiet, part_size=0,
                                            started=started, warnings=warnings, first=first),
                                   entries, incremental)
        _check_drive_mounted(archive, drive_mount)
        job = _SaveJob(archive=archive, dest=dest, format=format, level=level, keep=keep,
                       verify=verify, retry_for=retry_for, quiet=quiet, part_size=part_size,
                       cache=_DriveCache.on_disk_of(drive_cache, archive, dest, drive_mount),
                       flush_drive=flush_drive, drive_mount=drive_mount, started=started,
                       warnings=warnings, first=first)
        with _NewFolders(os.path.dirname(archive), _archive_fix(archive)):
            return _save_locked(job, entries, incremental)


def _archive_fix(archive):
    return (f"pass --archive with a path in a folder you can write to (on Kaggle, "
            f"/kaggle/input is read-only: e.g. --archive /kaggle/working/"
            f"{os.path.basename(archive)}; on Drive, a folder of your own MyDrive)")


def _save_locked(job, entries, incremental):
    """save(), holding the lock, once the archive's folder exists."""
    archive, dest, retry_for = job.archive, job.dest, job.retry_for
    marker = _read_marker(dest)
    if marker and marker.get("state"):
        raise BootstrapError(
            f"{dest} holds a restore that did not finish ({marker.get('reason', 'stopped')}): "
            f"a save of it would drop the files it does not have yet. Nothing was written. "
            f"Fix: run the restore again (it goes on where it stopped), then save.")
    # A save that can only be a full one samples the local files for its format while the
    # mount answers the round trips below.
    sampling = _Background(lambda: _choose_format(dest, entries, job.format, job.level),
                           "sample") if job.format == "auto" and (
        marker is None or incremental == "never" and not marker.get("only")) else None
    # one listing of the folder (for stale temporaries and layers), made while the sidecar
    # is read: each is a round trip on the mount
    folder = os.path.dirname(archive)
    listing = _Background(lambda: os.listdir(folder), "list")
    sidecar = _read_sidecar(archive, retry_for, raw=True)
    if _sidecar_journal(sidecar):  # a save or split died mid-swap: finish it, list again
        listing.join()
        sidecar, names = _finish_interrupted(archive, retry_for), os.listdir(folder)
    else:
        names = listing.result()
    _clean_stale_temporaries(archive, sidecar, names)
    manifest = {path: entry for path, entry, _ in entries}
    recorded = (marker or {}).get("archive", {})
    chain = _chain_on_drive(archive, recorded.get("sha256"), sidecar, names)
    same_chain = bool(marker) and chain is not None and recorded.get("chain") == chain
    if same_chain and marker["manifest"] == manifest and incremental != "never":
        # the save that made it may have closed its files a moment ago (autosave's last)
        _flush_if_asked(job.flush_drive, job.drive_mount)
        return SaveResult(action="unchanged", archive=archive,
                          seconds=time.monotonic() - job.started, warnings=job.warnings)
    plan = _layer_plan(dest, entries, marker, chain, incremental) if same_chain \
        else None
    try:
        carry = None
        if not plan and (marker or {}).get("only"):
            plan, carry = _partial_full(job, marker, entries, sidecar, chain, same_chain,
                                        incremental)
        if plan:
            return _save_layer(job, plan, manifest, recorded, chain, sidecar)
        return _save_full(job, entries, manifest, sidecar, sampling, carry)
    except OSError as exc:
        raise _save_failure(exc, archive) from None


def _partial_full(job, marker, entries, raw_sidecar, chain, same_chain, incremental):
    """(layer plan, None) or (None, carry for _save_full) when a partial folder's save is
    a full one: the files it never restored come from its archive (see _unrestored), or
    nothing is written. A compaction it cannot make leaves the changes in another layer,
    so that autosave goes on working."""
    sources, carried, origin = _unrestored(job, marker, entries, raw_sidecar)
    if sources:
        return None, (sources, carried, marker["only"])
    if same_chain and incremental == "auto":
        return _layer_plan(job.dest, entries, marker, chain, "always"), None
    raise _partial_refusal(job, marker, incremental, carried, origin)


def _partial_refusal(job, marker, incremental, why_not, origin):
    """The error of a full save of a folder restore --only made, when the files it lacks
    cannot be carried over from origin, the archive it was restored from (why_not, see
    _unrestored): a full archive of it would drop every file it did not restore. Nothing
    is written."""
    why = ("--full asks for a full archive" if incremental == "never" else
           "the archive on Drive is not the one this folder was restored from, so only a "
           "full archive could record the changes")
    lacks = f"; the files it lacks cannot be read from {origin}: {why_not}"
    restore = f"python bootstrap_assets.py restore --dest {job.dest}"
    if origin != (os.environ.get(ENV_ARCHIVE) or ARCHIVE):
        restore += f" --archive '{origin}'"
    return BootstrapError(
        f"{job.dest} holds only part of the archive ({_held_text(marker['only'])}), and "
        f"{why}, which would drop every file the folder does not hold{lacks}. Nothing was "
        f"written. Fix: complete the folder first: {restore} (it reads only the files the "
        f"folder lacks; if you changed files in it, first keep the changes as a layer: "
        f"python bootstrap_assets.py save --incremental --dest {job.dest}), then save again.")


def _layer_plan(dest, entries, marker, chain, incremental):
    """What a layer would hold: None when a full save is asked for or due (compaction: a
    partial folder's carries over the files it lacks, see _unrestored). chain: the
    identities (with sizes) of the base and its layers, as they are now."""
    if incremental == "never":
        return None
    # A layer lays its members out like its base: under the base's top folder, or
    # `./`-relative for a base that holds the folder's contents.
    top = marker["archive"].get("prefix", os.path.basename(dest))
    prefix = f"{top}/" if top else "./"
    old = marker["manifest"]
    current = {path: entry for path, entry, _ in entries}
    changed = [e for e in entries if old.get(e.path) != e.manifest]
    # Deleted first, then re-added: paths that changed kind, and retargeted symlinks (a
    # restore never lets a member replace a symlink).
    deleted = sorted(f"{prefix}{path}" for path in old
                     if path not in current or old[path][0] != current[path][0]
                     or (old[path][0] == "l" and old[path] != current[path]))
    layer_bytes = sum(layer["size"] for layer in chain[1:])
    change_bytes = _file_bytes(changed)
    if incremental == "auto" and layer_bytes + change_bytes > COMPACT_SHARE * chain[0]["size"]:
        return None
    return {"prefix": prefix, "changed": changed, "deleted": deleted,
            "number": len(chain)}


def _save_failure(exc, archive):
    """The error to report for an OSError during a save, after removing its temporaries.

    Until the sidecar swap, nothing of the previous archive has changed; after it, every
    name holds a complete file the sidecar accepts (see _publish).
    """
    folder = os.path.dirname(archive)
    try:
        _clean_stale_temporaries(archive)
        free = f"{_human(_free_bytes(folder))} free now"
    except OSError:
        free = "the mount does not answer"
    if exc.errno in NO_SPACE_ERRNOS:
        return _no_space(_mount_point(folder), f"saving {archive}", None,
                         f"{exc.strerror}; {free}", "The previous archive and its checksum "
                         "are intact. Free some space on Drive (empty its trash too), then "
                         "save again.")
    if exc.errno == errno.ENOTCONN:
        return _dead_mount_error(archive, None, exc.strerror)
    if exc.errno in NOT_WRITABLE_ERRNOS:
        return BootstrapError(f"Cannot save {archive}: its folder {folder} is not writable "
                              f"({exc.strerror}). The archive there and its checksum are "
                              f"intact. Fix: {_archive_fix(archive)}, then save again.")
    return BootstrapError(f"Saving to {archive} failed: {exc}. The previous archive and its "
                          f"checksum are intact.")


def _save_full(job, entries, manifest, sidecar, sampling=None, carry=None):
    """sampling: the _Background already choosing the format, if any. carry: (chain,
    entries carried over, the marker's "only") for a partial folder (see _unrestored): the
    archive holds the union, in the order a save of the complete folder would give it."""
    fmt, level = _full_format(job, entries, carry, sampling)
    entries, sources, only = _union(job, entries, manifest, carry)
    total = _file_bytes(entries)
    estimate = total + BLOCK * 2 * len(entries)
    _check_room(job.archive, estimate)
    _check_local_room(job, estimate, reading=_carry_in_cache(sources))
    base = os.path.basename(job.archive)
    base_id = _save_id()
    top = os.path.basename(job.dest)
    index = _IndexBuilder(top + "/", job.first, fmt=fmt)
    digest, size, files = _write_stream(
        job, lambda k: f"{_part_name(base, k)}.tmp-{os.getpid()}", top + "/", entries, None,
        base_id, fmt, level, total, index, chain=sources)
    versions = _publish(job.archive, files, base, digest, True, job.keep, sidecar,
                        index=index)
    chain = [_published_identity(job.archive, len(files))]
    _write_marker(job.dest, dict({"archive": {"identity": chain[0], "chain": chain,
                                              "sha256": digest, "verified": True,
                                              "checksum_source": "sidecar", "format": fmt,
                                              "prefix": top},
                                  "manifest": manifest}, **only))
    _flush_if_asked(job.flush_drive, job.drive_mount)
    return SaveResult(action="saved", archive=job.archive, written=job.archive,
                      bytes_written=size, bytes_packed=total,
                      files=_file_count(entries), carried=_carried_files(carry),
                      seconds=time.monotonic() - job.started, sha256=digest, format=fmt,
                      verified=job.verify, versions=versions, warnings=job.warnings,
                      parts=len(files) if len(files) > 1 else 0,
                      index_sha256=index.sha256 if index.offset is not None else None)


def _full_format(job, entries, carry, sampling=None):
    """(format, level) of a full save. --format auto samples the folder (sampling: the
    _Background doing it already, if any), but a partial one holds too little of the data
    to tell: its archive's base keeps the format a sample of the complete folder chose."""
    if carry and job.format == "auto":
        fmt = carry[0][0][2]
        return fmt, job.level if job.level is not None and fmt == "gz" else DEFAULT_LEVELS[fmt]
    if sampling:
        return sampling.result()
    return _choose_format(job.dest, entries, job.format, job.level)


def _union(job, entries, manifest, carry):
    """(entries to pack, the chain the carried ones come from, the marker's "only" fields)
    of a full save; carry: what _partial_full found a partial folder lacks, or None. The
    union is laid out as a save of the complete folder would lay it out; the marker goes on
    saying what the folder holds, now of the new archive."""
    if not carry:
        return entries, None, {}
    sources, carried, held = carry
    entries = _ordered(_walk_order(list(entries) + carried), job.first)
    held_files = sorted(path for path, entry in manifest.items() if entry[0] == "f")
    return entries, sources, {"only": dict(
        held, held=held_files, files=sum(entry.kind == "f" for entry in entries),
        bytes=_file_bytes(entries), held_bytes=sum(manifest[path][1] for path in held_files))}


def _carry_in_cache(chain):
    """What Drive's cache holds at most at once of the archives a partial folder's full save
    reads (see _restore_space_plan): a file on the mount until it is closed, so one read as
    a single file whole, parts about two at a time; nothing of a URL or a bucket."""
    held = [0]
    for source, _, _ in chain or ():
        sizes = [size for _, size, _ in getattr(source, "files", ())]
        held.append(sum(sizes) if len(sizes) == 1 else 2 * max(sizes, default=0))
    return max(held)


def _carried_files(carry):
    return sum(entry.kind == "f" for entry in carry[1]) if carry else 0


def _held_after_layer(marker, manifest):
    """The marker's record of a partial folder after a layer: the files it holds now (the
    layer made them the archive's too); the archive's totals as they were restored."""
    only = (marker or {}).get("only")
    if not only:
        return {}
    held = sorted(path for path, entry in manifest.items() if entry[0] == "f")
    return {"only": dict(only, held=held,
                         held_bytes=sum(manifest[path][1] for path in held))}


def _save_layer(job, plan, manifest, recorded, chain, sidecar):
    changed, deleted, number = plan["changed"], plan["deleted"], plan["number"]
    fmt, level = _choose_format(job.dest, changed, job.format, job.level)
    total = _file_bytes(changed)
    estimate = total + BLOCK * 2 * (len(changed) + 2)
    _check_room(job.archive, estimate)
    _check_local_room(job, estimate, layer=True)
    final_name = f"{_layer_prefix(job.archive, recorded['sha256'])}{number}"
    one_file = _SaveJob(**dict(vars(job), part_size=0))  # layers stay single small files
    index = _IndexBuilder(plan["prefix"], job.first, deleted, fmt)
    digest, size, files = _write_stream(one_file, lambda k: f"{final_name}.tmp-{os.getpid()}",
                                        plan["prefix"], changed, deleted, None, fmt, level,
                                        total, index)
    # A base restored without a sidecar line gets one: its hash was computed as it was read.
    _publish(job.archive, files, final_name, digest, False, DEFAULT_KEEP, sidecar,
             known={os.path.basename(job.archive): {recorded["sha256"]}}, index=index)
    layer_path = os.path.join(os.path.dirname(job.archive), final_name)
    chain = chain + [_PathSource.identity_of(layer_path)]
    fields = dict(recorded, chain=chain)
    _write_marker(job.dest, dict({"archive": fields, "manifest": manifest},
                                 **_held_after_layer(_read_marker(job.dest), manifest)))
    _flush_if_asked(job.flush_drive, job.drive_mount)
    return SaveResult(action="layer", archive=job.archive, layer=number, written=layer_path,
                      bytes_written=size, bytes_packed=total, deleted=len(deleted),
                      files=_file_count(changed), format=fmt,
                      seconds=time.monotonic() - job.started, sha256=digest,
                      verified=job.verify, warnings=job.warnings,
                      index_sha256=index.sha256 if index.offset is not None else None)


# --------------------------------------------------------------------------------- split --
def split(archive=None, *, part_size=DEFAULT_PART_SIZE, keep=DEFAULT_KEEP, verify=True,
          quiet=False, drive_mount=None, drive_cache=None, dest=None,
          lock_timeout=DEFAULT_LOCK_TIMEOUT, retry_for=DEFAULT_RETRY_FOR):
    """Rewrite a single-file archive on the mount as parts ARCHIVE.part-0001, ...; return a
    SaveResult (action "split", or "unchanged" when there is nothing to split).

    One streaming pass: the old file is read once, the parts are written, read back and
    verified, and the hash of the whole must equal the old file's (and the sidecar's line
    for it, when there is one). Only then does the old file become ARCHIVE.1 (older
    versions shift up, as in a save), or, with keep=0, go. Its hash does not change, so its
    layers and the local folder's marker stay valid. Local disk needed: about the archive's
    size, for Drive's copy of the old file while it is read (the parts go one at a time).
    """
    archive, dest, drive_mount = _settings(archive, dest, drive_mount)
    if _is_url(archive):
        raise UsageError(f"split rewrites an archive on a mounted folder, not a URL ({archive}).")
    if part_size <= 0:
        raise UsageError(f"split needs a --part-size above 0, not {part_size}.")
    if keep < 0:
        raise UsageError(f"--keep must be 0 or more, not {keep}.")
    started = time.monotonic()
    parent = os.path.dirname(dest)
    with _NewFolders(parent, "pass --dest with a folder in a writable place"), \
            _Lock(_lock_path(dest), lock_timeout, dest):
        _check_drive_mounted(archive, drive_mount)
        content = _finish_interrupted(archive, retry_for) if os.path.isdir(
            os.path.dirname(archive)) else None
        cache_folder = _cache_setting(drive_cache)
        source = _PathSource(archive, retry_for, drive_mount, content, cache_folder)
        _clean_stale_temporaries(archive, content)
        if source.parts:
            return SaveResult(action="unchanged", archive=archive, parts=source.parts,
                              note=f"{archive} is already stored as {source.parts} parts",
                              seconds=time.monotonic() - started)
        if source.size <= part_size:
            return SaveResult(action="unchanged", archive=archive,
                              note=f"{archive} ({_human(source.size)}) fits in one part of "
                                   f"{_human(part_size)}",
                              seconds=time.monotonic() - started)
        entries = _sidecar_entries(content, archive + ".sha256") if content else {}
        expected = _expected_hashes(entries, source.name) if entries else None
        _check_room(archive, source.size)
        cache = _DriveCache.on_disk_of(drive_cache, archive, None, drive_mount)
        if cache:
            _check_split_room(source, part_size, cache)
        base = os.path.basename(archive)
        hasher, counter = hashlib.sha256(), _Counter()
        progress = _Progress(f"splitting {base}", source.size, quiet)
        read = _Stage(lambda: _hashing(source, hasher, counter), "read", READ_AHEAD_DEPTH)
        try:
            digest, size, files = _write_archive(
                read, lambda k: os.path.join(os.path.dirname(archive),
                                             f"{_part_name(base, k)}.tmp-{os.getpid()}"),
                part_size, verify, retry_for, progress)
            if expected and digest not in expected:
                for path, _, _ in files:
                    os.unlink(path)
                raise ChecksumMismatch(
                    f"{archive} does not match its checksum: expected sha256 "
                    f"{' or '.join(sorted(expected))} (from the .sha256 file), got {digest}. "
                    f"It was not split, and nothing was changed. Restore an older version, "
                    f"or save again.")
            versions = _publish(archive, files, base, digest, True, keep, content,
                                known={base: {digest}})
        except OSError as exc:
            raise _save_failure(exc, archive) from None
        finally:
            read.close()
            progress.close()
        _follow_split(dest, source.identity, _published_identity(archive, len(files)), digest)
    return SaveResult(action="split", archive=archive, written=archive, bytes_written=size,
                      seconds=time.monotonic() - started, sha256=digest, verified=verify,
                      versions=versions, parts=len(files), format=None,
                      note=(f"the old file is now {base}.1" if keep else
                            "the old file was removed (--keep 0)"))


def _check_split_room(source, part_size, cache):
    """Refuse a split whose read would not fit in Drive's cache on the local disk."""
    free, reclaimable = _free_bytes(cache.folder), cache.reclaimable()
    need = source.size + 2 * part_size + SPACE_MARGIN
    if need > free + reclaimable:
        raise _no_space(None, f"to split {source.path}", f"Drive keeps a local copy of the "
                        f"file while it is read and of each part while it is written, about "
                        f"{_human(need)} on {_mount_point(cache.folder)}", f"{_human(free)} "
                        f"is free, with {_human(reclaimable)} more held by Drive's cache "
                        f"({cache.folder})", "Nothing was written. Fix: free some local "
                        "space, or split the file elsewhere (GNU split -b 1G -d -a 4 "
                        "--numeric-suffixes=1 FILE FILE.part-) and upload the parts.")


def _follow_split(dest, old_identity, new_identity, digest):
    """A local folder restored from the single file stays unchanged for the next restore
    and save: its marker now names the parts (same bytes, same hash)."""
    marker = _read_marker(dest) if os.path.isdir(dest) else None
    recorded = (marker or {}).get("archive", {})
    chain = recorded.get("chain") or []
    if recorded.get("sha256") != digest or not chain or chain[0] != old_identity:
        return
    recorded.update(identity=new_identity, chain=[new_identity] + chain[1:])
    _write_marker(dest, {k: v for k, v in marker.items() if k not in ("tool", "written_at")})


# -------------------------------------------------------------------------------- status --
def status(archive=None, dest=None, *, drive_mount=None, retry_for=DEFAULT_RETRY_FOR):
    """Describe the archive, its kept versions and layers, and the local folder: a list of lines."""
    archive, dest, drive_mount = _settings(archive, dest, drive_mount)
    lines = []
    if _is_bucket(archive):
        lines += _bucket_status(archive, retry_for)
    elif _is_url(archive):
        lines.append(f"archive {archive} (a URL: versions and layers live on mounts and "
                     f"buckets only)")
    else:
        _check_drive_mounted(archive, drive_mount)
        folder = os.path.dirname(archive)
        content = _read_sidecar(archive, retry_for, raw=True) if os.path.isdir(folder) else None
        sidecar = _sidecar_entries(content, archive + ".sha256") if content is not None else {}
        names = os.listdir(folder) if os.path.isdir(folder) else []
        lines.append(f"archive {archive}")
        version = 0
        while True:
            lines_before = len(lines)
            lines += _version_status(archive, version, content, sidecar, names)
            if version and len(lines) == lines_before:
                break
            version += 1
    state, marker, changes = _inspect_dest(dest)
    if state == "ours":
        held = marker.get("only")
        lines.append(f"folder {dest}: restored or saved by this tool, "
                     + (f"part of the archive ({_held_text(held)}), " if held else "")
                     + f"{len(marker['manifest']):,} entries, "
                     + (f"{len(changes)} local change(s): {_changes_text(changes)}" if changes
                        else "no local changes"))
    elif state == "incomplete":
        lines.append(_restoring_status(dest, marker))
    else:
        lines.append(f"folder {dest}: {state}")
    return lines


def _restoring_status(dest, marker):
    """status's line for a folder whose progressive restore runs, or stopped midway."""
    planned = marker.get("planned", [])
    done = len(_read_journal(dest).keys() & set(planned))
    share = f"{done:,} of {len(planned):,} files in place"
    if marker["state"] == "restoring" and _alive(marker.get("pid", 0)):
        return f"folder {dest}: restoring (pid {marker.get('pid')}), {share}"
    return (f"folder {dest}: an incomplete restore, {share} "
            f"({marker.get('reason', 'stopped before its end')}); run restore again to go on")


def _version_status(archive, version, content, sidecar, names):
    """status's line for one version (none for a version that is not there)."""
    path = _version_path(archive, version)
    label = "current" if not version else f"--previous {version}"
    name = os.path.basename(path)
    try:
        found = _archive_files(archive, version, content)
    except (SourceMissing, CorruptArchive) as exc:
        return [f"  {label}: {name}  unusable: {exc}"]
    if found is None:
        return [] if version else ["  current: missing"]
    files, wholes = found
    split = len(files) > 1 or files[0][0] != path
    hashes = sorted(wholes or _expected_hashes(sidecar, name, fallback=False) or [])
    digest = " or ".join(h[:16] for h in hashes) or "no checksum"
    how = f"  ({len(files)} parts)" if split else ""
    ignored = len(_part_numbers(names, name)) if not split else 0
    if ignored:
        how = f"  ({ignored} parts beside it ignored: the single file is used)"
    layer_text = ""
    if len(hashes) == 1:
        layers = _find_layers(archive, hashes[0])
        if layers:
            layer_text = (f", {len(layers)} layer(s) of "
                          f"{_human(sum(os.path.getsize(p) for p in layers))}")
    newest = max(mtime for _, _, mtime in files) / 1e9
    return [f"  {label}: {name}{how}  {_human(sum(size for _, size, _ in files))}  "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(newest))}"
            f"  sha256 {digest}{layer_text}"]


# ------------------------------------------------------------------------------ autosave --
def _parse_duration(text):
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            seconds = float(text[:-1]) * units[text[-1]]
        else:
            seconds = float(text)
    except ValueError:
        raise UsageError(f"--every takes a duration like 30s, 15m or 1h, not {text!r}.") from None
    if not 0 < seconds < float("inf"):  # also refuses nan
        raise UsageError(f"--every must be a positive duration, not {text!r}.")
    return seconds


class Autosave:
    """A background saver: saves every `every` when something changed, skips when nothing
    did, survives a failing save, and saves one last time on stop().

    A failing save is logged once and retried every round; while it keeps failing with the
    same message (a read-only archive folder fails the same way each time), the rounds stay
    quiet, so the log never fills with copies. A different failure is logged, and so are
    the first save that works again and a failing final save. `error` holds the last
    round's failure, None after a round that worked.
    """

    def __init__(self, every, log=print, **save_arguments):
        self.every = _parse_duration(every)
        self.log = log
        self.save_arguments = dict(save_arguments, quiet=True)
        self.last = None  # the last SaveResult
        self.error = None  # the last failure, if the last round failed
        self.rounds = 0
        self._logged_failure = None  # the failure said last, kept quiet while it repeats
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autosave", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.every):
            self.save_now()

    def save_now(self):
        self.rounds += 1
        try:
            self.last, self.error = save(**self.save_arguments), None
            if self.last.action != "unchanged" or self._logged_failure:
                self.log(f"autosave: {self.last.summary()}")
            self._logged_failure = None
        except Exception as exc:  # a background loop must outlive whatever one round throws
            self.error = exc
            failure = (type(exc), str(exc))
            if failure != self._logged_failure:
                self._logged_failure = failure
                self.log(f"autosave: the save failed; trying again every {self.every:g} s "
                         f"(quietly while it fails like this): {exc}")
        return self.last

    def stop(self, final_save=True):
        """Stop the loop; with final_save, save once more (what changed since the last round)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not final_save:
            return self.last
        said = self._logged_failure
        self.save_now()
        if self.error is not None and self._logged_failure == said:  # kept quiet: say it
            self.log(f"autosave: the final save failed: {self.error}")
        return self.last


def autosave(every="15m", **save_arguments):
    """Start saving in a daemon thread (for a notebook kernel); return the Autosave handle."""
    return Autosave(every, **save_arguments).start()


def _sample_tree(root):
    """A small stand-in `_assets`: images, a weight shard, a tokenizer, a script, a link."""
    rng = __import__("random").Random(7)
    for i in range(60):
        path = os.path.join(root, "images", f"class_{i % 3:02d}", f"img_{i:04d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.randint(20_000, 60_000)))
    os.makedirs(os.path.join(root, "weights"))
    with open(os.path.join(root, "weights", "model.safetensors"), "wb") as f:
        f.write(os.urandom(8 << 20))
    os.makedirs(os.path.join(root, "tokenizer"))
    with open(os.path.join(root, "tokenizer", "tokenizer.json"), "w") as f:
        json.dump({f"tok{i}": i for i in range(50_000)}, f)
    with open(os.path.join(root, "config.yaml"), "w") as f:
        f.write("lr: 0.001\nbatch_size: 32\n")
    os.makedirs(os.path.join(root, "scripts"))
    with open(os.path.join(root, "scripts", "train.sh"), "w") as f:
        f.write("#!/bin/sh\necho training\n")
    os.chmod(os.path.join(root, "scripts", "train.sh"), 0o755)
    os.symlink("weights/model.safetensors", os.path.join(root, "latest.safetensors"))
    os.makedirs(os.path.join(root, "logs"))


def _tree_fingerprint(root):
    """{relative path: (kind, permission bits, sha256 or link target)} for comparing trees."""
    prints = {}
    for path, entry in _scan(root).items():
        full = os.path.join(root, path)
        if entry[0] == "f":
            with open(full, "rb") as f:
                prints[path] = ("f", os.lstat(full).st_mode & 0o777,
                                hashlib.sha256(f.read()).hexdigest())
        elif entry[0] == "l":
            prints[path] = ("l", entry[1])
        else:
            prints[path] = ("d", os.lstat(full).st_mode & 0o777)
    return prints


# ---------------------------------------------------------------------------------- demo --
def demo(log=print):
    """The whole round trip in a temporary folder: archive a sample folder, restore it with
    every engine, check it file by file, change it, save the change as a layer, restore
    base + layer as a new session would, check again, clean up."""
    import tarfile
    import tempfile
    with tempfile.TemporaryDirectory(prefix="bootstrap_assets-demo-") as tmp:
        made = os.path.join(tmp, "made", "_assets")
        _sample_tree(made)
        archive = os.path.join(tmp, "drive", "MyDrive", "assets.tar.gz")
        os.makedirs(os.path.dirname(archive))
        started = time.monotonic()
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            tar.add(made, arcname="_assets")
        with open(archive, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(archive + ".sha256", "w") as f:
            f.write(f"{digest}  assets.tar.gz\n")
        log(f"demo: made a sample _assets ({len(_scan(made))} entries) and archived it to "
            f"{archive} ({_human(os.path.getsize(archive))}) with a .sha256 sidecar in "
            f"{time.monotonic() - started:.2f} s")
        expected = _tree_fingerprint(made)
        for engine in available_engines():
            dest = os.path.join(tmp, f"content-{engine}", "_assets")
            result = restore(archive, dest, engine=engine, quiet=True, drive_mount="")
            if _tree_fingerprint(dest) != expected:
                raise BootstrapError(f"demo: the tree restored by engine {engine} differs "
                                     f"from the original. This is a bug; please report it.")
            log(f"demo [{engine}]: {result.summary()}")
            log(f"demo [{engine}]: all {len(expected)} entries match the original (bytes, "
                f"modes, links)")
            again = restore(archive, dest, engine=engine, quiet=True, drive_mount="")
            log(f"demo [{engine}]: re-run: {again.action} in {again.seconds:.3f} s")
        # The session's work: a new checkpoint, an edited config, a deleted image.
        with open(os.path.join(dest, "weights", "checkpoint-1.pt"), "wb") as f:
            f.write(os.urandom(1 << 20))
        with open(os.path.join(dest, "config.yaml"), "a") as f:
            f.write("epochs: 20\n")
        os.unlink(os.path.join(dest, "images", "class_00", "img_0000.jpg"))
        changed = _tree_fingerprint(dest)
        saved = save(dest, archive, quiet=True, drive_mount="")
        log(f"demo [save]: changed 3 files, then {saved.summary()}")
        fresh = os.path.join(tmp, "content-next-session", "_assets")
        result = restore(archive, fresh, quiet=True, drive_mount="")
        if _tree_fingerprint(fresh) != changed:
            raise BootstrapError("demo: base + layer did not restore the changed tree. This "
                                 "is a bug; please report it.")
        log(f"demo [next session]: {result.summary()}")
        log(f"demo [next session]: all {len(changed)} entries match the changed folder")
    log("demo: done, temporary files removed")


# ------------------------------------------------------------------------------------ CLI --
EXIT_CODES = "\n".join(f"  {cls.exit_code:>2}  {cls.__doc__.split(' (exit ')[0]}" for cls in (
    BootstrapError, UsageError, SourceMissing, DeadMount, ChecksumMismatch, UnsafeArchive,
    CorruptArchive, NoSpace, DestinationChanged, Locked, Unsupported, AccessDenied))


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        how = "" if self.prog.startswith(CONSOLE_COMMAND) else "python "
        raise UsageError(f"{message}. See: {how}{self.prog} --help")


# The command `pip install` makes (pyproject.toml); run as it, usage and help name it.
CONSOLE_COMMAND = "bootstrap-assets"


def _program_name():
    called = os.path.basename(sys.argv[0]) if sys.argv else ""
    return CONSOLE_COMMAND if called == CONSOLE_COMMAND else "bootstrap_assets.py"


class _VersionAction(argparse.Action):
    """--version prints the tool's version and exits 0, before or after a command."""

    def __init__(self, option_strings, dest, **_):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"bootstrap_assets {VERSION}")
        parser.exit()


def _check_old_version_flag(argv):
    """`--version N` selected a previous version before it became --previous N: refused
    with the new spelling, never taken as --version (which would exit 0 having restored
    nothing)."""
    for word, following in zip(argv, argv[1:] + [""]):
        if word.startswith("--version="):
            following = word[len("--version="):]
        elif word != "--version":
            continue
        if following.isdigit():
            raise UsageError(f"--version prints this tool's version and takes no value. To "
                             f"restore a previous version of the archive, use --previous "
                             f"{following}.")


COMMANDS = ("restore", "save", "autosave", "split", "status", "wait", "demo")


def _size(text):
    """A size flag's value: 0, 512K, 32M, 1G, 1.5G (K, M, G, T: powers of 1024) or bytes."""
    import re
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"a size like 0, 512K, 32M or 1G is needed, not "
                                         f"{text!r}")
    return int(float(match[1]) * 1024 ** " kmgt".index(match[2] or " "))


def _parser():
    """The command line: the flags every command shares, then each command's own; no
    command means restore (_run inserts it)."""
    common = _ArgumentParser(add_help=False)
    common.add_argument("--version", action=_VersionAction)
    common.add_argument("--archive", help=f"archive path, http(s) URL, s3://BUCKET/KEY or "
                                          f"gs://BUCKET/PATH (env {ENV_ARCHIVE}; default "
                                          f"{ARCHIVE}; on Kaggle, the one archive under "
                                          f"/kaggle/input)")
    common.add_argument("--dest", help=f"the local folder (env {ENV_DEST}; default {DEST}; "
                                       f"on Kaggle, /kaggle/temp/_assets)")
    common.add_argument("--drive-mount", help=f"where Google Drive is mounted (env "
                                              f"{ENV_DRIVE_MOUNT}; default {DRIVE_MOUNT})")
    common.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    common.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT,
                        metavar="SECONDS", help=f"how long to wait for another run on the "
                                                f"same folder ({DEFAULT_LOCK_TIMEOUT:g})")
    common.add_argument("--retry-for", type=float, default=DEFAULT_RETRY_FOR, metavar="SECONDS",
                        help=f"how long to keep retrying a failing mount or download "
                             f"({DEFAULT_RETRY_FOR:g})")
    common.add_argument("--drive-cache", metavar="DIR",
                        help=f"the local cache of Drive's mount, counted in the space plan "
                             f"when it shares the local disk (env {ENV_DRIVE_CACHE}; default "
                             f"{DRIVE_CACHE})")
    saving = _ArgumentParser(add_help=False)
    saving.add_argument("--format", default="auto", choices=("auto", "tar", "gz", "zst"),
                        help="archive format; auto measures whether compression pays (auto)")
    saving.add_argument("--level", type=int, help="compression level (gz 1, zst 3); under "
                                                  "--format auto, used when it picks gzip")
    saving.add_argument("--keep", type=int, default=DEFAULT_KEEP,
                        help=f"previous versions a full save keeps ({DEFAULT_KEEP})")
    saving.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reading the written archive back")
    saving.add_argument("--part-size", type=_size, metavar="SIZE",
                        help=f"write a full archive larger than SIZE as parts "
                             f"ARCHIVE.part-0001, ... of at most SIZE; 0: one file "
                             f"({_human_binary(DEFAULT_PART_SIZE)})")
    mode = saving.add_mutually_exclusive_group()
    mode.add_argument("--incremental", dest="incremental", action="store_const",
                      const="always", default="auto",
                      help="write a layer of the changes whenever possible")
    mode.add_argument("--full", dest="incremental", action="store_const", const="never",
                      help="always write a full archive")
    saving.add_argument("--flush", action="store_true",
                        help="in a Colab kernel: wait for Drive's upload after saving")
    saving.add_argument("--first", action="append", metavar="GLOB",
                        help="put the files GLOB names first in the archive (repeatable, in "
                             "order; default: top-level entries smallest first)")

    parser = _ArgumentParser(
        prog=_program_name(),
        description=f"bootstrap_assets {VERSION}: keep a project's `_assets` folder on Google "
                    f"Drive as one archive; restore a verified local copy, save changes back."
                    f"\n\nrestore is the default command:\n  python bootstrap_assets.py "
                    f"[restore] [--archive PATH_OR_URL] [--dest DIR] [--sha256 HEX] [--force]"
                    f"\n      [--engine auto|python|tar] [--previous N] [--list] [--quiet]\n"
                    f"Each command's --help lists all its flags; --version prints "
                    f"\"bootstrap_assets {VERSION}\".",
        epilog="exit codes:\n   0  success\n" + EXIT_CODES + "\n 130  interrupted (Ctrl-C, "
               "SIGINT)\n 143  stopped by SIGTERM (kill PID)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    restore_parser = commands.add_parser(
        "restore", parents=[common], help="archive -> local folder (the default command)")
    restore_parser.add_argument("--sha256", help="expected sha256 of the archive; keep it "
                                                 "outside Drive (default: ARCHIVE.sha256)")
    restore_parser.add_argument("--force", action="store_true",
                                help="restore even over local changes (the old folder is "
                                     "moved to DEST.old-<timestamp>, never deleted)")
    restore_parser.add_argument("--engine", choices=ENGINES,
                                help="extractor: python (everywhere), tar (GNU tar), auto")
    restore_parser.add_argument("--previous", type=int, default=0, metavar="N",
                                help="restore the Nth previous version kept by save "
                                     "(ARCHIVE.N; see status)")
    restore_parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                                metavar="N",
                                help=f"Range requests reading a URL at once; 1: one stream "
                                     f"({DEFAULT_CONNECTIONS})")
    restore_parser.add_argument("--list", action="store_true",
                                help="list the archive's versions and layers, then stop")
    restore_parser.add_argument("--only", action="append", metavar="GLOB",
                                help="restore only the files GLOB names (repeatable; a "
                                     "folder/, ** any depth); later runs add to the folder, "
                                     "a restore without --only completes it")
    restore_parser.add_argument("--background", action="store_true",
                                help="restore in a process of its own and return at once; "
                                     "then `wait PATH` blocks until PATH is in place")
    commands.add_parser("save", parents=[common, saving],
                        help="local folder -> archive (crash-safe, verified, versioned)")
    autosave_parser = commands.add_parser(
        "autosave", parents=[common, saving],
        help="save every --every while something changed; a final save on SIGTERM")
    autosave_parser.add_argument("--every", default="15m",
                                 help="how often: 30s, 15m, 1h (15m)")
    split_parser = commands.add_parser(
        "split", parents=[common],
        help="rewrite a single-file archive on Drive as parts (streaming, verified)")
    split_parser.add_argument("--part-size", type=_size, default=DEFAULT_PART_SIZE,
                              metavar="SIZE",
                              help=f"the parts' size ({_human_binary(DEFAULT_PART_SIZE)})")
    split_parser.add_argument("--keep", type=int, default=DEFAULT_KEEP,
                              help=f"previous versions to keep; the old file becomes "
                                   f"ARCHIVE.1 (0: remove it) ({DEFAULT_KEEP})")
    split_parser.add_argument("--no-verify", dest="verify", action="store_false",
                              help="skip reading the parts back")
    commands.add_parser("status", parents=[common], help="versions, layers, local changes")
    wait_parser = commands.add_parser(
        "wait", parents=[common], help="block until PATHs (or everything) of a background "
                                       "restore are in place; exit as that restore would")
    wait_parser.add_argument("paths", nargs="*", metavar="PATH",
                             help="a file, a folder/ or a glob (**: any depth), below --dest")
    wait_parser.add_argument("--timeout", type=float, metavar="SECONDS",
                             help="give up after this long (exit 1); the restore goes on")
    demo_parser = commands.add_parser("demo", help="a self-contained round trip in a "
                                                   "temporary folder")
    demo_parser.add_argument("--version", action=_VersionAction)
    return parser


def _save_arguments(args):
    return dict(dest=args.dest, archive=args.archive, format=args.format, level=args.level,
                keep=args.keep, verify=args.verify, incremental=args.incremental,
                quiet=args.quiet, drive_mount=args.drive_mount,
                lock_timeout=args.lock_timeout, retry_for=args.retry_for,
                flush_drive=args.flush, part_size=args.part_size, drive_cache=args.drive_cache,
                first=args.first)


def _run_autosave(args):
    """The foreground autosave loop: SIGTERM or Ctrl-C ends it after one final save."""
    saver = Autosave(args.every, **_save_arguments(args))
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    if not args.quiet:
        print(f"autosave: every {args.every}; stop with `kill {os.getpid()}` (a final save "
              f"runs first)", flush=True)
    while not stop.wait(saver.every):
        saver.save_now()
    saver.stop(final_save=True)
    if saver.error is not None:
        raise saver.error


class CellFailed(Exception):
    """Ends a notebook cell that ran this file (pasted, or `%run bootstrap_assets.py`) and
    failed: the cell fails, so "Run all" stops there, and IPython shows the tool's message
    alone (through _render_traceback_), not a traceback, `SystemExit: 3` or its "To exit"
    warning. exit_code is what the command line would have exited with."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code

    def _render_traceback_(self):
        return str(self).splitlines()


def _in_ipython():
    """True when an IPython shell runs this code (a kernel, or IPython in a terminal)."""
    ipython = sys.modules.get("IPython")
    return _in_kernel() or bool(ipython and getattr(ipython, "get_ipython", lambda: None)())


# The README's "Troubleshooting" has a heading "exit N: TITLE" per exit code, saying what to do
# (docs/troubleshooting.md has the same heading, listing every message of that code and its
# fix); every error message ends by naming it.
TROUBLESHOOTING = {
    1: "other failures", 2: "a flag or setting is wrong", 3: "the archive or Drive is missing",
    4: "the mount is dead", 5: "checksum mismatch", 6: "unsafe archive",
    7: "damaged or not an archive", 8: "not enough space", 9: "local changes",
    10: "another run holds the lock", 11: "unsupported archive",
    12: "the bucket refused the credentials", 130: "interrupted",
    143: "stopped by SIGTERM",
}


def _error_text(message, exit_code):
    """An error as printed: the message, then where the README explains it and its fix."""
    title = TROUBLESHOOTING.get(exit_code)
    section = f'"exit {exit_code}: {title}"' if title else f"exit {exit_code}"
    return f"bootstrap_assets: {message}\n(see README.md, Troubleshooting, {section})"


def _fail_cell(exc):
    """End the running cell with exc. A pasted cell fails by raising it; `%run` catches
    whatever its script raises and shows it, leaving the cell "ok", so "Run all" would go
    on: marking the cell's result as failed (IPython keeps it as displayhook.exec_result
    while the cell runs; the kernel's reply reads it) makes that cell fail too."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    if hasattr(result, "error_in_exec"):
        result.error_in_exec = exc
    raise exc


class _Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a runtime being stopped) unwinds a run the way Ctrl-C does, so
    the same cleanups run (staging folder, temporary files, lock); the default action would
    kill the process on the spot and leave them for the next run."""


def _raise_terminated(*_):
    raise _Terminated()


def _catch_sigterm():
    """Make SIGTERM raise _Terminated while a command runs; returns what to restore (None
    when another handler is already in place, e.g. a host's, or off the main thread)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return signal.SIG_DFL


def _stopped(how):
    return (f"{how}; nothing was left half-done: the folder and the archive are each as they "
            f"were or complete, and no temporary file is left. Run the same command again to "
            f"finish.")


def main(argv=None):
    """Run the command line (argv, or this run's: see _command_line); return the exit code.
    With _run, the one place errors become exits."""
    exit_code, message = _run(argv)
    if message:
        print(message, file=sys.stderr)
    return exit_code


def _run(argv):
    """main(), returning (exit code, the error message to print or None)."""
    argv = _command_line() if argv is None else list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "restore")
    previous_sigterm = _catch_sigterm()
    try:
        _check_old_version_flag(argv)
        args = _parser().parse_args(argv)
        if args.command == "demo":
            demo()
        elif args.command == "save":
            result = save(**_save_arguments(args))
            if not args.quiet:
                print(result.summary())
        elif args.command == "autosave":
            _run_autosave(args)
        elif args.command == "split":
            result = split(args.archive, part_size=args.part_size, keep=args.keep,
                           verify=args.verify, quiet=args.quiet, drive_mount=args.drive_mount,
                           drive_cache=args.drive_cache, dest=args.dest,
                           lock_timeout=args.lock_timeout, retry_for=args.retry_for)
            if not args.quiet:
                print(result.summary())
        elif args.command == "wait":
            wait(*args.paths, dest=args.dest, timeout=args.timeout, quiet=args.quiet)
            if not args.quiet:
                print(f"in place: {', '.join(args.paths) or 'everything'}")
        elif args.command == "status" or args.list:
            print("\n".join(status(args.archive, args.dest, drive_mount=args.drive_mount,
                                   retry_for=args.retry_for)))
        elif args.background:
            print(_start_background([a for a in argv if a != "--background"], args.dest))
        else:
            try:
                result = restore(args.archive, args.dest, sha256=args.sha256,
                                 force=args.force, engine=args.engine, quiet=args.quiet,
                                 drive_mount=args.drive_mount, lock_timeout=args.lock_timeout,
                                 retry_for=args.retry_for, version=args.previous,
                                 drive_cache=args.drive_cache, connections=args.connections,
                                 only=args.only)
            except BootstrapError as exc:
                if os.environ.get(ENV_BACKGROUND):  # for `wait`, in another process
                    _write_status(_settings(None, args.dest, None)[1],
                                  {"pid": os.getpid(), "exit_code": exc.exit_code,
                                   "message": str(exc)})
                raise
            if os.environ.get(ENV_BACKGROUND):
                _write_status(_settings(None, args.dest, None)[1],
                              {"pid": os.getpid(), "exit_code": 0})
            if not args.quiet:
                print(result.summary())
        return 0, None
    except BootstrapError as exc:
        return exc.exit_code, _error_text(f"error: {exc}", exc.exit_code)
    except SystemExit as exc:  # --help, --version
        return exc.code or 0, None
    except _Terminated:
        return 143, _error_text(_stopped("stopped by SIGTERM (kill)"), 143)
    except KeyboardInterrupt:
        return 130, _error_text(_stopped("interrupted (Ctrl-C)"), 130)
    except OSError as exc:  # an operating-system failure no step above could explain better
        return BootstrapError.exit_code, _error_text(f"error: {exc}", BootstrapError.exit_code)
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    if _in_ipython():  # a pasted cell or %run: sys.exit would show `SystemExit: 3`
        _exit_code, _message = _run(None)
        if _exit_code:
            _fail_cell(CellFailed(_message, _exit_code))
    else:
        sys.exit(main())
