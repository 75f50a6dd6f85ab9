"""The streaming JSON-array reader (``mixer.readers.json_array.read_json_array`` on large files): the same records,
record ordinals, lines and errors as parsing the whole file, in bounded memory, whatever the chunk
boundaries cut through."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixer.readers.json_array
import mixer.readers.raw
from mixer.core.errors import InputError
from mixer.readers.json_array import read_json_array


def _stream(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> list[tuple[object, int | None, int | None]]:
    """Records of ``path`` read by the streaming reader, ``chunk`` bytes at a time."""
    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.readers.json_array, "JSON_CHUNK_BYTES", chunk)
    return [(r.value, r.location.line, r.location.record) for r in read_json_array(path)]


def _error(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> tuple[int, str]:
    """How many records came before the error, and the error's message."""
    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.readers.json_array, "JSON_CHUNK_BYTES", chunk)
    seen = 0
    with pytest.raises(InputError) as e:
        for _ in read_json_array(path):
            seen += 1
    return seen, str(e.value)


HOSTILE = [
    {"id": "a", "conversations": [{"from": "human", "value": 'brackets [ ] { } , : and "quotes" \\" \\\\'}]},
    {"id": "b", "nested": [[1, [2, [3, []]]], {"k": [{"x": "]},{"}]}], "n": -1.5e-3, "t": True, "f": None},
    {"id": "c", "text": "caf\u00e9 \U0001f600 \u4e2d\u6587 \\n not a newline", "empty": "", "o": {}},
    {"id": "d", "text": "ends with a backslash \\", "more": "\\\"", "escaped": "\u2028 \t tab"},
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_elements_spanning_chunk_boundaries_read_as_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   chunk: int, indent: int | None) -> None:
    """Strings holding ``[ ] { } , :``, escaped quotes and backslashes, nested arrays and multi-byte
    characters, cut by chunks of every size (inside a UTF-8 sequence, an escape, a number)."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps(HOSTILE * 3, indent=indent, ensure_ascii=False), encoding="utf-8")
    records = _stream(path, monkeypatch, chunk)
    assert [v for v, _, _ in records] == HOSTILE * 3
    assert [r for _, _, r in records] == list(range(12))
    if indent is None:
        assert {line for _, line, _ in records} == {1}
    else:  # each element starts on the line of its opening brace
        text = path.read_text(encoding="utf-8").split("\n")
        assert all(text[line - 1] == "  {" for _, line, _ in records)


def test_bom_and_leading_whitespace_are_read_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leading blank lines move the line numbers; a UTF-8 byte-order mark is not JSON whitespace,
    so a file starting with one is an error naming its first line and the mark (not "does not start
    with '['", which a user looking at the file in an editor cannot see)."""
    path = tmp_path / "a.json"
    path.write_bytes(b"\n \r\n\t[\n" + b",\n".join(orjson.dumps(r) for r in HOSTILE[:2]) + b"\n]\n")
    assert _stream(path, monkeypatch, 3) == [(HOSTILE[0], 4, 0), (HOSTILE[1], 5, 1)]
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    seen, message = _error(bom, monkeypatch, 2)
    assert seen == 0 and "bom.json, line 1: the file starts with a UTF-8 byte-order mark (BOM)" in message
    blank = tmp_path / "blank.json"
    blank.write_bytes(b" \n\x0c\x0b\t\n")
    assert "file is empty" in _error(blank, monkeypatch, 2)[1]


