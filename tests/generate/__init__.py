"""Tests of `mixer generate` (a package, so its conftest does not shadow tests/conftest.py)."""
