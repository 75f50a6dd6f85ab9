"""Pipeline behaviour on small recipes written per test (the FLAN adapter as the raw format)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import flan_rows, write_jsonl

from mixer.build import build
from mixer.core.errors import MixerError
from mixer.recipe.load import load_recipe


def _build(recipe_path: Path, **overrides: object):
    return build(load_recipe(recipe_path, **overrides))


def _output(out: Path) -> list[dict]:
    return pq.read_table(sorted((out / "data").glob("*.parquet"))[0]).to_pylist()


def _dropped(out: Path, source: str) -> list[dict]:
    path = out / "dropped" / f"{source}.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def test_take_count_holds_after_filtering(tmp_path: Path, make_recipe) -> None:
    rows = flan_rows(30) + [{"inputs": f"Tell me about ChatGPT {i}", "targets": "ok"} for i in range(10)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 25}]))
    s = result.card["sources"][0]
    assert s["selected"] == 25 and s["dropped"] == {"llm_mention": 10} and s["not_sampled"] == 5
    assert all("ChatGPT" not in r["messages"][0]["content"] for r in _output(result.out))


def test_take_larger_than_available_takes_all_and_warns(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(5))
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 8}]))
    s = result.card["sources"][0]
    assert s["selected"] == 5 and s["shortfall"] == 3
    assert any("take 8 but only 5" in w for w in result.card["warnings"])


def test_fraction_take_and_repeat(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(10))
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 0.5, "repeat": 3}]))
    s = result.card["sources"][0]
    assert s["selected"] == 5 and s["final"] == 15
    assert len(_output(result.out)) == 15


def test_take_per_file_takes_the_count_from_each_file(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(10, "alpha"))
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(10, "beta"))
    result = _build(make_recipe([{"name": "flan_v2", "files": ["a.jsonl", "b.jsonl"], "take": 3,
                                  "take_per_file": True}]))
    prompts = [r["messages"][0]["content"] for r in _output(result.out)]
    assert sum(p.startswith("alpha") for p in prompts) == 3
    assert sum(p.startswith("beta") for p in prompts) == 3


def test_exact_duplicates_across_sources_keep_the_first_listed_source(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(4))
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(6))
    result = _build(make_recipe([
        {"name": "first", "adapter": "flan_v2", "files": "a.jsonl"},
        {"name": "second", "adapter": "flan_v2", "files": "b.jsonl"},
    ]))
    first, second = result.card["sources"]
    assert first["selected"] == 4 and second["dropped"] == {"exact_duplicate": 4} and second["selected"] == 2
    drops = _dropped(result.out, "second")
    # the kept copies' ids, which the dropped ones no longer share (issue 24)
    assert {d["kept_id"] for d in drops} == {f"flan_v2_first_{i}" for i in range(4)}
    assert not {d["id"] for d in drops} & {d["kept_id"] for d in drops}
    assert all(json.loads(d["extra"])["kept_source"] == "first" for d in drops)


def test_max_tokens_drops_long_records_and_still_fills_take(tmp_path: Path, make_recipe) -> None:
    rows = flan_rows(20) + [{"inputs": f"{i} " + "word " * 400, "targets": "long"} for i in range(5)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 20}], max_tokens=100))
    s = result.card["sources"][0]
    assert s["selected"] == 20 and s["dropped"] == {"too_many_tokens": 5} and s["not_sampled"] == 0
    assert max(r["n_tokens"] for r in _output(result.out)) <= 100


def test_every_record_is_accounted_for_in_card_and_dropped_files(tmp_path: Path, make_recipe) -> None:
    rows = flan_rows(30) + flan_rows(3) + [{"inputs": "Bard says hi", "targets": "x"},
                                           {"inputs": " ", "targets": "y"}]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 20}]))
    s = result.card["sources"][0]
    assert s["records_in"] == 35 == s["dropped_total"] + s["not_sampled"] + s["selected"]
    drops = _dropped(result.out, "flan_v2")
    by_reason: dict[str, int] = {}
    for d in drops:
        by_reason[d["reason"]] = by_reason.get(d["reason"], 0) + 1
    assert by_reason.pop("not_sampled") == s["not_sampled"]
    # the blank prompt loses its empty user turn, leaving an assistant turn alone
    assert by_reason == s["dropped"] == {"exact_duplicate": 3, "llm_mention": 1, "bad_turn_order": 1}
    assert s["normalised"]["empty_turns_removed"] == 1


def test_same_recipe_and_seed_give_byte_identical_parquet(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(50))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 30}])
    a = _build(recipe, output=str(tmp_path / "o1"))
    b = _build(recipe, output=str(tmp_path / "o2"))
    for name in ("data/train-00000-of-00001.parquet", "dropped/flan_v2.parquet", "card.json", "README.md"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    c = _build(recipe, output=str(tmp_path / "o3"), seed=2)
    assert (a.out / "data/train-00000-of-00001.parquet").read_bytes() != \
        (c.out / "data/train-00000-of-00001.parquet").read_bytes()


def test_adding_a_source_does_not_change_another_sources_sample(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(50))
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(50, "other"))
    one = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 10}]),
                 output=str(tmp_path / "o1"))
    two = _build(make_recipe([{"name": "other", "adapter": "flan_v2", "files": "b.jsonl", "take": 10},
                              {"name": "flan_v2", "files": "a.jsonl", "take": 10}]),
                 output=str(tmp_path / "o2"))

    def ids(out: Path) -> list[str]:
        return sorted(r["id"] for r in _output(out) if r["messages"][0]["content"].startswith("question"))

    assert ids(one.out) == ids(two.out)


def test_shards_are_bounded_and_named_like_the_hub_mixture(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(40))
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                                output_options={"shard_max_bytes": 500}))
    shards = sorted(p.name for p in (result.out / "data").glob("*.parquet"))
    n = len(shards)
    assert n > 1 and shards == [f"train-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
    assert sum(pq.ParquetFile(result.out / "data" / s).metadata.num_rows for s in shards) == 40


def test_failed_build_keeps_previous_output_and_leaves_no_partial_folder(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(5))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl"}])
    first = _build(recipe)
    before = (first.out / "card.json").read_bytes()
    (tmp_path / "raw" / "a.jsonl").write_text('{"inputs": "x", "targets": "y"}\n{broken\n')
    with pytest.raises(MixerError):
        _build(recipe)
    assert (first.out / "card.json").read_bytes() == before
    assert not [p for p in first.out.parent.iterdir() if p.name.startswith(".out.")]


def test_licence_allow_list_leaves_out_other_sources(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(5))
    write_jsonl(tmp_path / "raw" / "b.jsonl", flan_rows(5, "nc"))
    result = _build(make_recipe([
        {"name": "flan_v2", "files": "a.jsonl"},
        {"name": "nc", "adapter": "flan_v2", "files": "b.jsonl", "license": "CC BY-NC 4.0"},
    ], allow_licenses=["apache-2.0"]))
    flan, nc = result.card["sources"]
    assert flan["final"] == 5 and nc["final"] == 0 and "CC BY-NC 4.0" in nc["excluded"]
    assert all(r["messages"][0]["content"].startswith("question") for r in _output(result.out))


def test_sample_then_filter_order_filters_after_sampling(tmp_path: Path, make_recipe) -> None:
    rows = flan_rows(10) + [{"inputs": f"ChatGPT {i}", "targets": "x"} for i in range(10)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl", "take": 10}],
                                order="sample_then_filter", dedup={"exact": False}))
    s = result.card["sources"][0]
    assert s["not_sampled"] == 10
    assert s["selected"] + s["dropped"].get("llm_mention", 0) == 10 and s["selected"] < 10


def test_output_loads_with_datasets_and_has_the_tulu_schema(tmp_path: Path, make_recipe) -> None:
    import datasets

    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(12))
    result = _build(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}]))
    ds = datasets.load_dataset("parquet", data_dir=str(result.out / "data"), split="train")
    assert ds.num_rows == 12
    assert set(ds.features) == {"dataset", "id", "messages", "n_tokens"}
    assert ds[0]["messages"][0]["role"] == "user"
