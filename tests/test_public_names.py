"""The module's public face: __all__ names exactly what a user may import."""
import inspect
import unittest

import bootstrap_assets as ba


class PublicNamesTests(unittest.TestCase):
    def test_all_names_exist(self):
        self.assertEqual([name for name in ba.__all__ if not hasattr(ba, name)], [])

    def test_every_public_function_and_class_is_in_all(self):
        defined_here = {name for name, value in vars(ba).items()
                        if not name.startswith("_")
                        and (inspect.isfunction(value) or inspect.isclass(value))
                        and getattr(value, "__module__", None) == ba.__name__}
        self.assertEqual(sorted(defined_here - set(ba.__all__)), [])

    def test_star_import_gives_the_operations_and_errors(self):
        namespace = {}
        exec("from bootstrap_assets import *", namespace)
        for name in ("restore", "save", "status", "autosave", "main", "BootstrapError"):
            self.assertIn(name, namespace)
        self.assertNotIn("_run", namespace)


if __name__ == "__main__":
    unittest.main()
