"""Exact dedup of preference pairs (issue 23, point 6a): the key is the whole pair by default (two pairs
on one prompt with different replies both stay), the prompt alone with ``dedup.exact.preference_key:
prompt`` (one pair per prompt, the rule before); in both orders of the pipeline."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from mixer.build import build
from mixer.core.errors import RecipeError
from mixer.core.records import record_key_messages
from mixer.recipe.load import load_recipe, parse_recipe
from mixer.stages.exact_dedup import content_hash


def _pair(prompt: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {chosen}",
            "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {rejected}"}


#: one prompt with two different pairs, then an exact copy of the first pair, then another prompt
PAIRS = [_pair("Name a tree.", "An oak.", "A rock."),
         _pair("Name a tree.", "A palm tree.", "A car."),
         _pair("Name a tree.", "An oak.", "A rock."),
         _pair("Name a river.", "The Nile.", "The moon.")]


def _build(tmp_path: Path, make_recipe, **top) -> tuple[dict, list[dict]]:
    write_jsonl(tmp_path / "raw" / "hh.jsonl", PAIRS)
    recipe = make_recipe([{"name": "hh_rlhf", "files": "hh.jsonl"}], kind="preference",
                         filters={"llm_mentions": {"enabled": False}}, **top)
    result = build(load_recipe(recipe))
    source = result.card["sources"][0]
    return source, pq.read_table(result.out / "data").to_pylist()


@pytest.mark.parametrize("order", ["filter_then_sample", "sample_then_filter"])
def test_pair_key_keeps_pairs_on_one_prompt_with_different_replies(tmp_path: Path, make_recipe, order: str) -> None:
    source, rows = _build(tmp_path, make_recipe, order=order)
    assert source["dropped"] == {"exact_duplicate": 1} and source["selected"] == 3
    replies = sorted((r["prompt"][-1]["content"], r["chosen"][0]["content"]) for r in rows)
    assert replies == [("Name a river.", "The Nile."), ("Name a tree.", "A palm tree."), ("Name a tree.", "An oak.")]


@pytest.mark.parametrize("order", ["filter_then_sample", "sample_then_filter"])
def test_prompt_key_keeps_one_pair_per_prompt(tmp_path: Path, make_recipe, order: str) -> None:
    source, rows = _build(tmp_path, make_recipe, order=order,
                          dedup={"exact": {"preference_key": "prompt"}})
    assert source["dropped"] == {"exact_duplicate": 2} and source["selected"] == 2
    assert sorted(r["chosen"][0]["content"] for r in rows) == ["An oak.", "The Nile."]


def test_pair_key_tells_chosen_from_rejected_and_from_a_longer_conversation() -> None:
    prompt = [{"role": "user", "content": "q"}]
    pair = {"dataset": "d", "id": "1", "messages": [*prompt, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    swapped = {**pair, "messages": [*prompt, {"role": "assistant", "content": "b"}],
               "rejected": [{"role": "assistant", "content": "a"}]}
    conversation = {"dataset": "d", "id": "2", "messages": [*prompt, {"role": "assistant", "content": "a"},
                                                             {"role": "assistant", "content": "b"}]}
    keys = {content_hash(record_key_messages(r)) for r in (pair, swapped, conversation)}  # type: ignore[arg-type]
    assert len(keys) == 3
    assert record_key_messages(pair, "prompt") == prompt == record_key_messages(swapped, "prompt")  # type: ignore[arg-type]


def test_exact_dedup_takes_true_false_or_a_mapping_and_names_a_bad_preference_key() -> None:
    sources = [{"name": "hh_rlhf", "files": "x.jsonl"}]
    assert parse_recipe({"kind": "preference", "sources": sources}).dedup.exact.preference_key == "pair"
    off = parse_recipe({"kind": "preference", "dedup": {"exact": False}, "sources": sources}).dedup.exact
    assert not off and off.enabled is False
    with pytest.raises(RecipeError, match=r"dedup\.exact\.preference_key: 'reply' is not valid"):
        parse_recipe({"kind": "preference", "dedup": {"exact": {"preference_key": "reply"}}, "sources": sources})
