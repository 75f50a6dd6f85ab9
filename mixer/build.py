"""``mixer build``: the orchestrator. It runs the stages of ``mixer.stages`` in pipeline order on an
engine (``mixer.engine``) and writes data, drops and card into a staging folder that replaces the
output folder only when everything succeeded.

The build is a loop over a plain list of stages (``pipeline``, then ``OUTPUT``), each with the one
shape ``run(ctx)`` (``mixer.stages.base.Stage``); the loop does for every stage what datatrove's
``PipelineStep.run`` does once for all: it frames the stage for the reporter (its name and label),
times it, counts the records it dropped, and lets the engine release its workers. A record's way:
``stages.read`` (adapter, then ``stages.normalise`` and ``stages.filter`` inside the read unit) ->
``stages.exact_dedup`` -> ``stages.near_dedup`` -> ``stages.decontaminate`` -> ``stages.select`` ->
``stages.write`` -> ``stages.card``. ``order: sample_then_filter`` runs the same stages in another
order: read, select's sampling, normalise + filter + exact dedup's first copy, the cross-source
stages, select's length pass.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mixer import __version__
from mixer.core.errors import MixerError
from mixer.core.outdir import BUILD_MARKER, check_not_an_input, check_output_dir, lock_output, write_build_marker
from mixer.core.stats import SourceStats
from mixer.core.tables import OrderedSpill, SpillFiles
from mixer.core.usage import StageTiming, measured, peak_rss_mb
from mixer.core.workstore import OwnFolder, RemotePath, WorkPath, check_reachable, work_path
from mixer.engine import Executor, LocalEngine
from mixer.recipe.hub import materialise
from mixer.recipe.load import Recipe, resolve_files, source_license
from mixer.recipe.pin import verify_pins
from mixer.report.markdown import render_markdown
from mixer.report.plots import render_plot_section, write_plots
from mixer.stages.base import Reporter, Stage, StageContext
from mixer.stages.card import build_card
from mixer.stages.decontaminate import Decontaminate
from mixer.stages.exact_dedup import ExactDedup
from mixer.stages.near_dedup import NearDedup
from mixer.stages.read import Gate, Read
from mixer.stages.read_cache import read_cache_root
from mixer.stages.select import Sample, Select, Selector, Shuffle
from mixer.stages.write import Write, staging_dir
from mixer.tokens.cache import cache_root, damage_counts, damage_log, unwritable_cache
from mixer.tokens.count import TokenCounter, counter_note

__all__ = ["BuildResult", "BuildState", "Reporter", "build", "run_stages"]


@dataclass
class BuildState:
    """What the orchestrator keeps besides the stages' context (recipe, executor, stats, candidates,
    drop sink, and what each stage produced): the timings, the token counter's name, the work folder."""

    ctx: StageContext
    timings: dict[str, StageTiming] = field(default_factory=dict)
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

    @property
    def selected(self) -> dict[str, SpillFiles]:
        """Per source, the chosen records in selection order, with ``n_tokens`` (Arrow files)."""
        return self.ctx.selected

    @property
    def unsampled(self) -> dict[str, list[OrderedSpill]]:
        """Per source, the ids of the records sampling did not choose (``dropped/`` lists them)."""
        return self.ctx.unsampled

    @property
    def card_sections(self) -> dict[str, Any]:
        return self.ctx.card_sections

    def close(self) -> None:
        """Delete the work folder (when the build made its own)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def run(self, stages: list[Stage]) -> None:
        """Each stage in order: framed for the reporter, timed, its drops counted."""
        for stage in stages:
            ctx = self.ctx
            ctx.reporter.stage_started(stage.name, stage.label)
            before = ctx.sink.total()
            with self.timed(stage.label) as timing:
                stage.run(ctx)
            timing.dropped += ctx.sink.total() - before
            ctx.reporter.stage_finished(stage.name, stage.label, timing.wall_s, timing.dropped)

    @contextmanager
    def timed(self, stage: str) -> Iterator[StageTiming]:
        """Time one stage (wall and this process's CPU); when it ends, the engine lets go of the
        workers it started for it, as each stage's own pool did before there was an engine."""
        t = self.timings.setdefault(stage, StageTiming())
        with measured(t):
            try:
                yield t
            finally:
                self.ctx.executor.release()


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
    the caller then owns and closes). Any executor that keeps the contract of ``mixer.core.executor``
    gives the same bytes. The output folder is locked for the whole build and checked before any
    work: it may replace only an earlier mixer build (``mixer.core.outdir``) unless ``overwrite``, and never
    one that is, holds or lies inside an input of the build (``build_inputs``). Pinned
    input files are verified first. ``work_dir``: where the intermediate Arrow files go (a folder is
    made inside it and deleted at the end), a path, a ``file://`` URI or any URI pyarrow's filesystem
    layer opens (``s3://bucket/prefix``, see ``mixer.core.workstore``); a distributed engine needs one every
    node reaches (default: the system's temporary folder).
    """
    check_not_an_input(recipe.output, build_inputs(recipe, work_dir))
    root = resolve_work_dir(work_dir) if work_dir is not None else None
    with lock_output(Path(recipe.output)), _caches_if_writable(reporter or Reporter()), \
            tempfile.TemporaryDirectory(prefix="mixer-work-", dir=root if isinstance(root, Path) else None) \
            as scratch, damage_log(Path(scratch)):
        # without a --work-dir the stages work in `scratch` too: a killed build leaves one folder behind
        stages_root = root if root is not None else Path(scratch)
        check_output_dir(recipe.output, marker=BUILD_MARKER, overwrite=overwrite)
        if engine is not None:
            return _build(recipe, reporter, engine, stages_root)
        with LocalEngine(workers) as local:
            return _build(recipe, reporter, local, stages_root)


@contextmanager
def _caches_if_writable(reporter: Reporter) -> Iterator[None]:
    """A cache folder that cannot be written (read-only, a file in its path) turns the token and read
    caches off for this build, with a warning, instead of failing it; the environment is restored after
    (worker processes inherit it, which is why the switch is an environment variable)."""
    problem = unwritable_cache()
    if problem is None:
        yield
        return
    reporter.warn(f"{problem}; building without the token and read caches")
    saved = {name: os.environ.get(name) for name in ("MIXER_TOKEN_CACHE", "MIXER_READ_CACHE")}
    os.environ.update(dict.fromkeys(saved, "0"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    # Hub sources first: fetched into the Hub's cache (or found there), their pins checked, and the recipe
    # then names the cached files like any raw file
    hub_warnings: list[str] = []

    def warn(message: str) -> None:
        hub_warnings.append(message)
        (reporter or Reporter()).warn(message)

    recipe, hub = materialise(recipe, warn=warn)
    verify_pins(recipe, engine)  # before any work: a build never starts from a file that changed
    tmp = None if work_root is None else _own_folder(work_root)
    try:
        state = run_stages(recipe, reporter, engine, work_dir=None if tmp is None else tmp.path)
        if hub:
            state.ctx.warnings[:0] = hub_warnings
            state.card_sections["hub"] = [r.card() for r in hub]
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
    ``RemotePath``, which the stages write to and read from through ``mixer.core.workstore``). A local
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
    with TokenCounter(recipe.tokenizer, executor=ctx.executor) as counter:
        state.token_counter, why = counter_note(recipe.tokenizer)
        if why:
            ctx.reporter.warn(why)
        state.run(pipeline(recipe, Selector(ctx, counter)))
    for st in stats.values():
        st.check_balance()
    return state


def pipeline(recipe: Recipe, selector: Selector) -> list[Stage]:
    """The stages up to the selected records, in the order the recipe's ``order`` says: the same
    stages either way (open-instruct's ``sample_then_filter`` samples first, then normalises, filters
    and dedups only the sampled records, then counts tokens)."""
    cross: list[Stage] = []
    if recipe.dedup.near is not None and recipe.dedup.near.enabled:
        cross.append(NearDedup())
    if recipe.decontaminate is not None:
        cross.append(Decontaminate())
    if recipe.order == "sample_then_filter":
        return [Read(gate=False), Sample(selector), Gate(exact=recipe.dedup.exact.enabled), *cross,
                Select(selector, length_only=True)]
    return [Read(gate=True), *([ExactDedup()] if recipe.dedup.exact else []), *cross, Select(selector)]


class WriteCard:
    """Stage **card**: the card's numbers (``mixer.stages.card``), then its files in the staging folder:
    ``card.json``, the plots and ``README.md`` (``mixer.report``)."""

    name = "card"
    label = "card"

    def run(self, ctx: StageContext) -> None:
        assert ctx.out_dir is not None
        tmp = ctx.out_dir
        card = build_card(ctx.recipe, ctx.stats, ctx.selected, ctx.warnings, ctx.card_sections, ctx.shards,
                          ctx.dropped_files)
        plot_paths = write_plots(card, tmp / "data", tmp / "plots")
        card["outputs"]["plots"] = [f"plots/{p.name}" for p in plot_paths]
        (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(render_markdown(card, render_plot_section(plot_paths, tmp)), encoding="utf-8")
        ctx.card = card


#: the stages after selection, into the staging folder
OUTPUT: tuple[Stage, ...] = (Shuffle(), Write(), WriteCard())


def _write(state: BuildState) -> BuildResult:
    recipe = state.recipe
    out = Path(recipe.output)
    with staging_dir(out) as tmp:
        state.ctx.out_dir = tmp
        state.run(list(OUTPUT))
        card = state.ctx.card
        timings = {name: {"wall_s": round(t.wall_s, 3), "cpu_s": round(t.cpu_s, 3),
                          "cpu_workers_s": round(t.cpu_workers_s, 3),
                          "rss_mb_after": round(t.rss_mb_after, 1), "dropped": t.dropped}
                   for name, t in state.timings.items()}
        timings["peak_rss_mb"] = round(peak_rss_mb(), 1)
        timings["token_counter"] = state.token_counter
        if state.ctx.read_cache:
            timings["read_cache_hits"] = state.ctx.read_cache["hits"]
        timings.update(state.ctx.notes)
        # cache entries found damaged (truncated, altered, foreign), removed and rebuilt, per cache
        timings["cache_damaged"] = {"read_cache": 0, "token_cache": 0, **damage_counts()}
        (tmp / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        write_build_marker(tmp, {"version": __version__, "recipe_sha256": recipe.sha256})
    return BuildResult(out=out, card=card, state=state, timings=timings)
