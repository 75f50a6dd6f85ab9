"""A SPIN iteration's answers are kept in shards as they are made: a generation stopped part way resumes at
its first missing shard (the answered prompts are not answered again) and ends with the bytes of an
unbroken one; the shards go once the iteration's pairs are in place."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.backends import StandInPolicy

import mixer.generate.backends as backends
from mixer.generate.spin import PAIR_SCHEMA, PAIR_SHARDS, generate_pairs

GOLD = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"Question {i}?"}],
         "gold": {"role": "assistant", "content": f"Gold {i}."}} for i in range(5)]


def _run(monkeypatch: pytest.MonkeyPatch, backend: StandInPolicy, folder: Path) -> None:
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: backend)
    generate_pairs("policy", GOLD, folder / "pairs", 0, None, None, 42, shard_prompts=2)


def test_a_stopped_generation_resumes_at_its_first_missing_shard(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    unbroken = tmp_path / "unbroken" / "iter-0"
    _run(monkeypatch, StandInPolicy(), unbroken)
    folder = tmp_path / "spin" / "iter-0"
    with pytest.raises(RuntimeError):
        _run(monkeypatch, StandInPolicy(fail_after=2), folder)  # shards 0 and 1 written, shard 2 not
    assert sorted(p.name for p in (folder / PAIR_SHARDS).iterdir()) == ["pairs-00000.parquet", "pairs-00001.parquet"]
    assert not (folder / "pairs").exists()
    again = StandInPolicy()
    _run(monkeypatch, again, folder)
    assert (again.calls, again.prompts) == (1, 1)  # only p4 was answered again
    assert not (folder / PAIR_SHARDS).exists()
    part = "pairs/data/train-00000-of-00001.parquet"
    assert (folder / part).read_bytes() == (unbroken / part).read_bytes()
    rows = pq.read_table(folder / "pairs" / "data").to_pylist()
    assert [r["id"] for r in rows] == [g["id"] for g in GOLD]
    assert [r["chosen"][0]["content"] for r in rows] == [g["gold"]["content"] for g in GOLD]


def test_the_assembled_pairs_are_the_rows_written_as_one_table(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The part is the same file as one table of the rows written at once (what the iteration wrote before
    it kept shards), so the bytes of a SPIN run did not change with the shards."""
    folder = tmp_path / "iter-0"
    _run(monkeypatch, StandInPolicy(), folder)
    rows = pq.read_table(folder / "pairs" / "data").to_pylist()
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), tmp_path / "one.parquet", compression="zstd")
    assert (folder / "pairs/data/train-00000-of-00001.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()
