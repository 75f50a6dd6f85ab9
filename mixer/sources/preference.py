"""Preference pairs already in TRL's conversational form: ``{"prompt", "chosen", "rejected", "id"?, "dataset"?}``.

The preference counterpart of the ``messages`` adapter: reads JSONL (also ``.jsonl.gz``) or Parquet whose
``prompt`` is a list of ``{role, content}`` ending with a user turn and whose ``chosen``/``rejected`` each
hold the one assistant reply, e.g. a preference build's own output or ``mixer generate``'s
``best_vs_worst``. Records keep their ``id`` and ``dataset`` when they have them (else the ``dataset``
option and ``<dataset>_<ordinal>``). A pair whose two replies are the same text (ignoring surrounding
whitespace) is dropped as ``chosen_equals_rejected``, as the other preference adapters do.

Ratings of the two replies go on with the pair when the file has them: ``score_chosen``/``score_rejected``
(a preference build's own columns), or with option ``scores: reward`` the ``reward_chosen``/``reward_rejected``
columns ``mixer generate`` writes (the reward model's raw outputs, unbounded and on that model's own
scale, not UltraFeedback's 1-10). Both or neither: a pair with one of the two is an error, a pair with
neither (or both null) is an unrated pair, as HH-RLHF's are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mixer.core.errors import Location, RecordError
from mixer.core.records import ROLES, Dropped, Message, Record, Scores, make_pair, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list
from mixer.sources.messages import _optional_label


@dataclass(frozen=True)
class PreferenceOptions:
    #: label for records without their own ``dataset`` field (also the id prefix; default: the source's name)
    dataset: str | None = None
    #: which columns rate the two replies: ``score`` (``score_chosen``/``score_rejected``) or ``reward``
    #: (``reward_chosen``/``reward_rejected``, as ``mixer generate`` names them); absent columns: unrated
    scores: Literal["score", "reward"] = "score"


def _scores(raw: dict[str, Any], prefix: str) -> Scores:
    """The pair's two ratings as the record's score fields, or none for an unrated pair."""
    keys = (f"{prefix}_chosen", f"{prefix}_rejected")
    values = [raw.get(key) for key in keys]
    if all(v is None for v in values):
        return {}
    for key, value in zip(keys, values, strict=True):
        if value is None:
            other = keys[1 - keys.index(key)]
            raise RecordError(f"field {other!r} is set but {key!r} is missing or null: a pair is rated on both "
                              "replies or on neither")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordError(f"field {key!r} must be a finite number, found {value!r}")
    return {"score_chosen": float(values[0]), "score_rejected": float(values[1])}


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
                   "chosen:[assistant], rejected:[assistant], id?, dataset?, score_chosen?, score_rejected?}")
    license = None
    Options = PreferenceOptions

    @classmethod
    def score_scale(cls, options: Any) -> str | None:
        if options.scores == "reward":
            return ("reward-model outputs (mixer generate's reward_chosen/reward_rejected): unbounded, on that "
                    "model's own scale")
        return "the file's score_chosen/score_rejected (a preference build's: its sources' own scales)"

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        dataset = _optional_label(raw, "dataset") or self.options.dataset or self.context.source
        rid = _optional_label(raw, "id", allow_int=True) or self.numbered_id(dataset, location)
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
        yield make_pair(dataset, rid, [*prompt, replies["chosen"]], [replies["rejected"]],
                        _scores(raw, self.options.scores))
