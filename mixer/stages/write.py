"""Stage **write** (corpus-level): the shuffled selection as sharded Parquet and every dropped record
in ``dropped/<source>.parquet``, into a staging directory that the build renames into place only
when everything succeeded.

Each shard is one unit of ``executor.map`` (its path and the spill files it gathers); ``dropped/`` is
written as one more unit meanwhile. Files are deterministic: same table in, same bytes out (no
timestamps or random ids inside).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.records import (
    DROPPED_SCHEMA,
    FLAGGED_OUTPUT_SCHEMA,
    OUTPUT_SCHEMA,
    PREFERENCE_OUTPUT_SCHEMA,
    SCORE_FIELDS,
)
from mixer.core.tables import OrderedSpill, SpillFiles, SpillWriter, list_sums
from mixer.core.workstore import WorkPath, make_temp_dir, remove_tree
from mixer.readers.raw import file_info
from mixer.recipe.load import Recipe
from mixer.stages.base import StageContext, drop_tables

if TYPE_CHECKING:
    from mixer.core.executor import Executor

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True,
                   "use_dictionary": ["dataset"]}


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh sibling directory; on success it replaces ``out``, on failure it is removed.

    The previous build at ``out`` survives a failed build untouched.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def to_output(table: pa.Table, kind: str, schema: pa.Schema = OUTPUT_SCHEMA) -> pa.Table:
    """The published schema: SFT conversations (``schema``: with the per-message ``train`` flag or without),
    or preference pairs split into prompt/chosen/rejected."""
    if kind == "sft":
        return table.select(schema.names).cast(schema)
    rows = table.select(["dataset", "id", "messages", "rejected", *SCORE_FIELDS, "n_tokens"]).to_pylist()
    return pa.Table.from_pylist(
        [{"dataset": r["dataset"], "id": r["id"], "prompt": r["messages"][:-1], "chosen": r["messages"][-1:],
          "rejected": r["rejected"], **{k: r[k] for k in SCORE_FIELDS}, "n_tokens": r["n_tokens"]} for r in rows],
        schema=PREFERENCE_OUTPUT_SCHEMA,
    )


def output_schema(selected: SpillFiles) -> pa.Schema:
    """The SFT output schema: with the per-message ``train`` column only when some selected message sets
    it, so mixtures without the flag keep the published schema (and bytes) unchanged."""
    for batch in selected.iter_batches(["messages"]):
        flags = pc.list_flatten(batch.column(0)).field("train")
        if flags.null_count < len(flags):
            return FLAGGED_OUTPUT_SCHEMA
    return OUTPUT_SCHEMA


def row_text_bytes(table: pa.Table) -> np.ndarray:
    """UTF-8 bytes of message text per row (prompt + chosen for preference pairs), chunk by chunk so
    the text itself is never copied."""
    column = table.column("messages") if "messages" in table.column_names else table.column("prompt")
    parts = [list_sums(chunk, pc.binary_length(pc.list_flatten(chunk).field("content")).to_numpy(zero_copy_only=False))
             for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def shard_bounds(sizes: np.ndarray, shard_max_bytes: int) -> list[int]:
    """Row offsets where shards start (plus the end): a new shard once one holds ``shard_max_bytes``."""
    bounds = [0]
    acc = 0
    for i, size in enumerate(sizes.tolist()):
        if acc and acc + size > shard_max_bytes:
            bounds.append(i)
            acc = 0
        acc += size
    bounds.append(len(sizes))
    return bounds


#: text bytes per shuffle bucket: what the writer holds in memory at once (plus Arrow overhead)
BUCKET_TEXT_BYTES = 64 * 1024 * 1024


def write_shards(selected: SpillFiles, order: Sequence[int], kind: str, data_dir: Path, shard_max_bytes: int,
                 row_group_rows: int, work_dir: WorkPath | None = None, executor: Executor | None = None
                 ) -> list[tuple[Path, int]]:
    """Write ``selected`` rows in ``order`` as ``train-00000-of-0000N.parquet`` shards of at most
    ``shard_max_bytes`` of text each, one unit of ``executor.map`` per shard (in this process
    without an executor). Returns (path, rows) per shard.

    The shuffle is external, so memory stays bounded by ``BUCKET_TEXT_BYTES`` per worker however
    large the mixture: one pass over the selected records scatters them into buckets of consecutive
    output row groups (Arrow files in ``work_dir``; a bucket never spans two shards), then each
    shard's buckets are read, put in output order and written. The bytes are the same as gathering
    every row group directly. A shard's unit is its path and its buckets' files, so it can be
    written anywhere the work folder is; locally it runs on a thread (``threads=True``): Parquet
    encoding and compression run in Arrow's C++ code without the GIL.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    index = np.asarray(order, dtype=np.int64)
    text = np.concatenate([row_text_bytes(pa.Table.from_batches([b])) for b in selected.iter_batches(["messages"])]
                          or [np.zeros(0, dtype=np.int64)])
    sizes = text[index]
    bounds = shard_bounds(sizes, shard_max_bytes)
    n_shards = len(bounds) - 1
    csum = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    # per shard, its buckets; per bucket, its row groups in output order as (first position, end)
    shards: list[list[list[tuple[int, int]]]] = []
    for k in range(n_shards):
        buckets: list[list[tuple[int, int]]] = []
        acc = 0
        for start in range(bounds[k], bounds[k + 1], row_group_rows):
            end = min(start + row_group_rows, bounds[k + 1])
            group_bytes = int(csum[end] - csum[start])
            if not buckets or (acc and acc + group_bytes > BUCKET_TEXT_BYTES):
                buckets.append([])
                acc = 0
            buckets[-1].append((start, end))
            acc += group_bytes
        shards.append(buckets)
    flat = [b for buckets in shards for b in buckets]
    schema = output_schema(selected) if kind == "sft" else PREFERENCE_OUTPUT_SCHEMA
    paths = [data_dir / f"train-{k:05d}-of-{n_shards:05d}.parquet" for k in range(n_shards)]
    tmp = make_temp_dir(work_dir, "mixer-shuffle-")
    try:
        files = iter(_scatter(selected, index, [b[0][0] for b in flat], tmp))
        tasks = [(paths[k], [(next(files), bucket) for bucket in shards[k]]) for k in range(n_shards)]

        write = partial(write_shard, schema=schema, kind=kind, row_group_rows=row_group_rows)
        if executor is None or n_shards < 2:
            for task in tasks:
                write(task)
        else:
            list(executor.map(write, tasks, threads=True))
    finally:
        remove_tree(tmp)
    return [(paths[k], bounds[k + 1] - bounds[k]) for k in range(n_shards)]


