#!/usr/bin/env python3
"""Conformance: archives no one here wrote, restored by every engine and compared with what
the reference extractor (GNU tar, unzip) makes of them after the README's layout rule.

    python3 tests/conformance.py          # or: make conformance
    python3 tests/conformance.py -v       # one line per case and engine

Sources:
  fetched through the package managers (pinned versions, cached in $CONFORMANCE_CACHE,
  default ~/.cache/bootstrap-assets-conformance): npm tarballs (`npm pack`), a PyPI sdist
  and a wheel (`pip download`), the data.tar.xz of a few Debian packages (`apt-get
  download` + `ar x`), and Go's archive/tar test archives (all 40-odd) with two of
  archive/zip's, from Debian's golang-1.19-src (GO_SRC: Go 1.19.8 as Debian packs it; the
  expectation of each is in GO_TAR); a registry that cannot be reached is skipped, and the
  table says so;
  built here from a small tree of odd but legal content (unicode names, spaces, empty files
  and folders, relative and dangling links, hard links, exec bits, long names, deep paths)
  by every archiver on the machine: GNU tar in each format (+ --xattrs, -S), bsdtar (pax,
  zip), Python's tarfile (each format) and zipfile, zip -r, and gzip, pigz, bzip2, xz -T0,
  zstd -T0 over a tar. An archiver that is missing is a skipped row, except under CI=true,
  where it fails (.ci/run installs them).

Each archive is restored with every engine (bootstrap_assets.available_engines()) and the
result compared with the reference's: same paths, kinds, contents, link targets, exec bits
and hard-link groups. The only differences allowed are the documented safety refusals
(absolute names, links leaving the folder, devices, FIFOs; setuid bits cleared; for Go's
archives also the refusals kept on purpose and damage GNU tar fails on too, which is
checked), each asserted by name: the error class, the member and the rule, the
destination untouched.
Sparse members are taken either way (refused cleanly as exit 6, or restored like the
reference): that support is being built on another branch.

Prints one table (class of case, cases, runs, runs in the promised state, note) and ends
with `conformance: N passed, M failed`; exits 1 on any failure.
"""
import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

import bootstrap_assets as ba  # noqa: E402

DEST_NAME = "_assets"
CACHE = os.path.expanduser(os.environ.get("CONFORMANCE_CACHE")
                           or "~/.cache/bootstrap-assets-conformance")
IN_CI = os.environ.get("CI") == "true"
FETCH_TIMEOUT = 120

# Pinned: (name, version). npm and PyPI never change a published version's bytes; Debian's
# bookworm versions may be superseded, and then the fetch fails and is reported as skipped.
NPM = [("ms", "2.1.3"), ("is-number", "7.0.0"), ("left-pad", "1.3.0")]
PYPI_SDIST = [("six", "1.16.0")]
PYPI_WHEEL = [("six", "1.16.0")]
# Relative links (zlib1g, libbz2-1.0), an `_all` package (lsb-release), and one whose data
# holds a link to an absolute path outside the folder (libbz2-dev): refused by name.
DEBIAN = [("zlib1g", "1:1.2.13.dfsg-1", None), ("libbz2-1.0", "1.0.8-5+b1", None),
          ("lsb-release", "12.0-1", None),
          ("libbz2-dev", "1.0.8-5+b1",
           ("UnsafeArchive", "usr/lib/x86_64-linux-gnu/libbz2.so", "absolute path"))]


# ------------------------------------------------------------------------------ cases --
class Case:
    """One archive and what a restore of it must end in.

    refusal: None (the reference's tree, after the layout rule), or (error class name,
    member, rule words) for a documented safety refusal. cleared: the restore must equal
    the reference except for setuid/setgid/sticky bits, which must be gone. sparse: the
    reference's tree, and its sparse file (disk.img) keeps its holes. note: words the
    result's note must hold. reference_fails: the reference extractor exits non-zero on
    this archive too (checked; with no refusal, the files it did extract are compared)."""

    def __init__(self, group, name, path, refusal=None, cleared=False, sparse=False,
                 note=None, reference_fails=False):
        self.group, self.name, self.path = group, name, path
        self.refusal, self.cleared, self.sparse = refusal, cleared, sparse
        self.note, self.reference_fails = note, reference_fails


class Skip(Exception):
    """A source or archiver this machine cannot provide (the table says which and why)."""


