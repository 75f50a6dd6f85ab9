"""Preference pairs already in TRL's conversational form: ``{"prompt", "chosen", "rejected", "id"?, "dataset"?}``.

The preference counterpart of the ``messages`` adapter: reads JSONL (also ``.jsonl.gz``) or Parquet whose
``prompt`` is a list of ``{role, content}`` ending with a user turn and whose ``chosen``/``rejected`` each
hold the one assistant reply, e.g. a preference build's own output or ``mixer generate``'s
``best_vs_worst``. Records keep their ``id`` and ``dataset`` when they have them (else the ``dataset``
option and ``<dataset>_<ordinal>``). A pair whose two replies are the same text (ignoring surrounding
whitespace) is dropped as ``chosen_equals_rejected``, as the other preference adapters do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mixer.errors import Location, RecordError
from mixer.records import ROLES, Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list
from mixer.sources.messages import _optional_label


@dataclass(frozen=True)
class PreferenceOptions:
    #: label for records without their own ``dataset`` field (also the id prefix)
    dataset: str = "preference"


def _turns(raw: dict[str, Any], key: str) -> list[Message]:
    out: list[Message] = []
    for j, item in enumerate(require_list(raw, key)):
        if not isinstance(item, dict):
            raise RecordError(f"{key}[{j}] must be an object with 'role' and 'content', found {type(item).__name__}")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise RecordError(f"{key}[{j}] needs a role in {list(ROLES)} and a string content, found {role!r}, "
                              f"{type(content).__name__}")
        out.append(msg(role, content))
    return out


@register
class Preference(Adapter):
    name = "preference"
    kind = "preference"
    description = ("Conversational preference pairs, JSONL or Parquet: {prompt:[{role, content}], "
                   "chosen:[assistant], rejected:[assistant], id?, dataset?}")
    license = None
    Options = PreferenceOptions

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        dataset = _optional_label(raw, "dataset") or self.options.dataset
        rid = _optional_label(raw, "id", allow_int=True) or f"{dataset}_{location.record}"
        prompt = _turns(raw, "prompt")
        if not prompt or prompt[-1]["role"] != "user":
            raise RecordError("'prompt' must be a non-empty list of messages ending with a user turn")
        replies = {}
        for key in ("chosen", "rejected"):
            turns = _turns(raw, key)
            if len(turns) != 1 or turns[0]["role"] != "assistant":
                raise RecordError(f"{key!r} must hold exactly one assistant message, found "
                                  f"{[t['role'] for t in turns]}")
            replies[key] = turns[0]
        if replies["chosen"]["content"].strip() == replies["rejected"]["content"].strip():
            yield Dropped(reason="chosen_equals_rejected", dataset=dataset, id=rid, stage="read",
                          detail="the chosen and rejected replies are the same text")
            return
        yield {**make_record(dataset, rid, [*prompt, replies["chosen"]]),  # type: ignore[typeddict-item]
               "rejected": [replies["rejected"]]}
