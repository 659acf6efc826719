"""Archives that GNU tar, bsdtar or unzip read, and that restore reads too, each safety rule
still applied: a tar without its end-of-archive blocks, several extended headers before one
member, a zip with bytes before it, data after a bzip2 stream, a folder header that declares
data, pax times in every form GNU tar reads; and the refusals kept on purpose, each saying
its rule. Every archive is built here, byte by byte where tarfile would not write it, and
restored with every engine; where GNU tar is on the machine, its result is the reference.
"""
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from unittest import mock

import helpers as h
from helpers import D, F, L, ba

BLOCK = 512
END = bytes(2 * BLOCK)


def padded(data):
    return data + bytes(-len(data) % BLOCK)


def header(name, kind=tarfile.REGTYPE, size=0, linkname="", fmt=tarfile.USTAR_FORMAT,
           mode=None, mtime=h.MTIME):
    """One header block (more for GNU long names) exactly as given: size is written even
    for a folder or a link, which tarfile's own writer would not do."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mtime = kind, size, linkname, mtime
    info.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    return info.tobuf(fmt)


def member(name, data):
    return header(name, size=len(data)) + padded(data)


def pax_header(records):
    """An extended header ('x') holding records {key: value} (bytes or str), in order."""
    payload = b""
    for key, value in records.items():
        body = b" %s=%s\n" % (key.encode(), value if isinstance(value, bytes) else value.encode())
        length = len(body) + len(str(len(body)))
        length += len(str(length)) - len(str(len(body)))
        payload += b"%d" % length + body
    return header("././@PaxHeader", tarfile.XHDTYPE, len(payload)) + padded(payload)


def gnu_long(kind, text):
    """A GNU long name ('L') or long link ('K') record."""
    data = text.encode() + b"\0"
    return header("././@LongLink", kind, len(data), fmt=tarfile.GNU_FORMAT) + padded(data)


def gnu_tar_snapshot(test, data, suffix=".tar"):
    """What GNU tar extracts from data (snapshot), or skips the test's check when there is
    no GNU tar; (snapshot, its exit code)."""
    tar = ba._gnu_tar()
    if not tar:
        test.skipTest("no GNU tar to compare with")
    work = tempfile.mkdtemp(prefix="gnutar-", dir=test.tmp)
    path = h.write_bytes(os.path.join(work, "in" + suffix), data)
    out = os.path.join(work, "out")
    os.makedirs(out)
    r = subprocess.run([tar, "-xf", path, "-C", out], capture_output=True,
                       env=dict(os.environ, LC_ALL="C"))
    return h.snapshot(out), r.returncode


class CompatCase(h.BATestCase):

    def restore_each_engine(self, data, suffix=".tar", **kw):
        """[(engine, exception or None, dest, result or None)], each into a fresh dest."""
        archive = h.write_bytes(os.path.join(self.subdir("arch-"), "assets" + suffix), data)
        out = []
        for engine in h.engines():
            dest = os.path.join(self.subdir(), "_assets")
            try:
                out.append((engine, None, dest, self.restore(archive, dest, engine=engine, **kw)))
            except ba.BootstrapError as exc:
                self.assertFalse(os.path.lexists(dest), f"{engine}: a refusal left dest")
                self.assertNoStaging(dest)
                out.append((engine, exc, dest, None))
        return out

    def assertRestoresAs(self, data, tree, suffix=".tar", **kw):
        """Every engine restores data to tree (a snapshot); returns the results."""
        results = []
        for engine, exc, dest, result in self.restore_each_engine(data, suffix, **kw):
            with self.subTest(engine=engine):
                self.assertIsNone(exc, f"{engine}: {exc}")
                self.assertTree(dest, tree, f"(engine {engine})")
                results.append(result)
        return results

    def assertRefused(self, data, cls, words, suffix=".tar"):
        for engine, exc, _, _ in self.restore_each_engine(data, suffix):
            with self.subTest(engine=engine):
                self.assertIsInstance(exc, getattr(ba, cls), f"{engine}: {exc!r}")
                for word in words:
                    self.assertIn(word, str(exc))


TREE = [F("keep.txt", b"keep\n"), D("sub"), F("sub/a.bin", h.rand_bytes(3000, 4)),
        L("link", "keep.txt")]


# ------------------------------------------------------------------- no end-of-archive --
class NoEndMarkerTests(CompatCase):
    """A tar that ends at a member boundary without its two zero blocks (Go's archive/tar
    without Close) restores, with a note when no checksum said it is whole; a cut anywhere
    else stays exit 7, saying where."""

    def test_restores_in_every_compression_with_a_note(self):
        raw = h.tar_bytes(TREE, end=False)
        self.assertNotEqual(raw[-BLOCK:], bytes(BLOCK))
        for comp in ("tar", "gz", "bz2", "xz"):
            with self.subTest(comp=comp):
                suffix = ".tar" if comp == "tar" else ".tar." + comp
                for result in self.assertRestoresAs(h.compress(raw, comp),
                                                    h.expected_tree(TREE), suffix):
                    self.assertIn("end-of-archive marker", result.note or "")
                    self.assertIn("cut short", result.summary())
                    self.assertFalse(result.verified)

    def test_same_tree_as_gnu_tar(self):
        raw = h.tar_bytes(TREE, end=False)
        reference, code = gnu_tar_snapshot(self, raw)
        self.assertEqual(code, 0)
        self.assertRestoresAs(raw, reference)

    def test_no_note_when_the_hash_was_verified(self):
        raw = h.tar_bytes(TREE, end=False)
        for how in ("sidecar", "--sha256"):
            with self.subTest(how=how):
                folder = self.subdir("arch-")
                archive = h.write_bytes(os.path.join(folder, "assets.tar"), raw)
                kw = {}
                if how == "sidecar":
                    h.write_sidecar(archive)
                else:
                    kw["sha256"] = h.sha256_bytes(raw)
                result = self.restore(archive, os.path.join(self.subdir(), "_assets"), **kw)
                self.assertTrue(result.verified)
                self.assertIsNone(result.note)

    def test_an_archive_with_its_end_marker_has_no_note(self):
        for result in self.assertRestoresAs(h.tar_bytes(TREE), h.expected_tree(TREE)):
            self.assertIsNone(result.note)

    def test_the_command_line_summary_says_so(self):
        archive = h.write_bytes(os.path.join(self.src_dir, "assets.tar"),
                                h.tar_bytes(TREE, end=False))
        rc, out, err = self.run_main(["--archive", archive, "--dest", self.dest,
                                      "--drive-mount", ""])
        self.assertEqual(rc, 0, err)
        self.assertIn("end-of-archive marker", out + err)

    def test_cut_inside_a_members_data_is_exit_7_naming_it(self):
        raw = h.tar_bytes([F("keep.txt", b"k"), F("big.bin", h.rand_bytes(40_000, 2))])
        at = raw.index(b"big.bin") + BLOCK * 20  # at a block boundary inside the data
        for comp in ("tar", "gz"):
            with self.subTest(comp=comp):
                suffix = ".tar" if comp == "tar" else ".tar.gz"
                self.assertRefused(h.compress(raw[:at], comp), "CorruptArchive",
                                   ["in the middle of member 'big.bin'", "truncated",
                                    "Nothing was changed"], suffix)

    def test_cut_inside_a_header_is_exit_7_saying_so(self):
        raw = h.tar_bytes([F("keep.txt", b"k"), F("next.txt", b"n")])
        at = raw.index(b"next.txt") + 100
        self.assertRefused(raw[:at], "CorruptArchive",
                           ["in the middle of a member's header", "truncated"])

    def test_cut_after_an_extended_header_is_exit_7_naming_the_member(self):
        for label, raw in (
                ("pax", member("keep.txt", b"k") + pax_header({"path": "long/" + "n" * 120})),
                ("gnu", member("keep.txt", b"k") + gnu_long(tarfile.GNUTYPE_LONGNAME,
                                                             "long/" + "m" * 120))):
            with self.subTest(kind=label):
                self.assertRefused(raw, "CorruptArchive",
                                   ["ends after the extended header", "long/", "truncated"])

    def test_a_cut_at_the_start_of_a_member_cannot_be_told_from_an_end(self):
        """What the note is for: with no end marker and no checksum, a cut at a member's
        end looks like the end; with the hash, it is exit 5."""
        raw = h.tar_bytes([F("keep.txt", b"k"), F("lost.txt", b"l")])
        cut = raw[:raw.index(b"lost.txt")]
        for result in self.assertRestoresAs(cut, h.expected_tree([F("keep.txt", b"k")])):
            self.assertIn("cut short", result.note)
        archive = h.write_bytes(os.path.join(self.src_dir, "cut.tar"), cut)
        self.assertBAError("ChecksumMismatch", self.restore, archive,
                           sha256=h.sha256_bytes(raw))


# ------------------------------------------------------------ several extended headers --
class SeveralExtendedHeadersTests(CompatCase):
    """Several long-name, long-link or pax headers before one member: the last one counts,
    as in GNU tar (a pax header counts whole: its records replace the earlier one's)."""

    def test_pax_the_last_header_counts_whole(self):
        raw = (member("keep.txt", b"k")
               + pax_header({"path": "first/" + "a" * 110})
               + pax_header({"path": "second/" + "b" * 110, "linkpath": "keep.txt"})
               + pax_header({"linkpath": "../keep.txt"})
               + header("short", tarfile.SYMTYPE, linkname="x") + END)
        # the path records were replaced by the last header, which names only the target:
        # the member is 'short', its target leaves the folder
        self.assertRefused(raw, "UnsafeArchive", ["'short'", "outside"])
        raw = (member("keep.txt", b"k")
               + pax_header({"path": "first/" + "a" * 110})
               + pax_header({"path": "second/" + "b" * 110})
               + pax_header({"linkpath": "keep.txt"})
               + header("short", tarfile.SYMTYPE, linkname="x") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "short": ("link", "keep.txt")}
        self.assertRestoresAs(raw, tree)
        reference, code = gnu_tar_snapshot(self, raw)
        self.assertEqual((reference, code), (tree, 0))

    def test_pax_the_last_path_counts(self):
        raw = (member("keep.txt", b"k") + pax_header({"path": "one.txt"})
               + pax_header({"path": "two.txt"}) + member("zero.txt", b"data") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "two.txt": ("file", 0o644, b"data")}
        self.assertRestoresAs(raw, tree)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_gnu_the_last_long_name_and_link_count(self):
        name, target = "dir/" + "n" * 120, "keep.txt"
        raw = (member("keep.txt", b"k")
               + gnu_long(tarfile.GNUTYPE_LONGNAME, "first/" + "x" * 120)
               + gnu_long(tarfile.GNUTYPE_LONGNAME, name)
               + gnu_long(tarfile.GNUTYPE_LONGLINK, "../../etc/" + "y" * 120)
               + gnu_long(tarfile.GNUTYPE_LONGLINK, target)
               + header("short", tarfile.SYMTYPE, linkname="z", fmt=tarfile.GNU_FORMAT) + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "dir": ("dir",),
                name: ("link", target)}
        self.assertRestoresAs(raw, tree)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_the_last_header_is_checked_like_any_name(self):
        for label, raw in (
                ("pax", pax_header({"path": "fine.txt"}) + pax_header({"path": "../escape.txt"})),
                ("gnu", gnu_long(tarfile.GNUTYPE_LONGNAME, "fine/" + "f" * 110)
                 + gnu_long(tarfile.GNUTYPE_LONGNAME, "../escape/" + "e" * 110))):
            with self.subTest(kind=label):
                data = member("keep.txt", b"k") + raw + member("short.txt", b"x") + END
                self.assertRefused(data, "UnsafeArchive", ["escape", ".."])

    def test_a_metadata_entry_over_the_limit_is_refused_with_its_rule(self):
        big = pax_header({"comment": "c" * (ba.MAX_META_SIZE + 10)})
        self.assertRefused(member("keep.txt", b"k") + big + member("a.txt", b"a") + END,
                           "UnsafeArchive", ["rule", "pax headers and long names"])

    def test_a_nul_in_a_pax_path_is_refused_with_its_rule(self):
        raw = (member("keep.txt", b"k") + pax_header({"path": b"ok.txt\0../../evil"})
               + member("a.txt", b"a") + END)
        self.assertRefused(raw, "UnsafeArchive", ["NUL", "rule"])


# ------------------------------------------------------------------------- zip prefix --
class ZipWithBytesBeforeItTests(CompatCase):
    """A zip after a self-extracting stub or padding: read from its directory at the end,
    as unzip, bsdtar and Python's zipfile do."""

    MEMBERS = [F("keep.txt", b"keep\n"), D("sub"), F("sub/b.bin", h.rand_bytes(5000, 9))]

    def test_after_a_stub(self):
        stub = b"#!/bin/sh\nexec unzip -o \"$0\"\n" + b"\x7fELF" + h.rand_bytes(3000, 1)
        data = stub + h.zip_bytes(self.MEMBERS)
        self.assertRestoresAs(data, h.expected_tree(self.MEMBERS), suffix=".zip")
        if shutil.which("unzip"):
            out = os.path.join(self.subdir(), "unzip")
            path = h.write_bytes(os.path.join(self.subdir(), "sfx.zip"), data)
            subprocess.run(["unzip", "-q", "-o", path, "-d", out], capture_output=True)
            self.assertEqual(h.snapshot(out), h.expected_tree(self.MEMBERS))

    def test_after_zero_padding(self):
        data = bytes(8192) + h.zip_bytes(self.MEMBERS)
        self.assertRestoresAs(data, h.expected_tree(self.MEMBERS), suffix=".zip")

    def test_with_a_name_that_says_tar(self):
        data = b"MZ stub " * 40 + h.zip_bytes(self.MEMBERS)
        self.assertRestoresAs(data, h.expected_tree(self.MEMBERS), suffix=".tar.gz")

    def test_safety_rules_still_apply(self):
        data = b"#!/bin/sh\n" + h.zip_bytes([F("keep.txt", b"k"), F("../escape.txt", b"x")])
        self.assertRefused(data, "UnsafeArchive", ["escape.txt"], suffix=".zip")

    def test_a_zip_signature_inside_something_else_is_not_an_archive(self):
        data = b"\x7fELF" + bytes(100) + b"PK\x03\x04" + h.rand_bytes(2000, 5)
        self.assertRefused(data, "CorruptArchive", ["not an archive this tool knows"],
                           suffix=".zip")


# ------------------------------------------------------------------ bzip2 trailing data --
class DataAfterBzip2Tests(CompatCase):
    """What follows the last bzip2 stream is ignored, as `bzip2 -d` (warning) and GNU tar
    do; gzip, xz and zstd call it an error, and so do we."""

    MEMBERS = [F("keep.txt", b"keep\n"), F("b.bin", h.rand_bytes(20_000, 3))]

    def test_garbage_after_the_stream_is_ignored(self):
        raw = h.tar_bytes(self.MEMBERS)
        for label, data in (("one stream", h.compress(raw, "bz2")),
                            ("two streams", h.multi_stream_bz2(raw))):
            for tail in (b"garbage after the stream", b"B", b"\x00\x01" * 3000):
                with self.subTest(case=label, tail=tail[:8]):
                    self.assertRestoresAs(data + tail, h.expected_tree(self.MEMBERS),
                                          suffix=".tar.bz2")

    def test_same_as_gnu_tar(self):
        data = h.compress(h.tar_bytes(self.MEMBERS), "bz2") + b"trailing junk\n"
        reference, code = gnu_tar_snapshot(self, data, ".tar.bz2")
        self.assertEqual(code, 0)
        self.assertRestoresAs(data, reference, suffix=".tar.bz2")

    def test_more_than_the_limit_is_refused(self):
        data = h.compress(h.tar_bytes(self.MEMBERS), "bz2") + b"x" * 5000
        with mock.patch.object(ba, "MAX_TRAILING", 1000):
            self.assertRefused(data, "CorruptArchive", ["follow the end", "bzip2"],
                               suffix=".tar.bz2")

    def test_a_damaged_second_stream_is_still_damage(self):
        data = h.compress(h.tar_bytes(self.MEMBERS), "bz2")
        self.assertRefused(data + data[:len(data) // 2], "CorruptArchive", ["bzip2"],
                           suffix=".tar.bz2")

    def test_after_gzip_it_stays_an_error_with_its_rule(self):
        data = h.compress(h.tar_bytes(self.MEMBERS), "gz") + b"garbage"
        self.assertRefused(data, "CorruptArchive", ["after its gzip stream", "rule"],
                           suffix=".tar.gz")


# ------------------------------------------------------------------ a folder with data --
class FolderWithDataTests(CompatCase):
    """A folder header whose size field is not 0: GNU tar, bsdtar, Go and tarfile read no
    data after it, and so do we; bytes that are not a header are stepped over (GNU tar and
    bsdtar find the next header after them). Links that declare data stay refused."""

    def test_data_bytes_are_stepped_over(self):
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, 700)
               + padded(b"folder data, not a header " * 26) + member("after.txt", b"a") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "dir": ("dir",),
                "after.txt": ("file", 0o644, b"a")}
        self.assertRestoresAs(raw, tree)

    def test_a_size_without_data_is_ignored(self):
        """Some writers put the folder's own st_size (4096) in its header."""
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, 4096)
               + member("dir/in.txt", b"in") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "dir": ("dir",),
                "dir/in.txt": ("file", 0o644, b"in")}
        self.assertRestoresAs(raw, tree)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_a_size_on_the_last_folder_of_an_archive_without_end_blocks(self):
        raw = member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, 4096)
        tree = {"keep.txt": ("file", 0o644, b"k"), "dir": ("dir",)}
        for result in self.assertRestoresAs(raw, tree):
            self.assertIn("end-of-archive marker", result.note)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_a_header_right_after_is_a_member_as_for_every_reader(self):
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, BLOCK)
               + header("smuggled.txt") + member("after.txt", b"a") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "dir": ("dir",),
                "smuggled.txt": ("file", 0o644, b""), "after.txt": ("file", 0o644, b"a")}
        self.assertRestoresAs(raw, tree)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_every_rule_applies_to_what_follows(self):
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, BLOCK)
               + header("../escape.txt") + END)
        self.assertRefused(raw, "UnsafeArchive", ["escape.txt"])
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, 5)
               + padded(b"hello") + header("fifo", tarfile.FIFOTYPE) + END)
        self.assertRefused(raw, "UnsafeArchive", ["fifo", "FIFO"])

    def test_data_cut_short_names_the_folder(self):
        raw = (member("keep.txt", b"k") + header("dir/", tarfile.DIRTYPE, 100_000)
               + padded(b"folder data"))
        self.assertRefused(raw, "CorruptArchive", ["in the middle of member 'dir/'"])

    def test_a_link_that_declares_data_stays_refused_with_its_rule(self):
        raw = (member("keep.txt", b"k") + header("ln", tarfile.SYMTYPE, 5, "keep.txt")
               + padded(b"hello") + END)
        self.assertRefused(raw, "UnsafeArchive", ["ln", "rule: links", "carry none"])


