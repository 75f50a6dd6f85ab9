"""hh_rlhf_chosen: HH-RLHF pairs as SFT conversations (prompt + chosen reply), with hh_rlhf's drops."""

from __future__ import annotations

from typing import Any

from mixer.core.errors import Location
from mixer.core.records import Dropped
from mixer.sources import SourceContext, get_adapter

PATH = "raw/hh_rlhf/harmless-base/train.jsonl.gz"


def _convert(chosen: str, rejected: str, record: int = 5) -> list[Any]:
    cls = get_adapter("hh_rlhf_chosen")
    adapter = cls(cls.Options(), SourceContext("hh_rlhf_chosen", 42))
    return list(adapter.convert({"chosen": chosen, "rejected": rejected}, Location(path=PATH, record=record)))


def test_hh_rlhf_chosen_keeps_the_prompt_and_the_chosen_reply_as_an_sft_record() -> None:
    assert get_adapter("hh_rlhf_chosen").kind == "sft"
    (record,) = _convert("\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant: Blue.",
                         "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant: Potato.")
    assert record == {"dataset": "hh_rlhf", "id": "hh_rlhf_harmless-base_5", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}


def test_hh_rlhf_chosen_drops_what_hh_rlhf_drops_with_the_same_reason() -> None:
    (same,) = _convert("\n\nHuman: Hi\n\nAssistant: Hello.", "\n\nHuman: Hi\n\nAssistant: Hello. ")
    (diverges,) = _convert("\n\nHuman: Hi\n\nAssistant: Hello.", "\n\nHuman: Yo\n\nAssistant: Hello.")
    assert isinstance(same, Dropped) and same.reason == "chosen_equals_rejected"
    assert isinstance(diverges, Dropped) and diverges.reason == "diverges_before_last_turn"
