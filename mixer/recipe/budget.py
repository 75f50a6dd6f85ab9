"""Token budgets in a recipe: ``take: {tokens: N}`` per source and ``budget: {tokens, shares}`` per recipe.

Users mix by tokens, not records. A source's ``take`` may be ``{tokens: N}`` (or ``{records: N}``, the same
as ``take: N``); the recipe's ``budget`` splits a total among sources by ``shares`` that add up to 1. Both
are resolved here, when the recipe is parsed, into one ``TokenTake`` per source, so selection
(``mixer.stages.select``) sees a single shape: walk the source's seeded order and stop at the record
that would pass ``tokens``; with ``upsample`` (a budget share), a source with fewer tokens than its
share is taken whole ``k`` times plus a seeded remainder.

Per-source budgets are whole numbers that add up to the total exactly: each share times the total,
rounded down, and the tokens left over go one each to the largest fractional parts (ties: recipe
order), the largest-remainder rule. Shares are read as the decimals the recipe writes
(``Fraction(str(share))``), so 0.2 of 50,000,000 is 10,000,000 and not a float's neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mixer.core.errors import RecipeError, did_you_mean


class BudgetError(RecipeError):
    """A token budget the data cannot meet (found while selecting; the message names the recipe key)."""


#: how far the shares may add up from 1 (they are decimals a person typed; 1/3 cannot be written)
SHARE_TOLERANCE = Fraction(1, 10**6)


@dataclass(frozen=True)
class TokenTake:
    """Take records from the source's seeded order until the next would pass ``tokens``."""

    tokens: int
    #: a budget share: a source with fewer tokens than ``tokens`` is repeated (whole copies, then a
    #: seeded remainder); a plain ``take: {tokens: N}`` takes what there is and says how short it fell
    upsample: bool = False
    #: the share of ``budget.tokens`` this source was given (None: ``take: {tokens: N}``)
    share: float | None = None

    def __str__(self) -> str:
        """As ``mixer validate`` lists a source's take."""
        return f"{self.tokens:,} tokens" + (f" (budget share {self.share:g})" if self.share is not None else "")

    def card(self) -> dict[str, Any]:
        """How the card writes this ``take``."""
        return {"tokens": self.tokens} if self.share is None else {"tokens": self.tokens, "share": self.share}


@dataclass(frozen=True)
class FirstTake:
    """Take the first ``records`` records in file order (files as the recipe lists them, rows as published),
    after filtering and dedup: a published subset defined as a prefix, such as OpenBezoar's "first 100K
    examples of the HH-RLHF dataset", which a seeded sample (``take: N``) cannot reproduce."""

    records: int

    def __str__(self) -> str:
        """As ``mixer validate`` lists a source's take."""
        return f"first {self.records:,} records"

    def card(self) -> dict[str, Any]:
        """How the card writes this ``take``."""
        return {"first": self.records}


@dataclass(frozen=True)
class BudgetSettings:
    """Recipe ``budget``: a total of tokens and each source's share of it."""

    tokens: int
    shares: dict[str, float]


def parse_take(value: Any, where: str) -> Any:
    """A source's ``take`` as written: ``all``, a count, a fraction, or a mapping ``{records: N}`` (the
    same as ``take: N``), ``{tokens: N}`` (a ``TokenTake``) or ``{first: N}`` (a ``FirstTake``); other
    values are left for the generic type check to name."""
    if not isinstance(value, dict):
        return value
    keys = ["records", "tokens", "first"]
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise RecipeError(f"{where}.take: unknown key(s) "
                          + ", ".join(f"{k!r}{did_you_mean(k, keys)}" for k in unknown)
                          + "; a take mapping has records, tokens or first")
    if len(value) != 1:
        raise RecipeError(f"{where}.take: give one of records, tokens or first: take: {{records: N}} samples N "
                          "records, take: {tokens: N} samples records up to N tokens, take: {first: N} takes the "
                          "first N records in file order")
    (key, n), = value.items()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise RecipeError(f"{where}.take.{key}: expected a whole number >= 1, found {n!r}")
    return n if key == "records" else TokenTake(n) if key == "tokens" else FirstTake(n)


