"""Stage **exact dedup** (corpus-level): the first copy of each conversation is kept, across sources.

"First" is in recipe order, then file order: the copy from the source listed first in the recipe
wins, and the dropped record's ``kept_id`` points at it. The key is ``content_hash``
of the normalised messages (for a preference pair, of its prompt), computed while reading and stored
in the candidates' ``hash`` column, so this stage reads one 16-byte column per source.

``exact_dedup`` is the stage of the default order; ``FirstCopy`` is the same rule for a stream of
records one at a time, which the ``sample_then_filter`` order needs (it dedups records as sampling
reaches them, and lists their drops in that order).

Large corpora are deduplicated as a group-by in units of the executor, so only narrow data moves
and no process holds every hash: units over the candidates' Arrow files write ``(hash, source rank,
row)`` triples into hash partitions in the work folder (``partition_hashes``), one unit per
partition sorts its triples and returns only the duplicates with their keepers
(``partition_duplicates``). A record's global id is (source rank in the recipe, row in the source's
candidates), the keeper the smallest id of its group: the same as the single sort below, whatever
the number of partitions or units and whichever finishes first.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from mixer.core.records import Dropped, Message, Record, record_key_messages
from mixer.core.tables import SpillFiles
from mixer.core.workstore import WorkPath, list_files, load_npz, make_temp_dir, open_output, remove_tree
from mixer.stages.base import StageContext

REASON = "exact_duplicate"


def content_hash(messages: list[Message]) -> bytes:
    """blake2b-128 of ``role NUL content SOH`` per message, UTF-8 (one encode and one update: the
    same digest as hashing the parts one by one, at about two thirds of the cost)."""
    text = "".join([f"{m['role']}\x00{m['content']}\x01" for m in messages])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def duplicate_of(kept_source: str, kept_id: str) -> Dropped:
    """The drop of a copy of ``kept_source/kept_id`` (record fields are filled in by whoever drops it)."""
    return Dropped(reason=REASON, stage="dedup", detail=f"same content as {kept_source}/{kept_id}",
                   kept_id=kept_id, extra={"kept_source": kept_source})


class FirstCopy:
    """Remembers the first (source, id) per content hash, for records checked one at a time."""

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[str, str]] = {}

    def check(self, source: str, record: Record) -> Dropped | None:
        """None if the record is new (and now remembered), else its drop as a duplicate."""
        key = content_hash(record_key_messages(record))
        kept = self._seen.get(key)
        if kept is None:
            self._seen[key] = (source, record["id"])
            return None
        d = duplicate_of(*kept)
        d.dataset, d.id, d.messages = record["dataset"], record["id"], record["messages"]
        return d


#: from this many candidates on, the hashes are grouped in units (``partition_hashes``); below it one
#: sort in this process is quicker than writing partitions
GROUP_MIN_ROWS = 4_000_000
#: hash triples (32 bytes each) per partition at most, so a partition's unit holds about 100 MB
PARTITION_ROWS = 3_000_000


def _hash_words(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The 16-byte hashes as (n, 2) uint64 words, without copying them into Python objects."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not len(column):
        return np.zeros((0, 2), dtype=np.uint64)
    return np.frombuffer(column.buffers()[1], dtype=np.uint64,
                         count=2 * len(column), offset=column.offset * 16).reshape(-1, 2)


def partition_hashes(unit: tuple[WorkPath, int, int, np.ndarray, WorkPath, int]) -> None:
    """One candidates file's live rows as (hash, source rank, row) triples, split by hash into
    ``partitions`` files of the folder (names fixed by the unit, so a retried unit overwrites)."""
    path, rank, first_row, rows, folder, partitions = unit
    words = _hash_words(SpillFiles([path]).column("hash"))[rows - first_row]
    part = (words[:, 0] % np.uint64(partitions)).astype(np.int64)
    for p in np.unique(part).tolist():
        mine = part == p
        with open_output(folder / f"{p:04d}-{rank:04d}-{first_row:012d}.npz") as f:
            np.savez(f, key=words[mine], row=rows[mine], rank=np.full(int(mine.sum()), rank, dtype=np.int32))


def partition_duplicates(files: list[WorkPath]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One hash partition: every duplicate's (rank, row) and its keeper's (rank, row), the keeper
    being the smallest (rank, row) of its hash group."""
    keys, rows, ranks = [np.zeros((0, 2), dtype=np.uint64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0, np.int32)]
    for path in files:
        saved = load_npz(path)
        keys.append(saved["key"])
        rows.append(saved["row"])
        ranks.append(saved["rank"])
    key, row, rank = np.concatenate(keys), np.concatenate(rows), np.concatenate(ranks)
    order = np.lexsort((row, rank, key[:, 1], key[:, 0]))
    sk = key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (sk[1:, 0] != sk[:-1, 0]) | (sk[1:, 1] != sk[:-1, 1])
    keeper = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    dup = order[~first]
    kept = keeper[~first]
    return rank[dup], row[dup], rank[kept], row[kept]


