"""Exact deduplication across sources: the first copy seen wins.

Sources are read in recipe order, so "first seen" is "from the source listed first"; within a
source, the earliest record in file order is kept. The hash covers roles and normalised contents,
not ids or dataset labels.
"""

from __future__ import annotations

import hashlib

from mixer.records import Message


def content_hash(messages: list[Message]) -> bytes:
    """blake2b-128 of ``role NUL content SOH`` per message, UTF-8 (one encode and one update: the
    same digest as hashing the parts one by one, at about two thirds of the cost)."""
    text = "".join([f"{m['role']}\x00{m['content']}\x01" for m in messages])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ExactDeduplicator:
    """Remembers the first (source, id) per content hash."""

    reason = "exact_duplicate"

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[str, str]] = {}

    def check(self, source: str, record_id: str, messages: list[Message]) -> tuple[str, str] | None:
        """None if new (and now remembered), else the (source, id) of the copy that is kept."""
        key = content_hash(messages)
        kept = self._seen.get(key)
        if kept is None:
            self._seen[key] = (source, record_id)
        return kept

    def __len__(self) -> int:
        return len(self._seen)
