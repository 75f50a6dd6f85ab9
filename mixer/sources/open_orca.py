"""Open-Orca GPT-4 completions (``1M-GPT4-Augmented.parquet``), see SOURCES.md 2.9."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.errors import Location, RecordError
from mixer.records import Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_str


@register
class OpenOrca(Adapter):
    name = "open_orca"
    description = "OpenOrca Parquet: columns id, system_prompt, question, response"
    license = "MIT"
    columns = ("id", "system_prompt", "question", "response")

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        raw = require_dict(raw)
        raw_id = require_str(raw, "id")
        if not raw_id:
            raise RecordError("field 'id' is empty")
        system_prompt = require_str(raw, "system_prompt", allow_none=True)
        question = require_str(raw, "question")
        response = require_str(raw, "response")
        # Tulu writes an empty system message when system_prompt is ""; an empty system turn
        # carries nothing and only changes the chat template's output, so we leave it out.
        messages: list[Message] = [msg("system", system_prompt)] if system_prompt else []
        messages += [msg("user", question), msg("assistant", response)]
        yield make_record("open_orca", f"open_orca_{raw_id}", messages)
