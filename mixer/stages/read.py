"""Stage **read** (corpus-level, with the record-level stages inside its units): every source's raw
files through its adapter (convert), then ``normalise`` and ``filter`` a batch at a time, into Arrow
files of candidates in the work folder.

A unit of work is one source, or one part of a large JSONL, JSON-array or Parquet file (``ReadPart``:
a byte or row range; line numbers and ordinals stay those of the whole file), described by plain values
so any engine can run it (``_read_task``); its result is a ``SourceRead`` (counters, drops, the paths of
its candidate files), and the parts of a source add up (``SourceRead.__add__``) in file, then part
order. No file is held whole as Python dicts (JSON arrays of 64 MB or more are streamed). On a
rebuild the read cache (``mixer.stages.read_cache``) serves every source whose inputs and settings are
unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mixer.core.errors import InputError, Location, RecordError
from mixer.core.records import CANDIDATE_SCHEMA, Dropped, Record, make_pair, make_record, record_scores
from mixer.core.stats import FileInfo, SourceRead, SourceStats
from mixer.core.tables import SpillFiles
from mixer.core.workstore import WorkPath
from mixer.readers.base import FilePart, ParseFailure
from mixer.readers.raw import file_format, file_info, json_array, splittable
from mixer.readers.tabular import read_parquet_batches
from mixer.recipe.load import Recipe, Source, allowed, resolve_files, source_license, unmatched_licenses
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter
from mixer.stages.base import DropSink, RecordStage, Reporter, StageContext, run_record_stages
from mixer.stages.candidates import CandidateStore
from mixer.stages.exact_dedup import FirstCopy
from mixer.stages.filter import Filter
from mixer.stages.normalise import Normalise
from mixer.stages.read_cache import ReadCache, read_cache_root, read_key
from mixer.tokens.count import TokenCounter

RAW_TEXT_LIMIT = 20_000
#: records put through the record-level stages together; the mention filter screens a batch at once
GATE_BATCH = 2048
#: Parquet sources whose adapter has ``convert_columns`` convert a batch at a time (False: the
#: per-record path for every row; the tests compare the two)
COLUMNAR = True


def record_stages(recipe: Recipe) -> list[RecordStage]:
    """The record-level stages after convert, in pipeline order (``read_source`` skips the one named
    ``normalise`` for records a columnar convert took)."""
    return [Normalise(recipe), Filter(recipe)]


def _raw_text(value: Any) -> str:
    if isinstance(value, ParseFailure):
        return value.text[:RAW_TEXT_LIMIT]
    try:
        return orjson.dumps(value, default=str).decode()[:RAW_TEXT_LIMIT]
    except TypeError:
        return repr(value)[:RAW_TEXT_LIMIT]



def read_source(recipe: Recipe, source: Source, work_dir: WorkPath, *, gate: bool, count_tokens: bool,
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
    # this unit's own sink: drops listed in the order their records entered, whatever the batching
    sink = DropSink({source.name: stats})

    def drop(item: Dropped, entry: int) -> None:
        sink.drop(source.name, item, entry)

    paths = resolve_files(recipe, source)
    context = SourceContext(source.name, recipe.source_seed(source.name), recipe.tokenizer,
                            many_files=len(paths) > 1)
    adapter = get_adapter(source.adapter)(source.options, context)
    stages = record_stages(recipe) if gate else []
    normalising = [st for st in stages if st.name == "normalise"]
    after_normalise = [st for st in stages if st.name != "normalise"]
    counter = TokenCounter(recipe.tokenizer) if count_tokens else None  # in this process
    name = "candidates.arrow" if only is None else f"candidates-{only.file_index:03d}-{only.part.index:03d}.arrow"
    store = CandidateStore(work_dir / name, counter, preference_key=recipe.dedup.exact.preference_key)
    skip = source.on_error == "skip"
    where = f"source {source.name!r}, adapter {source.adapter!r}"
    pending: list[Record] = []
    pending_entry: list[int] = []
    pending_clean: list[bool] = []  # from a columnar convert: already in normal form

    def flush(file_index: int) -> None:
        verdicts: list[Record | Dropped] = list(pending)
        if stages:
            # records a columnar convert passed need no normalising: it left them as they were
            normalise = [i for i, clean in enumerate(pending_clean) if not clean]
            if normalise:
                for i, v in zip(normalise, run_record_stages(normalising, source.name,
                                                             [pending[i] for i in normalise], stats), strict=True):
                    verdicts[i] = v
            verdicts = run_record_stages(after_normalise, source.name, verdicts, stats)
        for kept, entry in zip(verdicts, pending_entry, strict=True):
            if isinstance(kept, Dropped):
                drop(kept, entry)
            else:
                store.add(kept, file_index)
        pending.clear()
        pending_entry.clear()
        pending_clean.clear()

    def take(value: Any, location: Location, file_index: int) -> None:
        """One raw record through the adapter's ``convert`` into ``pending`` (or its drop)."""
        if isinstance(value, ParseFailure):
            if not skip:
                raise InputError(location, f"{value.problem} ({where}; "
                                 "set on_error: skip to drop such records)")
            stats.records_in += 1
            drop(Dropped(reason="invalid_record", detail=f"{location}: {value.problem}",
                         raw=_raw_text(value)), stats.records_in)
            return
        try:
            outputs = list(adapter.convert(value, location))
        except RecordError as e:
            if not skip:
                raise InputError(location, f"{e} ({where}; set on_error: skip to drop such records)") \
                    from None
            stats.records_in += 1
            drop(Dropped(reason="invalid_record", detail=f"{location}: {e}", raw=_raw_text(value)),
                 stats.records_in)
            return
        for out in outputs:
            stats.records_in += 1
            if isinstance(out, Dropped):
                if out.raw is None and out.messages is None:
                    out.raw = _raw_text(value)
                drop(out, stats.records_in)
                continue
            queue(out, file_index, clean=False)

    def queue(record: Record, file_index: int, *, clean: bool) -> None:
        pending.append(record)
        pending_entry.append(stats.records_in)
        pending_clean.append(clean)
        if len(pending) >= GATE_BATCH:
            flush(file_index)

    columnar = COLUMNAR and type(adapter).convert_columns is not Adapter.convert_columns \
        and type(adapter).read_file is Adapter.read_file
    for file_index, path in enumerate(paths):
        if only is not None and file_index != only.file_index:
            continue
        stats.files.append(files[file_index] if files is not None else file_info(path))
        reporter.start(f"read {source.name}: {path.name}")
        if columnar and path.exists() and file_format(path) == "parquet":
            part = only.part if only is not None and only.part.count > 1 else None
            for first, batch in read_parquet_batches(path, adapter.columns, part=part):
                converted = adapter.convert_columns(batch)
                if converted is None:
                    converted = [None] * batch.num_rows
                others = [i for i, r in enumerate(converted) if r is None]
                raw = dict(zip(others, batch.take(others).to_pylist(), strict=True)) if others else {}
                for i, record in enumerate(converted):
                    stats.raw_records += 1
                    if record is None:
                        take(raw[i], Location(str(path), record=first + i), file_index)
                    else:
                        stats.records_in += 1
                        queue(record, file_index, clean=True)
                reporter.advance(batch.num_rows)
        else:
            for item in adapter.read_file(path, **({"part": only.part} if only is not None else {})):
                stats.raw_records += 1
                reporter.advance()
                take(item.value, item.location, file_index)
        flush(file_index)
        reporter.finish()
    candidates = store.close()  # counts the last batch
    if counter is not None:
        counter.close()
    # entries (records_in) only grow, so the parts of a source read apart add up in order. The drops go to an Arrow
    # file beside the candidates: the build keeps no Python object per dropped record (DropSink)
    written = sink.write(source.name, work_dir / name.replace("candidates", "drops", 1))
    drops = [written] if written is not None else []
    return SourceRead(stats=stats, drops=drops, candidates=[candidates], used=set(context.used))


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
    JSONL, JSON-array or Parquet files and an adapter that reads them with the standard readers, which
    are then cut into parts of about ``SPLIT_MIN_BYTES`` (at least ``workers`` parts per large file; exactly
    ``workers`` for a JSON array, see ``mixer.readers.raw.json_array``)."""
    if workers < 2 or adapter.read_file is not Adapter.read_file:
        return [None]
    big = [i.bytes >= SPLIT_MIN_BYTES and splittable(p) for p, i in zip(paths, infos, strict=True)]
    if not any(big):
        return [None]
    tasks: list[ReadPart | None] = []
    for index, (path, info, split) in enumerate(zip(paths, infos, big, strict=True)):
        count = min(MAX_PARTS, max(workers, -(-info.bytes // SPLIT_MIN_BYTES))) if split else 1
        if split and json_array(path):
            count = workers  # each part walks the elements before it: more parts cost more than they save
        tasks.extend(ReadPart(index, FilePart(k, count)) for k in range(count))
    return tasks


def _read_task(args: tuple[Recipe, str, WorkPath, bool, bool, list[FileInfo], ReadPart | None]) -> SourceRead:
    recipe, name, work_dir, gate, count_tokens, files, only = args
    source = next(s for s in recipe.sources if s.name == name)
    return read_source(recipe, source, work_dir, gate=gate, count_tokens=count_tokens, files=files, only=only)


#: Below this much raw input, worker processes cost more than they save.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def read_sources(ctx: StageContext, *, gate: bool) -> dict[str, list[str]]:
    """Read every allowed source into ``ctx.candidates``: from the read cache when an identical read
    is stored there (``mixer.stages.read_cache``), else as units of ``ctx.executor.map`` (one per source, or
    per part of a large file; largest first) when the input is large, else in this process. All paths
    give identical results; the merge below is in recipe order. Returns which sources the read cache
    served ("hits") and which were read ("misses"), for timings.json."""
    recipe = ctx.recipe
    work_dir = ctx.work_dir
    todo = []
    for s in recipe.sources:
        why = allowed(recipe, s)
        if why:
            ctx.stats[s.name].excluded = why
            ctx.warn(f"source {s.name!r} left out: {why}")
        else:
            todo.append(s)
    for entry in unmatched_licenses(recipe):
        ctx.warn(f"allow_licenses entry {entry!r} matches no source's licence (this recipe's: "
                 f"{', '.join(sorted({source_license(s) or 'unknown' for s in recipe.sources}))})")
    # the inputs' sizes and digests: hashlib drops the GIL, so a local engine hashes on threads
    infos = {s.name: list(ctx.executor.map(file_info, resolve_files(recipe, s), threads=True)) for s in todo}
    # sources whose every record may reach the output get their tokens counted while reading
    eager = {s.name: gate and s.take == "all" for s in todo}
    root = read_cache_root()
    cache = ReadCache(root) if root is not None else None
    report: dict[str, list[str]] = {}
    results: dict[str, SourceRead] = {}
    folders: dict[str, WorkPath] = {}
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
    # one large source is worth several workers too: its large files are cut into parts
    workers = ctx.executor.parallelism
    tasks: list[tuple[int, Source, ReadPart | None]] = []
    if workers > 1 and sum(sizes.values()) >= PARALLEL_MIN_BYTES:
        # tasks (whole sources, or parts of large files) largest first, so the processes end together
        for s in missing:
            plan = plan_reads(get_adapter(s.adapter), resolve_files(recipe, s), infos[s.name], workers)
            for only in plan:
                size = sizes[s.name] if only is None else infos[s.name][only.file_index].bytes // only.part.count
                tasks.append((size, s, only))
        tasks.sort(key=lambda t: -t[0])
    try:
        if len(tasks) > 1:
            ctx.reporter.start(f"read {len(missing)} sources in {len(tasks)} tasks", total=len(tasks))
            parts: dict[str, list[tuple[tuple[int, int], SourceRead]]] = {s.name: [] for s in missing}
            units = [(recipe, s.name, folders[s.name], gate, eager[s.name], infos[s.name], only)
                     for _, s, only in tasks]
            for (_, s, only), result in zip(tasks, ctx.executor.map(_read_task, units), strict=True):
                rank = (only.file_index, only.part.index) if only is not None else (0, 0)
                parts[s.name].append((rank, result))
                ctx.reporter.advance()
            ctx.reporter.finish()
            for s in missing:
                ordered = [r for _, r in sorted(parts[s.name], key=lambda x: x[0])]
                results[s.name] = ordered[0] if len(ordered) == 1 else merge_reads(ordered, infos[s.name])
        else:
            for s in missing:
                results[s.name] = read_source(recipe, s, folders[s.name], gate=gate, count_tokens=eager[s.name],
                                              reporter=ctx.reporter, files=infos[s.name])
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
        report = {"hits": list(cache.hits), "misses": [s.name for s in missing]}
        for s in todo:
            entry = results[s.name].candidates[0].parent
            if entry.parent == cache.root and not entry.name.startswith("."):
                ctx.read_entries[s.name] = entry
    for s in todo:
        r = results[s.name]
        # what the recipe says about the source beyond reading it may differ from the cached read's
        ctx.stats[s.name] = dataclasses.replace(r.stats, take=s.take, repeat=s.repeat,
                                                license=source_license(s))
        ctx.sink.add_counted(s.name, r.drops)  # counted in r.stats by the read unit's own sink
        ctx.candidates.add(s.name, SpillFiles(r.candidates, CANDIDATE_SCHEMA))
    return report


class Read:
    """Stage **read** with **normalise** and **filter** inside its units (``gate``), or without them
    when sampling comes first (``order: sample_then_filter``; then :class:`Gate` runs
    them after sampling)."""

    name = "read"

    def __init__(self, *, gate: bool) -> None:
        self.gate = gate
        self.label = "read+normalise+filter" if gate else "read"

    def run(self, ctx: StageContext) -> None:
        ctx.read_cache = read_sources(ctx, gate=self.gate)


class Gate:
    """Stages **normalise** and **filter**, then exact dedup's first copy (``exact``), over candidates
    already read and sampled: open-instruct's order (``sample_then_filter``), where they see only the
    sampled records, one at a time, in sampling order. The same stage objects as inside ``Read``'s units."""

    name = "normalise"
    label = "normalise+filter"

    def __init__(self, *, exact: bool) -> None:
        self.exact = exact

    def run(self, ctx: StageContext) -> None:
        stages = record_stages(ctx.recipe)
        key = ctx.recipe.dedup.exact.preference_key
        first_copy = FirstCopy(key) if self.exact else None
        for _, name, table, _ in ctx.candidates.drain([s.name for s in ctx.recipe.sources]):
            stats = ctx.stats[name]
            kept = CandidateStore(ctx.work_dir / f"sampled-{name}.arrow", preference_key=key)
            for row in (r for batch in table.iter_batches() for r in batch.to_pylist()):
                record: Record = make_record(row["dataset"], row["id"], row["messages"]) if row["rejected"] is None \
                    else make_pair(row["dataset"], row["id"], row["messages"], row["rejected"], record_scores(row))
                (out,) = run_record_stages(stages, name, [record], stats)
                if not isinstance(out, Dropped) and first_copy is not None:
                    out = first_copy.check(name, out) or out
                if isinstance(out, Dropped):
                    ctx.sink.drop(name, out)
                    continue
                kept.add(out, file_index=0)
            ctx.candidates.add(name, SpillFiles([kept.close()], CANDIDATE_SCHEMA))
