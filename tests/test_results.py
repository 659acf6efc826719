"""The API's records: every exception class with its exit code, and the RestoreResult and
SaveResult that restore() and save() return."""

import helpers as h
from helpers import ba


class ResultRecordTests(h.BATestCase):
    """RestoreResult and SaveResult: keyword fields with defaults, fresh lists, a repr."""

    def test_fields_defaults_and_repr(self):
        first = ba.RestoreResult(action="restored", archive="a.tar", dest="/d")
        second = ba.RestoreResult(action="restored", archive="a.tar", dest="/d")
        self.assertEqual(first, second)
        first.local_changes.append("x")
        self.assertEqual(second.local_changes, [], "a list default is shared between results")
        self.assertEqual((first.files, first.sha256, first.verified), (0, None, False))
        self.assertTrue(repr(second).startswith(
            "RestoreResult(action='restored', archive='a.tar', dest='/d', archive_bytes=0"))
        with self.assertRaisesRegex(TypeError, "needs the field 'archive'"):
            ba.SaveResult(action="saved")
        with self.assertRaisesRegex(TypeError, "has no field 'bogus'"):
            ba.SaveResult(action="saved", archive="a.tar", bogus=1)


class ExceptionTableTests(h.BATestCase):

    def test_every_exception_has_its_documented_exit_code(self):
        for name, code in h.EXIT_CODES.items():
            with self.subTest(cls=name):
                cls = getattr(ba, name)
                self.assertTrue(issubclass(cls, ba.BootstrapError))
                self.assertTrue(issubclass(cls, Exception))
                self.assertEqual(cls.exit_code, code)


if __name__ == "__main__":
    import unittest
    unittest.main()
