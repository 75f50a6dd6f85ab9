"""Picking from the finished shards: per prompt the best sample (best-of-N, SFT) and best vs worst (a pair).

The shards are the only input, so changing a pick setting (``--min-reward-gap``, ``--dedup``,
``--drop-truncated``) re-picks without sampling again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer import __version__
from mixer.core.errors import MixerError
from mixer.core.records import MESSAGE_TYPE
from mixer.generate.card import dist, render_card
from mixer.generate.config import GenerateConfig
from mixer.generate.prompts import PromptSet
from mixer.generate.store import (
    BEST_OF_N,
    BEST_VS_WORST,
    CARD,
    SHARDS,
    digest_file,
    shard_path,
    write_json,
    write_parquet,
)

SAMPLE_SCHEMA = pa.schema([
    ("prompt_index", pa.int64()), ("prompt_key", pa.string()), ("dataset", pa.string()), ("record_id", pa.string()),
    ("prompt", pa.list_(MESSAGE_TYPE)), ("sample", pa.int32()), ("seed", pa.int64()), ("completion", pa.string()),
    ("n_tokens", pa.int32()), ("finish_reason", pa.string()), ("reward", pa.float64()),
])
BEST_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("id", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)), ("reward", pa.float64()),
    ("completion_tokens", pa.int32()), ("prompt_dataset", pa.string()), ("prompt_id", pa.string()),
])
PAIR_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("id", pa.string()), ("prompt", pa.list_(MESSAGE_TYPE)),
    ("chosen", pa.list_(MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE)), ("reward_chosen", pa.float64()),
    ("reward_rejected", pa.float64()), ("chosen_tokens", pa.int32()), ("rejected_tokens", pa.int32()),
    ("prompt_dataset", pa.string()), ("prompt_id", pa.string()),
])

#: where each sample goes, once: picked from (``candidates``), no text to score (``empty``), cut at
#: max_new_tokens and dropped (``truncated``, only with --drop-truncated), the same text as an earlier sample of
#: its prompt (``duplicate``, only with --dedup)
SAMPLE_OUTCOMES = ("candidates", "empty", "truncated", "duplicate")


def pick(samples: list[dict[str, Any]], *, dedup: bool, keep_truncated: bool,
         min_reward_gap: float) -> tuple[dict | None, dict | None, str | None, Counter[str]]:
    """Best and worst of one prompt's samples, and why there is no pair when there is none.

    Returns ``(best, worst, no_pair_reason, sample_counts)``. Candidates are non-empty replies (and not cut
    at max_new_tokens unless ``keep_truncated``), once per distinct text when ``dedup``. Ties on reward go to
    the lower sample index. ``worst`` is None when there is no pair; ``best`` is None with no candidate.
    ``sample_counts`` puts each sample in one of :data:`SAMPLE_OUTCOMES` (they add up to the samples given),
    plus ``candidates_truncated``: how many of the candidates were cut (a part of ``candidates``, kept by
    ``keep_truncated``).
    """
    counts: Counter[str] = Counter()
    candidates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for s in samples:
        if s["reward"] is None:
            counts["empty"] += 1
            continue
        if s["finish_reason"] == "length" and not keep_truncated:
            counts["truncated"] += 1
            continue
        text = s["completion"].strip()
        if dedup and text in seen:
            counts["duplicate"] += 1
            continue
        seen.add(text)
        candidates.append(s)
        if s["finish_reason"] == "length":
            counts["candidates_truncated"] += 1
    counts["candidates"] += len(candidates)
    if not candidates:
        return None, None, "no_valid_completion", counts
    best = min(candidates, key=lambda s: (-s["reward"], s["sample"]))
    worst = min(candidates, key=lambda s: (s["reward"], s["sample"]))
    if len(candidates) < 2:
        return best, None, "fewer_than_two_distinct_completions" if dedup else "fewer_than_two_completions", counts
    gap = best["reward"] - worst["reward"]
    if gap <= 0:
        return best, None, "reward_tie", counts
    if gap < min_reward_gap:
        return best, None, "reward_gap_below_min", counts
    return best, worst, None, counts



def assemble(cfg: GenerateConfig, prompt_set: PromptSet, n_shards: int, versions: dict[str, str]) -> dict[str, Any]:
    """Read every shard, pick per prompt, write the two datasets, the card and its README."""
    out = Path(cfg.output)
    label = cfg.label
    table = pa.concat_tables([pq.read_table(shard_path(out, k), schema=SAMPLE_SCHEMA) for k in range(n_shards)])
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        by_prompt.setdefault(row["prompt_index"], []).append(row)
    if len(by_prompt) != len(prompt_set.prompts):
        raise MixerError(f"{out / SHARDS}: the shards hold {len(by_prompt)} prompts, the input "
                         f"{len(prompt_set.prompts)}; pass --overwrite to start over")
    best_rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    no_pair: Counter[str] = Counter()
    samples: Counter[str] = Counter()
    spreads: list[float] = []
    all_rewards: list[float] = []
    for index in sorted(by_prompt):
        group = sorted(by_prompt[index], key=lambda r: r["sample"])
        if len(group) != cfg.n:
            raise MixerError(f"{out / SHARDS}: prompt {index} has {len(group)} samples, not n={cfg.n}")
        first = group[0]
        best, worst, reason, counts = pick(group, dedup=cfg.dedup, keep_truncated=cfg.keep_truncated,
                                           min_reward_gap=cfg.min_reward_gap)
        samples.update(counts)
        rewards = [s["reward"] for s in group if s["reward"] is not None]
        all_rewards += rewards
        if len(rewards) >= 2:
            spreads.append(max(rewards) - min(rewards))
        rid = f"{label}_{first['prompt_key']}"
        if best is not None:
            best_rows.append({"dataset": label, "id": rid, "messages": [*first["prompt"], _assistant(best)],
                              "reward": best["reward"], "completion_tokens": best["n_tokens"],
                              "prompt_dataset": first["dataset"], "prompt_id": first["record_id"]})
        if reason is not None:
            no_pair[reason] += 1
            continue
        assert best is not None and worst is not None
        pair_rows.append({"dataset": label, "id": rid, "prompt": first["prompt"], "chosen": [_assistant(best)],
                          "rejected": [_assistant(worst)], "reward_chosen": best["reward"],
                          "reward_rejected": worst["reward"], "chosen_tokens": best["n_tokens"],
                          "rejected_tokens": worst["n_tokens"], "prompt_dataset": first["dataset"],
                          "prompt_id": first["record_id"]})
    write_parquet(out / BEST_OF_N / "data" / "train-00000-of-00001.parquet", best_rows, BEST_SCHEMA)
    write_parquet(out / BEST_VS_WORST / "data" / "train-00000-of-00001.parquet", pair_rows, PAIR_SCHEMA)
    n_prompts = len(prompt_set.prompts)
    assert prompt_set.records_read == n_prompts + sum(prompt_set.skipped.values())
    assert n_prompts == len(pair_rows) + sum(no_pair.values())
    assert sum(samples[k] for k in SAMPLE_OUTCOMES) == n_prompts * cfg.n
    chosen_len = [float(r["chosen_tokens"]) for r in pair_rows]
    rejected_len = [float(r["rejected_tokens"]) for r in pair_rows]
    card = {
        "tool": "mixer generate",
        "mixer_version": __version__,
        "backend": {"name": cfg.backend, "versions": versions},
        "models": {"policy": cfg.policy, "reward_model": cfg.reward_model},
        "settings": {"sampling": cfg.sampling_identity(), "assembly": cfg.assembly_settings(),
                     "batch_size": cfg.batch_size},
        "inputs": prompt_set.inputs,
        "prompts": {"records_read": prompt_set.records_read, "skipped": dict(sorted(prompt_set.skipped.items())),
                    "generated": n_prompts},
        # each sample in one outcome, so these add up to total; candidates_truncated is a part of candidates
        "samples": {"total": n_prompts * cfg.n, **{k: samples[k] for k in SAMPLE_OUTCOMES}},
        "candidates_truncated": samples["candidates_truncated"],
        "best_of_n": {"rows": len(best_rows), "no_valid_completion": n_prompts - len(best_rows)},
        "best_vs_worst": {"pairs": len(pair_rows), "no_pair": dict(sorted(no_pair.items()))},
        "rewards": {"all_samples": dist(all_rewards), "per_prompt_spread": dist(spreads),
                    "chosen": dist([r["reward_chosen"] for r in pair_rows]),
                    "rejected": dist([r["reward_rejected"] for r in pair_rows])},
        "lengths": {"chosen_tokens": dist(chosen_len), "rejected_tokens": dist(rejected_len),
                    "chosen_longer_share": round(sum(c > r for c, r in zip(chosen_len, rejected_len, strict=True))
                                                 / len(pair_rows), 6) if pair_rows else None},
        "outputs": {name: digest_file(out / name / "data" / "train-00000-of-00001.parquet")
                    for name in (BEST_OF_N, BEST_VS_WORST)},
    }
    (out / "README.md").write_text(render_card(card), encoding="utf-8")
    write_json(out / CARD, card)
    return card


def _assistant(sample: dict[str, Any]) -> dict[str, str]:
    return {"role": "assistant", "content": sample["completion"]}
