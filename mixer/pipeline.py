"""``mixer build``: the stages, top to bottom.

read -> normalise -> filter -> exact dedup -> (near dedup) -> (decontaminate) -> select -> shuffle
-> write -> card.

Each source is read, normalised and filtered in batches (in a worker process when the input is
large) and streamed into an Arrow file (``CandidateStore``) that later stages read back a batch at a
time (``SpillFiles``), never held as Python dicts.
Exact dedup then runs over the content hashes in recipe order, the cross-source stages
(``mixer.cross_source``) mark rows out, and selection walks a seeded permutation of each source,
counting tokens only for records it may take, so a 30k sample of a 1M-row source never tokenizes the
other 970k; the chosen records go to Arrow files too, and the writer shuffles them externally, so
memory is bounded by batch sizes rather than by the input. Every record that leaves the pipeline is
counted in ``SourceStats`` with its reason and written to ``dropped/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from mixer.chat import record_texts
from mixer.dedup.exact import ExactDeduplicator, content_hash
from mixer.engine import Executor, LocalEngine
from mixer.errors import InputError, MixerError, RecordError
from mixer.filters import LLMMentionFilter, TurnCountFilter
from mixer.io import FilePart, ParseFailure, splittable
from mixer.normalise import normalise_record
from mixer.overlap import one_ahead
from mixer.read_cache import ReadCache, read_cache_root, read_key
from mixer.recipe import Recipe, Source, license_key, resolve_files, source_license
from mixer.records import MESSAGE_TYPE, Dropped, Record, record_key_messages
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter
from mixer.stats import FileInfo, SourceRead, SourceStats
from mixer.tables import SpillFiles, SpillWriter
from mixer.tokens import TokenCounter

SELECTED_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                             ("messages", pa.list_(MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE)),
                             ("n_tokens", pa.int32())])
RAW_TEXT_LIMIT = 20_000
#: records gated (normalised and filtered) together; the mention filter screens a batch at once
GATE_BATCH = 2048
#: rows converted to Python at a time while walking a sample (bounds memory, not results)
WALK_CHUNK_ROWS = 20_000


class Reporter:
    """Progress hooks; the CLI plugs in progress bars, library callers get silence."""

    def start(self, description: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass
class StageTiming:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    #: this process's resident memory when the stage ended (MiB), to see which stage holds memory
    rss_mb_after: float = 0.0


@dataclass
class BuildState:
    """Everything the stages share: the recipe, the counters and the drops, per source."""

    recipe: Recipe
    reporter: Reporter
    #: where the stages' units of work run (``mixer.engine``); ``timed`` releases its workers after
    #: each stage
    executor: Executor = field(default_factory=LocalEngine)
    #: where the stages keep their intermediate Arrow files (candidates, selected records)
    work_dir: Path = field(default_factory=Path)
    stats: dict[str, SourceStats] = field(default_factory=dict)
    drops: dict[str, list[Dropped]] = field(default_factory=dict)
    #: per source, the candidate records (Arrow files read on demand) and which of its rows are still
    #: in; stages mark rows out rather than copying the records
    candidates: dict[str, SpillFiles] = field(default_factory=dict)
    alive: dict[str, list[int]] = field(default_factory=dict)
    #: per source, (dataset, id) tables of the records sampling did not choose
    unsampled: dict[str, list[pa.Table]] = field(default_factory=dict)
    #: per source, the chosen records in selection order, with ``n_tokens`` (Arrow files)
    selected: dict[str, SpillFiles] = field(default_factory=dict)
    timings: dict[str, StageTiming] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra_card: dict[str, Any] = field(default_factory=dict)
    #: which sources the read cache served ("hits") and which were read ("misses"); not in the card
    #: (the card is the same either way), reported in timings.json
    read_cache: dict[str, list[str]] = field(default_factory=dict)
    #: per source, its read-cache entry folder (stages may keep per-candidate data beside it)
    read_entries: dict[str, Path] = field(default_factory=dict)

    _tmp: Any = None

    def close(self) -> None:
        """Delete the work folder (when the build made its own)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def drop(self, source: str, item: Dropped) -> None:
        item.source = source
        self.stats[source].drop(item.reason)
        self.drops[source].append(item)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.warn(message)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.executor.release()
            t = self.timings.setdefault(stage, StageTiming())
            t.wall_s += time.perf_counter() - t0
            t.cpu_s += time.process_time() - c0
            t.rss_mb_after = current_rss_mb()


