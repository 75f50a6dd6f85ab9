"""Stage **decontaminate** (corpus-level, recipe ``decontaminate``): drop candidates whose prompts (by
default each user turn) overlap an evaluation benchmark, after dedup and before selection.

The rules (n-gram coverage and overlap, exact match, long n-gram) are ``mixer.kernels.decontaminate``
(pure); this stage walks the candidates in chunks, removes the contaminated rows through the sink
(each with the matching benchmark item) and returns the card's benchmark x source table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mixer.core.records import Dropped
from mixer.kernels.decont_audit import audit_entry
from mixer.kernels.decont_index import load_benchmarks
from mixer.kernels.decontaminate import Decontaminator, summarise_contamination
from mixer.stages.base import StageContext

#: candidates converted to Python at a time
CHUNK_ROWS = 20_000


Visit = Callable[[int, str, list[list[dict[str, str]]], list[str], list[int]], None]


def _each_source(ctx: StageContext, fn: Visit) -> None:
    """Call ``fn(rank, source, messages, ids, rows)`` over the live candidates, in recipe order and in
    chunks, so only one chunk is ever held as Python objects."""
    for src in ctx.candidates.live([s.name for s in ctx.recipe.sources]):
        for start in range(0, len(src.alive), CHUNK_ROWS):
            rows = src.alive[start:start + CHUNK_ROWS].tolist()
            chunk = src.table.take(rows, ["id", "messages"])
            fn(src.rank, src.name, chunk.column("messages").to_pylist(), chunk.column("id").to_pylist(), rows)


def decontaminate(ctx: StageContext) -> dict[str, Any]:
    """Drop records whose prompt overlaps an evaluation benchmark's prompts; returns the card's
    ``contamination`` section."""
    recipe = ctx.recipe
    assert recipe.decontaminate is not None
    config = recipe.decontaminate
    benchmarks = load_benchmarks(config, base_dir=recipe.raw_dir)
    checker = Decontaminator(config, benchmarks)
    found: list[tuple[str, str, Any]] = []
    #: every removed record beside the item it matched, shared words marked, per benchmark (the card's audit)
    flagged: dict[str, list[dict[str, Any]]] = {name: [] for name in benchmarks}

    removed: dict[str, dict[int, Dropped]] = {}

    def check(rank: int, source: str, messages: list[list[dict[str, str]]], ids: list[str],
              rows: list[int]) -> None:
        for i, (c, turn) in enumerate(checker.check_records(messages)):
            if c is None:
                continue
            found.append((source, ids[i], c))
            if not c.contaminated:
                continue
            removed.setdefault(source, {})[rows[i]] = Dropped(
                reason=c.reason, stage="decontaminate",
                detail=f"{c.rule}: overlap {c.overlap:.2f}, coverage {c.coverage:.2f} with {c.benchmark} item "
                       f"{c.item_index}: {c.item_text[:200]}",
                extra={k: v for k, v in dataclasses.asdict(c).items()
                       if k != "contaminated" and (k != "numbers_normalised" or v)})
            shown = checker.texts_of(messages[i], lower=False)[turn]  # the text as written, for a person
            flagged[c.benchmark].append(audit_entry(checker, shown, c, source, ids[i]))

    _each_source(ctx, check)
    for source, rows in removed.items():
        ctx.candidates.remove(source, rows, ctx.sink)
    summary = summarise_contamination(found, list(benchmarks))
    summary["benchmarks"] = {name: len(prompts) for name, prompts in benchmarks.items()}
    if checker.numbers:
        summary["normalise_numbers"] = [name for name in benchmarks if name in checker.numbers]
    summary["flagged"] = flagged
    return summary


class Decontaminate:
    """Stage **decontaminate** (recipe ``decontaminate``): its card section is ``contamination``."""

    name = "decontaminate"
    label = "decontaminate"

    def run(self, ctx: StageContext) -> None:
        ctx.card_sections["contamination"] = decontaminate(ctx)
