"""Shared by the tests of the index and the progressive restore (index, priority order,
progressive and background restore): a small `_assets`-like tree with top-level entries of
clearly different sizes, and tools that read a saved archive the way an outside reader
would, without the module's own code:

    stored(archive)          the stored bytes (one file, or its parts ARCHIVE.part-NNNN joined)
    index_lines(archive)     the sidecar's `# index <archive sha> <index sha> <offset> <length>`
    index_of(archive)        (that line, the index's bytes read at its offset)
    tar_stream(data)         the uncompressed tar stream of stored bytes (.tar or .tar.gz)
    restart_points(data)     the independent restart points of a .tar.gz, found by scanning
    tamper_index(archive)    one hex digit of the index changed, the sidecar left alone
    damage_member(archive, name)  bytes in the middle of a member's data changed (plain tar)
    resign(archive)          the sidecar made to vouch for the archive as it now is
"""
import gzip
import hashlib
import io
import json
import os
import random
import re
import tarfile
import zlib

MiB = 1 << 20
MARKER = ".bootstrap_assets.json"
TOP = "_assets"

# top-level entry -> total size: config < tokenizer < weights < images (the default order)
GROUPS = ("config.yaml", "tokenizer", "weights", "images")


def _random(n, seed):
    return random.Random(seed).getrandbits(8 * n).to_bytes(n, "little") if n else b""


def _text(n, seed):
    """Compressible text (a tokenizer's vocabulary)."""
    r = random.Random(seed)
    words = ["tok%d" % r.randrange(5000) for _ in range(n // 6 + 1)]
    return json.dumps({"vocab": words}).encode()[:n]


def make_tree(root, seed=17, images=(4, 25, 40_000), weights=(2, 700_000), links=True):
    """A small mixed `_assets` tree; returns {relpath: bytes} of its regular files.

    config.yaml (tens of bytes), tokenizer/ (~60 KB, compressible), weights/ (2 x 700 KB,
    random), images/class_N/img_NNN.jpg (4 x 25 x 40 KB, random), an empty folder, and
    (links=True) two relative symlinks."""
    files = {"config.yaml": b"model: tiny\nlr: 0.001\nepochs: 3\n"}
    files["tokenizer/vocab.json"] = _text(40_000, seed)
    files["tokenizer/merges.txt"] = _text(20_000, seed + 1)
    for i in range(weights[0]):
        files["weights/model-%05d.bin" % i] = _random(weights[1], seed + 10 + i)
    classes, per_class, size = images
    for c in range(classes):
        for i in range(per_class):
            files["images/class_%02d/img_%03d.jpg" % (c, i)] = \
                _random(size + 97 * i, seed * 1000 + c * 100 + i)
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(root, "images", "empty_class"), exist_ok=True)
    if links:
        os.symlink("config.yaml", os.path.join(root, "config_link.yaml"))
        os.symlink("class_00/img_000.jpg", os.path.join(root, "images", "first.jpg"))
    return files


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


# -- the stored archive ----------------------------------------------------------------
def part_files(archive):
    folder, base = os.path.split(archive)
    rx = re.compile(re.escape(base) + r"\.part-(\d{4})$")
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if rx.match(n)]


def stored(archive):
    """The archive's stored bytes: the file, or its parts joined."""
    if os.path.exists(archive):
        with open(archive, "rb") as f:
            return f.read()
    parts = part_files(archive)
    if not parts:
        raise FileNotFoundError(archive)
    out = bytearray()
    for p in parts:
        with open(p, "rb") as f:
            out += f.read()
    return bytes(out)


def is_gzip(data):
    return data[:2] == b"\x1f\x8b"


def tar_stream(data):
    """The uncompressed stream (tar + whatever follows its end blocks) of stored bytes."""
    if is_gzip(data):
        d = zlib.decompressobj(31)
        out = d.decompress(data)
        if not d.eof:
            raise ValueError("gzip stream does not end")
        return out
    return data


