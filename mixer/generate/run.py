"""``mixer generate``: best-of-N sampling scored by a reward model, written as a build folder with a card.

Llama 2's rejection sampling (Touvron et al. 2023, §3.2.3) samples N replies per prompt from the current
policy, keeps the one the reward model scores highest as new fine-tuning data; Tulu 3 / SPIN-style
pipelines also keep the lowest as the rejected side of an on-policy pair. ``OUT/`` holds:

- ``best_of_n/data/train-00000-of-00001.parquet``: ``messages`` = prompt + best reply (SFT; the recipe
  adapter ``messages`` and ``mixer train sft`` read it);
- ``best_vs_worst/data/train-00000-of-00001.parquet``: ``prompt``/``chosen``/``rejected`` (the adapter
  ``preference`` and ``mixer train dpo``/``rm`` read it), with both rewards;
- ``shards/samples-NNNNN.parquet``: every sample of ``shard_prompts`` prompts with its reward, written
  atomically when the shard is done. They are the resume points: a rerun with the same settings skips
  finished shards, and a finished run (``card.json`` with the same settings) is not redone;
- ``card.json`` / ``README.md``: every prompt accounted for (read, skipped and why, generated, paired or
  not and why), reward spread, chosen vs rejected lengths, backend and versions;
- ``generate.json``: the settings that decide the samples (checked on resume); ``backend_versions.json``;
  ``timings.json``.

Everything but ``timings.json`` is a pure function of the inputs and settings (with the transformers
backend on CPU: byte for byte, see :mod:`mixer.generate.backends`).

This module is the loop (read prompts, sample and score shard by shard, then assemble); the settings are in
:mod:`mixer.generate.config`, the folder and resume protocol in :mod:`mixer.generate.store`, the picking in
:mod:`mixer.generate.assembly` and the card's Markdown in :mod:`mixer.generate.card`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.generate.assembly import SAMPLE_SCHEMA, assemble, pick
from mixer.generate.backends import Backend, SamplingSettings, make_backend
from mixer.generate.checks import check_policy_folder, check_reward_folder
from mixer.generate.config import GenerateConfig, prompt_seed
from mixer.generate.job import read_prompts
from mixer.generate.prompts import Prompt
from mixer.generate.scoring import score_by_length
from mixer.generate.store import (
    MANIFEST,
    SHARDS,
    TIMINGS,
    open_shards,
    prepare_output,
    record_versions,
    recorded_versions,
    write_json,
)

__all__ = ["MANIFEST", "SHARDS", "GenerateConfig", "pick", "prepare_output", "prompt_seed", "read_prompts",
           "run_generate"]

logger = logging.getLogger("mixer.generate")


def run_generate(cfg: GenerateConfig, *, log: Any = None, progress: Any = None) -> dict[str, Any]:
    """Generate (or resume), score, pick and write the outputs; return the card. ``log``: progress lines;
    ``progress(prompts, prompts_total, tokens, seconds)``: each call adds the prompts done, the tokens
    generated and the seconds it took: once before the first shard (the prompts an earlier run did) and after
    every shard; the CLI shows prompts done, tokens/s and an ETA from it."""
    say = log or (lambda msg: logger.info(msg))
    cfg.validate()
    if cfg.method != "best-of-n":
        from mixer.generate.job import run_method
        from mixer.generate.methods import make_method

        return run_method(cfg, make_method(cfg), log=log)
    # before the output folder is made, and before any hub look-up
    check_policy_folder(cfg.policy, chat_template=cfg.chat_template)
    check_reward_folder(cfg.reward_model or "")
    started, cpu_started = time.perf_counter(), time.process_time()
    prompt_set = read_prompts(cfg)
    prompts = prompt_set.prompts
    if not prompts:
        raise MixerError(f"no prompt to generate for: {prompt_set.records_read} record(s) read, skipped "
                         f"{dict(prompt_set.skipped) or 'none'}")
    plan = open_shards(cfg, prompts, cfg.sampling_identity(), say, prompt_set.inputs)
    if plan.complete:
        return plan.finished_card()
    out = plan.out
    backend: Backend | None = None
    scorer: Any = None
    generated_prompts = generated_tokens = 0
    gen_seconds = 0.0
    if progress is not None:
        progress(plan.prompts_done, len(prompts), 0, 0.0)
    for k, first_index, chunk in plan.pending():
        if backend is None:
            backend, scorer = _load_models(cfg)
        t0 = time.perf_counter()
        rows = _generate_shard(cfg, backend, scorer, chunk, first_index)
        gen_seconds += time.perf_counter() - t0
        generated_prompts += len(chunk)
        generated_tokens += sum(r["n_tokens"] for r in rows)
        plan.write(k, rows, SAMPLE_SCHEMA)
        say(f"shard {k + 1}/{plan.n_shards}: {len(chunk)} prompt(s) x {cfg.n} sample(s)")
        if progress is not None:
            progress(len(chunk), len(prompts), sum(r["n_tokens"] for r in rows), time.perf_counter() - t0)
    versions = backend.versions() if backend is not None else recorded_versions(out)
    card = assemble(cfg, prompt_set, plan.n_shards, versions)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    write_json(out / TIMINGS, {
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "generate_s": round(gen_seconds, 3),
        "prompts_generated": generated_prompts, "tokens_generated": generated_tokens,
        "prompts_per_s": round(generated_prompts / gen_seconds, 4) if gen_seconds else None,
        "tokens_per_s": round(generated_tokens / gen_seconds, 4) if gen_seconds else None,
        "backend": cfg.backend,
    })
    return card


def _load_models(cfg: GenerateConfig) -> tuple[Backend, Any]:
    from mixer.train.deps import require_train_deps

    require_train_deps(("torch", "transformers"))
    if cfg.backend == "vllm":
        from mixer.generate.backends import require_vllm

        require_vllm()  # before the reward model is loaded: the first thing a user without vLLM sees
    from mixer.train.reward import RewardScorer

    # checked first: it fails faster; the reward model in the policy's dtype (auto: bf16 on a GPU)
    scorer = RewardScorer(cfg.reward_model, batch_size=cfg.batch_size, dtype=cfg.dtype)
    sampling = SamplingSettings(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    backend = make_backend(cfg.backend, cfg.policy, sampling, chat_template=cfg.chat_template, dtype=cfg.dtype,
                           seed=cfg.seed, batching=cfg.batching)
    record_versions(Path(cfg.output), backend.versions())
    return backend, scorer


def _generate_shard(cfg: GenerateConfig, backend: Backend, scorer: Any, chunk: list[Prompt],
                    first_index: int) -> list[dict[str, Any]]:
    """Sample and score one shard's prompts; rows in (prompt, sample) order. The non-empty replies of a backend
    call are scored together, sorted by length in ``--score-tokens`` batches."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(chunk), cfg.batch_size):
        batch = chunk[start:start + cfg.batch_size]
        seeds = [prompt_seed(cfg.seed, p.key) for p in batch]
        outputs = backend.generate([p.messages for p in batch], seeds)
        scored = [(j, i) for j, completions in enumerate(outputs) for i, c in enumerate(completions) if c.text.strip()]
        rewards = score_by_length(scorer, [[*batch[j].messages, {"role": "assistant", "content": outputs[j][i].text}]
                                           for j, i in scored], cfg.score_tokens) if scored else []
        by_sample = dict(zip(scored, rewards, strict=True))
        for j, (p, seed, completions) in enumerate(zip(batch, seeds, outputs, strict=True)):
            for i, c in enumerate(completions):
                rows.append({"prompt_index": first_index + start + j, "prompt_key": p.key, "dataset": p.dataset,
                             "record_id": p.record_id, "prompt": p.messages, "sample": i, "seed": seed,
                             "completion": c.text, "n_tokens": c.n_tokens, "finish_reason": c.finish_reason,
                             "reward": by_sample.get((j, i))})
    return rows