def _grouped_duplicates(ctx: StageContext, names: list[str]) -> tuple[np.ndarray, ...]:
    """``partition_hashes`` then ``partition_duplicates`` through the executor; returns duplicates
    (rank, row) and keepers (rank, row), sorted by the duplicate's (rank, row)."""
    candidates = ctx.candidates
    total = candidates.count(names)
    partitions = max(ctx.executor.parallelism, -(-total // PARTITION_ROWS))
    folder = make_temp_dir(ctx.work_dir, "exact-dedup-")
    try:
        units = []
        for rank, _, table, alive in candidates.live(names):
            first_row = 0
            for path in table.paths:
                n = SpillFiles([path]).num_rows
                rows = alive[(alive >= first_row) & (alive < first_row + n)]
                if len(rows):
                    units.append((path, rank, first_row, rows, folder, partitions))
                first_row += n
        list(ctx.executor.map(partition_hashes, units))
        files: dict[int, list[WorkPath]] = {}
        for path in list_files(folder):
            files.setdefault(int(path.name[:4]), []).append(path)
        found = list(ctx.executor.map(partition_duplicates, [files[p] for p in sorted(files)]))
    finally:
        remove_tree(folder)
    if not found:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
    dup_rank, dup_row, kept_rank, kept_row = (np.concatenate(parts) for parts in zip(*found, strict=True))
    order = np.lexsort((dup_row, dup_rank))
    return dup_rank[order], dup_row[order], kept_rank[order], kept_row[order]


def exact_dedup(ctx: StageContext) -> None:
    """Keep the first copy of each content hash, in recipe order then file order.

    Vectorised over the 16-byte hashes (a sort, not a dict of 1.5M Python bytes objects): only the
    hash column is read, and only the duplicates' records are fetched, to be written to ``dropped/``.
    From ``GROUP_MIN_ROWS`` candidates on, the sort is a group-by in the executor's units (module
    docstring), with the same result.
    """
    candidates = ctx.candidates
    names = [s.name for s in ctx.recipe.sources if s.name in candidates]
    if candidates.count(names) >= GROUP_MIN_ROWS:
        dup_rank, dup_row, kept_rank, kept_row = _grouped_duplicates(ctx, names)
        kept_ids: dict[tuple[int, int], str] = {}
        for k, name in enumerate(names):
            mine = np.unique(kept_row[kept_rank == k])
            if len(mine):
                ids = candidates.tables[name].take(mine, ["id"]).column("id").to_pylist()
                kept_ids.update(((k, r), i) for r, i in zip(mine.tolist(), ids, strict=True))
        for k, name in enumerate(names):
            mine = np.flatnonzero(dup_rank == k)
            drops = {int(dup_row[i]): duplicate_of(names[int(kept_rank[i])],
                                                   kept_ids[(int(kept_rank[i]), int(kept_row[i]))])
                     for i in mine.tolist()}
            candidates.remove(name, drops, ctx.sink)
        return
    keys, rows_of, source_of = [], [], []
    for k, _, table, alive in candidates.live(names):
        keys.append(_hash_words(table.column("hash"))[alive])
        rows_of.append(alive)
        source_of.append(np.full(len(alive), k, dtype=np.int32))
    if not names:
        return
    key = np.concatenate(keys)
    row = np.concatenate(rows_of)
    src = np.concatenate(source_of)
    n = len(key)
    if n == 0:
        return
    order = np.lexsort((np.arange(n), key[:, 1], key[:, 0]))  # by hash, then by first appearance
    sk = key[order]
    first = np.ones(n, dtype=bool)
    first[1:] = (sk[1:, 0] != sk[:-1, 0]) | (sk[1:, 1] != sk[:-1, 1])
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    keeper = np.empty(n, dtype=np.int64)
    keeper[order] = order[group_start]  # global position of the copy kept, for every position
    dup = keeper != np.arange(n)
    if not dup.any():
        return
    kept_ids: dict[int, str] = {}  # global position of a keeper -> its id
    kept_pos = np.unique(keeper[dup])
    for k, name in enumerate(names):
        mine = kept_pos[src[kept_pos] == k]
        if len(mine):
            ids = candidates.tables[name].take(row[mine], ["id"]).column("id").to_pylist()
            kept_ids.update(zip(mine.tolist(), ids, strict=True))
    for k, name in enumerate(names):
        mine = np.flatnonzero(dup & (src == k))
        if not len(mine):
            continue
        drops = {}
        for position in mine.tolist():
            kept = int(keeper[position])
            drops[int(row[position])] = duplicate_of(names[int(src[kept])], kept_ids[kept])
        candidates.remove(name, drops, ctx.sink)


class ExactDedup:
    """Stage **exact_dedup** over the candidates of every source (recipe ``dedup.exact``)."""

    name = "exact_dedup"
    label = "exact dedup"

    def run(self, ctx: StageContext) -> None:
        exact_dedup(ctx)
