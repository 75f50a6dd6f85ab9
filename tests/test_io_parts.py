"""Reading one large file in parts (mixer.io.FilePart), which lets several processes share a big
JSONL or Parquet source: the parts together are exactly the whole file, with the whole file's line
numbers and record ordinals."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.io import FilePart, ParseFailure, read_raw, splittable


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
    with pytest.raises(ValueError, match="only plain JSONL and Parquet"):
        list(read_raw(tmp_path / "a.json", part=FilePart(0, 2)))
    # a source that splits one large file reads its other files as their single part: the whole file
    assert _items(tmp_path / "a.json", FilePart(0, 1)) == _items(tmp_path / "a.json")
