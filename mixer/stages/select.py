"""Stage **select** (corpus-level): sample ``take`` records per source and apply ``max_tokens``.

Per source a seeded permutation is walked until ``take`` records that fit ``max_tokens`` are found,
counting tokens (``mixer.tokens.count``, through the executor) only for records the walk reaches, so a
30k sample of a 1M-row source never tokenizes the other 970k. Records over the limit are dropped
(``too_many_tokens``) through the sink; records the walk never reaches are ``not_sampled`` (counted,
not dropped: sampling is not a verdict on the record). The chosen records go to Arrow files in the
work folder with their token counts, and so do the ids of the records not sampled, as each source is
sampled (``dropped/`` lists them): the build holds neither.

A token take (``take: {tokens: N}`` or a ``budget`` share, ``mixer.recipe.budget``) walks the same seeded
order and stops at the record that would pass N (``walk_tokens``); a budget share larger than the
source repeats it (``upsample_plan``: whole copies, then its first records once more).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mixer.core.errors import MixerError
from mixer.core.overlap import one_ahead
from mixer.core.records import (
    SELECTED_SCHEMA,
)
from mixer.core.tables import OrderedSpill, OrderedSpillWriter, SpillFiles, SpillWriter
from mixer.kernels.budget import upsample_plan, walk_tokens
from mixer.recipe.budget import BudgetError, FirstTake, TokenTake
from mixer.recipe.load import Source
from mixer.stages.base import StageContext, drop_record
from mixer.stages.write import check_unique_ids
from mixer.tokens.count import TokenCounter, count_record_tokens_async

#: rows converted to Python at a time while walking a sample (bounds memory, not results)
WALK_CHUNK_ROWS = 20_000
#: rows of a chunk turned into record dicts at a time to render the texts to count (bounds memory)
RECORD_SLICE_ROWS = 1_000
#: consecutive not-sampled ids per spill bucket: what writing ``dropped/`` reads into memory at once
UNSAMPLED_BUCKET_ROWS = 1 << 19
#: the columns of a not-sampled record that ``dropped/`` lists
UNSAMPLED_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string())])


def sample_order(rng: random.Random, n: int) -> np.ndarray:
    """Positions ``0..n-1`` in the order ``rng.sample(range(n), n)`` gives, drawing the same numbers.

    Why not ``rng.sample``: it builds two Python lists of ``n`` ints (~36 bytes an entry with the int
    objects), 100+ MB for the 3 M candidates of one source at scale 3.0, while this keeps one array of
    8 bytes an entry. The outputs pin the exact order, so the algorithm is CPython's (3.8+) own for
    ``k == n``, where its pool method always applies: ``j = randbelow(n - i)``, take ``pool[j]`` and move
    the last free entry into its place. Here the taken entry is swapped to the end of the pool instead,
    so the pool ends holding the sample reversed.
    """
    pool = array("q", range(n))
    randbelow = rng._randbelow  # type: ignore[attr-defined]  # what Random.sample itself calls
    for last in range(n - 1, 0, -1):
        j = randbelow(last + 1)
        pool[j], pool[last] = pool[last], pool[j]
    if n:
        randbelow(1)  # sample's last draw (always 0) still advances the generator's state
    return np.frombuffer(pool, dtype=np.int64)[::-1].copy()


def _target(take: Any, available: int) -> int:
    if take == "all":
        return available
    if isinstance(take, FirstTake):
        return min(take.records, available)
    if isinstance(take, float):
        return round(take * available)
    return min(int(take), available)


def _in_file_order(table: SpillFiles, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` by the file they came from (recipe order), row order kept within a file (a stable sort: the
    parts of a file read in parallel are already in row order), with their file indexes."""
    file_index = table.column("file_index").to_numpy()[rows]
    by_file = np.argsort(file_index, kind="stable")
    return rows[by_file], file_index[by_file]


