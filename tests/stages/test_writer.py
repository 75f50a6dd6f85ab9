"""The sharded writer: the external (bucketed) shuffle writes the same bytes as gathering every row
group straight from the selected records, the unoptimised path it replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.records import SELECTED_SCHEMA
from mixer.core.tables import SpillFiles, SpillWriter
from mixer.engine import LocalEngine
from mixer.stages import write as writer


def _selected(tmp_path: Path, n: int, batch_rows: int) -> SpillFiles:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        words = " ".join(f"w{int(x)}" for x in rng.integers(0, 1000, int(rng.integers(1, 200))))
        rows.append({"dataset": f"d{i % 3}", "id": f"r{i}",
                     "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": words}],
                     "rejected": None, "n_tokens": len(words)})
    table = pa.Table.from_pylist(rows, schema=SELECTED_SCHEMA)
    out = SpillWriter(tmp_path / "selected.arrow", SELECTED_SCHEMA)
    for batch in table.to_batches(max_chunksize=batch_rows):
        out.write(batch)
    return out.close()


def _direct(selected: pa.Table, order: list[int], data_dir: Path, shard_max_bytes: int,
            row_group_rows: int) -> list[tuple[Path, int]]:
    """The reference: every row group gathered from the whole table in memory."""
    data_dir.mkdir(parents=True)
    index = np.asarray(order)
    bounds = writer.shard_bounds(writer.row_text_bytes(selected)[index], shard_max_bytes)
    n = len(bounds) - 1
    out = []
    for k in range(n):
        path = data_dir / f"train-{k:05d}-of-{n:05d}.parquet"
        with pq.ParquetWriter(path, writer.OUTPUT_SCHEMA, **writer.PARQUET_OPTIONS) as w:
            for start in range(bounds[k], bounds[k + 1], row_group_rows):
                rows = index[start:min(start + row_group_rows, bounds[k + 1])]
                part = selected.take(pa.array(rows)).combine_chunks()
                w.write_table(writer.to_output(part, "sft"), row_group_size=row_group_rows)
        out.append((path, bounds[k + 1] - bounds[k]))
    return out


@pytest.mark.parametrize(("bucket_bytes", "workers"), [(1, 1), (20_000, 1), (20_000, 2), (10**9, 2)])
def test_bucketed_shuffle_writes_the_same_bytes_as_a_direct_gather(tmp_path: Path, monkeypatch,
                                                                    bucket_bytes: int, workers: int) -> None:
    selected = _selected(tmp_path, 700, batch_rows=64)
    order = list(range(700)) + list(range(0, 700, 7))  # some records repeated, like `repeat`
    np.random.default_rng(1).shuffle(order)
    monkeypatch.setattr(writer, "BUCKET_TEXT_BYTES", bucket_bytes)
    got = writer.write_shards(selected, order, "sft", tmp_path / "got", shard_max_bytes=150_000,
                              row_group_rows=37, work_dir=tmp_path, executor=LocalEngine(workers))
    want = _direct(selected.to_table(), order, tmp_path / "want", 150_000, 37)
    assert len(want) > 2  # several shards, several row groups each
    assert [(p.name, n) for p, n in got] == [(p.name, n) for p, n in want]
    for (g, _), (w, _) in zip(got, want, strict=True):
        assert g.read_bytes() == w.read_bytes()
    assert not list(tmp_path.glob("mixer-shuffle-*"))  # buckets are removed


def test_spill_files_take_reads_rows_across_files_in_the_order_asked(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _selected(tmp_path / "a", 50, 8)
    b = _selected(tmp_path / "b", 30, 7)
    both = SpillFiles(a.paths + b.paths)
    assert both.num_rows == 80
    rows = [79, 0, 51, 49, 50, 3, 3]
    got = both.take(rows, ["id", "n_tokens"])
    ids = [f"r{i}" if i < 50 else f"r{i - 50}" for i in rows]
    assert got.column_names == ["id", "n_tokens"]
    assert got.column("id").to_pylist() == ids
    assert both.column("id").to_pylist()[48:52] == ["r48", "r49", "r0", "r1"]
