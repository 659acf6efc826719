#!/usr/bin/env python3
"""A seeded mutation fuzzer for `bootstrap_assets.py restore` (stdlib only, Python 3.9+).

    python3 tests/fuzz_archives.py --count 2000 --seed 1 [--time-limit 170]
            [--engines python,tar] [--timeout 20] [--save-failures DIR] [--jobs 2]
    python3 tests/fuzz_archives.py --show N --seed S     # one mutant in detail
    python3 tests/fuzz_archives.py --replay DIR          # re-run saved regression cases

Seeds are small valid archives in every format the tool reads (tar as ustar, GNU and pax,
a GNU sparse file (pax 1.0), tar.gz, tar.bz2, tar.xz, tar.zst when `zstd` is on the PATH,
zip). A mutant is a seed plus one to three mutation steps: byte flips, block splices and truncations, tar header fields
rewritten with valid checksums (sizes incl. negative, huge and base-256, every typeflag,
mtimes out of range, names and link targets set to escaping values, GNU long names, pax
records), zip fields (empty or undecodable names, encryption flags, attributes without
type bits, damaged central directories), a `.bootstrap_assets.deleted` member with deeply
nested JSON, and split delivery as ARCHIVE.part-NNNN. Mutant N of seed S is the same on
every machine: its steps are drawn from random.Random(f"{S}:{N}").

Each mutant runs through the real command line, `restore --archive A --dest D --quiet
--engine E --drive-mount ''`, in-process: bootstrap_assets is imported once, each run is a
forked child calling bootstrap_assets.main(argv) (stderr captured in a file; the child's
process group is killed on a timeout), at most --jobs children at once (~15 ms a run; with
--cli the child execs `python3 bootstrap_assets.py restore ...` instead, ~100 ms a run, with
the same results). The destination's
parent holds bait (a folder, a symlink to it, a file), and a second bait folder lies beyond.
Checks, all made outside the tool:
  - it exits within the timeout, with an exit code documented on the tool's exception
    classes, and with no traceback on stderr;
  - nothing beside the destination (bait, archive, the folder beyond) is created, changed
    or removed, and no staging folder or lock file is left behind;
  - on failure the destination is exactly as before (absent, an empty folder, or an earlier
    restore); on success it is a complete tree: exactly what its marker's manifest lists,
    with no device, FIFO, socket, setuid/setgid file, link resolving outside it, or hard
    link to a file outside it;
  - the exit code fits what was mutated, on this healthy machine (room to spare, writable,
    no concurrent run): a damaged or hostile archive is exit 6 or 7 (11 for a method or
    encryption this machine cannot read), never 1 (a write failure) or 8 (no space); a
    mutation that leaves a valid archive (zip attributes without type bits, multi-stream
    compression, parts) restores; a hostile member alone (escaping name or link, device,
    FIFO) is refused; an encrypted zip member is reported as encrypted.
A failing mutant is minimised (greedy: drop steps, then members, while it fails the same
way) and, with --save-failures DIR, saved as DIR/NN-class/ (the archive bytes and case.json)
plus one line of DIR/failures.jsonl; --replay DIR re-runs those cases as regression tests.
The run prints what the oracle demanded and any failures by class (each with its minimised
example), and ends with one table (each class of case: what was mutated, in which formats,
how many runs, how many ended in the promised state) and the line `fuzz: N passed, M
failed`; it exits 1 if any run failed.
"""
import argparse
import bz2
import copy
import gzip
import hashlib
import json
import lzma
import os
import random
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MTIME = 1_600_000_000
DEST = "_assets"
DELETED = b".bootstrap_assets.deleted"
MARKER = ".bootstrap_assets.json"
MARKER_FILES = (MARKER, MARKER + ".tmp")
OUTSIDE = b"{OUTSIDE}"  # placeholder: the absolute path of the bait folder beyond
CLEAN_EXITS = {0, 6, 7, 11}  # what a mutant may end in on a healthy machine
MASK32 = 0xFFFFFFFF

ba = None  # bootstrap_assets, imported in main()


# ================================================================================ seeds ==
def _tree_a(top):
    p = top + "/" if top else ""
    entries = [("dir", top, None, 0o755)] if top else []
    return entries + [
        ("dir", p + "models", None, 0o755),
        ("file", p + "models/weights.bin", bytes(range(256)) * 9, 0o644),
        ("file", p + "readme.txt", b"hello\n", 0o644),
        ("file", p + "empty.dat", b"", 0o600),
        ("file", p + "run.sh", b"#!/bin/sh\necho hi\n", 0o755),
        ("symlink", p + "latest", "models/weights.bin", 0o777),
        ("hardlink", p + "readme-copy.txt", p + "readme.txt", 0o644),
    ]


_LONG_DIR = "a-rather-long-folder-name/" * 4


def _tree_b(top):  # GNU: names and a link target over 100 bytes (L and K records)
    p = top + "/"
    return [
        ("dir", top, None, 0o755),
        ("dir", p + _LONG_DIR.rstrip("/"), None, 0o755),
        ("file", p + _LONG_DIR + "with-a-file-whose-name-is-long-too.txt", b"long\n" * 40,
         0o644),
        ("symlink", p + "to-long", _LONG_DIR + "with-a-file-whose-name-is-long-too.txt", 0o777),
        ("file", p + "small.txt", b"small\n", 0o640),
    ]


def _tree_c():  # pax, as `tar -C dir .` writes it: ./ names, non-ASCII, sub-second mtime
    return [
        ("dir", ".", None, 0o755),
        ("dir", "./café", None, 0o755),
        ("file", "./café/naïve.txt", "ünïcödé\n".encode(), 0o644),
        ("file", "./data.bin", bytes((i * 7 + 3) & 0xFF for i in range(1000)), 0o644),
        ("dir", "./sub", None, 0o700),
        ("file", "./sub/x.txt", b"x\n", 0o600),
        ("symlink", "./sub/up", "../data.bin", 0o777),
    ]


def _tree_layer():  # a layer as save writes one: the list of paths it deletes, then files
    return [
        ("file", DELETED.decode(), json.dumps(["gone.txt", "sub/old.txt"]).encode(), 0o644),
        ("file", "keep.txt", b"keep\n", 0o644),
        ("dir", "sub", None, 0o755),
        ("file", "sub/new.txt", b"new\n", 0o644),
    ]


def _tree_tiny():
    return [("file", "a.txt", b"a\n", 0o644)]


def _tar_of(entries, fmt, subsecond=False):
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for kind, name, payload, mode in entries:
            info = tarfile.TarInfo(name + ("/" if kind == "dir" and name != "." else ""))
            info.mode, info.mtime = mode, MTIME + (0.5 if subsecond else 0)
            info.uname = info.gname = "root"
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            else:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if kind == "file" else None)
    return buf.getvalue()


SPARSE_SIZE = 1 << 16
SPARSE_STRETCHES = [(0, b"S" * 512), (20000, b"P" * 1024), (SPARSE_SIZE - 100, b"E" * 100)]


def _sparse_seed():
    """(tar bytes, expected tree): a GNU sparse file in pax format 1.0 (the map in decimal
    lines ahead of its data, as `tar -S --format=posix` writes it) beside a plain file."""
    import io
    lines = f"{len(SPARSE_STRETCHES)}\n" + "".join(f"{o}\n{len(d)}\n" for o, d in SPARSE_STRETCHES)
    data = lines.encode() + bytes(-len(lines) % 512) + b"".join(d for _, d in SPARSE_STRETCHES)
    full = bytearray(SPARSE_SIZE)
    for offset, stretch in SPARSE_STRETCHES:
        full[offset:offset + len(stretch)] = stretch
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size, info.mtime, info.mode = 6, MTIME, 0o644
        tar.addfile(info, io.BytesIO(b"notes\n"))
        info = tarfile.TarInfo("GNUSparseFile.0/disk.img")
        info.size, info.mtime, info.mode = len(data), MTIME, 0o640
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                            "GNU.sparse.name": "disk.img",
                            "GNU.sparse.realsize": str(SPARSE_SIZE)}
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), {"notes.txt": ("f", b"notes\n", 0o644),
                            "disk.img": ("f", bytes(full), 0o640)}


def _dos_time():
    return (12 << 11) | (26 << 5) | 20, ((2020 - 1980) << 9) | (9 << 5) | 13


def _zip_entry(name, data, kind="file", mode=0o644, method=8, utf8=False):
    if kind == "dir":
        attr, data, method = (stat.S_IFDIR | mode) << 16 | 0x10, b"", 0
    elif kind == "symlink":
        attr, method = (stat.S_IFLNK | 0o777) << 16, 0
    else:
        attr = (stat.S_IFREG | mode) << 16
    if method == 8:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = comp.compress(data) + comp.flush()
    else:
        payload = data
    tm, dt = _dos_time()
    return {"name": name.encode("utf-8"), "flags": 0x800 if utf8 else 0, "method": method,
            "time": tm, "date": dt, "crc": zlib.crc32(data), "csize": len(payload),
            "usize": len(data), "data": payload, "ext_attr": attr, "system": 3,
            "version": 20, "extra": b"", "cextra": b"", "comment": b"", "internal": 0}


def _zip_model(entries):
    out = []
    for kind, name, payload, mode in entries:
        if kind == "dir":
            out.append(_zip_entry(name + "/", b"", "dir", mode))
        elif kind == "symlink":
            out.append(_zip_entry(name, payload.encode(), "symlink"))
        else:
            small = len(payload) < 64
            out.append(_zip_entry(name, payload, mode=mode, method=0 if small else 8,
                                  utf8=not name.isascii()))
    return {"entries": out, "comment": b""}


def _expected(entries, unwrap):
    """{path: entry} of the tree a seed must restore to: ("d",), ("f", data, mode),
    ("l", target), ("h", path it shares an inode with)."""
    tree, deleted = {}, []
    for kind, name, payload, mode in entries:
        name = name[2:] if name.startswith("./") else name
        if name in (".", ""):
            continue
        if unwrap:
            name = name.split("/", 1)[1] if "/" in name else ""
            if not name:
                continue
        if name == DELETED.decode():
            deleted += json.loads(payload)
            continue
        if kind == "dir":
            tree[name] = ("d",)
        elif kind == "symlink":
            tree[name] = ("l", payload)
        elif kind == "hardlink":
            target = payload.split("/", 1)[1] if unwrap else payload
            tree[name] = ("h", target)
        else:
            tree[name] = ("f", payload, mode)
    for name in deleted:
        tree.pop(name, None)
    for name in list(tree):  # folders made for members whose own entry is missing
        parts = name.split("/")
        for k in range(1, len(parts)):
            tree.setdefault("/".join(parts[:k]), ("d",))
    return tree


def build_seeds():
    """{name: seed}; a seed is {"fmt", "tar" or "zip" model, "expected", "ext"}."""
    seeds = {}

    def tar_seed(name, entries, fmt, comp, unwrap, subsecond=False):
        seeds[name] = {"name": name, "fmt": comp, "tar": _tar_of(entries, fmt, subsecond),
                       "expected": _expected(entries, unwrap),
                       "ext": ".tar" + ("" if comp == "tar" else "." + comp)}

    tar_seed("ustar.tar", _tree_a(DEST), tarfile.USTAR_FORMAT, "tar", True)
    tar_seed("gnu.tar", _tree_b(DEST), tarfile.GNU_FORMAT, "tar", True)
    tar_seed("pax.tar", _tree_c(), tarfile.PAX_FORMAT, "tar", False, subsecond=True)
    tar_seed("layer.tar", _tree_layer(), tarfile.USTAR_FORMAT, "tar", False)
    tar_seed("tiny.tar", _tree_tiny(), tarfile.USTAR_FORMAT, "tar", False)
    raw, expected = _sparse_seed()
    seeds["sparse.tar"] = {"name": "sparse.tar", "fmt": "tar", "tar": raw,
                           "expected": expected, "ext": ".tar"}
    tar_seed("ustar.tar.gz", _tree_a(DEST), tarfile.USTAR_FORMAT, "gz", True)
    tar_seed("pax.tar.gz", _tree_c(), tarfile.PAX_FORMAT, "gz", False, subsecond=True)
    tar_seed("gnu.tar.bz2", _tree_b(DEST), tarfile.GNU_FORMAT, "bz2", True)
    tar_seed("pax.tar.xz", _tree_c(), tarfile.PAX_FORMAT, "xz", False, subsecond=True)
    if shutil.which("zstd"):
        tar_seed("ustar.tar.zst", _tree_a(DEST), tarfile.USTAR_FORMAT, "zst", True)
    for name, entries, unwrap in (
            ("assets.zip", _tree_a(DEST)[:-1], True),  # zip has no hard links
            ("flat.zip", [("file", "a.txt", b"a\n" * 50, 0o644),
                          ("file", "sub/b.txt", b"b\n", 0o600),
                          ("file", "café.txt", b"c\n", 0o644)], False),
            ("tiny.zip", _tree_tiny(), False)):
        seeds[name] = {"name": name, "fmt": "zip", "zip": _zip_model(entries),
                       "expected": _expected(entries, unwrap), "ext": ".zip"}
    return seeds


# ======================================================================= tar, by hand ==
FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8),
          "size": (124, 12), "mtime": (136, 12), "chksum": (148, 8), "typeflag": (156, 1),
          "linkname": (157, 100), "magic": (257, 8), "uname": (265, 32), "gname": (297, 32),
          "devmajor": (329, 8), "devminor": (337, 8), "prefix": (345, 155)}
ZERO = bytes(512)


def fix_checksum(h):
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)


def set_field(h, field, value, checksum=True):
    off, n = FIELDS[field]
    h[off:off + n] = value[:n].ljust(n, b"\0")
    if checksum:
        fix_checksum(h)


def get_text(h, field):
    off, n = FIELDS[field]
    return bytes(h[off:off + n]).split(b"\0", 1)[0]


