"""examples/: the notebooks are committed clean (no outputs, no execution counts) and valid
nbformat 4; tests/e2e_kernel.py executes them."""
import json
import os
import unittest

import helpers as h

EXAMPLES = os.path.join(h.REPO, "examples")


class ExampleNotebookTests(unittest.TestCase):
    def test_notebooks_are_committed_clean(self):
        names = sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".ipynb"))
        self.assertIn("colab_quickstart.ipynb", names)
        for name in names:
            with self.subTest(notebook=name):
                with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
                    notebook = json.load(f)
                self.assertEqual(notebook["nbformat"], 4)
                self.assertEqual(notebook["metadata"]["kernelspec"]["name"], "python3")
                for cell in notebook["cells"]:
                    self.assertIn(cell["cell_type"], ("markdown", "code"))
                    if cell["cell_type"] == "code":
                        self.assertEqual(cell["outputs"], [], cell["source"])
                        self.assertIsNone(cell["execution_count"], cell["source"])
