"""LIMA adapter: alternating roles, odd-length conversations, the bundled file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Record
from mixer.readers.base import ParseFailure
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "lima"


def make_adapter() -> Adapter:
    cls = get_adapter("lima")
    return cls(cls.Options(), SourceContext("lima", 42))


def convert(raw: object, record: int = 0) -> list[Record | Dropped]:
    return list(make_adapter().convert(raw, Location("train.jsonl", line=record + 1, record=record)))


def read_file(path: Path) -> list[Record | Dropped]:
    adapter = make_adapter()
    out = []
    for item in adapter.read_file(path):
        assert not isinstance(item.value, ParseFailure), item.value
        out.extend(adapter.convert(item.value, item.location))
    return out


def test_lima_alternates_user_and_assistant_starting_with_user() -> None:
    (record,) = convert({"conversations": ["q1", "a1", "q2", "a2"], "source": "multi_turn"}, record=4)
    assert record == {
        "dataset": "lima",
        "id": "lima_4",
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
        ],
    }


def test_lima_drops_last_message_of_odd_conversation() -> None:
    (record,) = convert({"conversations": ["q1", "a1", "unanswered"], "source": "multi_turn"})
    assert [m["content"] for m in record["messages"]] == ["q1", "a1"]


def test_lima_conversation_with_no_complete_exchange_is_dropped_not_raised() -> None:
    (dropped,) = convert({"conversations": ["only a question"], "source": "nlp"}, record=9)
    assert isinstance(dropped, Dropped)
    assert (dropped.reason, dropped.dataset, dropped.id, dropped.stage) == (
        "empty_conversation", "lima", "lima_9", "read")


def test_lima_non_string_turn_raises_record_error_naming_its_index() -> None:
    with pytest.raises(RecordError, match="'conversations' item 1 must be a string, found dict"):
        convert({"conversations": ["q", {"text": "a"}], "source": "nlp"})


def test_lima_missing_conversations_raises_record_error_naming_the_field() -> None:
    with pytest.raises(RecordError, match="missing required field 'conversations'"):
        convert({"source": "wikihow", "text": "q"})


def test_lima_keeps_text_exactly() -> None:
    (record,) = convert({"conversations": [" q \n", "a\n\n"], "source": "nlp"})
    assert [m["content"] for m in record["messages"]] == [" q \n", "a\n\n"]


@given(st.lists(st.text(), max_size=9))
def test_lima_output_is_the_longest_even_prefix_with_alternating_roles(turns: list[str]) -> None:
    (out,) = convert({"conversations": turns, "source": "x"})
    if len(turns) < 2:
        assert isinstance(out, Dropped)
        return
    assert not isinstance(out, Dropped)
    kept = len(turns) - len(turns) % 2
    assert [m["content"] for m in out["messages"]] == turns[:kept]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"] * (kept // 2)


def test_lima_bundled_file_converts_every_line() -> None:
    out = read_file(RAW / "train.jsonl")
    assert len(out) == 21
    assert all(not isinstance(r, Dropped) for r in out)
    assert [r["id"] for r in out] == [f"lima_{i}" for i in range(21)]
    lengths = Counter(len(r["messages"]) for r in out)
    assert lengths[2] >= 15 and lengths[4] >= 2 and lengths[6] == 1


def test_lima_bundled_file_has_odd_conversations_and_several_sources() -> None:
    import orjson

    lines = [orjson.loads(line) for line in (RAW / "train.jsonl").read_bytes().splitlines()]
    assert sum(len(line["conversations"]) % 2 for line in lines) == 2
    assert {line["source"] for line in lines} >= {"stackexchange", "wikihow", "multi_turn"}
