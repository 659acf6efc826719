"""A stand-in for Colab's `google.colab` package, for tests only: see drive.py."""
