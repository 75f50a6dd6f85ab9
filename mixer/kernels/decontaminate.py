"""Benchmark decontamination (recipe ``decontaminate``): drop training records that overlap eval prompts.

The rule, and how it relates to the two well-known implementations
------------------------------------------------------------------
Texts are compared as word tokens (``mixer.kernels.shingles.tokenize``: lowercase, punctuation-
insensitive, CJK one token per character) of the record's ``key`` text (default ``user_turns``: each
user turn on its own, as open-instruct indexes every user message; ``prompt`` is the first user turn
alone) and of each benchmark item's ``field``. With ``n = ngram`` (default 8), a training record
is **contaminated** by a benchmark when any of these holds:

1. ``exact``: its token sequence equals a benchmark item's (the only rule for texts shorter than
   ``n`` tokens, so a short common prompt such as "tell me a joke" is never removed on a partial match);
2. ``share``: the share of its distinct ``n``-grams found in the benchmark's prompts reaches
   ``threshold`` (the issue's rule: the training text is mostly benchmark text);
3. ``coverage``: the share of one benchmark item's tokens covered by ``n``-grams that also occur in
   the training text reaches ``threshold``. This is open-instruct's (Tulu 3) rule, seen from the
   test item: its ``search.py`` scores each test instance by the share of its tokens that are part of
   an ``n``-gram (Tulu 3: 8) also found in one training document, flagged at ``match_threshold``
   (0.5). It catches a benchmark question embedded in a long prompt, which rule 2 alone would miss;
4. ``13gram``: the training text shares any ``long_ngram``-gram (default 13) with a benchmark item,
   in the spirit of datatrove's ``NGramsDecontFilter``, which removes a document on a single shared
   n-gram (its default ``n_grams=12``; query n-grams need ``find_query_ngrams=True``; we only have
   prompts, so prompt n-grams are what we match) and of GPT-3's 13-gram convention. Set
   ``drop_on_long_ngram: false`` to only report such hits (then ``check`` returns a result with
   ``contaminated=False``).

**Boilerplate.** An ``n``-gram found in at least ``boilerplate_items`` (default 5) items of one
benchmark is that benchmark's instruction template ("The following are multiple choice questions
(with answers) about ...") and is evidence for none of the rules: it is left out of the share;
coverage is measured over the item's *informative* tokens (those no boilerplate n-gram covers), in
numerator and denominator; and a shared 13-gram counts only if at least ``ngram`` of its tokens are
informative (a template plus the first word of a question is not a hit). Without this, one templated
benchmark file would remove every training record that uses the same template. Exact copies of an
item are always caught. ``boilerplate_items: 0`` turns it off (every n-gram counts, as in datatrove
and open-instruct).

So, boilerplate aside, every record that open-instruct (at the same n and threshold) or datatrove (at
``long_ngram``) would flag is flagged here, and each result says which rule fired, the benchmark item
(index and text), the overlap share, the item coverage, whether it is an exact match and whether a
13-gram is shared, plus one shared n-gram as evidence.

Speed: a batch is first screened with the vectorised n-gram hashes of ``mixer.kernels.shingles``
(64-bit, binary search in the sorted benchmark hashes); only records with a hash hit are checked
exactly with Python token tuples, so a hash collision can never remove a record. The benchmarks' files,
their n-gram index, boilerplate and screening hashes are :mod:`mixer.kernels.decont_index`; this module
holds the rules above, the evidence of a match and the card's summary.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixer.core.records import Message
from mixer.kernels.decont_index import BenchmarkIndex, load_benchmarks, ngrams, view_text
from mixer.kernels.near import key_text
from mixer.kernels.shingles import tokenize
from mixer.recipe.settings import DecontaminationSettings


@dataclass(frozen=True)
class Contamination:
    """Why a record matched a benchmark (one item: the strongest evidence)."""

    benchmark: str
    item_index: int  #: 0-based position of the item in the benchmark (files in order)
    item_text: str  #: the item's prompt, cut to 300 characters
    overlap: float  #: share of the record's distinct n-grams found in the benchmark's prompts
    coverage: float  #: share of the item's tokens covered by n-grams shared with the record
    exact_match: bool
    has_13gram: bool  #: shares a ``long_ngram``-gram (13 by default) with the item
    rule: str  #: which rule decided: exact, coverage, share, 13gram (or "" when not contaminated)
    evidence: str = ""  #: one shared n-gram, as words
    contaminated: bool = True
    also: tuple[str, ...] = field(default=())  #: other benchmarks the record also matches
    #: matched with numbers as one placeholder (the benchmark's ``normalise_numbers``)
    numbers_normalised: bool = False

    @property
    def reason(self) -> str:
        return f"contaminated:{self.benchmark}"


class Decontaminator(BenchmarkIndex):
    """Checks texts against the benchmarks' prompts (see the module docstring for the rule)."""

    @classmethod
    def from_config(cls, config: DecontaminationSettings, base_dir: str | Path | None = None) -> Decontaminator:
        return cls(config, load_benchmarks(config, base_dir))

    def texts_of(self, messages: Sequence[Message], lower: bool = True) -> list[str]:
        """The texts a record is checked on: each user turn on its own (``user_turns``: a benchmark question
        asked in the second turn of a conversation is found, and a short one still matches exactly), else
        the one ``key_text``. ``lower=False`` keeps the case, to show a person."""
        if self.config.key == "user_turns":
            return [m["content"].lower() if lower else m["content"] for m in messages if m["role"] == "user"]
        return [key_text(messages, self.config.key, lower=lower)]

    def check_records(self, records: Sequence[Sequence[Message]]) -> list[tuple[Contamination | None, int]]:
        """Per record (its messages), its strongest match over ``texts_of`` and which of those texts it is in
        (the first of equally strong ones), or ``(None, 0)``; screened in one ``check_many`` pass."""
        texts: list[str] = []
        owners: list[tuple[int, int]] = []
        for r, messages in enumerate(records):
            for t, text in enumerate(self.texts_of(messages)):
                texts.append(text)
                owners.append((r, t))
        out: list[tuple[Contamination | None, int]] = [(None, 0)] * len(records)
        for (r, t), c in zip(owners, self.check_many(texts), strict=True):
            held = out[r][0]
            if c is not None and (held is None or _strength(c) > _strength(held)):
                out[r] = (c, t)
        return out

    def check(self, text: str) -> Contamination | None:
        """The strongest match of ``text`` (``key_text`` of a record), or None when it matches nothing.

        A result with ``contaminated=False`` is only returned for a shared 13-gram that does not drop
        (``drop_on_long_ngram: false``), so the card can still report it.
        """
        cfg = self.config
        views = {False: tokenize(text.lower())}
        if self.numbers:
            views[True] = tokenize(view_text(text, True).lower())
        if not views[False] or not self._item:
            return None
        view_grams = {v: set(ngrams(t, cfg.ngram)) for v, t in views.items()}
        per_bench: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        for v, grams in view_grams.items():
            for gram in grams:
                hit = self._index.get(gram)
                if hit:
                    for name in hit:
                        if (name in self.numbers) == v:
                            per_bench[name].add(gram)
        exact_items = [g for v, t in views.items() for g in self._exact.get((v, tuple(t)), [])]
        for g in exact_items:
            per_bench.setdefault(self._item[g][0], set())  # an exact copy counts even if all boilerplate
        if not per_bench:
            return None
        view_long = {v: set(ngrams(t, cfg.long_ngram)) if len(t) >= cfg.long_ngram else set()
                     for v, t in views.items()}
        results: list[tuple[tuple, Contamination]] = []
        for order, name in enumerate(self.names):
            if name not in per_bench:
                continue
            numbers = name in self.numbers
            tokens, grams, long_grams = views[numbers], view_grams[numbers], view_long[numbers]
            shared = per_bench[name]
            overlap = len(shared) / len(grams)
            counts: Counter[int] = Counter()
            for gram in shared:
                counts.update(self._index[gram][name])
            for g in exact_items:
                if self._item[g][0] == name:
                    counts[g] += 0
            best: tuple | None = None
            for g in sorted(counts):
                item_tokens = self._tokens[g]
                exact = item_tokens == tuple(tokens)
                coverage = 1.0 if exact else self._coverage(g, grams)
                has_long = bool(long_grams) and self._long_hit(g, long_grams)
                key = (exact, coverage, has_long, counts[g], -g)
                if best is None or key > best[0]:
                    best = (key, g, exact, coverage, has_long)
            assert best is not None
            _, g, exact, coverage, has_long = best
            if exact:
                rule = "exact"
            elif coverage >= cfg.threshold:
                rule = "coverage"
            elif overlap >= cfg.threshold and len(tokens) >= cfg.ngram:
                rule = "share"
            elif has_long and cfg.drop_on_long_ngram:
                rule = "13gram"
            else:
                rule = ""
            evidence = " ".join(min(shared)) if shared else " ".join(self._tokens[g][:cfg.ngram])
            bench, index, item_text = self._item[g]
            c = Contamination(bench, index, item_text[:300], round(overlap, 4), round(coverage, 4), exact,
                              has_long, rule, evidence, contaminated=bool(rule), numbers_normalised=numbers)
            strength = (bool(rule), exact, max(coverage, overlap if rule else 0.0), has_long, -order)
            results.append((strength, c))
        if not results:
            return None
        results.sort(key=lambda r: r[0], reverse=True)
        top = results[0][1]
        also = tuple(c.benchmark for _, c in results[1:] if c.contaminated)
        if also:
            top = Contamination(**{**top.__dict__, "also": also})
        if not top.contaminated and not top.has_13gram:
            return None
        return top

    def _coverage(self, g: int, train_grams: set[tuple[str, ...]]) -> float:
        """Share of item ``g``'s informative tokens covered by n-grams that the record also has."""
        tokens, n = self._tokens[g], self.config.ngram
        if len(tokens) < n:
            return 0.0  # short items only match exactly
        covered = np.zeros(len(tokens), dtype=bool)
        for i in range(len(tokens) - n + 1):
            if tokens[i:i + n] in train_grams:
                covered[i:i + n] = True
        informative = self._informative(g)
        total = int(informative.sum())
        return float((covered & informative).sum()) / total if total else 0.0

    def _long_hit(self, g: int, train_long: set[tuple[str, ...]]) -> bool:
        """Whether the record shares a ``long_ngram``-gram with item ``g`` holding >= ``ngram`` informative
        tokens (so a template plus one common word is not a hit)."""
        tokens, long_n = self._tokens[g], self.config.long_ngram
        informative = self._informative(g)
        for i in range(len(tokens) - long_n + 1):
            if tokens[i:i + long_n] in train_long and informative[i:i + long_n].sum() >= self.config.ngram:
                return True
        return False

    def check_many(self, texts: Sequence[str]) -> list[Contamination | None]:
        """``check`` for each text; vectorised screening first, exact checks only for hash hits."""
        mask = self.screen(texts)
        out: list[Contamination | None] = [None] * len(texts)
        for i in np.flatnonzero(mask).tolist():
            out[i] = self.check(texts[i])
        return out


