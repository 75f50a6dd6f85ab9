"""Users' own data already in the canonical shape: ``{"messages": [{"role", "content"}], "id"?, "dataset"?}``.

Reads JSONL (also ``.jsonl.gz``) or Parquet, e.g. a previous ``mixer`` output or a Hugging Face
chat dataset. Records keep their own ``id`` and ``dataset`` when they have them, so a mixture
can be rebuilt from its own output; otherwise the ``dataset`` option (default: the recipe's source
name) labels them and the id is ``<dataset>_<ordinal in the file>`` (``<dataset>_<file stem>_<ordinal>``
when the source reads several files).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mixer.core.errors import Location, RecordError
from mixer.core.records import ROLES, Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list, require_str


@dataclass(frozen=True)
class MessagesOptions:
    #: label for records without their own ``dataset`` field (also the id prefix; default: the source's name)
    dataset: str | None = None


def _optional_label(raw: dict[str, Any], key: str, *, allow_int: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) or (allow_int and isinstance(value, int) and not isinstance(value, bool)):
        return str(value) if value != "" else None
    kinds = "a string or integer" if allow_int else "a string"
    raise RecordError(f"field {key!r} must be {kinds}, found {type(value).__name__}")


@register
class Messages(Adapter):
    name = "messages"
    description = "Canonical chat records, JSONL or Parquet: {messages:[{role, content}], id?, dataset?}"
    license = None
    Options = MessagesOptions

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        dataset = _optional_label(raw, "dataset") or self.options.dataset or self.context.source
        rid = _optional_label(raw, "id", allow_int=True) or self.numbered_id(dataset, location)
        messages: list[Message] = []
        for j, item in enumerate(require_list(raw, "messages")):
            if not isinstance(item, dict):
                raise RecordError(f"messages[{j}] must be a JSON object, found {type(item).__name__}")
            try:
                role = require_str(item, "role")
                content = require_str(item, "content")
            except RecordError as e:
                raise RecordError(f"messages[{j}]: {e}") from None
            if role not in ROLES:
                yield Dropped(reason="unknown_role", dataset=dataset, id=rid,
                              detail=f"messages[{j}] has role {role!r}; expected one of {', '.join(ROLES)}")
                return
            messages.append(msg(role, content))
        yield make_record(dataset, rid, messages)
