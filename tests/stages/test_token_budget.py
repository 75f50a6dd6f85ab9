"""Token budgets (issue 23, point 1): ``take: {tokens: N}`` per source and ``budget: {tokens, shares}`` per
recipe. The walk stops at the record that would pass the budget; a budget share a source cannot fill is met
by whole repeats and a seeded remainder; per-source budgets add up to the total exactly; the same recipe
and seed give the same bytes; bad budgets are a message naming the recipe key and exit 2."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from mixer.build import build
from mixer.cli import app
from mixer.core.errors import RecipeError
from mixer.kernels.budget import upsample_plan, walk_tokens
from mixer.recipe.budget import BudgetError, TokenTake, apportion
from mixer.recipe.load import load_recipe, parse_recipe
from mixer.sources import SourceContext, get_adapter
from mixer.stages.select import sample_order
from mixer.tokens.count import TokenCounter, count_record_tokens


def _walk(counts: list[int], budget: int, max_tokens: int | None = None, chunk_rows: int = 20_000
          ) -> tuple[list[int], int, int | None, list]:
    dropped: list[tuple[int, int]] = []
    rows, got, walked, stop = walk_tokens(np.arange(len(counts)), budget, max_tokens,
                                          lambda chunk: [counts[i] for i in chunk],
                                          lambda r, c: dropped.extend(zip(r.tolist(), c.tolist(), strict=True)),
                                          chunk_rows)
    assert got.tolist() == [counts[i] for i in rows.tolist()]
    return rows.tolist(), walked, stop, dropped


def test_token_walk_stops_at_the_record_that_would_pass_the_budget() -> None:
    assert _walk([5, 3, 7, 2, 1], 10) == ([0, 1], 2, 7, [])  # 5 + 3 = 8; 7 would make 15
    assert _walk([5, 5, 7], 10) == ([0, 1], 2, 7, [])  # exactly 10 is within the budget
    assert _walk([12, 1], 10) == ([], 0, 12, [])  # the first record alone would pass
    assert _walk([2, 3], 10) == ([0, 1], 2, None, [])  # walked everything, 5 of 10


def test_token_walk_drops_records_over_max_tokens_and_goes_on() -> None:
    assert _walk([5, 50, 3, 60, 7, 1], 10, max_tokens=20) == ([0, 2], 4, 7, [(1, 50), (3, 60)])


def test_token_walk_result_does_not_depend_on_the_chunk_size() -> None:
    rng = random.Random(7)
    counts = [rng.randint(1, 400) for _ in range(30_000)]
    results = [_walk(counts, 2_000_000, max_tokens=350, chunk_rows=chunk_rows) for chunk_rows in (300, 20_000)]
    assert results[0] == results[1]
    rows, walked, stop, dropped = results[0]
    assert stop is not None and sum(counts[i] for i in rows) + stop > 2_000_000 >= sum(counts[i] for i in rows)


def test_upsample_is_whole_repeats_then_the_first_records_up_to_what_is_left() -> None:
    assert upsample_plan(np.array([4, 6, 5]), 40) == (2, 2)  # 2 x 15 = 30; 4 + 6 = 10 more, 5 would pass
    assert upsample_plan(np.array([4, 6, 5]), 45) == (3, 0)
    assert upsample_plan(np.array([4, 6, 5]), 33) == (2, 0)  # 3 left: the first record (4) would pass


def test_per_source_budgets_add_up_to_the_total_exactly() -> None:
    assert apportion(50_000_000, {"flan_v2": 0.2, "sharegpt": 0.5, "oasst1": 0.3}) == {
        "flan_v2": 10_000_000, "sharegpt": 25_000_000, "oasst1": 15_000_000}
    third = {"a": 0.333333, "b": 0.333333, "c": 0.333334}
    assert apportion(10, third) == {"a": 3, "b": 3, "c": 4}
    assert apportion(11, {"a": 0.5, "b": 0.5}) == {"a": 6, "b": 5}  # a tie goes to the source listed first
    for total in (1, 7, 999_983):
        assert sum(apportion(total, third).values()) == total


def _flan(n: int, prefix: str, words: int = 1) -> list[dict[str, str]]:
    return [{"inputs": f"{prefix} {i}: " + "word " * (i % 17 * words), "targets": f"answer {i}"} for i in range(n)]


def _expected_token_take(recipe_path: Path, name: str, budget: int) -> list[str]:
    """The ids a token take of every record of one flan_v2 source must give: its seeded order (as the
    selector draws it), each record counted in the chat format the card uses, stopping at the record
    that would pass ``budget``."""
    recipe = load_recipe(recipe_path)
    source = next(s for s in recipe.sources if s.name == name)
    adapter = get_adapter("flan_v2")(source.options, SourceContext(name, recipe.source_seed(name), recipe.tokenizer))
    path = Path(recipe.raw_dir) / source.files[0].path
    records = [r for item in adapter.read_file(path) for r in adapter.convert(item.value, item.location)]
    with TokenCounter(recipe.tokenizer) as counter:
        counts = count_record_tokens(counter, records)
    ids, total = [], 0
    for i in sample_order(random.Random(recipe.source_seed(name)), len(records)).tolist():
        if total + counts[i] > budget:
            break
        total += counts[i]
        ids.append(records[i]["id"])
    return ids


def test_token_take_takes_the_seeded_order_up_to_n_tokens_and_the_card_says_how_close(
        tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(200, "question"))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": {"tokens": 1500}}])
    result = build(load_recipe(recipe))
    rows = pq.read_table(result.out / "data").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(_expected_token_take(recipe, "flan_v2", 1500))
    source = result.card["sources"][0]
    achieved = sum(r["n_tokens"] for r in rows)
    assert source["take"] == {"tokens": 1500}
    assert source["token_take"] == {"planned": 1500, "achieved": achieved, "repeats": 1, "remainder_records": 0}
    assert 1500 - max(r["n_tokens"] for r in rows) < achieved <= 1500
    assert source["records_in"] == source["selected"] + source["not_sampled"] + source["dropped_total"]
    assert "## Token budgets" in (result.out / "README.md").read_text()


def test_take_records_mapping_is_the_same_as_a_count() -> None:
    recipe = parse_recipe({"sources": [{"name": "flan_v2", "files": "x", "take": {"records": 25}}]})
    assert recipe.sources[0].take == 25


def test_budget_shares_upsample_a_small_source_by_whole_repeats_and_a_seeded_remainder(
        tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "big.jsonl", _flan(400, "big", words=3))
    write_jsonl(tmp_path / "raw" / "small.jsonl", _flan(6, "small"))
    recipe = make_recipe([{"name": "big", "adapter": "flan_v2", "files": "big.jsonl"},
                          {"name": "small", "adapter": "flan_v2", "files": "small.jsonl"}],
                         budget={"tokens": 4000, "shares": {"big": 0.75, "small": 0.25}})
    result = build(load_recipe(recipe))
    rows = pq.read_table(result.out / "data").to_pylist()
    big, small = result.card["sources"]
    assert big["take"] == {"tokens": 3000, "share": 0.75} and small["take"] == {"tokens": 1000, "share": 0.25}
    # small has fewer tokens than its share: every record at least `repeats` times, `remainder` once more
    copies = Counter(r["id"] for r in rows if r["id"].startswith("flan_v2_") and r["messages"][0]["content"]
                     .startswith("small"))
    per_record = {r["id"]: r["n_tokens"] for r in rows if r["messages"][0]["content"].startswith("small")}
    total_small = sum(per_record.values())
    k, extra = small["token_take"]["repeats"], small["token_take"]["remainder_records"]
    assert k == 1000 // total_small and k >= 2 and small["repeat"] == k
    assert sorted(copies.values()) == [k] * (6 - extra) + [k + 1] * extra
    assert small["final"] == 6 * k + extra == small["tokens"]["count"]
    assert small["token_take"]["achieved"] == small["tokens"]["total"] <= 1000
    assert big["token_take"]["repeats"] == 1 and big["token_take"]["achieved"] <= 3000
    budget = result.card["budget"]
    assert budget["tokens"] == 4000 and [b["planned"] for b in budget["sources"]] == [3000, 1000]
    assert budget["achieved"] == big["tokens"]["total"] + small["tokens"]["total"]
    assert budget["achieved"] == result.card["totals"]["tokens"]["total"]
    assert [b["achieved_share"] for b in budget["sources"]] == [
        round(b["achieved"] / budget["achieved"], 6) for b in budget["sources"]]


def test_budget_build_is_byte_identical_for_the_same_seed_and_differs_for_another(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(300, "a"))
    write_jsonl(tmp_path / "raw" / "b.jsonl", _flan(5, "b"))
    sources = [{"name": "a", "adapter": "flan_v2", "files": "a.jsonl"},
               {"name": "b", "adapter": "flan_v2", "files": "b.jsonl"}]
    budget = {"tokens": 3000, "shares": {"a": 0.6, "b": 0.4}}
    recipe = make_recipe(sources, budget=budget)
    outs = [build(load_recipe(recipe, seed=seed, output=str(tmp_path / f"o{i}"))).out
            for i, seed in enumerate((1, 1, 2))]
    files = ("data/train-00000-of-00001.parquet", "dropped/a.parquet", "card.json")
    assert all((outs[0] / f).read_bytes() == (outs[1] / f).read_bytes() for f in files)
    assert (outs[0] / files[0]).read_bytes() != (outs[2] / files[0]).read_bytes()


def _cli_fails(recipe: Path) -> str:
    result = CliRunner().invoke(app, ["build", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize(("budget", "message"), [
    ({"tokens": 100, "shares": {"a": 0.5, "b": 0.4}}, "budget.shares: the shares add up to 0.9, not 1"),
    ({"tokens": 100, "shares": {"a": 0.5, "bb": 0.5}},
     "budget.shares.bb: no source is named 'bb' (did you mean 'b'?)"),
    ({"tokens": 0, "shares": {"a": 1}}, "budget.tokens: expected a whole number of tokens >= 1"),
    ({"tokens": 100, "shares": {"a": 1.5}}, "budget.shares.a: a share is a number in (0, 1]"),
    ({"tokens": 100, "shares": {"a": 1}, "total": 5}, "budget: unknown key(s) 'total'"),
])
def test_bad_budget_is_a_message_naming_the_key_and_exit_2(tmp_path: Path, make_recipe, budget, message) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(5, "a"))
    recipe = make_recipe([{"name": "a", "adapter": "flan_v2", "files": "a.jsonl"},
                          {"name": "b", "adapter": "flan_v2", "files": "a.jsonl"}], budget=budget)
    assert message in _cli_fails(recipe)


def test_take_with_both_records_and_tokens_names_the_source_and_exits_2(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(5, "a"))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": {"records": 3, "tokens": 100}}])
    assert "sources[0] (flan_v2).take: give one of records, tokens or first" in _cli_fails(recipe)


def test_a_budgeted_source_with_its_own_take_or_sample_then_filter_is_refused() -> None:
    sources = [{"name": "flan_v2", "files": "x", "take": 10}]
    with pytest.raises(RecipeError, match=r"budget.shares.flan_v2: source 'flan_v2' also sets take"):
        parse_recipe({"budget": {"tokens": 10, "shares": {"flan_v2": 1}}, "sources": sources})
    with pytest.raises(RecipeError, match=r"sources\[0\] \(flan_v2\).take.tokens: .* order: filter_then_sample"):
        parse_recipe({"order": "sample_then_filter", "sources": [{**sources[0], "take": {"tokens": 5}}]})


def test_a_budget_no_source_can_meet_is_a_message_and_exit_2(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", _flan(5, "a"))
    write_jsonl(tmp_path / "raw" / "gone.jsonl", [{"inputs": "Ask ChatGPT", "targets": "OpenAI"}])
    sources = [{"name": "a", "adapter": "flan_v2", "files": "a.jsonl"},
               {"name": "gone", "adapter": "flan_v2", "files": "gone.jsonl"}]
    # every record of `gone` is dropped by the mention filter: nothing can meet its share
    recipe = make_recipe(sources, budget={"tokens": 500, "shares": {"a": 0.5, "gone": 0.5}})
    assert ("budget.shares.gone: a budget of 250 tokens takes no record: no record is left after filtering and "
            "dedup" in _cli_fails(recipe))
    # a budget smaller than the first record of the seeded order takes nothing either
    tiny = make_recipe(sources[:1], budget={"tokens": 2, "shares": {"a": 1}}, output=str(tmp_path / "o2"))
    assert "budget.shares.a: a budget of 2 tokens takes no record: the first record in its seeded order has" \
        in _cli_fails(tiny)
    with pytest.raises(BudgetError):
        build(load_recipe(tiny))


def test_existing_takes_are_not_token_takes() -> None:
    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "v2-sample.yaml").read_text())
    parsed = parse_recipe(recipe)
    assert parsed.budget is None and not any(isinstance(s.take, TokenTake) for s in parsed.sources)