def header_number(field):
    """A numeric field as GNU tar reads it; None when unreadable or negative."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        return None
    text = bytes(field).split(b"\0", 1)[0].strip()
    try:
        value = int(text, 8) if text else 0
    except ValueError:
        return None
    return value if value >= 0 else None


def encode_number(spec, width, current=0):
    kind = spec[0]
    if kind == "raw":
        return spec[1]
    if kind == "rel":
        kind, spec = "oct", ("oct", max(current + spec[1], 0))
    if kind == "oct":
        text = b"%o" % spec[1]
        return text.rjust(width - 1, b"0") + b"\0" if len(text) < width else text[:width]
    if kind == "b256":
        return b"\x80" + (spec[1] % 256 ** (width - 1)).to_bytes(width - 1, "big")
    if kind == "neg":
        return (spec[1] % 256 ** width).to_bytes(width, "big")
    raise ValueError(spec)


def pad(data):
    return data + bytes(-len(data) % 512)


def make_header(name=b"", typeflag=b"0", size=0, mode=0o644, linkname=b"", mtime=MTIME,
                magic=b"ustar\x0000"):
    h = bytearray(512)
    set_field(h, "name", name, False)
    set_field(h, "mode", b"%07o\0" % mode, False)
    set_field(h, "uid", b"0000000\0", False)
    set_field(h, "gid", b"0000000\0", False)
    set_field(h, "size", b"%011o\0" % size, False)
    set_field(h, "mtime", b"%011o\0" % mtime, False)
    set_field(h, "typeflag", typeflag, False)
    set_field(h, "linkname", linkname, False)
    set_field(h, "magic", magic, False)
    fix_checksum(h)
    return h


def pax_payload(records):
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        n = len(body) + len(str(len(body)))
        if len(str(n)) != len(str(len(body))):
            n = len(body) + len(str(n))
        out += str(n).encode() + body
    return out


def pax_records(payload):
    """[(key, value)] of a pax payload, or None when it does not parse."""
    records, pos = [], 0
    try:
        while pos < len(payload) and payload[pos:].strip(b"\0"):
            space = payload.index(b" ", pos)
            length = int(payload[pos:space])
            record = payload[space + 1:pos + length]
            if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
                return None
            key, value = record[:-1].split(b"=", 1)
            records.append((key, value))
            pos += length
    except ValueError:
        return None
    return records


def meta_block(typeflag, payload, name=None):
    name = name or (b"././@LongLink" if typeflag in b"LK" else b"././@PaxHeader")
    magic = b"ustar  \0" if typeflag in b"LK" else b"ustar\x0000"
    return [make_header(name, typeflag, len(payload), magic=magic), payload]


def parse_tar(data):
    """{"members": [{"meta": [[hdr, payload]], "hdr", "data"}], "tail"}: a lenient walk
    that stops (keeping the rest as the tail) where the stream stops making sense."""
    members, meta, off = [], [], 0
    while off + 512 <= len(data):
        block = data[off:off + 512]
        if block == ZERO:
            break
        size = header_number(block[124:136])
        if size is None or off + 512 + size > len(data):
            break
        payload = data[off + 512:off + 512 + size]
        if block[156:157] in (b"x", b"g", b"L", b"K"):
            meta.append([bytearray(block), payload])
        else:
            members.append({"meta": meta, "hdr": bytearray(block), "data": payload})
            meta = []
        off += 512 + size + (-size % 512)
    tail = b"".join(bytes(h) + pad(p) for h, p in meta) + data[off:]
    return {"members": members, "tail": tail}


def tar_bytes(model):
    out = bytearray()
    for m in model["members"]:
        for h, payload in m["meta"]:
            out += h + pad(payload)
        out += m["hdr"] + pad(m["data"])
    return bytes(out + model["tail"])


def sparse_name(m):
    """A sparse member's GNU.sparse.name (it replaces every other name), or None."""
    for h, payload in m["meta"]:
        if h[156:157] == b"x":
            for key, value in pax_records(payload) or ():
                if key == b"GNU.sparse.name":
                    return value
    return None


def member_name(m):
    """The name a reader sees: GNU.sparse.name, else pax path, else GNU long name, else
    prefix/name."""
    name = get_text(m["hdr"], "name")
    if bytes(m["hdr"][257:263]) == b"ustar\0" and get_text(m["hdr"], "prefix"):
        name = get_text(m["hdr"], "prefix") + b"/" + name
    for h, payload in m["meta"]:
        if h[156:157] == b"L":
            name = payload.split(b"\0", 1)[0]
    for h, payload in m["meta"]:
        if h[156:157] == b"x":
            for key, value in pax_records(payload) or ():
                if key == b"path":
                    name = value
    return sparse_name(m) or name


def member_kind(m):
    return {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
            b"5": "dir"}.get(bytes(m["hdr"][156:157]), "other")


def strip_overrides(m, keys):
    """Drop what overrides the header's name (keys has b"path") or link (b"linkpath")."""
    kept = []
    for h, payload in m["meta"]:
        flag = h[156:157]
        if (flag == b"L" and b"path" in keys) or (flag == b"K" and b"linkpath" in keys):
            continue
        if flag == b"x":
            records = pax_records(payload)
            if records is not None:
                payload = pax_payload([(k, v) for k, v in records if k not in keys])
                h = bytearray(h)
                set_field(h, "size", b"%011o\0" % len(payload))
        kept.append([h, payload])
    m["meta"] = kept


def set_name(m, value, how):
    strip_overrides(m, (b"path",))
    if how == "pax":
        m["meta"].append(meta_block(b"x", pax_payload([(b"path", value)])))
    elif how == "long":
        m["meta"].append(meta_block(b"L", value + b"\0"))
        set_field(m["hdr"], "name", value[:99])
    else:
        if how == "prefix" and b"/" in value and bytes(m["hdr"][257:263]) == b"ustar\0":
            prefix, name = value.rsplit(b"/", 1)
            set_field(m["hdr"], "prefix", prefix, False)
            set_field(m["hdr"], "name", name)
        else:
            set_field(m["hdr"], "prefix", b"", False)
            set_field(m["hdr"], "name", value)


def set_link(m, value, how):
    strip_overrides(m, (b"linkpath",))
    if how == "pax":
        m["meta"].append(meta_block(b"x", pax_payload([(b"linkpath", value)])))
    elif how == "long":
        m["meta"].append(meta_block(b"K", value + b"\0"))
        set_field(m["hdr"], "linkname", value[:99])
    else:
        set_field(m["hdr"], "linkname", value)


def set_data(m, data):
    m["data"] = data
    strip_overrides(m, (b"size",))
    set_field(m["hdr"], "size", b"%011o\0" % len(data))


def new_member(name, typeflag=b"0", data=b"", linkname=b"", mode=0o644):
    m = {"meta": [], "hdr": make_header(b"", typeflag, len(data), mode), "data": data}
    set_name(m, name, "field" if len(name) <= 100 else "pax")
    if linkname:
        set_link(m, linkname, "field" if len(linkname) <= 100 else "pax")
    return m


def header_offsets(data):
    """Offsets of the blocks a lenient walk takes for headers."""
    offsets, off = [], 0
    while off + 512 <= len(data):
        block = data[off:off + 512]
        if block == ZERO:
            break
        size = header_number(block[124:136])
        offsets.append(off)
        if size is None:
            break
        off += 512 + size + (-size % 512)
    return offsets


# ================================================================================= zip ==
def zip_bytes(model):
    out, central = bytearray(), bytearray()
    for e in model["entries"]:
        offset = len(out)
        lname = e.get("lname", e["name"])
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", e["version"] & 0xFFFF,
                           e.get("lflags", e["flags"]) & 0xFFFF,
                           e.get("lmethod", e["method"]) & 0xFFFF, e["time"] & 0xFFFF,
                           e["date"] & 0xFFFF, e["crc"] & MASK32, e["csize"] & MASK32,
                           e["usize"] & MASK32, len(lname) & 0xFFFF, len(e["extra"]) & 0xFFFF)
        out += lname + e["extra"] + e["data"]
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", (e["system"] << 8 | 20) & 0xFFFF,
            e["version"] & 0xFFFF, e["flags"] & 0xFFFF, e["method"] & 0xFFFF,
            e["time"] & 0xFFFF, e["date"] & 0xFFFF, e["crc"] & MASK32, e["csize"] & MASK32,
            e["usize"] & MASK32, len(e["name"]) & 0xFFFF, len(e["cextra"]) & 0xFFFF,
            len(e["comment"]) & 0xFFFF, 0, e["internal"] & 0xFFFF, e["ext_attr"] & MASK32,
            (offset + e.get("offset_delta", 0)) & MASK32)
        central += e["name"] + e["cextra"] + e["comment"]
    n = len(model["entries"])
    return bytes(out + central + struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, n & 0xFFFF, n & 0xFFFF, len(central) & MASK32,
        len(out) & MASK32, len(model["comment"]) & 0xFFFF) + model["comment"])


def zip_layout(data):
    """(eocd offset, central directory offset, its size) or None."""
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0 or eocd + 22 > len(data):
        return None
    size, offset = struct.unpack("<II", data[eocd + 12:eocd + 20])
    return eocd, offset, size


# ============================================================================ mutations ==
# A step is {"op", "p" (parameters), "expect", "desc"}; OPS[op] = (phase, family, apply).
# Phases run in this order: the tar or zip model, the tar bytes, compression, the final
# bytes, delivery. expect tells the oracle what a correct tool does with the result:
#   benign     the archive is still valid: it must restore (exit 0)
#   odd        odd but harmless values: restored (maybe clamped) or refused, 0, 6 or 7
#   hostile    an escaping or dangerous member: it must be refused (6 or 7)
#   encrypted  an encrypted zip member: refused, saying it is encrypted
#   damaged    damage of any kind: 0, 6, 7 or 11, never a write failure or "no space"
OPS = {}
PHASES = ("model", "tarraw", "compress", "outer", "deliver")


def op(name, phase, family):
    def register(function):
        OPS[name] = (phase, family, function)
        return function
    return register


def _subst(value, ctx):
    if isinstance(value, bytes) and OUTSIDE in value:
        return value.replace(OUTSIDE, ctx["outside"].encode())
    return value


def _show(value, limit=40):
    if isinstance(value, (bytes, bytearray)):
        if len(value) > limit:
            return f"{bytes(value[:limit // 2])!r}...({len(value)} bytes)"
        return repr(bytes(value))
    return repr(value)


# ---- value catalogues: (value, expect) ------------------------------------------------
def _deep(n):
    return b"../" * n


HOSTILE_NAMES = [b"../../bait/pwned", b"../pwned", b"_assets/../../../bait/pwned",
                 OUTSIDE + b"/pwned", b"..", b"./../../bait/pwned", b"a/b/../../../pwned"]
ODD_NAMES = [b"", b".", b"./", b"/", b"n" * 300, b"_assets/" + b"x" * 256,
             b"d/" * 2100 + b"f", b"_assets/\xff\xfe.bin", b"a\\..\\..\\bait\\pwned",
             b"_assets/line\nbreak", b".bootstrap_assets.json", b"_assets/.bootstrap_assets.json",
             b"_assets//double//slash.txt", b"_assets/" + "é".encode() * 128, b"a/./b/./c"]
BENIGN_NAMES = [b"_assets/new-name.txt", b"_assets/" + b"long-folder-name/" * 8 + b"file.txt",
                b"_assets/caf\xc3\xa9.txt", b"new-top-level.txt"]
HOSTILE_TARGETS = [_deep(9) + b"bait", OUTSIDE, b"/", OUTSIDE + b"/../outside", b"/etc/passwd"]
ODD_TARGETS = [b"", b".", b"..", b"../bait", b"x" * 5000, b"a/" * 2100, b"nonexistent/file",
               b"t" * 300, b"\xff\xfe", b"models/../../readme.txt"]

SIZE_VALUES = [
    (("oct", 0), "damaged"), (("rel", 1), "damaged"), (("rel", -1), "damaged"),
    (("rel", 512), "damaged"), (("rel", 100000), "damaged"), (("oct", 8 ** 11 - 1), "damaged"),
    (("b256", 2 ** 33), "damaged"), (("b256", 2 ** 40), "damaged"),
    (("b256", 2 ** 60), "damaged"), (("b256", 2 ** 88 - 1), "damaged"),
    (("neg", -1), "damaged"), (("neg", -2 ** 40), "damaged"), (("raw", b"abc"), "damaged"),
    (("raw", b" " * 12), "damaged"), (("raw", b"\xff" * 12), "damaged"),
    (("raw", b"-1\0"), "damaged"), (("raw", b"-777\0"), "damaged"),
    (("raw", b"+10\0"), "damaged"), (("raw", b"7" * 12), "damaged"),
]
MTIME_VALUES = [
    (("oct", 0), "benign"), (("oct", 8 ** 11 - 1), "odd"), (("b256", 2 ** 40), "odd"),
    (("b256", 2 ** 62), "odd"), (("b256", 2 ** 63), "odd"), (("b256", 2 ** 64), "odd"),
    (("b256", 2 ** 70), "odd"), (("b256", 2 ** 88 - 1), "odd"), (("neg", -1), "odd"),
    (("neg", -2 ** 62), "odd"), (("raw", b"-1\0"), "odd"), (("raw", b"zz\0"), "damaged"),
    (("raw", b"\xff" * 12), "odd"),
]
MODE_VALUES = [
    (("oct", 0o640), "benign"), (("oct", 0o755), "benign"), (("oct", 0), "odd"),
    (("oct", 0o7777), "odd"), (("oct", 0o4755), "odd"), (("oct", 0o2755), "odd"),
    (("oct", 0o1777), "odd"), (("oct", 0o1000644), "odd"), (("raw", b"rwxr-xr-x"), "damaged"),
    (("b256", 0o644), "odd"),
]
ID_VALUES = [(("oct", 1000), "benign"), (("oct", 65534), "benign"),
             (("b256", 2 ** 40), "odd"), (("raw", b"zz\0"), "odd"), (("neg", -1), "odd")]
PAX_VALUES = {
    b"size": [(b"-1", "damaged"), (b"-512", "damaged"), (b"-99999999999999999999", "damaged"),
              (b"0", "damaged"), (b"1e3", "damaged"), (b"99999999999999999999", "damaged"),
              (str(2 ** 60).encode(), "damaged"), (b"abc", "damaged"), (b"", "damaged"),
              (b" 5", "damaged"), (b"0x10", "damaged")],
    b"mtime": [(b"1e30", "odd"), (b"inf", "odd"), (b"-inf", "odd"), (b"nan", "odd"),
               (b"-1e30", "odd"), (b"1e18", "odd"), (b"1e19", "odd"), (b"-1", "odd"),
               (b"1600000000.5", "benign"), (b"1600000000.123456789012", "benign"),
               (b"", "damaged"), (b"abc", "damaged"), (b"1_0", "odd"), (b"9" * 40, "odd")],
    b"atime": [(b"inf", "odd"), (b"nan", "odd"), (b"1600000000.25", "benign")],
    b"path": ([(v, "hostile") for v in HOSTILE_NAMES] + [(v, "damaged") for v in ODD_NAMES]
              + [(v, "benign") for v in BENIGN_NAMES]),
    b"linkpath": ([(v, "hostile-link") for v in HOSTILE_TARGETS]
                  + [(v, "damaged") for v in ODD_TARGETS]),
    b"GNU.sparse.size": [(b"1000000", "damaged")],
    b"GNU.sparse.major": [(b"1", "damaged"), (b"2", "damaged")],
    b"GNU.sparse.map": [(b"0,2", "damaged"), (b"5,2,0,2", "damaged"), (b"", "damaged"),
                        (b"0,1,1,1", "damaged"), (b"x", "damaged")],
    b"GNU.sparse.realsize": [(b"99999999999999999999", "damaged"), (b"-1", "damaged")],
    b"GNU.sparse.name": [(b"../../bait/pwned", "damaged"), (b"renamed.txt", "damaged")],
    b"GNU.sparse.numblocks": [(b"1", "damaged"), (b"99999999999999999999", "damaged")],
    b"uid": [(b"-1", "odd"), (b"99999999999999999999", "odd")],
    b"uname": [(b"\xff\xfe", "benign"), (b"x" * 1000, "benign")],
    b"comment": [(b"a comment", "benign")],
    b"SCHILY.xattr.user.fuzz": [(b"value", "benign")],
    b"LIBARCHIVE.creationtime": [(b"1600000000", "benign")],
    b"hdrcharset": [(b"BINARY", "odd")],
    b"unknown.vendor.key": [(b"whatever", "benign")],
}
PAX_RAW = [b"5 a=b\n", b"999999 path=x\n", b"abc", b"0 =\n", b"-5 x=y\n", b"10 x=y",
           b"\0" * 10, b"99999999999999999999999 path=x\n", b"12 path=\xff\n",
           b"3 \n", b"11 size=-1\n"]
