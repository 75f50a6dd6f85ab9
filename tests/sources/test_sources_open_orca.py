"""Open-Orca adapter: system prompts, raw ids, column selection, the bundled Parquet file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_all

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "open_orca"


def make_adapter() -> Adapter:
    cls = get_adapter("open_orca")
    return cls(cls.Options(), SourceContext("open_orca", 42))


def convert_one(raw: object) -> Record:
    (out,) = list(make_adapter().convert(raw, Location("1M-GPT4-Augmented.parquet", record=0)))
    return out


def read_records(path: Path) -> list[Record]:
    return read_all(make_adapter(), path)


def row(**overrides: object) -> dict[str, object]:
    base = {"id": "flan.1234", "system_prompt": "", "question": "Q?", "response": "A."}
    return {**base, **overrides}


def test_open_orca_empty_system_prompt_gives_no_system_message() -> None:
    assert [m["role"] for m in convert_one(row(system_prompt=""))["messages"]] == ["user", "assistant"]


def test_open_orca_null_system_prompt_gives_no_system_message() -> None:
    assert [m["role"] for m in convert_one(row(system_prompt=None))["messages"]] == ["user", "assistant"]


def test_open_orca_system_prompt_becomes_the_first_message() -> None:
    record = convert_one(row(system_prompt="You are a helpful assistant."))
    assert record["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "A."},
    ]


def test_open_orca_id_keeps_the_raw_id() -> None:
    record = convert_one(row(id="niv.242684"))
    assert (record["dataset"], record["id"]) == ("open_orca", "open_orca_niv.242684")


def test_open_orca_missing_response_raises_record_error_naming_the_field() -> None:
    raw = row()
    del raw["response"]
    with pytest.raises(RecordError, match="missing required field 'response'"):
        convert_one(raw)


def test_open_orca_non_string_id_raises_record_error() -> None:
    with pytest.raises(RecordError, match="'id' must be a string, found int"):
        convert_one(row(id=242684))


def test_open_orca_reads_only_the_published_columns(tmp_path: Path) -> None:
    path = tmp_path / "1M-GPT4-Augmented.parquet"
    table = pa.table({"__index_level_0__": [7], "id": ["t0.55"], "system_prompt": [""],
                      "question": ["Q?"], "response": ["A."]})
    pq.write_table(table, path)
    (item,) = list(make_adapter().read_file(path))
    assert sorted(item.value) == ["id", "question", "response", "system_prompt"]


def test_open_orca_bundled_parquet_converts_every_row() -> None:
    records = read_records(RAW / "1M-GPT4-Augmented.parquet")
    assert len(records) == 24
    assert records[0]["id"] == "open_orca_niv.242684"
    assert [m["role"] for m in records[0]["messages"]] == ["user", "assistant"]
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert Counter(i.split("_", 2)[2].split(".")[0] for i in ids).keys() == {"niv", "flan", "t0", "cot"}
    with_system = [r for r in records if r["messages"][0]["role"] == "system"]
    assert 0 < len(with_system) < len(records)
