"""Stage **filter** (record-level): the mentions-of-other-LLMs filter (Tulu V2's substring rule, or
open-instruct's current whole-word, assistant-only rule) and turn-count bounds.

The filters themselves are ``mixer.kernels.filters`` (pure: a record in, a reason and a detail or None
out); the mention filter screens a whole batch at once. ``max_tokens`` is not here: counting tokens
is expensive, so selection applies it only to the records it may take (``mixer.stages.select``).
"""

from __future__ import annotations

from mixer.core.records import Dropped, Record
from mixer.core.stats import SourceStats
from mixer.kernels.filters import LLMMentionFilter, TurnCountFilter
from mixer.recipe.load import Recipe
from mixer.stages.base import drop_record


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
