"""Users' own data already in the canonical shape: ``{"messages": [{"role", "content", "train"?}], "id"?, "dataset"?}``.

A message's optional ``train`` (true, false or null) is the per-message loss flag: ``false`` marks a turn
as context only (Ghost Attention's earlier assistant turns); it is kept through the build and written to
the output's ``messages`` (see :data:`mixer.core.records.FLAGGED_OUTPUT_SCHEMA`).

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
    #: keep only records whose ``score_field`` is at least this (e.g. ``mixer generate --method judge``'s
    #: ``judge_score``); a record without a score is dropped as ``unscored``, one below as ``below_min_score``
    min_score: float | None = None
    score_field: str = "judge_score"


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
    description = "Canonical chat records, JSONL or Parquet: {messages:[{role, content, train?}], id?, dataset?}"
    license = None
    Options = MessagesOptions

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        dataset = _optional_label(raw, "dataset") or self.options.dataset or self.context.source
        rid = _optional_label(raw, "id", allow_int=True) or self.numbered_id(dataset, location)
        if self.options.min_score is not None:
            score = raw.get(self.options.score_field)
            if score is None:
                yield Dropped(reason="unscored", dataset=dataset, id=rid,
                              detail=f"no {self.options.score_field} (min_score {self.options.min_score})")
                return
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise RecordError(f"field {self.options.score_field!r} must be a number, found {type(score).__name__}")
            if score < self.options.min_score:
                yield Dropped(reason="below_min_score", dataset=dataset, id=rid,
                              detail=f"{self.options.score_field} {score} < min_score {self.options.min_score}")
                return
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
            message = msg(role, content)
            flag = item.get("train")
            if flag is not None:
                if not isinstance(flag, bool):
                    raise RecordError(f"messages[{j}]: field 'train' must be true, false or null, found "
                                      f"{type(flag).__name__}")
                message["train"] = flag
            messages.append(message)
        yield make_record(dataset, rid, messages)
