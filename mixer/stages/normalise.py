"""Stage **normalise** (record-level): Unicode NFC, surrounding whitespace, empty turns, turn order.

Runs on every canonical record before filters, so that filters, dedup hashes and token counts all
see the same text. The rules are plain functions (``normalise_record``); the stage applies them to a
batch and turns a record that cannot be repaired into a drop (``bad_turn_order``,
``no_assistant_turn``, ...). Each rule that changes something is counted in the source's
``normalised`` counter (a ``Counter`` of rule names), which the card reports.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from mixer.core.records import Dropped, Message, Record, make_pair, record_scores
from mixer.core.stats import SourceStats
from mixer.recipe.load import Recipe
from mixer.recipe.settings import NormaliseSettings
from mixer.stages.base import drop_record


def turn_order_problem(messages: list[Message]) -> str | None:
    """Why ``messages`` do not follow ``[system] user assistant (user assistant)*``, else None."""
    if not messages:
        return "empty_conversation"
    if not any(m["role"] == "assistant" for m in messages):
        return "no_assistant_turn"
    start = 1 if messages[0]["role"] == "system" else 0
    body = messages[start:]
    if len(body) % 2:
        return "bad_turn_order"
    for i, m in enumerate(body):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            return "bad_turn_order"
    return None


def turn_order_detail(messages: list[Message], removed: int = 0) -> str:
    """Where ``messages`` break the turn order, for a person reading ``dropped/`` (messages counted from 1),
    after saying how many empty turns normalising removed first: their removal is often what broke the order,
    and ``dropped/`` keeps the record as it came, so the count says why its numbering differs."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    body = messages[start:]
    where = ""
    for i, m in enumerate(body):
        due = "user" if i % 2 == 0 else "assistant"
        if m["role"] != due:
            where = f"message {start + i + 1} of {len(messages)} is {m['role']!r} where {due!r} was due"
            break
    else:
        if len(body) % 2:
            where = f"ends with a {body[-1]['role']!r} turn that has no reply"
    if not removed:
        return where
    emptied = f"{removed} empty turn{'s' if removed != 1 else ''} removed"
    return f"{emptied}; then {where}" if where else emptied


def _normalise_text(content: str, rules: NormaliseSettings, changed: set[str]) -> str:
    if rules.nfc and not content.isascii():
        nfc = unicodedata.normalize("NFC", content)
        if nfc != content:
            changed.add("nfc")
            content = nfc
    if rules.strip:
        stripped = content.strip()
        if stripped != content:
            changed.add("strip")
            content = stripped
    return content


def _clean(content: str) -> bool:
    return content.isascii() and content != "" and content.strip() is content


def normalise_record(record: Record, rules: NormaliseSettings, touched: Counter[str]) -> tuple[Record, str | None]:
    """The normalised record and, if it cannot be kept, the drop reason.

    ``touched`` counts records changed per rule (``nfc``, ``strip``) and empty turns removed. A
    preference pair's ``rejected`` reply is normalised the same way; an empty one drops the pair.
    """
    if "rejected" not in record and all(_clean(m["content"]) for m in record["messages"]):
        # the common case, decided without copying: every turn ASCII (so NFC), non-empty and stripped
        # (``str.strip`` returns the very same object when there is nothing to strip)
        out: Record = {"dataset": record["dataset"], "id": record["id"], "messages": record["messages"]}
        return out, turn_order_problem(out["messages"]) if rules.require_turn_order else None
    changed: set[str] = set()
    messages: list[Message] = []
    for m in record["messages"]:
        content = _normalise_text(m["content"], rules, changed)
        if rules.drop_empty_turns and not content.strip():
            touched["empty_turns_removed"] += 1
            continue
        turn: Message = {"role": m["role"], "content": content}
        if m.get("train") is not None:  # the per-message loss flag survives normalising
            turn["train"] = m["train"]
        messages.append(turn)
    out = {"dataset": record["dataset"], "id": record["id"], "messages": messages}
    problem: str | None = None
    rejected = record.get("rejected")
    if rejected is not None:
        normalised = [{"role": m["role"], "content": _normalise_text(m["content"], rules, changed)}
                      for m in rejected]
        out = make_pair(out["dataset"], out["id"], messages, normalised, record_scores(record))
        if len(normalised) != 1 or normalised[0]["role"] != "assistant" or not normalised[0]["content"].strip():
            problem = "empty_or_invalid_rejected"
    touched.update(changed)
    if problem is None and rules.require_turn_order:
        problem = turn_order_problem(messages)
    return out, problem


class Normalise:
    """The recipe's ``normalise`` rules over a batch of one source's records."""

    name = "normalise"

    def __init__(self, recipe: Recipe) -> None:
        self.rules = recipe.normalise

    def process(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]:
        out: list[Record | Dropped] = []
        for record in records:
            normalised, problem = normalise_record(record, self.rules, stats.normalised)
            if problem is None:
                out.append(normalised)
                continue
            # the record as it came (empty turns included): what broke it stays visible in dropped/
            removed = len(record["messages"]) - len(normalised["messages"])
            detail = (turn_order_detail(normalised["messages"], removed) if problem == "bad_turn_order"
                      else turn_order_detail([], removed))
            out.append(drop_record(record, problem, "normalise", detail))
        return out
