"""Stage **filter** (record-level): the mentions-of-other-LLMs filter (Tulu V2's substring rule, or
open-instruct's current whole-word, assistant-only rule) and turn-count bounds.

Each rule returns a drop reason and a human detail (the matched keyword, the turn count), or None to
keep: the card reports why, not just "dropped". The mention rule screens a whole batch at once.
``max_tokens`` is not here: counting tokens is expensive, so selection applies it only to the records
it may take (``mixer.stages.select``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mixer.core.records import Dropped, Record
from mixer.core.stats import SourceStats
from mixer.recipe.load import Recipe
from mixer.stages.base import drop_record

#: how the mention filter matches (recipe ``filters.llm_mentions.mode``)
MENTION_MODES = ("substring", "word")

Verdict = tuple[str, str] | None


#: the only non-ASCII characters whose ``str.lower`` holds ASCII letters: "İ" -> "i" + U+0307 (so
#: "OPENAİ".lower() contains "openai") and the Kelvin sign -> "k"; found by lowering every code point
UNICODE_TO_ASCII_LOWER = ("\u0130", "\u212a")


def _lower_bytes(text: str) -> bytes:
    """``text.lower()`` as UTF-8, for matching ASCII keywords: ASCII case folding on the bytes (cheap, and
    the same for every other character), Python's full lowering where one of ``UNICODE_TO_ASCII_LOWER`` is."""
    if any(c in text for c in UNICODE_TO_ASCII_LOWER):
        text = text.lower()
    return text.encode("utf-8", "surrogatepass").lower()


class LLMMentionFilter:
    """Drop a record that mentions another LLM or its maker, in one of two modes.

    ``substring`` (Tulu V2's filter, the default for fidelity): a case-insensitive substring of any
    message, user turns too, exactly as the Tulu V2 mixture was filtered; it over-matches ("napalm",
    "bombard", "palm trees", "the bard", "Claude Monet"), which is part of reproducing the published
    counts.

    ``word``: the keyword as a whole word (``\\b`` on both sides, as a regex word boundary) in an
    assistant turn only, the two changes open-instruct's current keyword filter makes
    (``scripts/data/filtering_and_updates/filter_dataset_by_keywords.py``: ``\\b``-bounded,
    case-insensitive patterns, user turns skipped unless asked). mixer keeps its own keyword list;
    open-instruct's identity-phrase patterns are not copied. It no longer drops a keyword inside a
    word ("napalm", "bombard") or in a user turn only; a keyword that is also a common word ("Palm",
    "BARD") still matches as a word in a reply ("Palm trees grow ...") unless left out of ``keywords``.

    The keywords are ASCII. ``substring`` lowers text as open-instruct did (``str.lower``: "OPENAİ" with a
    Turkish dotted capital I holds "openai"); ``word`` folds ASCII case only (a Kelvin sign does not match "k").
    ``check_batch`` screens a batch with polars' Aho-Corasick ``contains_any`` (one pass over the text
    for all keywords); only records it flags are looked at in Python. A word match in an assistant
    turn is also a substring match somewhere, so the one screen serves both modes. A case-insensitive
    regex alternation over every record took half of a whole build; the screen is ~50x cheaper.
    """

    reason = "llm_mention"

    def __init__(self, keywords: Sequence[str], mode: str = "substring") -> None:
        if mode not in MENTION_MODES:
            raise ValueError(f"mode must be one of {MENTION_MODES}, got {mode!r}")
        self.mode = mode
        self.keywords = tuple(keywords)
        self._lowered = tuple(dict.fromkeys(k.lower() for k in self.keywords))
        if not all(k.isascii() for k in self._lowered):
            raise ValueError("LLM-mention keywords must be ASCII")
        self._lowered_bytes = tuple(k.encode() for k in self._lowered)
        # longest first, so the keyword named is the longest one that matches at a place
        alternatives = "|".join(re.escape(k) for k in sorted(self._lowered, key=len, reverse=True))
        self._word = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE | re.ASCII)

    def substring(self, record: Record) -> Verdict:
        """Tulu V2's verdict: the first keyword (in list order) found in any message, each message
        lowered as Python's ``str.lower`` does (open-instruct's ``should_be_filtered``)."""
        text = _lower_bytes("\n".join(m["content"] for m in record["messages"]))
        for keyword, raw in zip(self._lowered, self._lowered_bytes, strict=True):
            if raw in text:
                role = next(m["role"] for m in record["messages"] if raw in _lower_bytes(m["content"]))
                return self.reason, f"{keyword!r} in {role} turn"
        return None

    def word(self, record: Record) -> Verdict:
        """open-instruct's current verdict: the first whole-word keyword in an assistant turn."""
        for m in record["messages"]:
            if m["role"] == "assistant":
                found = self._word.search(m["content"])
                if found:
                    return self.reason, f"{found.group(0).lower()!r} as a word in assistant turn"
        return None

    def __call__(self, record: Record) -> Verdict:
        return self.substring(record) if self.mode == "substring" else self.word(record)

    def check_batch(self, records: Sequence[Record]) -> list[Verdict]:
        """``self(record)`` for each record, screened in one vectorised pass."""
        return [both[0] if self.mode == "substring" else both[1] for both in self.check_both(records)]

    def check_both(self, records: Sequence[Record]) -> list[tuple[Verdict, Verdict]]:
        """Each record's (substring, word) verdicts, screened in one vectorised pass: what the card
        reports per mode while the recipe's mode is applied."""
        if len(records) < 64:
            found = [self.substring(r) for r in records]
            return [(s, self.word(r) if s else None) for r, s in zip(records, found, strict=True)]
        import polars as pl

        texts = pl.Series(["\n".join(m["content"] for m in r["messages"]) for r in records], dtype=pl.String)
        screen = [*self._lowered, *UNICODE_TO_ASCII_LOWER]  # a record with one of those is decided in Python
        flagged = texts.str.contains_any(screen, ascii_case_insensitive=True).to_list()
        return [(self.substring(r), self.word(r)) if hit else (None, None)
                for r, hit in zip(records, flagged, strict=True)]


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
        self.mentions = LLMMentionFilter(lm.keywords, lm.mode or "substring") if lm.enabled else None
        self.mention_exempt = set(lm.exempt)
        #: a recipe that names a mode gets both modes' drop counts (``SourceStats.mention_modes``)
        self.compare_modes = lm.mode is not None
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
            if isinstance(flt, LLMMentionFilter):
                both = flt.check_both(batch)
                verdicts = [b[0] if flt.mode == "substring" else b[1] for b in both]
                if self.compare_modes:
                    for mode, k in (("substring", 0), ("word", 1)):
                        stats.mention_modes[mode] += sum(1 for b in both if b[k] is not None)
            else:
                verdicts = [flt(r) for r in batch]
            for i, verdict in zip(alive, verdicts, strict=True):
                if verdict:
                    out[i] = drop_record(out[i], verdict[0], "filter", verdict[1])  # type: ignore[arg-type]
        return out