CANDIDATE_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                              ("messages", pa.list_(MESSAGE_TYPE)), ("file_index", pa.int32()),
                              ("rejected", pa.list_(MESSAGE_TYPE)), ("hash", pa.binary(16)),
                              ("n_tokens", pa.int32())])


def count_tokens(counter: TokenCounter, records: list[dict[str, Any]]) -> list[int]:
    """Tokens per record in the Tulu format; a preference pair counts as its longer side."""
    return count_tokens_async(counter, records)()


def count_tokens_async(counter: TokenCounter, records: list[dict[str, Any]]) -> Callable[[], list[int]]:
    """``count_tokens``, started: the returned function waits for the counts."""
    texts: list[str] = []
    owners: list[int] = []
    for i, r in enumerate(records):
        for t in record_texts(r):
            texts.append(t)
            owners.append(i)
    pending = counter.count_texts_async(texts)

    def result() -> list[int]:
        counts = [0] * len(records)
        for i, n in zip(owners, pending(), strict=True):
            counts[i] = max(counts[i], n)
        return counts

    return result


class CandidateStore:
    """Streams records to an Arrow IPC file in batches, so a large source never sits in memory as
    Python dicts (or at all: later stages read it back a batch at a time, see ``SpillFiles``).

    With a token counter, tokens are counted per batch while reading (used for sources whose every
    record is a candidate for the output, ``take: all``).
    """

    def __init__(self, path: Path, counter: TokenCounter | None = None, batch_rows: int = 10_000) -> None:
        self.path = path
        self._rows: list[dict[str, Any]] = []
        self._writer = pa.ipc.new_file(str(path), CANDIDATE_SCHEMA)
        self._counter = counter
        self._batch_rows = batch_rows
        self.rows = 0

    def add(self, record: Record, file_index: int) -> None:
        self._rows.append({"dataset": record["dataset"], "id": record["id"], "messages": record["messages"],
                           "rejected": record.get("rejected"), "file_index": file_index,
                           "hash": content_hash(record_key_messages(record)), "n_tokens": None})
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        if self._counter is not None:
            counts = count_tokens(self._counter, self._rows)
            for row, n in zip(self._rows, counts, strict=True):
                row["n_tokens"] = n
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=CANDIDATE_SCHEMA))
        self.rows += len(self._rows)
        self._rows = []

    def close(self) -> Path:
        self._flush()
        self._writer.close()
        return self.path


# -- stage: read -> normalise -> filter, per source (in a worker process or in-process) ------

class RecordGate:
    """Normalise, then the filters, for one record: the kept record or the drop that explains it.

    Exact dedup is not here: it spans sources, so it runs in the main process over the content
    hashes of the candidates, in recipe order.
    """

    def __init__(self, recipe: Recipe) -> None:
        self.rules = recipe.normalise
        lm = recipe.filters.llm_mentions
        self.mentions = LLMMentionFilter(lm.keywords) if lm.enabled else None
        self.mention_exempt = set(lm.exempt)
        f = recipe.filters
        self.turns = TurnCountFilter(f.min_turns, f.max_turns) \
            if f.min_turns is not None or f.max_turns is not None else None

    def __call__(self, source: str, record: Record, stats: SourceStats) -> Record | Dropped:
        return self.gate_batch(source, [record], stats)[0]

    def gate_batch(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]:
        """The same verdicts as one record at a time, with the mention filter screening the batch."""
        out: list[Record | Dropped] = []
        for record in records:
            record, problem = normalise_record(record, self.rules, stats.normalised)
            out.append(_dropped(record, problem, "normalise") if problem else record)
        for flt in (self.mentions if source not in self.mention_exempt else None, self.turns):
            if flt is None:
                continue
            alive = [i for i, r in enumerate(out) if not isinstance(r, Dropped)]
            batch = [out[i] for i in alive]
            verdicts = flt.check_batch(batch) if isinstance(flt, LLMMentionFilter) else [flt(r) for r in batch]
            for i, verdict in zip(alive, verdicts, strict=True):
                if verdict:
                    out[i] = _dropped(out[i], verdict[0], "filter", verdict[1])  # type: ignore[arg-type]
        return out


