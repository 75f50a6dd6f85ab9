"""WizardLM adapter: role mapping, unknown roles, turn order kept, JSON and Parquet backup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Record
from mixer.readers.base import ParseFailure
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "wizardlm"


def make_adapter() -> Adapter:
    cls = get_adapter("wizardlm")
    return cls(cls.Options(), SourceContext("wizardlm", 42))


def convert(raw: object) -> list[Record | Dropped]:
    return list(make_adapter().convert(raw, Location("WizardLM_evol_instruct_V2_143k.json", record=0)))


def read_file(path: Path) -> list[Record | Dropped]:
    adapter = make_adapter()
    out = []
    for item in adapter.read_file(path):
        assert not isinstance(item.value, ParseFailure), item.value
        out.extend(adapter.convert(item.value, item.location))
    return out


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": role, "value": text} for role, text in pairs]


def test_wizardlm_maps_human_to_user_and_gpt_to_assistant() -> None:
    (record,) = convert({"idx": "alpaca_123", "conversations": turns(("human", "q"), ("gpt", "a"))})
    assert record == {
        "dataset": "wizardlm",
        "id": "wizardlm_alpaca_123",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }


def test_wizardlm_unknown_role_is_dropped_not_raised() -> None:
    raw = {"idx": "Ab3dE9x", "conversations": turns(("human", "q"), ("gpt", "a"), ("bing", "b"))}
    (dropped,) = convert(raw)
    assert isinstance(dropped, Dropped)
    assert (dropped.reason, dropped.dataset, dropped.id, dropped.stage) == (
        "unknown_role", "wizardlm", "wizardlm_Ab3dE9x", "read")
    assert dropped.detail == "role 'bing' in turn 2"


def test_wizardlm_leading_gpt_turn_is_kept_in_order_for_the_normaliser() -> None:
    conversation = turns(("gpt", "hi"), ("human", "q"), ("gpt", "a"))
    (record,) = convert({"idx": "Zr8TbWn", "conversations": conversation})
    assert [m["role"] for m in record["messages"]] == ["assistant", "user", "assistant"]


def test_wizardlm_odd_turn_count_is_kept_for_the_normaliser() -> None:
    conversation = turns(("human", "q"), ("gpt", "a"), ("human", "q2"))
    (record,) = convert({"idx": "m2XcV9d", "conversations": conversation})
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user"]


def test_wizardlm_accepts_numpy_array_conversations_from_pandas() -> None:
    conversations = np.array(turns(("human", "q"), ("gpt", "a")), dtype=object)
    (record,) = convert({"idx": "alpaca_9", "conversations": conversations})
    assert [m["content"] for m in record["messages"]] == ["q", "a"]


def test_wizardlm_turn_without_value_raises_record_error_naming_the_turn() -> None:
    raw = {"idx": "alpaca_1", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}
    with pytest.raises(RecordError, match=r"conversations\[1\]: missing required field 'value'"):
        convert(raw)


def test_wizardlm_turn_that_is_not_an_object_raises_record_error() -> None:
    with pytest.raises(RecordError, match=r"conversations\[0\]: expected a JSON object, found str"):
        convert({"idx": "alpaca_1", "conversations": ["q", "a"]})


def test_wizardlm_integer_idx_raises_record_error() -> None:
    with pytest.raises(RecordError, match="'idx' must be a string, found int"):
        convert({"idx": 17, "conversations": []})


def test_wizardlm_reads_the_parquet_backup(tmp_path: Path) -> None:
    path = tmp_path / "train-00000-of-00001.parquet"
    conversation_type = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))
    conversations = [turns(("human", "q1"), ("gpt", "a1")), turns(("human", "q2"), ("gpt", "a2"))]
    table = pa.table({"idx": ["alpaca_5", "kP0aZ3f"],
                      "conversations": pa.array(conversations, type=conversation_type)})
    pq.write_table(table, path)
    records = read_file(path)
    assert [r["id"] for r in records] == ["wizardlm_alpaca_5", "wizardlm_kP0aZ3f"]
    assert records[1]["messages"][1] == {"role": "assistant", "content": "a2"}


def test_wizardlm_bundled_json_converts_with_one_unknown_role_drop() -> None:
    out = read_file(RAW / "WizardLM_evol_instruct_V2_143k.json")
    assert len(out) == 22
    dropped = [r for r in out if isinstance(r, Dropped)]
    records = [r for r in out if not isinstance(r, Dropped)]
    assert [(d.reason, d.id) for d in dropped] == [("unknown_role", "wizardlm_nV4kQ8s")]
    ids = [r["id"] for r in records]
    assert any(i.startswith("wizardlm_alpaca_") for i in ids)
    assert any(len(i) == len("wizardlm_") + 7 for i in ids)
    assert any(r["messages"][0]["role"] == "assistant" for r in records)  # leading gpt turn
    assert any(len(r["messages"]) % 2 for r in records)  # odd turn count


def test_wizardlm_bundled_parquet_backup_matches_the_bundled_json() -> None:
    from_json = read_file(RAW / "WizardLM_evol_instruct_V2_143k.json")
    from_parquet = read_file(RAW / "train-00000-of-00001.parquet")
    assert from_parquet == from_json
