"""Hostile and corrupt archives, each against every engine, with and without an existing dest.

For every rejection: the exception class and exit_code, the member name in the message
(UnsafeArchive), dest untouched (absent, or unchanged when it existed), no staging folder
left, and nothing written outside dest. Also the tar header checksum: the signed sum old tars
wrote is valid, any other is corrupt.
"""
import os
import tarfile

import helpers as h
from helpers import BLK, CHR, D, F, FIFO, H, L, ba

GOOD_MEMBERS = [D("top"), F("top/a.txt", b"good a\n"), F("top/sub/b.txt", b"good b\n")]
OK = F("ok.txt", b"fine\n")


def unsafe(name, members, names, comp="gz"):
    """Case: tar (or zip) of members must raise UnsafeArchive naming one of `names`."""
    return dict(name=name, build=lambda c: h.archive_bytes(members(c), comp),
                exc="UnsafeArchive", names=names)


def _abs(c, rel):
    return os.path.join(c["outside"], rel)


UNSAFE_CASES = [
    unsafe("traversal", lambda c: [OK, F("../escaped_traversal.txt", b"x")], ["escaped_traversal.txt"]),
    unsafe("traversal_nested", lambda c: [OK, D("sub"), F("sub/../../escaped_nested.txt", b"x")],
           ["escaped_nested.txt"]),
    unsafe("traversal_dir", lambda c: [OK, D("../escaped_dir")], ["escaped_dir"]),
    unsafe("absolute_path", lambda c: [OK, F(_abs(c, "abs_escape.txt"), b"x")], ["abs_escape.txt"]),
    unsafe("symlink_abs", lambda c: [OK, L("evil_abs_link", "/etc")], ["evil_abs_link"]),
    unsafe("symlink_rel_escape", lambda c: [OK, D("sub"), L("sub/evil_rel_link", "../../escaped_x")],
           ["evil_rel_link"]),
    unsafe("symlink_dotdot", lambda c: [OK, L("evil_up", "..")], ["evil_up"]),
    unsafe("hardlink_escape", lambda c: [OK, H("evil_hardlink", "../outside_target")], ["evil_hardlink"]),
    unsafe("hardlink_abs", lambda c: [OK, H("evil_hardlink_abs", _abs(c, "victim.txt"))],
           ["evil_hardlink_abs"]),
    unsafe("hardlink_to_outside_symlink",
           lambda c: [OK, L("sym_to_out", _abs(c, "victim.txt")), H("hard_to_sym", "sym_to_out")],
           ["sym_to_out", "hard_to_sym"]),
    unsafe("link_chain", lambda c: [OK, L("chain_a", "chain_b"), L("chain_b", "..")],
           ["chain_a", "chain_b"]),
    unsafe("link_chain_reversed", lambda c: [OK, L("chain_b", ".."), L("chain_a", "chain_b/escaped_chain")],
           ["chain_a", "chain_b"]),
    unsafe("link_chain_three", lambda c: [OK, L("hop_one", "hop_two/x"), L("hop_two", "hop_three"),
                                          L("hop_three", "../outside")],
           ["hop_one", "hop_two", "hop_three"]),
    unsafe("write_through_symlinked_dir_outside",
           lambda c: [OK, L("dir_link", c["outside"]), F("dir_link/through.txt", b"pwned")],
           ["dir_link"]),
    unsafe("write_through_symlinked_dir_tmp",
           lambda c: [OK, L("tmp_link", "/tmp"), F("tmp_link/ba-unit-through-%d.txt" % os.getpid(), b"x")],
           ["tmp_link"]),
    unsafe("write_through_symlinked_dir_inside",
           lambda c: [OK, D("realdir"), L("dir_link_in", "realdir"), F("dir_link_in/through_in.txt", b"x")],
           ["dir_link_in"]),
    unsafe("dangling_component_trick",
           lambda c: [OK, L("trick_a", "trick_b/../escaped_trick"), L("trick_b", ".")],
           ["trick_a", "trick_b"]),
    unsafe("dangling_component_trick_write",
           lambda c: [OK, L("trick_a", "trick_b/../escaped_trick"), L("trick_b", "."),
                      F("trick_a", b"written through")],
           ["trick_a", "trick_b"]),
    unsafe("char_device", lambda c: [OK, CHR("evil_chr")], ["evil_chr"]),
    unsafe("block_device", lambda c: [OK, BLK("evil_blk")], ["evil_blk"]),
    unsafe("fifo", lambda c: [OK, FIFO("evil_fifo")], ["evil_fifo"]),
    unsafe("zip_traversal", lambda c: [OK, F("../zip_escape.txt", b"x")], ["zip_escape.txt"], comp="zip"),
    unsafe("zip_absolute", lambda c: [OK, F(_abs(c, "zip_abs.txt"), b"x")], ["zip_abs.txt"], comp="zip"),
    unsafe("gnu_longname_traversal",
           lambda c: [OK, F("../" + "long_escape_" + "x" * 120, b"x")], ["long_escape_"]),
]
# GNU (not pax) headers for the long-name traversal: the ././@LongLink path must be checked too.
UNSAFE_CASES[-1]["build"] = lambda c: h.archive_bytes(
    [OK, F("../" + "long_escape_" + "x" * 120, b"x")], "gz", fmt=tarfile.GNU_FORMAT)