def parse_budget(value: Any) -> BudgetSettings | None:
    """Recipe ``budget`` checked for its own shape (the sources it names are checked by
    ``apply_budget``): ``tokens`` a whole number >= 1, ``shares`` a mapping of numbers in (0, 1]."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecipeError(f"budget: expected a mapping {{tokens: N, shares: {{source: share, ...}}}}, found {value!r}")
    unknown = sorted(str(k) for k in value if k not in ("tokens", "shares"))
    if unknown:
        raise RecipeError("budget: unknown key(s) " + ", ".join(
            f"{k!r}{did_you_mean(k, ['tokens', 'shares'])}" for k in unknown) + "; valid keys: shares, tokens")
    tokens, shares = value.get("tokens"), value.get("shares")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise RecipeError(f"budget.tokens: expected a whole number of tokens >= 1, found {tokens!r}")
    if not isinstance(shares, dict) or not shares:
        raise RecipeError("budget.shares: expected a mapping of source name to its share of budget.tokens, "
                          f"found {shares!r}")
    for name, share in shares.items():
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
            raise RecipeError(f"budget.shares.{name}: a share is a number in (0, 1], found {share!r}")
    total = sum(Fraction(str(s)) for s in shares.values())
    if abs(total - 1) > SHARE_TOLERANCE:
        raise RecipeError(f"budget.shares: the shares add up to {float(total):g}, not 1 "
                          f"({', '.join(f'{k}: {v}' for k, v in shares.items())})")
    return BudgetSettings(tokens=tokens, shares={str(k): float(v) for k, v in shares.items()})


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Whole-token budgets, in ``shares``' order, that add up to ``total`` exactly (largest remainder).

    The shares are normalised by their sum (they may miss 1 by ``SHARE_TOLERANCE``)."""
    exact = {name: Fraction(str(s)) for name, s in shares.items()}
    norm = sum(exact.values())
    quotas = {name: total * s / norm for name, s in exact.items()}
    out = {name: int(q) for name, q in quotas.items()}  # floor: quotas are >= 0
    left = total - sum(out.values())
    by_remainder = sorted(range(len(quotas)), key=lambda i: -(list(quotas.values())[i] % 1))  # stable: ties in order
    names = list(quotas)
    for i in by_remainder[:left]:
        out[names[i]] += 1
    return out


def apply_budget(budget: BudgetSettings, sources: tuple[Any, ...], order: str) -> dict[str, TokenTake]:
    """Each budgeted source's ``TokenTake``; errors name the recipe key. A source with a share takes its
    tokens from the budget alone: its own ``take`` must be left ``all``, ``repeat`` 1, ``take_per_file``
    off. Sources without a share keep their own ``take`` and are outside the budget."""
    names = [s.name for s in sources]
    for name in budget.shares:
        if name not in names:
            raise RecipeError(f"budget.shares.{name}: no source is named {name!r}{did_you_mean(name, names)}; "
                              f"sources: {', '.join(names)}")
    if order != "filter_then_sample":
        raise RecipeError("budget: token budgets count the tokens of filtered records, so they need "
                          "order: filter_then_sample (this recipe has sample_then_filter)")
    by_name = {s.name: s for s in sources}
    for name in budget.shares:
        s = by_name[name]
        if s.take != "all":
            raise RecipeError(f"budget.shares.{name}: source {name!r} also sets take ({s.take!r}); a source with "
                              "a share takes its tokens from budget.tokens: leave its take out")
        if s.repeat != 1 or s.take_per_file:
            raise RecipeError(f"budget.shares.{name}: source {name!r} sets "
                              f"{'repeat' if s.repeat != 1 else 'take_per_file'}; a budget repeats a source "
                              "itself when it has fewer tokens than its share: leave it out")
    planned = apportion(budget.tokens, budget.shares)
    return {name: TokenTake(tokens=planned[name], upsample=True, share=budget.shares[name]) for name in budget.shares}


def check_token_takes(sources: tuple[Any, ...], order: str) -> None:
    """``take: {tokens: N}`` needs the filtered records' token counts: not with sample_then_filter."""
    for i, s in enumerate(sources):
        if isinstance(s.take, TokenTake) and order != "filter_then_sample":
            raise RecipeError(f"sources[{i}] ({s.name}).take.tokens: token takes count the tokens of "
                              "filtered records, so they need order: filter_then_sample")
