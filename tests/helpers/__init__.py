"""Helpers that test files in several folders share (fixtures and ``ROOT`` are in ``tests/conftest.py``).

Imported as ``from helpers.near import split_tiny``: pytest puts ``tests/`` on ``sys.path`` when it
loads ``tests/conftest.py``."""
