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
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mixer.core.digest import file_digest
from mixer.core.errors import InputError, Location
from mixer.core.stats import FileInfo

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
    processes: JSONL by byte range (a line belongs to the part its first byte falls in), a JSON array
    by byte range too (an element belongs to the part its first byte falls in), Parquet by row range.
    Locations (line numbers, record ordinals) stay those of the whole file."""

    index: int
    count: int

    def bounds(self, total: int) -> tuple[int, int]:
        return total * self.index // self.count, total * (self.index + 1) // self.count


def file_info(path: Path) -> FileInfo:
    """Size and sha256 of one file (the card's provenance, the read cache's key, the shards' hashes)."""
    sha256, size = file_digest(path)
    return FileInfo(path=str(path), bytes=size, sha256=sha256)


def splittable(path: Path) -> bool:
    """Whether ``read_raw`` can read the file in parts (plain JSONL and Parquet, and plain JSON arrays
    large enough to be streamed: ``STREAM_MIN_BYTES``)."""
    if path.suffix == ".gz" or not path.exists():
        return False
    if json_array(path):
        return path.stat().st_size >= STREAM_MIN_BYTES
    return file_format(path) in ("parquet", "jsonl", "json")


def json_array(path: Path) -> bool:
    """Whether ``read_raw`` reads the file as one JSON array (a ``.json`` file not holding JSON Lines).
    Each part of such a file walks every element before it (its ordinals and lines are counted, not
    known), so it is worth cutting into only as many parts as there are processes to read them."""
    return file_format(path) == "json" and not _looks_like_jsonl(path)


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
        raise ValueError(f"{path}: only plain JSONL, Parquet and large JSON-array files can be read in parts")
    if fmt == "parquet":
        yield from read_parquet(path, columns, part=part)
    elif fmt == "jsonl":
        yield from read_jsonl(path, part)
    elif fmt == "json":
        yield from read_json_array(path, part)
    else:
        yield from {"xlsx": read_xlsx, "csv": read_csv}[fmt](path)


def _looks_like_jsonl(path: Path) -> bool:
    with _open_bytes(path) as f:
        head = f.read(64).lstrip()
    return head.startswith(b"{")


def read_jsonl(path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
    """One JSON value per line; blank lines are skipped, bad lines become ParseFailures.

    With ``part``, the lines before the part are still scanned (cheap: it keeps line numbers and
    ordinals those of the whole file) but only the part's lines are parsed, and the scan stops where
    the next part begins.
    """
    start, stop = part.bounds(path.stat().st_size) if part is not None else (0, sys.maxsize)
    stopped = False
    try:
        with _open_bytes(path) as f:
            ordinal = 0
            pos = 0
            for lineno, line in enumerate(f, start=1):
                at = pos
                pos += len(line)
                if at >= stop:
                    stopped = True
                    break
                if not line.strip():
                    continue
                ordinal += 1
                if at < start:
                    continue
                loc = Location(str(path), line=lineno, record=ordinal - 1)
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
    if ordinal == 0 and not stopped:  # a part that stopped early leaves the verdict to the last part
        raise InputError(str(path), "file is empty: expected JSON Lines records")


def _json_problem(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"not valid UTF-8 (byte 0x{line[u.start]:02x} at column {u.start + 1})"
    return f"malformed JSON ({err})"


def _safe_text(data: bytes, limit: int = 2000) -> str:
    return data[:limit].decode("utf-8", errors="replace")


#: JSON arrays smaller than this are parsed whole with orjson (fast); larger ones are streamed element by
#: element: a 650 MB ShareGPT file becomes several GB of Python objects when parsed at once.
STREAM_MIN_BYTES = 64 * 1024 * 1024
#: bytes the streaming JSON-array reader decodes at a time (its memory is a few of these, whatever the file)
JSON_CHUNK_BYTES = 4 * 1024 * 1024


def read_json_array(path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
    """A file holding one JSON array of records (Alpaca, ShareGPT, WizardLM).

    Small arrays are parsed once with orjson (fast; their locations have no line). Large ones, and
    any that fail to parse whole, are streamed element by element (``_ArrayStream``): memory stays a
    few chunks whatever the file's size, and a broken record is reported with its exact record and
    line. Records before a truncation point are still yielded, then the truncation raises, since
    nothing after it can be trusted.

    ``part`` (files of ``STREAM_MIN_BYTES`` or more only, see ``splittable``): yield just the elements
    whose first byte falls in the part's byte range, with the whole file's record ordinals and lines.
    """
    try:
        with _open_bytes(path) as f:
            # a plain file's size says which way it is read; a gzip file is read ahead to find out
            size = None if path.suffix == ".gz" else path.stat().st_size
            if part is not None and (size is None or size < STREAM_MIN_BYTES):
                raise ValueError(f"{path}: only plain JSON arrays of {STREAM_MIN_BYTES} bytes or more "
                                 "are read in parts")
            head = b""
            if size is None or size < STREAM_MIN_BYTES:
                head = f.read(STREAM_MIN_BYTES)
                if len(head) < STREAM_MIN_BYTES:  # the whole file
                    yield from _parse_small_array(path, head)
                    return
            bounds = part.bounds(size) if part is not None and size is not None else None
            yield from _ArrayStream(path, f, head, bounds).records()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(str(path), f"cannot read file: {e}") from None


def _parse_small_array(path: Path, data: bytes) -> Iterator[RawItem]:
    if not data.strip():
        raise InputError(str(path), "file is empty: expected a JSON array of records")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        # lone surrogates, NaN, a broken record: Python's json rules, and the exact record and line
        yield from _ArrayStream(path, None, data, None).records()
        return
    if not isinstance(value, list):
        raise InputError(str(path), f"expected a JSON array of records, found a JSON {_json_type(value)}")
    for i, item in enumerate(value):
        yield RawItem(item, Location(str(path), record=i))


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


#: whitespace between JSON values (what Python's json skips)
_WS = re.compile(r"[ \t\r\n]*")
#: a parse error this close to the end of the decoded text may only mean the element goes on in the
#: next chunk (a cut number, escape or keyword), so the stream reads on before calling it an error
_EDGE_CHARS = 64


class _ArrayStream:
    """Walks one JSON array element by element over chunks of the file, in bounded memory.

    Each element is parsed by Python's ``json.JSONDecoder.raw_decode`` on a window of decoded text that
    holds the current element and at most a chunk or two around it, so values, record ordinals, line
    numbers and error messages are those of parsing the whole decoded file at once (what this reader
    did before it streamed). The window starts at arbitrary characters; ``line``/``col`` say where
    its first character sits in the file, so errors name file lines and columns.

    The precedence of errors is also kept: invalid UTF-8 anywhere in the file is reported before a
    structural problem found earlier (the whole file used to be decoded first), so a structural
    error first checks the rest of the file's bytes.
    """

    def __init__(self, path: Path, f: io.BufferedIOBase | None, head: bytes,
                 bounds: tuple[int, int] | None) -> None:
        self.path = path
        self._f = f
        self._head: bytes | None = head
        self._head_at = 0
        self.text = ""  # the window of decoded text
        self.eof = False
        self._pending = b""  # an incomplete UTF-8 sequence at the end of the last chunk
        self._bytes_done = 0  # bytes of the file decoded so far (pending excluded)
        self._chars_done = 0  # characters decoded so far
        self._char0 = 0  # file character offset of text[0]
        self.line = 1  # file line of text[0]
        self.col = 0  # characters between the last newline before text[0] and text[0]
        self._newlines = 0  # newlines in the bytes decoded so far (for UTF-8 errors)
        self._last = ""  # the last non-whitespace character decoded so far
        self._blank = True  # whether every byte so far is whitespace to bytes.strip() (an empty file)
        self._line, self._line_pos = 1, 0  # see line_at
        # the part's byte range as file character offsets, once the chunk holding each bound is decoded
        self._bounds = bounds
        self._start_char: int | None = 0 if bounds is None or bounds[0] == 0 else None
        self._stop_char: int | None = None

    # -- reading ----------------------------------------------------------------------------------

    def _next_bytes(self) -> bytes:
        if self._head is not None:
            chunk = self._head[self._head_at:self._head_at + JSON_CHUNK_BYTES]
            self._head_at += len(chunk)
            if self._head_at >= len(self._head):
                self._head = None  # let the head go once it is consumed
            if chunk:
                return chunk
        return self._f.read(JSON_CHUNK_BYTES) if self._f is not None else b""

    def _decode_next(self) -> str | None:
        """The next chunk's text (None at the end of the file); raises on invalid UTF-8."""
        data = self._next_bytes()
        if not data:
            if not self._pending:
                return None
            data, self._pending, cut = self._pending, b"", len(self._pending)  # must fail: incomplete
        else:
            data = self._pending + data
            cut = _utf8_cut(data)
            self._pending = data[cut:]
        try:
            text = data[:cut].decode("utf-8")
        except UnicodeDecodeError as u:
            line = self._newlines + data.count(b"\n", 0, u.start) + 1
            raise InputError(Location(str(self.path), line=line),
                             f"not valid UTF-8 (byte 0x{data[u.start]:02x})") from None
        self._map_bounds(data[:cut])
        self._bytes_done += cut
        self._chars_done += len(text)
        self._newlines += text.count("\n")
        tail = text.rstrip()
        if tail:
            self._last = tail[-1]
        if self._blank and text.strip(" \t\n\r\x0b\x0c"):
            self._blank = False
        return text

    def _map_bounds(self, data: bytes) -> None:
        """Turn the part's byte bounds that fall in ``data`` into character offsets. The element
        that belongs to a part starts with an ASCII character, so counting the whole characters
        before a bound is exact."""
        if self._bounds is None:
            return
        lo, hi = self._bytes_done, self._bytes_done + len(data)
        start, stop = self._bounds
        if self._start_char is None and start < hi:
            self._start_char = self._chars_done + len(data[:max(start - lo, 0)].decode("utf-8", "ignore"))
        if self._stop_char is None and stop < hi:
            self._stop_char = self._chars_done + len(data[:max(stop - lo, 0)].decode("utf-8", "ignore"))

    def more(self, keep: int) -> bool:
        """Drop the text before ``keep`` and append the next chunk; False at the end of the file
        (the text is cut at ``keep`` all the same)."""
        if keep:
            dropped = self.text[:keep]
            newline = dropped.rfind("\n")
            self.col = self.col + keep if newline < 0 else keep - newline - 1
            self.line += dropped.count("\n")
            self._char0 += keep
            self.text = self.text[keep:]
        self._line, self._line_pos = self.line, 0
        text = self._decode_next()
        if text is None:
            self.eof = True
            return False
        self.text += text
        return True

    def _check_rest(self) -> None:
        """Before a structural error: invalid UTF-8 further on wins, as when the file was decoded
        whole; also finds the file's last non-whitespace character."""
        while not self.eof:
            if self._decode_next() is None:
                self.eof = True

    # -- walking ----------------------------------------------------------------------------------

    def skip_ws(self, pos: int) -> int:
        """The first non-whitespace position at or after ``pos``, reading on as needed (which may
        cut the window: the returned position is in the current window)."""
        while True:
            pos = _WS.match(self.text, pos).end()  # type: ignore[union-attr]
            if pos < len(self.text):
                return pos
            more = self.more(pos)  # cuts the window at ``pos`` even at the end of the file
            pos = 0
            if not more:
                return pos

    def line_at(self, pos: int) -> int:
        """The file line of window position ``pos``; positions are asked for in increasing order
        (counted incrementally, not from the window's start every time)."""
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def _fail(self, location: Location | str, problem: str) -> InputError:
        self._check_rest()
        return InputError(location, problem)

    def records(self) -> Iterator[RawItem]:
        decoder = json.JSONDecoder()
        pos = self.skip_ws(0)
        if pos >= len(self.text) or self.text[pos] != "[":
            self._check_rest()
            if self.text.startswith("\ufeff", pos) and self._char0 + pos == 0:
                raise InputError(Location(str(self.path), line=1),
                                 "the file starts with a UTF-8 byte-order mark (BOM), which JSON does not allow; "
                                 "save it as UTF-8 without BOM")
            if self._blank:
                raise InputError(str(self.path), "file is empty: expected a JSON array of records")
            raise InputError(Location(str(self.path), line=self.line_at(pos)),
                             "expected a JSON array of records (file does not start with '[')")
        pos = self.skip_ws(pos + 1)
        if pos < len(self.text) and self.text[pos] == "]":
            self._check_rest()  # what follows the array is ignored, but must be UTF-8 as before
            return
        index = 0
        while True:
            location = Location(str(self.path), line=self.line_at(pos), record=index)
            while True:
                try:
                    item, end = decoder.raw_decode(self.text, pos)
                except json.JSONDecodeError as e:
                    if not self.eof and (e.pos >= len(self.text) - _EDGE_CHARS
                                         or e.msg.startswith("Unterminated string")):
                        self.more(pos)
                        pos = 0
                        continue
                    raise self._fail(location, self._malformed(e)) from None
                if end < len(self.text) - _EDGE_CHARS or self.eof:
                    break
                self.more(pos)  # a value ending near the window's end may go on ("1" of "1e5")
                pos = 0
            start = self._char0 + pos
            if self._stop_char is not None and start >= self._stop_char:
                return  # the rest belongs to the next parts
            if self._start_char is not None and start >= self._start_char:
                yield RawItem(item, location)
            index += 1
            pos = self.skip_ws(end)
            if pos >= len(self.text):
                raise InputError(location, "truncated JSON array (no closing ']')")
            if self.text[pos] == "]":
                self._check_rest()
                return
            if self.text[pos] != ",":
                raise self._fail(Location(str(self.path), line=self.line_at(pos), record=index),
                                 f"malformed JSON array: expected ',' or ']' but found {self.text[pos]!r}")
            pos = self.skip_ws(pos + 1)

    def _malformed(self, e: json.JSONDecodeError) -> str:
        """Python json's message with the file's line and column (``e`` counts from the window)."""
        line = self.line + e.lineno - 1
        column = e.colno + (self.col if e.lineno == 1 else 0)
        problem = f"malformed JSON at line {line} column {column}: {e.msg}"
        self._check_rest()
        if self._last != "]":
            problem = f"truncated JSON array: the file ends without the closing ']' ({problem})"
        return problem


def _utf8_cut(data: bytes) -> int:
    """Where to cut ``data`` so no UTF-8 sequence is split: before an incomplete sequence at its end."""
    i = len(data) - 1
    while i >= 0 and len(data) - i < 4 and data[i] & 0xC0 == 0x80:
        i -= 1
    if i < 0 or data[i] < 0xC0:
        return len(data)
    need = 2 if data[i] < 0xE0 else 3 if data[i] < 0xF0 else 4
    return i if len(data) - i < need else len(data)


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
    """First sheet, as Tulu's ``pandas.read_excel`` reads it; the header row names the fields; empty
    cells become None.

    A workbook with data on any other sheet is an error naming those sheets: reading the first sheet
    alone would drop their rows without a word, and a notes sheet placed first would otherwise surface
    only as a confusing "missing column" error.
    """
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise InputError(str(path), f"not a readable .xlsx workbook: {e}") from None
    try:
        others = [ws.title for ws in wb.worksheets[1:]
                  if any(any(v is not None for v in row) for row in ws.iter_rows(values_only=True))]
        if others:
            listed = ", ".join(repr(t) for t in others)
            raise InputError(str(path), f"the workbook has data on sheets other than the first ({listed}); only the "
                             f"first sheet ({wb.worksheets[0].title!r}) is read, as Tulu reads it: keep the records "
                             "on the first sheet and move or delete the others")
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
    """UTF-8 with or without the byte-order mark Excel writes ("CSV UTF-8"): a BOM is not part of the
    first column's name."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            for ordinal, row in enumerate(reader):
                yield RawItem(row, Location(str(path), line=reader.line_num, record=ordinal))
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8: {e}") from None
