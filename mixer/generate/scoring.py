"""Reward-model scoring sorted by length, in batches sized by a token budget.

Scoring pads every conversation of a batch to the longest one. Taking conversations in order of length and
filling each batch until ``batch rows x longest row`` would pass the budget keeps the padding small and the
memory of a pass bounded, whatever the mix of short and long replies; a conversation longer than the budget
goes alone. The order is a pure function of the lengths (ties by position), so the same inputs form the
same batches and give the same bytes.
"""

from __future__ import annotations

from typing import Any


def token_budget_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Positions of ``lengths`` grouped into batches: sorted by length (ties by position), each batch as many
    as fit ``len(batch) * max(length in batch) <= budget`` (at least one)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # lengths rise along `order`, so the newcomer is the batch's longest
        if current and (len(current) + 1) * lengths[i] > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def score_by_length(scorer: Any, convs: list[list[dict[str, str]]], budget: int) -> list[float]:
    """One reward per conversation, in the input order, scored in length-sorted token-budget batches."""
    encoded = [scorer.encode(c) for c in convs]
    rewards: list[float] = [0.0] * len(convs)
    saved = scorer.batch_size
    try:
        for batch in token_budget_batches([len(e) for e in encoded], budget):
            scorer.batch_size = len(batch)  # one forward pass per budget batch
            for i, r in zip(batch, scorer.score_ids([encoded[i] for i in batch]), strict=True):
                rewards[i] = r
    finally:
        scorer.batch_size = saved
    return rewards
