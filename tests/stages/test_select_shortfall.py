"""A take that cannot be met is counted (``shortfall``) and said:
after filtering and dedup (too few records left), after ``max_tokens`` (too few fit), and for a file
that filtering emptied, which has no live row at all."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import write_jsonl

from mixer.build import build
from mixer.recipe.load import load_recipe


def _chat(user: str, words: int) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": "answer" + " word" * words}]}


def _card(result) -> dict:  # noqa: ANN001 - the build's result
    return json.loads((result.out / "card.json").read_text(encoding="utf-8"))


def test_per_file_shortfall_from_max_tokens_is_counted_and_warned(tmp_path: Path, make_recipe) -> None:
    # f1: 6 records, only the first fits 60 tokens; f2: 3 short records (fewer than take 5)
    write_jsonl(tmp_path / "raw" / "a" / "f1.jsonl", [_chat(f"question {i}", 50 * i) for i in range(6)])
    write_jsonl(tmp_path / "raw" / "a" / "f2.jsonl", [_chat(f"other {i}", 1) for i in range(3)])
    recipe = make_recipe([{"name": "a", "adapter": "messages", "files": ["a/f1.jsonl", "a/f2.jsonl"],
                           "take": 5, "take_per_file": True}], max_tokens=60)

    result = build(load_recipe(recipe))

    card = _card(result)
    (source,) = card["sources"]
    assert (source["selected"], source["shortfall"]) == (4, 6)
    warnings = card["warnings"]
    assert any(w.startswith("source 'a', file a/f1.jsonl: take 5 but only 1 of the 6") and "max_tokens 60" in w
               for w in warnings), warnings
    assert any(w.startswith("source 'a', file a/f2.jsonl: take 5 but only 3 records are left")
               for w in warnings), warnings


def test_whole_source_shortfall_from_max_tokens_is_warned(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", [_chat(f"question {i}", 50 * i) for i in range(6)])
    recipe = make_recipe([{"name": "a", "adapter": "messages", "files": ["a.jsonl"], "take": 3}], max_tokens=60)

    card = _card(build(load_recipe(recipe)))

    assert card["sources"][0]["shortfall"] == 2
    assert any(w.startswith("source 'a': take 3 but only 1 of the 6") for w in card["warnings"]), card["warnings"]


def test_a_file_that_filtering_emptied_is_short_of_its_whole_take(tmp_path: Path, make_recipe) -> None:
    # every record of f2 mentions ChatGPT: the LLM-mention filter drops them all, so f2 has no live row
    write_jsonl(tmp_path / "raw" / "a" / "f1.jsonl", [_chat(f"question {i}", 1) for i in range(4)])
    write_jsonl(tmp_path / "raw" / "a" / "f2.jsonl", [_chat(f"ChatGPT says {i}", 1) for i in range(3)])
    recipe = make_recipe([{"name": "a", "adapter": "messages", "files": ["a/f1.jsonl", "a/f2.jsonl"],
                           "take": 2, "take_per_file": True}])

    card = _card(build(load_recipe(recipe)))

    (source,) = card["sources"]
    assert (source["selected"], source["dropped"], source["shortfall"]) == (2, {"llm_mention": 3}, 2)
    assert any(w.startswith("source 'a', file a/f2.jsonl: take 2 but only 0 records") for w in card["warnings"]), \
        card["warnings"]
    assert source["records_in"] == source["dropped_total"] + source["not_sampled"] + source["selected"]
