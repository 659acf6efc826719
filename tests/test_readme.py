"""The README and docs/ cannot drift from the code: every flag of every command, every command,
every exit code (each with its Troubleshooting section in the README, which every error
message names, and its section of every message in docs/troubleshooting.md), every
environment variable bootstrap_assets.py reads, and the list of retried errnos appear in the
README; and every relative link between README.md and docs/ leads to a file and heading
that exist."""
import argparse
import ast
import errno
import inspect
import os
import re
import unittest
from unittest import mock

import helpers as h
from helpers import ba

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = [README, os.path.join(REPO, "docs", "reference.md"),
        os.path.join(REPO, "docs", "troubleshooting.md")]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def readme():
    return read(README)


def anchors(text):
    """GitHub's anchors for a Markdown file's headings (lower case, punctuation dropped,
    spaces to dashes), ignoring lines inside code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


def parser_flags(parser, command="(top level)"):
    """{flag: {commands}} for the parser and each of its subcommands' parsers."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for flag, where in parser_flags(sub, name).items():
                    flags.setdefault(flag, set()).update(where)
        for flag in action.option_strings:
            flags.setdefault(flag, set()).add(command)
    return flags


def subcommands(parser):
    return {name for action in parser._actions
            if isinstance(action, argparse._SubParsersAction) for name in action.choices}


def undocumented_flags(parser, text):
    """The parser's flags the README never writes as `--flag…` (in backticks)."""
    return sorted(f"{flag} ({', '.join(sorted(where))})"
                  for flag, where in parser_flags(parser).items()
                  if not re.search("`" + re.escape(flag) + r"(?![\w-])", text))


def exit_codes():
    """Every exit code: the exception classes' and the ones _run returns itself (0, 130)."""
    classes, todo = set(), [ba.BootstrapError]
    while todo:
        cls = todo.pop()
        classes.add(cls)
        todo.extend(cls.__subclasses__())
    returned = {int(code) for code in re.findall(r"return (\d+),", inspect.getsource(ba._run))}
    return {cls.exit_code for cls in classes} | returned


def environment_variables():
    """The names bootstrap_assets.py reads from the environment: the ENV_* settings and every
    upper-case string literal in a statement that touches os.environ or os.getenv."""
    with open(ba.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = {value for name, value in vars(ba).items()
             if name.startswith("ENV_") and isinstance(value, str)}

    def touches_environment(node):
        return any(isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv")
                   and isinstance(n.value, ast.Name) and n.value.id == "os"
                   for n in ast.walk(node))

    for statement in ast.walk(tree):
        if not isinstance(statement, ast.stmt) or isinstance(
                statement, (ast.FunctionDef, ast.ClassDef, ast.If, ast.For, ast.While,
                            ast.With, ast.Try)):
            continue  # the smallest statements only, not the blocks that hold them
        if touches_environment(statement):
            for node in ast.walk(statement):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", node.value):
                    names.add(node.value)
    return names


class ReadmeDriftTests(unittest.TestCase):
    maxDiff = None

    def test_every_flag_is_documented(self):
        self.assertEqual(undocumented_flags(ba._parser(), readme()), [],
                         "flags missing from README.md (write each as `--flag` in a table)")

    def test_a_flag_added_without_docs_is_caught(self):
        parser = ba._parser()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.choices["save"].add_argument("--undocumented-for-this-test")
        self.assertEqual(undocumented_flags(parser, readme()),
                         ["--undocumented-for-this-test (save)"])

    def test_every_command_is_documented(self):
        text = readme()
        commands = subcommands(ba._parser())
        self.assertEqual(commands, set(ba.COMMANDS))
        self.assertEqual([c for c in sorted(commands) if f"`{c}`" not in text], [])

    def test_every_exit_code_is_in_the_table_and_has_a_troubleshooting_section(self):
        text = readme()
        codes = exit_codes()
        self.assertTrue({0, 1, 2, 11, 130} <= codes, codes)
        table = text[text.index("### Exit codes"):]
        table = table[:table.index("\n\n", table.index("| code |"))]
        self.assertEqual(sorted(int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)),
                         sorted(codes))
        self.assertEqual(sorted(ba.TROUBLESHOOTING), sorted(codes - {0}))
        trouble = text[text.index("\n## Troubleshooting"):]
        trouble = trouble[:trouble.index("\n## ", 1)]
        headings = re.findall(r"^### (exit \d+: .*)$", trouble, re.M)
        self.assertEqual(headings, [f"exit {code}: {ba.TROUBLESHOOTING[code]}"
                                    for code in sorted(codes - {0})])
        every_message = re.findall(r"^## (exit \d+: .*)$", read(DOCS[2]), re.M)
        self.assertEqual(every_message, headings, "docs/troubleshooting.md's sections")

    def test_relative_links_lead_to_files_and_headings_that_exist(self):
        broken = []
        for path in DOCS:
            text = read(path)
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target):
                    continue
                file, _, anchor = target.partition("#")
                linked = os.path.normpath(os.path.join(os.path.dirname(path), file)) \
                    if file else path
                if not os.path.exists(linked):
                    broken.append(f"{os.path.relpath(path, REPO)}: {target} (no such file)")
                elif anchor and linked.endswith(".md") and anchor not in anchors(read(linked)):
                    broken.append(f"{os.path.relpath(path, REPO)}: {target} (no such heading)")
        self.assertEqual(broken, [])

    def test_every_environment_variable_is_documented(self):
        text = readme()
        names = environment_variables()
        self.assertTrue({ba.ENV_ARCHIVE, ba.ENV_DEST, "TAR_OPTIONS", "JPY_PARENT_PID"} <= names,
                        names)
        self.assertEqual(sorted(n for n in names
                                if not re.search(rf"(?<![A-Z0-9_]){n}(?![A-Z0-9_])", text)),
                         [], "environment variables missing from README.md")

    def test_the_retried_errnos_are_the_ones_retried(self):
        found = re.search(r"the retried errors: ([^)]*)\)", readme())
        self.assertIsNotNone(found, "README.md has no 'the retried errors: ...' list")
        names = re.findall(r"`(E[A-Z]+)`", found[1])
        self.assertEqual(len(names), len(set(names)), names)
        self.assertTrue(all(hasattr(errno, n) for n in names), names)
        self.assertEqual({getattr(errno, n) for n in names}, set(ba.TRANSIENT_ERRNOS))


