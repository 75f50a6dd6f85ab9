"""Reading one large file in parts (mixer.readers.base.FilePart), which lets several processes share a big
JSONL or Parquet source: the parts together are exactly the whole file, with the whole file's line
numbers and record ordinals."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.readers.base import FilePart, ParseFailure
from mixer.readers.raw import read_raw, splittable


def _items(path: Path, part: FilePart | None = None) -> list[tuple[object, int | None, int | None]]:
    return [(i.value if not isinstance(i.value, ParseFailure) else "BAD", i.location.line, i.location.record)
            for i in read_raw(path, part=part)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_jsonl_parts_cover_every_line_once_with_whole_file_locations(tmp_path: Path, count: int) -> None:
    lines = []
    for i in range(25):
        lines.append(f'{{"i": {i}, "text": "{"x" * (i * 13 % 50)}"}}')
        if i % 6 == 0:
            lines.append("   ")  # blank lines are skipped but still counted as lines
        if i == 11:
            lines.append('{"broken": ')
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = _items(path)
    parts = [item for k in range(count) for item in _items(path, FilePart(k, count))]
    assert parts == whole
    assert "BAD" in [v for v, _, _ in whole] and whole[-1][2] == 25  # 25 records + 1 bad line, ordinals 0..25


@pytest.mark.parametrize("count", [1, 2, 3, 10])
def test_parquet_parts_cover_every_row_once_across_row_groups(tmp_path: Path, count: int) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"i": list(range(103)), "s": [f"row {i}" for i in range(103)]}), path,
                   row_group_size=20)
    whole = _items(path)
    parts = [item for k in range(count) for item in _items(path, FilePart(k, count))]
    assert parts == whole and [r for _, _, r in whole] == list(range(103))


def test_only_plain_jsonl_and_parquet_are_splittable(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"a": 1}]', encoding="utf-8")
    (tmp_path / "b.json").write_text('{"a": 1}\n', encoding="utf-8")  # JSON Lines under a .json name
    (tmp_path / "c.jsonl.gz").write_bytes(b"")
    assert not splittable(tmp_path / "a.json")
    assert splittable(tmp_path / "b.json")
    assert not splittable(tmp_path / "c.jsonl.gz")
    with pytest.raises(ValueError, match="only plain JSONL, Parquet and large JSON-array files"):
        list(read_raw(tmp_path / "a.json", part=FilePart(0, 2)))
    # a source that splits one large file reads its other files as their single part: the whole file
    assert _items(tmp_path / "a.json", FilePart(0, 1)) == _items(tmp_path / "a.json")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
@pytest.mark.parametrize("chunk", [3, 50, 1 << 20])
def test_large_json_array_parts_cover_every_element_once_with_whole_file_locations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, chunk: int) -> None:
    """Byte ranges cut anywhere (inside strings holding brackets and commas, inside multi-byte
    characters); each element belongs to the part its first byte falls in."""
    import json

    import mixer.readers.json_array
    import mixer.readers.raw

    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)  # every array counts as large
    monkeypatch.setattr(mixer.readers.json_array, "JSON_CHUNK_BYTES", chunk)
    records = [{"id": i, "text": "caf\u00e9 \U0001f600 ],{[" * (i % 5) + '\\"' * (i % 3), "n": [[i], {"k": []}]}
               for i in range(30)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    assert splittable(path)
    whole = _items(path)
    parts = [item for k in range(count) for item in _items(path, FilePart(k, count))]
    assert parts == whole
    assert [v for v, _, _ in whole] == records and [r for _, _, r in whole] == list(range(30))
    assert all(line is not None for _, line, _ in whole)


def test_json_array_parts_share_a_truncation_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The part whose range holds the break raises the whole file's error (the build stops on it)."""
    import mixer.readers.json_array
    import mixer.readers.raw
    from mixer.core.errors import InputError

    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 0)
    path = tmp_path / "data.json"
    path.write_text("[" + ",".join(f'{{"i": {i}}}' for i in range(20)) + ', {"i": 2', encoding="utf-8")
    with pytest.raises(InputError) as whole:
        _items(path)
    first = _items(path, FilePart(0, 2))  # the records before the middle byte, no error
    assert 0 < len(first) < 20 and [r for _, _, r in first] == list(range(len(first)))
    with pytest.raises(InputError) as part:
        _items(path, FilePart(1, 2))
    assert str(part.value) == str(whole.value) and "record 20 (0-based): truncated JSON array" in str(whole.value)


def test_a_large_json_array_is_planned_as_one_part_per_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mixer.readers.json_array
    import mixer.readers.raw
    import mixer.stages.read
    from mixer.readers.raw import file_info
    from mixer.sources import get_adapter
    from mixer.stages.read import ReadPart, plan_reads

    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 1000)
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", 100)  # a JSONL file of 1 kB would be 10+ parts
    path = tmp_path / "big.json"
    path.write_text("[" + ",".join(f'{{"id": "{i}", "conversations": []}}' for i in range(100)) + "]", encoding="utf-8")
    small = tmp_path / "small.json"
    small.write_text('[{"id": "x", "conversations": []}]', encoding="utf-8")
    adapter = get_adapter("sharegpt")
    assert plan_reads(adapter, [path], [file_info(path)], 3) == [ReadPart(0, FilePart(k, 3)) for k in range(3)]
    assert plan_reads(adapter, [small], [file_info(small)], 3) == [None]


def test_jsonl_part_of_blank_lines_leaves_the_empty_file_verdict_to_the_last_part(tmp_path: Path) -> None:
    """A part stops scanning where the next begins, so only the last part sees whether the whole
    file holds no record."""
    from mixer.core.errors import InputError

    path = tmp_path / "data.jsonl"
    path.write_text("\n" * 200 + '{"i": 1}\n{"i": 2}\n', encoding="utf-8")
    assert _items(path, FilePart(0, 2)) == []
    assert _items(path, FilePart(1, 2)) == _items(path) == [({"i": 1}, 201, 0), ({"i": 2}, 202, 1)]
    path.write_text("  \n" * 100, encoding="utf-8")
    assert _items(path, FilePart(0, 2)) == []
    with pytest.raises(InputError, match="file is empty"):
        _items(path, FilePart(1, 2))
