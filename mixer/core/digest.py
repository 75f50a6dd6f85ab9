"""sha256 of files, read in 4 MiB chunks: input provenance, recipe pins and cache-entry checksums all
hash the same way. Imports nothing from mixer."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 22


def file_digest(path: Path | str) -> tuple[str, int]:
    """``(sha256 hex, size in bytes)`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def file_sha256(path: Path | str) -> str:
    """The sha256 hex digest of a file."""
    return file_digest(path)[0]
