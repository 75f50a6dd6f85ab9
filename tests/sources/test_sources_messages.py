"""Generic canonical records (JSONL or Parquet ``messages``) for users' own data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.errors import Location, RecordError
from mixer.core.records import MESSAGE_TYPE, Dropped
from mixer.sources import SourceContext, get_adapter

LOC = Location("mine.jsonl", line=4, record=3)


def adapter(**options: Any) -> Any:
    cls = get_adapter("messages")
    return cls(cls.Options(**options), SourceContext("mine", 42))


def convert(raw: Any, **options: Any) -> list[Any]:
    return list(adapter(**options).convert(raw, LOC))


def chat(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


def test_messages_is_registered_without_a_licence() -> None:
    cls = get_adapter("messages")
    assert cls.name == "messages" and cls.license is None and cls.description
    assert cls.Options().dataset is None  # the label defaults to the recipe's source name (issue 24)


def test_messages_keeps_record_id_and_dataset() -> None:
    [record] = convert({"id": "x-1", "dataset": "support", "messages": chat(("user", "hi"), ("assistant", "yo"))})
    assert record == {"dataset": "support", "id": "x-1", "messages": chat(("user", "hi"), ("assistant", "yo"))}


def test_messages_defaults_label_to_the_source_name_and_ordinal_id() -> None:
    [record] = convert({"messages": chat(("system", "be brief"), ("user", "hi"), ("assistant", ""))})
    assert record["dataset"] == "mine" and record["id"] == "mine_3"  # the source is named "mine"
    [record] = convert({"messages": chat(("user", "hi"))}, dataset="label")
    assert record["dataset"] == "label" and record["id"] == "label_3"
    [record] = convert({"id": 12, "dataset": None, "messages": chat(("user", "hi"))})
    assert record["id"] == "12" and record["dataset"] == "mine"


def test_messages_unknown_role_is_dropped() -> None:
    [dropped] = convert({"id": "t", "messages": chat(("user", "hi"), ("tool", "{}"))})
    assert isinstance(dropped, Dropped) and dropped.reason == "unknown_role" and "tool" in dropped.detail
    assert dropped.id == "t"


@pytest.mark.parametrize("raw, needle", [
    ("text", "JSON object"),
    ({"id": "a"}, "'messages'"),
    ({"messages": "hello"}, "'messages'"),
    ({"messages": ["hello"]}, r"messages\[0\]"),
    ({"messages": [{"role": "user"}]}, "'content'"),
    ({"messages": [{"role": "user", "content": 5}]}, "'content'"),
    ({"messages": [{"content": "x"}]}, "'role'"),
    ({"dataset": 3, "messages": []}, "'dataset'"),
    ({"id": 1.5, "messages": []}, "'id'"),
])
def test_messages_malformed_records_raise_record_error_naming_the_field(raw: Any, needle: str) -> None:
    with pytest.raises(RecordError, match=needle):
        convert(raw)


def test_messages_reads_jsonl_and_parquet_alike(tmp_path: Path) -> None:
    rows = [{"id": "a", "dataset": "d", "messages": chat(("user", "q1"), ("assistant", "a1"))},
            {"id": None, "dataset": None, "messages": chat(("user", "q2"), ("assistant", "a2"))}]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "mine.parquet"
    schema = pa.schema([("id", pa.string()), ("dataset", pa.string()), ("messages", pa.list_(MESSAGE_TYPE))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet)
    a = adapter(dataset="own")
    results = []
    for path in (jsonl, parquet):
        results.append([out for item in a.read_file(path) for out in a.convert(item.value, item.location)])
    assert results[0] == results[1]
    assert [r["id"] for r in results[0]] == ["a", "own_1"]
    assert [r["dataset"] for r in results[0]] == ["d", "own"]
