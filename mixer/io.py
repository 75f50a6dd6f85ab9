"""Readers for raw files exactly as published: JSONL, JSON arrays, Parquet, XLSX and CSV.

Readers stream ``RawItem``s (the parsed object plus where it came from). A record that cannot be
parsed is yielded as a ``ParseFailure`` rather than raised, so the caller decides per source whether
that stops the build or is dropped and counted (``on_error: skip``). Problems that make the rest of
a file unreadable (a truncated JSON array, an unreadable Parquet footer) raise ``InputError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mixer.digest import file_digest
from mixer.errors import InputError, Location
from mixer.stats import FileInfo

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ParseFailure:
    """A raw record that is not valid in its file's format."""


    problem: str
    text: str


@dataclass(frozen=True)
class FilePart:
    """Part ``index`` of ``count`` equal parts of a file, so one large file can be read by several
    processes: JSONL by byte range (a line belongs to the part its first byte falls in), Parquet by
    row range. Locations (line numbers, record ordinals) stay those of the whole file."""

    index: int
    count: int

    def bounds(self, total: int) -> tuple[int, int]:
        return total * self.index // self.count, total * (self.index + 1) // self.count


def file_info(path: Path) -> FileInfo:
    """Size and sha256 of one file (the card's provenance, the read cache's key, the shards' hashes)."""
    sha256, size = file_digest(path)
    return FileInfo(path=str(path), bytes=size, sha256=sha256)


def splittable(path: Path) -> bool:
    """Whether ``read_raw`` can read the file in parts (plain JSONL and Parquet)."""
    if path.suffix == ".gz" or not path.exists():
        return False
    fmt = file_format(path)
    return fmt == "parquet" or fmt == "jsonl" or (fmt == "json" and _looks_like_jsonl(path))


@dataclass(frozen=True)
class RawItem:
    """``location.record`` is always the 0-based ordinal of the record in its file."""

    value: Any  # the parsed raw record, or a ParseFailure
    location: Location


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


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
    if fmt == "json" and _looks_like_jsonl(path):
        fmt = "jsonl"
    if part is not None and part.count == 1:
        part = None  # the one part of a file is the whole file, whatever its format
    if part is not None and not splittable(path):
        raise ValueError(f"{path}: only plain JSONL and Parquet files can be read in parts")
    if fmt == "parquet":
        yield from read_parquet(path, columns, part=part)
    elif fmt == "jsonl":
        yield from read_jsonl(path, part)
    else:
        yield from {"json": read_json_array, "xlsx": read_xlsx, "csv": read_csv}[fmt](path)


def _looks_like_jsonl(path: Path) -> bool:
    with _open_bytes(path) as f:
        head = f.read(64).lstrip()
    return head.startswith(b"{")