def write_shard(task: tuple[Path, list[tuple[SpillFiles, list[tuple[int, int]]]]], schema: pa.Schema, kind: str,
                row_group_rows: int) -> None:
    """Write one shard: its buckets' rows put back in output order, one row group at a time."""
    path, buckets = task
    with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as writer:
        for bucket_rows, groups in buckets:
            rows = bucket_rows.to_table()
            rows = rows.take(pc.sort_indices(rows.column("position"))).drop_columns(["position"])
            rows = rows.combine_chunks()
            first = groups[0][0]
            for start, end in groups:
                part = rows.slice(start - first, end - start)
                writer.write_table(to_output(part, kind, schema), row_group_size=row_group_rows)
            del rows


def _scatter(selected: SpillFiles, index: np.ndarray, bucket_starts: list[int], tmp: WorkPath) -> list[SpillFiles]:
    """One pass over the selected records: each output position's record goes to its bucket's file,
    with the position (a record repeated n times goes n times)."""
    by_row = np.argsort(index, kind="stable")  # output positions, grouped by the row they show
    rows_sorted = index[by_row]
    starts = np.asarray(bucket_starts, dtype=np.int64)
    schema = selected.schema.append(pa.field("position", pa.int64()))
    writers = [SpillWriter(tmp / f"bucket-{b:05d}.arrow", schema) for b in range(len(starts))]
    first_row = 0
    for batch in selected.iter_batches():
        last_row = first_row + batch.num_rows
        lo, hi = np.searchsorted(rows_sorted, [first_row, last_row])
        positions = by_row[lo:hi]
        local = rows_sorted[lo:hi] - first_row
        bucket = np.searchsorted(starts, positions, side="right") - 1
        for b in np.unique(bucket):
            mask = bucket == b
            part = batch.take(pa.array(local[mask], pa.int64()))
            writers[int(b)].write(pa.RecordBatch.from_arrays(
                [*part.columns, pa.array(positions[mask], pa.int64())], schema=schema))
        first_row = last_row
    return [w.close() for w in writers]


