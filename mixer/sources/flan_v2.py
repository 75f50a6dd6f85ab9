"""FLAN v2 few-shot resample (``tulu_v2_resampled_flan_50k.jsonl``), see SOURCES.md 2.1."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.core.errors import Location
from mixer.core.records import Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_str


def flan_prompt(inputs: str) -> str:
    """open-instruct appends a newline to the prompt unless it already ends with one or a colon."""
    return inputs if inputs.endswith(("\n", ":")) else inputs + "\n"


def inputs_targets_record(raw: Any, dataset: str, record_id: str) -> Record:
    """FLAN's and CoT's shared line schema, ``{inputs, targets}``, as a one-turn conversation."""
    raw = require_dict(raw)
    inputs = require_str(raw, "inputs")
    targets = require_str(raw, "targets")
    return make_record(dataset, record_id, [msg("user", flan_prompt(inputs)), msg("assistant", targets)])


@register
class FlanV2(Adapter):
    name = "flan_v2"
    description = "FLAN v2 JSON Lines: {inputs, targets} per line (extra keys such as task are ignored)"
    license = "Apache-2.0"

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        yield inputs_targets_record(raw, "flan_v2", self.numbered_id("flan_v2", location))