def read_jsonl(path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
    """One JSON value per line; blank lines are skipped, bad lines become ParseFailures.

    With ``part``, every line is still scanned (cheap: it keeps line numbers and ordinals those of
    the whole file) but only the part's lines are parsed.
    """
    start, stop = part.bounds(path.stat().st_size) if part is not None else (0, -1)
    try:
        with _open_bytes(path) as f:
            ordinal = 0
            pos = 0
            for lineno, line in enumerate(f, start=1):
                at = pos
                pos += len(line)
                if not line.strip():
                    continue
                loc = Location(str(path), line=lineno, record=ordinal)
                ordinal += 1
                if part is not None and not start <= at < stop:
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    value = _with_lone_surrogates(line, e)
                    if value is None:
                        yield RawItem(ParseFailure(_json_problem(line, e), _safe_text(line)), loc)
                        continue
                yield RawItem(value, loc)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(str(path), f"cannot read file: {e}") from None
    if ordinal == 0:
        raise InputError(str(path), "file is empty: expected JSON Lines records")


def _json_problem(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"not valid UTF-8 (byte 0x{line[u.start]:02x} at column {u.start + 1})"
    return f"malformed JSON ({err})"


def _safe_text(data: bytes, limit: int = 2000) -> str:
    return data[:limit].decode("utf-8", errors="replace")


#: JSON arrays larger than this are walked record by record instead of parsed whole: a 650 MB
#: ShareGPT file becomes several GB of Python objects when parsed at once.
STREAM_MIN_BYTES = 64 * 1024 * 1024


def read_json_array(path: Path) -> Iterator[RawItem]:
    """A file holding one JSON array of records (Alpaca, ShareGPT, WizardLM).

    Small arrays are parsed once with orjson (fast); large ones, and any that fail to parse, are
    walked element by element, which bounds memory and reports the exact record and line that is
    broken. Records before a truncation point are still yielded, then the truncation raises, since
    nothing after it can be trusted.
    """
    try:
        with _open_bytes(path) as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(str(path), f"cannot read file: {e}") from None
    if not data.strip():
        raise InputError(str(path), "file is empty: expected a JSON array of records")
    if len(data) < STREAM_MIN_BYTES:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            if not isinstance(value, list):
                raise InputError(str(path), f"expected a JSON array of records, found a JSON {_json_type(value)}")
            for i, item in enumerate(value):
                yield RawItem(item, Location(str(path), record=i))
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as u:
        line = data.count(b"\n", 0, u.start) + 1
        raise InputError(Location(str(path), line=line),
                         f"not valid UTF-8 (byte 0x{data[u.start]:02x})") from None
    del data
    yield from _walk_json_array(path, text)


def _with_lone_surrogates(line: bytes, error: Exception) -> Any | None:
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


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return names.get(type(value), type(value).__name__)


def _walk_json_array(path: Path, text: str) -> Iterator[RawItem]:
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise InputError(Location(str(path), line=_line_of(text, pos)),
                         "expected a JSON array of records (file does not start with '[')")
    pos = _skip_ws(text, pos + 1)
    index = 0
    line, counted = 1, 0  # line number of ``counted``, advanced incrementally (not O(n) per record)

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    if pos < len(text) and text[pos] == "]":
        return
    while True:
        loc = Location(str(path), line=line_at(pos), record=index)
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            problem = f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
            if not text.rstrip().endswith("]"):
                problem = f"truncated JSON array: the file ends without the closing ']' ({problem})"
            raise InputError(loc, problem) from None
        yield RawItem(item, loc)
        index += 1
        pos = _skip_ws(text, end)
        if pos >= len(text):
            raise InputError(loc, "truncated JSON array (no closing ']')")
        if text[pos] == "]":
            return
        if text[pos] != ",":
            raise InputError(Location(str(path), line=line_at(pos), record=index),
                             f"malformed JSON array: expected ',' or ']' but found {text[pos]!r}")
        pos = _skip_ws(text, pos + 1)


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_parquet(
    path: Path, columns: Sequence[str] | None = None, batch_size: int = 8192, part: FilePart | None = None
) -> Iterator[RawItem]:
    """Parquet in record batches, only the needed columns (and with ``part``, only the row groups
    that hold its rows); rows become dicts of plain Python values."""
    for first, batch in read_parquet_batches(path, columns, batch_size, part):
        for i, item in enumerate(batch.to_pylist(), start=first):
            yield RawItem(item, Location(str(path), record=i))


def read_parquet_batches(
    path: Path, columns: Sequence[str] | None = None, batch_size: int = 8192, part: FilePart | None = None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The Arrow record batches ``read_parquet`` turns into dicts, each with the file ordinal of its
    first row: for adapters that convert whole columns at once (``Adapter.convert_columns``)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad footer
        raise InputError(str(path), f"not a readable Parquet file: {e}") from None
    available = pf.schema_arrow.names
    if columns is not None:
        missing = [c for c in columns if c not in available]
        if missing:
            raise InputError(str(path), f"missing column(s) {missing}; the file has {available}")
    meta = pf.metadata
    start, stop = part.bounds(meta.num_rows) if part is not None else (0, meta.num_rows)
    groups, row = [], 0
    first = None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row + n > start and row < stop:
            groups.append(g)
            first = row if first is None else first
        row += n
    if not groups:
        return
    row = first
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups,
                                 columns=list(columns) if columns else None):
        lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
        if lo < hi:
            yield row + lo, batch.slice(lo, hi - lo)
        row += batch.num_rows


def read_xlsx(path: Path) -> Iterator[RawItem]:
    """First sheet; the header row names the fields; empty cells become None."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise InputError(str(path), f"not a readable .xlsx workbook: {e}") from None
    try:
        rows = wb.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise InputError(str(path), "workbook is empty: expected a header row")
        names = [str(h).strip() if h is not None else "" for h in header]
        ordinal = 0
        for lineno, values in enumerate(rows, start=2):
            if all(v is None for v in values):
                continue
            yield RawItem(dict(zip(names, values, strict=False)),
                          Location(str(path), line=lineno, record=ordinal))
            ordinal += 1
    finally:
        wb.close()


def read_csv(path: Path) -> Iterator[RawItem]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for ordinal, row in enumerate(reader):
                yield RawItem(row, Location(str(path), line=reader.line_num, record=ordinal))
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8: {e}") from None
