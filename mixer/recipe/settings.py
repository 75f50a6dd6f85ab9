"""Typed settings of the stages, as a recipe writes them (``normalise``, ``filters``, ``dedup``,
``dedup.near``, ``decontaminate``): each class is named ``<What>Settings`` and its fields are the
recipe's keys.

They live here, apart from the algorithms (``mixer.kernels.near``, ``mixer.kernels.decontaminate``), so that
parsing a recipe (``mixer.recipe.load``) never imports the MinHash or n-gram code, and the layers point one
way: the algorithms and stages read these settings, the settings import nothing but ``errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Literal

from mixer.core.errors import RecipeError

NEAR_KEYS = ("conversation", "prompt", "assistant", "user")


@dataclass(frozen=True)
class NearDedupSettings:
    """Recipe ``dedup.near`` (parsed straight into this class). ``workers=None`` uses every core this
    process may run on."""

    enabled: bool = True
    key: Literal["conversation", "prompt", "assistant", "user"] = "conversation"
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.8
    bands: int | None = None
    rows: int | None = None
    seed: int = 42
    workers: int | None = None
    against: tuple[str, ...] = ()
    #: (false positive, false negative) weights for deriving bands/rows, as ``MinHashLSH(weights=...)``
    lsh_weights: tuple[float, float] = (0.05, 0.95)

    def __post_init__(self) -> None:
        if self.key not in NEAR_KEYS:
            raise RecipeError(f"dedup.near.key: expected one of {list(NEAR_KEYS)}, got {self.key!r}")
        if self.ngram < 1:
            raise RecipeError(f"dedup.near.ngram: must be >= 1, got {self.ngram}")
        if self.num_perm < 2:
            raise RecipeError(f"dedup.near.num_perm: must be >= 2, got {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            raise RecipeError(f"dedup.near.threshold: must be in (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise RecipeError("dedup.near: give both bands and rows, or neither (then they follow threshold)")
        if self.bands is not None and self.rows is not None:
            if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
                raise RecipeError(
                    f"dedup.near: bands x rows ({self.bands} x {self.rows}) must be >= 1 and at most "
                    f"num_perm ({self.num_perm})")
        if self.workers is not None and self.workers < 1:
            raise RecipeError(f"dedup.near.workers: must be >= 1, got {self.workers}")
        if len(self.lsh_weights) != 2 or min(self.lsh_weights) < 0 or abs(sum(self.lsh_weights) - 1) > 1e-9:
            raise RecipeError(f"dedup.near.lsh_weights: two non-negative numbers adding up to 1, got "
                              f"{self.lsh_weights}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | Any) -> NearDedupSettings:
        """Build from a mapping or any object with the same attribute names (e.g. the recipe's)."""
        names = {f.name for f in fields(cls)}
        if isinstance(options, Mapping):
            unknown = sorted(set(options) - names)
            if unknown:
                raise RecipeError(f"dedup.near: unknown option(s) {unknown}; known: {sorted(names)}")
            values = {k: v for k, v in options.items() if k in names}
        else:
            values = {k: getattr(options, k) for k in names if hasattr(options, k)}
        for name in ("against", "lsh_weights"):
            if name in values:
                values[name] = tuple(values[name] or ())
        return cls(**values)

    def lsh_params(self) -> tuple[int, int]:
        """(bands, rows): the recipe's, or datasketch's optimum for ``threshold`` and ``num_perm``."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return optimal_bands_rows(self.threshold, self.num_perm, *self.lsh_weights)

    def n_workers(self) -> int:
        return self.workers if self.workers is not None else usable_cores()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else every core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=32)
def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.05, fn_weight: float = 0.95
) -> tuple[int, int]:
    """datasketch's own choice, as ``MinHashLSH(threshold, num_perm, weights=(fp_weight, fn_weight))``.

    Why not datasketch's default weights (0.5, 0.5): at threshold 0.8 and 128 permutations they give
    9 bands x 13 rows, which makes a pair with Jaccard 0.8 a candidate only 40% of the time (0.85:
    69%). Here every candidate is confirmed by its Jaccard estimate anyway, so an LSH false positive
    costs one vectorised comparison while a false negative loses a duplicate: (0.05, 0.95) gives
    16 x 8 (0.8: 95%, 0.85: 99.4%; Jaccard 0.5: 6%), close to datatrove's 14 x 8.
    """
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, fp_weight, fn_weight)
    return int(b), int(r)



#: ``user_turns`` (the default): each user turn checked on its own, as open-instruct's decontamination indexes
#: every ``role: user`` message (``decontamination/index.py``, ``--query_filter role:user``); ``prompt``: the
#: first user turn; ``user``: the user turns joined; ``conversation``: every turn joined
DECONTAMINATION_KEYS = ("user_turns", "prompt", "user", "conversation")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One evaluation set: its files (JSONL/Parquet/CSV) and the prompt column (``a.b`` for nested)."""

    name: str
    files: tuple[str, ...]
    field: str
    #: where ``mixer fetch`` downloads each file from (in the order of ``files``)
    url: tuple[str, ...] = ()
    #: match with every run of digits as one placeholder (``mixer.kernels.decontaminate``): a math
    #: question copied with other numbers (GSM8K's train set has them) shares no 8-gram with the original
    normalise_numbers: bool = False


@dataclass(frozen=True)
class DecontaminationSettings:
    ngram: int = 8
    threshold: float = 0.5
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    key: Literal["user_turns", "prompt", "user", "conversation"] = "user_turns"
    long_ngram: int = 13
    drop_on_long_ngram: bool = True
    #: an n-gram found in at least this many items of one benchmark is that benchmark's boilerplate (a
    #: shared instruction template) and is not evidence; 0 counts every n-gram, as datatrove does
    boilerplate_items: int = 5

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise RecipeError(f"decontaminate.ngram: must be >= 1, got {self.ngram}")
        if not 0.0 < self.threshold <= 1.0:
            raise RecipeError(f"decontaminate.threshold: must be in (0, 1], got {self.threshold}")
        if self.long_ngram < self.ngram:
            raise RecipeError(f"decontaminate.long_ngram ({self.long_ngram}) must be >= ngram ({self.ngram})")
        if self.key not in DECONTAMINATION_KEYS:
            raise RecipeError(f"decontaminate.key: expected one of {list(DECONTAMINATION_KEYS)}, got {self.key!r}")
        names = [b.name for b in self.benchmarks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise RecipeError(f"decontaminate.benchmarks: duplicate name(s) {dup}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | Any) -> DecontaminationSettings:
        """From a mapping or any object with the same attribute names (e.g. the recipe's dataclass)."""
        get = options.get if isinstance(options, Mapping) else lambda k, d=None: getattr(options, k, d)
        benches = []
        for b in get("benchmarks", ()) or ():
            bget = b.get if isinstance(b, Mapping) else lambda k, d=None, b=b: getattr(b, k, d)
            files = bget("files", ())
            urls = bget("url", ()) or ()
            benches.append(BenchmarkSpec(str(bget("name")), tuple([files] if isinstance(files, str) else files),
                                         str(bget("field")), tuple([urls] if isinstance(urls, str) else urls),
                                         bool(bget("normalise_numbers", False))))
        values: dict[str, Any] = {"benchmarks": tuple(benches)}
        for k in ("ngram", "threshold", "key", "long_ngram", "drop_on_long_ngram", "boilerplate_items"):
            v = get(k, None)
            if v is not None:
                values[k] = v
        return cls(**values)


#: Tulu V2's mentions-of-other-LLMs keyword list, matched as case-insensitive substrings on every
#: message. Source: open-instruct (Tulu V2 era) filtering of the SFT mixture, as documented in
#: shared/SOURCES.md section 0.
TULU_V2_LLM_KEYWORDS: tuple[str, ...] = (
    "OpenAI", "Open AI", "ChatGPT", "Chat GPT", "GPT-3", "GPT3", "GPT 3", "GPT-4", "GPT4", "GPT 4",
    "GPT-3.5", "GPT3.5", "GPT 3.5", "BingChat", "Bing Chat", "BARD", "Palm", "Anthropic", "Claude",
    "LAION", "Open Assistant", "OpenAssistant",
)


@dataclass(frozen=True)
class LLMMentionSettings:
    """``filters.llm_mentions``: Tulu V2's filter of records that mention other LLMs or their makers."""

    enabled: bool = True
    keywords: tuple[str, ...] = TULU_V2_LLM_KEYWORDS
    #: source names the filter does not apply to (Tulu exempts the hard-coded identity prompts)
    exempt: tuple[str, ...] = ("hard_coded",)
    #: ``substring``: Tulu V2's match in any message; ``word``: a whole word in an assistant turn
    #: (open-instruct's current rule). Unset is ``substring``; naming a mode also puts in the card how
    #: many records each mode drops (an unset mode leaves the card as it was before modes existed)
    mode: Literal["substring", "word"] | None = None


@dataclass(frozen=True)
class FilterSettings:
    """``filters``: the record filters (``mixer.stages.filter``)."""

    llm_mentions: LLMMentionSettings = field(default_factory=LLMMentionSettings)
    #: bounds on the number of assistant turns (None: no bound)
    min_turns: int | None = None
    max_turns: int | None = None


@dataclass(frozen=True)
class NormaliseSettings:
    """``normalise``: the text and turn rules (``mixer.stages.normalise``)."""

    nfc: bool = True
    strip: bool = True
    drop_empty_turns: bool = True
    #: drop records whose turns do not go [system] user assistant (user assistant)*; off only to
    #: reproduce open-instruct, whose converters emit whatever order the source has
    require_turn_order: bool = True


@dataclass(frozen=True)
class ExactDedupSettings:
    """``dedup.exact``: ``true``/``false``, or a mapping with the key of a preference pair."""

    enabled: bool = True
    #: a preference pair's key: the whole pair (prompt, chosen, rejected) or its prompt alone
    preference_key: Literal["pair", "prompt"] = "pair"

    def __bool__(self) -> bool:
        """``if recipe.dedup.exact:`` reads as ``exact: true/false`` did before it took a mapping."""
        return self.enabled


@dataclass(frozen=True)
class DedupSettings:
    """``dedup``: exact dedup's settings, and near dedup's settings (None: off)."""

    exact: ExactDedupSettings = field(default_factory=ExactDedupSettings)
    near: NearDedupSettings | None = None
