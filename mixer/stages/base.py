"""The stage contract: what a stage receives, what it may change, and how it says a record left.

Two kinds of stage (after datatrove's ``BaseFilter.run`` and data-juicer's ops):

- **record-level** (convert, normalise, filter): ``process(source, records, stats)`` takes a batch
  of one source's records and returns one verdict per record, in order: the record (possibly
  rewritten) or the ``Dropped`` that explains why it left. The read unit chains them
  (``run_record_stages``) inside whichever worker reads the file, so they never see an executor.
- **corpus-level** (exact and near dedup, decontaminate, select, write, card): a function of the
  ``StageContext``. It reads the ``Candidates``, sends its pure work (sign a batch, count the tokens
  of a chunk, write one shard) through ``ctx.executor`` and removes rows only with
  ``Candidates.remove``; it never creates a pool or asks how many workers there are.

Every drop goes through one ``DropSink``, once: it counts the reason in the source's
``SourceStats`` and keeps the record for ``dropped/``. ``drop_record`` is the one way to describe a
dropped record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import orjson
import pyarrow as pa

from mixer.core.records import DROPPED_SCHEMA, Dropped, Record
from mixer.core.stats import SourceStats
from mixer.core.tables import OrderedSpill, SpillFiles, SpillWriter
from mixer.core.workstore import WorkPath
from mixer.recipe.load import Recipe

if TYPE_CHECKING:  # the interface only: stages receive an executor, they never build one
    from mixer.core.executor import Executor


class Reporter:
    """Progress hooks; the CLI plugs in progress bars, library callers get silence.

    ``stage_started``/``stage_finished`` frame every stage the build runs (its ``STAGES`` name and its
    label in ``timings.json``), so a terminal can name the stage that is running however long it
    takes; ``start``/``advance``/``finish`` are a stage's own progress inside that frame."""

    def stage_started(self, name: str, label: str) -> None: ...
    def stage_finished(self, name: str, label: str, seconds: float, dropped: int) -> None: ...
    def start(self, description: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...
    def warn(self, message: str) -> None: ...


def drop_record(record: Mapping[str, Any], reason: str, stage: str, detail: str = "", *,
                kept_id: str | None = None, extra: dict[str, Any] | None = None) -> Dropped:
    """The ``Dropped`` for a record that leaves at ``stage`` because of ``reason`` (``detail``: for
    people, e.g. the matched keyword; ``extra``: facts for the card, e.g. the kept copy's source)."""
    return Dropped(reason=reason, dataset=record["dataset"], id=record["id"], detail=detail,
                   messages=record["messages"], stage=stage, kept_id=kept_id, extra=extra or {})


class Stage(Protocol):
    """A corpus-level stage, the one shape the build runs (after datatrove's ``PipelineStep.run``): it
    reads and changes the build's ``StageContext`` (the candidates, what it reports for the card, the
    files it writes) and says how a record left only through ``ctx.sink``/``Candidates.remove``.
    ``name``: its entry in ``STAGES``; ``label``: its key in ``timings.json``. The build times it,
    frames it for the reporter and counts the drops it made, the same way for every stage."""

    name: str
    label: str

    def run(self, ctx: StageContext) -> None: ...


class RecordStage(Protocol):
    """A record-level stage: one verdict per record of the batch, in order."""

    name: str

    def process(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]: ...


def run_record_stages(stages: Sequence[RecordStage], source: str, records: Sequence[Record | Dropped],
                      stats: SourceStats) -> list[Record | Dropped]:
    """Each stage in order over the records still in (a ``Dropped`` stays as it is): one verdict per
    input record."""
    out: list[Record | Dropped] = list(records)
    for stage in stages:
        alive = [i for i, r in enumerate(out) if not isinstance(r, Dropped)]
        if not alive:
            break
        verdicts = stage.process(source, [out[i] for i in alive], stats)  # type: ignore[misc]
        for i, verdict in zip(alive, verdicts, strict=True):
            out[i] = verdict
    return out


def dropped_table(source: str, drops: Sequence[Dropped]) -> pa.Table:
    """``drops`` as rows of ``dropped/<source>.parquet`` (``DROPPED_SCHEMA``)."""
    return pa.Table.from_pylist(
        [{"source": source, "dataset": d.dataset, "id": d.id, "stage": d.stage, "reason": d.reason,
          "detail": d.detail, "kept_id": d.kept_id, "messages": d.messages, "raw": d.raw,
          "extra": orjson.dumps(d.extra, option=orjson.OPT_SORT_KEYS).decode() if d.extra else None}
         for d in drops],
        schema=DROPPED_SCHEMA,
    )


def dropped_records(table: pa.Table) -> list[Dropped]:
    """The rows of a ``dropped_table`` as ``Dropped`` again (what a caller that reads drops one by one wants)."""
    return [Dropped(reason=r["reason"], dataset=r["dataset"], id=r["id"], detail=r["detail"], messages=r["messages"],
                    raw=r["raw"], stage=r["stage"], source=r["source"], kept_id=r["kept_id"],
                    extra=orjson.loads(r["extra"]) if r["extra"] else {})
            for r in table.to_pylist()]


class DropSink:
    """Where every dropped record goes, once: counted under its reason and kept for ``dropped/``.

    The records are kept in Arrow files, not as Python objects: a read unit's drops come as the file it wrote
    (``add_counted``), and the build's own drops are written to ``spill_dir`` every ``COMPACT_ROWS`` (as Python
    objects, the read stage's drops alone held 210 MiB at three times Tulu V2's size until ``dropped/`` was
    written; bench/RESULTS.md). Without a ``spill_dir`` (a read unit's own sink) they stay records until asked
    for. ``entry`` orders a source's drops when units report them out of order (a read unit batches its
    records, but lists their drops in the order the records entered); such drops are sorted stably when asked
    for.
    """

    COMPACT_ROWS = 1024

    def __init__(self, stats: dict[str, SourceStats], spill_dir: WorkPath | None = None) -> None:
        self.stats = stats
        self.spill_dir = spill_dir
        #: per source, in order: Arrow files (and tables), then the drops not yet written
        self._parts: dict[str, list[pa.Table | SpillFiles]] = {}
        self._pending: dict[str, list[tuple[int, Dropped]]] = {}
        self._rows: dict[str, int] = {}
        self._ordered: set[str] = set()  # sources whose drops came with entries: sorted once, when asked for
        self._files = 0

    def drop(self, source: str, item: Dropped, entry: int = 0) -> None:
        item.source = source
        self.stats[source].drop(item.reason)
        pending = self._pending.setdefault(source, [])
        pending.append((entry, item))
        self._rows[source] = self._rows.get(source, 0) + 1
        if entry:
            self._ordered.add(source)
        elif len(pending) >= self.COMPACT_ROWS and source not in self._ordered and self.spill_dir is not None:
            self._compact(source)

    def _compact(self, source: str) -> None:
        pending = self._pending.pop(source, [])
        if not pending:
            return
        if source in self._ordered:
            pending.sort(key=lambda d: d[0])
        table = dropped_table(source, [item for _, item in pending])
        part: pa.Table | SpillFiles = table
        if self.spill_dir is not None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            part = _write_drops(self.spill_dir / f"drops-{self._files:05d}.arrow", [table])
            self._files += 1
        self._parts.setdefault(source, []).append(part)

    def write(self, source: str, path: WorkPath) -> WorkPath | None:
        """Write a source's drops, in order, to one Arrow file at ``path``: how a read unit hands them to the
        build's sink (:meth:`add_counted`). None when the source dropped nothing."""
        parts = self.parts(source)
        return _write_drops(path, parts).paths[0] if parts else None

    def add_counted(self, source: str, files: Sequence[WorkPath]) -> None:
        """A read unit's drops, in the Arrow files it wrote; it counted them in the stats it returned (which
        the build adds up)."""
        self._compact(source)
        for path in files:
            spill = SpillFiles([path], DROPPED_SCHEMA)
            self._parts.setdefault(source, []).append(spill)
            self._rows[source] = self._rows.get(source, 0) + spill.num_rows

    def total(self) -> int:
        """Records dropped so far, over every source."""
        return sum(self._rows.values())

    def parts(self, source: str) -> list[pa.Table | SpillFiles]:
        """A source's drops (``DROPPED_SCHEMA`` rows), in order: Arrow files, read a batch at a time, or tables."""
        self._compact(source)
        return list(self._parts.get(source, []))

    def dropped(self, source: str) -> list[Dropped]:
        """A source's drops, in order, as ``Dropped`` records (for a caller that looks at a few)."""
        tables = [p if isinstance(p, pa.Table) else p.to_table() for p in self.parts(source)]
        return [d for table in tables for d in dropped_records(table)]


def drop_tables(parts: Sequence[pa.Table | SpillFiles]) -> Iterator[pa.Table]:
    """The rows of a source's drop ``parts`` (``DropSink.parts``) in order: a table as it is, a file a batch at
    a time (never a whole file in memory)."""
    for part in parts:
        if isinstance(part, SpillFiles):
            yield from (pa.Table.from_batches([batch]) for batch in part.iter_batches())
        else:
            yield part


def _write_drops(path: WorkPath, parts: Sequence[pa.Table | SpillFiles]) -> SpillFiles:
    writer = SpillWriter(path, DROPPED_SCHEMA)
    for table in drop_tables(parts):
        writer.write(table)
    return writer.close()


class LiveSource(NamedTuple):
    """One source's candidates as a corpus-level stage walks them: ``rank`` (its place in the recipe,
    which decides keepers), its Arrow files and the rows still in (int64, ascending)."""

    rank: int
    name: str
    table: SpillFiles
    alive: np.ndarray


class Candidates:
    """Per source, the candidate records (Arrow files read a batch at a time) and which of their rows
    are still in. Corpus-level stages mark rows out; the records themselves are never copied. The rows
    still in are an int64 array, not a list: 8 bytes a row instead of ~40 with the int objects, held
    from the read to the select stage for millions of rows."""

    def __init__(self) -> None:
        self.tables: dict[str, SpillFiles] = {}
        self.alive: dict[str, np.ndarray] = {}

    def add(self, source: str, table: SpillFiles) -> None:
        self.tables[source] = table
        self.alive[source] = np.arange(table.num_rows, dtype=np.int64)

    def __contains__(self, source: str) -> bool:
        return source in self.tables

    def live(self, sources: Sequence[str], *, skip_empty: bool = False) -> Iterator[LiveSource]:
        """The candidates of ``sources`` (recipe order; ``rank`` is the place in that list) that have
        any (``skip_empty``: and still a row in): the one walk every corpus-level stage makes."""
        for rank, name in enumerate(sources):
            if name in self.tables and not (skip_empty and not len(self.alive[name])):
                yield LiveSource(rank, name, self.tables[name], self.alive[name])

    def count(self, sources: Sequence[str]) -> int:
        """Rows still in over ``sources``."""
        return sum(len(self.alive[name]) for name in sources if name in self.alive)

    def drain(self, sources: Sequence[str]) -> Iterator[LiveSource]:
        """Like ``live``, handing each source's candidates over (selection consumes them)."""
        for src in list(self.live(sources)):
            self.tables.pop(src.name)
            self.alive.pop(src.name)
            yield src

    def pop(self, source: str) -> tuple[SpillFiles, np.ndarray]:
        """Hand a source's candidates to the next stage (selection), which consumes them."""
        return self.tables.pop(source), self.alive.pop(source)

    def remove(self, source: str, rows: dict[int, Dropped], sink: DropSink) -> None:
        """Mark ``rows`` (table row -> its Dropped, record fields filled in here) out, in row order."""
        if not rows:
            return
        order = sorted(rows)
        picked = self.tables[source].take(order, ["dataset", "id", "messages"]).to_pylist()
        for row_index, row in zip(order, picked, strict=True):
            d = rows[row_index]
            d.dataset, d.id, d.messages = row["dataset"], row["id"], row["messages"]
            sink.drop(source, d)
        alive = self.alive[source]
        self.alive[source] = alive[~np.isin(alive, np.asarray(order, dtype=np.int64))]


@dataclass
class StageContext:
    """What every corpus-level stage may use: the recipe, the executor, the work folder, the
    candidates and the one drop sink (with the per-source stats it counts into)."""

    recipe: Recipe
    executor: Executor
    #: the build's own folder for intermediate files: local, or in an object store (``mixer.core.workstore``)
    work_dir: WorkPath
    reporter: Reporter = field(default_factory=Reporter)
    stats: dict[str, SourceStats] = field(default_factory=dict)
    candidates: Candidates = field(default_factory=Candidates)
    sink: DropSink = field(init=False)
    warnings: list[str] = field(default_factory=list)
    #: per source, its read-cache entry folder (near dedup keeps signatures beside the candidates)
    read_entries: dict[str, Path] = field(default_factory=dict)
    #: what stages report for ``timings.json`` only (such as how many rows near dedup signed): it
    #: differs between a cold build and a rebuild, so it must stay out of the card
    notes: dict[str, Any] = field(default_factory=dict)
    #: which sources the read cache served ("hits") and which were read ("misses"), for timings.json
    read_cache: dict[str, list[str]] = field(default_factory=dict)
    #: what the cross-source stages report for the card (``near_dedup``, ``contamination``)
    card_sections: dict[str, Any] = field(default_factory=dict)
    #: per source, the chosen records in selection order, with ``n_tokens`` (select)
    selected: dict[str, SpillFiles] = field(default_factory=dict)
    #: per source, the ids of the records sampling did not choose, one spill per sampled group (select)
    unsampled: dict[str, list[OrderedSpill]] = field(default_factory=dict)
    #: every selected record's files and the output order, repeats included (select's shuffle)
    output: tuple[SpillFiles, list[int]] | None = None
    #: the staging folder the output stages write into (``write``, ``card``)
    out_dir: Path | None = None
    #: what ``write`` wrote, for the card: the shards (path, rows, bytes, sha256) and ``dropped/`` files
    shards: list[dict[str, Any]] = field(default_factory=list)
    dropped_files: list[str] = field(default_factory=list)
    #: the card (``card``)
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sink = DropSink(self.stats, self.work_dir / "drops")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.warn(message)
