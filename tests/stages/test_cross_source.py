"""Near-duplicate removal and decontamination inside `mixer build`: drops, card sections, determinism."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import flan_rows, write_jsonl

from mixer.build import build
from mixer.core.errors import RecipeError
from mixer.recipe.load import load_recipe, parse_recipe

ARTICLE = ("The river town kept its old stone bridge after the flood because the engineers found the arches "
           "sound, and the council voted to repair the railings, repave the deck and add lights for cyclists "
           "who cross it every morning on their way to the market square near the station")


def _variant(i: int) -> str:
    words = ARTICLE.split()
    words[5 + i] = words[5 + i].upper() + "s"  # a one-word edit per copy
    return " ".join(words)


def _dropped(out: Path, source: str) -> list[dict]:
    path = out / "dropped" / f"{source}.parquet"
    return [d for d in pq.read_table(path).to_pylist() if d["reason"] != "not_sampled"] if path.exists() else []


@pytest.fixture
def near_recipe(tmp_path: Path, make_recipe):
    distinct = [{"inputs": f"Summarise the report about topic {i}: " + " ".join(f"w{i}x{j}" for j in range(30)),
                 "targets": f"summary {i}"} for i in range(20)]
    write_jsonl(tmp_path / "raw" / "first.jsonl", [{"inputs": ARTICLE, "targets": "A bridge was kept."}] + distinct)
    write_jsonl(tmp_path / "raw" / "second.jsonl",
                [{"inputs": _variant(i), "targets": "A bridge was kept."} for i in range(3)] + flan_rows(10))

    def make(**near: object) -> Path:
        return make_recipe([{"name": "first", "adapter": "flan_v2", "files": "first.jsonl"},
                            {"name": "second", "adapter": "flan_v2", "files": "second.jsonl", "take": 11}],
                           dedup={"exact": True, "near": {"threshold": 0.7, **near}})

    return make


def test_planted_near_duplicates_across_sources_keep_the_first_listed_copy(tmp_path: Path, near_recipe) -> None:
    result = build(load_recipe(near_recipe()))
    first, second = result.card["sources"]
    assert first["dropped"] == {} and first["selected"] == 21
    assert second["dropped"] == {"near_duplicate": 3} and second["selected"] == 10  # take 11, only 10 left
    drops = _dropped(result.out, "second")
    assert {d["kept_id"] for d in drops} == {"flan_v2_first_0"}  # not the dropped copy's own id (issue 24)
    extra = [json.loads(d["extra"]) for d in drops]
    assert all(e["kept_source"] == "first" and e["jaccard"] >= 0.7 and e["cluster_id"] for e in extra)
    assert len({e["cluster_id"] for e in extra}) == 1


def test_near_dedup_card_section_adds_up_with_the_dropped_files(near_recipe) -> None:
    result = build(load_recipe(near_recipe()))
    near = result.card["near_dedup"]
    dropped = sum(1 for s in ("first", "second") for d in _dropped(result.out, s) if d["reason"] == "near_duplicate")
    assert near["removed_total"] == dropped == 3
    assert near["removed_by_pair"] == [{"dropped_source": "second", "kept_source": "first", "removed": 3}]
    assert near["cluster_size_histogram"] == {"4": 1}
    assert near["examples"][0]["kept"]["id"] == "flan_v2_first_0"
    assert "## Near-duplicates" in (result.out / "README.md").read_text()


def test_records_sharing_only_a_prompt_template_are_kept(tmp_path: Path, make_recipe) -> None:
    rows = [{"inputs": f"Translate to French: {s}", "targets": t} for s, t in [
        ("The cat sleeps on the warm windowsill every afternoon.", "Le chat dort."),
        ("Our train leaves from platform nine at seven tomorrow.", "Notre train part."),
        ("She planted tomatoes, basil and peppers in the garden.", "Elle a planté.")]]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows)
    result = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                                           dedup={"near": {"threshold": 0.8}})))
    assert result.card["sources"][0]["selected"] == 3


@pytest.mark.parametrize("in_units", [False, True], ids=["in-process", "signature-parts-and-lsh-units"])
def test_dedup_against_an_existing_corpus_drops_new_copies_and_never_touches_it(
        tmp_path: Path, make_recipe, in_units: bool, monkeypatch) -> None:
    import mixer.stages.near_dedup

    if in_units:  # the against corpus's signatures are one more part file after the sources' parts
        monkeypatch.setattr(mixer.stages.near_dedup, "BAND_UNITS_MIN_ROWS", 0)
        monkeypatch.setattr(mixer.stages.near_dedup, "CHUNK_ROWS", 2)
    corpus = tmp_path / "previous.parquet"
    pq.write_table(pa.Table.from_pylist([{"dataset": "old", "id": "old_1", "messages": [
        {"role": "user", "content": _variant(4)}, {"role": "assistant", "content": "A bridge was kept."}]}]), corpus)
    before = hashlib.sha256(corpus.read_bytes()).hexdigest()
    write_jsonl(tmp_path / "raw" / "a.jsonl", [{"inputs": ARTICLE, "targets": "A bridge was kept."}] + flan_rows(5))
    result = build(load_recipe(make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                                           dedup={"near": {"threshold": 0.7, "against": [str(corpus)]}})))
    (drop,) = _dropped(result.out, "flan_v2")
    assert drop["reason"] == "near_duplicate" and drop["kept_id"] == "old_1"
    assert json.loads(drop["extra"])["kept_source"] == "against:previous.parquet"
    assert hashlib.sha256(corpus.read_bytes()).hexdigest() == before


def test_near_dedup_builds_are_identical_across_runs(tmp_path: Path, near_recipe, monkeypatch) -> None:
    import mixer.kernels.near
    import mixer.stages.near_dedup

    recipe = near_recipe()
    a = build(load_recipe(recipe, output=str(tmp_path / "a")))
    b = build(load_recipe(recipe, output=str(tmp_path / "b")))
    # signed in batches of 4 records on two worker processes, as a large build is
    monkeypatch.setattr(mixer.stages.near_dedup, "CHUNK_ROWS", 4)
    monkeypatch.setattr(mixer.kernels.near, "POOL_MIN_CHARS", 0)
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    c = build(load_recipe(recipe, output=str(tmp_path / "c")), workers=2)
    # as a build of a million candidates: signatures written to part files by the signing units, LSH in units
    monkeypatch.setattr(mixer.stages.near_dedup, "BAND_UNITS_MIN_ROWS", 0)
    units = build(load_recipe(recipe, output=str(tmp_path / "units")), workers=2)
    assert a.card["near_dedup"]["removed_total"] == 3
    for rel in ["card.json", "dropped/second.parquet", *[d["path"] for d in a.card["outputs"]["data"]]]:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes() == (c.out / rel).read_bytes() == \
            (units.out / rel).read_bytes(), rel


BENCH_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                  "How many clips did Natalia sell altogether in April and May?")


@pytest.fixture
def decont_recipe(tmp_path: Path, make_recipe):
    write_jsonl(tmp_path / "raw" / "bench" / "gsm8k_test.jsonl",
                [{"question": BENCH_QUESTION, "answer": "72"},
                 {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts "
                              "in total does it take?", "answer": "3"}])
    rows = [{"inputs": "Solve this step by step. " + BENCH_QUESTION, "targets": "72"},
            {"inputs": "How many apples did Natalia sell to her friends at the market in April?", "targets": "9"}]
    write_jsonl(tmp_path / "raw" / "a.jsonl", rows + flan_rows(4))
    return make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                       decontaminate={"benchmarks": [{"name": "gsm8k", "files": ["bench/gsm8k_test.jsonl"],
                                                      "field": "question"}]})


def test_decontamination_drops_an_embedded_benchmark_question_and_keeps_common_phrases(decont_recipe) -> None:
    result = build(load_recipe(decont_recipe))
    s = result.card["sources"][0]
    assert s["dropped"] == {"contaminated:gsm8k": 1} and s["selected"] == 5
    (drop,) = _dropped(result.out, "flan_v2")
    assert drop["id"] == "flan_v2_0" and drop["stage"] == "decontaminate"
    extra = json.loads(drop["extra"])
    assert extra["benchmark"] == "gsm8k" and extra["item_index"] == 0 and "Natalia" in extra["item_text"]
    table = result.card["contamination"]
    assert table["benchmarks"] == {"gsm8k": 2}
    assert "## Decontamination" in (result.out / "README.md").read_text()
    assert Counter(d["reason"] for d in _dropped(result.out, "flan_v2")) == {"contaminated:gsm8k": 1}


def test_benchmark_file_missing_field_names_file_and_fields(tmp_path: Path, make_recipe) -> None:
    write_jsonl(tmp_path / "raw" / "bench.jsonl", [{"prompt": "x"}])
    write_jsonl(tmp_path / "raw" / "a.jsonl", flan_rows(2))
    recipe = make_recipe([{"name": "flan_v2", "files": "a.jsonl"}],
                         decontaminate={"benchmarks": [{"name": "b", "files": "bench.jsonl", "field": "question"}]})
    with pytest.raises(Exception) as e:
        build(load_recipe(recipe))
    assert "bench.jsonl" in str(e.value) and "'question'" in str(e.value) and "prompt" in str(e.value)


def test_bad_near_dedup_settings_fail_when_the_recipe_is_read() -> None:
    with pytest.raises(RecipeError, match="threshold"):
        parse_recipe({"dedup": {"near": {"threshold": 1.5}}, "sources": [{"name": "flan_v2", "files": "x"}]})
    with pytest.raises(RecipeError, match="unknown key"):
        parse_recipe({"dedup": {"near": {"treshold": 0.5}}, "sources": [{"name": "flan_v2", "files": "x"}]})


def test_assistant_lengths_on_arrow_columns_equal_the_per_record_definition(tmp_path: Path) -> None:
    from mixer.core.tables import SpillFiles
    from mixer.kernels.near import assistant_chars
    from mixer.stages.read import CandidateStore
    from mixer.stages.signature_cache import assistant_chars_column

    records = [{"dataset": "d", "id": str(i), "messages": m} for i, m in enumerate([
        [{"role": "user", "content": "hé"}, {"role": "assistant", "content": "naïve 中文 😀"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
         {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
         {"role": "assistant", "content": ""}],
        [{"role": "user", "content": "only a prompt"}],
    ])]
    store = CandidateStore(tmp_path / "c.arrow", batch_rows=2)
    for r in records:
        store.add(r, 0)
    table = SpillFiles([store.close()])
    assert assistant_chars_column(table).tolist() == [assistant_chars(r["messages"]) for r in records] == [10, 2, 0]