#: rows per row group of ``dropped/<source>.parquet``: ``pq.write_table``'s default, with which the
#: file was written when it was made from one table; the bytes stay those
DROPPED_ROW_GROUP_ROWS = 1024 * 1024


def write_dropped(source: str, drops: Sequence[pa.Table | SpillFiles], unsampled: Sequence[OrderedSpill],
                  dropped_dir: Path) -> Path | None:
    """``dropped/<source>.parquet``: every record that left the pipeline, with stage and reason, then
    the records sampling did not choose (ids only, reason ``not_sampled``; one spill per sampled
    group, read from the work folder a bucket at a time).

    Written a row group at a time, so neither the drops nor the not-sampled ids (3.9 M at scale 3.0)
    are ever all in memory: ``drops`` are the drops' Arrow files (``DropSink.parts``), read a batch at
    a time. The bytes are those of one table (the drops, then one chunk per group) written whole with
    ``pq.write_table``: the same row-group cuts, and in each row group the same chunks per column
    (Arrow's writer encodes a column chunk in batches that restart at each Arrow chunk, so where its
    pages end may depend on them); hence each piece below is made one chunk, cut where the drops, a
    group or a row group ends."""
    total = sum(part.num_rows for part in drops) + sum(group.num_rows for group in unsampled)
    if not total:
        return None
    dropped_dir.mkdir(parents=True, exist_ok=True)
    path = dropped_dir / f"{source}.parquet"
    row_group: list[pa.Table] = []
    held = 0
    with pq.ParquetWriter(path, DROPPED_SCHEMA, **PARQUET_OPTIONS) as writer:
        for piece in _dropped_pieces(source, drops, unsampled):
            row_group.append(piece)
            held += piece.num_rows
            if held == DROPPED_ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(row_group), row_group_size=held)
                row_group, held = [], 0
        if held:
            writer.write_table(pa.concat_tables(row_group), row_group_size=held)
    return path


def _dropped_pieces(source: str, drops: Sequence[pa.Table | SpillFiles], unsampled: Sequence[OrderedSpill]
                    ) -> Iterator[pa.Table]:
    """The rows of ``dropped/<source>.parquet`` in order, in tables of one chunk per column that end
    where the drops, a group or a row group ends."""
    offset = 0  # rows of the file before the current piece

    def cuts(n: int) -> Iterator[int]:
        """The lengths the next ``n`` rows are cut into at row-group ends."""
        nonlocal offset
        while n:
            length = min(n, DROPPED_ROW_GROUP_ROWS - offset % DROPPED_ROW_GROUP_ROWS)
            offset += length
            n -= length
            yield length

    yield from _recut(drop_tables(drops), cuts(sum(part.num_rows for part in drops)))
    for group in unsampled:
        for ids in _recut(group.iter_tables(), cuts(group.num_rows)):
            yield _not_sampled_table(source, ids)


def _recut(tables: Iterator[pa.Table], lengths: Iterator[int]) -> Iterator[pa.Table]:
    """The rows of ``tables`` again, in tables of the given lengths, each one chunk per column."""
    held: list[pa.Table] = []
    for length in lengths:
        while sum(t.num_rows for t in held) < length:
            held.append(next(tables))
        rows = pa.concat_tables(held).combine_chunks()
        held = [rows.slice(length)] if rows.num_rows > length else []
        yield rows.slice(0, length).combine_chunks()


def _not_sampled_table(source: str, ids: pa.Table) -> pa.Table:
    """``dropped/``'s rows for not-sampled records: their ids, stage ``select``, reason ``not_sampled``."""
    n = ids.num_rows
    return pa.table({
        "source": pa.repeat(pa.scalar(source), n), "dataset": ids.column("dataset"), "id": ids.column("id"),
        "stage": pa.repeat(pa.scalar("select"), n), "reason": pa.repeat(pa.scalar("not_sampled"), n),
        "detail": pa.repeat(pa.scalar(""), n), "kept_id": pa.nulls(n, pa.string()),
        "messages": pa.nulls(n, DROPPED_SCHEMA.field("messages").type), "raw": pa.nulls(n, pa.string()),
        "extra": pa.nulls(n, pa.string())}, schema=DROPPED_SCHEMA)


