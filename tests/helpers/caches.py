"""Checks on the read cache and the token cache left by a build."""

from __future__ import annotations

from pathlib import Path

from mixer.stages.read_cache import verify_entry
from mixer.tokens.cache import verify_counts_dir


def assert_caches_valid(cache: Path) -> None:
    """Every entry in both caches is complete and verified (or absent)."""
    for entry in (cache / "reads").iterdir() if (cache / "reads").exists() else ():
        if not entry.name.startswith("."):
            assert verify_entry(entry) is None, entry
    for folder in (cache / "tokens").iterdir() if (cache / "tokens").exists() else ():
        assert verify_counts_dir(folder) == [], folder
