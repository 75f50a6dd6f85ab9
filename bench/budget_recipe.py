"""A token-budget copy of a recipe, with the token shares a record-take build of it gave (issue 23, point 1).

    python bench/budget_recipe.py OUT/card.json --recipe recipes/v2.yaml --write /tmp/v2-budget.yaml
    python bench/build.py --scale 0.25 --recipe /tmp/v2-budget.yaml --markdown

Why: to measure what selecting by tokens costs against selecting by records on the same data, the
budget copy asks for the same mixture: ``budget.tokens`` is the build's total tokens (times
``--factor``) and each source's share is its share of them, so the same amount of data is selected,
now by walking each source's seeded order and counting tokens until its budget is met. The sources
with ``repeat`` (the hard-coded prompts) stay outside the budget with their own take; the budgeted
sources lose their ``take`` and ``take_per_file``. Shares are written with 6 decimals; the last one
takes what rounding left, so they add up to exactly 1.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

import yaml


def budget_copy(recipe: dict, card: dict, factor: float) -> dict:
    """``recipe`` with a ``budget`` made from ``card``'s per-source token totals."""
    repeated = {s["name"] for s in recipe["sources"] if s.get("repeat", 1) != 1}
    totals = {s["name"]: s["tokens"]["total"] for s in card["sources"]
              if s["name"] not in repeated and not s["excluded"] and s["tokens"]["total"]}
    whole = sum(totals.values())
    shares: dict[str, float] = {}
    left = Decimal(1)
    for i, (name, tokens) in enumerate(totals.items()):
        share = left if i == len(totals) - 1 else Decimal(tokens / whole).quantize(Decimal("0.000001"))
        shares[name] = float(share)
        left -= share
    out = dict(recipe)
    out["name"] = f"{recipe.get('name', 'recipe')}-budget"
    out["budget"] = {"tokens": int(whole * factor), "shares": shares}
    out["sources"] = [{k: v for k, v in s.items() if s["name"] not in shares or k not in ("take", "take_per_file")}
                      for s in recipe["sources"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("card", type=Path, help="card.json of a build of --recipe")
    ap.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "recipes" / "v2.yaml")
    ap.add_argument("--write", type=Path, required=True, help="where to write the budget recipe")
    ap.add_argument("--factor", type=float, default=1.0, help="budget.tokens = the card's total times this")
    args = ap.parse_args()
    recipe = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    card = json.loads(args.card.read_text(encoding="utf-8"))
    args.write.write_text(yaml.safe_dump(budget_copy(recipe, card, args.factor), sort_keys=False), encoding="utf-8")


if __name__ == "__main__":
    main()