def run(cmd, cwd=None, env=None, timeout=FETCH_TIMEOUT, ok=(0,)):
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Skip(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Skip(f"`{' '.join(cmd)}` took over {timeout} s") from None
    if r.returncode not in ok:
        text = [line for line in r.stdout.decode("utf-8", "replace").splitlines()
                if line.strip() and "complete log" not in line] or ["(no output)"]
        words = cmd[2:4] if cmd[1:2] == ["-m"] else [os.path.basename(cmd[0])] + cmd[1:2]
        program = " ".join(words)
        raise Skip(f"{program} exited {r.returncode}: {text[-1].strip()[:160]}")
    return r.stdout.decode("utf-8", "replace")


def need(program, package):
    if not shutil.which(program):
        raise Skip(f"{program} is not installed (Debian package {package})")


# --------------------------------------------------------------------- fetched sources --
def cached(kind, filename, fetch):
    """The file CACHE/kind/filename, fetched into a temp folder by fetch(folder) when absent."""
    folder = os.path.join(CACHE, kind)
    path = os.path.join(folder, filename)
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        fetch(tmp)
        got = [n for n in os.listdir(tmp) if not n.startswith(".")]
        if len(got) != 1:
            raise Skip(f"expected one file from the {kind} fetch, got {sorted(got)}")
        os.replace(os.path.join(tmp, got[0]), path)
    return path


def npm_cases():
    need("npm", "npm")
    cases = []
    for name, version in NPM:
        path = cached("npm", f"{name}-{version}.tgz", lambda tmp, n=name, v=version: run(
            ["npm", "pack", "--loglevel=error", "--fetch-retries=1", "--fetch-timeout=30000",
             f"{n}@{v}", "--pack-destination", tmp], cwd=tmp))
        cases.append(Case("npm pack (.tgz)", f"{name}@{version}", path))
    return cases


def pip_cases(binary):
    cases = []
    for name, version in PYPI_WHEEL if binary else PYPI_SDIST:
        kind = "wheel" if binary else "sdist"
        flag = "--only-binary" if binary else "--no-binary"
        suffix = "-py2.py3-none-any.whl" if binary else ".tar.gz"
        path = cached("pypi", f"{name}-{version}{suffix}", lambda tmp, n=name, v=version: run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--retries", "1", "--timeout", "30", "--no-deps", flag, ":all:", "-d", tmp,
             f"{n}=={v}"]))
        cases.append(Case(f"PyPI {kind} ({'zip' if binary else 'tar.gz'})",
                          f"{name}=={version}", path))
    return cases


def debian_cases(work):
    need("apt-get", "apt")
    need("ar", "binutils")
    cases = []
    for package, version, refusal in DEBIAN:
        def fetch(tmp, p=package, v=version):
            run(["apt-get", "download", "-q", f"{p}={v}"], cwd=tmp)
        deb = cached("debian", f"{package}_{version.replace(':', '%3a')}.deb", fetch)
        unpacked = tempfile.mkdtemp(prefix="deb-", dir=work)
        run(["ar", "x", deb], cwd=unpacked)
        data = [n for n in os.listdir(unpacked) if n.startswith("data.tar")]
        if not data:
            raise Skip(f"{deb} holds no data.tar.*")
        cases.append(Case(f"Debian {data[0]}", f"{package}={version}",
                          os.path.join(unpacked, data[0]), refusal=refusal))
    return cases


# Go's archive/tar test archives, from Debian's golang-1.19-src (the machine reaches Debian's
# mirror, not go.dev): the source tree of Go 1.19.8 as Debian packs it, pinned by version.
GO_SRC = ("golang-1.19-src", "1.19.8-2")
GO_TESTDATA = "usr/share/go-1.19/src/archive"
NO_END = "end-of-archive marker"  # the note of an archive that ends without its zero blocks
# What restore must make of each: None, identical to GNU tar; a str, identical and that note;
# else (error class, member, rule words, whether GNU tar fails on it too). A name not listed
# must be identical to GNU tar: a new Go archive is a new case, not a silent pass.
GO_TAR = {
    # written without Close: no end-of-archive blocks
    "gnu-incremental.tar": NO_END, "gnu-multi-hdrs.tar": NO_END, "nil-uid.tar": NO_END,
    "pax-multi-hdrs.tar": NO_END, "ustar-file-reg.tar": NO_END,
    # refused on purpose, where GNU tar extracts
    "hdr-only.tar": ("UnsafeArchive", "fifo", "a FIFO (rule:", False),
    "pax-bad-mtime-file.tar": ("CorruptArchive", "foo", "not a number (rule:", False),
    "pax-nul-path.tar": ("UnsafeArchive", "0123456789", "NUL byte in its name (rule:", False),
    "pax-path-hdr.tar": ("CorruptArchive", "PAX1/PAX1/long-path-name",
                         "ends after the extended header", False),
    # damaged: GNU tar fails on each too
    "issue10968.tar": ("CorruptArchive", "issue10968.tar", "not an archive this tool knows",
                       True),
    "issue11169.tar": ("CorruptArchive", "issue11169.tar", "in the middle of a member's header",
                       True),
    "issue12435.tar": ("CorruptArchive", "issue12435.tar", "unreadable size field", True),
    "neg-size.tar": ("CorruptArchive", "neg-size.tar", "unreadable size field", True),
    "pax-bad-hdr-file.tar": ("CorruptArchive", "pax-bad-hdr-file.tar", "record is malformed",
                             True),
    "pax-bad-hdr-large.tar.bz2": ("UnsafeArchive", "pax-bad-hdr-large.tar.bz2",
                                  "rule: pax headers and long names stay under", True),
    "pax-global-records.tar": ("UnsafeArchive", "pax-global-records.tar",
                               "a global pax header sets path", True),
    "sparse-formats.tar": ("CorruptArchive", "sparse-gnu", "not whole 512-byte blocks", True),
    "writer-big.tar": ("CorruptArchive", "tmp/16gig.txt", "in the middle of member", True),
    "writer-big-long.tar": ("CorruptArchive", "longname/longname", "in the middle of member",
                            True),
}
# GNU tar exits 2 over an xattr record whose name holds a NUL, having extracted the file;
# restore ignores xattrs: the files must equal what GNU tar extracted
GO_TAR_REFERENCE_FAILS = {"pax-nul-xattrs.tar"}
GO_ZIP = ["test.zip", "test-prefix.zip"]  # test-prefix: 43 bytes before the zip


