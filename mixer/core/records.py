"""The canonical chat record and the drop record that keeps every removal auditable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

import pyarrow as pa

ROLES = ("system", "user", "assistant")


class Message(TypedDict):
    role: str
    content: str
    #: ``False``: the turn is context, not a target (``mixer train sft`` puts no loss on it). Absent or
    #: null: today's behaviour (assistant turns carry loss). Ghost Attention's records set it.
    train: NotRequired[bool | None]


class Record(TypedDict):
    dataset: str
    id: str
    messages: list[Message]


class Scores(TypedDict, total=False):
    """A preference pair's two ratings, present together or not at all (an unrated pair)."""

    score_chosen: float
    score_rejected: float


class PreferenceRecord(Record):
    """A preference pair: ``messages`` end with the chosen reply, ``rejected`` holds the other one (one
    assistant message); the scores only where the source rates its pairs. Every stage that takes a
    ``Record`` takes a pair too, and those that rebuild a record keep ``rejected`` and the scores."""

    rejected: list[Message]
    score_chosen: NotRequired[float]
    score_rejected: NotRequired[float]


def make_record(dataset: str, id: str, messages: list[Message]) -> Record:
    """Build a canonical record; adapters call this so the key order is always the same."""
    return {"dataset": dataset, "id": id, "messages": messages}


def make_pair(dataset: str, id: str, messages: list[Message], rejected: list[Message],
              scores: Scores | None = None) -> PreferenceRecord:
    """Build a preference pair (the same key order as ``make_record``, then ``rejected``, then the scores)."""
    pair: PreferenceRecord = {"dataset": dataset, "id": id, "messages": messages, "rejected": rejected}
    if scores:
        pair.update(scores)
    return pair


def msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


@dataclass(slots=True)
class Dropped:
    """A record (or raw item) removed from the mixture, with why.

    ``stage`` is where it happened (read, normalise, filter, dedup, select); ``reason`` is the short
    machine name counted in the card; ``detail`` is free text for humans (a matched keyword, the
    parse error, the id of the kept duplicate).
    """

    reason: str
    dataset: str = ""
    id: str = ""
    detail: str = ""
    messages: list[Message] | None = None
    raw: str | None = None
    stage: str = "read"
    source: str = ""
    kept_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
#: A message with the optional per-message loss flag (null where a record does not set it). The build's
#: intermediate tables carry it; the output has it only when some record sets it, so outputs of records
#: without it keep ``OUTPUT_SCHEMA`` byte for byte.
FLAGGED_MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()), ("train", pa.bool_())])

#: The schema of allenai/tulu-v2-sft-mixture plus ``n_tokens``.
OUTPUT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("n_tokens", pa.int32()),
    ]
)
#: ... and the same with the per-message ``train`` flag, for a mixture where some message sets it
FLAGGED_OUTPUT_SCHEMA = OUTPUT_SCHEMA.set(2, pa.field("messages", pa.list_(FLAGGED_MESSAGE_TYPE)))


def untrained_turns(messages: list[Message]) -> int:
    """How many messages a record marks ``train: false``."""
    return sum(1 for m in messages if m.get("train") is False)

#: A preference record's optional ratings of its two replies (UltraFeedback's ``score_chosen`` /
#: ``score_rejected``): the record keys, and the nullable float columns of the candidate, selected and
#: output tables. Sources without ratings (HH-RLHF) leave them out of the record and null in the tables;
#: ``mixer train rm`` derives Llama 2's margin from them.
SCORE_FIELDS = ("score_chosen", "score_rejected")
SCORE_COLUMNS = [(name, pa.float64()) for name in SCORE_FIELDS]

#: Preference pairs for DPO, in TRL's conversational form: ``prompt`` ends with a user turn,
#: ``chosen`` and ``rejected`` each hold the one assistant reply; the scores are null for unrated pairs.
PREFERENCE_OUTPUT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("prompt", pa.list_(MESSAGE_TYPE)),
        ("chosen", pa.list_(MESSAGE_TYPE)),
        ("rejected", pa.list_(MESSAGE_TYPE)),
        *SCORE_COLUMNS,
        ("n_tokens", pa.int32()),
    ]
)


def record_scores(record: Record | PreferenceRecord | dict[str, Any]) -> Scores:
    """The score fields a record (or a candidate row) carries (none for an SFT record or an unrated
    pair); the stages that rebuild a record (normalise, sample-then-filter) copy them with this, so no
    stage loses them."""
    scores: Scores = {}
    for key in SCORE_FIELDS:
        value = record.get(key)
        if value is not None:
            scores[key] = value  # type: ignore[literal-required]  # key is one of SCORE_FIELDS
    return scores


#: what identifies a preference pair for exact dedup (recipe ``dedup.exact.preference_key``)
PREFERENCE_KEYS = ("pair", "prompt")


def record_key_messages(record: Record, preference_key: str = "pair") -> list[Message]:
    """What identifies a record for exact dedup: the whole conversation; for a preference pair, the
    whole pair (``pair``: prompt, chosen and rejected reply) or its prompt alone (``prompt``: one pair
    per prompt, mixer's rule before issue 23).

    Why the pair by default: two pairs on one prompt with different replies are different training
    signal (real HH-RLHF has such pairs), and the prompt key dropped them as copies. The rejected
    reply's turns get their own role names (``rejected:assistant``), so a pair never hashes like a
    conversation that continues with that reply."""
    if "rejected" not in record:
        return record["messages"]
    if preference_key == "prompt":
        return record["messages"][:-1]
    rejected = cast(PreferenceRecord, record)["rejected"]
    return [*record["messages"], *({"role": f"rejected:{m['role']}", "content": m["content"]} for m in rejected)]


DROPPED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("kept_id", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("raw", pa.string()),
        # stage-specific facts as a JSON object: near-dedup cluster id and Jaccard, matched
        # benchmark item, the kept copy's source
        ("extra", pa.string()),
    ]
)

#: The build's intermediate records: a source's candidates after the read stage (with the read
#: unit's file index, the exact-dedup hash and, for ``take: all`` sources, tokens counted while reading)
CANDIDATE_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                              ("messages", pa.list_(FLAGGED_MESSAGE_TYPE)), ("file_index", pa.int32()),
                              ("rejected", pa.list_(MESSAGE_TYPE)), *SCORE_COLUMNS,
                              ("hash", pa.binary(16)), ("n_tokens", pa.int32())])
#: ... and the records selection chose, in selection order, with their token counts
SELECTED_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                             ("messages", pa.list_(FLAGGED_MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE)),
                             *SCORE_COLUMNS, ("n_tokens", pa.int32())])
