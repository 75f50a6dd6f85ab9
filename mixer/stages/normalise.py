"""Stage **normalise** (record-level): Unicode NFC, surrounding whitespace, empty turns, turn order.

The text rules are ``mixer.kernels.normalise`` (pure functions); this stage applies them to a batch and turns
a record that cannot be repaired into a drop (``bad_turn_order``, ``no_assistant_turn``, ...). What
each rule changed is counted in the source's ``normalised`` counter, which the card reports.
"""

from __future__ import annotations

from mixer.core.records import Dropped, Record
from mixer.core.stats import SourceStats
from mixer.kernels.normalise import normalise_record
from mixer.recipe.load import Recipe
from mixer.stages.base import drop_record


class Normalise:
    """The recipe's ``normalise`` rules over a batch of one source's records."""

    name = "normalise"

    def __init__(self, recipe: Recipe) -> None:
        self.rules = recipe.normalise

    def process(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]:
        out: list[Record | Dropped] = []
        for record in records:
            record, problem = normalise_record(record, self.rules, stats.normalised)
            out.append(drop_record(record, problem, "normalise") if problem else record)
        return out
