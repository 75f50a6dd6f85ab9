"""Which reader a raw file gets: the format from the file's name (and, for ``.json``, its first bytes),
whether it can be read in parts, and ``read_raw``, the one entry point the adapters use.

The readers themselves are one module per format: ``jsonl``, ``json_array`` (the streaming parser),
``tabular`` (Parquet, XLSX, CSV); what they yield is ``mixer.readers.base``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from mixer.core.digest import file_digest
from mixer.core.errors import InputError
from mixer.core.stats import FileInfo
from mixer.readers import json_array as json_array_reader
from mixer.readers.base import READ_ERRORS, FilePart, RawItem, check_not_compressed, open_bytes
from mixer.readers.jsonl import read_jsonl
from mixer.readers.tabular import read_csv, read_parquet, read_xlsx


def file_info(path: Path) -> FileInfo:
    """Size and sha256 of one file (the card's provenance, the read cache's key, the shards' hashes)."""
    sha256, size = file_digest(path)
    return FileInfo(path=str(path), bytes=size, sha256=sha256)


def splittable(path: Path) -> bool:
    """Whether ``read_raw`` can read the file in parts (plain JSONL and Parquet, and plain JSON arrays
    large enough to be streamed: ``json_array.STREAM_MIN_BYTES``)."""
    if path.suffix == ".gz" or not path.exists():
        return False
    if json_array(path):
        return path.stat().st_size >= json_array_reader.STREAM_MIN_BYTES
    return file_format(path) in ("parquet", "jsonl", "json")


def json_array(path: Path) -> bool:
    """Whether ``read_raw`` reads the file as one JSON array (a ``.json`` file not holding JSON Lines).
    Each part of such a file walks every element before it (its ordinals and lines are counted, not
    known), so it is worth cutting into only as many parts as there are processes to read them."""
    return file_format(path) == "json" and not _looks_like_jsonl(path)


def file_format(path: Path) -> str:
    """The format implied by a file name (``.gz`` is looked through)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".jsonl", "jsonl"), (".json", "json"), (".parquet", "parquet"),
                        (".xlsx", "xlsx"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    raise InputError(str(path), "unknown file type; expected .jsonl, .json, .parquet, .xlsx or .csv")


def read_raw(path: Path, columns: Sequence[str] | None = None, part: FilePart | None = None) -> Iterator[RawItem]:
    """Stream the raw records of one file (or of one part of it, see ``splittable``), choosing the
    reader from the file name.

    A ``.json`` file holding JSON Lines (as some re-uploads do) is read as JSONL.
    """
    if not path.exists():
        raise InputError(str(path), "file not found")
    fmt = file_format(path)
    check_not_compressed(path, fmt)
    if fmt == "json" and _looks_like_jsonl(path):
        fmt = "jsonl"
    if part is not None and part.count == 1:
        part = None  # the one part of a file is the whole file, whatever its format
    if part is not None and not splittable(path):
        raise ValueError(f"{path}: only plain JSONL, Parquet and large JSON-array files can be read in parts")
    if fmt == "parquet":
        yield from read_parquet(path, columns, part=part)
    elif fmt == "jsonl":
        yield from read_jsonl(path, part)
    elif fmt == "json":
        yield from json_array_reader.read_json_array(path, part)
    else:
        yield from {"xlsx": read_xlsx, "csv": read_csv}[fmt](path)


def _looks_like_jsonl(path: Path) -> bool:
    try:
        with open_bytes(path) as f:
            head = f.read(64).lstrip()
    except READ_ERRORS as e:  # a damaged .gz: said as the readers say it
        raise InputError(str(path), f"cannot read file: {e}") from None
    return head.startswith(b"{")
