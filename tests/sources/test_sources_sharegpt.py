"""ShareGPT: role mapping and drops, the FastChat/open-instruct split rule, and the sample files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.core.errors import Location, RecipeError, RecordError
from mixer.core.records import Dropped
from mixer.sources import SourceContext, get_adapter
from mixer.sources.sharegpt import MESSAGE_OVERHEAD_TOKENS, Chunk, split_conversation
from mixer.tokens.count import get_token_counter

SAMPLES = Path(__file__).parents[2] / "samples" / "raw_train" / "sharegpt"
PRESPLIT = SAMPLES / "sharegpt_html_cleaned_and_split_4096.json"
RAW = [SAMPLES / "sg_90k_part1_html_cleaned.json", SAMPLES / "sg_90k_part2_html_cleaned.json"]
LOC = Location("sg.json", record=3)


def adapter(**options: Any) -> Any:
    cls = get_adapter("sharegpt")
    return cls(cls.Options(**options), SourceContext("sharegpt", 42))


def conv(cid: str, *turns: tuple[str, str]) -> dict[str, Any]:
    return {"id": cid, "conversations": [{"from": f, "value": v} for f, v in turns]}


def convert(raw: Any, **options: Any) -> list[Any]:
    return list(adapter(**options).convert(raw, LOC))


def read_all(paths: list[Path], **options: Any) -> list[Any]:
    a = adapter(**options)
    return [out for p in paths for item in a.read_file(p) for out in a.convert(item.value, item.location)]


def test_sharegpt_is_registered_with_apache_licence_and_mentions_openai_terms() -> None:
    cls = get_adapter("sharegpt")
    assert cls.name == "sharegpt" and cls.license == "Apache-2.0"
    assert "OpenAI" in cls.description
    assert cls.Options() == cls.Options(dataset="sharegpt", split_max_tokens=None)


def test_sharegpt_maps_human_user_gpt_and_chatgpt_roles() -> None:
    [record] = convert(conv("abc_0", ("human", "hi"), ("gpt", "hello"), ("user", "again"), ("chatgpt", "yes")))
    assert record == {"dataset": "sharegpt", "id": "sharegpt_abc_0", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"}, {"role": "assistant", "content": "yes"}]}


def test_sharegpt_drops_conversations_with_bing_turns() -> None:
    [dropped] = convert(conv("b1", ("human", "weather?"), ("bing", "Searching..."), ("gpt", "rain")))
    assert isinstance(dropped, Dropped)
    assert dropped.reason == "system_or_bing_turn" and dropped.id == "sharegpt_b1"


def test_sharegpt_drops_conversations_with_system_turns() -> None:
    [dropped] = convert(conv("s1", ("system", "*shared from TypingMind*"), ("human", "hi"), ("gpt", "hey")))
    assert isinstance(dropped, Dropped) and dropped.reason == "system_or_bing_turn"


def test_sharegpt_unknown_role_is_dropped_not_raised() -> None:
    [dropped] = convert(conv("r1", ("human", "translate"), ("bard", "ohayou")))
    assert isinstance(dropped, Dropped) and dropped.reason == "unknown_role" and "bard" in dropped.detail


def test_sharegpt_first_offending_speaker_decides_the_reason() -> None:
    [dropped] = convert(conv("r2", ("bard", "x"), ("bing", "y")))
    assert dropped.reason == "unknown_role"
    [dropped] = convert(conv("r3", ("bing", "x"), ("bard", "y")))
    assert dropped.reason == "system_or_bing_turn"


def test_sharegpt_keeps_empty_values_and_odd_turn_counts() -> None:
    [record] = convert(conv("e1", ("human", ""), ("gpt", "It looks empty."), ("human", "")))
    assert [m["content"] for m in record["messages"]] == ["", "It looks empty.", ""]


def test_sharegpt_empty_conversation_is_dropped() -> None:
    [dropped] = convert(conv("e2"))
    assert isinstance(dropped, Dropped) and dropped.reason == "empty_conversation"


def test_sharegpt_dataset_option_sets_label_and_id_prefix() -> None:
    [record] = convert(conv("x9", ("human", "a"), ("gpt", "b")), dataset="my_chats")
    assert record["dataset"] == "my_chats" and record["id"] == "my_chats_x9"


def test_sharegpt_missing_or_numeric_ids_fall_back_or_are_stringified() -> None:
    [record] = convert({"conversations": [{"from": "human", "value": "a"}]})
    assert record["id"] == "sharegpt_3"
    [record] = convert({"id": 17, "conversations": [{"from": "human", "value": "a"}]})
    assert record["id"] == "sharegpt_17"


@pytest.mark.parametrize("raw, needle", [
    ("not an object", "JSON object"),
    ({"id": "a"}, "'conversations'"),
    ({"id": "a", "conversations": "hi"}, "'conversations'"),
    ({"id": "a", "conversations": ["hi"]}, r"conversations\[0\]"),
    ({"id": "a", "conversations": [{"value": "hi"}]}, "'from'"),
    ({"id": "a", "conversations": [{"from": "human", "value": None}]}, "'value'"),
    ({"id": ["a"], "conversations": []}, "'id'"),
])
def test_sharegpt_malformed_records_raise_record_error_naming_the_field(raw: Any, needle: str) -> None:
    with pytest.raises(RecordError, match=needle):
        convert(raw)
    with pytest.raises(RecordError, match=needle):
        convert(raw, split_max_tokens=256)


def test_sharegpt_non_positive_split_max_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="split_max_tokens"):
        get_adapter("sharegpt").Options(split_max_tokens=0)


# -- the split rule on per-message lengths --------------------------------------------------------

def test_split_packs_whole_pairs_until_the_next_would_overflow() -> None:
    # 60 + 40 = 100 fits exactly; the 80-token pair starts a new chunk, which the last pair joins
    result = split_conversation([30, 30, 20, 20, 40, 40, 10, 10], max_tokens=100)
    assert result.chunks == [Chunk(0, 4), Chunk(4, 8)]
    assert result.oversized_pairs == [] and result.lost_tail_pair is None


def test_split_skips_a_pair_longer_than_the_maximum_on_its_own() -> None:
    result = split_conversation([20, 20, 80, 80, 10, 10, 5, 5], max_tokens=100)
    # the oversized pair still counts in the running sum, so the next pair flushes an empty chunk
    assert result.chunks == [Chunk(0, 2), Chunk(4, 8)]
    assert result.oversized_pairs == [2]


def test_split_loses_a_final_pair_that_overflows_as_fastchat_does() -> None:
    result = split_conversation([40, 40, 30, 30], max_tokens=100)
    assert result.chunks == [Chunk(0, 2)]
    assert result.lost_tail_pair == 2


def test_split_cuts_an_odd_last_message_and_needs_a_pair() -> None:
    assert split_conversation([5, 5, 5], max_tokens=100).chunks == [Chunk(0, 2)]
    assert split_conversation([5], max_tokens=100).chunks == []
    assert split_conversation([], max_tokens=100).chunks == []


def fastchat_reference(lengths: list[int], max_tokens: int) -> list[tuple[int, int]]:
    """FastChat's rule with open-instruct's fix, restated independently (empty chunks removed)."""
    n = len(lengths) // 2 * 2
    if n < 2:
        return []
    out, start, running = [], 0, 0
    for i in range(0, n, 2):
        pair = lengths[i] + lengths[i + 1]
        if running + pair > max_tokens:
            out.append((start, i))
            start = i + 2 if pair > max_tokens else i
            running = 0
        elif i == n - 2:
            out.append((start, i + 2))
        running += pair
    return [(a, b) for a, b in out if b > a]


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(6, 120), max_size=24), max_tokens=st.integers(20, 300))
def test_split_matches_the_reference_rule_and_respects_the_maximum(lengths: list[int], max_tokens: int) -> None:
    result = split_conversation(lengths, max_tokens)
    assert [(c.start, c.end) for c in result.chunks] == fastchat_reference(lengths, max_tokens)
    previous_end = 0
    for c in result.chunks:
        assert c.start % 2 == 0 and c.end % 2 == 0 and c.start >= previous_end and c.end > c.start
        assert sum(lengths[c.start:c.end]) <= max_tokens
        previous_end = c.end
    for i in result.oversized_pairs:
        assert lengths[i] + lengths[i + 1] > max_tokens


# -- splitting real-format raw files ----------------------------------------------------------------

def test_sharegpt_split_ids_use_even_start_indices() -> None:
    out = read_all(RAW, split_max_tokens=256)
    records = [r for r in out if not isinstance(r, Dropped)]
    garden = [r["id"] for r in records if r["id"].startswith("sharegpt_Gd7pLw2_")]
    assert len(garden) >= 3
    starts = [int(i.rsplit("_", 1)[1]) for i in garden]
    assert all(s % 2 == 0 for s in starts) and starts == sorted(starts) and starts[0] == 0
    assert all(r["id"].rsplit("_", 1)[1].isdigit() for r in records)


def test_sharegpt_split_chunks_respect_max_tokens() -> None:
    counter = get_token_counter("tiktoken:cl100k_base")
    for max_tokens in (256, 4096):
        for r in read_all(RAW, split_max_tokens=max_tokens):
            if isinstance(r, Dropped):
                continue
            lengths = counter.count_texts([m["content"] for m in r["messages"]])
            assert sum(lengths) + MESSAGE_OVERHEAD_TOKENS * len(lengths) <= max_tokens
            assert len(r["messages"]) % 2 == 0
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * (len(r["messages"]) // 2)


def test_sharegpt_split_counts_oversized_pairs_and_invalid_role_chunks() -> None:
    out = read_all(RAW, split_max_tokens=256)
    reasons = Counter(r.reason for r in out if isinstance(r, Dropped))
    assert reasons["turn_pair_too_long"] >= 1
    # leading system/gpt turns, bing/bard/user/chatgpt speakers: the chunk fails the strict role check
    assert reasons["invalid_roles_after_split"] >= 5
    dropped_ids = {r.id for r in out if isinstance(r, Dropped)}
    assert "sharegpt_EbTm4rK_0" in dropped_ids  # starts with a system banner
    assert "sharegpt_Yd2Kf9s_0" in dropped_ids  # user/chatgpt speakers are not human/gpt


def test_sharegpt_split_at_4096_keeps_short_conversations_whole() -> None:
    out = read_all(RAW, split_max_tokens=4096)
    records = {r["id"]: r for r in out if not isinstance(r, Dropped)}
    assert "sharegpt_Gd7pLw2_0" in records and len(records["sharegpt_Gd7pLw2_0"]["messages"]) == 14
    # the odd last message of a conversation is cut off by the split
    assert len(records["sharegpt_Zr6LpA0_0"]["messages"]) == 2


def test_sharegpt_split_mode_only_yields_human_gpt_chunks_for_raw_quirks() -> None:
    single = conv("q1", ("human", "only one message"))
    [dropped] = convert(single, split_max_tokens=256)
    assert dropped.reason == "no_complete_turn_pair"
    [dropped] = convert(conv("q2", ("gpt", "leading gpt"), ("human", "hi")), split_max_tokens=256)
    assert dropped.reason == "invalid_roles_after_split" and dropped.id == "sharegpt_q2_0"


# -- the sample files as published ------------------------------------------------------------------

def test_sharegpt_presplit_sample_reads_end_to_end() -> None:
    out = read_all([PRESPLIT])
    assert out and all(not isinstance(r, Dropped) for r in out)
    for r in out:
        orig, start = r["id"].removeprefix("sharegpt_").rsplit("_", 1)
        assert len(orig) == 7 and int(start) % 2 == 0
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
    assert any(r["id"].endswith("_10") for r in out)


def test_sharegpt_raw_samples_survive_every_quirk_without_splitting() -> None:
    out = read_all(RAW)
    reasons = Counter(r.reason for r in out if isinstance(r, Dropped))
    assert reasons["system_or_bing_turn"] >= 3 and reasons["unknown_role"] == 1
    records = [r for r in out if not isinstance(r, Dropped)]
    ids = [r["id"] for r in records]
    assert len(ids) - len(set(ids)) == 1  # the conversation repeated in part 2
    assert any("\\_" in m["content"] for r in records for m in r["messages"])
    assert any(m["content"] == "" for r in records for m in r["messages"])
