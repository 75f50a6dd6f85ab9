"""What every reader yields and shares: the raw item with its location, the parse failure a bad record
becomes, the part of a file one process reads, and the helpers for bytes and JSON lines.

Readers stream ``RawItem``s (the parsed object plus where it came from). A record that cannot be
parsed is yielded as a ``ParseFailure`` rather than raised, so the caller decides per source whether
that stops the build or is dropped and counted (``on_error: skip``). Problems that make the rest of
a file unreadable (a truncated JSON array, an unreadable Parquet footer) raise ``InputError``.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.core.errors import InputError, Location

#: what reading a damaged file raises below the format's parser: an OS error, a gzip stream cut short
#: (EOFError) or not gzip at all (``gzip.BadGzipFile``, an OSError), or a damaged deflate block inside it
#: (``zlib.error``, which is no OSError)
READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class ParseFailure:
    """A raw record that is not valid in its file's format."""


    problem: str
    text: str


@dataclass(frozen=True)
class FilePart:
    """Part ``index`` of ``count`` equal parts of a file, so one large file can be read by several
    processes: JSONL by byte range (a line belongs to the part its first byte falls in), a JSON array
    by byte range too (an element belongs to the part its first byte falls in), Parquet by row range.
    Locations (line numbers, record ordinals) stay those of the whole file."""

    index: int
    count: int

    def bounds(self, total: int) -> tuple[int, int]:
        return total * self.index // self.count, total * (self.index + 1) // self.count


@dataclass(frozen=True)
class RawItem:
    """``location.record`` is always the 0-based ordinal of the record in its file."""

    value: Any  # the parsed raw record, or a ParseFailure
    location: Location


def open_bytes(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def check_not_compressed(path: Path, fmt: str) -> None:
    """A gzip file whose name does not end in ``.gz`` (a download saved under its decompressed name) is
    named as such: read as it is, it only surfaces as "not valid UTF-8 (byte 0x8b)" on its first line."""
    if path.suffix == ".gz" or path.is_dir():
        return
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return
    fix = (f"rename it to {path.name}.gz (mixer reads gzipped {fmt.upper()} as it is) or decompress it"
           if fmt in ("jsonl", "json", "csv") else f"decompress it ({fmt} files are read uncompressed)")
    raise InputError(str(path), f"the file is gzip-compressed but its name does not end in .gz: {fix}")


def json_problem(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"not valid UTF-8 (byte 0x{line[u.start]:02x} at column {u.start + 1})"
    if isinstance(err, json.JSONDecodeError):
        # the decoder counts lines inside the one text it was given (always "line 1" for a JSONL line),
        # which beside the file's own line number reads as a second, conflicting one: say the column only
        return f"malformed JSON at column {err.pos + 1}: {err.msg}"
    return f"malformed JSON ({err})"


def safe_text(data: bytes, limit: int = 2000) -> str:
    return data[:limit].decode("utf-8", errors="replace")


def with_lone_surrogates(line: bytes, error: Exception) -> Any | None:
    """A JSON line orjson refused only for a lone surrogate escape (``"\\ud800"``), parsed as the JSON
    standard and Python's json allow; None for any other problem. JSON arrays (parsed by Python's json
    when walked) already pass such strings on, so both formats reach the one rule for them: the adapters'
    check drops the record as ``invalid_text`` (``mixer.sources.base.invalid_record``)."""
    if "surrogate" not in str(error):
        return None
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return names.get(type(value), type(value).__name__)