def _strength(c: Contamination) -> tuple[bool, bool, float, float, bool]:
    """How strong a match is, to choose among a record's turns: a drop first, then an exact copy, then coverage."""
    return c.contaminated, c.exact_match, c.coverage, c.overlap, c.has_13gram


def summarise_contamination(
    found: Iterable[tuple[str, str, Contamination]], benchmarks: Sequence[str] = (), examples: int = 3,
) -> dict[str, Any]:
    """The card's contamination table: benchmark x source -> records removed, with example matches.

    ``found``: ``(source, record id, Contamination)`` for every checked record that matched (only
    ``contaminated`` ones count as removed; 13-gram hits that were kept are counted separately).
    """
    table: dict[str, Counter[str]] = defaultdict(Counter)
    rules: dict[str, Counter[str]] = defaultdict(Counter)
    exact: Counter[str] = Counter()
    long_hits: Counter[str] = Counter()
    kept_long: Counter[str] = Counter()
    ex: dict[str, list[dict[str, Any]]] = defaultdict(list)
    total = 0
    for source, rid, c in found:
        if not c.contaminated:
            if c.has_13gram:
                kept_long[c.benchmark] += 1
            continue
        total += 1
        table[c.benchmark][source] += 1
        rules[c.benchmark][c.rule] += 1
        exact[c.benchmark] += c.exact_match
        long_hits[c.benchmark] += c.has_13gram
        if len(ex[c.benchmark]) < examples:
            ex[c.benchmark].append({
                "source": source, "id": rid, "item_index": c.item_index, "item_text": c.item_text[:200],
                "rule": c.rule, "overlap": c.overlap, "coverage": c.coverage, "evidence": c.evidence,
            })
    names = list(benchmarks) + sorted(set(table) - set(benchmarks))
    return {
        "removed_total": total,
        "table": {b: dict(sorted(table[b].items())) for b in names},
        "removed_by_benchmark": {b: sum(table[b].values()) for b in names},
        "by_rule": {b: dict(sorted(rules[b].items())) for b in names},
        "exact_matches": {b: exact[b] for b in names},
        "13gram_hits": {b: long_hits[b] for b in names},
        "13gram_hits_kept": {b: kept_long[b] for b in names if kept_long[b]},
        "examples": {b: ex[b] for b in names},
    }