# --------------------------------------------------------------------------- pax times --
class PaxTimeTests(CompatCase):
    """Pax times as GNU tar reads them: a sign, many fraction digits (cut to the ns, rounded
    down), leading zeros; negative base-256 header times."""

    def mtime_ns(self, raw, name="a.txt"):
        times = {}
        for engine, exc, dest, _ in self.restore_each_engine(raw):
            self.assertIsNone(exc, f"{engine}: {exc}")
            times[engine] = os.lstat(os.path.join(dest, name)).st_mtime_ns
        self.assertEqual(len(set(times.values())), 1, times)
        return next(iter(times.values()))

    def with_mtime(self, value):
        return (member("keep.txt", b"k") + pax_header({"mtime": value})
                + member("a.txt", b"hi") + END)

    def test_forms_gnu_tar_reads(self):
        for value, want_ns in (("-1", -10**9), ("-1.5", -1_500_000_000),
                               ("-0.000000001", -1), ("0001600000000", 1600000000 * 10**9),
                               ("1.", 10**9), ("-1600000000.999999999999",
                                               -1600000001 * 10**9)):
            with self.subTest(mtime=value):
                self.assertEqual(self.mtime_ns(self.with_mtime(value)), want_ns)
                raw = self.with_mtime(value)
                reference_ns = None
                if ba._gnu_tar():
                    work = tempfile.mkdtemp(dir=self.tmp)
                    path = h.write_bytes(os.path.join(work, "t.tar"), raw)
                    subprocess.run([ba._gnu_tar(), "-xf", path, "-C", work],
                                   capture_output=True)
                    reference_ns = os.lstat(os.path.join(work, "a.txt")).st_mtime_ns
                    self.assertEqual(reference_ns, want_ns)

    def test_many_fraction_digits(self):
        for value in ("1600000000." + "1" * 60, "1600000000." + "9" * 3000,
                      "-5." + "0" * 500 + "1"):
            with self.subTest(mtime=value[:30]):
                ns = self.mtime_ns(self.with_mtime(value))
                want = float(value[:21]) if not value.startswith("-") else -5.000000001
                self.assertAlmostEqual(ns / 1e9, want, delta=1e-6)

    def test_a_negative_base256_header_time(self):
        raw = bytearray(member("a.txt", b"hi") + member("keep.txt", b"k") + END)
        raw[136:148] = (-3600).to_bytes(12, "big", signed=True)
        raw[148:156] = b" " * 8
        raw[148:156] = b"%06o\0 " % sum(raw[:BLOCK])
        self.assertEqual(self.mtime_ns(bytes(raw)), -3600 * 10**9)

    def test_a_negative_size_stays_damage(self):
        raw = bytearray(member("a.txt", b"hi") + END)
        raw[124:136] = (-1).to_bytes(12, "big", signed=True)
        raw[148:156] = b" " * 8
        raw[148:156] = b"%06o\0 " % sum(raw[:BLOCK])
        self.assertRefused(bytes(raw), "CorruptArchive", ["negative size"])

    def test_a_pax_size_with_leading_zeros(self):
        raw = (member("keep.txt", b"k") + pax_header({"size": "0" * 30 + "5"})
               + header("a.txt", size=1) + padded(b"hello") + END)
        tree = {"keep.txt": ("file", 0o644, b"k"), "a.txt": ("file", 0o644, b"hello")}
        self.assertRestoresAs(raw, tree)
        self.assertEqual(gnu_tar_snapshot(self, raw), (tree, 0))

    def test_a_time_partly_garbage_is_refused_with_its_rule(self):
        self.assertRefused(self.with_mtime("999xxx9324.432432444444"), "CorruptArchive",
                           ["a.txt", "pax time", "not a number", "rule: a pax time is"])


# ------------------------------------------------------------------------ bucket names --
class BucketAddressMessageTests(h.BATestCase):
    """A bucket address that cannot be one says what is wrong with it."""

    def usage_error(self, url):
        rc, out, err = self.run_main(["--archive", url, "--dest", self.dest, "--quiet"])
        self.assertEqual(rc, 2, err)
        return err

    def test_a_bucket_name_too_short_or_long_says_its_length_rule(self):
        err = self.usage_error("gs://bk/assets.tar")
        self.assertIn("'bk' has 2 characters", err)
        self.assertIn("3 to 63", err)
        self.assertNotIn("not an object's address", err)
        err = self.usage_error("s3://" + "b" * 64 + "/assets.tar")
        self.assertIn("has 64 characters", err)

    def test_no_bucket_no_object_a_folder(self):
        self.assertIn("names no bucket", self.usage_error("s3:///assets.tar"))
        self.assertIn("no object inside the bucket", self.usage_error("gs://my-bucket"))
        self.assertIn("a folder ('assets/'), not an object",
                      self.usage_error("s3://my-bucket/assets/"))
