"""``mixer build``: the orchestrator. It runs the stages of ``mixer.stages`` in pipeline order on an
engine (``mixer.engine``), times each one, and writes data, drops and card into a staging folder that
replaces the output folder only when everything succeeded.

Each stage is called once, in order; between stages the orchestrator only times them and lets the
engine release its workers. A record's way: ``stages.read`` (adapter, then ``stages.normalise`` and
``stages.filter`` inside the read unit) -> ``stages.exact_dedup`` -> ``stages.near_dedup`` ->
``stages.decontaminate`` -> ``stages.select`` -> ``stages.write`` -> ``stages.card``.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mixer import __version__
from mixer.card import render_markdown
from mixer.engine import Executor, LocalEngine
from mixer.errors import MixerError
from mixer.outdir import BUILD_MARKER, check_not_an_input, check_output_dir, lock_output, write_build_marker
from mixer.pin import verify_pins
from mixer.plots import render_plot_section, write_plots
from mixer.read_cache import read_cache_root
from mixer.recipe import Recipe, resolve_files, source_license
from mixer.records import CANDIDATE_SCHEMA, Dropped, Record, record_scores
from mixer.stages.base import Reporter, StageContext, run_record_stages
from mixer.stages.card import build_card
from mixer.stages.decontaminate import decontaminate
from mixer.stages.exact_dedup import FirstCopy, exact_dedup
from mixer.stages.near_dedup import near_dedup
from mixer.stages.read import CandidateStore, read_sources, record_stages
from mixer.stages.select import Selector, select_all, shuffled_output
from mixer.stages.write import check_unique_ids, staging_dir, write_output
from mixer.stats import SourceStats
from mixer.tables import OrderedSpill, SpillFiles
from mixer.token_cache import cache_root, damage_counts, damage_log
from mixer.tokens import TokenCounter, counter_note
from mixer.workstore import OwnFolder, RemotePath, WorkPath, check_reachable, work_path

__all__ = ["BuildResult", "BuildState", "Reporter", "build", "run_stages"]


@dataclass
class StageTiming:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    #: CPU of the worker processes the stage started and the engine ended with it (0 for an engine
    #: whose workers outlive the stage, e.g. a cluster's): with ``cpu_s``, what the stage cost
    cpu_workers_s: float = 0.0
    #: this process's resident memory when the stage ended (MiB), to see which stage holds memory
    rss_mb_after: float = 0.0


@dataclass
class BuildState:
    """What the orchestrator keeps between stages: the stages' context (recipe, executor, stats,
    candidates, drop sink), what selection chose, the card sections and the timings."""

    ctx: StageContext
    #: per source, the chosen records in selection order, with ``n_tokens`` (Arrow files)
    selected: dict[str, SpillFiles] = field(default_factory=dict)
    #: per source, the ids of the records sampling did not choose: spills in the work folder, one per
    #: sampled group, in sampling order (``dropped/`` lists them)
    unsampled: dict[str, list[OrderedSpill]] = field(default_factory=dict)
    #: what the cross-source stages report for the card (``near_dedup``, ``contamination``)
    card_sections: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, StageTiming] = field(default_factory=dict)
    #: which sources the read cache served ("hits") and which were read ("misses"); not in the card
    #: (the card is the same either way), reported in timings.json
    read_cache: dict[str, list[str]] = field(default_factory=dict)
    #: which library counted tokens in this process (bpe-openai, or tiktoken when it cannot be used);
    #: the counts are the same, so it is reported in timings.json, not in the card
    token_counter: str = ""

    _tmp: Any = None

    @property
    def recipe(self) -> Recipe:
        return self.ctx.recipe

    @property
    def stats(self) -> dict[str, SourceStats]:
        return self.ctx.stats

    def close(self) -> None:
        """Delete the work folder (when the build made its own)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time one stage (wall and this process's CPU); when it ends, the engine lets go of the
        workers it started for it, as each stage's own pool did before there was an engine."""
        t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu_s()
        try:
            yield
        finally:
            self.ctx.executor.release()
            t = self.timings.setdefault(stage, StageTiming())
            t.wall_s += time.perf_counter() - t0
            t.cpu_s += time.process_time() - c0
            t.cpu_workers_s += children_cpu_s() - k0
            t.rss_mb_after = current_rss_mb()


@dataclass
class BuildResult:
    out: Path
    card: dict[str, Any]
    state: BuildState
    timings: dict[str, Any]


def build(recipe: Recipe, reporter: Reporter | None = None, workers: int | None = None,
          engine: Executor | None = None, *, overwrite: bool = False, work_dir: str | Path | None = None
          ) -> BuildResult:
    """Build the mixture the recipe describes into ``recipe.output``.

    ``workers``: processes for reading sources and counting tokens (default: all cores); the build
    runs on a ``LocalEngine`` of that many workers, unless ``engine`` gives another executor (which
    the caller then owns and closes). Any executor that keeps the contract of ``mixer.engine.base``
    gives the same bytes. The output folder is locked for the whole build and checked before any
    work: it may replace only an earlier mixer build (``mixer.outdir``) unless ``overwrite``, and never
    one that is, holds or lies inside an input of the build (``build_inputs``). Pinned
    input files are verified first. ``work_dir``: where the intermediate Arrow files go (a folder is
    made inside it and deleted at the end), a path, a ``file://`` URI or any URI pyarrow's filesystem
    layer opens (``s3://bucket/prefix``, see ``mixer.workstore``); a distributed engine needs one every
    node reaches (default: the system's temporary folder).
    """
    check_not_an_input(recipe.output, build_inputs(recipe, work_dir))
    root = resolve_work_dir(work_dir) if work_dir is not None else None
    with lock_output(Path(recipe.output)), damage_log():
        check_output_dir(recipe.output, marker=BUILD_MARKER, overwrite=overwrite)
        if engine is not None:
            return _build(recipe, reporter, engine, root)
        with LocalEngine(workers) as local:
            return _build(recipe, reporter, local, root)


def build_inputs(recipe: Recipe, work_dir: str | Path | None = None) -> Iterator[tuple[str, Path]]:
    """What a build reads or keeps, as (what, path): the recipe file, every source's raw files, the
    ``dedup.near.against`` corpora, the benchmark files, a local tokenizer, the caches and a local
    work folder. The output folder must overlap none of them (``check_not_an_input``). A file that
    does not exist is left out here: the stage that reads it reports it."""
    if recipe.path:
        yield "the recipe", Path(recipe.path)
    for source in recipe.sources:
        try:
            files = resolve_files(recipe, source)
        except MixerError:
            files = []
        for f in files:
            yield f"source {source.name!r}'s raw file", f
    near = recipe.dedup.near
    for p in near.against if near is not None else ():
        yield "the dedup.near.against corpus", Path(p)
    if recipe.decontaminate is not None:
        for b in recipe.decontaminate.benchmarks:
            for f in b.files:
                path = Path(f)
                yield f"benchmark {b.name!r}'s file", path if path.is_absolute() else Path(recipe.raw_dir) / path
    if recipe.tokenizer.startswith("hf:"):
        yield "the tokenizer", Path(recipe.tokenizer[3:])
    for what, root in (("the cache folder", cache_root()), ("the read cache", read_cache_root())):
        if root is not None:
            yield what, root
    if work_dir is not None:
        text = str(work_dir)
        if "://" not in text or text.startswith("file://"):
            yield "the work folder", Path(text.removeprefix("file://"))


def _build(recipe: Recipe, reporter: Reporter | None, engine: Executor, work_root: WorkPath | None) -> BuildResult:
    verify_pins(recipe, engine)  # before any work: a build never starts from a file that changed
    tmp = None if work_root is None else _own_folder(work_root)
    try:
        state = run_stages(recipe, reporter, engine, work_dir=None if tmp is None else tmp.path)
        try:
            return _write(state)
        finally:
            state.close()
    finally:
        if tmp is not None:
            tmp.cleanup()


def resolve_work_dir(where: str | Path) -> WorkPath:
    """The work folder given as a path, a ``file://`` URI (a local path), or another URI pyarrow's
    filesystem layer opens (``s3://bucket/prefix?endpoint_override=host:port&scheme=http``: a
    ``RemotePath``, which the stages write to and read from through ``mixer.workstore``). A local
    folder is created if missing; a remote one is checked now (the store answers, the bucket exists),
    so a wrong URI, endpoint or credentials stop the build with a message naming the work folder
    rather than a traceback from a unit. ``mock://`` (pyarrow's in-memory filesystem, one per
    process) is refused: no other process could see the files."""
    text = str(where)
    try:
        folder = work_path(text)
    except (pa.ArrowInvalid, ValueError, OSError) as e:
        raise MixerError(f"--work-dir {text}: pyarrow cannot open this URI ({e})") from None
    if isinstance(folder, RemotePath):
        if text.startswith("mock:"):
            raise MixerError(f"--work-dir {text}: pyarrow's mock:// filesystem lives in one process's memory, "
                             "which the build's other processes cannot see; give a path, or an object store "
                             "URI such as s3://bucket/prefix")
        try:
            check_reachable(folder)
        except OSError as e:
            raise MixerError(f"--work-dir {text}: cannot reach the work folder ({e})") from None
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MixerError(f"--work-dir {where}: cannot create the work folder ({e.strerror})") from None
    return folder


def _own_folder(root: WorkPath) -> OwnFolder:
    """The build's own folder in the work folder (see ``OwnFolder``), an unreachable store's error
    as a message naming it."""
    try:
        return OwnFolder(root)
    except OSError as e:
        raise MixerError(f"--work-dir {root}: cannot reach the work folder ({e})") from None


def run_stages(recipe: Recipe, reporter: Reporter | None = None, executor: Executor | None = None,
               work_dir: WorkPath | None = None) -> BuildState:
    """Run every stage up to the selected records per source (no output files written).

    ``executor``: where the stages' work runs (default: ``LocalEngine`` on every core). The selected
    records are Arrow files in ``work_dir`` (default: a temporary folder that ``state.close()``
    deletes).
    """
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mixer-work-")
        work_dir = Path(tmp.name)
    stats = {s.name: SourceStats(name=s.name, adapter=s.adapter, license=source_license(s), take=s.take,
                                 repeat=s.repeat) for s in recipe.sources}
    ctx = StageContext(recipe=recipe, executor=executor or LocalEngine(), work_dir=work_dir,
                       reporter=reporter or Reporter(), stats=stats)
    state = BuildState(ctx=ctx, _tmp=tmp)
    sample_first = recipe.order == "sample_then_filter"
    with TokenCounter(recipe.tokenizer, executor=ctx.executor) as counter:
        state.token_counter, why = counter_note(recipe.tokenizer)
        if why:
            ctx.reporter.warn(why)
        with state.timed("read+normalise+filter" if not sample_first else "read"):
            state.read_cache = read_sources(ctx, gate=not sample_first)
        selector = Selector(ctx, counter)
        if sample_first:
            _sample_then_filter(state, selector)
        else:
            if recipe.dedup.exact:
                with state.timed("exact dedup"):
                    exact_dedup(ctx)
            _cross_source_stages(state)
            with state.timed("select+tokens"):
                state.selected = select_all(ctx, selector)
        state.unsampled = selector.unsampled
    for st in stats.values():
        st.check_balance()
    return state


def _cross_source_stages(state: BuildState) -> None:
    """The stages that look across sources after exact dedup, before selection."""
    recipe = state.recipe
    if recipe.dedup.near is not None and recipe.dedup.near.enabled:
        with state.timed("near dedup"):
            state.card_sections["near_dedup"] = near_dedup(state.ctx)
    if recipe.decontaminate is not None:
        with state.timed("decontaminate"):
            state.card_sections["contamination"] = decontaminate(state.ctx)


def _sample_then_filter(state: BuildState, selector: Selector) -> None:
    """open-instruct's order: sample from the converted records, then normalise, filter and dedup the
    sampled records (one at a time, in sampling order), then the cross-source stages, then the
    length pass."""
    ctx = state.ctx
    recipe = ctx.recipe
    stages = record_stages(recipe)
    first_copy = FirstCopy() if recipe.dedup.exact else None
    with state.timed("sample+normalise+filter"):
        for s in recipe.sources:
            if s.name not in ctx.candidates:
                continue
            table, alive = ctx.candidates.pop(s.name)
            sampled = selector.select(s, table, alive, count_tokens=False)
            stats = ctx.stats[s.name]
            kept = CandidateStore(ctx.work_dir / f"sampled-{s.name}.arrow")
            for row in (r for batch in sampled.iter_batches() for r in batch.to_pylist()):
                record: Record = {"dataset": row["dataset"], "id": row["id"], "messages": row["messages"]}
                if row["rejected"] is not None:
                    record["rejected"] = row["rejected"]  # type: ignore[typeddict-unknown-key]
                    record.update(record_scores(row))  # type: ignore[typeddict-item, arg-type]
                (out,) = run_record_stages(stages, s.name, [record], stats)
                if not isinstance(out, Dropped) and first_copy is not None:
                    out = first_copy.check(s.name, out) or out
                if isinstance(out, Dropped):
                    ctx.sink.drop(s.name, out)
                    continue
                kept.add(out, file_index=0)
            ctx.candidates.add(s.name, SpillFiles([kept.close()], CANDIDATE_SCHEMA))
    _cross_source_stages(state)
    with state.timed("tokens"):
        state.selected = select_all(ctx, selector, length_only=True)


def _write(state: BuildState) -> BuildResult:
    recipe = state.recipe
    out = Path(recipe.output)
    with state.timed("shuffle"):
        check_unique_ids(recipe, state.selected)  # before any output file is written
        selected, order = shuffled_output(state.ctx, state.selected)
    with staging_dir(out) as tmp:
        with state.timed("write"):
            shards, dropped_files = write_output(state.ctx, selected, order, state.unsampled, tmp)
        with state.timed("card"):
            card = build_card(recipe, state.stats, state.selected, state.ctx.warnings, state.card_sections,
                              shards, dropped_files)
            plot_paths = write_plots(card, tmp / "data", tmp / "plots")
            card["outputs"]["plots"] = [f"plots/{p.name}" for p in plot_paths]
            (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
            (tmp / "README.md").write_text(render_markdown(card, render_plot_section(plot_paths, tmp)),
                                           encoding="utf-8")
        timings = {name: {"wall_s": round(t.wall_s, 3), "cpu_s": round(t.cpu_s, 3),
                          "cpu_workers_s": round(t.cpu_workers_s, 3),
                          "rss_mb_after": round(t.rss_mb_after, 1)} for name, t in state.timings.items()}
        timings["peak_rss_mb"] = round(peak_rss_mb(), 1)
        timings["token_counter"] = state.token_counter
        if state.read_cache:
            timings["read_cache_hits"] = state.read_cache["hits"]
        timings.update(state.ctx.notes)
        # cache entries found damaged (truncated, altered, foreign), removed and rebuilt, per cache
        timings["cache_damaged"] = {"read_cache": 0, "token_cache": 0, **damage_counts()}
        (tmp / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        write_build_marker(tmp, {"version": __version__, "recipe_sha256": recipe.sha256})
    return BuildResult(out=out, card=card, state=state, timings=timings)


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's ended and reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024
