"""Near dedup's signature cache (``mixer.stages.near_dedup.SignatureBlock``, blocks of rows inside each
source's read-cache entry): a rebuild signs only rows it has not signed, also from
``BAND_UNITS_MIN_ROWS`` on, where the signing units read and write the blocks themselves; other
near-dedup settings never read them; a damaged block is reported and signed again; and the build's
bytes are those of a cold build whatever the cache held.

``BAND_UNITS_MIN_ROWS`` is lowered to 0 (every build here is a build in units) and ``CHUNK_ROWS`` to
8 (several blocks per source) on the bundled sample; ``dedup.near.workers: 1`` keeps the signing in
this process, so the counting ``sign_chunk`` below sees every row that is signed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT
from helpers.hashes import assert_pinned, output_hashes

import mixer.stages.near_dedup as stage
from mixer.build import build
from mixer.recipe.load import Recipe, load_recipe
from mixer.stages.base import Reporter
from mixer.stages.signature_cache import SignatureBlock

RECIPE = "tests/data/v2-sample-near-decont.yaml"


class Warnings(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Builds in units over a fresh read cache; the list collects the size of every batch of rows
    that is signed."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(stage, "BAND_UNITS_MIN_ROWS", 0)
    monkeypatch.setattr(stage, "CHUNK_ROWS", 8)
    sizes: list[int] = []
    real = stage.sign_chunk

    def counting(texts: list[str], *args: Any) -> np.ndarray:
        sizes.append(len(texts))
        return real(texts, *args)

    monkeypatch.setattr(stage, "sign_chunk", counting)
    return sizes


def _recipe(out: Path, **near: Any) -> Recipe:
    recipe = load_recipe(RECIPE, output=str(out))
    assert recipe.dedup.near is not None
    return replace(recipe, dedup=replace(recipe.dedup, near=replace(recipe.dedup.near, workers=1, **near)))


def _hashes(result: Any) -> dict[str, str]:
    return output_hashes(result.out)


def _blocks(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "reads").glob("*/near-*/rows-*.npz"))


def _uncached(out: Path, monkeypatch: pytest.MonkeyPatch, **near: Any) -> Any:
    with monkeypatch.context() as m:
        m.setenv("MIXER_READ_CACHE", "0")
        return build(_recipe(out, **near))


def test_a_rebuild_above_the_part_file_threshold_signs_no_cached_row_and_gives_the_cold_bytes(
        signed: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cold = build(_recipe(tmp_path / "cold"))
    rows = cold.timings["near_dedup_signed_rows"]
    assert rows == sum(signed) > 0 and len(_blocks(tmp_path)) > 10
    signed.clear()
    warm = build(_recipe(tmp_path / "warm"))
    assert warm.timings["read_cache_hits"] == [s.name for s in load_recipe(RECIPE).sources]
    assert warm.timings["near_dedup_signed_rows"] == 0 and signed == []
    assert warm.card["near_dedup"]["removed_total"] > 0
    assert _hashes(warm) == _hashes(cold) == _hashes(_uncached(tmp_path / "none", monkeypatch))
    assert_pinned(warm.out, "sample-near-decont")


def test_signatures_cached_below_the_part_file_threshold_serve_a_rebuild_above_it(
        signed: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(stage, "BAND_UNITS_MIN_ROWS", 1 << 62)  # signatures gathered in this process
        below = build(_recipe(tmp_path / "below"))
    assert below.timings["near_dedup_signed_rows"] > 0
    signed.clear()
    above = build(_recipe(tmp_path / "above"))
    assert above.timings["near_dedup_signed_rows"] == 0 and signed == []
    assert _hashes(above) == _hashes(below)


@pytest.mark.parametrize("setting", [{"num_perm": 64}, {"ngram": 4}, {"seed": 7}, {"key": "prompt"}])
def test_a_changed_near_dedup_setting_signs_every_row_again(signed: list[int], tmp_path: Path,
                                                            setting: dict[str, Any]) -> None:
    cold = build(_recipe(tmp_path / "cold"))
    signed.clear()
    changed = build(_recipe(tmp_path / "changed", **setting))
    assert changed.timings["near_dedup_signed_rows"] == cold.timings["near_dedup_signed_rows"] == sum(signed)
    signed.clear()
    again = build(_recipe(tmp_path / "again", **setting))  # the changed setting has its own blocks now
    assert again.timings["near_dedup_signed_rows"] == 0 and signed == []


def test_a_changed_threshold_reuses_the_signatures_and_gives_the_uncached_bytes(
        signed: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(_recipe(tmp_path / "cold"))
    signed.clear()
    looser = build(_recipe(tmp_path / "looser", threshold=0.5))  # the LSH bands change, signatures do not
    assert looser.timings["near_dedup_signed_rows"] == 0 and signed == []
    assert _hashes(looser) == _hashes(_uncached(tmp_path / "none", monkeypatch, threshold=0.5))


def test_a_changed_input_file_signs_only_that_sources_rows(signed: list[int], tmp_path: Path) -> None:
    import shutil

    raw = tmp_path / "a" / "raw"
    shutil.copytree(ROOT / "samples" / "raw_train", raw)
    (tmp_path / "tests" / "data").mkdir(parents=True)  # the benchmark's path is relative to raw_dir
    shutil.copy(ROOT / "tests" / "data" / "sample_benchmark.jsonl", tmp_path / "tests" / "data")
    cold = build(replace(_recipe(tmp_path / "cold"), raw_dir=str(raw)))
    lima = raw / "lima" / "train.jsonl"
    lines = lima.read_text(encoding="utf-8").splitlines()[1:]
    lima.write_text("\n".join(lines) + "\n", encoding="utf-8")
    signed.clear()
    edited = build(replace(_recipe(tmp_path / "edited"), raw_dir=str(raw)))
    assert {s.name for s in load_recipe(RECIPE).sources} - set(edited.timings["read_cache_hits"]) == {"lima"}
    assert 0 < edited.timings["near_dedup_signed_rows"] == sum(signed) <= len(lines)
    assert sum(signed) < cold.timings["near_dedup_signed_rows"]


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_a_damaged_signature_block_is_reported_and_its_rows_signed_again(
        signed: list[int], tmp_path: Path, how: str) -> None:
    cold = build(_recipe(tmp_path / "cold"))
    block = max(_blocks(tmp_path), key=lambda p: p.stat().st_size)
    data = bytearray(block.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    block.write_bytes(bytes(data))
    signed.clear()
    reporter = Warnings()
    again = build(_recipe(tmp_path / "again"), reporter=reporter)
    assert again.timings["cache_damaged"]["read_cache"] == 1
    assert [m for m in reporter.messages if "signature cache" in m and block.name in m]
    assert 0 < again.timings["near_dedup_signed_rows"] == sum(signed) <= 8  # that block's rows only
    assert _hashes(again) == _hashes(cold)
    assert "signature cache" not in str(again.card)  # the card of a build does not depend on the cache
    signed.clear()
    third = build(_recipe(tmp_path / "third"))  # the block was written again, whole
    assert third.timings["cache_damaged"]["read_cache"] == 0 and third.timings["near_dedup_signed_rows"] == 0


def test_concurrent_writers_of_one_block_leave_a_whole_block_never_a_torn_one(tmp_path: Path) -> None:
    """Builds sharing the cache may write the same block at once: each writes a temporary file and
    renames it, so a reader finds no block or one writer's whole block, and no temporary is left."""
    path = tmp_path / "near-x" / "rows-000000000000.npz"
    rng = np.random.default_rng(0)
    versions = [SignatureBlock(rng.integers(0, 2**32, (500, 64), dtype=np.uint32), np.ones(500, bool),
                               np.full(500, k, dtype=np.int64)) for k in range(3)]
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def write(block: SignatureBlock) -> None:
        while not stop.is_set():
            block.save(path)

    def read() -> None:
        deadline = time.monotonic() + 60  # on a loaded machine the first rename can come late
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(200):
            block, problem = SignatureBlock.load(path, 500, 64)
            if problem is not None:
                problems.append(problem)
            elif block is not None:
                k = int(block.chars[0])
                np.testing.assert_array_equal(block.sig, versions[k].sig)
                seen.append(k)

    writers = [threading.Thread(target=write, args=(v,)) for v in versions]
    for t in writers:
        t.start()
    try:
        read()
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert problems == [] and seen
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_block_of_other_dimensions_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "rows-000000000000.npz"
    SignatureBlock.empty(np.zeros(8, dtype=np.int64), 64).save(path)
    assert SignatureBlock.load(path, 8, 64)[0] is not None
    block, problem = SignatureBlock.load(path, 8, 128)
    assert block is None and problem is not None and "shape" in problem
    assert SignatureBlock.load(tmp_path / "absent.npz", 8, 64) == (None, None)


def test_a_block_is_not_written_into_an_entry_that_was_removed_meanwhile(tmp_path: Path) -> None:
    """Another build may remove a read-cache entry (its size limit) while this build signs: the block
    is then not written, and no folder without a manifest appears under the entry's name."""
    entry = tmp_path / "reads" / "0123abcd"
    SignatureBlock.empty(np.zeros(8, dtype=np.int64), 64).save(entry / "near-x" / "rows-000000000000.npz")
    assert not entry.exists()
