"""Helpers shared by the adapter tests."""

from __future__ import annotations

from pathlib import Path

from mixer.core.records import Record
from mixer.readers.raw import ParseFailure
from mixer.sources.base import Adapter


def read_all(adapter: Adapter, path: Path) -> list[Record]:
    """Every record (and adapter-level drop) an adapter makes of a file; parse failures fail the test."""
    out: list[Record] = []
    for item in adapter.read_file(path):
        assert not isinstance(item.value, ParseFailure), item.value
        out.extend(adapter.convert(item.value, item.location))
    return out
