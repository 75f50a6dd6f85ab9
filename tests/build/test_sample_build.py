"""End to end: recipes/v2-sample.yaml over the bundled raw samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from conftest import ROOT, SAMPLE_RECIPE

from mixer.build import build
from mixer.core.records import OUTPUT_SCHEMA
from mixer.recipe.load import load_recipe


def test_sample_build_takes_what_the_recipe_asks_per_source(sample_build) -> None:
    recipe = load_recipe(SAMPLE_RECIPE)
    card = {s["name"]: s for s in sample_build.card["sources"]}
    assert list(card) == [s.name for s in recipe.sources]
    for source in recipe.sources:
        s = card[source.name]
        left = s["records_in"] - s["dropped_total"] + s["dropped"].get("too_many_tokens", 0)
        if source.take == "all":
            assert s["selected"] == s["records_in"] - s["dropped_total"], source.name
        else:
            per = len(source.files) if source.take_per_file else 1
            assert s["selected"] == min(source.take * per, left), source.name
        assert s["final"] == s["selected"] * source.repeat
    assert card["hard_coded"]["final"] == 140


def test_sample_card_numbers_add_up(sample_build) -> None:
    card = sample_build.card
    for s in card["sources"]:
        assert s["records_in"] == s["dropped_total"] + s["not_sampled"] + s["selected"], s["name"]
        assert sum(s["dropped"].values()) == s["dropped_total"]
        assert s["tokens"]["count"] == s["final"]
    assert card["totals"]["records"] == sum(s["final"] for s in card["sources"])
    rows = sum(pq.ParquetFile(sample_build.out / d["path"]).metadata.num_rows for d in card["outputs"]["data"])
    assert rows == card["totals"]["records"]


def test_sample_dropped_files_match_the_card(sample_build) -> None:
    for s in sample_build.card["sources"]:
        path = sample_build.out / "dropped" / f"{s['name']}.parquet"
        reasons = Counter(pq.read_table(path).column("reason").to_pylist()) if path.exists() else Counter()
        not_sampled = reasons.pop("not_sampled", 0)
        assert not_sampled == s["not_sampled"], s["name"]
        assert dict(reasons) == s["dropped"], s["name"]


def test_sample_output_has_the_tulu_schema_and_valid_turns(sample_build) -> None:
    table = pq.read_table(sample_build.out / "data")
    assert table.schema.remove_metadata() == OUTPUT_SCHEMA
    for rec in table.to_pylist():
        roles = [m["role"] for m in rec["messages"]]
        body = roles[1:] if roles[0] == "system" else roles
        assert body == ["user", "assistant"] * (len(body) // 2) and body, rec["id"]
        assert all(m["content"] == m["content"].strip() and m["content"] for m in rec["messages"])
    labels = set(table.column("dataset").to_pylist())
    assert {"flan_v2", "cot", "oasst1", "sharegpt", "gpt4_alpaca", "code_alpaca", "lima", "wizardlm",
            "open_orca", "hard_coded"} <= labels
    assert any(label.startswith("science.") for label in labels)


def test_sample_output_respects_max_tokens_and_has_no_llm_mentions(sample_build) -> None:
    recipe = load_recipe(SAMPLE_RECIPE)
    table = pq.read_table(sample_build.out / "data").to_pylist()
    assert max(r["n_tokens"] for r in table) <= recipe.max_tokens
    keywords = [k.lower() for k in recipe.filters.llm_mentions.keywords]
    for rec in table:
        if rec["dataset"] == "hard_coded":
            continue
        text = " ".join(m["content"] for m in rec["messages"]).lower()
        assert not any(k in text for k in keywords), rec["id"]


def test_sample_build_is_byte_identical_when_repeated(sample_build, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    again = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "again")))
    files = sorted(p.relative_to(sample_build.out) for p in sample_build.out.rglob("*")
                   if p.is_file() and p.name != "timings.json")
    assert files == sorted(p.relative_to(again.out) for p in again.out.rglob("*")
                           if p.is_file() and p.name != "timings.json")
    for rel in files:
        assert (sample_build.out / rel).read_bytes() == (again.out / rel).read_bytes(), rel


def test_sample_output_loads_with_datasets(sample_build) -> None:
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(sample_build.out / "data"), split="train")
    assert ds.num_rows == sample_build.card["totals"]["records"]
    assert ds[0]["messages"][0]["role"] in ("system", "user")


def test_parallel_read_gives_the_same_bytes_as_in_process(sample_build, tmp_path: Path, monkeypatch) -> None:
    import mixer.stages.read
    import mixer.stages.select
    import mixer.tokens.count

    monkeypatch.setattr(mixer.stages.read, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", 4096)  # JSONL and Parquet files read in parts
    monkeypatch.setattr(mixer.stages.select, "WALK_CHUNK_ROWS", 7)  # selection counts chunks while gathering the next
    monkeypatch.setattr(mixer.tokens.count, "POOL_MIN_CHARS", 0)  # ... in the token-count worker processes
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    monkeypatch.chdir(ROOT)
    plans = []
    real_plan = mixer.stages.read.plan_reads
    monkeypatch.setattr(mixer.stages.read, "plan_reads", lambda *a: plans.append(real_plan(*a)) or plans[-1])
    parallel = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "par")), workers=2)
    assert sum(len(p) > 1 for p in plans) >= 3  # several sources were split
    serial = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "ser")), workers=1)
    for rel in ["card.json", *[d["path"] for d in sample_build.card["outputs"]["data"]],
                *sample_build.card["outputs"]["dropped"]]:
        assert (parallel.out / rel).read_bytes() == (serial.out / rel).read_bytes(), rel
        assert (parallel.out / rel).read_bytes() == (sample_build.out / rel).read_bytes(), rel
