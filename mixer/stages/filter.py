"""Stage **filter** (record-level): Tulu V2's mentions-of-other-LLMs filter and turn-count bounds.

Each rule returns a drop reason and a human detail (the matched keyword, the turn count), or None to
keep: the card reports why, not just "dropped". The mention rule screens a whole batch at once.
``max_tokens`` is not here: counting tokens is expensive, so selection applies it only to the records
it may take (``mixer.stages.select``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mixer.core.records import Dropped, Record
from mixer.core.stats import SourceStats
from mixer.recipe.load import Recipe
from mixer.stages.base import drop_record


class LLMMentionFilter:
    """Tulu V2's filter: drop a record when any message mentions another LLM or its maker.

    Case-insensitive *substring* match over every message (user turns too), exactly as the Tulu V2
    mixture was filtered; it over-matches on purpose-free words ("napalm", "Claude Monet"), which is
    part of reproducing the published counts. The keywords are ASCII and matching folds ASCII case
    only (a Kelvin sign does not match "k").

    ``check_batch`` screens a batch with polars' Aho-Corasick ``contains_any`` (one pass over the
    text for all keywords); only records it flags are looked at in Python, to name the keyword.
    A case-insensitive regex alternation took half of a whole build; this is ~50x cheaper.
    """

    reason = "llm_mention"

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(keywords)
        self._lowered = tuple(dict.fromkeys(k.lower() for k in self.keywords))
        if not all(k.isascii() for k in self._lowered):
            raise ValueError("LLM-mention keywords must be ASCII")
        self._lowered_bytes = tuple(k.encode() for k in self._lowered)

    def __call__(self, record: Record) -> tuple[str, str] | None:
        text = "\n".join(m["content"] for m in record["messages"]).encode("utf-8", "surrogatepass").lower()
        for keyword, raw in zip(self._lowered, self._lowered_bytes, strict=True):
            if raw in text:
                role = next(m["role"] for m in record["messages"]
                            if raw in m["content"].encode("utf-8", "surrogatepass").lower())
                return self.reason, f"{keyword!r} in {role} turn"
        return None

    def check_batch(self, records: Sequence[Record]) -> list[tuple[str, str] | None]:
        """``self(record)`` for each record, screened in one vectorised pass."""
        if len(records) < 64:
            return [self(r) for r in records]
        import polars as pl

        texts = pl.Series(["\n".join(m["content"] for m in r["messages"]) for r in records], dtype=pl.String)
        flagged = texts.str.contains_any(list(self._lowered), ascii_case_insensitive=True).to_list()
        return [self(r) if hit else None for r, hit in zip(records, flagged, strict=True)]


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


class Filter:
    """The recipe's ``filters`` over a batch of one source's records, in order."""

    name = "filter"

    def __init__(self, recipe: Recipe) -> None:
        lm = recipe.filters.llm_mentions
        self.mentions = LLMMentionFilter(lm.keywords) if lm.enabled else None
        self.mention_exempt = set(lm.exempt)
        f = recipe.filters
        self.turns = TurnCountFilter(f.min_turns, f.max_turns) \
            if f.min_turns is not None or f.max_turns is not None else None

    def process(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]:
        out: list[Record | Dropped] = list(records)
        for flt in (self.mentions if source not in self.mention_exempt else None, self.turns):
            if flt is None:
                continue
            alive = [i for i, r in enumerate(out) if not isinstance(r, Dropped)]
            batch = [out[i] for i in alive]
            verdicts = flt.check_batch(batch) if isinstance(flt, LLMMentionFilter) else [flt(r) for r in batch]
            for i, verdict in zip(alive, verdicts, strict=True):
                if verdict:
                    out[i] = drop_record(out[i], verdict[0], "filter", verdict[1])  # type: ignore[arg-type]
        return out
