"""bench/bench.py's chart: drawn from a report's table, as SVG that parses, one bar per row it
finds, with the run's date and commit in its text; re-drawn from bench/RESULTS.md."""
import os
import sys
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "bench"))

import bench  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
REPORT = """## bootstrap_assets benchmark

- date: 2026-01-02T03:04:05
- python: 3.11.7 (/usr/bin/python3); code: commit abc1234
- command: python3 bench/bench.py --scale 0.05 --runs 1
- data: mixed profile, scale 0.05: 404 files, 72.0 MB; assets.tar.gz 68.0 MB
- runs: median of 1; drivesim at defaults

| method | median s | CPU s | MB read off mount | MB written to mount | baseline | ratio | target | result |
|---|---:|---:|---:|---:|---|---:|---|---|
| drive: cat archive > /dev/null | 2.00 | 0.10 | 68.0 |  |  |  |  |  |
| drive: seed_restore.py (cp + extractall) | 3.00 | 1.00 | 68.0 |  | cat archive > /dev/null | 1.50 | (info) |  |
| drive: ours --engine python (the default) | 2.10 | 1.00 | 68.0 |  | cat archive > /dev/null | 1.05 | <= 1.10 x | pass |
| drive: ours --engine tar | 2.20 | 1.20 | 68.0 |  | cat archive > /dev/null | 1.10 | (info) |  |
| drive: dd if=local of=MNT/x bs=1M conv=fsync | 4.00 | 0.30 | 0.0 | 72.0 |  |  |  |  |
| drive: ours save --full | 4.40 | 1.00 | 72.0 | 72.0 | dd if=local of=MNT/x bs=1M conv=fsync | 1.10 | <= 1.15 x | pass |
| drive: ours save --full --no-verify | 4.30 | 1.00 | 0.0 | 72.0 | dd if=local of=MNT/x bs=1M conv=fsync | 1.08 | <= 1.15 x | pass |
| peak RSS of our restore (worst: x) | 70.0 MiB | | | | | | < 100 MiB | pass |
"""


def bars(svg):
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(SVG + "text")]
    fills = [r.get("fill") for r in root.iter(SVG + "rect")
             if r.get("height") not in ("12", None) and r.get("width") != root.get("width")]
    return texts, fills


class ChartTest(unittest.TestCase):
    def test_draws_the_drive_rows_it_finds(self):
        texts, fills = bars(bench.render_svg(REPORT))
        colours = bench.CHART_COLOURS
        # one file: cat, seed, ours; save: dd, ours (--no-verify and the tar engine not drawn)
        self.assertEqual(fills, [colours["limit"], colours["seed"], colours["ours"],
                                 colours["limit"], colours["ours"]])
        self.assertIn("3.00 s  (1.50 x)", texts)
        self.assertIn("4.40 s  (1.10 x)", texts)
        self.assertNotIn("4.30 s  (1.08 x)", texts)
        self.assertTrue(any("2026-01-02 03:04" in t and "commit abc1234" in t for t in texts),
                        texts)
        self.assertTrue(any(t.startswith("python3 bench/bench.py --scale 0.05") for t in texts))
        self.assertFalse(any("parts" in t for t in texts), "no split rows, no split group")

    def test_a_report_without_results_is_refused(self):
        with self.assertRaisesRegex(ValueError, "no benchmark report"):
            bench.render_svg("# nothing here\n")
        with self.assertRaisesRegex(ValueError, "none of the drive rows"):
            bench.render_svg(REPORT.replace("drive:", "local:"))

    def test_results_md_newest_run_is_drawn(self):
        with open(os.path.join(REPO, "bench", "RESULTS.md")) as f:
            text = f.read()
        info, rows = bench.parse_report(text)
        first_run = text.index("\n### Run of ") + 1
        self.assertIn(info["date"].split()[0], text[first_run:first_run + 40])
        self.assertIn(f"commit {info['commit']}", text[first_run:text.index("\n", first_run)])
        texts, fills = bars(bench.render_svg(text))
        self.assertGreaterEqual(len(fills), 5)


if __name__ == "__main__":
    unittest.main()
