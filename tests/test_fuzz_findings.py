"""What the mutation fuzzer (tests/fuzz_archives.py) found, each class kept as a regression
case: odd but harmless values are clamped and restored, damaged or hostile structure is
exit 6 or 7 with the member named, an archive that other tools read is read too, and
nothing is ever a traceback or a hang. Every case runs with every engine.
"""
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402
from helpers import ba  # noqa: E402


def tar_with_pax(pax, name="a.txt", data=b"hi"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.pax_headers = len(data), h.MTIME, dict(pax)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_with_raw_pax(payload, name="a.txt", data=b"hi"):
    """A pax header holding payload exactly as given, then a regular file."""
    meta = tarfile.TarInfo("././@PaxHeader")
    meta.type, meta.size = tarfile.XHDTYPE, len(payload)
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), h.MTIME
    return b"".join(block + bytes(-len(block) % 512) for block in (
        meta.tobuf(tarfile.USTAR_FORMAT), payload, info.tobuf(tarfile.USTAR_FORMAT), data,
        bytes(1024)))


def tar_with_field(offset, field, name="a.txt", data=b"hi"):
    """A ustar archive whose first header has `field` at `offset`, with a valid checksum."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), h.MTIME
        tar.addfile(info, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    raw[offset:offset + len(field)] = field
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    return bytes(raw)


def base256(value):
    return b"\x80" + value.to_bytes(11, "big")


def zip_bytes(entries):
    """entries: (ZipInfo or name, data); ZipInfo fields are kept as given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buf.getvalue()


def zip_with_raw_name(name_bytes, flag_bits):
    """A one-member zip whose name bytes and flag bits are set after the fact (both headers)."""
    placeholder = b"N" * len(name_bytes)
    raw = bytearray(zip_bytes([(placeholder.decode(), b"data")]))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = raw.index(signature)
        raw[start + flags_at:start + flags_at + 2] = flag_bits.to_bytes(2, "little")
    return bytes(raw.replace(placeholder, name_bytes))


