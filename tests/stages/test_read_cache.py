"""The persistent read-stage cache (mixer.stages.read_cache): a rebuild reuses each source's read when
nothing it depends on changed, re-reads exactly the sources that changed, and never changes a
build's bytes."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from mixer.build import build
from mixer.core.stats import SourceRead, SourceStats
from mixer.recipe.load import load_recipe
from mixer.stages.read_cache import ReadCache

SAMPLE = "recipes/v2-sample.yaml"
ALL = ["flan_v2", "cot", "oasst1", "sharegpt", "gpt4_alpaca", "code_alpaca", "lima", "wizardlm", "open_orca",
       "science", "hard_coded"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _outputs_equal(a, b) -> None:
    for rel in ["card.json", "README.md", *[d["path"] for d in a.card["outputs"]["data"]],
                *a.card["outputs"]["dropped"]]:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes(), rel


def _uncached(recipe, out: Path, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setenv("MIXER_READ_CACHE", "0")
        return build(replace(recipe, output=str(out)))


def test_rebuild_reads_every_source_from_the_cache_with_identical_bytes(cache: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    first = build(load_recipe(SAMPLE, output=str(tmp_path / "first")))
    assert first.timings["read_cache_hits"] == []
    second = build(load_recipe(SAMPLE, output=str(tmp_path / "second")))
    assert second.timings["read_cache_hits"] == ALL
    _outputs_equal(first, second)
    _outputs_equal(first, _uncached(load_recipe(SAMPLE), tmp_path / "none", monkeypatch))


def test_changing_the_seed_rereads_only_the_adapters_that_use_it(cache: Path, tmp_path: Path, monkeypatch) -> None:
    build(load_recipe(SAMPLE, output=str(tmp_path / "first")))
    reseeded = build(load_recipe(SAMPLE, output=str(tmp_path / "seed7"), seed=7))
    # the Alpaca-style prompt templates are drawn per record from the source seed
    assert set(ALL) - set(reseeded.timings["read_cache_hits"]) == {"gpt4_alpaca", "code_alpaca"}
    _outputs_equal(reseeded, _uncached(load_recipe(SAMPLE, seed=7), tmp_path / "none", monkeypatch))


def test_a_changed_file_or_filter_rereads_that_source_and_takes_come_from_the_recipe(
        cache: Path, tmp_path: Path, monkeypatch) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(ROOT / "samples" / "raw_train", raw)
    build(load_recipe(SAMPLE, raw_dir=str(raw), output=str(tmp_path / "first")))
    lima = raw / "lima" / "train.jsonl"
    lima.write_text("\n".join(lima.read_text(encoding="utf-8").splitlines()[1:]) + "\n", encoding="utf-8")
    edited = build(load_recipe(SAMPLE, raw_dir=str(raw), output=str(tmp_path / "edited")))
    assert set(ALL) - set(edited.timings["read_cache_hits"]) == {"lima"}

    data = yaml.safe_load((ROOT / SAMPLE).read_text(encoding="utf-8"))
    data["filters"]["llm_mentions"]["keywords"] = ["OpenAI"]
    for s in data["sources"]:
        if s["name"] == "wizardlm":
            s["take"] = 5
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    recipe = load_recipe(changed, raw_dir=str(raw), output=str(tmp_path / "changed"))
    result = build(recipe)
    assert result.timings["read_cache_hits"] == ["hard_coded"]  # exempt from the mention filter
    wizard = next(s for s in result.card["sources"] if s["name"] == "wizardlm")
    assert wizard["take"] == 5 and wizard["selected"] == 5
    _outputs_equal(result, _uncached(recipe, tmp_path / "none", monkeypatch))


def test_cache_can_be_turned_off(cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    result = build(load_recipe(SAMPLE, output=str(tmp_path / "out")))
    assert "read_cache_hits" not in result.timings
    assert not (cache / "reads").exists()


def test_a_damaged_entry_is_read_again(cache: Path, tmp_path: Path) -> None:
    build(load_recipe(SAMPLE, output=str(tmp_path / "first")))
    for pkl in (cache / "reads").glob("*/read.pkl"):
        pkl.write_bytes(b"not a pickle")
    again = build(load_recipe(SAMPLE, output=str(tmp_path / "again")))
    assert again.timings["read_cache_hits"] == []


def test_least_recently_used_entries_go_first_when_the_cache_is_full(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path, max_bytes=4000)  # room for two entries of ~1.7 kB (data, pickle, manifest)
    for name in ["a", "b", "c"]:
        staging = cache.staging(name)
        (staging / "candidates.arrow").write_bytes(b"x" * 1000)
        read = SourceRead(SourceStats(name, "messages", None, "all", 1), [], [staging / "candidates.arrow"])
        cache.put(name, staging, read, seed=1, tokenizer="t", used=set())
        if name == "b":
            assert cache.get("a", "a", seed=1, tokenizer="t") is not None  # a is now used more recently than b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]


def test_staging_folders_left_by_a_crashed_build_are_removed_a_day_later(tmp_path: Path) -> None:
    import os

    cache = ReadCache(tmp_path)
    old, fresh = cache.staging("old"), cache.staging("fresh")
    os.utime(old, (0, 0))
    staging = cache.staging("k")
    (staging / "candidates.arrow").write_bytes(b"x")
    cache.put("k", staging, SourceRead(SourceStats("k", "messages", None, "all", 1), [],
                                       [staging / "candidates.arrow"]), seed=1, tokenizer="t", used=set())
    assert not old.exists() and fresh.exists() and (tmp_path / "k").exists()


def test_a_rebuild_with_near_dedup_reuses_the_stored_signatures(cache: Path, tmp_path: Path, monkeypatch) -> None:
    import mixer.stages.near_dedup

    data = yaml.safe_load((ROOT / SAMPLE).read_text(encoding="utf-8"))
    data["dedup"]["near"] = {"threshold": 0.7}
    recipe_path = tmp_path / "near.yaml"
    recipe_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    first = build(load_recipe(recipe_path, output=str(tmp_path / "first")))
    assert list((cache / "reads").glob("*/near-*/rows-*.npz"))
    monkeypatch.setattr(mixer.stages.near_dedup, "sign_rows",
                        lambda unit, *a, **k: pytest.fail(f"signed {len(unit[1])} rows again"))
    second = build(load_recipe(recipe_path, output=str(tmp_path / "second")))
    assert second.timings["read_cache_hits"] == ALL
    _outputs_equal(first, second)
    monkeypatch.undo()
    monkeypatch.chdir(ROOT)
    _outputs_equal(first, _uncached(load_recipe(recipe_path), tmp_path / "none", monkeypatch))
