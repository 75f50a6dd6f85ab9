"""The LLM-mention filter's two modes (issue 23, point 6b): ``substring`` (Tulu V2's rule, the default)
and ``word`` (a whole word in an assistant turn, open-instruct's current rule); a recipe that names a
mode gets both modes' drop counts in the card, and one that does not gets the card it got before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from mixer.build import build
from mixer.core.errors import RecipeError
from mixer.recipe.load import load_recipe, parse_recipe
from mixer.recipe.settings import TULU_V2_LLM_KEYWORDS
from mixer.stages.filter import LLMMentionFilter


def _record(user: str, assistant: str) -> dict:
    return {"dataset": "d", "id": user[:20], "messages": [{"role": "user", "content": user},
                                                          {"role": "assistant", "content": assistant}]}


#: the kinds of false positive of the substring rule found on real data (issue 23): a keyword inside
#: another word ("napalm", "bombard") or in a user turn only ("palm trees", "the bard")
FALSE_POSITIVES = [
    _record("Where can I see palm trees?", "Along the coast of Florida."),
    _record("What was it used for?", "Napalm was an incendiary weapon."),
    _record("What does the word mean?", "To bombard is to attack with shells."),
    _record("Who is the bard?", "William Shakespeare, of Avon."),
]
#: mentions the word rule still catches, and where it does not look (a user turn)
MENTIONS = [
    _record("Who are you?", "I am ChatGPT, a model trained by OpenAI."),
    _record("Compare yourself to GPT-4.", "GPT-4 is a larger model."),
    _record("Is it true Bard can search the web?", "Yes, it can search the web."),
]


def test_substring_mode_drops_the_known_false_positives_and_word_mode_keeps_them() -> None:
    substring = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "substring")
    word = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "word")
    assert [substring(r) for r in FALSE_POSITIVES] == [
        ("llm_mention", "'palm' in user turn"), ("llm_mention", "'palm' in assistant turn"),
        ("llm_mention", "'bard' in assistant turn"), ("llm_mention", "'bard' in user turn")]
    assert [word(r) for r in FALSE_POSITIVES] == [None, None, None, None]


def test_word_mode_still_matches_a_keyword_that_is_a_common_word_in_an_assistant_turn() -> None:
    """The limit of the word rule: "Palm" and "BARD" are Tulu V2 keywords (PaLM, Bard), so a reply
    about palm trees still matches; a recipe drops them from ``keywords`` to keep such replies."""
    reply = _record("Which trees grow there?", "Palm trees grow along the coast.")
    word = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "word")
    assert word(reply) == ("llm_mention", "'palm' as a word in assistant turn")
    fewer = [k for k in TULU_V2_LLM_KEYWORDS if k not in ("Palm", "BARD")]
    assert LLMMentionFilter(fewer, "word")(reply) is None


def test_word_mode_matches_whole_words_in_assistant_turns_only() -> None:
    word = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "word")
    assert [word(r) for r in MENTIONS] == [
        ("llm_mention", "'chatgpt' as a word in assistant turn"),
        ("llm_mention", "'gpt-4' as a word in assistant turn"), None]
    assert LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "substring")(MENTIONS[2]) == ("llm_mention", "'bard' in user turn")
    # a keyword inside a longer word is no match; a keyword at the end of a sentence is
    assert word(_record("q", "Claudette and Bardolph met.")) is None
    assert word(_record("q", "It was written by claude.")) == ("llm_mention", "'claude' as a word in assistant turn")


def test_batch_screen_gives_each_records_verdicts_in_both_modes() -> None:
    records = (FALSE_POSITIVES + MENTIONS + [_record(f"question {i}", f"answer {i}") for i in range(70)]) * 2
    f = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "word")
    assert len(records) >= 64  # the polars screen, not the per-record path
    assert f.check_both(records) == [(LLMMentionFilter(TULU_V2_LLM_KEYWORDS).substring(r), f.word(r)) for r in records]
    assert f.check_batch(records) == [f(r) for r in records]


def _flan(rows: list[dict]) -> list[dict]:
    return [{"inputs": r["messages"][0]["content"], "targets": r["messages"][1]["content"]} for r in rows]


@pytest.mark.parametrize("mode", ["substring", "word"])
def test_card_counts_both_modes_and_the_build_applies_the_named_one(tmp_path: Path, make_recipe, mode: str) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(FALSE_POSITIVES + MENTIONS) + [
        {"inputs": f"question {i}", "targets": f"answer {i}"} for i in range(5)])
    result = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                                           filters={"llm_mentions": {"mode": mode}})))
    source = result.card["sources"][0]
    assert source["llm_mentions"] == {"mode": mode, "would_drop": {"substring": 7, "word": 2}}
    assert source["dropped"] == {"llm_mention": 7 if mode == "substring" else 2}
    assert source["selected"] == (5 if mode == "substring" else 10)
    assert result.card["recipe"]["llm_mention_mode"] == mode
    assert "## LLM-mention filter modes" in (result.out / "README.md").read_text()


def test_unset_mode_is_substring_and_leaves_the_card_without_mode_counts(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(FALSE_POSITIVES + MENTIONS))
    result = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}])))
    source = result.card["sources"][0]
    assert source["dropped"] == {"llm_mention": 7} and "llm_mentions" not in source
    assert "llm_mention_mode" not in json.loads((result.out / "card.json").read_text())["recipe"]


def test_unknown_mention_mode_names_the_recipe_key() -> None:
    with pytest.raises(RecipeError, match=r"filters\.llm_mentions\.mode: 'regex' is not valid"):
        parse_recipe({"filters": {"llm_mentions": {"mode": "regex"}}, "sources": [{"name": "flan_v2", "files": "x"}]})


def _tulu_v2_should_be_filtered(record: dict) -> bool:
    """open-instruct's Tulu V2 rule (scripts/data/sft_v1_v2/reformat_datasets.py, ``should_be_filtered``),
    restated: a keyword, lowered, is a substring of any message's ``content.lower()``."""
    return any(k.lower() in m["content"].lower() for m in record["messages"] for k in TULU_V2_LLM_KEYWORDS)


#: texts whose Python lowering holds a keyword although their ASCII folding does not: "İ" (U+0130) lowers to
#: "i" + U+0307, so "OPENAİ" is "openai" + a combining dot to ``str.lower``; inside a word the dot splits
#: it ("LAİON" is "lai" + dot + "on"), and Tulu V2 kept such records too
UNICODE_CASES = [
    _record("KULLANICI: OPENAİ HAKKINDA BİLGİ VER", "Bilgi veriyorum."),
    _record("Bu bir test.", "Cevap: OPEN Aİ."),
    _record("Tell me about LAİON.", "It is a non-profit."),
    _record("İstanbul is a city.", "Yes, in Türkiye."),
]


@pytest.mark.parametrize("batch", [4, 80])  # 4 records are checked in Python, 80 go through the polars screen
def test_substring_mode_lowers_as_tulu_v2_did(batch: int) -> None:
    flt = LLMMentionFilter(TULU_V2_LLM_KEYWORDS, "substring")
    records = (UNICODE_CASES * 20)[:batch]
    verdicts = flt.check_batch(records)
    assert [v is not None for v in verdicts] == [_tulu_v2_should_be_filtered(r) for r in records]
    assert [v is not None for v in verdicts[:4]] == [True, True, False, False]
    assert verdicts[:2] == [("llm_mention", "'openai' in user turn"), ("llm_mention", "'open ai' in assistant turn")]
