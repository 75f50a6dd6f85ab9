"""Packing and copying tokenised rows out a shard at a time, for ``mixer tokenize`` (:mod:`mixer.train.tokenized`).

Best-fit-decreasing bins of ``max_length`` tokens (what TRL's ``packing_strategy: bfd`` does, here over the
whole build at once and keeping each conversation's id), and the copy of one output shard's rows out of the
tokenising map's Arrow cache: read as a stream and taken chunk by chunk, so the writer's memory is one shard and
one cache batch, not the build (bench/RESULTS.md, "mixer tokenize").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: conversations per Parquet shard (unpacked)
SHARD_ROWS = 20_000
#: tokens per packed shard: a packed row holds up to ``max_length`` tokens, so a shard holds
#: ``SHARD_TOKENS // max_length`` bins (2,048 at 8,192). Shards of 20,000 bins held up to 164 M tokens each, built
#: in memory one at a time: a packed full-V2 run peaked at 4.4 GiB with them (bench/RESULTS.md).
SHARD_TOKENS = 16 * 2**20


def shard_rows(max_length: int, pack: str | None) -> int:
    """Output rows per Parquet shard."""
    return max(1, SHARD_TOKENS // max_length) if pack else SHARD_ROWS


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack items of ``lengths`` into bins of ``capacity``: longest first (ties: lower index first), each
    into the open bin with the least room that still fits it (ties: the bin opened first), else into a
    new bin. Returns the bins in the order they were opened, each the item indices in the order placed.

    A segment tree over the free room (0..capacity) finds the best bin in O(log capacity), so a V2-sized
    mixture packs in seconds. Items longer than ``capacity`` are an error (the rows are truncated first).
    """
    import heapq

    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    size = 1
    while size < capacity + 1:
        size *= 2
    tree = [0] * (2 * size)  # tree[size + room] = number of open bins with that much room
    by_room: dict[int, list[int]] = {}  # room -> heap of bin indices

    def change(room: int, delta: int) -> None:
        node = room + size
        while node:
            tree[node] += delta
            node //= 2

    def first_room_at_least(lo: int) -> int:
        node = lo + size
        if tree[node] > 0:
            return lo
        while node > 1:
            if node % 2 == 0 and tree[node + 1] > 0:
                node += 1
                while node < size:
                    node = 2 * node if tree[2 * node] > 0 else 2 * node + 1
                return node - size
            node //= 2
        return -1

    bins: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        if n > capacity or n < 1:
            raise ValueError(f"item {i} has length {n}; lengths must be in 1..{capacity}")
        room = first_room_at_least(n)
        if room < 0:
            bins.append([i])
            b, left = len(bins) - 1, capacity - n
        else:
            b = heapq.heappop(by_room[room])
            change(room, -1)
            bins[b].append(i)
            left = room - n
        heapq.heappush(by_room.setdefault(left, []), b)
        change(left, 1)
    return bins


