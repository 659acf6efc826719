"""The module docstring's map of bootstrap_assets.py lists every section banner, in file
order, so that it cannot drift from the file it describes."""
import os
import re
import unittest

import bootstrap_assets as ba

BANNER = re.compile(r"^# -+ (.+?) --$")
MAP_HEADING = "The file, top to bottom"


def banners(text):
    """The titles of the `# ---- title --` lines, in file order."""
    return [m.group(1) for m in map(BANNER.match, text.splitlines()) if m]


def map_titles(docstring):
    """The section names of the docstring's map: the first column of its indented lines."""
    lines = docstring.split(MAP_HEADING, 1)[1].splitlines()[1:]
    return [re.split(r"\s{2,}", line.strip())[0] for line in lines if line.startswith("    ")]


class FileMapTests(unittest.TestCase):
    def setUp(self):
        with open(os.path.abspath(ba.__file__), encoding="utf-8") as f:
            self.source = f.read()

    def test_the_docstring_has_a_map(self):
        self.assertIn(MAP_HEADING, ba.__doc__)

    def test_the_map_lists_every_banner_in_file_order(self):
        self.assertGreater(len(banners(self.source)), 10)
        self.assertEqual(map_titles(ba.__doc__), banners(self.source))

    def test_a_banner_missing_from_the_map_is_caught(self):
        moved = re.sub(r"(?m)^(# -+) install --$", r"\1 installing --", self.source, count=1)
        self.assertNotEqual(moved, self.source)
        self.assertNotEqual(map_titles(ba.__doc__), banners(moved))

    def test_the_map_ends_the_docstring(self):
        self.assertEqual(ba.__doc__.rstrip().splitlines()[-1].split()[0], "CLI")


if __name__ == "__main__":
    unittest.main()