def _big_members():
    return [D("top"), F("top/big.bin", h.rand_bytes(200_000, 7)), F("top/small.txt", b"small\n")]


def _truncated_gz(c):
    data = h.archive_bytes(_big_members(), "gz")
    return data[: len(data) * 6 // 10]


def _truncated_tar(c):
    data = h.archive_bytes(_big_members(), "tar")
    return data[:100_000]


def _truncated_xz(c):
    data = h.archive_bytes(_big_members(), "xz")
    return data[: len(data) // 2]


def _flipped(data):
    b = bytearray(data)
    b[len(b) // 2] ^= 0x10
    return bytes(b)


HTML = (b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Google Drive - "
        b"Virus scan warning</title></head><body><p>Google Drive can't scan this file for "
        b"viruses.</p><form action=\"https://drive.google.com/uc\"></form></body></html>\n" * 3)

CORRUPT_CASES = [
    dict(name="truncated_gz", build=_truncated_gz, exc="CorruptArchive"),
    dict(name="truncated_plain_tar", build=_truncated_tar, exc="CorruptArchive"),
    dict(name="truncated_xz", build=_truncated_xz, exc="CorruptArchive"),
    dict(name="bitflip_gz_no_sidecar", build=lambda c: _flipped(h.archive_bytes(_big_members(), "gz")),
         exc="CorruptArchive"),
    dict(name="zero_bytes", build=lambda c: b"", exc="CorruptArchive"),
    dict(name="html_page", build=lambda c: HTML, exc="CorruptArchive", words=["web page", "html"]),
    dict(name="random_garbage", build=lambda c: h.rand_bytes(5000, 3), exc="CorruptArchive"),
    dict(name="truncated_zip", build=lambda c: h.archive_bytes(_big_members(), "zip")[:50_000],
         exc="CorruptArchive"),
]


class HostileArchiveTests(h.BATestCase):

    def _layout(self):
        base = self.subdir()
        c = {"base": base, "arch": os.path.join(base, "arch"), "work": os.path.join(base, "work"),
             "outside": os.path.join(base, "outside")}
        for k in ("arch", "work", "outside"):
            os.makedirs(c[k])
        h.write_bytes(os.path.join(c["outside"], "victim.txt"), b"victim\n")
        c["archive"] = os.path.join(c["arch"], "assets.tar.gz")
        c["dest"] = os.path.join(c["work"], "_assets")
        return c

    def _outside_state(self, c):
        top = sorted(os.listdir(c["base"]))
        return top, h.snapshot(c["outside"], include_marker=True), sorted(os.listdir(c["work"]))

    def _run_case(self, case, engine, existing, sidecar_good=None):
        c = self._layout()
        data = case["build"](c)
        if existing:
            good = sidecar_good if sidecar_good is not None else h.archive_bytes(GOOD_MEMBERS, "gz")
            h.write_bytes(c["archive"], good, mtime=h.MTIME)
            if sidecar_good is not None:
                h.write_sidecar(c["archive"])
            r = self.restore(c["archive"], c["dest"], engine=engine)
            self.assertEqual(r.action, "restored")
        elif sidecar_good is not None:
            h.write_bytes(c["archive"], sidecar_good)
            h.write_sidecar(c["archive"])
        h.write_bytes(c["archive"], data, mtime=h.MTIME + 1000)
        before = h.state(c["dest"])
        top, outside, work = self._outside_state(c)
        e = self.assertBAError(case["exc"], self.restore, c["archive"], c["dest"], engine=engine)
        msg = str(e)
        for_names = case.get("names")
        if for_names:
            self.assertTrue(any(n in msg for n in for_names),
                            "message does not name the member (%s): %s" % (for_names, msg))
        words = case.get("words")
        if words:
            self.assertTrue(any(w in msg.lower() for w in words),
                            "message should say %s: %s" % (" / ".join(words), msg))
        self.assertUntouched(c["dest"], before)
        top2, outside2, work2 = self._outside_state(c)
        self.assertEqual(top2, top, "something was created beside the work folder")
        self.assertEqual(outside2, outside, "something outside dest was changed")
        lock = "." + os.path.basename(c["dest"]) + ".lock"
        self.assertEqual([x for x in work2 if x != lock], [x for x in work if x != lock],
                         "something was left beside dest")
        return e

    def _run_cases(self, cases):
        """Each case with every engine, into a fresh dest and over an existing one."""
        for case in cases:
            for engine in h.engines():
                for existing in (False, True):
                    with self.subTest(case=case["name"], engine=engine, existing_dest=existing):
                        self._run_case(case, engine, existing)

    @h.slow  # a second or more: make test-slow
    def test_unsafe_members_rejected(self):
        self._run_cases(UNSAFE_CASES)
        self.assertFalse(os.path.exists("/tmp/ba-unit-through-%d.txt" % os.getpid()))

    @h.slow  # a second or more: make test-slow
    def test_corrupt_archives_rejected(self):
        self._run_cases(CORRUPT_CASES)

    def test_bitflip_with_sidecar_is_checksum_mismatch(self):
        original = h.archive_bytes(_big_members(), "gz")
        flipped = _flipped(original)
        case = dict(name="bitflip_sidecar", build=lambda c: flipped, exc="ChecksumMismatch")
        for engine in h.engines():
            for existing in (False, True):
                with self.subTest(engine=engine, existing_dest=existing):
                    e = self._run_case(case, engine, existing, sidecar_good=original)
                    self.assertIn(h.sha256_bytes(original), str(e), "expected hash not in message")
                    self.assertIn(h.sha256_bytes(flipped), str(e), "actual hash not in message")

    def test_bitflip_with_sha256_flag_is_checksum_mismatch(self):
        original = h.archive_bytes(_big_members(), "gz")
        flipped = _flipped(original)
        for engine in h.engines():
            with self.subTest(engine=engine):
                c = self._layout()
                h.write_bytes(c["archive"], flipped)
                e = self.assertBAError("ChecksumMismatch", self.restore, c["archive"], c["dest"],
                                       engine=engine, sha256=h.sha256_bytes(original))
                self.assertIn(h.sha256_bytes(original), str(e))
                self.assertIn(h.sha256_bytes(flipped), str(e))
                self.assertUntouched(c["dest"], None)


class SpecialBitsAndOddMembersTests(h.BATestCase):
    """Archives that must restore, with the dangerous parts neutralised."""

    def _restore_members(self, members, engine, comp="gz", fmt=tarfile.PAX_FORMAT, name="a.tar.gz"):
        base = self.subdir()
        archive = h.write_bytes(os.path.join(base, name), h.archive_bytes(members, comp, fmt))
        dest = os.path.join(base, "out", "_assets")
        r = self.restore(archive, dest, engine=engine)
        self.assertEqual(r.action, "restored")
        self.assertNoStaging(dest)
        self.assertMarker(dest)
        return dest, r

    def test_setuid_setgid_sticky_stripped(self):
        members = [D("top"), F("top/suid", b"s", mode=0o4755), F("top/sgid", b"g", mode=0o2755),
                   F("top/sticky", b"t", mode=0o1644), F("top/all", b"a", mode=0o7777),
                   D("top/sgid_dir", mode=0o2755), D("top/sticky_dir", mode=0o1777),
                   F("top/sgid_dir/f", b"f", mode=0o644)]
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, _ = self._restore_members(members, engine)
                want = {"suid": 0o755, "sgid": 0o755, "sticky": 0o644, "all": 0o777}
                for rel, mode in want.items():
                    st = os.lstat(os.path.join(dest, rel))
                    self.assertEqual(st.st_mode & 0o7777, mode, "%s: mode %o" % (rel, st.st_mode & 0o7777))
                for rel in ("sgid_dir", "sticky_dir"):
                    st = os.lstat(os.path.join(dest, rel))
                    self.assertEqual(st.st_mode & 0o7000, 0, "%s keeps special bits %o" % (rel, st.st_mode))
                for rel, data in (("sgid_dir/f", b"f"), ("suid", b"s")):
                    with open(os.path.join(dest, rel), "rb") as f:
                        self.assertEqual(f.read(), data)

    def test_owner_is_running_user(self):
        members = [D("top", uid=12345, gid=54321, uname="someone", gname="others"),
                   F("top/owned.txt", b"o", uid=12345, gid=54321, uname="someone", gname="others"),
                   L("top/owned_link", "owned.txt", uid=12345, gid=54321)]
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, _ = self._restore_members(members, engine)
                for rel in ("owned.txt", "owned_link", "."):
                    st = os.lstat(os.path.join(dest, rel))
                    self.assertEqual((st.st_uid, st.st_gid), (os.getuid(), os.getgid()),
                                     "%s owned by %d:%d" % (rel, st.st_uid, st.st_gid))

    def test_zero_byte_member(self):
        members = [F("empty.txt", b""), F("other.txt", b"x"), D("d"), F("d/empty2", b"")]
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, r = self._restore_members(members, engine)
                self.assertTree(dest, h.expected_tree(members))

    def test_internal_hardlink(self):
        members = [D("top"), F("top/orig.bin", b"shared content\n"), D("top/d"),
                   H("top/d/linked.bin", "top/orig.bin")]
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest, _ = self._restore_members(members, engine)
                self.assertTree(dest, h.expected_tree(members, strip_top=True))

    def test_hardlink_to_internal_symlink(self):
        """A hardlink to an internal symlink may be refused or restored; either way nothing
        outside dest is touched and the result stays inside dest."""
        for engine in h.engines():
            with self.subTest(engine=engine):
                base = self.subdir()
                members = [F("target.txt", b"t\n"), L("sl", "target.txt"), H("hl", "sl")]
                archive = h.write_bytes(os.path.join(base, "a.tar.gz"), h.archive_bytes(members))
                dest = os.path.join(base, "out", "_assets")
                try:
                    self.restore(archive, dest, engine=engine)
                except ba.UnsafeArchive as e:
                    self.assertTrue("hl" in str(e) or "sl" in str(e), str(e))
                    self.assertUntouched(dest, None)
                    continue
                p = os.path.join(dest, "hl")
                real = os.path.realpath(p)
                self.assertTrue(real.startswith(os.path.realpath(dest) + os.sep), real)
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), b"t\n")
                self.assertEqual(sorted(os.listdir(base)), ["a.tar.gz", "out"])

    def test_zip_symlink_entry_does_not_escape(self):
        """A zip entry with symlink mode pointing outside: refused, or written as a plain file."""
        for engine in h.engines():
            with self.subTest(engine=engine):
                base = self.subdir()
                members = [F("ok.txt", b"ok"), L("zlink", "/etc")]
                archive = h.write_bytes(os.path.join(base, "a.zip"), h.archive_bytes(members, "zip"))
                dest = os.path.join(base, "out", "_assets")
                try:
                    self.restore(archive, dest, engine=engine)
                except ba.UnsafeArchive as e:
                    self.assertIn("zlink", str(e))
                    self.assertUntouched(dest, None)
                    continue
                self.assertFalse(os.path.islink(os.path.join(dest, "zlink")),
                                 "zip symlink to /etc was created")

    def test_long_names_pax_and_gnu(self):
        long_dir = "top/" + "d" * 90 + "/" + "e" * 90
        long_file = long_dir + "/" + "f" * 120 + ".txt"
        members = [D("top"), D(long_dir), F(long_file, b"long name content\n"),
                   L("top/" + "l" * 110, long_file[4:]), F("top/short.txt", b"short\n")]
        for fmt_name, fmt in (("pax", tarfile.PAX_FORMAT), ("gnu", tarfile.GNU_FORMAT)):
            for engine in h.engines():
                with self.subTest(fmt=fmt_name, engine=engine):
                    dest, _ = self._restore_members(members, engine, fmt=fmt)
                    self.assertTree(dest, h.expected_tree(members, strip_top=True))



def _with_checksum(block, signed):
    """A tar header block with its checksum recomputed, over unsigned or signed bytes."""
    block = bytearray(block)
    block[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % total
    return bytes(block)



class HeaderChecksumTests(h.BATestCase):
    """Old tars summed header bytes as signed chars; both sums are valid, nothing else is."""

    def archive(self, checksum_of):
        raw = h.tar_bytes([F("caf\u00e9/\u00fcber.txt", b"hello\n")], fmt=tarfile.USTAR_FORMAT)
        self.assertTrue(any(b > 127 for b in raw[:100]), "the name must have bytes over 127")
        path = os.path.join(self.subdir(), "assets.tar")
        h.write_bytes(path, checksum_of(raw[:512]) + raw[512:])
        return path

    def test_signed_checksum_is_accepted_by_every_engine(self):
        archive = self.archive(lambda block: _with_checksum(block, signed=True))
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                self.restore(archive, dest, engine=engine)
                with open(os.path.join(dest, "\u00fcber.txt"), "rb") as f:
                    self.assertEqual(f.read(), b"hello\n")

    def test_checksum_matching_neither_sum_is_corrupt(self):
        def off_by_one(block):
            block = _with_checksum(block, signed=False)
            return block[:148] + b"%06o\0 " % (int(block[148:154], 8) + 1) + block[156:]
        e = self.assertBAError("CorruptArchive", self.restore, self.archive(off_by_one))
        self.assertIn("bad header checksum", str(e))
        self.assertUntouched(self.dest, None)
