"""The data card of ``mixer generate`` as Markdown, and the distribution summary its tables use."""

from __future__ import annotations

from typing import Any


def dist(values: list[float]) -> dict[str, float | int | None]:
    """Count, mean, p50, p95, max and min of ``values`` (nearest rank, rounded to 6 places)."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None, "min": None}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]

    return {"count": len(s), "mean": round(sum(s) / len(s), 6), "p50": round(q(0.5), 6), "p95": round(q(0.95), 6),
            "max": round(s[-1], 6), "min": round(s[0], 6)}



def render_card(card: dict[str, Any]) -> str:
    """The card as Markdown: what was sampled from what, and where every prompt went."""
    p, pairs, r, lens = card["prompts"], card["best_vs_worst"], card["rewards"], card["lengths"]
    s = card["settings"]["sampling"]

    def fmt(d: dict[str, Any]) -> str:
        return " | ".join(str(d[k]) for k in ("count", "mean", "p50", "p95", "max"))

    lines = [
        f"# Generated data: {card['settings']['assembly']['name']}", "",
        f"Best-of-{s['n']} samples from `{card['models']['policy']}` scored by `{card['models']['reward_model']}` "
        f"(`mixer generate`, backend {card['backend']['name']}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(card["backend"]["versions"].items())) + ").", "",
        f"Sampling: temperature {s['temperature']}, top_p {s['top_p']}, max_new_tokens {s['max_new_tokens']}, "
        f"seed {s['seed']}, prompts cut as `{s['prompt_mode']}`.", "",
        "## Prompts", "",
        "| records read | skipped | generated | best_of_n rows | pairs |", "|---|---|---|---|---|",
        f"| {p['records_read']} | {sum(p['skipped'].values())} | {p['generated']} | {card['best_of_n']['rows']} "
        f"| {pairs['pairs']} |", "",
    ]
    if p["skipped"]:
        lines += ["Skipped prompts: " + ", ".join(f"{k} {v}" for k, v in p["skipped"].items()) + ".", ""]
    if pairs["no_pair"]:
        lines += ["Prompts without a pair: " + ", ".join(f"{k} {v}" for k, v in pairs["no_pair"].items()) + ".", ""]
    n = card["samples"]
    lines += [f"Samples: {n['total']}, each counted once: {n['candidates']} candidates (non-empty, scored, picked "
              f"from; {card['candidates_truncated']} of them cut at max_new_tokens, kept by --keep-truncated), "
              f"{n['empty']} empty (nothing to score), {n['truncated']} truncated (cut at max_new_tokens, dropped by "
              f"--drop-truncated), {n['duplicate']} duplicate (the text of an earlier sample of the prompt, --dedup).",
              "",
              "## Rewards and lengths", "", "| | count | mean | p50 | p95 | max |", "|---|---|---|---|---|---|",
              f"| reward, all samples | {fmt(r['all_samples'])} |",
              f"| reward spread per prompt (max - min) | {fmt(r['per_prompt_spread'])} |",
              f"| reward, chosen | {fmt(r['chosen'])} |", f"| reward, rejected | {fmt(r['rejected'])} |",
              f"| tokens, chosen | {fmt(lens['chosen_tokens'])} |",
              f"| tokens, rejected | {fmt(lens['rejected_tokens'])} |", "",
              f"Chosen reply longer than rejected in {lens['chosen_longer_share']} of pairs (reward models tend to "
              "prefer longer replies; check before training on these pairs).", ""]
    return "\n".join(lines)
