"""The benchmarks' n-gram index that decontamination matches records against.

Benchmark prompts are read from their files (:func:`load_benchmark`, errors naming the file and record),
tokenised as ``mixer.kernels.shingles.tokenize`` does (optionally with numbers as one placeholder,
:func:`view_text`) and indexed: exact token sequences, ``ngram``-grams -> the items holding them, the
boilerplate grams of each benchmark (found in at least ``boilerplate_items`` of its items, evidence of
nothing), and the sorted 64-bit hashes of the informative grams that :meth:`BenchmarkIndex.screen` uses
to pass a batch of texts through a vectorised screen. What counts as a match, and its evidence, is
:mod:`mixer.kernels.decontaminate`'s.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixer.core.errors import InputError, RecipeError
from mixer.kernels.shingles import shingle_hashes, token_hashes, tokenize
from mixer.recipe.settings import BenchmarkSpec, DecontaminationSettings


def _get_field(value: dict, path: str) -> Any:
    cur: Any = value
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


def load_benchmark(spec: BenchmarkSpec, base_dir: str | Path | None = None) -> list[str]:
    """The prompts of one benchmark, in file order; empty prompts are skipped.

    Raises ``InputError`` naming the file (and record) when a file is missing or unreadable or a
    record lacks ``field`` (listing the fields it has).
    """
    from mixer.readers.base import ParseFailure
    from mixer.readers.raw import read_raw

    if not spec.files:
        raise RecipeError(f"decontaminate: benchmark {spec.name!r} lists no files")
    prompts: list[str] = []
    for f in spec.files:
        path = Path(f)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.exists():
            hint = ("run `mixer fetch` when online" if spec.url
                    else "the recipe gives it no `url:`, so `mixer fetch` cannot get it: put the file there")
            raise InputError(str(path), f"benchmark {spec.name!r}: file not found ({hint})")
        for item in read_raw(path):
            value = item.value
            if isinstance(value, ParseFailure):
                raise InputError(item.location, f"benchmark {spec.name!r}: {value.problem}")
            if not isinstance(value, dict):
                raise InputError(item.location, f"benchmark {spec.name!r}: expected a record with field "
                                                f"{spec.field!r}, found {type(value).__name__}")
            text = _get_field(value, spec.field)
            if text is _MISSING:
                raise InputError(item.location, f"benchmark {spec.name!r}: field {spec.field!r} not found; "
                                                f"the record has fields {sorted(value)}")
            if text is None:
                continue
            if isinstance(text, int | float):
                text = str(text)
            if not isinstance(text, str):
                raise InputError(item.location, f"benchmark {spec.name!r}: field {spec.field!r} must be text, "
                                                f"found {type(text).__name__}")
            if text.strip():
                prompts.append(text)
    return prompts


def load_benchmarks(config: DecontaminationSettings, base_dir: str | Path | None = None) -> dict[str, list[str]]:
    return {b.name: load_benchmark(b, base_dir) for b in config.benchmarks}


_DIGITS = re.compile(r"\d+")


def view_text(text: str, numbers: bool) -> str:
    """The text a benchmark is matched on: with ``numbers``, every run of digits becomes ``0``, so "48 clips"
    and "36 clips" are the same words. Digits are word characters, so the tokens keep their positions
    (``mixer.kernels.decont_audit`` maps them back to the original text)."""
    return _DIGITS.sub("0", text) if numbers else text


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of ``tokens`` in order; a text shorter than ``n`` is one gram of all its tokens."""
    if len(tokens) < n:
        return [tuple(tokens)] if tokens else []
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