class Selector:
    """Takes ``take`` records per source (or per file) from a seeded permutation.

    Walks the permutation in order and counts tokens in chunks, only as far as needed: a record over
    ``max_tokens`` is dropped (``too_many_tokens``) and the walk goes on, so ``take`` still holds.
    Records the walk never reaches are ``not_sampled``. The result is a uniform random sample of the
    records that pass the length limit, and does not depend on the chunk size. The chosen records go
    to an Arrow file in the work folder, not into memory.
    """

    def __init__(self, ctx: StageContext, counter: TokenCounter) -> None:
        self.ctx = ctx
        self.counter = counter
        self.max_tokens = ctx.recipe.max_tokens
        #: per source, the ids of the records sampling did not choose (for ``dropped/``): one spill in
        #: the work folder per sampled group (source, or file with ``take_per_file``), in sampling order
        self.unsampled: dict[str, list[OrderedSpill]] = {s.name: [] for s in ctx.recipe.sources}

    def select(self, source: Source, table: SpillFiles, rows: Sequence[int] | np.ndarray | None = None, *,
               length_only: bool = False, count_tokens: bool = True) -> SpillFiles:
        """The chosen rows with ``n_tokens`` (0 when ``count_tokens`` is off: sampling only).

        ``length_only``: take every record that fits ``max_tokens`` (the length pass of
        sample_then_filter, after sampling already happened). Row numbers, the order and the counts
        are kept in numpy/Arrow arrays, never one Python int per candidate: a source has millions.
        """
        stats = self.ctx.stats[source.name]
        rng = random.Random(self.ctx.recipe.source_seed(source.name))
        alive = np.arange(table.num_rows, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        groups: list[np.ndarray] = [alive]
        labels = [f"source {source.name!r}"]
        if source.take_per_file:
            groups, labels = self._file_groups(source.name, table, alive)
        del rows
        known = table.column("n_tokens").combine_chunks() if count_tokens else None
        chosen: list[np.ndarray] = []
        tokens: list[np.ndarray] = []
        if isinstance(source.take, TokenTake) and not length_only and known is not None:
            for group, where in zip(groups, labels, strict=True):
                if source.take_per_file and not len(group):  # a file with no record left adds no tokens
                    self.ctx.warn(f"{where}: a file has no record left after filtering and dedup; it adds no tokens")
                    continue
                order = group[sample_order(rng, len(group))]
                got_rows, got_tokens, walked = self._take_tokens(source, table, known, order, source.take)
                chosen.append(got_rows)
                tokens.append(got_tokens)
                self._not_sampled(source.name, table, order[walked:])
            return self._write(source.name, table, np.concatenate([np.empty(0, np.int64), *chosen]),
                               np.concatenate([np.empty(0, np.int32), *tokens]))
        for group, where in zip(groups, labels, strict=True):
            want = len(group) if length_only else _target(source.take, len(group))
            if isinstance(source.take, float) and not length_only and want == 0 and len(group):
                self.ctx.warn(f"{where}: take {source.take} of {len(group):,} records rounds "
                              "to 0 records; none are taken (give a larger fraction or a count)")
            asked = source.take.records if isinstance(source.take, FirstTake) else source.take
            if isinstance(asked, int) and not length_only and asked > len(group):
                stats.shortfall += asked - len(group)
                self.ctx.warn(f"{where}: take {source.take} but only {len(group)} "
                                "records are left after filtering and dedup; taking all of them")
            if isinstance(source.take, FirstTake) and not length_only:
                order, _ = _in_file_order(table, group)  # a prefix: files as listed, rows as published
            elif source.take == "all" or length_only:
                order = group
            else:
                order = group[sample_order(rng, len(group))]
            if known is not None:
                got_rows, got_tokens, walked = self._walk(source.name, table, known, order, want)
            else:
                got_rows, got_tokens, walked = order[:want], np.zeros(min(want, len(order)), np.int32), want
            chosen.append(got_rows)
            tokens.append(got_tokens)
            self._not_sampled(source.name, table, order[walked:])
            if len(got_rows) < want and self.max_tokens is not None and source.take != "all":
                stats.shortfall += want - len(got_rows)
                self.ctx.warn(f"{where}: take {source.take} but only {len(got_rows)} of the {len(group):,} records "
                              f"left after filtering and dedup fit max_tokens {self.max_tokens}; taking those")
        return self._write(source.name, table, np.concatenate([np.empty(0, np.int64), *chosen]),
                           np.concatenate([np.empty(0, np.int32), *tokens]))

    def _file_groups(self, source: str, table: SpillFiles, alive: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
        """``take_per_file``: the live rows per file of the source, in file order, and each group's label
        for warnings (the source and the file). Every file read has a group, an empty one when no row of
        it is left: a file that filtering and dedup emptied (or that held nothing) is still short of its
        ``take``, and the shortfall is counted and said like any other."""
        files = self.ctx.stats[source].files
        ordered, file_index = _in_file_order(table, alive)
        n_files = max(len(files), int(file_index.max()) + 1 if len(file_index) else 0)
        # file_index is sorted: each file's rows are one run, cut where the next file's start (empty runs included)
        bounds = np.searchsorted(file_index, np.arange(n_files + 1))
        groups = [ordered[bounds[i]:bounds[i + 1]] for i in range(n_files)]
        names = [f.shown(self.ctx.recipe.raw_dir) for f in files] + [f"#{i + 1}" for i in range(len(files), n_files)]
        return groups, [f"source {source!r}, file {name}" for name in names]

    def _take_tokens(self, source: Source, table: SpillFiles, known: pa.Array, order: np.ndarray, take: TokenTake
                     ) -> tuple[np.ndarray, np.ndarray, int]:
        """A token take of one group: rows, their counts, and how far the walk went (``walk_tokens``);
        with ``take.upsample``, a group with fewer tokens than planned is taken whole ``k`` times and its
        first records once more as the seeded remainder (``upsample_plan``). The outcome goes to
        ``stats.token_take`` for the card; a budget that takes no record is an error."""
        stats = self.ctx.stats[source.name]
        rows, counts, walked, stop = walk_tokens(order, take.tokens, self.max_tokens,
                                                 lambda chunk: self._count_chunk(table, known, chunk)(),
                                                 self._drop_too_long(source.name, table), WALK_CHUNK_ROWS)
        got = int(counts.sum())
        where = f"budget.shares.{source.name}" if take.share is not None else f"source {source.name!r}: take.tokens"
        if not len(rows):
            limits = ", dedup and max_tokens" if self.max_tokens else " and dedup"
            why = (f"the first record in its seeded order has {stop:,} tokens" if stop is not None else
                   f"no record is left after filtering{limits}")
            raise BudgetError(f"{where}: a budget of {take.tokens:,} tokens takes no record: {why}")
        repeats, extra = 1, 0
        if take.upsample and stop is None and got < take.tokens:
            repeats, extra = upsample_plan(counts, take.tokens)
            stats.repeat, stats.extra_copies = repeats, extra
        elif stop is None and got < take.tokens:
            self.ctx.warn(f"source {source.name!r}: take {take.tokens:,} tokens but only {got:,} tokens are left "
                          "after filtering and dedup; taking all of them")
        achieved = got * repeats + int(counts[:extra].sum())
        before = stats.token_take or {"planned": 0, "achieved": 0}
        stats.token_take = {"planned": before["planned"] + take.tokens, "achieved": before["achieved"] + achieved,
                            "repeats": repeats, "remainder_records": extra,
                            **({"share": take.share} if take.share is not None else {})}
        return rows, counts.astype(np.int32), walked

    def _drop_too_long(self, source: str, table: SpillFiles) -> Callable[[np.ndarray, np.ndarray], None]:
        """Drops, through the sink, the rows a walk reached that are over ``max_tokens``."""
        def drop(rows: np.ndarray, counts: np.ndarray) -> None:
            records = table.take(rows, ["dataset", "id", "messages"]).to_pylist()
            for row, n in zip(records, counts.tolist(), strict=True):
                self.ctx.sink.drop(source, drop_record(row, "too_many_tokens", "select",
                                                       f"{n} tokens > max_tokens {self.max_tokens}"))
        return drop

    def _write(self, source: str, table: SpillFiles, chosen: np.ndarray, tokens: np.ndarray) -> SpillFiles:
        index = list(self.ctx.stats).index(source)
        writer = SpillWriter(self.ctx.work_dir / f"selected-{index:03d}-{source}.arrow", SELECTED_SCHEMA)
        carried = [name for name in SELECTED_SCHEMA.names if name != "n_tokens"]  # the candidate's own columns
        for start in range(0, len(chosen), WALK_CHUNK_ROWS):
            part = table.take(chosen[start:start + WALK_CHUNK_ROWS], carried)
            writer.write(pa.table({
                **{name: part.column(name) for name in part.column_names},
                "n_tokens": pa.array(tokens[start:start + WALK_CHUNK_ROWS], pa.int32())}, schema=SELECTED_SCHEMA))
        return writer.close()

    def _not_sampled(self, source: str, table: SpillFiles, rows: np.ndarray) -> None:
        """Counted apart from drops (sampling is not a verdict on the record) but kept as ids, in
        ``rows``' order (the sampling order), in the work folder.

        Why spilled now rather than held for ``dropped/``: a 30k sample of a 1M-row source leaves
        ~970k of these (3.9 M at scale 3.0), and gathering them in sampling order at once held two
        or three copies. Each candidate batch is read once and its not-sampled ids go straight to
        their spill buckets."""
        self.ctx.stats[source].not_sampled += len(rows)
        if not len(rows) or not self.ctx.recipe.output_options.write_unsampled:
            return
        index = list(self.ctx.stats).index(source)
        group = len(self.unsampled[source])
        spill = OrderedSpillWriter(self.ctx.work_dir / f"unsampled-{index:03d}-{source}-{group:03d}",
                                   UNSAMPLED_SCHEMA, UNSAMPLED_BUCKET_ROWS)
        for positions, ids in table.gather_by_batch(rows, UNSAMPLED_SCHEMA.names):
            spill.write(ids, positions)
        self.unsampled[source].append(spill.close())

    def _walk(self, source: str, table: SpillFiles, known: pa.Array, order: np.ndarray, want: int
              ) -> tuple[np.ndarray, np.ndarray, int]:
        if self.max_tokens is None:
            return self._take_first(table, known, order[:want])
        got: list[np.ndarray] = []  # per chunk, as arrays: a take-all source walks millions of rows
        got_tokens: list[np.ndarray] = []
        taken = pos = 0
        while taken < want and pos < len(order):
            need = want - taken
            chunk = order[pos:pos + min(WALK_CHUNK_ROWS, max(256, int(need * 1.05) + 16))]
            counts = np.asarray(self._count_chunk(table, known, chunk)(), dtype=np.int64)
            fits = counts <= self.max_tokens
            reached = np.cumsum(fits)
            # the walk stops at the record that completes ``want``, or walks the whole chunk
            end = int(np.searchsorted(reached, need)) + 1 if reached[-1] >= need else len(chunk)
            chunk, counts, fits = chunk[:end], counts[:end], fits[:end]
            got.append(chunk[fits])
            got_tokens.append(counts[fits].astype(np.int32))
            taken += int(reached[end - 1])
            pos += end
            too_long = chunk[~fits]
            if len(too_long):
                rows = table.take(too_long, ["dataset", "id", "messages"]).to_pylist()
                for row, n in zip(rows, counts[~fits].tolist(), strict=True):
                    self.ctx.sink.drop(source, drop_record(row, "too_many_tokens", "select",
                                                           f"{n} tokens > max_tokens {self.max_tokens}"))
        return (np.concatenate([np.empty(0, np.int64), *got]), np.concatenate([np.empty(0, np.int32), *got_tokens]),
                pos)

    def _take_first(self, table: SpillFiles, known: pa.Array, rows: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The walk when nothing can be dropped for length: exactly ``rows`` are taken, so the next
        chunk's records are gathered while the worker processes count the previous one."""
        chunks = (self._count_chunk(table, known, rows[i:i + WALK_CHUNK_ROWS])
                  for i in range(0, len(rows), WALK_CHUNK_ROWS))
        tokens = [np.asarray(counts, dtype=np.int32) for counts in one_ahead(chunks)]
        return rows, np.concatenate([np.empty(0, np.int32), *tokens]), len(rows)

    def _count_chunk(self, table: SpillFiles, known: pa.Array, chunk: np.ndarray) -> Callable[[], list[int]]:
        """Start counting the tokens of ``chunk``'s rows; counts made while reading (``take: all``
        sources) are reused. The returned function waits for the counts, in ``chunk`` order."""
        counts: list[int | None] = known.take(pa.array(chunk, pa.int64())).to_pylist()
        missing = [i for i, n in enumerate(counts) if n is None]
        if not missing:
            return lambda: counts  # type: ignore[return-value]
        part = table.take(chunk[missing], ["messages", "rejected"])
        records = (r for batch in part.to_batches(max_chunksize=RECORD_SLICE_ROWS) for r in batch.to_pylist())
        pending = count_record_tokens_async(self.counter, records)
        del part, records

        def result() -> list[int]:
            for i, n in zip(missing, pending(), strict=True):
                counts[i] = n
            return counts  # type: ignore[return-value]

        return result


def select_all(ctx: StageContext, selector: Selector, *, length_only: bool = False) -> dict[str, SpillFiles]:
    """Every source's candidates through ``selector`` in recipe order (consuming them): the chosen
    records per source. ``length_only``: the length pass of ``sample_then_filter``."""
    selected: dict[str, SpillFiles] = {}
    sources = {s.name: s for s in ctx.recipe.sources}
    for s in ctx.recipe.sources:
        if isinstance(s.take, TokenTake) and s.take.share is not None and s.name not in ctx.candidates:
            raise BudgetError(f"budget.shares.{s.name}: source {s.name!r} is left out of the build "
                              f"({ctx.stats[s.name].excluded}), so its {s.take.tokens:,} tokens cannot be met")
    ctx.reporter.start("sources", total=len(sources))
    for _, name, table, alive in ctx.candidates.drain(list(sources)):
        selected[name] = selector.select(sources[name], table, alive, length_only=length_only)
        ctx.stats[name].selected = selected[name].num_rows
        ctx.reporter.advance()
    ctx.reporter.finish()
    return selected


def shuffled_output(ctx: StageContext, selected: dict[str, SpillFiles]) -> tuple[SpillFiles, list[int]]:
    """All selected records (their files, in recipe order) and the output order: each record
    ``repeat`` times (and the first ``extra_copies`` once more: a budget's remainder), in one seeded
    global shuffle."""
    paths, index = [], []
    offset = 0
    for s in ctx.recipe.sources:
        table = selected.get(s.name)
        if table is None:
            continue
        paths.extend(table.paths)
        stats = ctx.stats[s.name]  # a budget may repeat a source (``repeat``, then ``extra_copies``)
        index.extend(list(range(offset, offset + table.num_rows)) * stats.repeat)
        index.extend(range(offset, offset + stats.extra_copies))
        offset += table.num_rows
    if not paths:
        raise MixerError("the build selected no records: every source is empty, filtered out or excluded")
    random.Random(ctx.recipe.seed).shuffle(index)
    return SpillFiles(paths, SELECTED_SCHEMA), index


class Sample:
    """Stage **select**, its sampling half alone (``order: sample_then_filter``): each source's ``take``
    from its candidates, no token counted; the sample becomes the source's candidates, which the
    record-level stages then see (``Gate``)."""

    name = "select"
    label = "sample"

    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def run(self, ctx: StageContext) -> None:
        sources = {s.name: s for s in ctx.recipe.sources}
        for _, name, table, alive in ctx.candidates.drain(list(sources)):
            ctx.candidates.add(name, self.selector.select(sources[name], table, alive, count_tokens=False))


class Select:
    """Stage **select**: the seeded sample per source with ``max_tokens`` (``length_only``: the length
    pass of ``sample_then_filter``, whose sampling came first), into ``ctx.selected``."""

    name = "select"

    def __init__(self, selector: Selector, *, length_only: bool = False) -> None:
        self.selector = selector
        self.length_only = length_only
        self.label = "tokens" if length_only else "select+tokens"

    def run(self, ctx: StageContext) -> None:
        ctx.selected = select_all(ctx, self.selector, length_only=self.length_only)
        ctx.unsampled = self.selector.unsampled


class Shuffle:
    """Stage **select**, its last step: every selected record ``repeat`` times in one seeded shuffle."""

    name = "select"
    label = "shuffle"

    def run(self, ctx: StageContext) -> None:
        check_unique_ids(ctx.recipe, ctx.selected)  # before any output file is written
        ctx.output = shuffled_output(ctx, ctx.selected)
