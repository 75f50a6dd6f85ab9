"""A file holding one JSON array of records (Alpaca, ShareGPT, WizardLM): parsed whole when small, else
streamed element by element in bounded memory (``_ArrayStream``), whole or one byte range of the file."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from mixer.core.errors import InputError, Location
from mixer.readers.base import READ_ERRORS, FilePart, RawItem, json_type, open_bytes

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
        with open_bytes(path) as f:
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
    except READ_ERRORS as e:
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
        raise InputError(str(path), f"expected a JSON array of records, found a JSON {json_type(value)}")
    if not value:
        raise InputError(str(path), NO_RECORDS)
    for i, item in enumerate(value):
        yield RawItem(item, Location(str(path), record=i))


#: an array without elements is a file without records, as an empty JSONL file is (an export that failed)
NO_RECORDS = "the JSON array is empty ([]): expected records"

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
            self._check_end(pos + 1)
            raise InputError(str(self.path), NO_RECORDS)
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
                self._check_end(pos + 1)
                return
            if self.text[pos] != ",":
                raise self._fail(Location(str(self.path), line=self.line_at(pos), record=index),
                                 f"malformed JSON array: expected ',' or ']' but found {self.text[pos]!r}")
            pos = self.skip_ws(pos + 1)

    def _check_end(self, pos: int) -> None:
        """Only whitespace may follow the array's closing ``]``. Anything else (a second array written
        after the first, a stray ``]``, a log line appended) would otherwise be skipped without a word,
        and with it every record it holds."""
        pos = self.skip_ws(pos)
        if pos < len(self.text):
            raise self._fail(Location(str(self.path), line=self.line_at(pos)),
                             f"unexpected {self.text[pos]!r} after the closing ']' of the JSON array: a file must "
                             "hold one JSON array of records (for several arrays, use one file each, or "
                             "merge them into one array)")

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
