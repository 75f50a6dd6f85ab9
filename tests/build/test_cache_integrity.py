"""Caches are verified, never trusted: a truncated, bit-flipped or foreign entry of the read cache or
the token cache is detected, counted in timings.json, removed and rebuilt, and the build's bytes do
not change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT
from helpers.caches import assert_caches_valid

from mixer.build import build
from mixer.core.digest import file_sha256
from mixer.recipe.load import load_recipe
from mixer.stages.read_cache import MANIFEST
from mixer.tokens.cache import COUNTS_PREFIX, SCHEMA


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _outputs(out: Path) -> dict[str, bytes]:
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    return {rel: (out / rel).read_bytes() for rel in ["card.json", *[d["path"] for d in card["outputs"]["data"]],
                                                      *card["outputs"]["dropped"]]}



@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, bytes]]:
    """One build of the sample recipe with near dedup: its recipe, its warm cache, its output bytes."""
    base = tmp_path_factory.mktemp("integrity")
    data = yaml.safe_load((ROOT / "recipes" / "v2-sample.yaml").read_text(encoding="utf-8"))
    data["dedup"]["near"] = {"threshold": 0.7}
    data["raw_dir"] = str(ROOT / "samples" / "raw_train")
    recipe = base / "near.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("MIXER_CACHE_DIR", str(base / "cache"))
        build(load_recipe(recipe, output=str(base / "first")))
    assert list((base / "cache" / "reads").glob("*/near-*/rows-*.npz"))
    return recipe, base / "cache", _outputs(base / "first")


@pytest.fixture
def cache(warm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the warm cache."""
    copy = tmp_path / "cache"
    shutil.copytree(warm[1], copy)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(copy))
    return copy


def _largest_entry(cache: Path) -> Path:
    return max((e for e in (cache / "reads").iterdir() if not e.name.startswith(".")),
               key=lambda e: sum(p.stat().st_size for p in e.rglob("*") if p.is_file()))


def _damage_read_cache(cache: Path, how: str) -> None:
    entry = _largest_entry(cache)
    candidates = [p for p in entry.rglob("*") if p.is_file() and p.name not in ("read.pkl", MANIFEST)
                  and not p.parent.name.startswith("near-")]
    if how == "pickle_flipped":
        _flip(entry / "read.pkl")
    elif how == "candidates_flipped":
        _flip(candidates[0])
    elif how == "candidates_truncated":
        _truncate(candidates[0])
    elif how == "manifest_flipped":
        _flip(entry / MANIFEST)
    elif how == "signatures_flipped":
        _flip(next(entry.glob("near-*/rows-*.npz")))
    elif how == "foreign_entry":  # another source's entry copied under this entry's key
        other = next(e for e in (cache / "reads").iterdir() if not e.name.startswith(".") and e != entry)
        shutil.rmtree(entry)
        shutil.copytree(other, entry)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["pickle_flipped", "candidates_flipped", "candidates_truncated", "manifest_flipped",
                                 "signatures_flipped", "foreign_entry"])
def test_a_damaged_read_cache_entry_is_counted_removed_and_rebuilt(warm, cache: Path, tmp_path: Path,
                                                                   how: str) -> None:
    recipe, _, expected = warm
    _damage_read_cache(cache, how)
    result = build(load_recipe(recipe, output=str(tmp_path / "out")))
    assert result.timings["cache_damaged"]["read_cache"] == 1
    assert _outputs(tmp_path / "out") == expected
    assert_caches_valid(cache)
    again = build(load_recipe(recipe, output=str(tmp_path / "again")))  # the rebuilt entry is used
    assert again.timings["cache_damaged"] == {"read_cache": 0, "token_cache": 0}
    assert len(again.timings["read_cache_hits"]) == len(load_recipe(recipe).sources)


def _foreign_counts(folder: Path) -> None:
    """A counts file with a valid checksum name, written for another tokenizer, dropped into this folder."""
    table = pa.table({"key": pa.array([b"\0" * 16], pa.binary(16)), "n_tokens": pa.array([7], pa.int32())},
                     schema=SCHEMA.with_metadata({"identity": "hf:/some/other/tokenizer.json"}))
    tmp = folder / ".foreign.tmp"
    pq.write_table(table, tmp)
    tmp.rename(folder / f"{COUNTS_PREFIX}{file_sha256(tmp)[:32]}.parquet")


@pytest.mark.parametrize("how", ["flipped", "truncated", "foreign"])
def test_a_damaged_token_cache_file_is_counted_removed_and_recounted(warm, cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     how: str) -> None:
    recipe, _, expected = warm
    monkeypatch.setenv("MIXER_READ_CACHE", "0")  # every source is read and counted
    folder = next((cache / "tokens").iterdir())
    files = sorted(folder.glob(f"{COUNTS_PREFIX}*.parquet"), key=lambda p: -p.stat().st_size)
    {"flipped": _flip, "truncated": _truncate, "foreign": lambda _: _foreign_counts(folder)}[how](files[0])
    result = build(load_recipe(recipe, output=str(tmp_path / "out")))
    assert result.timings["cache_damaged"] == {"read_cache": 0, "token_cache": 1}
    assert _outputs(tmp_path / "out") == expected
    assert_caches_valid(cache)