def gzip_members(data):
    """How many gzip members the bytes hold (and that nothing else follows them)."""
    count, rest = 0, data
    while rest:
        d = zlib.decompressobj(31)
        d.decompress(rest)
        if not d.eof:
            raise ValueError("a gzip member does not end")
        count += 1
        rest = d.unused_data
    return count


def sidecar_text(archive):
    with open(archive + ".sha256", encoding="utf-8") as f:
        return f.read()


def index_lines(archive):
    """[(archive sha, index sha, offset, length)] of the sidecar's `# index` lines."""
    out = []
    for line in sidecar_text(archive).splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[:2] == ["#", "index"]:
            out.append((fields[2], fields[3], int(fields[4]), int(fields[5])))
    return out


def index_line(archive, data=None):
    """The `# index` line of the archive file as stored now (matched by its sha256)."""
    digest = sha256(stored(archive) if data is None else data)
    lines = [ln for ln in index_lines(archive) if ln[0] == digest]
    if len(lines) != 1:
        raise AssertionError("%d `# index` lines for %s (sha256 %s) in its sidecar:\n%s"
                             % (len(lines), archive, digest, sidecar_text(archive)))
    return lines[0]


def read_index_at(data, offset, length):
    """`length` uncompressed bytes from the stored offset: raw for a tar, inflated from a
    restart point (raw deflate, no history) for a .tar.gz."""
    if is_gzip(data):
        d = zlib.decompressobj(-15)
        out = d.decompress(data[offset:], length)
        return out
    return data[offset:offset + length]


def index_of(archive):
    data = stored(archive)
    line = index_line(archive, data)
    return line, read_index_at(data, line[2], line[3])


def restart_points(data):
    """[(compressed offset, uncompressed offset)] of the places in a one-member .tar.gz from
    which raw inflate (no history) reproduces the rest of the stream, each at a tar header:
    found by scanning for the empty stored block a Z_FULL_FLUSH / Z_SYNC_FLUSH leaves
    (00 00 ff ff), then checked by decompressing from there to the end."""
    full = tar_stream(data)
    head_end = _gzip_header_length(data)
    found = [(head_end, 0)]
    for m in re.finditer(re.escape(b"\x00\x00\xff\xff"), data):
        off = m.end()
        if off >= len(data) - 8:
            continue
        d = zlib.decompressobj(-15)
        try:
            first = d.decompress(data[off:], 512)
        except zlib.error:
            continue
        if len(first) < 512 or not header_ok(first):
            continue
        try:
            rest = first + d.decompress(d.unconsumed_tail) + d.flush()
        except zlib.error:
            continue
        if not d.eof or not full.endswith(rest):
            continue
        found.append((off, len(full) - len(rest)))
    return sorted(set(found))


def _gzip_header_length(data):
    flags = data[3]
    pos = 10
    if flags & 4:
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    for bit in (8, 16):
        if flags & bit:
            pos = data.index(b"\0", pos) + 1
    if flags & 2:
        pos += 2
    return pos


def header_ok(block):
    """A 512-byte block that is a tar header with a right checksum."""
    if len(block) < 512 or block[:512] == bytes(512):
        return False
    try:
        stored_sum = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return stored_sum == unsigned


