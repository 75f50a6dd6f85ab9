"""Stage **exact dedup** (corpus-level): the first copy of each conversation is kept, across sources.

"First" is in recipe order, then file order: the copy from the source listed first in the recipe
wins, and the dropped record's ``kept_id`` points at it. The key is ``mixer.dedup.exact.content_hash``
of the normalised messages (for a preference pair, of its prompt), computed while reading and stored
in the candidates' ``hash`` column, so this stage reads one 16-byte column per source.

``exact_dedup`` is the stage of the default order; ``FirstCopy`` is the same rule for a stream of
records one at a time, which the ``sample_then_filter`` order needs (it dedups records as sampling
reaches them, and lists their drops in that order).
"""

from __future__ import annotations

import numpy as np

from mixer.dedup.exact import content_hash
from mixer.records import Dropped, Record, record_key_messages
from mixer.stages.base import StageContext

REASON = "exact_duplicate"


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


def exact_dedup(ctx: StageContext) -> None:
    """Keep the first copy of each content hash, in recipe order then file order.

    Vectorised over the 16-byte hashes (a sort, not a dict of 1.5M Python bytes objects): only the
    hash column is read, and only the duplicates' records are fetched, to be written to ``dropped/``.
    """
    candidates = ctx.candidates
    names = [s.name for s in ctx.recipe.sources if s.name in candidates]
    keys, rows_of, source_of = [], [], []
    for k, name in enumerate(names):
        alive = np.asarray(candidates.alive[name], dtype=np.int64)
        column = candidates.tables[name].column("hash").combine_chunks()
        if len(column):
            data = np.frombuffer(column.buffers()[1], dtype=np.uint64,
                                 count=2 * len(column), offset=column.offset * 16).reshape(-1, 2)
        else:
            data = np.zeros((0, 2), dtype=np.uint64)
        keys.append(data[alive])
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