class ErrorPointerTests(h.BATestCase):
    """Each error message ends with one line naming its Troubleshooting section."""

    def assertPoints(self, err, code):
        lines = err.rstrip("\n").split("\n")
        self.assertEqual(lines[-1], f'(see README.md, Troubleshooting, "exit {code}: '
                                    f'{ba.TROUBLESHOOTING[code]}")', err)
        self.assertIn(f"\n### exit {code}: {ba.TROUBLESHOOTING[code]}\n", readme())
        self.assertEqual(sum(line.startswith("bootstrap_assets: ") for line in lines), 1, err)

    def test_usage_error_points_to_its_readme_section(self):
        rc, out, err = self.run_main(["restore", "--no-such-flag"])
        self.assertEqual(rc, 2, err)
        self.assertTrue(err.startswith("bootstrap_assets: error: unrecognized arguments"), err)
        self.assertPoints(err, 2)

    def test_missing_archive_points_to_its_readme_section(self):
        rc, out, err = self.run_main(["--archive", os.path.join(self.src_dir, "none.tar"),
                                      "--dest", self.dest, "--drive-mount", self.tmp + "/no"])
        self.assertEqual(rc, 3, err)
        self.assertIn("does not exist", err)
        self.assertPoints(err, 3)

    def test_operating_system_error_points_to_its_readme_section(self):
        with mock.patch.object(ba, "restore", side_effect=PermissionError(13, "denied", "/x")):
            rc, out, err = self.run_main(["--archive", "/x", "--dest", self.dest])
        self.assertEqual(rc, 1, err)
        self.assertIn("[Errno 13] denied: '/x'", err)
        self.assertPoints(err, 1)

    def test_ctrl_c_points_to_its_readme_section(self):
        with mock.patch.object(ba, "restore", side_effect=KeyboardInterrupt):
            rc, out, err = self.run_main(["--archive", "/x", "--dest", self.dest])
        self.assertEqual(rc, 130, err)
        self.assertTrue(err.startswith("bootstrap_assets: interrupted"), err)
        self.assertPoints(err, 130)

    def test_an_exit_code_without_a_section_still_names_troubleshooting(self):
        self.assertEqual(ba._error_text("error: x", 99).split("\n")[-1],
                         "(see README.md, Troubleshooting, exit 99)")


if __name__ == "__main__":
    unittest.main()
