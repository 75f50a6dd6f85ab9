"""The exact-dedup key: a content hash of the messages (the stage is ``mixer.stages.exact_dedup``).

The hash covers roles and normalised contents, not ids or dataset labels.
"""

from __future__ import annotations

import hashlib

from mixer.core.records import Message


def content_hash(messages: list[Message]) -> bytes:
    """blake2b-128 of ``role NUL content SOH`` per message, UTF-8 (one encode and one update: the
    same digest as hashing the parts one by one, at about two thirds of the cost)."""
    text = "".join([f"{m['role']}\x00{m['content']}\x01" for m in messages])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