def tar_end(raw):
    """Offset just past the tar's two end-of-archive zero blocks in an uncompressed stream."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        tf.getmembers()
        pos = tf.offset
    while raw[pos:pos + 512] == bytes(512) and pos + 512 <= len(raw):
        pos += 512
        if raw[pos - 1024:pos] == bytes(1024):
            break
    return pos


def members(archive_or_data):
    """[TarInfo] of the archive in order, read by tarfile r:*."""
    data = archive_or_data if isinstance(archive_or_data, bytes) else stored(archive_or_data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return tf.getmembers()


def rel(name):
    """A member name relative to the saved folder (the top folder `_assets/` dropped)."""
    name = name.rstrip("/")
    if name.startswith("./"):
        name = name[2:]
    return name.split("/", 1)[1] if "/" in name else ("" if name == TOP else name)


# -- hostile changes to an archive -----------------------------------------------------
def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def tamper_index(archive):
    """Change one hex digit of the index inside the stored archive (a plain tar: in place; a
    .tar.gz: the deflate data from the index's restart point re-made, the gzip trailer fixed,
    so every reader still reads the file without an error). The sidecar stays as it was.
    Returns the archive's new bytes."""
    data = stored(archive)
    _, _, offset, length = index_line(archive, data)
    index = read_index_at(data, offset, length)
    digits = [m.start() for m in re.finditer(rb"[0-9a-f]{64}", index)]
    if not digits:
        raise AssertionError("no sha256 in the index to tamper with: %r" % index[:200])
    at = digits[len(digits) // 2] + 5
    bad = index[:at] + (b"0" if index[at:at + 1] != b"0" else b"1") + index[at + 1:]
    assert len(bad) == len(index) and bad != index
    if is_gzip(data):
        raw = tar_stream(data)
        start = len(raw) - _tail_length(data, offset)
        new_raw = raw[:start] + bad + raw[start + length:]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = data[:offset] + c.compress(new_raw[start:]) + c.flush()
        new = body + (zlib.crc32(new_raw) & 0xFFFFFFFF).to_bytes(4, "little") + \
            (len(new_raw) & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        new = data[:offset] + bad + data[offset + length:]
    _write_stored(archive, new)
    return new


def _tail_length(data, offset):
    """Uncompressed bytes from a restart point at `offset` to the end of the stream."""
    d = zlib.decompressobj(-15)
    return len(d.decompress(data[offset:]) + d.flush())


def damage_member(archive, name):
    """Overwrite 64 bytes in the middle of member `name`'s data in a plain tar (the
    stored bytes; parts rewritten in place). Returns (the original bytes, the new ones)."""
    data = stored(archive)
    assert not is_gzip(data), "damage_member works on a plain tar"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        info = next(m for m in tf.getmembers() if m.name == name or rel(m.name) == name)
    at = info.offset_data + info.size // 2
    new = data[:at] + bytes(b ^ 0xA5 for b in data[at:at + 64]) + data[at + 64:]
    _write_stored(archive, new)
    return data, new


def _write_stored(archive, new):
    if os.path.exists(archive):
        st = os.stat(archive)
        write(archive, new)
        os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return
    pos = 0
    for p in part_files(archive):
        size = os.path.getsize(p)
        st = os.stat(p)
        write(p, new[pos:pos + size])
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        pos += size


def restore_bytes(archive, original):
    _write_stored(archive, original)


def resign(archive, old_sha):
    """Make the sidecar vouch for the archive as it is now: every occurrence of the old
    whole-archive sha256 (its line and its `# index` line) replaced by the new one."""
    new_sha = sha256(stored(archive))
    text = sidecar_text(archive).replace(old_sha, new_sha)
    with open(archive + ".sha256", "w", encoding="utf-8") as f:
        f.write(text)
    return new_sha


def read_marker(dest):
    try:
        with open(os.path.join(dest, MARKER)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def tree_files(root):
    """{relpath: bytes} of the regular files under root (the marker left out)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            r = os.path.relpath(p, root)
            if r == MARKER or os.path.islink(p):
                continue
            with open(p, "rb") as f:
                out[r] = f.read()
    return out


def visible_entries(root):
    """Relative paths of everything under root but the marker (what a reader would see)."""
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            r = os.path.relpath(os.path.join(d, n), root)
            if r != MARKER:
                out.add(r)
    return out


def gz_one_stream(raw, level):
    return gzip.compress(raw, compresslevel=level, mtime=0)


def lock_pid(dest):
    """The pid in the lock file beside dest (`pid N ...`), or None."""
    path = os.path.join(os.path.dirname(dest), "." + os.path.basename(dest) + ".lock")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"\bpid (\d+)", text)
    return int(m.group(1)) if m else None
