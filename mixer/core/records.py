"""The canonical chat record and the drop record that keeps every removal auditable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import pyarrow as pa

ROLES = ("system", "user", "assistant")


class Message(TypedDict):
    role: str
    content: str


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

#: The schema of allenai/tulu-v2-sft-mixture plus ``n_tokens``.
OUTPUT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("n_tokens", pa.int32()),
    ]
)

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


def record_key_messages(record: Record) -> list[Message]:
    """What identifies a record for exact dedup: the whole conversation, or for a preference
    pair the prompt alone (two pairs on the same prompt are duplicates for DPO)."""
    if "rejected" in record:
        return record["messages"][:-1]
    return record["messages"]


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
                              ("messages", pa.list_(MESSAGE_TYPE)), ("file_index", pa.int32()),
                              ("rejected", pa.list_(MESSAGE_TYPE)), *SCORE_COLUMNS,
                              ("hash", pa.binary(16)), ("n_tokens", pa.int32())])
#: ... and the records selection chose, in selection order, with their token counts
SELECTED_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                             ("messages", pa.list_(MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE)),
                             *SCORE_COLUMNS, ("n_tokens", pa.int32())])