DELETED_CONTENT = [
    (b"[" * 1000 + b"]" * 1000, "damaged"), (b"[" * 10000 + b"]" * 10000, "damaged"),
    (b"[" * 100000 + b"]" * 100000, "damaged"),
    (b'{"a":' * 20000 + b"1" + b"}" * 20000, "damaged"),
    (json.dumps(["../../bait/secret.txt"]).encode(), "hostile"),
    (json.dumps(["{OUTSIDE}/secret.txt"]).encode(), "hostile"),
    (b"not json", "damaged"), (b"{}", "damaged"), (b"[1, 2]", "damaged"),
    (b"[null]", "damaged"), (b'["_assets"]', "damaged"), (b'[""]', "damaged"),
    (b'["\\u0000"]', "damaged"), (b"\xff\xfe", "damaged"), (b"[1e999]", "damaged"),
    (b'"string"', "damaged"), (b"[]", "benign"),
]


def _pick(rng, catalogue):
    return catalogue[rng.randrange(len(catalogue))]


def _tag(expect, member_kind_now):
    """hostile-link is hostile only on a link member; anything hostile only on a member the
    tool extracts (not on a volume label or an unknown type)."""
    if expect == "hostile-link":
        return "hostile" if member_kind_now in ("symlink", "hardlink") else "damaged"
    if expect == "hostile" and member_kind_now == "other":
        return "damaged"
    return expect


def _idx(model, p):
    return p["i"] % len(model["members"]) if model["members"] else None


# ---- tar model operations ---------------------------------------------------------------
@op("field", "model", "tar header fields")
def _apply_field(model, p, ctx):
    i = _idx(model, p)
    if i is None:
        return
    m = model["members"][i]
    if p["field"] in ("name", "linkname", "magic", "typeflag", "uname", "prefix", "chksum"):
        value = _subst(p["value"], ctx)
        if p["field"] == "chksum":
            off, n = FIELDS["chksum"]
            m["hdr"][off:off + n] = value[:n].ljust(n, b"\0")  # deliberately wrong
            return
        set_field(m["hdr"], p["field"], value)
        return
    width = FIELDS[p["field"]][1]
    if p["field"] == "size":
        strip_overrides(m, (b"size",))
    set_field(m["hdr"], p["field"], encode_number(p["value"], width, len(m["data"])))


def gen_field(rng, model, seed):
    i = rng.randrange(len(model["members"]))
    m = model["members"][i]
    kind = member_kind(m)
    field = rng.choice(["size", "size", "mtime", "mtime", "mode", "uid", "typeflag", "typeflag",
                        "name", "linkname", "magic", "prefix", "chksum", "uname"])
    if field == "size":
        value, expect = _pick(rng, SIZE_VALUES)
        if kind != "file" and value == ("oct", 0):
            expect = "benign"
    elif field == "mtime":
        value, expect = _pick(rng, MTIME_VALUES)
    elif field == "mode":
        value, expect = _pick(rng, MODE_VALUES)
    elif field == "uid":
        field = rng.choice(["uid", "gid"])
        value, expect = _pick(rng, ID_VALUES)
    elif field == "typeflag":
        value = bytes([rng.randrange(256)]) if rng.random() < 0.5 else \
            rng.choice([b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"V",
                        b"D", b"M", b"N", b"x", b"g", b"L", b"K", b"A", b"Z"])
        if value in (b"3", b"4", b"6"):
            expect = "hostile"
        elif kind == "file" and value in (b"0", b"\0", b"7"):
            expect = "benign"
        else:
            expect = "damaged"
    elif field == "name":
        catalogue = ([(v, "hostile") for v in HOSTILE_NAMES if len(v) <= 100]
                     + [(v, "damaged") for v in ODD_NAMES if len(v) <= 100])
        value, expect = _pick(rng, catalogue)
        if any(h[156:157] in (b"x", b"L") for h, _ in m["meta"]) or (
                bytes(m["hdr"][257:263]) == b"ustar\0" and get_text(m["hdr"], "prefix")):
            expect = "damaged"  # a pax path or long name overrides the field, or a prefix
            # comes before it
    elif field == "linkname":
        catalogue = ([(v, "hostile-link") for v in HOSTILE_TARGETS if len(v) <= 100]
                     + [(v, "damaged") for v in ODD_TARGETS if len(v) <= 100])
        value, expect = _pick(rng, catalogue)
        if any(h[156:157] in (b"x", b"K") for h, _ in m["meta"]):
            expect = "damaged"
    elif field == "magic":
        value, expect = rng.choice([b"ustar\x0000", b"ustar  \0", b"\0" * 8, b"USTAR\x0000",
                                    b"ustar\x0099"]), "damaged"
    elif field == "prefix":
        value, expect = _pick(rng, [(b"../..", "hostile"), (OUTSIDE, "hostile"),
                                    (b"_assets", "damaged"), (b"p" * 155, "damaged"),
                                    (b"", "damaged")])
        if bytes(m["hdr"][257:263]) != b"ustar\0" or m["meta"]:
            expect = "damaged"
    elif field == "uname":
        value, expect = rng.choice([b"\xff\xfe", b"nobody", b"x" * 32]), "benign"
    else:
        value, expect = rng.choice([b"0000000\0", b"zzzzzz\0 ", b"\xff" * 8]), "damaged"
    expect = _tag(expect, kind)
    return {"op": "field", "p": {"i": i, "field": field, "value": value}, "expect": expect,
            "desc": f"member {i} ({_show(member_name(m), 30)}): header field {field} = "
                    f"{_show(value)}, checksum fixed"}


@op("name", "model", "names and link targets")
def _apply_name(model, p, ctx):
    i = _idx(model, p)
    if i is not None:
        set_name(model["members"][i], _subst(p["value"], ctx), p["how"])


def gen_name(rng, model, seed):
    i = rng.randrange(len(model["members"]))
    m = model["members"][i]
    catalogue = ([(v, "hostile") for v in HOSTILE_NAMES] + [(v, "damaged") for v in ODD_NAMES]
                 + [(v, "benign") for v in BENIGN_NAMES])
    value, expect = _pick(rng, catalogue)
    how = rng.choice(["pax", "long", "field", "prefix"])
    if how in ("field", "prefix") and len(value) > 100:
        how = "pax"
    if expect == "benign":
        # renaming a folder, or a file a hard link points at, breaks the archive
        names = {get_text(o["hdr"], "linkname") for o in model["members"]
                 if member_kind(o) == "hardlink"}
        if member_kind(m) != "file" or member_name(m) in names or seed["fmt"] == "zip":
            expect = "damaged"
    if sparse_name(m) is not None:
        expect = "damaged"  # GNU.sparse.name names the member, whatever else says
    return {"op": "name", "p": {"i": i, "value": value, "how": how},
            "expect": _tag(expect, member_kind(m)),
            "desc": f"member {i} ({_show(member_name(m), 30)}): name = {_show(value)} "
                    f"(as {how})"}


@op("link", "model", "names and link targets")
def _apply_link(model, p, ctx):
    i = _idx(model, p)
    if i is None:
        return
    m = model["members"][i]
    set_data(m, b"")
    set_field(m["hdr"], "typeflag", p["type"])
    set_link(m, _subst(p["value"], ctx), p["how"])


def gen_link(rng, model, seed):
    i = rng.randrange(len(model["members"]))
    m = model["members"][i]
    typeflag = rng.choice([b"2", b"2", b"1"])
    if typeflag == b"2":
        catalogue = ([(v, "hostile") for v in HOSTILE_TARGETS]
                     + [(v, "damaged") for v in ODD_TARGETS])
    else:
        catalogue = [(b"../../bait/secret.txt", "hostile"), (OUTSIDE + b"/secret.txt", "hostile"),
                     (member_name(m), "damaged"), (b"", "damaged"), (b"nonexistent", "damaged"),
                     (member_name(model["members"][-1]), "damaged"),
                     (member_name(model["members"][0]), "damaged")]
    value, expect = _pick(rng, catalogue)
    how = rng.choice(["field", "pax", "long"]) if len(value) <= 100 else rng.choice(["pax", "long"])
    kind = "symlink" if typeflag == b"2" else "hard link"
    return {"op": "link", "p": {"i": i, "type": typeflag, "value": value, "how": how},
            "expect": expect,
            "desc": f"member {i} ({_show(member_name(m), 30)}) made a {kind} to "
                    f"{_show(value)} (as {how})"}


@op("pax", "model", "pax records")
def _apply_pax(model, p, ctx):
    i = _idx(model, p)
    if i is None:
        return
    if "raw" in p:
        payload = p["raw"]
    else:
        payload = pax_payload([(k, _subst(v, ctx)) for k, v in p["records"]])
    block = meta_block(p.get("type", b"x"), payload)
    if p.get("declared") is not None:
        set_field(block[0], "size", encode_number(p["declared"], 12))
    model["members"][i]["meta"].append(block)


def gen_pax(rng, model, seed):
    i = rng.randrange(len(model["members"]))
    m = model["members"][i]
    kind = member_kind(m)
    roll = rng.random()
    step = {"op": "pax", "p": {"i": i}}
    where = f"member {i} ({_show(member_name(m), 30)})"
    if roll < 0.1:
        raw = rng.choice(PAX_RAW)
        step["p"]["raw"] = raw
        step.update(expect="damaged", desc=f"{where}: malformed pax header {_show(raw)}")
    elif roll < 0.16:
        declared = rng.choice([("oct", 2 ** 21), ("b256", 2 ** 62), ("oct", 0)])
        step["p"].update(records=[(b"comment", b"x")], declared=declared)
        step.update(expect="damaged", desc=f"{where}: pax header whose size field says "
                                           f"{declared}")
    elif roll < 0.24:
        key = rng.choice([b"comment", b"path", b"size", b"mtime", b"GNU.sparse.major",
                          b"linkpath"])
        value, _ = _pick(rng, PAX_VALUES[key])
        step["p"].update(records=[(key, value)], type=b"g")
        step.update(expect="benign" if key == b"comment" else "damaged",
                    desc=f"global pax header before {where}: {key.decode()}={_show(value)}")
    else:
        key = rng.choice(list(PAX_VALUES) + [b"size", b"size", b"mtime", b"mtime", b"path"])
        value, expect = _pick(rng, PAX_VALUES[key])
        if key == b"size" and kind != "file":
            expect = "damaged"
        if key == b"path" and sparse_name(m) is not None:
            expect = "damaged"  # GNU.sparse.name names the member, whatever else says
        if key == b"path" and expect == "benign":
            names = {get_text(o["hdr"], "linkname") for o in model["members"]
                     if member_kind(o) == "hardlink"}
            if kind != "file" or member_name(m) in names:
                expect = "damaged"
        records = [(key, value)]
        if rng.random() < 0.15:  # a second, conflicting record of the same key
            other, _ = _pick(rng, PAX_VALUES[key])
            records.append((key, other))
            expect = "damaged" if expect != "hostile" else "damaged"
        step["p"]["records"] = records
        step.update(expect=_tag(expect, kind),
                    desc=f"{where}: pax " + ", ".join(f"{k.decode()}={_show(v)}"
                                                     for k, v in records))
    return step


@op("member", "model", "tar member structure")
def _apply_member(model, p, ctx):
    members = model["members"]
    kind = p["kind"]
    if not members and kind != "insert":
        return
    i = p.get("i", 0) % max(len(members), 1)
    j = p.get("j", 0) % (len(members) + 1)
    if kind == "dup":
        members.insert(j, copy.deepcopy(members[i]))
    elif kind == "delete":
        del members[i]
    elif kind == "swap":
        j = j % len(members)
        members[i], members[j] = members[j], members[i]
    elif kind == "insert":
        new = [new_member(_subst(n, ctx), t, _subst(d, ctx), _subst(ln, ctx))
               for n, t, d, ln in p["members"]]
        members[j:j] = new
    elif kind == "to-dir":
        m = members[i]
        set_data(m, b"")
        set_field(m["hdr"], "typeflag", b"5")
    elif kind == "to-file":
        m = members[i]
        set_field(m["hdr"], "typeflag", b"0")
        set_data(m, p.get("data", b"data\n"))


def gen_member(rng, model, seed):
    members = model["members"]
    i, j = rng.randrange(len(members)), rng.randrange(len(members) + 1)
    top = member_name(members[0]).split(b"/")[0]
    top = top + b"/" if top not in (b"", b".") and member_kind(members[0]) == "dir" else b""
    depth = top.count(b"/")
    roll = rng.random()
    if roll < 0.3:
        content, expect = _pick(rng, DELETED_CONTENT)
        name = DELETED if rng.random() < 0.85 else top + DELETED
        if name != DELETED:
            expect = "benign"  # below the top folder it is an ordinary file
        return {"op": "member", "p": {"kind": "insert", "j": j,
                                      "members": [(name, b"0", content, b"")]},
                "expect": expect, "family": "deleted-list member",
                "desc": f"insert {name.decode()} at {j} holding {_show(content)}"}
    if roll < 0.42:
        target = rng.choice([OUTSIDE, _deep(depth + 3) + b"outside", b"/tmp"])
        return {"op": "member", "p": {"kind": "insert", "j": j, "members": [
            (top + b"evil", b"2", b"", target), (top + b"evil/pwned", b"0", b"pwned\n", b"")]},
                "expect": "hostile",
                "desc": f"insert a symlink {(top + b'evil').decode()} -> {_show(target)} and a "
                        f"file written through it, at {j}"}
    if roll < 0.5:
        value, expect = rng.choice([(b"", "damaged"), (b"x" * 3000, "damaged"),
                                    (b"LABEL", "odd")])
        return {"op": "member", "p": {"kind": "insert", "j": j,
                                      "members": [(b"LABEL", b"V", value, b"")]},
                "expect": expect, "desc": f"insert a volume label with {len(value)} bytes at {j}"}
    if roll < 0.6:
        name, expect = _pick(rng, [(top + b"n" * 300, "damaged"),
                                   (top + b"new-file.txt", "benign"),
                                   (top + b"dir/" * 60 + b"f", "benign"),
                                   (b"../../bait/new", "hostile"),
                                   (OUTSIDE + b"/new", "hostile")])
        return {"op": "member", "p": {"kind": "insert", "j": len(members),
                                      "members": [(name, b"0", b"new\n", b"")]},
                "expect": expect, "desc": f"append a file named {_show(name)}"}
    if roll < 0.65:
        return {"op": "member", "p": {"kind": "insert", "j": j, "members": [
            (top + b"empty-link", b"2", b"", b"")]}, "expect": "damaged",
            "desc": f"insert a symlink with an empty target at {j}"}
    kind = rng.choice(["dup", "delete", "swap", "to-dir", "to-file"])
    return {"op": "member", "p": {"kind": kind, "i": i, "j": j}, "expect": "damaged",
            "desc": f"{kind} member {i} ({_show(member_name(members[i]), 30)})"
                    + (f" at {j}" if kind in ("dup", "swap") else "")}


