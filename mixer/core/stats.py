"""Per-source counters that the stages feed and the data card reports.

Invariant checked by the tests and asserted at the end of a build, for every source:
``records_in == sum(dropped.values()) + not_sampled + selected``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixer.core.workstore import WorkPath


@dataclass
class FileInfo:
    path: str
    bytes: int
    sha256: str

    def shown(self, raw_dir: str) -> str:
        """The path as the card and the warnings name the file: relative to ``raw_dir`` when it lies inside it
        (so neither holds a local path), else as given."""
        try:
            return str(Path(self.path).resolve().relative_to(Path(raw_dir).resolve()))
        except ValueError:
            return self.path


@dataclass
class SourceStats:
    name: str
    adapter: str
    license: str | None
    take: Any
    repeat: int
    files: list[FileInfo] = field(default_factory=list)
    #: raw items read from the files (lines, array elements, rows, trees)
    raw_records: int = 0
    #: items entering the pipeline: canonical records the adapter produced, plus the adapter's own
    #: drops, plus raw items that could not be parsed (dropped with on_error: skip)
    records_in: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    normalised: Counter[str] = field(default_factory=Counter)
    not_sampled: int = 0
    selected: int = 0
    shortfall: int = 0
    excluded: str | None = None
    #: records each mention-filter mode drops ("substring", "word") among those reaching the filter,
    #: counted only when the recipe names a mode (the named one is applied)
    mention_modes: Counter[str] = field(default_factory=Counter)

    #: copies beyond ``repeat`` of the first selected records: the remainder of a token budget that a
    #: source meets by repeating itself (``mixer.recipe.budget``)
    extra_copies: int = 0
    #: a token take's outcome (``Selector``): planned and achieved tokens, repeats, remainder records
    token_take: dict[str, Any] | None = None

    @property
    def final(self) -> int:
        return self.selected * self.repeat + self.extra_copies

    def __add__(self, other: SourceStats) -> SourceStats:
        """Two units of work on one source (parts of its files, read apart) as one: the counters add
        up, the files are listed once each in order, the settings (name, licence, take) are this one's."""
        if other.name != self.name:
            raise ValueError(f"cannot add the stats of source {other.name!r} to {self.name!r}")
        return SourceStats(
            name=self.name, adapter=self.adapter, license=self.license, take=self.take, repeat=self.repeat,
            files=self.files + [f for f in other.files if f not in self.files],
            raw_records=self.raw_records + other.raw_records, records_in=self.records_in + other.records_in,
            dropped=self.dropped + other.dropped, normalised=self.normalised + other.normalised,
            not_sampled=self.not_sampled + other.not_sampled, selected=self.selected + other.selected,
            shortfall=self.shortfall + other.shortfall, excluded=self.excluded or other.excluded,
            mention_modes=self.mention_modes + other.mention_modes)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def check_balance(self) -> None:
        accounted = sum(self.dropped.values()) + self.not_sampled + self.selected
        if accounted != self.records_in:  # a bug in mixer: some record was lost without a reason
            raise AssertionError(
                f"source {self.name}: {self.records_in} records in but {accounted} accounted for "
                f"(dropped {dict(self.dropped)}, not sampled {self.not_sampled}, selected {self.selected})"
            )


@dataclass
class SourceRead:
    """What reading one source (or one part of it) produced; small enough to send back from a worker:
    the counters, and the Arrow files holding its drops (in entry order; ``DROPPED_SCHEMA``) and its candidate
    records."""

    stats: SourceStats
    #: the dropped records, in entry order (none or one file per read unit)
    drops: list[WorkPath]
    #: the candidate records, in file order (one file per read unit)
    candidates: list[WorkPath]
    #: what the adapter drew on besides the files: "seed", "tokenizer" (see SourceContext.used)
    used: set[str] = field(default_factory=set)

    def __add__(self, other: SourceRead) -> SourceRead:
        """The next part of the same source (parts add in file, then part order)."""
        return SourceRead(stats=self.stats + other.stats, drops=self.drops + other.drops,
                          candidates=self.candidates + other.candidates, used=self.used | other.used)


def summary(values: list[int]) -> dict[str, float | int]:
    """mean, p50, p95, max (nearest-rank percentiles, so results are exact integers from the data)."""
    if not values:
        return {"count": 0, "mean": 0, "p50": 0, "p95": 0, "max": 0, "total": 0}
    ordered = sorted(values)
    n = len(ordered)

    def pct(p: int) -> int:
        return ordered[max(0, math.ceil(p * n / 100) - 1)]

    total = sum(ordered)
    return {"count": n, "mean": round(total / n, 2), "p50": pct(50), "p95": pct(95),
            "max": ordered[-1], "total": total}


def score_summary(values: list[float]) -> dict[str, float | int | None]:
    """count, mean and nearest-rank min/p5/p25/p50/p75/p95/max of real-valued scores (rating gaps);
    None for the statistics of no values. Rounded to 4 decimals so the card does not carry float noise."""
    if not values:
        return {"count": 0, "mean": None, "min": None, "p5": None, "p25": None, "p50": None, "p75": None,
                "p95": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)

    def pct(p: int) -> float:
        return round(ordered[max(0, math.ceil(p * n / 100) - 1)], 4)

    return {"count": n, "mean": round(math.fsum(ordered) / n, 4), "min": round(ordered[0], 4), "p5": pct(5),
            "p25": pct(25), "p50": pct(50), "p75": pct(75), "p95": pct(95), "max": round(ordered[-1], 4)}
