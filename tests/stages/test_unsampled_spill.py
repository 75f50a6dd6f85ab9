"""The ids of the records sampling did not choose go to spill files in the work folder while each
source is sampled, and ``dropped/`` is written from them a row group at a time: the build never
holds them all (3.9 M at scale 3.0), and the file's bytes are those of the one table it was before.
The spill files' readers (``mixer.core.tables``) hold one batch or bucket at a time, and a column read
holds only that column's bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import flan_rows, write_jsonl

from mixer.build import run_stages
from mixer.core.records import DROPPED_SCHEMA, Dropped
from mixer.core.tables import OrderedSpill, OrderedSpillWriter, SpillFiles, SpillWriter
from mixer.engine import LocalEngine
from mixer.recipe.load import load_recipe
from mixer.stages import select as select_stage
from mixer.stages import write as writer
from mixer.stages.base import dropped_table

IDS = pa.schema([("dataset", pa.string()), ("id", pa.string())])


def _files(tmp_path: Path, n: int, batch_rows: int, n_files: int = 2) -> SpillFiles:
    """``n`` id rows in ``n_files`` Arrow files of ``batch_rows``-row batches."""
    table = pa.table({"dataset": [f"d{i % 3}" for i in range(n)], "id": [f"record-{i}" for i in range(n)]},
                     schema=IDS)
    paths = []
    per_file = -(-n // n_files)
    for f in range(n_files):
        out = SpillWriter(tmp_path / f"part-{f}.arrow", IDS)
        for batch in table.slice(f * per_file, per_file).to_batches(max_chunksize=batch_rows):
            out.write(batch)
        paths.append(out.close().paths[0])
    return SpillFiles(paths, IDS)


def _spill(tmp_path: Path, name: str, files: SpillFiles, rows: np.ndarray, bucket_rows: int) -> OrderedSpill:
    spill = OrderedSpillWriter(tmp_path / name, IDS, bucket_rows)
    for positions, ids in files.gather_by_batch(rows, IDS.names):
        spill.write(ids, positions)
    return spill.close()


@pytest.mark.parametrize(("n", "batch_rows", "bucket_rows"),
                         [(1, 4, 1), (500, 37, 64), (500, 1000, 7), (999, 50, 10**6)])
def test_ordered_spill_reads_rows_back_in_the_order_given_like_take(tmp_path: Path, n: int, batch_rows: int,
                                                                     bucket_rows: int) -> None:
    files = _files(tmp_path, n, batch_rows)
    rows = np.random.default_rng(n).permutation(n)[: max(1, n * 2 // 3)]
    spill = _spill(tmp_path, "spill", files, rows, bucket_rows)
    assert spill.num_rows == len(rows)
    assert len(spill.buckets) == -(-len(rows) // bucket_rows)
    got = pa.concat_tables(list(spill.iter_tables()))
    assert got.equals(files.take(rows))
    assert all(t.column("id").num_chunks == 1 for t in spill.iter_tables())


def test_gather_by_batch_reads_each_batch_once_and_answers_every_row(tmp_path: Path) -> None:
    files = _files(tmp_path, 300, batch_rows=40)
    rows = np.random.default_rng(3).integers(0, 300, 500)  # repeats allowed, any order
    seen = np.zeros(len(rows), dtype=int)
    first_ids = []
    for entries, batch in files.gather_by_batch(rows, ["id"]):
        assert np.all(np.diff(entries) > 0)
        seen[entries] += 1
        assert batch.column(0).to_pylist() == [f"record-{r}" for r in rows[entries]]
        first_ids.append(int(rows[entries[0]]))
    assert seen.tolist() == [1] * len(rows)
    assert first_ids == sorted(first_ids)  # file order: one pass over the files


def _old_dropped_file(source: str, drops: list[Dropped], groups: list[pa.Table], path: Path,
                      row_group_rows: int) -> None:
    """The reference: how ``dropped/`` was written before, from every not-sampled id in memory."""
    tables = [dropped_table(source, drops)] if drops else []
    for ids in groups:
        n = ids.num_rows
        tables.append(pa.table({
            "source": pa.repeat(pa.scalar(source), n), "dataset": ids.column("dataset"), "id": ids.column("id"),
            "stage": pa.repeat(pa.scalar("select"), n), "reason": pa.repeat(pa.scalar("not_sampled"), n),
            "detail": pa.repeat(pa.scalar(""), n), "kept_id": pa.nulls(n, pa.string()),
            "messages": pa.nulls(n, DROPPED_SCHEMA.field("messages").type), "raw": pa.nulls(n, pa.string()),
            "extra": pa.nulls(n, pa.string())}, schema=DROPPED_SCHEMA))
    pq.write_table(pa.concat_tables(tables), path, row_group_size=row_group_rows, **writer.PARQUET_OPTIONS)


@pytest.mark.parametrize(("row_group_rows", "bucket_rows", "n_drops"),
                         [(writer.DROPPED_ROW_GROUP_ROWS, 1 << 19, 25), (100, 33, 25), (7, 1000, 0), (333, 50, 250),
                          (10_000, 64, 3)])
def test_dropped_written_by_row_groups_has_the_bytes_of_the_whole_table(tmp_path: Path, monkeypatch,
                                                                        row_group_rows: int, bucket_rows: int,
                                                                        n_drops: int) -> None:
    files = _files(tmp_path, 4_000, batch_rows=300)
    rng = np.random.default_rng(row_group_rows)
    groups = [rng.permutation(4_000)[:1_700], rng.permutation(4_000)[:1], rng.permutation(4_000)[:900]]
    drops = [Dropped(reason="llm_mention", dataset="d", id=f"x{i}", detail="gpt-4", stage="filter",
                     messages=[{"role": "user", "content": f"text {i} " * (i % 50)}]) for i in range(n_drops)]
    spills = [_spill(tmp_path, f"g{k}", files, rows, bucket_rows) for k, rows in enumerate(groups)]
    monkeypatch.setattr(writer, "DROPPED_ROW_GROUP_ROWS", row_group_rows)

    # the drops as the sink holds them: compacted tables and a read unit's file, here cut every 7 rows
    parts = [dropped_table("flan_v2", drops[i:i + 7]) for i in range(0, n_drops, 7)]
    got = writer.write_dropped("flan_v2", parts, spills, tmp_path / "got")
    want = tmp_path / "want.parquet"
    _old_dropped_file("flan_v2", drops, [files.take(rows) for rows in groups], want, row_group_rows)

    assert got is not None
    assert pq.ParquetFile(got).metadata.num_row_groups == -(-(n_drops + 2_601) // row_group_rows)
    assert got.read_bytes() == want.read_bytes()


def test_dropped_is_not_written_when_nothing_left(tmp_path: Path) -> None:
    assert writer.write_dropped("flan_v2", [], [], tmp_path / "dropped") is None
    assert not (tmp_path / "dropped").exists()


def test_not_sampled_ids_are_spilled_while_their_source_is_sampled_and_not_held(tmp_path: Path, make_recipe,
                                                                                monkeypatch) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(600))
    write_jsonl(tmp_path / "raw" / "more.jsonl", flan_rows(300, prefix="other"))
    recipe = load_recipe(make_recipe([
        {"name": "flan_v2", "files": ["flan.jsonl"], "take": 40},
        {"name": "more", "adapter": "flan_v2", "files": ["more.jsonl"], "take": 0.5}], max_tokens=4096))
    monkeypatch.setattr(select_stage, "UNSAMPLED_BUCKET_ROWS", 64)  # several buckets per source
    sampling: list[str] = []  # the source being sampled, while it is
    spilled: list[tuple[str, int]] = []  # (source being sampled, rows) per spill write
    select, write = select_stage.Selector.select, OrderedSpillWriter.write

    def select_spy(self, source, *args, **kwargs):
        sampling.append(source.name)
        try:
            return select(self, source, *args, **kwargs)
        finally:
            sampling.pop()

    def write_spy(self, batch, positions):
        spilled.append((sampling[-1] if sampling else "", len(positions)))
        return write(self, batch, positions)

    monkeypatch.setattr(select_stage.Selector, "select", select_spy)
    monkeypatch.setattr(OrderedSpillWriter, "write", write_spy)
    work = tmp_path / "work"
    work.mkdir()
    with LocalEngine(workers=1) as engine:
        state = run_stages(recipe, executor=engine, work_dir=work)

    assert {source for source, _ in spilled} == {"flan_v2", "more"}  # every write while its source was sampled
    assert sum(n for source, n in spilled if source == "flan_v2") == 560 == state.stats["flan_v2"].not_sampled
    assert sum(n for source, n in spilled if source == "more") == 150 == state.stats["more"].not_sampled
    for source, (n_rows, n_buckets) in {"flan_v2": (560, 9), "more": (150, 3)}.items():
        (spill,) = state.unsampled[source]
        # what the build keeps is file names in the work folder, not the ids
        assert isinstance(spill, OrderedSpill) and spill.num_rows == n_rows and len(spill.buckets) == n_buckets
        assert all(isinstance(b, SpillFiles) and work in b.paths[0].parents for b in spill.buckets)
        assert not any(isinstance(v, (pa.Table, pa.Array, pa.RecordBatch)) for v in vars(spill).values())
        ids = pa.concat_tables(list(spill.iter_tables())).column("id").to_pylist()
        assert len(set(ids)) == n_rows


def test_a_column_read_does_not_keep_the_other_columns_of_its_batches_allocated(tmp_path: Path) -> None:
    """The IPC reader allocates a batch's whole body; a column kept as slices of it kept every
    batch's messages allocated (3.7 GB for Open-Orca's token counts at scale 3.0)."""
    schema = pa.schema([("messages", pa.string()), ("n_tokens", pa.int32())])
    out = SpillWriter(tmp_path / "candidates.arrow", schema)
    for _ in range(20):
        out.write(pa.table({"messages": ["x" * 2_000] * 1_000, "n_tokens": np.arange(1_000, dtype=np.int32)},
                           schema=schema))
    table = out.close()
    before = pa.total_allocated_bytes()
    column = table.column("n_tokens")
    held = pa.total_allocated_bytes() - before
    assert column.to_pylist() == list(range(1_000)) * 20
    assert held < 1_000_000  # the counts' 80 kB (and padding), not the 40 MB of messages