class BenchmarkIndex:
    """The benchmarks' prompts as token sequences, an n-gram index without boilerplate, and screening hashes."""

    #: Batches screened at once by ``check_many`` (characters).
    BATCH_CHARS = 2_000_000

    def __init__(self, config: DecontaminationSettings, benchmarks: Mapping[str, Sequence[str]]) -> None:
        self.config = config
        self.names = list(benchmarks)
        #: benchmarks matched with numbers as a placeholder (``view_text``)
        self.numbers = frozenset(b.name for b in config.benchmarks if b.normalise_numbers)
        n = config.ngram
        self._tokens: list[tuple[str, ...]] = []  # per global item, in its benchmark's view
        self._item: list[tuple[str, int, str]] = []  # (benchmark, index in benchmark, text)
        self._global: dict[tuple[str, int], int] = {}  # (benchmark, index) -> global item
        self._exact: dict[tuple[bool, tuple[str, ...]], list[int]] = defaultdict(list)
        # gram -> benchmark -> global items containing it (boilerplate grams removed below)
        self._index: dict[tuple[str, ...], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        texts = []
        views: list[bool] = []
        for name in self.names:
            numbers = name in self.numbers
            for i, text in enumerate(benchmarks[name]):
                tokens = tuple(tokenize(view_text(text, numbers).lower()))
                if not tokens:
                    continue
                g = len(self._item)
                self._item.append((name, i, text))
                self._global[(name, i)] = g
                self._tokens.append(tokens)
                self._exact[(numbers, tokens)].append(g)
                texts.append(view_text(text, numbers).lower())
                views.append(numbers)
                for gram in set(ngrams(tokens, n)):
                    self._index[gram][name].append(g)
        # Boilerplate: grams in at least ``boilerplate_items`` items of one benchmark (a shared
        # instruction template) are evidence of nothing; they are dropped from that benchmark's index.
        self._boiler: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        self._informative_cache: dict[int, np.ndarray] = {}
        limit = config.boilerplate_items
        if limit:
            for gram, per in list(self._index.items()):
                for name in [b for b, items in per.items() if len(items) >= limit]:
                    self._boiler[name].add(gram)
                    del per[name]
                if not per:
                    del self._index[gram]
        # 64-bit hashes of the informative grams, for screening batches (a text shorter than n is one
        # "gram" of all its tokens); an item made only of boilerplate keeps all its grams so that an
        # exact copy of it is still screened in
        if texts:
            tok, off = token_hashes(texts)
            sh, sh_off = shingle_hashes(tok, off, n)
            keep = np.zeros(len(sh), dtype=bool)
            for g, tokens in enumerate(self._tokens):
                lo, hi = int(sh_off[g]), int(sh_off[g + 1])
                grams = ngrams(tokens, n)
                assert len(grams) == hi - lo
                informative = [gram in self._index for gram in grams]
                keep[lo:hi] = informative if any(informative) else True
            gram_view = np.repeat(np.array(views, dtype=bool), np.diff(sh_off))
            self._hashes = {v: np.unique(sh[keep & (gram_view == v)]) for v in (False, True)}
        else:
            self._hashes = {v: np.zeros(0, dtype=np.uint64) for v in (False, True)}

    def __len__(self) -> int:
        return len(self._item)

    def _informative(self, g: int) -> np.ndarray:
        """Mask of item ``g``'s tokens that no boilerplate n-gram of its benchmark covers."""
        mask = self._informative_cache.get(g)
        if mask is None:
            tokens, n = self._tokens[g], self.config.ngram
            boiler = self._boiler.get(self._item[g][0], set())
            mask = np.ones(len(tokens), dtype=bool)
            if boiler:
                for i in range(len(tokens) - n + 1):
                    if tokens[i:i + n] in boiler:
                        mask[i:i + n] = False
            self._informative_cache[g] = mask
        return mask

    def item(self, benchmark: str, index: int) -> tuple[str, tuple[str, ...]]:
        """A benchmark item's text and its tokens (in its benchmark's view), for the audit."""
        g = self._global[(benchmark, index)]
        return self._item[g][2], self._tokens[g]

    def screen(self, texts: Sequence[str]) -> np.ndarray:
        """Bool mask of texts sharing at least one n-gram hash with a benchmark (a superset of matches)."""
        mask = np.zeros(len(texts), dtype=bool)
        for numbers, hashes in self._hashes.items():
            if len(hashes):
                mask |= self._screen_view([view_text(t, numbers) for t in texts] if numbers else texts, hashes)
        return mask

    def _screen_view(self, texts: Sequence[str], hashes: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(texts), dtype=bool)
        start = 0
        while start < len(texts):
            end, size = start, 0
            while end < len(texts) and (size < self.BATCH_CHARS or end == start):
                size += len(texts[end])
                end += 1
            tok, off = token_hashes([t.lower() for t in texts[start:end]])
            sh, sh_off = shingle_hashes(tok, off, self.config.ngram)
            if len(sh):
                pos = np.searchsorted(hashes, sh)
                pos[pos == len(hashes)] = 0
                hit = hashes[pos] == sh
                rec = np.repeat(np.arange(end - start), np.diff(sh_off))
                mask[start:end] = np.bincount(rec[hit], minlength=end - start) > 0
            start = end
        return mask
