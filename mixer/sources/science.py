"""Scientific-literature tasks (``science_train.jsonl``), see SOURCES.md 2.10.

Each line is one task instance from one of six subsets (evidence_inference, qasper_truncated_4000,
scifact_json, scitldr_aic, scierc_ner, scierc_relation), named in its ``dataset`` field. ``output``
is often a JSON document, but it is the text the model must learn to write, so it is never parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_str


@register
class Science(Adapter):
    name = "science"
    description = "Tulu science JSON Lines: {dataset (subset), input, output} per line; output kept as text"
    # The mixture as a whole is ODC-BY; the six subsets carry their own licences (SciERC, SciFact,
    # Qasper, SciTLDR, Evidence Inference), which the card lists separately.
    license = "ODC-BY"

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        raw = require_dict(raw)
        subset = require_str(raw, "dataset")
        if not subset.strip():
            raise RecordError("field 'dataset' (the science subset name) is empty")
        prompt = require_str(raw, "input")
        output = require_str(raw, "output")
        yield make_record(
            f"science.{subset}",
            self.numbered_id("science", location),
            [msg("user", prompt), msg("assistant", output)],
        )