def go_testdata_cases(work):
    """Go's archive/tar testdata (every .tar and .tar.bz2 there) and two of archive/zip's."""
    need("apt-get", "apt")
    need("ar", "binutils")
    need("tar", "tar")
    package, version = GO_SRC

    def fetch(tmp):
        run(["apt-get", "download", "-q", f"{package}={version}"], cwd=tmp)
    deb = cached("debian", f"{package}_{version}_all.deb", fetch)
    unpacked = tempfile.mkdtemp(prefix="go-src-", dir=work)
    run(["ar", "x", deb, "data.tar.xz"], cwd=unpacked)
    run(["tar", "-xJf", "data.tar.xz", "--wildcards", f"./{GO_TESTDATA}/tar/testdata/*",
         f"./{GO_TESTDATA}/zip/testdata/*"], cwd=unpacked)
    folder = os.path.join(unpacked, GO_TESTDATA, "tar", "testdata")
    names = sorted(n for n in os.listdir(folder) if n.endswith((".tar", ".tar.bz2")))
    if len(names) < 30:
        raise Skip(f"{deb} holds {len(names)} tar test archives, not Go's usual 40-odd")
    cases = []
    for name in names:
        expect = GO_TAR.get(name)
        path = os.path.join(folder, name)
        if isinstance(expect, tuple):
            cls, member, rule, gnu_fails = expect
            cases.append(Case("Go archive/tar testdata", name, path, refusal=(cls, member, rule),
                              reference_fails=gnu_fails))
        else:
            cases.append(Case("Go archive/tar testdata", name, path, note=expect,
                              reference_fails=name in GO_TAR_REFERENCE_FAILS))
    for name in GO_ZIP:
        cases.append(Case("Go archive/zip testdata", name,
                          os.path.join(unpacked, GO_TESTDATA, "zip", "testdata", name)))
    return cases


# ---------------------------------------------------------------------- built sources --
def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


LONG_COMPONENT = "n" * 150 + ".txt"  # a name over 100 bytes: GNU long name / pax path
DEEP = "/".join(f"level{i:02d}" for i in range(30)) + "/leaf.txt"  # 270 bytes, 31 levels
OVER_255 = "x" * 200 + "/" + "y" * 100 + ".txt"  # a path over 255 bytes


def make_tree(top, level="full", dangling=True):
    """The odd-but-legal tree at top. level: "v7" (every path under 100 bytes), "ustar"
    (also paths up to 255 bytes that split into ustar's prefix and name), "full"."""
    os.makedirs(top)
    write(os.path.join(top, "a.txt"), b"alpha\n")
    write(os.path.join(top, "empty.bin"), b"")
    os.makedirs(os.path.join(top, "empty dir"))
    os.makedirs(os.path.join(top, "nested", "empty", "deeper"))
    write(os.path.join(top, "with space", "a b c.txt"), b"spaces\n")
    write(os.path.join(top, "données", "résumé.txt"), "résumé\n".encode())
    write(os.path.join(top, "日本語", "ファイル.txt"), "ファイル\n".encode())
    write(os.path.join(top, "emoji-\U0001f642.txt"), b"smile\n")
    write(os.path.join(top, "bin", "run.sh"), b"#!/bin/sh\necho run\n", 0o755)
    write(os.path.join(top, "bin", "tool"), b"\x7fELF-ish\n", 0o700)
    write(os.path.join(top, "bin", "private.key"), b"secret\n", 0o600)
    # incompressible and compressible data, large enough for several xz blocks and pigz
    # chunks, so the compressor variants are tested beyond one block
    state = hashlib.sha256(b"conformance").digest()
    blob = bytearray()
    while len(blob) < 256 << 10:
        state = hashlib.sha256(state).digest()
        blob += state
    write(os.path.join(top, "data", "blob.bin"), bytes(blob))
    write(os.path.join(top, "data", "text.txt"),
          b"".join(b"line %06d of a compressible file\n" % i for i in range(12000)))
    os.link(os.path.join(top, "data", "blob.bin"), os.path.join(top, "data", "blob-hard.bin"))
    os.link(os.path.join(top, "a.txt"), os.path.join(top, "bin", "a-hard.txt"))
    os.symlink("a.txt", os.path.join(top, "link-to-a"))
    os.symlink("../a.txt", os.path.join(top, "données", "up-link"))
    os.symlink("with space", os.path.join(top, "dir-link"))
    os.symlink("with space/a b c.txt", os.path.join(top, "through-space"))
    if dangling:
        os.symlink("not-there-yet.txt", os.path.join(top, "dangling"))
    if level in ("ustar", "full"):
        write(os.path.join(top, "ustar", "u" * 90, "v" * 90 + ".txt"), b"split by ustar\n")
    if level == "full":
        write(os.path.join(top, "long", LONG_COMPONENT), b"long name\n")
        write(os.path.join(top, "deep", DEEP), b"deep\n", 0o755)
        write(os.path.join(top, "long", OVER_255), b"over 255\n")
        os.symlink(LONG_COMPONENT, os.path.join(top, "long", "link-" + "l" * 120))
    return top


