"""Stages that look across all sources' candidates after exact dedup and before sampling, so that
``take`` counts hold in the output: near-duplicate removal and benchmark decontamination.

Each stage removes rows from ``state.candidates``, records one ``Dropped`` per removed record (with
its evidence in ``extra``) and adds its section to the card.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from mixer.pipeline import BuildState
from mixer.records import Dropped


def _remove(state: BuildState, source: str, rows: dict[int, Dropped]) -> None:
    """Mark ``rows`` (table row index -> its Dropped) out of a source's candidates, in row order."""
    if not rows:
        return
    table = state.candidates[source]
    order = sorted(rows)
    picked = table.take(order, ["dataset", "id", "messages"]).to_pylist()
    for row_index, row in zip(order, picked, strict=True):
        d = rows[row_index]
        d.dataset, d.id, d.messages = row["dataset"], row["id"], row["messages"]
        state.drop(source, d)
    state.alive[source] = [i for i in state.alive[source] if i not in rows]


#: candidates converted to Python at a time
CHUNK_ROWS = 20_000

Visit = Callable[[int, str, list[list[dict[str, str]]], list[str], list[int]], None]


def _each_source(state: BuildState, fn: Visit) -> None:
    """Call ``fn(rank, source, messages, ids, rows)`` over the live candidates, in recipe order and in
    chunks, so only one chunk is ever held as Python objects."""
    for rank, s in enumerate(state.recipe.sources):
        table = state.candidates.get(s.name)
        alive = state.alive.get(s.name, [])
        for start in range(0, len(alive), CHUNK_ROWS):
            rows = alive[start:start + CHUNK_ROWS]
            chunk = table.take(rows, ["id", "messages"])
            fn(rank, s.name, chunk.column("messages").to_pylist(), chunk.column("id").to_pylist(), rows)


def near_dedup(state: BuildState) -> None:
    """MinHash LSH near-duplicates across sources; the copy from the source listed first is kept."""
    from mixer.dedup.near import (
        NearItem,
        SignaturePool,
        assistant_chars,
        find_near_duplicates,
        key_text,
        load_against,
        summarise_near,
    )

    near = state.recipe.dedup.near
    assert near is not None
    config = dataclasses.replace(near, workers=near.workers or state.workers)
    items: list[NearItem] = []  # without their texts: signatures are made batch by batch
    where: list[tuple[str, int]] = []
    parts: list[np.ndarray] = []
    inflight: deque[Callable[[], np.ndarray]] = deque()
    with SignaturePool(config.ngram, config.num_perm, config.seed, config.n_workers()) as pool:

        def sign(texts: list[str]) -> None:
            inflight.append(pool.submit(texts))
            while len(inflight) > 1:  # one batch signed while the next is prepared; no more queued
                parts.append(inflight.popleft()())

        def collect(rank: int, source: str, messages: list[list[dict[str, str]]], ids: list[str],
                    rows: list[int]) -> None:
            sign([key_text(m, config.key) for m in messages])
            for m, record_id, row in zip(messages, ids, rows, strict=True):
                items.append(NearItem("", rank, assistant_chars(m), record_id, source))
                where.append((source, row))

        _each_source(state, collect)
        against = load_against(config.against, config.key) if config.against else []
        if against:
            sign([text for _, text, _ in against])
        while inflight:
            parts.append(inflight.popleft()())
    sig = np.concatenate(parts, axis=0) if parts else np.empty((0, config.num_perm), dtype=np.uint32)
    found = find_near_duplicates(items, config, against, signatures_cache=sig)
    del sig
    per_source: dict[str, dict[int, Dropped]] = {}
    for d in found:
        source, row = where[d.index]
        per_source.setdefault(source, {})[row] = Dropped(
            reason="near_duplicate", stage="dedup", kept_id=d.kept_id,
            detail=f"estimated Jaccard {d.jaccard:.3f} with {d.kept_source}/{d.kept_id}",
            extra={"cluster_id": d.cluster_id, "jaccard": d.jaccard, "kept_source": d.kept_source,
                   "cluster_size": d.cluster_size, "link_jaccard": d.link_jaccard})
    for source, rows in per_source.items():
        _remove(state, source, rows)

    def text_of(i: int) -> str:
        source, row = where[i]
        return key_text(state.candidates[source].take([row], ["messages"]).column(0)[0].as_py(), config.key)

    summary = summarise_near(found, items, text_of=text_of)
    summary["config"] = {"key": config.key, "ngram": config.ngram, "num_perm": config.num_perm,
                         "threshold": config.threshold, "bands_rows": list(config.lsh_params()),
                         "against": list(config.against), "against_records": len(against)}
    state.extra_card["near_dedup"] = summary


def decontaminate(state: BuildState) -> None:
    """Drop records whose prompt overlaps an evaluation benchmark's prompts."""
    from mixer.decontaminate import Decontaminator, load_benchmarks, summarise_contamination

    recipe = state.recipe
    assert recipe.decontaminate is not None
    config = recipe.decontaminate
    benchmarks = load_benchmarks(config, base_dir=recipe.raw_dir)
    checker = Decontaminator(config, benchmarks)
    found: list[tuple[str, str, Any]] = []

    removed: dict[str, dict[int, Dropped]] = {}

    def check(rank: int, source: str, messages: list[list[dict[str, str]]], ids: list[str],
              rows: list[int]) -> None:
        results = checker.check_many([checker.text_of(m) for m in messages])
        for i, c in enumerate(results):
            if c is None:
                continue
            found.append((source, ids[i], c))
            if not c.contaminated:
                continue
            removed.setdefault(source, {})[rows[i]] = Dropped(
                reason=c.reason, stage="decontaminate",
                detail=f"{c.rule}: overlap {c.overlap:.2f}, coverage {c.coverage:.2f} with {c.benchmark} item "
                       f"{c.item_index}: {c.item_text[:200]}",
                extra={k: v for k, v in dataclasses.asdict(c).items() if k != "contaminated"})

    _each_source(state, check)
    for source, rows in removed.items():
        _remove(state, source, rows)
    summary = summarise_contamination(found, list(benchmarks))
    summary["benchmarks"] = {name: len(prompts) for name, prompts in benchmarks.items()}
    state.extra_card["contamination"] = summary
