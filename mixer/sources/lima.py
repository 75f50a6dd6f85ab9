"""LIMA (``train.jsonl``), see SOURCES.md 2.7."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list, require_str


@register
class Lima(Adapter):
    name = "lima"
    description = "LIMA JSON Lines: {conversations: [str, ...] alternating user/assistant, source} per line"
    license = "CC BY-NC-SA 4.0"

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        turns = require_list(raw, "conversations")
        require_str(raw, "source")  # not used in the output, but its absence means a different file
        for i, turn in enumerate(turns):
            if not isinstance(turn, str):
                raise RecordError(f"field 'conversations' item {i} must be a string, "
                                  f"found {type(turn).__name__}")
        record_id = self.numbered_id("lima", location)
        # A conversation ending on a user turn has nothing to learn from in its last message; Tulu
        # drops that message, and so do we.
        if len(turns) % 2:
            turns = turns[:-1]
        if not turns:
            yield Dropped(reason="empty_conversation", dataset="lima", id=record_id,
                          detail="no user/assistant pair", stage="read")
            return
        messages: list[Message] = [
            msg("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(turns)
        ]
        yield make_record("lima", record_id, messages)