def row_schema(packed: bool) -> Any:
    """The Arrow schema of the output rows: packed bins, or one conversation per row."""
    import pyarrow as pa

    common = [("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8()))]
    if packed:
        return pa.schema([*common, ("seq_lengths", pa.list_(pa.int32())), ("ids", pa.list_(pa.string()))])
    return pa.schema([*common, ("dataset", pa.string()), ("id", pa.string())])


def stream_rows(path: str) -> int:
    """Rows in an Arrow stream file, from its batches' metadata (the bodies are not read)."""
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(source))


class TokenisedRows:
    """The tokenised rows for the writer: lengths, sources and ids in memory, ``input_ids`` and ``assistant_masks``
    copied out for the rows of one shard at a time (:meth:`take`).

    Those come from the map's Arrow cache files, read through as a stream (read, not memory-mapped), each
    batch's wanted rows taken and the batch let go. Through the datasets table the cache stays memory-mapped:
    a packed shard's rows lie all over it and the kernel maps pages around each one touched, so every shard
    made the whole cache resident (1.2 GiB of RssFile at full V2 scale, bench/RESULTS.md). Read as a stream,
    what is held is one batch and the shard. A map whose files do not hold its rows as they are (a dataset held
    in memory) is taken from its table (``held``)."""

    def __init__(self, files: list[str], held: Any, lengths: Any, sources: Any, ids: Any) -> None:
        self.files, self.held, self.lengths, self.sources, self.ids = files, held, lengths, sources, ids

    def take(self, rows: Any) -> Any:
        """The rows numbered ``rows``, in that order: input_ids, assistant_masks, dataset, id (one chunk each)."""
        import numpy as np
        import pyarrow as pa

        rows = np.asarray(rows, dtype=np.int64)
        tokens = take_rows(self.held, rows) if self.held is not None else self._take_from_files(rows)
        names = ["input_ids", "assistant_masks", "dataset", "id"]
        ids = take_rows(pa.table([self.sources, self.ids], names=names[2:]), rows)
        return pa.Table.from_arrays([*tokens.columns, *ids.columns], schema=row_schema(False))

    def _take_from_files(self, rows: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        order = np.argsort(rows, kind="stable")
        wanted, pieces, start, done = rows[order], [], 0, len(rows) == 0
        for path in self.files:
            with pa.OSFile(path) as source:
                for batch in [] if done else pa.ipc.open_stream(source):
                    lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                    if hi > lo:
                        tokens = batch.select(["input_ids", "assistant_masks"])
                        pieces.append(tokens.take(pa.array(wanted[lo:hi] - start)))
                    start += batch.num_rows
                    done = hi == len(wanted)  # the rest of the files holds none of the rows
                    if done:
                        break
        gathered = pa.Table.from_batches(pieces, pa.schema(list(row_schema(False))[:2]))
        return take_rows(gathered, np.argsort(order))


def output_shards(source: TokenisedRows, kept: Any, max_length: int, pack: str | None) -> tuple[int, Any]:
    """How many output rows there are, and the rows a shard at a time (:func:`shard_rows`): unpacked, the kept rows in
    order; packed, best-fit-decreasing bins of them (:func:`best_fit_decreasing`, over every kept length at
    once), each bin built by :func:`pack_rows`. Only one shard's rows are copied out of ``source`` at a time."""
    step = shard_rows(max_length, pack)
    if not pack:
        return len(kept), (source.take(kept[i:i + step]) for i in range(0, len(kept), step))
    bins = best_fit_decreasing(source.lengths[kept].tolist(), max_length)
    return len(bins), (pack_rows(source.take, [kept[b] for b in bins[i:i + step]])
                       for i in range(0, len(bins), step))


def take_rows(table: Any, rows: Any) -> Any:
    """``table.take(rows)``, each column one chunk, taken from each of its chunks apart. Arrow's own take on a
    chunked column (pyarrow 26) first concatenates the whole column, twice its size in Arrow's pool for any
    number of rows: every token of the build for each shard (Arrow's pool peaked at 1 GiB at full V2 scale)."""
    import numpy as np
    import pyarrow as pa

    rows = np.asarray(rows, dtype=np.int64)
    columns = []
    for column in table.columns:
        starts = np.cumsum([0, *(len(c) for c in column.chunks)])
        chunk_of = np.searchsorted(starts, rows, side="right") - 1
        by_chunk = np.argsort(chunk_of, kind="stable")
        grouped, bounds = rows[by_chunk], np.searchsorted(chunk_of[by_chunk], np.arange(column.num_chunks + 1))
        pieces = [column.chunk(c).take(pa.array(grouped[bounds[c]:bounds[c + 1]] - starts[c]))
                  for c in range(column.num_chunks) if bounds[c] < bounds[c + 1]]
        gathered = pa.concat_arrays(pieces) if pieces else pa.array([], column.type)
        columns.append(pa.chunked_array([gathered.take(pa.array(np.argsort(by_chunk)))], column.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def pack_rows(take: Any, bins: Sequence[Any]) -> Any:
    """One row per bin (row numbers; ``take(rows)`` gives those rows as a table, :meth:`TokenisedRows.take`): its
    conversations' tokens and masks concatenated in the order placed, their lengths and record ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    order = np.concatenate([np.asarray(b, dtype=np.int64) for b in bins]) if bins else np.empty(0, np.int64)
    taken = take(order)
    lengths = pc.list_value_length(taken.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    sizes = np.array([len(b) for b in bins], dtype=np.int64)
    member_offsets = np.concatenate([[0], np.cumsum(sizes)])
    token_offsets = np.concatenate([[0], np.cumsum(lengths)])[member_offsets]

    def regroup(column: str, offsets: Any) -> Any:
        values = taken.column(column).combine_chunks()
        flat = pc.list_flatten(values) if pa.types.is_list(values.type) else values
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat)

    seq_lengths = pa.ListArray.from_arrays(pa.array(member_offsets.astype(np.int32)),
                                           pa.array(lengths, pa.int32()))
    return pa.Table.from_arrays([regroup("input_ids", token_offsets), regroup("assistant_masks", token_offsets),
                                 seq_lengths, regroup("id", member_offsets)], schema=row_schema(True))
