"""HH-RLHF's chosen transcripts as SFT conversations (``hh_rlhf_chosen``), for OpenBezoar's SFT stage on HH-RLHF.

OpenBezoar (Dissanayake et al. 2024) fine-tunes on a subset of HH-RLHF before DPO "to minimize distribution
shift" between the SFT model and the preference data. This adapter reads the same files as ``hh_rlhf`` with the
same parsing and drops (``unparseable_transcript``, ``diverges_before_last_turn``, ``chosen_equals_rejected``),
so the SFT stage and the DPO stage see the same conversations, and keeps the prompt turns plus the chosen reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.core.errors import Location
from mixer.core.records import Dropped, Record, make_record
from mixer.sources import register
from mixer.sources.hh_rlhf import DATASET, HhRlhf


@register
class HhRlhfChosen(HhRlhf):
    name = "hh_rlhf_chosen"
    kind = "sft"
    description = "Anthropic HH-RLHF JSONL: the prompt turns and the chosen reply of each pair, as SFT records"

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:  # type: ignore[override]
        for item in super().convert(raw, location):
            yield item if isinstance(item, Dropped) else make_record(DATASET, item["id"], item["messages"])
