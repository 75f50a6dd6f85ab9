"""``take: {first: N}``: a published subset defined as a prefix (OpenBezoar's "first 100K examples of the
HH-RLHF dataset"), the first N records in file order after filtering and dedup, in either build order;
the card and ``mixer validate`` say so; bad values are a message naming the recipe key."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import RecipeError
from mixer.recipe.budget import FirstTake
from mixer.recipe.load import parse_recipe

runner = CliRunner()


def _chats(word: str, n: int) -> list[dict[str, object]]:
    return [{"id": f"{word}{i}", "messages": [{"role": "user", "content": f"{word} question {i}"},
                                              {"role": "assistant", "content": f"{word} answer {i}"}]}
            for i in range(n)]


def _recipe(tmp_path: Path, take: object, **extra: object) -> Path:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _chats("apple", 4))
    write_jsonl(tmp_path / "raw" / "b.jsonl", _chats("pear", 4))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "first", "seed": 3, "raw_dir": str(tmp_path / "raw"),
                                      "output": str(tmp_path / "out"), **extra,
                                      "sources": [{"name": "chats", "adapter": "messages",
                                                   "files": ["a.jsonl", "b.jsonl"], "take": take}]}),
                      encoding="utf-8")
    return recipe


@pytest.mark.parametrize("order", ["filter_then_sample", "sample_then_filter"])
def test_first_take_keeps_the_first_records_in_file_order(tmp_path: Path, order: str) -> None:
    result = runner.invoke(app, ["build", str(_recipe(tmp_path, {"first": 6}, order=order)), "-q"])
    assert result.exit_code == 0, result.output
    ids = sorted(pq.read_table(tmp_path / "out" / "data")["id"].to_pylist())
    assert ids == sorted(["apple0", "apple1", "apple2", "apple3", "pear0", "pear1"])
    card = json.loads((tmp_path / "out" / "card.json").read_text(encoding="utf-8"))
    (source,) = card["sources"]
    assert source["take"] == {"first": 6}
    dropped = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    assert sorted((d["id"], d["reason"]) for d in dropped) == [("pear2", "not_sampled"), ("pear3", "not_sampled")]


def test_first_take_counts_after_dedup_and_warns_when_the_source_is_shorter(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"first": 20})
    write_jsonl(tmp_path / "raw" / "b.jsonl", _chats("apple", 1) + _chats("pear", 2)[1:])  # apple0 again
    result = runner.invoke(app, ["build", str(recipe)])
    assert result.exit_code == 0, result.output
    ids = pq.read_table(tmp_path / "out" / "data")["id"].to_pylist()
    assert len(ids) == 5 and "pear1" in ids  # the duplicate apple0 is dropped by exact dedup, not taken
    assert "take first 20 records but only 5 records are left" in " ".join(result.output.split())


def test_validate_lists_a_first_take(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_recipe(tmp_path, {"first": 3}))])
    assert result.exit_code == 0, result.output
    assert "first 3 records" in result.output


@pytest.mark.parametrize("take, message", [
    ({"first": 0}, "take.first: expected a whole number >= 1"),
    ({"first": 2, "records": 2}, "give one of records, tokens or first"),
    ({"frist": 2}, "did you mean 'first'"),
])
def test_bad_first_takes_name_the_recipe_key(take: object, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"name": "x", "sources": [{"name": "chats", "adapter": "messages", "files": "a.jsonl",
                                                "take": take}]})


def test_first_take_is_parsed_as_a_first_take() -> None:
    recipe = parse_recipe({"name": "x", "sources": [{"name": "chats", "adapter": "messages", "files": "a.jsonl",
                                                     "take": {"first": 100_000}}]})
    assert recipe.sources[0].take == FirstTake(100_000) and str(recipe.sources[0].take) == "first 100,000 records"