def gnu_tar_cases(work):
    need("tar", "tar")
    if "GNU tar" not in run(["tar", "--version"]):
        raise Skip("tar is not GNU tar")
    cases = []
    for fmt, level in (("v7", "v7"), ("ustar", "ustar"), ("gnu", "full"), ("posix", "full"),
                       ("oldgnu", "full")):
        parent = tempfile.mkdtemp(prefix=f"gnutar-{fmt}-", dir=work)
        make_tree(os.path.join(parent, DEST_NAME), level)
        path = os.path.join(work, f"gnu-{fmt}.tar")
        run(["tar", f"--format={fmt}", "-cf", path, "-C", parent, DEST_NAME])
        cases.append(Case("GNU tar (formats)", f"--format={fmt}", path))
    # -C DIR . : names start with ./ and there is no lone folder to unwrap
    parent = tempfile.mkdtemp(prefix="gnutar-dot-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    path = os.path.join(work, "gnu-dot.tar")
    run(["tar", "--format=gnu", "-cf", path, "-C", top, "."])
    cases.append(Case("GNU tar (formats)", "--format=gnu -C DIR .", path))
    # an incremental dump (`tar -g`): folders are GNU dump directories ('D'); level 0 holds
    # everything, level 1 what changed since
    parent = tempfile.mkdtemp(prefix="gnutar-incremental-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    snapshot = os.path.join(parent, "snapshot")
    for level in (0, 1):
        if level:
            write(os.path.join(top, "nested", "added.txt"), b"after the level-0 dump\n")
            os.remove(os.path.join(top, "a.txt"))
        path = os.path.join(work, f"gnu-incremental-{level}.tar.gz")
        run(["tar", "--format=gnu", "-g", snapshot, "-czf", path, "-C", parent, DEST_NAME])
        cases.append(Case("GNU tar (formats)", f"-g (incremental dump, level {level})", path))
    # a volume label (-V) and a name that is not UTF-8 (latin-1 bytes, from an older system)
    parent = tempfile.mkdtemp(prefix="gnutar-label-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME), "ustar")
    write(os.path.join(os.fsencode(top), b"caf\xe9-latin1.txt"), b"latin-1 name\n")
    path = os.path.join(work, "gnu-label.tar")
    run(["tar", "--format=gnu", "-V", "assets backup", "-cf", path, "-C", parent, DEST_NAME])
    cases.append(Case("GNU tar (formats)", "-V label, a latin-1 file name", path))
    # xattrs, when this filesystem keeps user xattrs
    parent = tempfile.mkdtemp(prefix="gnutar-xattr-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    try:
        os.setxattr(os.path.join(top, "a.txt"), "user.comment", b"made by conformance")
        os.setxattr(os.path.join(top, "empty dir"), "user.note", b"x" * 300)
    except OSError as exc:
        print(f"  (no xattr case: {exc})")
    else:
        path = os.path.join(work, "gnu-posix-xattrs.tar")
        run(["tar", "--xattrs", "--format=posix", "-cf", path, "-C", parent, DEST_NAME])
        cases.append(Case("GNU tar (formats)", "--format=posix --xattrs", path))
    return cases


def sparse_cases(work):
    need("tar", "tar")
    cases = []
    parent = tempfile.mkdtemp(prefix="sparse-", dir=work)
    top = os.path.join(parent, DEST_NAME)
    write(os.path.join(top, "small.txt"), b"beside the sparse file\n")
    with open(os.path.join(top, "disk.img"), "wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"data in the middle" * 100)
        f.seek((8 << 20) - 4096)
        f.write(b"tail" * 1024)
    for label, options in (("gnu", ["--format=gnu"]),
                           ("posix 0.0", ["--format=posix", "--sparse-version=0.0"]),
                           ("posix 0.1", ["--format=posix", "--sparse-version=0.1"]),
                           ("posix 1.0", ["--format=posix", "--sparse-version=1.0"])):
        path = os.path.join(work, f"sparse-{label.replace(' ', '-')}.tar")
        run(["tar", "-S", *options, "-cf", path, "-C", parent, DEST_NAME])
        cases.append(Case("GNU tar -S (sparse)", f"-S {' '.join(options)}", path, sparse=True))
    return cases


def bsdtar_cases(work):
    need("bsdtar", "libarchive-tools")
    cases = []
    parent = tempfile.mkdtemp(prefix="bsdtar-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    path = os.path.join(work, "bsdtar-default.tar")
    run(["bsdtar", "-cf", path, "-C", top, "."])
    cases.append(Case("bsdtar", "default (pax) -C DIR .", path))
    path = os.path.join(work, "bsdtar-pax.tar.gz")
    run(["bsdtar", "--format=pax", "-czf", path, "-C", parent, DEST_NAME])
    cases.append(Case("bsdtar", "--format=pax -z", path))
    for fmt, level in (("ustar", "ustar"), ("gnutar", "full")):
        parent = tempfile.mkdtemp(prefix=f"bsdtar-{fmt}-", dir=work)
        make_tree(os.path.join(parent, DEST_NAME), level)
        path = os.path.join(work, f"bsdtar-{fmt}.tar")
        run(["bsdtar", f"--format={fmt}", "-cf", path, "-C", parent, DEST_NAME])
        cases.append(Case("bsdtar", f"--format={fmt}", path))
    path = os.path.join(work, "bsdtar.zip")
    run(["bsdtar", "--format=zip", "-cf", path, "-C", parent, DEST_NAME])
    cases.append(Case("bsdtar", "--format=zip", path))
    path = os.path.join(work, "bsdtar-stream.zip")
    with open(path, "wb") as out:
        subprocess.run(["bsdtar", "--format=zip", "-cf", "-", "-C", parent, DEST_NAME],
                       stdout=out, check=True)
    cases.append(Case("bsdtar", "--format=zip to a pipe", path))
    path = os.path.join(work, "bsdtar-store.zip")
    run(["bsdtar", "--format=zip", "--options", "zip:compression=store", "-cf", path,
         "-C", top, "."])
    cases.append(Case("bsdtar", "--format=zip, stored, -C DIR .", path))
    return cases


def python_cases(work):
    cases = []
    for fmt, label, level in ((tarfile.USTAR_FORMAT, "USTAR", "ustar"),
                              (tarfile.GNU_FORMAT, "GNU", "full"),
                              (tarfile.PAX_FORMAT, "PAX", "full")):
        parent = tempfile.mkdtemp(prefix=f"tarfile-{label}-", dir=work)
        top = make_tree(os.path.join(parent, DEST_NAME), level)
        path = os.path.join(work, f"tarfile-{label}.tar.gz")
        with tarfile.open(path, "w:gz", format=fmt) as tar:
            # another top folder name than --dest's, no ./: unwrapped whatever its name
            tar.add(top, arcname="models")
        cases.append(Case("Python tarfile", f"format={label} (w:gz)", path))
    for compression in ("bz2", "xz"):
        parent = tempfile.mkdtemp(prefix=f"tarfile-{compression}-", dir=work)
        top = make_tree(os.path.join(parent, DEST_NAME))
        path = os.path.join(work, f"tarfile.tar.{compression}")
        with tarfile.open(path, f"w:{compression}") as tar:
            tar.add(top, arcname=DEST_NAME)
        cases.append(Case("Python tarfile", f"default format (w:{compression})", path))
    parent = tempfile.mkdtemp(prefix="zipfile-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    path = os.path.join(work, "zipfile.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(folder, name)
                arcname = os.path.relpath(full, parent)
                if os.path.islink(full):
                    # how zip writers store a link: the unix mode S_IFLNK, the target as data
                    info = zipfile.ZipInfo(arcname, (2021, 1, 2, 3, 4, 6))
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    info.create_system = 3
                    zf.writestr(info, os.readlink(full))
                else:
                    zf.write(full, arcname)
    cases.append(Case("Python zipfile", "write + symlinks as S_IFLNK", path))
    path = os.path.join(work, "zipfile-zip64.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(f"{DEST_NAME}/big.bin", "w", force_zip64=True) as f:
            f.write(b"zip64 records for a small member\n" * 1000)
        zf.writestr(f"{DEST_NAME}/sub/", b"")
    cases.append(Case("Python zipfile", "force_zip64", path))
    path = os.path.join(work, "zipfile-writestr.zip")
    with zipfile.ZipFile(path, "w") as zf:  # no file-type bits in the mode, as writestr does
        zf.writestr(f"{DEST_NAME}/notes.txt", b"writestr\n")
        zf.writestr(f"{DEST_NAME}/sub/more.txt", b"more\n")
    cases.append(Case("Python zipfile", "writestr (no type bits)", path))
    return cases


def zip_cases(work):
    need("zip", "zip")
    cases = []
    parent = tempfile.mkdtemp(prefix="zip-y-", dir=work)
    make_tree(os.path.join(parent, DEST_NAME))
    path = os.path.join(work, "zip-ry.zip")
    run(["zip", "-q", "-r", "-y", path, DEST_NAME], cwd=parent)
    cases.append(Case("zip -r", "-r -y (links kept)", path))
    path = os.path.join(work, "zip-fz.zip")
    run(["zip", "-q", "-r", "-y", "-fz", path, DEST_NAME], cwd=parent)
    cases.append(Case("zip -r", "-r -y -fz (zip64 records)", path))
    path = os.path.join(work, "zip-stream.zip")
    with open(path, "wb") as out:
        subprocess.run(["zip", "-q", "-r", "-y", "-", DEST_NAME], cwd=parent, stdout=out,
                       check=True)
    cases.append(Case("zip -r", "-r -y - (to a pipe: data descriptors)", path))
    path = os.path.join(work, "zip-stored.zip")
    run(["zip", "-q", "-r", "-y", "-0", path, DEST_NAME], cwd=parent)
    cases.append(Case("zip -r", "-r -y -0 (stored)", path))
    # without -y, zip follows links: a dangling one cannot be followed
    parent = tempfile.mkdtemp(prefix="zip-r-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME), dangling=False)
    path = os.path.join(work, "zip-r.zip")
    run(["zip", "-q", "-r", path, "."], cwd=top)
    cases.append(Case("zip -r", "-r DIR/. (links followed)", path))
    return cases


def compressor_cases(work):
    parent = tempfile.mkdtemp(prefix="compress-", dir=work)
    make_tree(os.path.join(parent, DEST_NAME))
    plain = os.path.join(work, "compress.tar")
    run(["tar", "--format=gnu", "-cf", plain, "-C", parent, DEST_NAME])
    cases, skipped = [], []
    for label, program, args, package in (
            ("gzip -9", "gzip", ["-9", "-n", "-c"], "gzip"),
            ("pigz", "pigz", ["-c"], "pigz"),
            ("pigz -p 2 -b 64 (several blocks)", "pigz", ["-c", "-p", "2", "-b", "64"], "pigz"),
            ("bzip2", "bzip2", ["-c"], "bzip2"),
            ("xz -T0", "xz", ["-T0", "-c"], "xz-utils"),
            ("xz -T0 --block-size=128KiB", "xz", ["-T0", "--block-size=128KiB", "-c"],
             "xz-utils"),
            ("zstd -T0", "zstd", ["-T0", "-q", "-c"], "zstd"),
            ("zstd -T0 --long -19", "zstd", ["-T0", "-q", "--long", "-19", "-c"], "zstd")):
        if not shutil.which(program):
            skipped.append(f"{program} is not installed (Debian package {package})")
            continue
        path = os.path.join(work, f"compress-{len(cases)}.tar.{program}")
        with open(plain, "rb") as src, open(path, "wb") as out:
            subprocess.run([program] + args, stdin=src, stdout=out, check=True)
        cases.append(Case("compressors (GNU tar inside)", label, path))
    # two streams back to back (what parallel compressors and `cat a.xz b.xz` make), cut
    # inside the tar stream at a block boundary
    with open(plain, "rb") as f:
        data = f.read()
    cut = len(data) // 2 // 512 * 512
    for program, args in (("gzip", ["-c"]), ("bzip2", ["-c"]), ("xz", ["-c"]),
                          ("zstd", ["-q", "-c"])):
        if not shutil.which(program):
            continue
        path = os.path.join(work, f"compress-{len(cases)}.tar.{program}")
        with open(path, "wb") as out:
            for piece in (data[:cut], data[cut:]):
                out.write(subprocess.run([program] + args, input=piece, stdout=subprocess.PIPE,
                                         check=True).stdout)
        cases.append(Case("compressors (GNU tar inside)", f"{program}: two streams", path))
    if skipped and not cases:
        raise Skip("; ".join(skipped))
    return cases, skipped


def refusal_cases(work):
    """Archives the tool refuses, each for a documented rule: the error class, the member
    and the rule's words. GNU tar extracts every one of them (as root: the device too)."""
    need("tar", "tar")
    cases = []

    def one(label, build, refusal=None, cleared=False, flags=()):
        parent = tempfile.mkdtemp(prefix="refuse-", dir=work)
        top = os.path.join(parent, DEST_NAME)
        write(os.path.join(top, "ok.txt"), b"fine\n")
        build(top)
        path = os.path.join(work, f"refuse-{len(cases)}.tar")
        run(["tar", "--format=gnu", "-cf", path] + list(flags) + ["-C", parent, DEST_NAME])
        cases.append(Case("documented safety refusals", label, path, refusal=refusal,
                          cleared=cleared))

    one("FIFO", lambda top: os.mkfifo(os.path.join(top, "pipe")),
        ("UnsafeArchive", f"{DEST_NAME}/pipe", "a FIFO"))
    if os.geteuid() == 0:
        one("character device", lambda top: os.mknod(
            os.path.join(top, "null"), stat.S_IFCHR | 0o600, os.makedev(1, 3)),
            ("UnsafeArchive", f"{DEST_NAME}/null", "a character device"))
    one("absolute link leaving the folder",
        lambda top: os.symlink("/etc/passwd", os.path.join(top, "passwd")),
        ("UnsafeArchive", f"{DEST_NAME}/passwd", "absolute path"))
    one("relative link leaving the folder",
        lambda top: os.symlink("../../../etc", os.path.join(top, "etc")),
        ("UnsafeArchive", f"{DEST_NAME}/etc", "points outside the destination"))

    def setuid(top):
        write(os.path.join(top, "suid"), b"#!/bin/sh\n", 0o4755)
        os.chmod(os.path.join(top, "suid"), 0o4755)
        os.makedirs(os.path.join(top, "sticky"))
        os.chmod(os.path.join(top, "sticky"), 0o1777)
    one("setuid / sticky bits (cleared, installed)", setuid, cleared=True)
    parent = tempfile.mkdtemp(prefix="refuse-abs-", dir=work)
    top = os.path.join(parent, DEST_NAME)
    write(os.path.join(top, "x.txt"), b"x\n")
    path = os.path.join(work, "refuse-absolute-names.tar")
    run(["tar", "--format=gnu", "-cPf", path, top])
    cases.append(Case("documented safety refusals", "absolute member names (tar -P)", path,
                      refusal=("UnsafeArchive", top.lstrip("/"), "absolute path")))
    if shutil.which("zip"):
        parent = tempfile.mkdtemp(prefix="refuse-zip-", dir=work)
        top = os.path.join(parent, DEST_NAME)
        write(os.path.join(top, "ok.txt"), b"fine\n")
        os.symlink("/etc/hostname", os.path.join(top, "host"))
        path = os.path.join(work, "refuse-zip-link.zip")
        run(["zip", "-q", "-r", "-y", path, DEST_NAME], cwd=parent)
        cases.append(Case("documented safety refusals", "zip -y: absolute link", path,
                          refusal=("UnsafeArchive", f"{DEST_NAME}/host", "absolute path")))
    return cases


# --------------------------------------------------------------- reference and compare --
def is_zip(path):
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" or path.endswith(".zip")


def member_names(path, fails=False):
    if is_zip(path):
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    def listing(*flags):
        out = subprocess.run(["tar", *flags, path], stdout=subprocess.PIPE, check=not fails,
                             stderr=subprocess.DEVNULL,
                             env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
        return [line for line in out.decode("utf-8", "replace").split("\n") if line]
    # a volume label (-V) is listed like a member, and names no file: its long line starts
    # with its type, V
    return [name for name, long in zip(listing("-tf"), listing("-tvf"))
            if not long.startswith("V")]


def reference(path, into, fails=False):
    """The reference extractor's result after the layout rule: the folder --dest must equal.
    fails: it exits non-zero (else Skip), and what it extracted is the result."""
    os.makedirs(into)
    if is_zip(path):
        run(["unzip", "-q", "-o", path, "-d", into], ok=(0, 1))
    elif fails:
        if subprocess.run(["tar", "-xf", path, "-C", into], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            raise Skip("GNU tar extracted it without an error, where the case says it fails")
    else:
        run(["tar", "-xf", path, "-C", into])
    names = member_names(path, fails)
    dotted = any(n.startswith("./") for n in names)
    tops = set()
    for name in names:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if parts:
            tops.add(parts[0])
    if len(tops) == 1:
        (top,) = tops
        lone = os.path.join(into, top)
        if os.path.isdir(lone) and not os.path.islink(lone) and (not dotted
                                                                 or top == DEST_NAME):
            return lone
    return into


def tree(root, special_bits=False):
    """{relative path: entry}: ("file", sha256, exec bits, hard-link group) / ("dir",) /
    ("link", target) / ("other", kind). special_bits: the setuid/setgid/sticky bits of
    files and folders instead, for the cleared case."""
    out, inodes = {}, {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel == ba.MARKER_NAME:
                continue
            st = os.lstat(path)
            if special_bits:
                out[rel] = st.st_mode & 0o7000
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(st.st_mode):
                digest = content_digest(path, st.st_size)
                out[rel] = ("file", digest, oct(st.st_mode & 0o111))
                inodes.setdefault(st.st_ino, []).append(rel)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    if not special_bits:
        for group in inodes.values():
            for rel in group:
                out[rel] += (tuple(sorted(group)) if len(group) > 1 else (),)
    return out


def content_digest(path, size, piece=1 << 16):
    """sha256 of a file's bytes, whatever holes it has: the size, then each aligned piece
    that is not all zeros with its offset. Only the data the filesystem keeps is read
    (SEEK_DATA), so Go's 60 GB sparse test files take milliseconds."""
    digest = hashlib.sha256(b"%d\n" % size)
    done = -1  # the last piece hashed
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(f.fileno(), offset, getattr(os, "SEEK_DATA", 3))
                end = os.lseek(f.fileno(), start, getattr(os, "SEEK_HOLE", 4))
            except OSError:  # ENXIO: no data after offset
                break
            for index in range(max(start // piece, done + 1), (end + piece - 1) // piece):
                f.seek(index * piece)
                chunk = f.read(piece)
                if chunk.strip(b"\0"):
                    digest.update(b"%d:" % index + chunk)
                done = index
            offset = end
    return digest.hexdigest()[:16]


def difference(got, want, limit=8):
    lines = []
    for rel in sorted(set(got) | set(want)):
        if got.get(rel) != want.get(rel):
            lines.append(f"{rel}: got {got.get(rel)}, reference {want.get(rel)}")
    more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def restore_with(case, engine, dest):
    """(exception or None, RestoreResult or None) from restoring case with engine into dest."""
    try:
        result = ba.restore(case.path, dest, engine=engine, quiet=True, retry_for=2.0,
                            lock_timeout=5.0,
                            drive_mount=os.path.join(os.path.dirname(dest), "no-drive-here"),
                            drive_cache=os.path.join(os.path.dirname(dest), "no-drive-cache"))
    except ba.BootstrapError as exc:
        return exc, None
    return None, result


def reference_exit(path):
    """GNU tar's exit code extracting path (into a folder thrown away)."""
    with tempfile.TemporaryDirectory(prefix="reference-exit-") as into:
        return subprocess.run(["tar", "-xf", path, "-C", into], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode


def check(case, engine, work):
    """None if a restore of case with engine ended in the promised state, else why not."""
    scratch = tempfile.mkdtemp(prefix="case-", dir=work)
    dest = os.path.join(scratch, DEST_NAME)
    try:
        error, result = restore_with(case, engine, dest)
        leftovers = [n for n in os.listdir(scratch) if ".staging-" in n or n.endswith(".lock")]
        if leftovers:
            return f"left {leftovers} beside the destination"
        if case.refusal:
            cls, member, rule = case.refusal
            if error is None:
                return f"restored, but {cls} naming {member!r} ({rule}) was promised"
            text = str(error)
            if (not isinstance(error, getattr(ba, cls)) or member not in text
                    or rule not in text):
                return (f"{type(error).__name__} (exit {error.exit_code}): {text[:300]}; "
                        f"promised {cls} naming {member!r} and {rule!r}")
            if os.path.lexists(dest):
                return "a refused restore left the destination behind"
            if case.reference_fails and reference_exit(case.path) == 0:
                return "GNU tar reads it without an error, where the case says it fails too"
            return None
        if error is not None:
            return f"{type(error).__name__} (exit {error.exit_code}): {str(error)[:400]}"
        if case.note and case.note not in (result.note or ""):
            return f"the result's note {result.note!r} does not say {case.note!r}"
        try:
            want_root = reference(case.path, os.path.join(scratch, "reference"),
                                  case.reference_fails)
        except Skip as exc:
            return f"the reference extractor failed: {exc}"
        got, want = tree(dest), tree(want_root)
        if got != want:
            return "differs from the reference: " + difference(got, want)
        if case.sparse:
            image = os.lstat(os.path.join(dest, "disk.img"))
            if image.st_blocks * 512 > image.st_size // 4:
                return (f"disk.img lost its holes: {image.st_blocks * 512:,} bytes on disk "
                        f"for {image.st_size:,} bytes with 1.8 KB + 4 KB of data")
        if case.cleared:
            bits = {rel: oct(b) for rel, b in tree(dest, special_bits=True).items() if b}
            had = any(tree(want_root, special_bits=True).values())
            if bits or not had:
                return (f"special bits kept: {bits}" if bits else
                        "the reference shows no special bits: the case tests nothing")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------- main --
def self_check(work):
    """The comparison must see what a wrong restore would get wrong; else every row above
    could pass by comparing nothing. Returns the reasons it fails, [] when sound."""
    parent = tempfile.mkdtemp(prefix="self-check-", dir=work)
    top = make_tree(os.path.join(parent, DEST_NAME))
    want = tree(top)
    wrongs = {
        "a missing empty folder": lambda: os.rmdir(os.path.join(top, "empty dir")),
        "a lost exec bit": lambda: os.chmod(os.path.join(top, "bin", "tool"), 0o600),
        "a hard link made a copy": lambda: shutil.copyfile(
            os.path.join(top, "a.txt"), os.path.join(top, "bin", "a-hard.txt.tmp")) or
        os.replace(os.path.join(top, "bin", "a-hard.txt.tmp"),
                   os.path.join(top, "bin", "a-hard.txt")),
        "a link retargeted": lambda: os.remove(os.path.join(top, "link-to-a")) or
        os.symlink("./a.txt", os.path.join(top, "link-to-a")),
        "a changed byte": lambda: write(os.path.join(top, "empty.bin"), b"\0"),
    }
    problems = []
    for label, spoil in wrongs.items():
        shutil.rmtree(top)
        make_tree(top)
        spoil()
        if tree(top) == want:
            problems.append(f"the comparison does not see {label}")
    shutil.rmtree(parent)
    return problems


def gather(work):
    """[(group label, [Case], note)]: every source, fetched or built; a skipped one has no
    cases and says why in its note."""
    sources = [
        ("npm pack (.tgz)", lambda: npm_cases(), True),
        ("PyPI sdist (tar.gz)", lambda: pip_cases(False), True),
        ("PyPI wheel (zip)", lambda: pip_cases(True), True),
        ("Debian data.tar.xz", lambda: debian_cases(work), True),
        ("Go archive/tar testdata (Debian golang-1.19-src)", lambda: go_testdata_cases(work),
         True),
        ("GNU tar (formats)", lambda: gnu_tar_cases(work), False),
        ("GNU tar -S (sparse)", lambda: sparse_cases(work), False),
        ("bsdtar", lambda: bsdtar_cases(work), False),
        ("Python tarfile + zipfile", lambda: python_cases(work), False),
        ("zip -r", lambda: zip_cases(work), False),
        ("compressors (GNU tar inside)", lambda: compressor_cases(work), False),
        ("documented safety refusals", lambda: refusal_cases(work), False),
    ]
    out = []
    for label, build, from_registry in sources:
        try:
            result = build()
        except Skip as exc:
            kind = "registry" if from_registry else "archiver"
            out.append((label, [], f"SKIPPED ({kind}): {exc}", not from_registry and IN_CI))
            continue
        note = ""
        if isinstance(result, tuple):
            result, skipped = result
            note = "; ".join(f"skipped: {s}" for s in skipped)
        out.append((label, result, note, bool(note) and IN_CI))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per run")
    args = parser.parse_args(argv)
    engines = ba.available_engines()
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="ba-conformance-")
    rows, failures, passed, failed = [], [], 0, 0
    try:
        problems = self_check(work)
        failures += [f"self-check: {p}" for p in problems]
        failed += len(problems)
        passed += not problems
        rows.append(("self-check: the comparison sees a wrong tree", 1, 1, int(not problems),
                     "5 spoiled copies of the built tree"))
        for label, cases, note, missing_in_ci in gather(work):
            if missing_in_ci:
                failed += 1
                failures.append(f"{label}: {note} (CI must have every archiver: .ci/run "
                                f"installs them)")
            groups = {}
            for case in cases:
                groups.setdefault(case.group, []).append(case)
            if not cases:
                rows.append((label, 0, 0, 0, note))
            for group, members in groups.items():
                runs = good = 0
                for case in members:
                    for engine in engines:
                        runs += 1
                        why = check(case, engine, work)
                        if why is None:
                            good += 1
                            passed += 1
                        else:
                            failed += 1
                            failures.append(f"{group}: {case.name} [engine {engine}]: {why}")
                        if args.verbose:
                            print(f"  {'ok  ' if why is None else 'FAIL'} {group} / "
                                  f"{case.name} [{engine}]" + (f": {why}" if why else ""),
                                  flush=True)
                row_note = note
                if any(c.sparse for c in members):
                    row_note = "holes kept (blocks on disk checked)"
                if any(c.note for c in members):
                    row_note = (row_note + "; " if row_note else "") + \
                        f"{sum(bool(c.note) for c in members)} without end blocks: restored, noted"
                if any(c.refusal for c in members):
                    row_note = (row_note + "; " if row_note else "") + \
                        "each refusal asserted by error class, member and rule"
                failing = sum(c.reference_fails for c in members)
                if failing:
                    row_note += (f"; GNU tar fails on {failing} (checked): "
                                 f"{sum(c.reference_fails and bool(c.refusal) for c in members)}"
                                 f" refused, the rest equal to what it extracted")
                rows.append((group, len(members), runs, good, row_note))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, engines, time.monotonic() - started)
    for line in failures:
        print(f"FAIL {line}")
    print(f"conformance: {passed} passed, {failed} failed", flush=True)
    return 1 if failed or not passed else 0


def print_table(rows, engines, seconds):
    print(f"\nconformance, engines {', '.join(engines)}; "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {seconds:.0f} s; cache "
          f"{CACHE}\n")
    print("| class of case (source / format) | cases | runs | in the promised state | note |")
    print("|---|---:|---:|---:|---|")
    for group, cases, runs, good, note in rows:
        print(f"| {group} | {cases} | {runs} | {good} | {note} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
