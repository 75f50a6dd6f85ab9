"""What a person needs to judge a decontamination hit: the record's text and the benchmark item it
matched, side by side, with the words they share marked.

"Shared" is what the rules counted: a token is marked when an ``ngram``-gram that covers it occurs in
the other text (for texts shorter than ``ngram``, which only match exactly, every token). With the
benchmark's ``normalise_numbers`` the n-grams are compared with numbers as one placeholder, so the
marked stretch runs across numbers that differ, which is the point of the option: the reader sees
the copied sentence and its changed numbers.

Marks are character spans ``[start, end)`` of the original text (the tokens of ``mixer.kernels.shingles``,
adjacent marked tokens joined with what lies between them). Long texts are cut to a window around the
first mark, and the entry says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mixer.kernels.decont_index import view_text
from mixer.kernels.decontaminate import Contamination, Decontaminator
from mixer.kernels.shingles import _char_class, tokenize

#: characters of a text kept in an audit entry (a window around the first shared word)
EXCERPT_CHARS = 1200
#: characters kept before the first shared word when a text is cut
LEAD_CHARS = 200


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``tokenize(text)``, in order."""
    spans: list[tuple[int, int]] = []
    start = -1
    for i, ch in enumerate(text):
        cls = _char_class(ch)
        if cls == 1:
            if start < 0:
                start = i
            continue
        if start >= 0:
            spans.append((start, i))
            start = -1
        if cls == 2:
            spans.append((i, i + 1))
    if start >= 0:
        spans.append((start, len(text)))
    return spans


def shared_tokens(tokens: Sequence[str], other: Sequence[str], n: int) -> list[bool]:
    """Which of ``tokens`` an ``n``-gram also found in ``other`` covers (all, for an exact short match)."""
    if len(tokens) < n or len(other) < n:
        same = tuple(tokens) == tuple(other)
        return [same] * len(tokens)
    other_grams = {tuple(other[i:i + n]) for i in range(len(other) - n + 1)}
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i:i + n]) in other_grams:
            for j in range(i, i + n):
                covered[j] = True
    return covered


def marks(text: str, covered: Sequence[bool]) -> list[list[int]]:
    """Character spans of the covered tokens of ``text``, runs of adjacent tokens joined."""
    spans = token_spans(text)
    if len(spans) != len(covered):  # a character whose lowercase changes the tokens: no marks, never wrong ones
        return []
    out: list[list[int]] = []
    previous = False
    for (start, end), hit in zip(spans, covered, strict=True):
        if hit and previous:
            out[-1][1] = end
        elif hit:
            out.append([start, end])
        previous = hit
    return out


def excerpt(text: str, spans: list[list[int]], limit: int = EXCERPT_CHARS) -> dict[str, Any]:
    """The text (cut to ``limit`` characters around the first mark when longer) with its marks shifted."""
    if len(text) <= limit:
        return {"text": text, "marks": spans, "cut_before": False, "cut_after": False}
    start = max(0, (spans[0][0] if spans else 0) - LEAD_CHARS)
    end = min(len(text), start + limit)
    kept = [[max(a, start) - start, min(b, end) - start] for a, b in spans if b > start and a < end]
    return {"text": text[start:end], "marks": kept, "cut_before": start > 0, "cut_after": end < len(text)}


def audit_entry(checker: Decontaminator, text: str, found: Contamination, source: str, record_id: str
                ) -> dict[str, Any]:
    """One flagged record for the card: the rule's numbers, the record's text and the matched item's,
    each with the shared words marked."""
    n = checker.config.ngram
    numbers = found.numbers_normalised
    item_text, item_tokens = checker.item(found.benchmark, found.item_index)
    tokens = tokenize(view_text(text, numbers).lower())
    return {
        "source": source, "id": record_id, "benchmark": found.benchmark, "item_index": found.item_index,
        "rule": found.rule, "overlap": found.overlap, "coverage": found.coverage,
        "numbers_normalised": numbers,
        "record": excerpt(text, marks(text, shared_tokens(tokens, item_tokens, n))),
        "item": excerpt(item_text, marks(item_text, shared_tokens(item_tokens, tokens, n))),
    }