def test_gzip_input_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(json.dumps(HOSTILE, indent=1).encode()))
    assert [v for v, _, _ in _stream(path, monkeypatch, 5)] == HOSTILE


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
def test_truncation_mid_element_yields_the_records_before_it_then_names_record_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    whole = json.dumps(HOSTILE, indent=2).encode()
    path = tmp_path / "a.json"
    path.write_bytes(whole[:whole.index(b'"id": "c"') + 4])  # inside record 2's first key
    seen, message = _error(path, monkeypatch, chunk)
    assert seen == 2
    assert message.startswith(f"{path}, line ")
    assert ("record 2 (0-based): truncated JSON array: the file ends without the closing ']' (malformed JSON at line"
            in message)
    # between records: the last complete record is named
    path.write_bytes(whole[:whole.rindex(b"}") + 1])
    seen, message = _error(path, monkeypatch, chunk)
    assert seen == 4 and "record 3 (0-based): truncated JSON array (no closing ']')" in message


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_broken_record_and_separator_errors_name_file_line_and_column(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n {"a": "x"},\n {"a": "y" "b": 1},\n {"a": "z"}\n]\n', encoding="utf-8")
    seen, message = _error(path, monkeypatch, chunk)
    assert seen == 1
    assert message == f"{path}, line 3, record 1 (0-based): malformed JSON at line 3 column 12: Expecting ',' delimiter"
    path.write_text('[{"a": "x"} {"a": "y"}]', encoding="utf-8")
    assert _error(path, monkeypatch, chunk) == (
        1, f"{path}, line 1, record 1 (0-based): malformed JSON array: expected ',' or ']' but found '{{'")


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize(("after", "found", "line"), [
    ('\n[{"a": "y"}, {"a": "z"}]\n', "'['", 2),  # a second array: its records were skipped without a word
    ("]", "']'", 1),
    ("\n\nlog: done\n", "'l'", 3),
])
def test_content_after_the_closing_bracket_is_an_error_not_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, after: str, found: str, line: int) -> None:
    path = tmp_path / "a.json"
    path.write_text('[{"a": "x"}]' + after, encoding="utf-8")
    seen, message = _error(path, monkeypatch, chunk)
    assert seen == 1
    assert message.startswith(f"{path}, line {line}: unexpected {found} after the closing ']' of the JSON array")
    path.write_text("[]" + after, encoding="utf-8")
    assert _error(path, monkeypatch, chunk)[0] == 0


@pytest.mark.parametrize("after", ["\n[]", " x"])
def test_small_array_with_content_after_it_is_an_error(tmp_path: Path, after: str) -> None:
    """Parsed whole (below ``STREAM_MIN_BYTES``): orjson refuses the trailing data, the walk then names it."""
    path = tmp_path / "a.json"
    path.write_text('[{"a": "x"}]' + after, encoding="utf-8")
    with pytest.raises(InputError, match="after the closing"):
        list(read_json_array(path))


def test_whitespace_after_the_closing_bracket_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.json"
    path.write_text('[{"a": "x"}]\r\n \t\n', encoding="utf-8")
    assert [v for v, _, _ in _stream(path, monkeypatch, 2)] == [{"a": "x"}]


def test_invalid_utf8_anywhere_is_reported_before_an_earlier_broken_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file used to be decoded before any record was parsed; that precedence stays."""
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n{"a": 1} {"a": 2},\n' + b'{"a": "x"},\n' * 50 + b'{"a": "caf\xe9"}\n]')
    _, message = _error(path, monkeypatch, 16)
    assert message == f"{path}, line 53: not valid UTF-8 (byte 0xe9)"


def test_values_orjson_refuses_are_read_by_python_json_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lone surrogates (dropped later as invalid_text), NaN and integers above 64 bits: the walk always
    followed Python's json, which the adapters' checks expect."""
    path = tmp_path / "a.json"
    path.write_text('[{"t": "\\ud800 lone", "n": 123456789012345678901234567890}, {"x": NaN}]', encoding="utf-8")
    records = _stream(path, monkeypatch, 7)
    assert records[0][0] == {"t": "\ud800 lone", "n": 123456789012345678901234567890}
    assert records[1][0]["x"] != records[1][0]["x"]  # NaN


def test_a_large_array_is_read_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """About 8 MB of records read 64 KiB at a time: the reader's own allocations stay a small multiple
    of the chunk (parsing the file whole took several times the file's size)."""
    record = {"id": "x", "conversations": [{"from": "human", "value": "w" * 900}, {"from": "gpt", "value": "v" * 900}]}
    path = tmp_path / "big.json"
    path.write_bytes(orjson.dumps([record] * 4000, option=orjson.OPT_INDENT_2))
    assert path.stat().st_size > 7_000_000
    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.readers.json_array, "JSON_CHUNK_BYTES", 64 * 1024)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_json_array(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 4000 and peak < 2_000_000


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_json_values, min_size=1, max_size=8), indent=st.sampled_from([None, 1, 2]),  # [] is an error
       chunk=st.integers(1, 40), ascii_only=st.booleans())
def test_stream_equals_orjson_of_the_whole_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: list,
                                                 indent: int | None, chunk: int, ascii_only: bool) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(json.dumps(values, indent=indent, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    try:
        expected = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:  # text with lone surrogates: Python's json rules
        expected = json.loads(path.read_bytes().decode("utf-8", "surrogatepass"))
    records = _stream(path, monkeypatch, chunk)
    assert [v for v, _, _ in records] == expected
    assert [r for _, _, r in records] == list(range(len(values)))
