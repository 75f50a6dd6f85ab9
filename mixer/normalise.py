"""Normalisation of text and turn structure.

Runs on every canonical record before filters, so that filters, dedup hashes and token counts all
see the same text. Each rule that changes something is counted (``Counter`` of rule names) so the
card can say how much each rule touched; a record the rules cannot repair is dropped with a reason.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from mixer.recipe import Normalise
from mixer.records import Message, Record


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


def normalise_record(record: Record, rules: Normalise, touched: Counter[str]) -> tuple[Record, str | None]:
    """The normalised record and, if it cannot be kept, the drop reason.

    ``touched`` counts records changed per rule (``nfc``, ``strip``) and empty turns removed.
    """
    changed_nfc = changed_strip = False
    messages: list[Message] = []
    for m in record["messages"]:
        content = m["content"]
        if rules.nfc and not content.isascii():
            nfc = unicodedata.normalize("NFC", content)
            if nfc != content:
                changed_nfc = True
                content = nfc
        if rules.strip:
            stripped = content.strip()
            if stripped != content:
                changed_strip = True
                content = stripped
        if rules.drop_empty_turns and not content.strip():
            touched["empty_turns_removed"] += 1
            continue
        messages.append({"role": m["role"], "content": content})
    if changed_nfc:
        touched["nfc"] += 1
    if changed_strip:
        touched["strip"] += 1
    out: Record = {"dataset": record["dataset"], "id": record["id"], "messages": messages}
    if not rules.require_turn_order:
        return out, None
    return out, turn_order_problem(messages)
