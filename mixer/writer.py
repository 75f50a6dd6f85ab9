"""Writing a build: sharded Parquet, the dropped records, all into a staging directory that is
renamed into place only when everything succeeded.

Files are deterministic: same table in, same bytes out (no timestamps or random ids inside).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.records import DROPPED_SCHEMA, OUTPUT_SCHEMA, PREFERENCE_OUTPUT_SCHEMA, Dropped
from mixer.tables import take_rows

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


def to_output(table: pa.Table, kind: str) -> pa.Table:
    """The published schema: SFT conversations, or preference pairs split into prompt/chosen/rejected."""
    if kind == "sft":
        return table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)
    rows = table.select(["dataset", "id", "messages", "rejected", "n_tokens"]).to_pylist()
    return pa.Table.from_pylist(
        [{"dataset": r["dataset"], "id": r["id"], "prompt": r["messages"][:-1], "chosen": r["messages"][-1:],
          "rejected": r["rejected"], "n_tokens": r["n_tokens"]} for r in rows],
        schema=PREFERENCE_OUTPUT_SCHEMA,
    )


def row_text_bytes(table: pa.Table) -> np.ndarray:
    """UTF-8 bytes of message text per row (prompt + chosen for preference pairs), chunk by chunk so
    the text itself is never copied."""
    column = table.column("messages") if "messages" in table.column_names else table.column("prompt")
    parts = []
    for chunk in column.chunks:
        lengths = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        per_message = pc.binary_length(pc.list_flatten(chunk).field("content")).to_numpy(zero_copy_only=False)
        ends = np.cumsum(lengths)
        csum = np.concatenate([[0], np.cumsum(per_message, dtype=np.int64)])
        parts.append(csum[ends] - csum[ends - lengths])
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


def write_shards(selected: pa.Table, order: Sequence[int], kind: str, data_dir: Path, shard_max_bytes: int,
                 row_group_rows: int) -> list[tuple[Path, int]]:
    """Write ``selected`` rows in ``order`` as ``train-00000-of-0000N.parquet`` shards of at most
    ``shard_max_bytes`` of text each, gathering one row group at a time (the shuffled mixture is never
    materialised as a whole). Returns (path, rows) per shard."""
    data_dir.mkdir(parents=True, exist_ok=True)
    index = np.asarray(order, dtype=np.int64)
    bounds = shard_bounds(row_text_bytes(selected)[index], shard_max_bytes)
    n = len(bounds) - 1
    schema = OUTPUT_SCHEMA if kind == "sft" else PREFERENCE_OUTPUT_SCHEMA
    written = []
    for k in range(n):
        path = data_dir / f"train-{k:05d}-of-{n:05d}.parquet"
        with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as writer:
            for start in range(bounds[k], bounds[k + 1], row_group_rows):
                rows = index[start:min(start + row_group_rows, bounds[k + 1])]
                writer.write_table(to_output(take_rows(selected, rows), kind), row_group_size=row_group_rows)
        written.append((path, bounds[k + 1] - bounds[k]))
    return written


def dropped_table(source: str, drops: list[Dropped]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"source": source, "dataset": d.dataset, "id": d.id, "stage": d.stage, "reason": d.reason,
          "detail": d.detail, "kept_id": d.kept_id, "messages": d.messages, "raw": d.raw,
          "extra": orjson.dumps(d.extra, option=orjson.OPT_SORT_KEYS).decode() if d.extra else None}
         for d in drops],
        schema=DROPPED_SCHEMA,
    )


def write_dropped(source: str, drops: list[Dropped], unsampled: list[pa.Table], dropped_dir: Path) -> Path | None:
    """``dropped/<source>.parquet``: every record that left the pipeline, with stage and reason, then
    the records sampling did not choose (ids only, reason ``not_sampled``)."""
    tables = [dropped_table(source, drops)] if drops else []
    for ids in unsampled:
        n = ids.num_rows
        tables.append(pa.table({
            "source": pa.repeat(pa.scalar(source), n), "dataset": ids.column("dataset"), "id": ids.column("id"),
            "stage": pa.repeat(pa.scalar("select"), n), "reason": pa.repeat(pa.scalar("not_sampled"), n),
            "detail": pa.repeat(pa.scalar(""), n), "kept_id": pa.nulls(n, pa.string()),
            "messages": pa.nulls(n, DROPPED_SCHEMA.field("messages").type), "raw": pa.nulls(n, pa.string()),
            "extra": pa.nulls(n, pa.string())}, schema=DROPPED_SCHEMA))
    if not tables:
        return None
    dropped_dir.mkdir(parents=True, exist_ok=True)
    path = dropped_dir / f"{source}.parquet"
    pq.write_table(pa.concat_tables(tables), path, **PARQUET_OPTIONS)
    return path