class FuzzFindingTests(h.BATestCase):

    def restore_each_engine(self, data, suffix=".tar"):
        """[(engine, exception or None)] of a restore of data into a fresh dest."""
        archive = h.write_bytes(os.path.join(self.src_dir, "assets" + suffix), data)
        results = []
        for engine in h.engines():
            dest = os.path.join(self.subdir(), "_assets")
            try:
                self.restore(archive, dest, engine=engine)
                results.append((engine, None, dest))
            except ba.BootstrapError as exc:
                self.assertFalse(os.path.lexists(dest), f"{engine}: dest left behind")
                self.assertEqual(h.staging_leftovers(dest), [])
                results.append((engine, exc, dest))
        return results

    def assertRefused(self, data, cls, words=(), suffix=".tar"):
        for engine, exc, _ in self.restore_each_engine(data, suffix):
            with self.subTest(engine=engine):
                self.assertIsInstance(exc, getattr(ba, cls), f"{engine}: {exc!r}")
                for word in words:
                    self.assertIn(word, str(exc))

    def assertRestores(self, data, files, suffix=".tar"):
        for engine, exc, dest in self.restore_each_engine(data, suffix):
            with self.subTest(engine=engine):
                self.assertIsNone(exc, f"{engine}: {exc}")
                for name, content in files.items():
                    with open(os.path.join(dest, name), "rb") as f:
                        self.assertEqual(f.read(), content)

    def test_negative_pax_size_is_corrupt_not_a_hang(self):
        """It used to make the tar reader spin forever: run it where a hang can be stopped."""
        archive = h.write_bytes(os.path.join(self.src_dir, "neg.tar"),
                                tar_with_pax({"size": "-1"}))
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                r = subprocess.run([sys.executable, h.MODULE_PATH, "--archive", archive,
                                    "--dest", dest, "--engine", engine, "--drive-mount", "",
                                    "--quiet"], capture_output=True, text=True, timeout=60,
                                   env=h.clean_env())
                self.assertEqual(r.returncode, 7, r.stderr)
                self.assertIn("a.txt", r.stderr)
                self.assertNotIn("Traceback", r.stderr)
                self.assertFalse(os.path.lexists(dest))

    def test_pax_mtime_not_a_number_is_corrupt(self):
        # GNU tar reads the leading digits of '1e30' or '999xxx1' and ignores the rest; Go
        # refuses the archive: a time partly garbage is a damaged header, and says the rule
        for value in ("inf", "-inf", "nan", "1e30", "-1e30", "999xxx9324.43", "1_0", " 5",
                      "+5", ".5", "-", "1.5.5"):
            with self.subTest(mtime=value):
                self.assertRefused(tar_with_pax({"mtime": value}), "CorruptArchive",
                                   ["a.txt", "pax time", "not a number", "rule"])

    def test_pax_mtime_far_out_of_range_is_clamped_and_restored(self):
        for value in ("9" * 40, "-" + "9" * 40, "99999999999999", "1" * 5000):
            with self.subTest(mtime=value):
                self.assertRestores(tar_with_pax({"mtime": value}), {"a.txt": b"hi"})

    def test_base256_mtime_out_of_time_t_range_is_clamped_and_restored(self):
        self.assertRestores(tar_with_field(136, base256(1 << 80)), {"a.txt": b"hi"})

    def test_absurd_size_field_is_a_damaged_header_not_a_full_disk(self):
        self.assertRefused(tar_with_field(124, base256(1 << 60)), "CorruptArchive",
                           ["a.txt", "damaged"])
        gz = h.compress(tar_with_field(124, base256(1 << 60)), "gz")
        self.assertRefused(gz, "CorruptArchive", ["a.txt"], suffix=".tar.gz")

    def test_symlink_with_an_empty_target_is_unsafe(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("empty-link")
            info.type, info.linkname = tarfile.SYMTYPE, ""
            tar.addfile(info)
        self.assertRefused(buf.getvalue(), "UnsafeArchive", ["empty-link"])

    def test_name_part_over_255_bytes_is_unsafe(self):
        self.assertRefused(tar_with_pax({"path": "d/" + "x" * 300}), "UnsafeArchive",
                           ["255"])

    def test_deeply_nested_deleted_list_is_corrupt(self):
        nested = ("[" * 100_000 + "]" * 100_000).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(".bootstrap_assets.deleted")
            info.size = len(nested)
            tar.addfile(info, io.BytesIO(nested))
            info = tarfile.TarInfo("a.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        self.assertRefused(buf.getvalue(), "CorruptArchive", [".bootstrap_assets.deleted"])

    def test_zip_member_with_an_empty_name_is_unsafe(self):
        self.assertRefused(zip_bytes([(zipfile.ZipInfo(""), b"data")]), "UnsafeArchive",
                           ["empty name"], suffix=".zip")

    def test_zip_utf8_flag_on_invalid_utf8_name_is_corrupt(self):
        self.assertRefused(zip_with_raw_name(b"bad\xff\xfename", 0x800), "CorruptArchive",
                           suffix=".zip")

    def test_encrypted_zip_says_encrypted(self):
        self.assertRefused(zip_with_raw_name(b"secret.bin", 0x1), "Unsupported",
                           ["encrypted"], suffix=".zip")

    def test_zip_member_without_type_bits_is_a_regular_file(self):
        """zipfile.ZipFile.writestr(name, data) leaves mode 0o600 with no file-type bits."""
        info = zipfile.ZipInfo("weights.bin", (2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o600 << 16
        self.assertRestores(zip_bytes([(info, b"tensor"), ("notes.txt", b"n")]),
                            {"weights.bin": b"tensor", "notes.txt": b"n"}, suffix=".zip")

    def test_a_folder_named_like_the_marker_is_unsafe_not_a_write_failure(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(".bootstrap_assets.json")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            info = tarfile.TarInfo("a.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        self.assertRefused(buf.getvalue(), "UnsafeArchive", [".bootstrap_assets.json"])

    def test_zip_strong_encryption_flag_says_encrypted(self):
        self.assertRefused(zip_with_raw_name(b"secret.bin", 0x41), "Unsupported",
                           ["encrypted"], suffix=".zip")

    def test_zip_bzip2_member_that_does_not_decompress_is_corrupt(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_BZIP2) as archive:
            archive.writestr("weights.bin", h.rand_bytes(50_000, 3))
        raw = bytearray(buf.getvalue())
        start = raw.index(b"BZh") + 10
        raw[start:start + 64] = bytes(64)
        self.assertRefused(bytes(raw), "CorruptArchive", suffix=".zip")

    def test_symlink_to_a_path_longer_than_path_max_is_unsafe(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("long-link")
            info.type, info.linkname = tarfile.SYMTYPE, "a/" * 2100
            tar.addfile(info)
        self.assertRefused(buf.getvalue(), "UnsafeArchive", ["long-link"])

    # ---- deep trees and paths past PATH_MAX ------------------------------------------
    def test_folders_nested_deeper_than_python_recursion_restore_and_clean_up(self):
        """1,200 nested folders: extracted, replaced by a second restore and removed after a
        refusal, with each engine (shutil.rmtree's recursion stopped at ~1,000 before 3.13)."""
        deep = "d/" * 1200
        good = h.tar_bytes([h.F(deep + "f.txt", b"deep"), h.F("top.txt", b"top")])
        hostile = h.tar_bytes([h.F(deep + "f.txt", b"deep"), h.F("../escape.txt", b"x")])
        archive = h.write_bytes(os.path.join(self.src_dir, "deep.tar"), good)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(1000)  # the interpreter's default (an IPython import raises it)
        self.addCleanup(sys.setrecursionlimit, limit)
        for engine in h.engines():
            with self.subTest(engine=engine):
                dest = os.path.join(self.subdir(), "_assets")
                self.addCleanup(ba._remove_tree, os.path.dirname(dest))
                self.restore(archive, dest, engine=engine)
                with open(os.path.join(dest, deep, "f.txt"), "rb") as f:
                    self.assertEqual(f.read(), b"deep")
                self.restore(archive, dest, engine=engine, force=True)  # the old tree goes
                self.assertEqual(h.staging_leftovers(dest), [])
        self.assertRefused(hostile, "UnsafeArchive", ["escape.txt"])

    def test_path_longer_than_path_max_is_unsafe(self):
        deep = "d/" * 2100 + "f"
        self.assertRefused(tar_with_pax({"path": deep}), "UnsafeArchive", ["4,095"])
        self.assertRefused(zip_bytes([(deep, b"data")]), "UnsafeArchive", ["4,095"],
                           suffix=".zip")

    def test_writing_through_a_link_is_caught_by_the_python_writer_too(self):
        """The writer's own check, beside the tree model: were the model to miss a link in
        a member's parents, the writer still refuses to write through it."""
        data = h.tar_bytes([h.D("sub"), h.L("via", "sub"), h.F("via/x.txt", b"x")])
        archive = h.write_bytes(os.path.join(self.src_dir, "via.tar"), data)
        with mock.patch.object(ba._TreeModel, "check_parents", lambda *_: None):
            self.assertBAError("UnsafeArchive", self.restore, archive, engine="python")
        self.assertFalse(os.path.lexists(self.dest))

    # ---- what GNU tar refuses is refused first, or never reaches it -------------------
    def test_malformed_pax_records_are_corrupt_with_each_engine(self):
        for payload in (b"999999 path=x\n", b"12 path=\xff\n", b"99999999999999999999999 p=x\n",
                        b"+9 path=x\n", b"9 path=x\n\n"):
            with self.subTest(payload=payload):
                self.assertRefused(tar_with_raw_pax(payload), "CorruptArchive")

    def test_pax_size_that_is_not_plain_digits_is_corrupt(self):
        for value in (" 5", "+2", "1_0", "0x2", "2 "):
            with self.subTest(size=value):
                self.assertRefused(tar_with_pax({"size": value}), "CorruptArchive", ["a.txt"])

    def test_header_number_fields_gnu_tar_cannot_read_are_corrupt(self):
        for field in (b"+10\0", b"-1\0", b"1_0\0", b" " * 12, b"12a\0"):
            with self.subTest(size=field):
                self.assertRefused(tar_with_field(124, field), "CorruptArchive", ["size"])

    def test_records_only_gnu_tar_reads_are_ignored_by_both_engines(self):
        """uid, gid and atime are not ours to apply: values GNU tar rejects restore anyway."""
        for pax in ({"uid": "-1"}, {"uid": "99999999999999999999"}, {"gid": "-5"},
                    {"atime": "inf"}, {"atime": "nan"}, {"ctime": "x"}):
            with self.subTest(pax=pax):
                self.assertRestores(tar_with_pax(pax), {"a.txt": b"hi"})

    def test_mtimes_out_of_gnu_tar_range_are_clamped_with_each_engine(self):
        for value in ("9" * 40, "-" + "9" * 40):
            with self.subTest(mtime=value):
                self.assertRestores(tar_with_pax({"mtime": value}), {"a.txt": b"hi"})
        # the header's own field out of time_t range, under a pax mtime that overrides it
        raw = bytearray(tar_with_pax({"mtime": "1600000000.5"}))
        member = raw.index(b"a.txt")
        raw[member + 136:member + 148] = b"\xff" * 12
        raw[member + 136] = 0x80
        raw[member + 148:member + 156] = b" " * 8
        raw[member + 148:member + 156] = b"%06o\0 " % sum(raw[member:member + 512])
        self.assertRestores(bytes(raw), {"a.txt": b"hi"})

    def test_both_engines_give_a_file_the_same_nanosecond(self):
        for value in ("1600000000.123456789012", "1600000000.5", "-1.25", "9" * 40):
            with self.subTest(mtime=value):
                times = {engine: os.stat(os.path.join(dest, "a.txt")).st_mtime_ns
                         for engine, exc, dest in
                         self.restore_each_engine(tar_with_pax({"mtime": value}))}
                self.assertEqual(len(set(times.values())), 1, times)

    def test_folder_deleted_mid_archive_then_named_again_is_made_anew(self):
        """A list of deleted paths after members: what came before is gone (with tar, after
        it was written), and a later member in the deleted folder makes the folder again."""
        listing = b'["top"]'
        data = h.tar_bytes([h.F("top/a/x.txt", b"x"), h.F(".bootstrap_assets.deleted", listing),
                            h.F("top/b.txt", b"b")])
        self.assertRestores(data, {"b.txt": b"b"})
        for engine, exc, dest in self.restore_each_engine(data):
            with self.subTest(engine=engine):
                self.assertEqual(sorted(os.listdir(dest)), [".bootstrap_assets.json", "b.txt"])

    def test_size_beyond_any_file_is_damage_with_unbounded_compression(self):
        """xz (like bzip2 and zstd) has no bound on expansion to judge a size by: a member
        declaring more than a file can hold is still a damaged header, not a full disk."""
        for comp in ("xz", "bz2"):
            with self.subTest(comp=comp):
                data = h.compress(tar_with_pax({"size": "9" * 20}), comp)
                self.assertRefused(data, "CorruptArchive", ["a.txt", "damaged"],
                                   suffix=".tar." + comp)

    def test_zeros_after_a_zstd_stream_are_ignored_as_after_gzip(self):
        """Padding after the last stream restores with every compression, whether zstd is
        read by Python (3.14+) or by the zstd program."""
        data = h.tar_bytes([h.F("a.txt", b"hi")])
        for comp in ("gz", "zst"):
            for zeros in (1, 4096):
                with self.subTest(comp=comp, zeros=zeros):
                    self.assertRestores(h.compress(data, comp) + bytes(zeros), {"a.txt": b"hi"},
                                        suffix=".tar." + comp)

    def test_huge_size_field_with_unbounded_compression_is_damage_when_the_data_is_missing(self):
        """A 1 TiB member in a tiny xz, bzip2 or zstd archive: those shrink zeros without
        end, so its data decides; here it is missing, so the archive is damaged (exit 7),
        not in need of a larger disk (exit 8)."""
        for comp in ("xz", "bz2", "zst"):
            with self.subTest(comp=comp):
                data = h.compress(tar_with_field(124, base256(1 << 40)), comp)
                self.assertRefused(data, "CorruptArchive", ["truncated"], suffix=".tar." + comp)

    def test_member_larger_than_the_free_space_is_no_space(self):
        """Real data beyond the free space: exit 8 with every compression, before the disk
        fills (for xz, bzip2 and zstd once the data is seen to be there)."""
        data = h.tar_bytes([h.F("big.bin", bytes(12 << 20))])
        room = ba.SPACE_MARGIN + (4 << 20)
        with mock.patch.object(ba, "_free_bytes", lambda path: room):
            for comp in ("tar", "gz", "xz", "bz2", "zst"):
                with self.subTest(comp=comp):
                    suffix = ".tar" if comp == "tar" else ".tar." + comp
                    self.assertRefused(h.compress(data, comp), "NoSpace", suffix=suffix)