def _dropped(record: Record, reason: str, stage: str, detail: str = "") -> Dropped:
    return Dropped(reason=reason, dataset=record["dataset"], id=record["id"], detail=detail,
                   messages=record["messages"], stage=stage)


def _raw_text(value: Any) -> str:
    if isinstance(value, ParseFailure):
        return value.text[:RAW_TEXT_LIMIT]
    try:
        return orjson.dumps(value, default=str).decode()[:RAW_TEXT_LIMIT]
    except TypeError:
        return repr(value)[:RAW_TEXT_LIMIT]


def read_source(recipe: Recipe, source: Source, work_dir: Path, *, gate: bool, count_tokens: bool,
                reporter: Reporter | None = None, files: list[FileInfo] | None = None,
                only: ReadPart | None = None) -> SourceRead:
    """Stream one source's files through its adapter (and the gate, unless sampling comes first) into
    an Arrow file in ``work_dir``.

    Pure with respect to the build: everything it decides is in the returned ``SourceRead``, so it
    can run in a worker process. ``files``: the inputs' digests when the caller already has them.
    ``only``: read just this part of one file (a task of a source split for parallel reading; the
    parts' results are put together by ``merge_reads``).
    """
    reporter = reporter or Reporter()
    stats = SourceStats(name=source.name, adapter=source.adapter, license=source_license(source),
                        take=source.take, repeat=source.repeat)
    # drops in the order their records entered, whatever the gate's batching: (entry number, drop)
    drops: list[tuple[int, Dropped]] = []

    def drop(item: Dropped, entry: int) -> None:
        item.source = source.name
        stats.drop(item.reason)
        drops.append((entry, item))

    context = SourceContext(source.name, recipe.source_seed(source.name), recipe.tokenizer)
    adapter = get_adapter(source.adapter)(source.options, context)
    record_gate = RecordGate(recipe) if gate else None
    counter = TokenCounter(recipe.tokenizer) if count_tokens else None  # in this process
    name = "candidates.arrow" if only is None else f"candidates-{only.file_index:03d}-{only.part.index:03d}.arrow"
    store = CandidateStore(work_dir / name, counter)
    skip = source.on_error == "skip"
    where = f"source {source.name!r}, adapter {source.adapter!r}"
    pending: list[Record] = []
    pending_entry: list[int] = []

    def flush(file_index: int) -> None:
        verdicts = record_gate.gate_batch(source.name, pending, stats) if record_gate is not None else pending
        for kept, entry in zip(verdicts, pending_entry, strict=True):
            if isinstance(kept, Dropped):
                drop(kept, entry)
            else:
                store.add(kept, file_index)
        pending.clear()
        pending_entry.clear()

    for file_index, path in enumerate(resolve_files(recipe, source)):
        if only is not None and file_index != only.file_index:
            continue
        stats.files.append(files[file_index] if files is not None else file_info(path))
        reporter.start(f"read {source.name}: {path.name}")
        for item in adapter.read_file(path, **({"part": only.part} if only is not None else {})):
            stats.raw_records += 1
            reporter.advance()
            if isinstance(item.value, ParseFailure):
                if not skip:
                    raise InputError(item.location, f"{item.value.problem} ({where}; "
                                     "set on_error: skip to drop such records)")
                stats.records_in += 1
                drop(Dropped(reason="invalid_record", detail=f"{item.location}: {item.value.problem}",
                             raw=_raw_text(item.value)), stats.records_in)
                continue
            try:
                outputs = list(adapter.convert(item.value, item.location))
            except RecordError as e:
                if not skip:
                    raise InputError(item.location, f"{e} ({where}; set on_error: skip to drop such records)") \
                        from None
                stats.records_in += 1
                drop(Dropped(reason="invalid_record", detail=f"{item.location}: {e}", raw=_raw_text(item.value)),
                     stats.records_in)
                continue
            for out in outputs:
                stats.records_in += 1
                if isinstance(out, Dropped):
                    if out.raw is None and out.messages is None:
                        out.raw = _raw_text(item.value)
                    drop(out, stats.records_in)
                    continue
                pending.append(out)
                pending_entry.append(stats.records_in)
                if len(pending) >= GATE_BATCH:
                    flush(file_index)
        flush(file_index)
        reporter.finish()
    candidates = store.close()  # counts the last batch
    if counter is not None:
        counter.close()
    drops.sort(key=lambda d: d[0])  # stable; records_in only grows, so parts concatenate in order
    return SourceRead(stats=stats, drops=[d for _, d in drops], candidates=[candidates], used=set(context.used))


