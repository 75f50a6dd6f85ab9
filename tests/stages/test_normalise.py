"""Normalisation: the no-copy fast path for already clean records decides exactly what the full
rules decide."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

import mixer.stages.normalise as normalise
from mixer.recipe.settings import NormaliseSettings

TEXT = st.lists(st.sampled_from(["a", "b", " ", "\n", "\t", "\x1c", "é", "e\u0301", "\u00a0", "x"]),
                max_size=8).map("".join)
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": TEXT}), max_size=5)


@settings(max_examples=400, deadline=None)
@given(messages=MESSAGES, rules=st.builds(NormaliseSettings, nfc=st.booleans(), strip=st.booleans(),
                                          drop_empty_turns=st.booleans(), require_turn_order=st.booleans()))
def test_fast_path_gives_the_same_record_problem_and_counts_as_the_full_rules(messages, rules) -> None:
    record = {"dataset": "d", "id": "i", "messages": messages}
    fast_touched: Counter[str] = Counter()
    fast = normalise.normalise_record(record, rules, fast_touched)
    slow_touched: Counter[str] = Counter()
    original = normalise._clean
    normalise._clean = lambda content: False
    try:
        slow = normalise.normalise_record(record, rules, slow_touched)
    finally:
        normalise._clean = original
    assert fast == slow
    assert fast_touched == slow_touched


def test_clean_records_are_not_copied() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    record = {"dataset": "d", "id": "i", "messages": messages}
    out, problem = normalise.normalise_record(record, NormaliseSettings(), Counter())
    assert out["messages"] is messages and problem is None


def test_a_turn_order_drop_says_where_and_keeps_the_record_as_it_came() -> None:
    """A ShareGPT conversation whose empty first turn is removed starts with the reply: dropped as
    bad_turn_order with an empty detail and the record after the removal, so the cause could not be seen."""
    from mixer.core.stats import SourceStats
    from mixer.recipe.load import parse_recipe

    stage = normalise.Normalise(parse_recipe({"name": "t", "sources": [{"name": "sharegpt", "files": "f.json"}]}))
    emptied = {"dataset": "d", "id": "a", "messages": [{"role": "user", "content": " "},
                                                       {"role": "assistant", "content": "It looks like..."}]}
    dangling = {"dataset": "d", "id": "b", "messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello"},
                                                        {"role": "user", "content": "And?"}]}
    unanswered = {"dataset": "d", "id": "c", "messages": [{"role": "user", "content": "Hi"},
                                                          {"role": "assistant", "content": ""}]}
    first, second, third = stage.process("s", [emptied, dangling, unanswered], SourceStats("s", "sharegpt", None,
                                                                                            "all", 1))
    assert (first.reason, first.detail) == (
        "bad_turn_order", "1 empty turn removed; then message 1 of 1 is 'assistant' where 'user' was due")
    assert first.messages == emptied["messages"]  # as it came, the empty turn included
    assert (second.reason, second.detail) == ("bad_turn_order", "ends with a 'user' turn that has no reply")
    assert (third.reason, third.detail) == ("no_assistant_turn", "1 empty turn removed")