@op("keep", "model", "minimised")
def _apply_keep(model, p, ctx):
    key = "entries" if "entries" in model else "members"
    model[key] = [m for k, m in enumerate(model[key]) if k in p["keep"]]


# ---- tar bytes ---------------------------------------------------------------------------
def _rng(p):
    return random.Random(p["seed"])


@op("flip", "tarraw", "byte flips")
def _apply_flip(data, p, ctx):
    r = _rng(p)
    data = bytearray(data)
    if not data:
        return bytes(data)
    heads = header_offsets(data) if p.get("headers") else []
    touched = set()
    for _ in range(p["n"]):
        if heads:
            base = r.choice(heads)
            pos = base + r.choice([r.randrange(512), r.randrange(100, 160), r.randrange(124, 148),
                                   156, r.randrange(257, 265)])
            touched.add(base)
        else:
            pos = r.randrange(len(data))
        if pos >= len(data):
            continue
        data[pos] = r.randrange(256) if r.random() < 0.5 else data[pos] ^ (1 << r.randrange(8))
    for base in touched:
        if p.get("fix") and base + 512 <= len(data):
            block = bytearray(data[base:base + 512])
            fix_checksum(block)
            data[base:base + 512] = block
    return bytes(data)


@op("splice", "tarraw", "block splices")
def _apply_splice(data, p, ctx):
    r = _rng(p)
    blocks = [data[k:k + 512] for k in range(0, len(data), 512)]
    if not blocks:
        return data
    n = len(blocks)
    a = r.randrange(n)
    b = min(n, a + r.choice([1, 1, 2, 3, 8]))
    c = r.randrange(n + 1)
    kind = p["kind"]
    if kind == "delete":
        del blocks[a:b]
    elif kind == "dup":
        blocks[c:c] = blocks[a:b]
    elif kind == "move":
        chunk = blocks[a:b]
        del blocks[a:b]
        c = min(c, len(blocks))
        blocks[c:c] = chunk
    elif kind == "overwrite":
        blocks[a] = blocks[r.randrange(n)]
    elif kind == "random":
        blocks[c:c] = [bytes(r.randrange(256) for _ in range(512))]
    elif kind == "zero":
        blocks[c:c] = [ZERO]
    return b"".join(blocks)


