"""Selecting by tokens (the stage is ``mixer.stages.select``; the recipe side is ``mixer.recipe.budget``).

Pure functions over arrays of positions and token counts: the walk that stops at the record that would
pass a budget, and how a source with fewer tokens than its budget is repeated. The stage gives them
its counting and dropping as callables, so they hold no state and touch no file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def walk_tokens(order: np.ndarray, budget: int, max_tokens: int | None,
                count: Callable[[np.ndarray], list[int]], drop: Callable[[np.ndarray, np.ndarray], None],
                chunk_rows: int = 20_000) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """Walk ``order`` taking records until the next one that fits ``max_tokens`` would pass ``budget``.

    Returns the rows taken, their counts (int64), how many positions of ``order`` the walk went over (the
    rest are not sampled) and the count of the record it stopped at (None: it walked all of ``order``).
    Records over ``max_tokens`` that the walk reaches go to ``drop``, and it goes on. ``count`` gives a
    chunk's counts; chunks (at most ``chunk_rows``) are sized from the tokens still to go and the mean
    count so far (a few records past the stop may be counted, which changes no result: the stop is
    decided per record).
    """
    got: list[np.ndarray] = []
    got_counts: list[np.ndarray] = []
    total = taken = pos = 0
    stop: int | None = None
    while pos < len(order):
        want = 1024 if not taken else int((budget - total) / (total / taken) * 1.05) + 16
        chunk = order[pos:pos + min(chunk_rows, max(256, want))]
        counts = np.asarray(count(chunk), dtype=np.int64)
        fits = counts <= max_tokens if max_tokens is not None else np.ones(len(chunk), dtype=bool)
        reached = total + np.cumsum(np.where(fits, counts, 0))
        over = np.flatnonzero(fits & (reached > budget))
        end = int(over[0]) if len(over) else len(chunk)
        got.append(chunk[:end][fits[:end]])
        got_counts.append(counts[:end][fits[:end]])
        too_long = ~fits[:end]
        if too_long.any():
            drop(chunk[:end][too_long], counts[:end][too_long])
        taken += int(fits[:end].sum())
        total = int(reached[end - 1]) if end else total
        pos += end
        if len(over):
            stop = int(counts[end])
            break
    return (np.concatenate([np.empty(0, np.int64), *got]), np.concatenate([np.empty(0, np.int64), *got_counts]),
            pos, stop)


def upsample_plan(counts: np.ndarray, budget: int) -> tuple[int, int]:
    """(whole copies, remainder records) meeting ``budget`` from records of these ``counts`` (in seeded
    order, together fewer than ``budget``): ``k = budget // total`` copies of all of them, then the first
    records once more up to the record that would pass what is left."""
    total = int(counts.sum())
    repeats = budget // total
    left = budget - repeats * total
    return repeats, int(np.searchsorted(np.cumsum(counts), left, side="right"))