@dataclass(frozen=True)
class ReadPart:
    """One read task of a source split into several: part ``part`` of file ``file_index``."""

    file_index: int
    part: FilePart


def merge_reads(parts: list[SourceRead], files: list[FileInfo]) -> SourceRead:
    """The parts of one source's read (in file, then part order) as if read in one go."""
    merged = sum(parts[1:], parts[0])
    merged.stats.files = list(files)
    return merged


#: A file larger than this is read in parts by several processes (when its format allows it).
SPLIT_MIN_BYTES = 48 * 1024 * 1024
MAX_PARTS = 64


def plan_reads(adapter: type, paths: list[Path], infos: list[FileInfo], workers: int) -> list[ReadPart | None]:
    """The read tasks of one source: ``[None]`` (the whole source in one task) unless it has large
    JSONL or Parquet files and an adapter that reads them with the standard readers, which are then
    cut into parts of about ``SPLIT_MIN_BYTES`` (at least ``workers`` parts per large file)."""
    if workers < 2 or adapter.read_file is not Adapter.read_file:
        return [None]
    big = [i.bytes >= SPLIT_MIN_BYTES and splittable(p) for p, i in zip(paths, infos, strict=True)]
    if not any(big):
        return [None]
    tasks: list[ReadPart | None] = []
    for index, (info, split) in enumerate(zip(infos, big, strict=True)):
        count = min(MAX_PARTS, max(workers, -(-info.bytes // SPLIT_MIN_BYTES))) if split else 1
        tasks.extend(ReadPart(index, FilePart(k, count)) for k in range(count))
    return tasks


def _read_task(args: tuple[Recipe, str, Path, bool, bool, list[FileInfo], ReadPart | None]) -> SourceRead:
    recipe, name, work_dir, gate, count_tokens, files, only = args
    source = next(s for s in recipe.sources if s.name == name)
    return read_source(recipe, source, work_dir, gate=gate, count_tokens=count_tokens, files=files, only=only)


def file_info(path: Path) -> FileInfo:
    """Size and sha256 of one input file (the card's provenance, and the read cache's key)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            size += len(chunk)
    return FileInfo(path=str(path), bytes=size, sha256=h.hexdigest())


#: Below this much raw input, worker processes cost more than they save.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def read_sources(state: BuildState, work_dir: Path, *, gate: bool) -> None:
    """Read every allowed source into ``state.candidates``: from the read cache when an identical
    read is stored there (``mixer.read_cache``), else in parallel worker processes (one source per
    task, largest first) when the input is large, else in this process. All paths give identical
    results; the merge below is in recipe order."""
    recipe = state.recipe
    todo = []
    for s in recipe.sources:
        why = allowed(recipe, s)
        if why:
            state.stats[s.name].excluded = why
            state.warn(f"source {s.name!r} left out: {why}")
        else:
            todo.append(s)
    infos = {s.name: list(state.executor.map(file_info, resolve_files(recipe, s), threads=True))  # hashlib
             for s in todo}                                                                       # drops the GIL
    # sources whose every record may reach the output get their tokens counted while reading
    eager = {s.name: gate and s.take == "all" for s in todo}
    root = read_cache_root()
    cache = ReadCache(root) if root is not None else None
    results: dict[str, SourceRead] = {}
    folders: dict[str, Path] = {}
    keys: dict[str, str] = {}
    for i, s in enumerate(todo):
        if cache is not None:
            keys[s.name] = read_key(recipe, s, infos[s.name], gate=gate, count_tokens=eager[s.name])
            hit = cache.get(keys[s.name], s.name, seed=recipe.source_seed(s.name), tokenizer=recipe.tokenizer)
            if hit is not None:
                results[s.name] = hit
                continue
            folders[s.name] = cache.staging(keys[s.name])
        else:
            folders[s.name] = work_dir / f"read-{i:03d}-{s.name}"
            folders[s.name].mkdir()
    missing = [s for s in todo if s.name not in results]
    sizes = {s.name: sum(f.bytes for f in infos[s.name]) for s in missing}
    workers = min(state.executor.parallelism, max(1, len(missing)))
    try:
        if workers > 1 and sum(sizes.values()) >= PARALLEL_MIN_BYTES:
            # tasks (whole sources, or parts of large files) largest first, so the processes end together
            tasks = []
            for s in missing:
                plan = plan_reads(get_adapter(s.adapter), resolve_files(recipe, s), infos[s.name], workers)
                for only in plan:
                    size = sizes[s.name] if only is None else \
                        infos[s.name][only.file_index].bytes // only.part.count
                    tasks.append((size, s, only))
            tasks.sort(key=lambda t: -t[0])
            state.reporter.start(f"read {len(missing)} sources in {len(tasks)} tasks", total=len(tasks))
            parts: dict[str, list[tuple[tuple[int, int], SourceRead]]] = {s.name: [] for s in missing}
            units = [(recipe, s.name, folders[s.name], gate, eager[s.name], infos[s.name], only)
                     for _, s, only in tasks]
            for (_, s, only), result in zip(tasks, state.executor.map(_read_task, units), strict=True):
                rank = (only.file_index, only.part.index) if only is not None else (0, 0)
                parts[s.name].append((rank, result))
                state.reporter.advance()
            state.reporter.finish()
            for s in missing:
                ordered = [r for _, r in sorted(parts[s.name], key=lambda x: x[0])]
                results[s.name] = ordered[0] if len(ordered) == 1 else merge_reads(ordered, infos[s.name])
        else:
            for s in missing:
                results[s.name] = read_source(recipe, s, folders[s.name], gate=gate, count_tokens=eager[s.name],
                                              reporter=state.reporter, files=infos[s.name])
    except BaseException:
        if cache is not None:
            for folder in folders.values():
                cache.discard(folder)
        raise
    if cache is not None:
        for s in missing:
            results[s.name] = cache.put(keys[s.name], folders[s.name], results[s.name],
                                        seed=recipe.source_seed(s.name), tokenizer=recipe.tokenizer,
                                        used=results[s.name].used)
        state.read_cache = {"hits": list(cache.hits), "misses": [s.name for s in missing]}
        for s in todo:
            entry = results[s.name].candidates[0].parent
            if entry.parent == cache.root and not entry.name.startswith("."):
                state.read_entries[s.name] = entry
    for s in todo:
        r = results[s.name]
        # what the recipe says about the source beyond reading it may differ from the cached read's
        state.stats[s.name] = dataclasses.replace(r.stats, take=s.take, repeat=s.repeat,
                                                  license=source_license(s))
        state.drops[s.name].extend(r.drops)
        state.candidates[s.name] = SpillFiles(r.candidates, CANDIDATE_SCHEMA)
        state.alive[s.name] = list(range(state.candidates[s.name].num_rows))


# -- stage: exact dedup across sources -------------------------------------------------------

def exact_dedup(state: BuildState) -> None:
    """Keep the first copy of each content hash, in recipe order then file order.

    Vectorised over the 16-byte hashes (a sort, not a dict of 1.5M Python bytes objects): only the
    hash column is read, and only the duplicates' records are fetched, to be written to ``dropped/``.
    """
    names = [s.name for s in state.recipe.sources if s.name in state.candidates]
    keys, rows_of, source_of = [], [], []
    for k, name in enumerate(names):
        alive = np.asarray(state.alive[name], dtype=np.int64)
        column = state.candidates[name].column("hash").combine_chunks()
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
            ids = state.candidates[name].take(row[mine], ["id"]).column("id").to_pylist()
            kept_ids.update(zip(mine.tolist(), ids, strict=True))
    for k, name in enumerate(names):
        mine = np.flatnonzero(dup & (src == k))
        if not len(mine):
            continue
        state.alive[name] = row[(src == k) & ~dup].tolist()
        dups = state.candidates[name].take(row[mine], ["dataset", "id", "messages", "rejected"]).to_pylist()
        for position, record in zip(mine.tolist(), dups, strict=True):
            kept = int(keeper[position])
            kept_source, kept_id = names[int(src[kept])], kept_ids[kept]
            d = _dropped(record, ExactDeduplicator.reason, "dedup", f"same content as {kept_source}/{kept_id}")
            d.kept_id = kept_id
            d.extra = {"kept_source": kept_source}
            state.drop(name, d)


# -- stage: select (sample + token length) --------------------------------------------------

def _target(take: Any, available: int) -> int:
    if take == "all":
        return available
    if isinstance(take, float):
        return round(take * available)
    return min(int(take), available)


class Selector:
    """Takes ``take`` records per source (or per file) from a seeded permutation.

    Walks the permutation in order and counts tokens in chunks, only as far as needed: a record over
    ``max_tokens`` is dropped (``too_many_tokens``) and the walk goes on, so ``take`` still holds.
    Records the walk never reaches are ``not_sampled``. The result is a uniform random sample of the
    records that pass the length limit, and does not depend on the chunk size. The chosen records go
    to an Arrow file in the work folder, not into memory.
    """

    def __init__(self, state: BuildState, counter: TokenCounter) -> None:
        self.state = state
        self.counter = counter
        self.max_tokens = state.recipe.max_tokens

    def select(self, source: Source, table: SpillFiles, rows: list[int] | None = None, *,
               length_only: bool = False, count_tokens: bool = True) -> SpillFiles:
        """The chosen rows with ``n_tokens`` (0 when ``count_tokens`` is off: sampling only).

        ``length_only``: take every record that fits ``max_tokens`` (the length pass of
        sample_then_filter, after sampling already happened).
        """
        stats = self.state.stats[source.name]
        rng = random.Random(self.state.recipe.source_seed(source.name))
        rows = list(range(table.num_rows)) if rows is None else rows
        groups: dict[int, list[int]] = {}
        if source.take_per_file:
            file_index = table.column("file_index").to_pylist()
            for row in rows:
                groups.setdefault(file_index[row], []).append(row)
        else:
            groups[0] = rows
        known = table.column("n_tokens").to_pylist() if count_tokens else []
        chosen: list[int] = []
        tokens: list[int] = []
        for _, group in sorted(groups.items()):
            want = len(group) if length_only else _target(source.take, len(group))
            if isinstance(source.take, int) and not length_only and source.take > len(group):
                stats.shortfall += source.take - len(group)
                self.state.warn(f"source {source.name!r}: take {source.take} but only {len(group)} "
                                "records are left after filtering and dedup; taking all of them")
            order = group if (source.take == "all" or length_only) else rng.sample(group, len(group))
            if count_tokens:
                got_rows, got_tokens, walked = self._walk(source.name, table, known, order, want)
            else:
                got_rows, got_tokens, walked = order[:want], [0] * min(want, len(order)), want
            chosen.extend(got_rows)
            tokens.extend(got_tokens)
            self._not_sampled(source.name, table, order[walked:])
            if len(got_rows) < want and self.max_tokens is not None and source.take != "all":
                stats.shortfall += want - len(got_rows)
        return self._write(source.name, table, chosen, tokens)

    def _write(self, source: str, table: SpillFiles, chosen: list[int], tokens: list[int]) -> SpillFiles:
        index = list(self.state.stats).index(source)
        writer = SpillWriter(self.state.work_dir / f"selected-{index:03d}-{source}.arrow", SELECTED_SCHEMA)
        for start in range(0, len(chosen), WALK_CHUNK_ROWS):
            part = table.take(chosen[start:start + WALK_CHUNK_ROWS], ["dataset", "id", "messages", "rejected"])
            writer.write(pa.table({
                "dataset": part.column("dataset"), "id": part.column("id"), "messages": part.column("messages"),
                "rejected": part.column("rejected"),
                "n_tokens": pa.array(tokens[start:start + WALK_CHUNK_ROWS], pa.int32())}, schema=SELECTED_SCHEMA))
        return writer.close()

    def _not_sampled(self, source: str, table: SpillFiles, rows: list[int]) -> None:
        """Counted apart from drops (sampling is not a verdict on the record) but kept as ids."""
        self.state.stats[source].not_sampled += len(rows)
        if not rows or not self.state.recipe.output_options.write_unsampled:
            return
        # kept columnar: a 30k sample of a 1M-row source leaves ~970k of these
        self.state.unsampled[source].append(table.take(rows, ["dataset", "id"]))

    def _walk(self, source: str, table: SpillFiles, known: list[int | None], order: list[int], want: int
              ) -> tuple[list[int], list[int], int]:
        if self.max_tokens is None:
            return self._take_first(table, known, order[:want])
        got: list[int] = []
        got_tokens: list[int] = []
        pos = 0
        while len(got) < want and pos < len(order):
            need = want - len(got)
            chunk = order[pos:pos + min(WALK_CHUNK_ROWS, max(256, int(need * 1.05) + 16))]
            counts = self._count_chunk(table, known, chunk)()
            too_long: list[tuple[int, int]] = []
            for row_index, n in zip(chunk, counts, strict=True):
                pos += 1
                if self.max_tokens is not None and n > self.max_tokens:  # type: ignore[operator]
                    too_long.append((row_index, n))  # type: ignore[arg-type]
                    continue
                got.append(row_index)
                got_tokens.append(n)  # type: ignore[arg-type]
                if len(got) == want:
                    break
            if too_long:
                rows = table.take([r for r, _ in too_long], ["dataset", "id", "messages"]).to_pylist()
                for row, (_, n) in zip(rows, too_long, strict=True):
                    self.state.drop(source, Dropped(
                        reason="too_many_tokens", dataset=row["dataset"], id=row["id"],
                        detail=f"{n} tokens > max_tokens {self.max_tokens}", messages=row["messages"],
                        stage="select"))
        return got, got_tokens, pos

    def _take_first(self, table: SpillFiles, known: list[int | None], rows: list[int]
                    ) -> tuple[list[int], list[int], int]:
        """The walk when nothing can be dropped for length: exactly ``rows`` are taken, so the next
        chunk's records are gathered while the worker processes count the previous one."""
        chunks = (self._count_chunk(table, known, rows[i:i + WALK_CHUNK_ROWS])
                  for i in range(0, len(rows), WALK_CHUNK_ROWS))
        tokens = [n for counts in one_ahead(chunks) for n in counts]
        return rows, tokens, len(rows)

    def _count_chunk(self, table: SpillFiles, known: list[int | None], chunk: list[int]
                     ) -> Callable[[], list[int]]:
        """Start counting the tokens of ``chunk``'s rows; counts made while reading (``take: all``
        sources) are reused. The returned function waits for the counts, in ``chunk`` order."""
        counts = [known[i] for i in chunk]
        missing = [i for i, n in enumerate(counts) if n is None]
        if not missing:
            return lambda: counts  # type: ignore[return-value]
        records = table.take([chunk[i] for i in missing], ["messages", "rejected"]).to_pylist()
        pending = count_tokens_async(self.counter, records)

        def result() -> list[int]:
            for i, n in zip(missing, pending(), strict=True):
                counts[i] = n
            return counts  # type: ignore[return-value]

        return result


# -- the build ------------------------------------------------------------------------------

def allowed(recipe: Recipe, source: Source) -> str | None:
    """None if the source's licence is allowed, else why it is left out."""
    if recipe.allow_licenses is None:
        return None
    lic = source_license(source)
    if lic is None or license_key(lic) not in {license_key(x) for x in recipe.allow_licenses}:
        return f"licence {lic or 'unknown'} not in allow_licenses {list(recipe.allow_licenses)}"
    return None


def run_stages(recipe: Recipe, reporter: Reporter | None = None, executor: Executor | None = None,
               work_dir: Path | None = None) -> BuildState:
    """Run every stage up to the selected records per source (no output files written).

    ``executor``: where the stages' work runs (default: ``LocalEngine`` on every core). The selected
    records are Arrow files in ``work_dir`` (default: a temporary folder that ``state.close()``
    deletes).
    """
    state = BuildState(recipe=recipe, reporter=reporter or Reporter(), executor=executor or LocalEngine())
    if work_dir is None:
        state._tmp = tempfile.TemporaryDirectory(prefix="mixer-work-")
        work_dir = Path(state._tmp.name)
    state.work_dir = work_dir
    for s in recipe.sources:
        state.stats[s.name] = SourceStats(name=s.name, adapter=s.adapter, license=source_license(s),
                                          take=s.take, repeat=s.repeat)
        state.drops[s.name] = []
        state.unsampled[s.name] = []
    sample_first = recipe.order == "sample_then_filter"
    with TokenCounter(recipe.tokenizer, executor=state.executor) as counter:
        with state.timed("read+normalise+filter" if not sample_first else "read"):
            read_sources(state, work_dir, gate=not sample_first)
        selector = Selector(state, counter)
        if sample_first:
            _sample_then_filter(state, selector)
        else:
            if recipe.dedup.exact:
                with state.timed("exact dedup"):
                    exact_dedup(state)
            run_post_dedup_stages(state)
            with state.timed("select+tokens"):
                for s in recipe.sources:
                    if s.name in state.candidates:
                        state.selected[s.name] = selector.select(s, state.candidates.pop(s.name),
                                                                 state.alive.pop(s.name))
                        state.stats[s.name].selected = state.selected[s.name].num_rows
    for st in state.stats.values():
        st.check_balance()
    return state


def _sample_then_filter(state: BuildState, selector: Selector) -> None:
    """open-instruct's order: sample from the converted records, then normalise, filter, dedup."""
    recipe = state.recipe
    gate = RecordGate(recipe)
    exact = ExactDeduplicator() if recipe.dedup.exact else None
    with state.timed("sample+normalise+filter"):
        for s in recipe.sources:
            if s.name not in state.candidates:
                continue
            sampled = selector.select(s, state.candidates.pop(s.name), state.alive.pop(s.name),
                                      count_tokens=False)
            stats = state.stats[s.name]
            kept = CandidateStore(state.work_dir / f"sampled-{s.name}.arrow")
            for row in (r for batch in sampled.iter_batches() for r in batch.to_pylist()):
                record: Record = {"dataset": row["dataset"], "id": row["id"], "messages": row["messages"]}
                if row["rejected"] is not None:
                    record["rejected"] = row["rejected"]  # type: ignore[typeddict-unknown-key]
                out = gate(s.name, record, stats)
                if isinstance(out, Dropped):
                    state.drop(s.name, out)
                    continue
                if exact is not None:
                    first = exact.check(s.name, out["id"], record_key_messages(out))
                    if first is not None:
                        d = _dropped(out, exact.reason, "dedup", f"same content as {first[0]}/{first[1]}")
                        d.kept_id, d.extra = first[1], {"kept_source": first[0]}
                        state.drop(s.name, d)
                        continue
                kept.add(out, file_index=0)
            state.candidates[s.name] = SpillFiles([kept.close()], CANDIDATE_SCHEMA)
            state.alive[s.name] = list(range(state.candidates[s.name].num_rows))
    run_post_dedup_stages(state)
    with state.timed("tokens"):
        for s in recipe.sources:
            if s.name in state.candidates:
                state.selected[s.name] = selector.select(s, state.candidates.pop(s.name), state.alive.pop(s.name),
                                                         length_only=True)
                state.stats[s.name].selected = state.selected[s.name].num_rows


def run_post_dedup_stages(state: BuildState) -> None:
    """The stages that look across sources after exact dedup, before sampling (see cross_source)."""
    from mixer import cross_source

    recipe = state.recipe
    if recipe.dedup.near is not None and recipe.dedup.near.enabled:
        with state.timed("near dedup"):
            cross_source.near_dedup(state)
    if recipe.decontaminate is not None:
        with state.timed("decontaminate"):
            cross_source.decontaminate(state)


def shuffled_output(state: BuildState) -> tuple[SpillFiles, list[int]]:
    """All selected records (their files, in recipe order) and the output order: each record
    ``repeat`` times, in one seeded global shuffle."""
    paths, index = [], []
    offset = 0
    for s in state.recipe.sources:
        table = state.selected.get(s.name)
        if table is None:
            continue
        paths.extend(table.paths)
        index.extend(list(range(offset, offset + table.num_rows)) * s.repeat)
        offset += table.num_rows
    if not paths:
        raise MixerError("the build selected no records: every source is empty, filtered out or excluded")
    random.Random(state.recipe.seed).shuffle(index)
    return SpillFiles(paths, SELECTED_SCHEMA), index


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024
