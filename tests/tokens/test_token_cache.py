"""The persistent token-count cache: rebuilds reuse counts, and results never depend on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

import mixer.tokens.count
from mixer.build import build
from mixer.recipe.load import load_recipe
from mixer.tokens.cache import unwritable_cache
from mixer.tokens.count import TokenCounter


def test_second_count_of_the_same_texts_comes_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path))
    texts = ["hello world", "the cat sat on the mat", "hello world"]
    with TokenCounter("tiktoken:cl100k_base") as first:
        counts = first.count_texts(texts)
    assert list((tmp_path / "tokens").glob("*/counts-*.parquet"))
    second = TokenCounter("tiktoken:cl100k_base")
    monkeypatch.setattr(second, "_submit", lambda texts: pytest.fail(f"recounted {texts}"))
    assert second.count_texts(texts) == counts == [2, 6, 2]
    assert second.cache.hits == 3 and second.cache.misses == 0


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MIXER_TOKEN_CACHE", "0")
    with TokenCounter("tiktoken:cl100k_base") as counter:
        assert counter.cache is None
        assert counter.count_texts(["hello world"]) == [2]
    assert not (tmp_path / "tokens").exists()


def test_a_cache_folder_that_cannot_be_written_is_named_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    assert unwritable_cache() is None and (tmp_path / "cache").is_dir()  # made on first use
    (tmp_path / "a-file").write_text("x\n")
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    assert unwritable_cache() == f"the cache folder {tmp_path / 'a-file' / 'cache'} cannot be written (Not a directory)"


def test_a_damaged_cache_file_means_a_recount_not_a_wrong_count(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path))
    with TokenCounter("tiktoken:cl100k_base") as counter:
        counter.count_texts(["hello world"])
    for path in (tmp_path / "tokens").glob("*/counts-*.parquet"):
        path.write_bytes(b"not parquet")
    assert TokenCounter("tiktoken:cl100k_base").count_texts(["hello world"]) == [2]


def test_builds_are_byte_identical_with_a_cold_cache_a_warm_cache_and_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXER_READ_CACHE", "0")  # every build reads and counts (tests/stages/test_read_cache.py)
    cold = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "cold")))
    calls = []
    real = mixer.tokens.count.TokenCounter._submit
    monkeypatch.setattr(mixer.tokens.count.TokenCounter, "_submit", lambda self, texts: calls.append(len(texts))
                        or real(self, texts))
    warm = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "warm")))
    assert sum(calls) == 0  # every count came from the cache
    monkeypatch.setenv("MIXER_TOKEN_CACHE", "off")
    none = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "none")))
    for rel in ["card.json", *[d["path"] for d in cold.card["outputs"]["data"]]]:
        assert (cold.out / rel).read_bytes() == (warm.out / rel).read_bytes() == (none.out / rel).read_bytes()
