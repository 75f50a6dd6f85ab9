"""Record filters: each returns a drop reason (and a human detail) or None to keep.

Filters separate the statistic from the decision where that helps the card (the matched keyword is
reported, not just "dropped").
"""

from __future__ import annotations

from collections.abc import Sequence

from mixer.records import Record


class LLMMentionFilter:
    """Tulu V2's filter: drop a record when any message mentions another LLM or its maker.

    Case-insensitive *substring* match over every message (user turns too), exactly as the Tulu V2
    mixture was filtered; it over-matches on purpose-free words ("napalm", "Claude Monet"), which is
    part of reproducing the published counts.

    Implemented as ``keyword in text.lower()`` per keyword: CPython's substring search is far faster
    than one case-insensitive regex alternation (measured: the regex took half of a whole build).
    Keywords are matched in list order, and the first one found is reported.
    """

    reason = "llm_mention"

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(keywords)
        self._lowered = tuple(dict.fromkeys(k.lower() for k in self.keywords))

    def __call__(self, record: Record) -> tuple[str, str] | None:
        text = "\n".join(m["content"] for m in record["messages"]).lower()
        for keyword in self._lowered:
            if keyword in text:
                role = next(m["role"] for m in record["messages"] if keyword in m["content"].lower())
                return self.reason, f"{keyword!r} in {role} turn"
        return None


class TurnCountFilter:
    """Bounds on the number of assistant turns."""

    def __init__(self, min_turns: int | None, max_turns: int | None) -> None:
        self.min_turns, self.max_turns = min_turns, max_turns

    def __call__(self, record: Record) -> tuple[str, str] | None:
        turns = sum(1 for m in record["messages"] if m["role"] == "assistant")
        if self.min_turns is not None and turns < self.min_turns:
            return "too_few_turns", f"{turns} < {self.min_turns}"
        if self.max_turns is not None and turns > self.max_turns:
            return "too_many_turns", f"{turns} > {self.max_turns}"
        return None