@op("truncate", "tarraw", "truncations")
def _apply_truncate(data, p, ctx):
    r = _rng(p)
    kind = p["kind"]
    if kind == "empty":
        return b""
    if kind == "no-end":
        return data.rstrip(b"\0") + bytes(-len(data.rstrip(b"\0")) % 512)
    if kind == "no-end-blocks":  # cut exactly at the end marker: as Go's writer without Close
        offsets = header_offsets(data)
        if not offsets:
            return data
        size = header_number(data[offsets[-1] + 124:offsets[-1] + 136]) or 0
        return data[:offsets[-1] + 512 + size + (-size % 512)]
    if kind == "block":
        return data[:512 * r.randrange(max(len(data) // 512, 1))]
    if kind == "headers":
        offsets = header_offsets(data)
        return data[:r.choice(offsets) + 512] if offsets else data[:512]
    return data[:r.randrange(max(len(data), 1))]


@op("append", "tarraw", "truncations")
def _apply_append(data, p, ctx):
    r = _rng(p)
    if p["kind"] == "zeros":
        return data + bytes(r.choice([1, 512, 10240, 100000]))
    if p["kind"] == "copy":
        return data + data
    return data + bytes(r.randrange(256) for _ in range(r.choice([1, 100, 512, 5000])))


def gen_tarraw(rng, model, seed):
    roll = rng.random()
    s = rng.randrange(2 ** 32)
    if roll < 0.4:
        n = rng.choice([1, 1, 2, 4, 8, 16])
        headers = rng.random() < 0.7
        fix = headers and rng.random() < 0.7
        return {"op": "flip", "p": {"seed": s, "n": n, "headers": headers, "fix": fix},
                "expect": "damaged",
                "desc": f"{n} byte flip(s) in the tar " + ("headers" if headers else "stream")
                        + (", checksums fixed" if fix else "")}
    if roll < 0.7:
        kind = rng.choice(["delete", "dup", "move", "overwrite", "random", "zero"])
        return {"op": "splice", "p": {"seed": s, "kind": kind}, "expect": "damaged",
                "desc": f"block splice: {kind}"}
    if roll < 0.9:
        kind = rng.choice(["byte", "byte", "block", "headers", "no-end", "no-end-blocks",
                           "empty"])
        return {"op": "truncate", "p": {"seed": s, "kind": kind},
                "expect": {"no-end": "odd", "no-end-blocks": "benign"}.get(kind, "damaged"),
                "desc": f"tar truncated: {kind}"}
    kind = rng.choice(["zeros", "random", "copy"])
    return {"op": "append", "p": {"seed": s, "kind": kind},
            "expect": "benign" if kind == "zeros" else "odd",
            "desc": f"after the tar's end: {kind} appended"}


# ---- compression and the final bytes ----------------------------------------------------
def compress(data, fmt, level=6):
    if fmt == "gz":
        return gzip.compress(data, level, mtime=0)
    if fmt == "bz2":
        return bz2.compress(data, 9)
    if fmt == "xz":
        return lzma.compress(data)
    if fmt == "zst":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
    return data


@op("multistream", "compress", "multi-stream compression")
def _apply_multistream(data, p, ctx):
    cuts = sorted(int(f * len(data)) for f in p["cuts"])
    bounds = [0] + cuts + [len(data)]
    return b"".join(compress(data[a:b], ctx["fmt"]) for a, b in zip(bounds, bounds[1:]))


@op("outer", "outer", "compressed stream damage")
def _apply_outer(data, p, ctx):
    r = _rng(p)
    kind = p["kind"]
    data = bytearray(data)
    if kind == "flip" and data:
        for _ in range(p.get("n", 1)):
            pos = r.randrange(len(data)) if r.random() < 0.7 else r.randrange(min(len(data), 32))
            data[pos] = r.randrange(256)
    elif kind == "truncate":
        data = data[:r.randrange(max(len(data), 1))]
    elif kind == "zeros":
        data += bytes(r.choice([1, 7, 512, 4096]))
    elif kind == "garbage":
        data += bytes(r.randrange(256) for _ in range(r.choice([1, 10, 1000])))
    elif kind == "copy":
        data += bytes(data)
    elif kind == "prepend":
        data[0:0] = bytes(r.randrange(256) for _ in range(r.choice([1, 3, 100])))
    return bytes(data)


def gen_outer(rng, model, seed):
    kind = rng.choice(["flip", "flip", "flip", "truncate", "truncate", "zeros", "garbage",
                       "copy", "prepend"])
    n = rng.choice([1, 1, 2, 8])
    expect = {"zeros": "benign", "copy": "odd"}.get(kind, "damaged")
    return {"op": "outer", "p": {"seed": rng.randrange(2 ** 32), "kind": kind, "n": n},
            "expect": expect, "desc": f"final bytes: {kind}" + (f" x{n}" if kind == "flip" else "")}


def gen_multistream(rng, model, seed):
    cuts = [round(rng.random(), 3) for _ in range(rng.choice([1, 2]))]
    return {"op": "multistream", "p": {"cuts": cuts}, "expect": "benign",
            "desc": f"compressed as {len(cuts) + 1} concatenated {seed['fmt']} streams"}


@op("parts", "deliver", "split into parts")
def _apply_parts(data, p, ctx):
    cuts = sorted(int(f * len(data)) for f in p["cuts"])
    bounds = [0] + cuts + [len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    if p.get("gap") and len(parts) > 2:
        parts[1] = None
    return parts


def gen_parts(rng, model, seed):
    cuts = [round(rng.random(), 3) for _ in range(rng.choice([1, 2, 3]))]
    gap = rng.random() < 0.25 and len(cuts) >= 2
    return {"op": "parts", "p": {"cuts": cuts, "gap": gap},
            "expect": "damaged" if gap else "benign",
            "desc": f"delivered as {len(cuts) + 1} parts ARCHIVE.part-NNNN"
                    + (" with part 2 missing" if gap else "")}


# ---- zip ----------------------------------------------------------------------------------
ZIP_FIELD_CHANGES = [
    # (description, changes, expect)
    ("empty name", {"name": b"", "lname": b""}, "damaged"),
    ("empty name in the central directory only", {"name": b""}, "damaged"),
    ("UTF-8 flag on invalid UTF-8 name bytes",
     {"name": b"_assets/\xff\xfe-bad.txt", "lname": b"_assets/\xff\xfe-bad.txt", "flags|": 0x800},
     "damaged"),
    ("cp437 name without the UTF-8 flag",
     {"name": b"_assets/caf\x82.txt", "lname": b"_assets/caf\x82.txt", "flags&": ~0x800},
     "benign"),
    ("encrypted flag (bit 0)", {"flags|": 0x1, "lflags|": 0x1}, "encrypted"),
    ("strong-encryption flag (bit 6)", {"flags|": 0x40, "lflags|": 0x40}, "encrypted"),
    ("strong-encryption flag (bit 6) in the local header only", {"lflags|": 0x40}, "odd"),
    ("strong encryption (bits 0 and 6)", {"flags|": 0x41, "lflags|": 0x41}, "encrypted"),
    ("WinZip AES (method 99, bit 0, extra 0x9901)",
     {"method": 99, "lmethod": 99, "flags|": 0x1, "lflags|": 0x1,
      "extra": b"\x01\x99\x07\x00\x02\x00AE\x03\x08\x00",
      "cextra": b"\x01\x99\x07\x00\x02\x00AE\x03\x08\x00"}, "encrypted"),
    ("method 99 without the encrypted flag", {"method": 99, "lmethod": 99}, "damaged"),
    ("patched-data flag (bit 5)", {"flags|": 0x20, "lflags|": 0x20}, "damaged"),
    ("UTF-8 flag on invalid UTF-8 bytes in the local header only",
     {"lname": b"_assets/\xff\xfe-bad.txt", "lflags|": 0x800}, "damaged"),
    ("data-descriptor flag (bit 3) without a descriptor", {"flags|": 0x8, "lflags|": 0x8},
     "damaged"),
    ("method 9 (deflate64)", {"method": 9, "lmethod": 9}, "damaged"),
    ("method 12 (bzip2) on other data", {"method": 12, "lmethod": 12}, "damaged"),
    ("method 14 (lzma) on other data", {"method": 14, "lmethod": 14}, "damaged"),
    ("method 93 (zstd) on other data", {"method": 93, "lmethod": 93}, "damaged"),
    ("method 255", {"method": 255, "lmethod": 255}, "damaged"),
    ("stored <-> deflated swapped", {"method^": 8}, "damaged"),
    ("external_attr 0o600 with no type bits", {"ext_attr": 0o600 << 16}, "benign-file"),
    ("external_attr 0o755 with no type bits", {"ext_attr": 0o755 << 16}, "benign-file"),
    ("external_attr 0", {"ext_attr": 0}, "benign-file"),
    ("MS-DOS archive attribute only", {"ext_attr": 0x20, "system": 0}, "benign-file"),
    ("a FIFO", {"ext_attr": (stat.S_IFIFO | 0o644) << 16}, "hostile"),
    ("a character device", {"ext_attr": (stat.S_IFCHR | 0o644) << 16}, "hostile"),
    ("a block device", {"ext_attr": (stat.S_IFBLK | 0o644) << 16}, "hostile"),
    ("a socket", {"ext_attr": (stat.S_IFSOCK | 0o644) << 16}, "hostile"),
    ("setuid regular file", {"ext_attr": (stat.S_IFREG | 0o4755) << 16}, "odd"),
    ("setgid+sticky regular file", {"ext_attr": (stat.S_IFREG | 0o3755) << 16}, "odd"),
    ("a folder type on a file with data", {"ext_attr": (stat.S_IFDIR | 0o755) << 16},
     "damaged"),
    ("a symlink type on a file", {"ext_attr": (stat.S_IFLNK | 0o777) << 16}, "damaged"),
    ("uncompressed size +1", {"usize+": 1}, "damaged"),
    ("uncompressed size -1", {"usize+": -1}, "damaged"),
    ("uncompressed size 0xFFFFFFFF", {"usize": MASK32}, "damaged"),
    ("compressed size +10", {"csize+": 10}, "damaged"),
    ("compressed size 0xFFFFFFFF", {"csize": MASK32}, "damaged"),
    ("wrong CRC", {"crc^": 0x1234}, "damaged"),
    ("date 0, time 0xFFFF", {"date": 0, "time": 0xFFFF}, "odd"),
    ("date 0xFFFF", {"date": 0xFFFF}, "odd"),
    ("garbage extra field", {"extra": b"\xff\xff\x40\x00garbage", "cextra": b"\x01\x00\x99\x00"},
     "damaged"),
    ("zip64 extra with a bad length", {"cextra": b"\x01\x00\x04\x00\xff\xff\xff\xff"},
     "damaged"),
    ("version needed 9.9", {"version": 99}, "damaged"),
    ("local header offset +1", {"offset_delta": 1}, "damaged"),
    ("local header offset -30", {"offset_delta": -30}, "damaged"),
    ("local header offset 0xFFFFFFF0", {"offset_delta": 0xFFFFFFF0}, "damaged"),
    ("local name differs", {"lname": b"other-name.txt"}, "damaged"),
    ("NUL in the name", {"name": b"_assets/nul\0byte.txt", "lname": b"_assets/nul\0byte.txt"},
     "damaged"),
]


def _set_zip_name(e, value):
    e["name"] = e["lname"] = value


@op("zipfield", "model", "zip entry fields")
def _apply_zipfield(model, p, ctx):
    entries = model["entries"]
    if not entries:
        return
    e = entries[p["i"] % len(entries)]
    if "name" in p["changes"] and "lname" not in p["changes"]:
        e.setdefault("lname", e["name"])  # the central directory's name alone changes
    for key, value in p["changes"].items():
        if key.endswith("|"):
            e[key[:-1]] = e.get(key[:-1], e["flags"]) | value
        elif key.endswith("&"):
            e[key[:-1]] = e.get(key[:-1], e["flags"]) & value
        elif key.endswith("^"):
            e[key[:-1]] ^= value
        elif key.endswith("+"):
            e[key[:-1]] += value
        else:
            e[key] = value


def gen_zipfield(rng, model, seed):
    i = rng.randrange(len(model["entries"]))
    e = model["entries"][i]
    desc, changes, expect = _pick(rng, ZIP_FIELD_CHANGES)
    changes = dict(changes)
    if expect == "benign-file":
        expect = "benign"  # a folder's name ends in '/': it stays a folder
    if e["name"].endswith(b"/") and expect == "hostile":
        expect = "damaged"  # a name ending in '/' is a folder, whatever its mode says
    if "name" in changes and expect == "benign" and e["name"].endswith(b"/"):
        expect = "damaged"
    return {"op": "zipfield", "p": {"i": i, "changes": changes}, "expect": expect,
            "desc": f"zip entry {i} ({_show(e['name'], 30)}): {desc}"}


@op("zipname", "model", "zip names and links")
def _apply_zipname(model, p, ctx):
    entries = model["entries"]
    if not entries:
        return
    e = entries[p["i"] % len(entries)]
    value = _subst(p["value"], ctx)
    if p.get("link") is not None:
        target = _subst(p["link"], ctx)
        e.update(method=0, data=target, crc=zlib.crc32(target), csize=len(target),
                 usize=len(target), ext_attr=(stat.S_IFLNK | 0o777) << 16)
        e.pop("lmethod", None)
    if value is not None:
        _set_zip_name(e, value)
        if any(b > 127 for b in value):
            e["flags"] |= 0x800
            e["lflags"] = e.get("lflags", e["flags"]) | 0x800


def gen_zipname(rng, model, seed):
    i = rng.randrange(len(model["entries"]))
    e = model["entries"][i]
    roll = rng.random()
    if roll < 0.45:
        catalogue = ([(v, "hostile") for v in HOSTILE_NAMES if v not in (b"..",)]
                     + [(v, "damaged") for v in ODD_NAMES]
                     + [(b"_assets\\sub\\win.txt", "damaged")])
        value, expect = _pick(rng, catalogue)
        return {"op": "zipname", "p": {"i": i, "value": value, "link": None}, "expect": expect,
                "desc": f"zip entry {i} ({_show(e['name'], 30)}): name = {_show(value)}"}
    catalogue = [(v, "hostile") for v in HOSTILE_TARGETS] + [(v, "damaged") for v in ODD_TARGETS]
    target, expect = _pick(rng, catalogue)
    if e["name"].endswith(b"/"):
        expect = "damaged"
    return {"op": "zipname", "p": {"i": i, "value": None, "link": target}, "expect": expect,
            "desc": f"zip entry {i} ({_show(e['name'], 30)}) made a symlink to {_show(target)}"}


@op("zipstruct", "model", "zip entry structure")
def _apply_zipstruct(model, p, ctx):
    entries = model["entries"]
    if not entries:
        return
    i, j = p["i"] % len(entries), p["j"] % (len(entries) + 1)
    if p["kind"] == "dup":
        entries.insert(j, copy.deepcopy(entries[i]))
    elif p["kind"] == "delete":
        del entries[i]
    elif p["kind"] == "swap":
        j %= len(entries)
        entries[i], entries[j] = entries[j], entries[i]
    elif p["kind"] == "plain-writestr":  # what zipfile.ZipFile.writestr(name, data) writes
        e = entries[i]
        if not e["name"].endswith(b"/"):
            e["ext_attr"] = 0o600 << 16
    elif p["kind"] == "dir-conflict":
        e = copy.deepcopy(entries[i])
        _set_zip_name(e, e["name"].rstrip(b"/") + b"/")
        e.update(ext_attr=(stat.S_IFDIR | 0o755) << 16, data=b"", csize=0, usize=0,
                 crc=0, method=0)
        entries.insert(j, e)


def gen_zipstruct(rng, model, seed):
    entries = model["entries"]
    i, j = rng.randrange(len(entries)), rng.randrange(len(entries) + 1)
    kind = rng.choice(["dup", "delete", "swap", "plain-writestr", "dir-conflict"])
    expect = "damaged"
    if kind == "plain-writestr":
        is_link = (entries[i]["ext_attr"] >> 16) & 0o170000 == stat.S_IFLNK
        expect = "damaged" if is_link else "benign"
    if kind == "swap" and not any((e["ext_attr"] >> 16) & 0o170000 == stat.S_IFLNK
                                  for e in entries):
        expect = "benign"
    return {"op": "zipstruct", "p": {"i": i, "j": j, "kind": kind}, "expect": expect,
            "desc": f"zip entry {i} ({_show(entries[i]['name'], 30)}): {kind}"
                    + (f" at {j}" if kind in ("dup", "dir-conflict") else "")}


@op("zipcd", "outer", "zip central directory")
def _apply_zipcd(data, p, ctx):
    r = _rng(p)
    layout = zip_layout(data)
    data = bytearray(data)
    if layout is None:
        return bytes(data[:-1])
    eocd, cd_off, cd_size = layout
    kind = p["kind"]
    if kind == "flip" and cd_size:
        for _ in range(p.get("n", 1)):
            pos = cd_off + r.randrange(max(cd_size, 1))
            if pos < len(data):
                data[pos] = r.randrange(256)
    elif kind == "count":
        struct.pack_into("<HH", data, eocd + 8, r.choice([0, 1, 0xFFFF]), r.choice([0, 1, 0xFFFF]))
    elif kind == "size":
        struct.pack_into("<I", data, eocd + 12, (cd_size + r.choice([-1, 1, 46, -46, 10 ** 6]))
                         & MASK32)
    elif kind == "offset":
        struct.pack_into("<I", data, eocd + 16, (cd_off + r.choice([-1, 1, 30, -30, 10 ** 6]))
                         & MASK32)
    elif kind == "comment-length":
        struct.pack_into("<H", data, eocd + 20, r.choice([1, 100, 0xFFFF]))
    elif kind == "cut-cd":
        del data[cd_off + r.randrange(max(cd_size, 1)):eocd]
    elif kind == "no-eocd":
        del data[eocd:]
    elif kind == "entry-offset" and cd_size >= 46:
        struct.pack_into("<I", data, cd_off + 42, r.choice([1, 0x7FFFFFFF, MASK32, len(data)]))
    elif kind == "entry-name-length" and cd_size >= 46:
        struct.pack_into("<H", data, cd_off + 28, r.choice([0, 1, 0xFFFF]))
    elif kind == "entry-extra-length" and cd_size >= 46:
        struct.pack_into("<H", data, cd_off + 30, r.choice([4, 0xFFFF]))
    elif kind == "trailing":
        data += b"trailing junk"
    return bytes(data)


def gen_zipcd(rng, model, seed):
    kind = rng.choice(["flip", "flip", "count", "size", "offset", "comment-length", "cut-cd",
                       "no-eocd", "entry-offset", "entry-name-length", "entry-extra-length",
                       "trailing"])
    return {"op": "zipcd", "p": {"seed": rng.randrange(2 ** 32), "kind": kind,
                                 "n": rng.choice([1, 2, 8])},
            "expect": "odd" if kind == "trailing" else "damaged",
            "desc": f"zip central directory: {kind}"}


@op("zipraw", "outer", "zip bytes")
def _apply_zipraw(data, p, ctx):
    r = _rng(p)
    data = bytearray(data)
    if p["kind"] == "flip" and data:
        for _ in range(p["n"]):
            data[r.randrange(len(data))] = r.randrange(256)
    elif p["kind"] == "truncate":
        data = data[:r.randrange(max(len(data), 1))]
    elif p["kind"] == "prepend":  # a self-extracting stub: unzip and zipfile read past it
        data[0:0] = b"MZ garbage stub "
    elif p["kind"] == "pad":
        data[0:0] = bytes(4096)
    return bytes(data)


def gen_zipraw(rng, model, seed):
    kind = rng.choice(["flip", "flip", "truncate", "prepend", "pad"])
    n = rng.choice([1, 2, 4, 16])
    return {"op": "zipraw", "p": {"seed": rng.randrange(2 ** 32), "kind": kind, "n": n},
            "expect": "benign" if kind in ("prepend", "pad") else "damaged",
            "desc": f"zip bytes: {kind}" + (f" x{n}" if kind == "flip" else "")}


TAR_GENERATORS = [(gen_field, 30), (gen_name, 10), (gen_link, 8), (gen_pax, 18),
                  (gen_member, 14), (gen_tarraw, 20)]
COMPRESSED_EXTRA = [(gen_outer, 10), (gen_multistream, 3)]
ZIP_GENERATORS = [(gen_zipfield, 40), (gen_zipname, 15), (gen_zipstruct, 10), (gen_zipcd, 22),
                  (gen_zipraw, 10)]
MODEL_PHASE_GENS = (gen_field, gen_name, gen_link, gen_pax, gen_member, gen_zipfield,
                    gen_zipname, gen_zipstruct)


def _weighted(rng, table):
    total = sum(w for _, w in table)
    x = rng.random() * total
    for item, w in table:
        x -= w
        if x < 0:
            return item
    return table[-1][0]


def seed_model(seed):
    if seed["fmt"] == "zip":
        return copy.deepcopy(seed["zip"])
    return parse_tar(seed["tar"])


def generate(seeds, fuzz_seed, index):
    """Mutant `index`: {"seed", "steps", "dest_state"}, the same for the same seeds."""
    rng = random.Random(f"{fuzz_seed}:{index}")
    names = sorted(seeds)
    seed = seeds[names[rng.randrange(len(names))]]
    count = 1 if rng.random() < 0.6 else (2 if rng.random() < 0.62 else 3)
    table = ZIP_GENERATORS if seed["fmt"] == "zip" else \
        TAR_GENERATORS + (COMPRESSED_EXTRA if seed["fmt"] != "tar" else [])
    table = table + [(gen_parts, 3)]
    model = seed_model(seed)
    ctx = {"outside": "/nonexistent-outside", "fmt": seed["fmt"]}
    steps = []
    for _ in range(count):
        for _attempt in range(5):
            gen = _weighted(rng, table)
            if gen is gen_parts and any(s["op"] == "parts" for s in steps):
                continue
            if gen is gen_multistream and any(s["op"] == "multistream" for s in steps):
                continue
            if gen in MODEL_PHASE_GENS and not model.get("members", model.get("entries")):
                continue
            step = gen(rng, model, seed)
            if OPS[step["op"]][0] == "model":
                OPS[step["op"]][2](model, step["p"], ctx)
            steps.append(step)
            break
    dest_state = rng.choice(["absent", "absent", "absent", "empty", "ours", "ours"])
    return {"seed": seed["name"], "steps": steps, "dest_state": dest_state, "index": index}


def materialise(seeds, mutant, outside):
    """[bytes or None per file]: one archive file, or its parts (None: a missing part)."""
    seed = seeds[mutant["seed"]]
    ctx = {"outside": outside, "fmt": seed["fmt"]}
    by_phase = {phase: [s for s in mutant["steps"] if OPS[s["op"]][0] == phase]
                for phase in PHASES}
    model = seed_model(seed)
    for s in by_phase["model"]:
        OPS[s["op"]][2](model, s["p"], ctx)
    if seed["fmt"] == "zip":
        data = zip_bytes(model)
    else:
        data = tar_bytes(model)
        for s in by_phase["tarraw"]:
            data = OPS[s["op"]][2](data, s["p"], ctx)
        if by_phase["compress"]:
            for s in by_phase["compress"]:
                data = OPS[s["op"]][2](data, s["p"], ctx)
        else:
            data = compress(data, seed["fmt"])
    for s in by_phase["outer"]:
        data = OPS[s["op"]][2](data, s["p"], ctx)
    for s in by_phase["deliver"]:
        return OPS[s["op"]][2](data, s["p"], ctx)
    return [data]


def expectation(steps):
    """What the oracle demands of this mutant (see the tags above OPS)."""
    if not steps:
        return "seed"
    tags = [s["expect"] for s in steps]
    other = [t for t in tags if t != "benign"]
    if not other:
        return "restore"
    if len(other) == 1 and other[0] == "hostile":
        # a refusal is owed only if no later step on the archive's structure could undo it
        # (rename the member again, make a symlink a regular file, ...)
        k = tags.index("hostile")
        if any(OPS[s["op"]][0] == "model" for s in steps[k + 1:]):
            return "any"
        return "refuse"
    if len(other) == 1 and other[0] in ("encrypted", "odd"):
        return {"encrypted": "encrypted", "odd": "odd"}[other[0]]
    if all(t in ("benign", "odd") for t in tags):
        return "odd"
    return "any"


def family(mutant):
    """The case a mutant counts under in the report: what its single mutation was."""
    steps = [s for s in mutant["steps"] if s["op"] != "keep"]
    if not mutant["steps"]:
        return "seed (unmutated)"
    if len(steps) > 1:
        return f"stacked ({len(steps)} mutations)"
    s = steps[0] if steps else mutant["steps"][0]
    name = s.get("family") or OPS[s["op"]][1]
    if not name.startswith("zip"):
        name = ("zip: " if mutant["seed"].endswith(".zip") else "tar: ") + name
    return ("sweep of " if mutant.get("sweep") else "") + name


# ============================================================================== running ==
def snapshot(root, skip=()):
    """{relative path: what it is} with lstat; files hashed, so any change shows."""
    out = {}
    if not os.path.lexists(root):
        return None
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            names = sorted(os.listdir(os.path.join(root, rel)))
        except OSError as exc:
            out[rel + "/?"] = ("unreadable", str(exc))
            continue
        for name in names:
            path = f"{rel}/{name}" if rel else name
            if not rel and name in skip:
                continue
            full = os.path.join(root, path)
            st = os.lstat(full)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                out[path] = ("d", stat.S_IMODE(mode), st.st_mtime_ns)
                pending.append(path)
            elif stat.S_ISLNK(mode):
                out[path] = ("l", os.readlink(full))
            elif stat.S_ISREG(mode):
                with open(full, "rb") as f:
                    digest = hashlib.sha1(f.read()).hexdigest()
                out[path] = ("f", stat.S_IMODE(mode), st.st_size, st.st_mtime_ns, st.st_nlink,
                             digest)
            else:
                out[path] = ("special", mode)
    return out


def _walk_dest(dest):
    """Problems of an installed tree, and its manifest as the tool's marker writes it."""
    problems, manifest = [], {}
    real = os.path.realpath(dest)
    inodes = {}
    for rel, kind in sorted((snapshot(dest) or {}).items()):
        full = os.path.join(dest, rel)
        st = os.lstat(full)
        mode = st.st_mode
        if kind[0] == "special":
            what = ("a FIFO" if stat.S_ISFIFO(mode) else "a device"
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
                    if stat.S_ISSOCK(mode) else "a special file")
            problems.append(("dangerous file installed", f"{rel} is {what}"))
            continue
        if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            problems.append(("dangerous file installed", f"{rel} is setuid/setgid"))
        if stat.S_ISLNK(mode):
            target = os.path.realpath(full)
            if not (target == real or target.startswith(real + os.sep)):
                problems.append(("dangerous file installed",
                                 f"symlink {rel} -> {os.readlink(full)} leaves the destination"))
        if stat.S_ISREG(mode) and st.st_nlink > 1:
            inodes.setdefault(st.st_ino, []).append(rel)
            inodes[st.st_ino].append(st.st_nlink)
        if rel in MARKER_FILES:
            continue
        if stat.S_ISDIR(mode):
            manifest[rel] = ["d", stat.S_IMODE(mode)]
        elif stat.S_ISLNK(mode):
            manifest[rel] = ["l", os.readlink(full)]
        else:
            manifest[rel] = ["f", st.st_size, st.st_mtime_ns, stat.S_IMODE(mode)]
    for ino, items in inodes.items():
        names = [x for x in items if isinstance(x, str)]
        if len(names) < items[-1]:
            problems.append(("dangerous file installed",
                             f"{names[0]} is a hard link to a file outside the destination"))
    return problems, manifest


def _traceback_line(text):
    lines = text.splitlines()
    starts = [k for k, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not starts:
        return None
    for line in lines[starts[-1] + 1:]:
        if line and not line.startswith(" "):
            return line
    return lines[-1] if lines else ""


def _tool_message(text):
    found = [line for line in text.splitlines() if line.startswith("bootstrap_assets: error:")]
    return found[-1][len("bootstrap_assets: error:"):].strip() if found else text.strip()[-300:]


def normalise(text, limit=90):
    text = " ".join(text.split())
    if "GNU tar failed" in text:  # keep what tar says, not the member it says it of
        said = [part for part in text.split(": ")[1:] if part[:1].isupper()]
        text = "GNU tar: " + ": ".join(said) if said else text
        text = re.sub(r"'[^']*'", "Q", text)
        return re.sub(r"-?\d+", "N", text)[:limit]
    errno_text = re.search(r"\[Errno \d+\] [^:'\".]*", text)
    if errno_text:
        return errno_text.group(0).strip()
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "Q", text)
    text = re.sub(r"(/[^\s:,()]+)+", "P", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:limit]


class Runner:
    """Runs restores in forked children, at most `jobs` at once, each in its own slot."""

    def __init__(self, workdir, seeds, engines_, jobs, timeout):
        self.workdir, self.seeds, self.engines, self.jobs = workdir, seeds, engines_, jobs
        self.timeout = timeout
        self.cli = False  # True: exec `python3 bootstrap_assets.py ...` in each child
        self.templates = {}  # seed name -> folder holding a restore of it (dest "ours")
        self.exit_names = {cls.exit_code: cls.__name__ for cls in _exception_classes()}
        self.documented = {0, 130} | set(self.exit_names)

    # ---- one run ----------------------------------------------------------------------
    def _prepare(self, job, slot):
        base = os.path.join(self.workdir, f"s{slot}")
        _rmtree(base)
        archive_dir, scratch = os.path.join(base, "archive"), os.path.join(base, "scratch")
        outside = os.path.join(base, "outside")
        for folder in (archive_dir, scratch, outside, os.path.join(scratch, "bait", "sub")):
            os.makedirs(folder)
        for path, data in ((os.path.join(outside, "secret.txt"), b"outside\n"),
                           (os.path.join(scratch, "bait", "secret.txt"), b"bait\n"),
                           (os.path.join(scratch, "sibling.txt"), b"sibling\n")):
            with open(path, "wb") as f:
                f.write(data)
        os.symlink("bait", os.path.join(scratch, "bait-link"))
        if "files" in job:
            files = job["files"]
        else:
            files = materialise(self.seeds, job["mutant"], outside)
        ext = self.seeds[job["mutant"]["seed"]]["ext"] if job["mutant"]["seed"] in self.seeds \
            else job.get("ext", ".tar")
        archive = os.path.join(archive_dir, "assets" + ext)
        job["bytes"] = files
        if len(files) == 1 and files[0] is not None:
            _write(archive, files[0])
        else:
            for k, data in enumerate(files, 1):
                if data is not None:
                    _write(f"{archive}.part-{k:04d}", data)
        dest = os.path.join(scratch, DEST)
        state = job["mutant"]["dest_state"]
        template = self.templates.get(job["mutant"]["seed"]) or \
            next(iter(self.templates.values()), None)
        if state == "ours" and template is None:
            state = "empty"
        if state == "empty":
            os.mkdir(dest)
        elif state == "ours":
            shutil.copytree(template, dest, symlinks=True)
        job.update(base=base, archive=archive, dest=dest, scratch=scratch, outside=outside,
                   archive_dir=archive_dir, stderr_path=os.path.join(base, "stderr"),
                   state=state)
        job["before"] = {"beside the destination": snapshot(scratch, skip={DEST}),
                         "the archive's folder": snapshot(archive_dir),
                         "the bait folder beyond": snapshot(outside)}
        job["dest_before"] = snapshot(dest)

    def _spawn(self, job):
        argv = ["restore", "--archive", job["archive"], "--dest", job["dest"], "--quiet",
                "--engine", job["engine"], "--drive-mount", ""]
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run the command line, exit with its code
            code = 1
            try:
                os.close(read_end)
                os.setpgid(0, 0)
                for number in (signal.SIGINT, signal.SIGTERM):  # SIGPIPE stays ignored,
                    signal.signal(number, signal.SIG_DFL)  # as in any Python program
                devnull = os.open(os.devnull, os.O_RDWR)
                err = os.open(job["stderr_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.dup2(err, 2)
                os.chdir(job["base"])
                sys.argv = ["bootstrap_assets.py"] + argv
                if self.cli and not job.get("sabotage"):  # the real command line, exec'd
                    os.set_inheritable(write_end, True)  # its end tells the parent it ended
                    os.execv(sys.executable, [sys.executable, ba.__file__] + argv)
                try:
                    code = _sabotaged_main(job, argv) if job.get("sabotage") else ba.main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # what the interpreter would print, as it would
                    traceback.print_exc()
                    code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
        os.close(write_end)
        job["pid"], job["fd"], job["started"] = pid, read_end, time.monotonic()

    def run(self, jobs_iter, on_result, deadline=None, timeout=None):
        """Run each job of jobs_iter (dicts with mutant and engine); on_result(job) each."""
        timeout = timeout or self.timeout
        free = list(range(self.jobs))
        running = {}
        exhausted = False
        try:
            while True:
                while free and not exhausted:
                    if deadline is not None and time.monotonic() > deadline:
                        exhausted = True
                        break
                    job = next(jobs_iter, None)
                    if job is None:
                        exhausted = True
                        break
                    slot = free.pop()
                    job["slot"] = slot
                    self._prepare(job, slot)
                    self._spawn(job)
                    running[job["fd"]] = job
                if not running:
                    return
                now = time.monotonic()
                wait = max(0.0, min(j["started"] + timeout - now for j in running.values()))
                if any(j.get("eof") for j in running.values()):
                    wait = min(wait, 0.005)
                watched = [fd for fd, j in running.items() if not j.get("eof")]
                ready, _, _ = select.select(watched, [], [], wait)
                for fd in ready:
                    if not os.read(fd, 1):
                        running[fd]["eof"] = True  # the child (or what it exec'd) ended
                now = time.monotonic()
                for fd in list(running):
                    job = running[fd]
                    pid, status = (os.waitpid(job["pid"], os.WNOHANG) if job.get("eof")
                                   else (0, 0))
                    if pid:
                        job["status"] = status
                    elif now - job["started"] >= timeout:
                        _kill_group(job["pid"])
                        os.waitpid(job["pid"], 0)
                        job["status"] = None  # hung
                    else:
                        continue
                    os.close(fd)
                    del running[fd]
                    job["seconds"] = time.monotonic() - job["started"]
                    self._check(job, timeout)
                    _rmtree(job["base"])
                    free.append(job["slot"])
                    on_result(job)
        finally:
            for job in running.values():
                _kill_group(job["pid"])
                os.waitpid(job["pid"], 0)
                os.close(job["fd"])

    # ---- the checks, outside the tool ----------------------------------------------------
    def _check(self, job, timeout):
        failures = []
        job["expect"] = job.get("expect") or expectation(job["mutant"]["steps"])
        with open(job["stderr_path"], "rb") as f:
            err = f.read().decode("utf-8", "replace")
        job["stderr"] = err
        status = job["status"]
        code = None
        if status is None:
            failures.append(("hang", f"no exit within {timeout:g} s"))
        elif os.WIFSIGNALED(status):
            failures.append(("crash", f"killed by signal {os.WTERMSIG(status)}"))
        else:
            code = os.WEXITSTATUS(status)
        job["exit"] = code
        tb = _traceback_line(err)
        if tb is not None:
            failures.append(("traceback", normalise(tb, 120)))
        job["last_line"] = tb or (_tool_message(err).splitlines() or [""])[-1][:300]
        if status is not None:
            after = {"beside the destination": snapshot(job["scratch"], skip={DEST}),
                     "the archive's folder": snapshot(job["archive_dir"]),
                     "the bait folder beyond": snapshot(job["outside"])}
            prefix = f".{DEST}."
            for where, before in job["before"].items():
                now = after[where]
                changed = sorted(set(before) ^ set(now)) + sorted(
                    k for k in set(before) & set(now) if before[k] != now[k])
                leftovers = [k for k in changed if where == "beside the destination"
                             and k.split("/")[0].startswith(prefix)
                             and k not in before]
                others = [k for k in changed if k not in leftovers
                          and not (where == "beside the destination"
                                   and k.split("/")[0].startswith(prefix))]
                if others:
                    failures.append(("changed outside the destination",
                                     f"{where}: {', '.join(others[:3])}"))
                if leftovers:
                    tops = sorted({k.split("/")[0] for k in leftovers})
                    failures.append(("left a staging folder or lock file", ", ".join(
                        re.sub(r"staging-.*", "staging-*", t) for t in tops[:2])))
            if code == 0:
                failures += self._check_success(job)
            else:
                now = snapshot(job["dest"])
                if now != job["dest_before"]:
                    failures.append(("destination changed by a failed run",
                                     f"was {job['state']}, now "
                                     f"{'absent' if now is None else f'{len(now)} entries'}"))
        if code is not None and tb is None:
            failures += self._oracle(job, code, err)
        job["failures"] = failures

    def _check_success(self, job):
        dest = job["dest"]
        if not os.path.isdir(dest) or os.path.islink(dest):
            return [("incomplete tree after success", "the destination is not a folder")]
        problems, manifest = _walk_dest(dest)
        try:
            with open(os.path.join(dest, MARKER), encoding="utf-8") as f:
                recorded = json.load(f)["manifest"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return problems + [("incomplete tree after success", f"no readable marker ({exc})")]
        if recorded != manifest:
            missing = sorted(set(recorded) - set(manifest))
            extra = sorted(set(manifest) - set(recorded))
            differ = sorted(k for k in set(recorded) & set(manifest) if recorded[k] != manifest[k])
            problems.append(("incomplete tree after success",
                             f"marker vs tree: missing {missing[:2]}, extra {extra[:2]}, "
                             f"different {differ[:2]}"))
        if not job["mutant"]["steps"] and job["mutant"]["seed"] in self.seeds:
            problems += _compare_expected(dest, self.seeds[job["mutant"]["seed"]]["expected"])
        return problems

    def _oracle(self, job, code, err):
        expect = job["expect"]
        name = self.exit_names.get(code, "?")
        if code not in self.documented:
            return [("undocumented exit code", f"exit {code}")]
        if expect in ("seed", "restore"):
            if code != 0:
                return [("false refusal of a valid archive", f"exit {code} ({name})")]
            return []
        if code not in CLEAN_EXITS:
            what = {1: "a damaged archive reported as a write failure (exit 1)",
                    8: "a damaged archive reported as no space (exit 8)"}.get(
                code, f"exit {code} ({name}) on a healthy machine")
            return [(f"misclassified: {what}", normalise(_tool_message(err)))]
        if expect == "refuse" and code == 0:
            return [("hostile member accepted", "exit 0")]
        if expect == "odd" and code == 11:
            return [("misclassified: harmless values reported as unsupported (exit 11)",
                     normalise(_tool_message(err)))]
        if expect == "encrypted" and code != 0:
            message = _tool_message(err).lower()
            if "encrypted" not in message or "compression method" in message:
                return [("misclassified: encrypted zip not reported as encrypted",
                         f"exit {code} ({name}): {normalise(_tool_message(err), 70)}")]
        return []


def _compare_expected(dest, expected):
    problems = []
    found = {rel: kind for rel, kind in (snapshot(dest) or {}).items() if rel not in MARKER_FILES}
    for rel, want in expected.items():
        full = os.path.join(dest, rel)
        got = found.get(rel)
        if got is None:
            problems.append(("seed not restored faithfully", f"{rel} missing"))
            continue
        if want[0] == "d" and got[0] != "d":
            problems.append(("seed not restored faithfully", f"{rel} is not a folder"))
        elif want[0] == "l" and got != ("l", want[1]):
            problems.append(("seed not restored faithfully", f"{rel} is not the symlink"))
        elif want[0] == "f":
            with open(full, "rb") as f:
                data = f.read()
            if got[0] != "f" or data != want[1] or got[1] != want[2]:
                problems.append(("seed not restored faithfully", f"{rel} differs"))
        elif want[0] == "h":
            other = os.path.join(dest, want[1])
            if not os.path.exists(other) or not os.path.samefile(full, other):
                problems.append(("seed not restored faithfully", f"{rel} is not a hard link"))
    for rel in found:
        if rel not in expected:
            problems.append(("seed not restored faithfully", f"unexpected {rel}"))
    return problems[:3]


def _exception_classes():
    base = ba.BootstrapError
    return [obj for obj in vars(ba).values()
            if isinstance(obj, type) and issubclass(obj, base) and "exit_code" in vars(obj)]


def _kill_group(pid):
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            return
        except (ProcessLookupError, PermissionError):
            continue


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _rmtree(path):
    def retry(function, failed, _):
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
        except OSError:
            pass
        try:
            function(failed)
        except OSError:
            pass
    if os.path.lexists(path):
        try:
            if sys.version_info >= (3, 12):
                shutil.rmtree(path, onexc=retry)  # novm: onerror is deprecated from 3.12
            else:
                shutil.rmtree(path, onerror=retry)
        except RecursionError:  # a tree deeper than shutil (before 3.12) can walk
            subprocess.run(["rm", "-rf", "--", path], check=False)


# ================================================================================ sweep ==
def sweep(seeds):
    """Mutants that apply every catalogued value once (every typeflag, every size, mtime and
    pax value, every zip change, every name and link target), one mutation each on a small
    seed: whatever --seed draws, each run covers them all."""
    out = []

    def add(seed, step):
        if seed in seeds:
            out.append({"seed": seed, "steps": [step], "dest_state": "absent",
                        "index": f"sweep:{len(out)}", "sweep": True})

    for field, catalogue in (("size", SIZE_VALUES), ("mtime", MTIME_VALUES),
                             ("mode", MODE_VALUES), ("uid", ID_VALUES)):
        for value, expect in catalogue:
            add("tiny.tar", {"op": "field", "p": {"i": 0, "field": field, "value": value},
                             "expect": expect,
                             "desc": f"header field {field} = {_show(value)}, checksum fixed"})
    for flag in range(256):
        value = bytes([flag])
        expect = ("hostile" if value in (b"3", b"4", b"6") else
                  "benign" if value in (b"0", b"\0", b"7") else "damaged")
        add("tiny.tar", {"op": "field", "p": {"i": 0, "field": "typeflag", "value": value},
                         "expect": expect, "desc": f"typeflag = {value!r}, checksum fixed"})
    for key, catalogue in PAX_VALUES.items():
        seed, i, kind = ("ustar.tar", 6, "symlink") if key == b"linkpath" else \
            ("tiny.tar", 0, "file")
        for value, expect in catalogue:
            add(seed, {"op": "pax", "p": {"i": i, "records": [(key, value)]},
                       "expect": _tag(expect, kind),
                       "desc": f"pax {key.decode()}={_show(value)} on a {kind}"})
    for raw in PAX_RAW:
        add("tiny.tar", {"op": "pax", "p": {"i": 0, "raw": raw}, "expect": "damaged",
                         "desc": f"malformed pax header {_show(raw)}"})
    for content, expect in DELETED_CONTENT:
        add("tiny.tar", {"op": "member", "p": {"kind": "insert", "j": 0, "members": [
            (DELETED, b"0", content, b"")]}, "expect": expect, "family": "deleted-list member",
            "desc": f"insert {DELETED.decode()} holding {_show(content)}"})
    for how in ("long", "field"):
        for value, expect in ([(v, "hostile") for v in HOSTILE_NAMES]
                              + [(v, "damaged") for v in ODD_NAMES]
                              + [(v, "benign") for v in BENIGN_NAMES]):
            if how == "field" and len(value) > 100:
                continue
            add("tiny.tar", {"op": "name", "p": {"i": 0, "value": value, "how": how},
                             "expect": expect, "desc": f"name = {_show(value)} (as {how})"})
    for value, expect in ([(v, "hostile") for v in HOSTILE_TARGETS]
                          + [(v, "damaged") for v in ODD_TARGETS]):
        add("tiny.tar", {"op": "link", "p": {"i": 0, "type": b"2", "value": value,
                                             "how": "pax"},
                         "expect": expect, "desc": f"made a symlink to {_show(value)}"})
    for desc, changes, expect in ZIP_FIELD_CHANGES:
        add("tiny.zip", {"op": "zipfield", "p": {"i": 0, "changes": dict(changes)},
                         "expect": "benign" if expect == "benign-file" else expect,
                         "desc": desc})
    add("tiny.zip", {"op": "zipstruct", "p": {"i": 0, "j": 0, "kind": "plain-writestr"},
                     "expect": "benign", "desc": "what zipfile.ZipFile.writestr(name, data) "
                                                 "writes (mode 0o600, no type bits)"})
    for value, expect in ([(v, "hostile") for v in HOSTILE_NAMES]
                          + [(v, "damaged") for v in ODD_NAMES]):
        add("tiny.zip", {"op": "zipname", "p": {"i": 0, "value": value, "link": None},
                         "expect": expect, "desc": f"name = {_show(value)}"})
    for value, expect in ([(v, "hostile") for v in HOSTILE_TARGETS]
                          + [(v, "damaged") for v in ODD_TARGETS]):
        add("tiny.zip", {"op": "zipname", "p": {"i": 0, "value": None, "link": value},
                         "expect": expect, "desc": f"made a symlink to {_show(value)}"})
    for kind in ("flip", "count", "size", "offset", "comment-length", "cut-cd", "no-eocd",
                 "entry-offset", "entry-name-length", "entry-extra-length", "trailing"):
        add("assets.zip", {"op": "zipcd", "p": {"seed": 0, "kind": kind, "n": 2},
                           "expect": "odd" if kind == "trailing" else "damaged",
                           "desc": f"zip central directory: {kind}"})
    for name in sorted(seeds):
        if seeds[name]["fmt"] not in ("tar", "zip"):
            add(name, {"op": "multistream", "p": {"cuts": [0.5]}, "expect": "benign",
                       "desc": f"compressed as 2 concatenated {seeds[name]['fmt']} streams"})
        add(name, {"op": "parts", "p": {"cuts": [0.3, 0.6]}, "expect": "benign",
                   "desc": "delivered as 3 parts ARCHIVE.part-NNNN"})
    return out


# ============================================================================ self-test ==
# Each sabotage makes the child misbehave in one way the checks must catch: a fuzzer that
# cannot be fooled proves, on every run, that each of its checks fires.
SABOTAGES = [
    # (name, mutant kind, the failure class it must produce)
    ("hang", "seed", "hang"),
    ("crash", "seed", "crash"),
    ("traceback", "seed", "traceback"),
    ("undocumented exit", "seed", "undocumented exit code"),
    ("write into the bait", "seed", "changed outside the destination"),
    ("change the archive", "damaged", "changed outside the destination"),
    ("write beyond", "damaged", "changed outside the destination"),
    ("leave a staging folder", "damaged", "left a staging folder or lock file"),
    ("leave the lock file", "seed", "left a staging folder or lock file"),
    ("install a FIFO", "seed", "dangerous file installed"),
    ("install a setuid file", "seed", "dangerous file installed"),
    ("install an escaping link", "seed", "dangerous file installed"),
    ("hard-link a bait file", "seed", "dangerous file installed"),
    ("drop a file after success", "seed", "incomplete tree after success"),
    ("damage the destination on failure", "damaged", "destination changed by a failed run"),
    ("misclassify as a write failure", "damaged",
     "misclassified: a damaged archive reported as a write failure (exit 1)"),
    ("misclassify as no space", "damaged",
     "misclassified: a damaged archive reported as no space (exit 8)"),
    ("refuse a valid archive", "seed", "false refusal of a valid archive"),
    ("accept a hostile member", "hostile", "hostile member accepted"),
]


def _sabotaged_main(job, argv):
    kind = job["sabotage"]
    dest, scratch = job["dest"], job["scratch"]
    if kind == "hang":
        time.sleep(3600)
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "traceback":
        raise ValueError("sabotage: an uncaught error")
    if kind == "undocumented exit":
        return 99
    code = ba.main(argv)
    if kind == "write into the bait":
        _write(os.path.join(scratch, "bait", "pwned"), b"x")
    elif kind == "change the archive":
        with open(job["archive"], "ab") as f:
            f.write(b"x")
    elif kind == "write beyond":
        os.unlink(os.path.join(job["outside"], "secret.txt"))
    elif kind == "leave a staging folder":
        os.mkdir(os.path.join(scratch, f".{DEST}.staging-1-sabotage"))
    elif kind == "leave the lock file":
        _write(os.path.join(scratch, f".{DEST}.lock"), b"")
    elif kind == "install a FIFO":
        os.mkfifo(os.path.join(dest, "fifo"))
    elif kind == "install a setuid file":
        os.chmod(os.path.join(dest, "a.txt"), 0o4755)
    elif kind == "install an escaping link":
        os.symlink("../bait", os.path.join(dest, "out"))
    elif kind == "hard-link a bait file":
        os.link(os.path.join(scratch, "bait", "secret.txt"), os.path.join(dest, "hl"))
    elif kind == "drop a file after success":
        os.unlink(os.path.join(dest, "a.txt"))
    elif kind == "damage the destination on failure":
        os.unlink(os.path.join(dest, "a.txt"))
    elif kind == "misclassify as a write failure":
        return 1
    elif kind == "misclassify as no space":
        return 8
    elif kind == "refuse a valid archive":
        return 6
    elif kind == "accept a hostile member":
        os.mkdir(dest)
        _write(os.path.join(dest, MARKER), json.dumps({"manifest": {}}).encode())
        return 0
    return code


def self_test(runner):
    """[(sabotage, expected class, caught?)]: each sabotaged run must fail as expected."""
    mutants = {
        "seed": {"seed": "tiny.tar", "steps": [], "dest_state": "absent"},
        "damaged": {"seed": "tiny.tar", "dest_state": "ours", "steps": [
            {"op": "truncate", "p": {"seed": 0, "kind": "empty"}, "expect": "damaged",
             "desc": "tar truncated: empty"}]},
        "hostile": {"seed": "tiny.tar", "dest_state": "absent", "steps": [
            {"op": "name", "p": {"i": 0, "value": b"../pwned", "how": "field"},
             "expect": "hostile", "desc": "member 0: name = b'../pwned'"}]},
    }
    results = []

    def jobs():
        for name, kind, _ in SABOTAGES:
            mutant = dict(copy.deepcopy(mutants[kind]), index=f"self-test:{name}")
            yield {"mutant": mutant, "engine": runner.engines[0], "sabotage": name}
    runner.run(jobs(), results.append, timeout=min(runner.timeout, 2.0))
    for i, job in enumerate(results):  # one that only timed out on a busy machine: again
        want = next(c for n, _, c in SABOTAGES if n == job["sabotage"])
        if want != "hang" and any(c == "hang" for c, _ in job["failures"]):
            again = []
            runner.run(iter([{k: job[k] for k in ("mutant", "engine", "sabotage")}]),
                       again.append, timeout=max(runner.timeout, 2.0) * 10)
            results[i] = again[0] if again else job
    caught = []
    for job in results:
        want = next(c for n, _, c in SABOTAGES if n == job["sabotage"])
        caught.append((job["sabotage"], want, any(c == want for c, _ in job["failures"])))
    return caught


# ========================================================================== minimising ==
def signature(job):
    return job["failures"][0] if job["failures"] else None


def minimise(runner, job, budget_end, max_runs, timeout):
    """A smaller recipe that still fails the same way (same first failure class)."""
    want = signature(job)
    mutant = copy.deepcopy(job["mutant"])
    runs = [0]

    def fails(candidate):
        if runs[0] >= max_runs or time.monotonic() > budget_end:
            return False
        runs[0] += 1
        result = []
        runner.run(iter([{"mutant": candidate, "engine": job["engine"]}]), result.append,
                   timeout=timeout)
        got = signature(result[0]) if result else None
        if got is None or got[0] != want[0]:
            return False
        # a traceback or a misclassification must keep its cause; other classes their class
        return got[1] == want[1] if want[0].startswith(("traceback", "misclassified")) else True

    # 1. drop steps, last first
    for k in reversed(range(len(mutant["steps"]))):
        candidate = copy.deepcopy(mutant)
        del candidate["steps"][k]
        if candidate["steps"] and fails(candidate):
            mutant = candidate
    # 2. the destination absent, if it makes no difference
    if mutant["dest_state"] != "absent":
        candidate = dict(copy.deepcopy(mutant), dest_state="absent")
        if fails(candidate):
            mutant = candidate
    # 3. drop members (tar) or entries (zip) the failure does not need
    model = seed_model(runner.seeds[mutant["seed"]])
    ctx = {"outside": "/x", "fmt": runner.seeds[mutant["seed"]]["fmt"]}
    for s in mutant["steps"]:
        if OPS[s["op"]][0] == "model":
            OPS[s["op"]][2](model, s["p"], ctx)
    count = len(model.get("members", model.get("entries", [])))
    keep = list(range(count))
    touched = sorted({s["p"]["i"] % max(count, 1) for s in mutant["steps"] if "i" in s["p"]})

    def with_keep(indices):
        candidate = copy.deepcopy(mutant)
        # dropping members may break the archive (a hard link's target, a folder): the
        # oracle then demands no more than of any damaged archive, so a failure that depends
        # on what it demands (a false refusal, a hostile member accepted) is not "kept"
        candidate["steps"].append({"op": "keep", "p": {"keep": list(indices)},
                                   "expect": "damaged", "desc": "(minimised: other members "
                                                                "dropped)"})
        return candidate

    if count > 1:
        if touched and len(touched) < count and fails(with_keep(touched)):
            keep = touched
        for k in list(keep):
            if len(keep) <= 1:
                break
            trial = [x for x in keep if x != k]
            if fails(with_keep(trial)):
                keep = trial
        if len(keep) < count:
            mutant = with_keep(keep)
    return mutant, runs[0]


# ============================================================================ reporting ==
SHORT_CLASSES = {"misclassified: a damaged archive reported as a write failure (exit 1)":
                 "exit-1", "misclassified: a damaged archive reported as no space (exit 8)":
                 "exit-8", "misclassified: encrypted zip not reported as encrypted": "encrypted",
                 "false refusal of a valid archive": "false-refusal"}


def _slug(cls, detail=""):
    text = SHORT_CLASSES.get(cls, cls) + " " + detail
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-")


def core(desc):
    """A step's description without the member it was applied to."""
    return re.sub(r"^(?:member|zip entry) \d+ \(.*?\)( made)?:? ", lambda m: "made " if m.group(1)
                  else "", desc)


def describe(mutant):
    parts = [f"seed {mutant['seed']}"]
    for s in mutant["steps"]:
        if s["op"] == "keep":
            parts.append(f"only members {s['p']['keep']} kept")
        else:
            parts.append(s["desc"])
    if mutant["dest_state"] != "absent":
        parts.append(f"destination {mutant['dest_state']} before")
    return "; ".join(parts)


def table(rows, headers):
    widths = [max(len(str(r[k])) for r in rows + [headers]) for k in range(len(headers))]
    widths[-1] = min(widths[-1], 200)
    numeric = [all(isinstance(r[k], int) or r[k] == "" for r in rows)
               for k in range(len(headers))]
    line = "  ".join(f"{{:{'>' if numeric[k] else '<'}{w}}}" for k, w in enumerate(widths))
    out = [line.format(*headers), line.format(*["-" * w for w in widths])]
    out += [line.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(out)


def save_case(directory, number, job, mutant, minimised_runs, fuzz_seed, seeds):
    cls, detail = signature(job)
    name = f"{number:02d}-{_slug(cls, detail)}"
    folder = os.path.join(directory, name)
    _rmtree(folder)
    os.makedirs(folder)
    files = job["bytes"]
    ext = seeds[mutant["seed"]]["ext"]
    written = []
    if len(files) == 1 and files[0] is not None:
        written.append("assets" + ext)
        _write(os.path.join(folder, written[-1]), files[0])
    else:
        for k, data in enumerate(files, 1):
            if data is not None:
                written.append(f"assets{ext}.part-{k:04d}")
                _write(os.path.join(folder, written[-1]), data)
    record = {"case": name, "class": cls, "detail": detail, "engine": job["engine"],
              "exit": job["exit"], "last_line": job["last_line"], "expect": job["expect"],
              "dest_state": mutant["dest_state"], "seed": mutant["seed"],
              "steps": [s["desc"] for s in mutant["steps"]], "fuzz_seed": fuzz_seed,
              "mutant": job["mutant"].get("index"), "minimise_runs": minimised_runs,
              "files": written, "ext": ext,
              "sha256": [hashlib.sha256(d).hexdigest() for d in files if d is not None]}
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(record, f, indent=1)
    with open(os.path.join(directory, "failures.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    return name


# ================================================================================= main ==
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="mutants to run (1000)")
    parser.add_argument("--seed", default="1", help="the fuzz seed: same seed, same mutants")
    parser.add_argument("--start", type=int, default=0, help="first mutant number (0)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop starting mutants after this long (minimising included)")
    parser.add_argument("--engines", default=None,
                        help="comma-separated: python,tar (default: all this machine has)")
    parser.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                        help="a run still going after this long is a hang (20)")
    parser.add_argument("--minimise-timeout", type=float, default=3.0, metavar="SECONDS",
                        help="the hang timeout while minimising (3)")
    parser.add_argument("--minimise-time", type=float, default=120.0, metavar="SECONDS",
                        help="time for minimising all failure classes (120)")
    parser.add_argument("--minimise-runs", type=int, default=40,
                        help="runs to minimise one failure class (40)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (2)")
    parser.add_argument("--save-failures", metavar="DIR",
                        help="save each failure class's minimised mutant here")
    parser.add_argument("--workdir", help="scratch folder (default: a new one under $TMPDIR)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--tool", metavar="PATH",
                        help="the bootstrap_assets.py to fuzz (default: this working tree's)")
    parser.add_argument("--cli", action="store_true",
                        help="exec `python3 bootstrap_assets.py restore ...` in each child "
                             "instead of calling main() in-process (slower: ~0.1 s a run)")
    parser.add_argument("--no-sweep", action="store_true",
                        help="skip the mutants that apply every catalogued value once")
    parser.add_argument("--no-self-test", action="store_true",
                        help="skip the sabotaged runs that prove each check fires")
    parser.add_argument("--show", type=int, metavar="N", help="run mutant N alone, verbosely")
    parser.add_argument("--replay", metavar="DIR", help="re-run the cases saved in DIR")
    return parser.parse_args(argv)


def _import_tool(path=None):
    """bootstrap_assets from path (default: the working tree's), whatever state it is in."""
    global ba
    for name in ("BOOTSTRAP_ASSETS_ARCHIVE", "BOOTSTRAP_ASSETS_DEST",
                 "BOOTSTRAP_ASSETS_DRIVE_MOUNT", "BOOTSTRAP_ASSETS_DRIVE_CACHE"):
        os.environ.pop(name, None)
    import importlib.util
    path = os.path.abspath(path or os.path.join(REPO, "bootstrap_assets.py"))
    spec = importlib.util.spec_from_file_location("bootstrap_assets", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bootstrap_assets"] = module
    spec.loader.exec_module(module)
    ba = module
    return ba


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _import_tool(args.tool)
    except Exception:  # a syntax error mid-edit, ...: say so, as one line
        print(f"fuzz: cannot import {args.tool or os.path.join(REPO, 'bootstrap_assets.py')}: "
              f"{traceback.format_exc().strip().splitlines()[-1]}", file=sys.stderr)
        return 2
    available = ba.available_engines()
    engines_ = args.engines.split(",") if args.engines else available
    for engine in engines_:
        if engine not in available:
            print(f"fuzz: engine {engine!r} is not available here ({', '.join(available)})",
                  file=sys.stderr)
            return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="bootstrap-assets-fuzz-")
    os.makedirs(workdir, exist_ok=True)
    seeds = build_seeds()
    runner = Runner(workdir, seeds, engines_, max(1, args.jobs), args.timeout)
    runner.cli = args.cli
    try:
        if args.replay:
            return replay(runner, args)
        return fuzz(runner, args, seeds, engines_)
    finally:
        if not args.keep_workdir:
            _rmtree(workdir)


def _prepare_templates(runner, seeds, engines_):
    """Run every seed with every engine (each must restore exactly), and keep one restore of
    each as the earlier restore a mutant may find at its destination."""
    results = []

    def jobs():
        for name in sorted(seeds):
            for engine in engines_:
                yield {"mutant": {"seed": name, "steps": [], "dest_state": "absent",
                                  "index": f"seed:{name}"}, "engine": engine}
    # each seed's first faithful restore is copied before its slot is cleared
    original_check = runner._check_success

    def check_and_copy(job):
        problems = original_check(job)
        name = job["mutant"]["seed"]
        target = os.path.join(runner.workdir, "templates", name)
        if not problems and not os.path.exists(target):
            shutil.copytree(job["dest"], target, symlinks=True)
        return problems
    runner._check_success = check_and_copy
    try:
        runner.run(jobs(), results.append)
    finally:
        runner._check_success = original_check
    for name in seeds:
        target = os.path.join(runner.workdir, "templates", name)
        if os.path.isdir(target):
            runner.templates[name] = target
    return results


def fuzz(runner, args, seeds, engines_):
    started = time.monotonic()
    limit_end = started + args.time_limit if args.time_limit else None
    if args.show is not None:
        return show(runner, args, seeds, engines_)
    print(f"fuzz: bootstrap_assets at {ba.__file__}; seed {args.seed}; {args.count} mutants "
          f"from #{args.start} x engines {','.join(engines_)}; {len(seeds)} seeds "
          f"({', '.join(sorted(seeds))}); timeout {args.timeout:g} s; {runner.jobs} at once",
          flush=True)
    results = _prepare_templates(runner, seeds, engines_)
    if not args.no_self_test:
        caught = self_test(runner)
        missed = [(n, c) for n, c, ok in caught if not ok]
        print(f"fuzz: self-test: {len(caught)} sabotaged runs, {len(caught) - len(missed)} "
              f"caught by the checks", flush=True)
        for name, want in missed:
            print(f"fuzz: self-test: sabotage {name!r} was NOT reported as {want!r}")
        if missed or len(caught) != len(SABOTAGES):
            print("fuzz: the checks are broken; not fuzzing with them")
            return 1
    seed_failures = [j for j in results if j["failures"]]
    for job in seed_failures:
        print(f"  seed {job['mutant']['seed']} [{job['engine']}] FAILED: {job['failures']}")
    reserve = min(args.minimise_time, 0.25 * args.time_limit) if args.time_limit else 0
    fuzz_end = limit_end - reserve if limit_end else None
    mutants_done = set()
    progress = {"next": started + 10}

    def jobs():
        for mutant in ([] if args.no_sweep else sweep(seeds)):
            for engine in engines_:
                yield {"mutant": mutant, "engine": engine}
        for index in range(args.start, args.start + args.count):
            mutant = generate(seeds, args.seed, index)
            for engine in engines_:
                yield {"mutant": mutant, "engine": engine}

    def on_result(job):
        results.append(job)
        if isinstance(job["mutant"]["index"], int):
            mutants_done.add(job["mutant"]["index"])
        if time.monotonic() > progress["next"]:
            progress["next"] = time.monotonic() + 10
            failed = sum(1 for j in results if j["failures"])
            print(f"  ... {len(mutants_done)} mutants, {len(results)} runs, {failed} failed, "
                  f"{time.monotonic() - started:.0f} s", flush=True)

    runner.run(jobs(), on_result, deadline=fuzz_end)
    # A run that timed out while the machine was busy (a CI neighbour, a slow disk) runs
    # again with ten times the time: only one that still does not end is a hang.
    for i, job in enumerate(results):
        if any(kind == "hang" for kind, _ in job["failures"]):
            again = []
            runner.run(iter([{"mutant": job["mutant"], "engine": job["engine"]}]),
                       again.append, timeout=args.timeout * 10)
            if again and not any(kind == "hang" for kind, _ in again[0]["failures"]):
                print(f"  ... a run that took over {args.timeout:g} s ended in "
                      f"{again[0]['seconds']:.2f} s when run again: the machine was busy",
                      flush=True)
                results[i] = again[0]
    fuzz_seconds = time.monotonic() - started
    count_done = len(mutants_done)
    swept = len({j["mutant"]["index"] for j in results if j["mutant"].get("sweep")})
    # minimise the first run of each failure class
    firsts = {}
    for job in results:
        if job["failures"]:
            firsts.setdefault(signature(job), job)
    budget_end = time.monotonic() + args.minimise_time
    if limit_end:
        budget_end = min(budget_end, limit_end)
    examples, others = {}, {}
    if args.save_failures:
        os.makedirs(args.save_failures, exist_ok=True)
        for name in os.listdir(args.save_failures):  # the cases of an earlier run
            if re.match(r"\d\d+-", name) and os.path.exists(
                    os.path.join(args.save_failures, name, "case.json")):
                _rmtree(os.path.join(args.save_failures, name))
        open(os.path.join(args.save_failures, "failures.jsonl"), "w").close()
    number = 0
    for sig, job in sorted(firsts.items(), key=lambda kv: (kv[0][0] != "hang", kv[0])):
        mutant, runs = job["mutant"], 0
        if job["mutant"]["steps"] and time.monotonic() < budget_end:
            mutant, runs = minimise(runner, job, budget_end, args.minimise_runs,
                                    min(args.timeout, args.minimise_timeout))
        # run the (minimised) mutant once more to record its bytes and outcome
        final = []
        runner.run(iter([{"mutant": mutant, "engine": job["engine"]}]), final.append,
                   timeout=min(args.timeout, args.minimise_timeout) if runs else args.timeout)
        final = final[0] if final and signature(final[0]) and \
            signature(final[0])[0] == sig[0] else None
        if final is None:  # minimising lost it (flaky?): keep the original
            mutant = job["mutant"]
            again = []
            runner.run(iter([{"mutant": mutant, "engine": job["engine"]}]), again.append)
            final = again[0] if again and again[0]["failures"] else job
        number += 1
        saved = None
        if args.save_failures and final.get("bytes") is not None:
            saved = save_case(args.save_failures, number, final, mutant, runs, args.seed, seeds)
        examples[sig] = (mutant, final, saved, runs)
    for job in results:  # the other single mutations that failed the same way
        sig = signature(job)
        if sig in examples and len(job["mutant"]["steps"]) == 1:
            others.setdefault(sig, {}).setdefault(core(job["mutant"]["steps"][0]["desc"]),
                                                  job["mutant"]["seed"])
    if args.save_failures:
        with open(os.path.join(args.save_failures, "all-failures.jsonl"), "w") as f:
            for job in results:
                if job["failures"]:
                    f.write(json.dumps({"mutant": job["mutant"]["index"], "engine": job["engine"],
                                        "failures": job["failures"], "exit": job["exit"],
                                        "recipe": describe(job["mutant"])}) + "\n")
    total = time.monotonic() - started
    report(results, examples, others, args, engines_, count_done, swept, fuzz_seconds, total)
    return 1 if any(j["failures"] for j in results) else 0


def _format_of(seed_name):
    """tar, tar.gz, ..., zip: what a seed is, by its name (ustar.tar.gz -> tar.gz)."""
    return seed_name.split(".", 1)[1] if "." in seed_name else seed_name


def report(results, examples, others, args, engines_, count_done, swept, fuzz_seconds, total):
    """The oracle's demands, any failures in detail, then the one table of cases (what was
    mutated, in which formats: runs, how many ended in the promised state) and the line
    `fuzz: N passed, M failed`."""
    by_case = {}
    for job in results:
        row = by_case.setdefault(family(job["mutant"]), [0, 0, set()])
        row[0] += 1
        row[1] += not job["failures"]
        row[2].add(_format_of(job["mutant"]["seed"]))
    order = ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip"]
    rows = [(case, " ".join(sorted(fmts, key=lambda f: (order + [f]).index(f))), n, ok, n - ok)
            for case, (n, ok, fmts) in sorted(by_case.items())]
    runs = len(results)
    promised = sum(1 for j in results if not j["failures"])
    rows.append(("total", "", runs, promised, runs - promised))
    demanded = {}
    for job in results:
        row = demanded.setdefault(job.get("expect") or "?", [0, 0])
        row[0] += 1
        row[1] += not job["failures"]
    meaning = {"seed": "an unmutated seed: restored exactly", "restore": "still valid: restored",
               "refuse": "one hostile member: refused (6/7)",
               "encrypted": "encrypted: refused, saying so",
               "odd": "odd but harmless: restored or refused (0/6/7)",
               "any": "damaged: 0/6/7/11, never 1 or 8"}
    oracle_rows = [(f"{k}: {meaning.get(k, '')}", n, ok, n - ok)
                   for k, (n, ok) in sorted(demanded.items())]
    print()
    print(f"fuzz: seed {args.seed}: ({count_done} random + {swept} sweep mutants) x "
          f"{len(engines_)} engine(s) + seeds = {runs} runs in {fuzz_seconds:.1f} s; "
          f"{total:.1f} s with minimising")
    if count_done < args.count:
        print(f"fuzz: stopped at the time limit after {count_done} of {args.count} mutants")
    print()
    print(table(oracle_rows, ("what the oracle demanded", "runs", "promised state", "failed")))
    classes = {}
    for job in results:
        for cls, detail in job["failures"]:
            entry = classes.setdefault(cls, {"runs": 0, "mutants": set(), "engines": set(),
                                             "details": {}})
            entry["runs"] += 1
            entry["mutants"].add(job["mutant"]["index"])
            entry["engines"].add(job["engine"])
            entry["details"][detail] = entry["details"].get(detail, 0) + 1
    if classes:
        print()
        failure_rows = []
        for cls, entry in sorted(classes.items()):
            failure_rows.append((cls, entry["runs"], len(entry["mutants"]),
                                 ",".join(sorted(entry["engines"])), ""))
            for detail, n in sorted(entry["details"].items(), key=lambda kv: -kv[1]):
                failure_rows.append(("", n, "", "", detail[:110]))
        print(table(failure_rows, ("failure class", "runs", "mutants", "engines", "cause")))
        print()
        print("failure classes in detail (each with its minimised example):")
        for sig, (mutant, final, saved, tries) in sorted(examples.items()):
            count = classes.get(sig[0], {}).get("details", {}).get(sig[1], 0)
            print(f"\n* {sig[0]}: {sig[1]}  ({count} run(s))")
            print(f"  mutated: {describe(mutant)}")
            print(f"  engine {final['engine']}, expected {final['expect']}: "
                  f"{'exit ' + str(final['exit']) if final['exit'] is not None else 'no exit'}"
                  f"; last line: {final['last_line'][:200]}")
            if saved:
                print(f"  saved: {os.path.join(args.save_failures, saved)} "
                      f"(minimised in {tries} runs)")
            alike = [f"{d} [{seed}]" for d, seed in others.get(sig, {}).items()
                     if d != core(mutant["steps"][0]["desc"] if mutant["steps"] else "")]
            for line in alike[:4]:
                print(f"  also: {line[:150]}")
            if len(alike) > 4:
                print(f"  also: {len(alike) - 4} more single mutations")
    print()
    print(table(rows, ("case (what was mutated)", "formats", "runs", "promised state",
                       "failed")))
    print()
    print(f"fuzz: {promised} passed, {runs - promised} failed")


def show(runner, args, seeds, engines_):
    _prepare_templates(runner, seeds, engines_)
    mutant = generate(seeds, args.seed, args.show)
    print(f"mutant {args.show} (seed {args.seed}): {describe(mutant)}")
    print(f"expectation: {expectation(mutant['steps'])}")
    out = []
    runner.run((({"mutant": mutant, "engine": e}) for e in engines_), out.append)
    for job in out:
        print(f"[{job['engine']}] exit {job['exit']} in {job['seconds']:.2f} s; "
              f"failures: {job['failures'] or 'none'}")
        print("  stderr: " + job["stderr"].strip()[-2000:].replace("\n", "\n  "))
    return 1 if any(j["failures"] for j in out) else 0


def replay(runner, args):
    _prepare_templates(runner, runner.seeds, runner.engines)
    path = os.path.join(args.replay, "failures.jsonl")
    with open(path) as f:
        cases = [json.loads(line) for line in f if line.strip()]
    results = []
    for case in cases:
        files = []
        folder = os.path.join(args.replay, case["case"])
        for name in case["files"]:
            with open(os.path.join(folder, name), "rb") as f:
                files.append(f.read())
        if any(".part-" in name for name in case["files"]):
            numbers = [int(n.rsplit("-", 1)[1]) for n in case["files"]]
            by_number = dict(zip(numbers, files))
            files = [by_number.get(k) for k in range(1, max(numbers) + 1)]
        job = {"mutant": {"seed": case["case"], "steps": [], "dest_state": case["dest_state"],
                          "index": case["case"]},
               "engine": case["engine"], "files": files, "ext": case.get("ext", ".tar"),
               "expect": case["expect"]}
        runner.run(iter([job]), results.append)
    for job in results:
        verdict = "promised state" if not job["failures"] else \
            "; ".join(f"{c}: {d}" for c, d in job["failures"])
        print(f"{job['mutant']['seed']} [{job['engine']}] exit {job['exit']}: {verdict}")
    failed = sum(1 for j in results if j["failures"])
    print(f"fuzz replay: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
