"""WizardLM Evol-Instruct V2 (``WizardLM_evol_instruct_V2_143k.json`` or its Parquet backup).

See SOURCES.md 2.8. Turns are mapped one by one and never reordered: a conversation that does not
alternate user/assistant (a leading ``gpt`` turn, an odd count) is dropped later by the pipeline's
normaliser, which counts it, rather than being repaired here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mixer.errors import Location, RecordError
from mixer.records import Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list, require_str

ROLE_MAP = {"human": "user", "gpt": "assistant"}


@register
class WizardLM(Adapter):
    name = "wizardlm"
    description = ("WizardLM evol-instruct V2 JSON array (or Parquet backup): "
                   "{idx, conversations: [{from: human|gpt, value}]}")
    # The dataset card says MIT; the Tulu V2 card lists "No license provided" for this subset.
    license = "MIT"
    columns = ("idx", "conversations")

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        record_id = f"wizardlm_{require_str(raw, 'idx')}"
        turns = require_list(raw, "conversations")
        messages: list[Message] = []
        for i, turn in enumerate(turns):
            try:
                turn = require_dict(turn)
                role = require_str(turn, "from")
                text = require_str(turn, "value")
            except RecordError as e:
                raise RecordError(f"conversations[{i}]: {e}") from None
            if role not in ROLE_MAP:
                yield Dropped(reason="unknown_role", dataset="wizardlm", id=record_id,
                              detail=f"role {role!r} in turn {i}", stage="read")
                return
            messages.append(msg(ROLE_MAP[role], text))
        yield make_record("wizardlm", record_id, messages)