def check_unique_ids(recipe: Recipe, selected: Mapping[str, SpillFiles]) -> None:
    """Raise ``MixerError`` when two selected records share ``(dataset, id)``, naming the sources.

    ``(dataset, id)`` is how a record is found again (``mixer show``, ``dropped/``'s ``kept_id``,
    ``mixer diff``), so a collision would make two records one. Checked on the selected records
    before ``repeat``: the copies a recipe's ``repeat:`` writes (hard_coded's ten per example, as
    Tulu V2 publishes them) are one record, not a collision. The grouping runs in Arrow, on the two
    id columns only.
    """
    parts = []
    for i, s in enumerate(recipe.sources):
        table = selected.get(s.name)
        if table is None:
            continue
        for batch in table.iter_batches(["dataset", "id"]):
            parts.append(pa.table({"dataset": batch.column(0).cast(pa.string()), "id": batch.column(1),
                                   "source": pa.array(np.full(batch.num_rows, i, dtype=np.int32))}))
    if not parts:
        return
    counts = pa.concat_tables(parts).group_by(["dataset", "id"]).aggregate(
        [("source", "count"), ("source", "min"), ("source", "max")])
    dup = counts.filter(pc.greater(counts["source_count"], 1))
    if dup.num_rows == 0:
        return
    first = dup.slice(0, 1).to_pylist()[0]
    a, b = recipe.sources[first["source_min"]], recipe.sources[first["source_max"]]
    where = (f"source {a.name!r} and source {b.name!r}" if a is not b
             else f"{first['source_count']} records of source {a.name!r} (two of its files, or records "
                  f"with the same id field)")
    hint = ("give the sources their own labels (`options: {dataset: NAME}` on adapters that take it) or "
            "their own ids" if a is not b else "give the records unique ids")
    if a is b and recipe.kind == "preference" and recipe.dedup.exact.preference_key != "prompt":
        # UltraFeedback's id is its prompt's hash (prompt_id, as published): two pairs on one prompt
        # that differ in a reply both survive the default pair key and then share an id.
        hint += (" (a source whose id is the prompt's hash, as UltraFeedback's prompt_id, gives two pairs "
                 "on one prompt the same id; keep one pair per prompt with `dedup: {exact: "
                 "{preference_key: prompt}}`)")
    raise MixerError(f"(dataset {first['dataset']!r}, id {first['id']!r}) is used by {where}; "
                     f"{dup.num_rows:,} (dataset, id) pair(s) are not unique in all. A record is found by "
                     f"its (dataset, id), so each must be unique within a build: {hint}")


def write_output(ctx: StageContext, selected: SpillFiles, order: Sequence[int],
                 unsampled: Mapping[str, Sequence[OrderedSpill]], out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Shards in ``out/data`` (with their rows, size and sha256 for the card) and ``out/dropped``
    (their paths relative to ``out``)."""
    recipe = ctx.recipe
    opts = recipe.output_options

    def dropped() -> list[str]:
        files = []
        for s in recipe.sources:
            path = write_dropped(s.name, ctx.sink.parts(s.name), unsampled.get(s.name, []), out / "dropped")
            if path is not None:
                files.append(f"dropped/{path.name}")
        return files

    dropped_files = ctx.executor.submit(dropped, threads=True)  # written while the shards are
    written = write_shards(selected, order, recipe.kind, out / "data", opts.shard_max_bytes, opts.row_group_rows,
                           work_dir=ctx.work_dir, executor=ctx.executor)
    shards = []
    for path, rows in written:
        info = file_info(path)
        shards.append({"path": f"data/{path.name}", "rows": rows, "bytes": info.bytes, "sha256": info.sha256})
    return shards, dropped_files()


class Write:
    """Stage **write**: the shuffled records as Parquet shards and every drop in ``dropped/``, into the
    staging folder ``ctx.out_dir``."""

    name = "write"
    label = "write"

    def run(self, ctx: StageContext) -> None:
        assert ctx.output is not None and ctx.out_dir is not None
        records, order = ctx.output
        ctx.shards, ctx.dropped_files = write_output(ctx, records, order, ctx.unsampled, ctx.out_dir)
