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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer import __version__
from mixer.core.errors import MixerError
from mixer.core.outdir import check_not_an_input
from mixer.core.records import MESSAGE_TYPE
from mixer.generate.backends import BACKENDS, VLLM_MAX_TEMPERATURE, Backend, SamplingSettings, make_backend
from mixer.generate.prompts import PROMPT_MODES, Prompt, PromptSet, read_build_prompts, read_recipe_prompts

logger = logging.getLogger("mixer.generate")

MANIFEST = "generate.json"
CARD = "card.json"
TIMINGS = "timings.json"
VERSIONS = "backend_versions.json"
SHARDS = "shards"
BEST_OF_N = "best_of_n"
BEST_VS_WORST = "best_vs_worst"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}

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


@dataclass
class GenerateConfig:
    """What ``mixer generate`` does; the command-line options map one to one onto these fields."""

    policy: str = field(metadata={"help": "The model that samples (a local folder with a chat template)."})
    reward_model: str = field(metadata={"help": "A `mixer train rm` output that scores the samples."})
    output: str = field(metadata={"help": "The output folder (a new one, or an earlier run's to resume)."})
    data: str | None = field(default=None, metadata={"help": "A mixer build (SFT or preference) to take prompts from."})
    recipe: str | None = field(default=None, metadata={"help": "A build recipe whose sources give the prompts."})
    sources: list[str] | None = field(default=None, metadata={"help": "Recipe sources to read (default: all)."})
    raw_dir: str | None = field(default=None, metadata={"help": "Overrides the recipe's raw_dir."})
    prompt_mode: str = field(default="first_user", metadata={"help": f"One of {PROMPT_MODES}."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use the first N distinct prompts."})
    n: int = field(default=4, metadata={"help": "Samples per prompt."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest reply, in tokens."})
    seed: int = field(default=42, metadata={"help": "Run seed; each prompt's seed derives from it and its key."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per vLLM call; replies per reward-model pass."})
    min_reward_gap: float = field(default=0.0, metadata={"help": "A pair needs best - worst >= this (and > 0)."})
    dedup: bool = field(default=True, metadata={"help": "Identical replies (ignoring surrounding space) count once."})
    keep_truncated: bool = field(default=True, metadata={"help": "Replies cut at max_new_tokens may be picked."})
    backend: str = field(default="transformers", metadata={"help": f"One of {BACKENDS}."})
    chat_template: str | None = field(default=None, metadata={"help": "`tulu` or a .jinja file; default: the model's."})
    dtype: str = field(default="auto", metadata={"help": "Policy weights: auto (bf16 on GPU, fp32 on CPU), ..."})
    shard_prompts: int = field(default=64, metadata={"help": "Prompts per resumable shard."})
    name: str | None = field(default=None, metadata={"help": "`dataset` label of the outputs (default: folder name)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing folder that is not resumable."})

    def validate(self) -> None:
        if (self.data is None) == (self.recipe is None):
            raise MixerError("give prompts with exactly one of --data (a mixer build) or --recipe (a build recipe)")
        if self.sources and self.recipe is None:
            raise MixerError("--source selects recipe sources; it needs --recipe")
        if self.prompt_mode not in PROMPT_MODES:
            raise MixerError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}; got {self.prompt_mode!r}")
        if self.backend not in BACKENDS:
            raise MixerError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        for name, low in (("n", 1), ("max_new_tokens", 1), ("batch_size", 1), ("shard_prompts", 1)):
            if getattr(self, name) < low:
                raise MixerError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise MixerError(f"max_prompts must be positive, got {self.max_prompts}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise MixerError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        if self.backend == "vllm" and self.temperature > VLLM_MAX_TEMPERATURE:
            # vLLM's SamplingParams refuses it (after the model has loaded); say so before anything loads
            raise MixerError(f"--backend vllm takes temperatures in [0, {VLLM_MAX_TEMPERATURE:g}], "
                             f"got {self.temperature}")
        if self.min_reward_gap < 0:
            raise MixerError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}")

    def sampling_identity(self) -> dict[str, Any]:
        """The settings that decide the samples and rewards in the shards: a resume must match them."""
        keys = ("data", "recipe", "sources", "raw_dir", "prompt_mode", "max_prompts", "policy", "reward_model",
                "n", "temperature", "top_p", "max_new_tokens", "seed", "backend", "chat_template", "dtype",
                "shard_prompts")
        return {k: getattr(self, k) for k in keys}

    def assembly_settings(self) -> dict[str, Any]:
        """The settings that only decide what is picked from the shards (changing them re-picks, no resampling)."""
        return {"min_reward_gap": self.min_reward_gap, "dedup": self.dedup, "keep_truncated": self.keep_truncated,
                "name": self.label}

    @property
    def label(self) -> str:
        return self.name or Path(self.output).resolve().name


def prompt_seed(run_seed: int, key: str) -> int:
    """A prompt's seed: from the run seed and the prompt's key only, so it is the same in any batch or resume."""
    digest = hashlib.blake2b(f"{run_seed}\x00{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, **PARQUET_OPTIONS)
    os.replace(tmp, path)


def _prompts_digest(prompts: list[Prompt]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in prompts:
        h.update(json.dumps([p.key, p.dataset, p.messages], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def read_prompts(cfg: GenerateConfig) -> PromptSet:
    if cfg.data is not None:
        return read_build_prompts(cfg.data, cfg.prompt_mode, cfg.max_prompts)
    assert cfg.recipe is not None
    return read_recipe_prompts(cfg.recipe, cfg.sources, cfg.prompt_mode, cfg.max_prompts, cfg.raw_dir)


def prepare_output(cfg: GenerateConfig, manifest: dict[str, Any]) -> str:
    """Make ``OUT`` ready: ``new``, ``resume`` (same settings) or ``complete`` (nothing to do).

    An existing folder that is not a ``mixer generate`` output is never touched without ``--overwrite``;
    one generated with other settings is refused too (its shards would mix two runs).
    """
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise MixerError(f"--output {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if cfg.overwrite:
            shutil.rmtree(out)
        elif not (out / MANIFEST).is_file():
            raise MixerError(f"{out} exists and is not a mixer generate output; pass --overwrite to replace it "
                             "or choose another --output")
        else:
            try:
                old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise MixerError(f"{out / MANIFEST}: unreadable ({e}); pass --overwrite to start over") from None
            changed = _changed_keys(old, manifest)
            if changed and not any((out / SHARDS).glob("*.parquet")):
                # a run that stopped before its first shard (a mistyped or wrong model, say): no sample to
                # keep apart from the new settings', so it starts over
                _write_json(out / MANIFEST, manifest)
                return "new"
            if changed:
                raise MixerError(f"{out} was generated with other settings ({', '.join(changed)} differ); resume "
                                 "with the same ones, pass --overwrite to start over, or choose another --output")
            card = out / CARD
            if card.is_file():
                try:
                    done = json.loads(card.read_text(encoding="utf-8")).get("settings", {}).get("assembly")
                except ValueError:
                    done = None
                if done == cfg.assembly_settings():
                    return "complete"
            return "resume"
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / MANIFEST, manifest)
    return "new"


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two manifests (``sampling.n``, ``prompts_digest``)."""
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def run_generate(cfg: GenerateConfig, *, log: Any = None, progress: Any = None) -> dict[str, Any]:
    """Generate (or resume), score, pick and write the outputs; return the card. ``log``: progress lines;
    ``progress(prompts, prompts_total, tokens, seconds)``: each call adds the prompts done, the tokens
    generated and the seconds it took: once before the first shard (the prompts an earlier run did) and after
    every shard; the CLI shows prompts done, tokens/s and an ETA from it."""
    say = log or (lambda msg: logger.info(msg))
    cfg.validate()
    for option, folder in (("--policy", cfg.policy), ("--reward-model", cfg.reward_model)):
        if not Path(folder).is_dir():  # before the output folder is made, and before any hub look-up
            raise MixerError(f"{option} {folder}: no such model folder")
    # the output folder may be replaced as a whole (--overwrite): it must hold none of the inputs
    inputs = [("--policy", cfg.policy), ("--reward-model", cfg.reward_model), ("--data", cfg.data),
              ("--recipe", cfg.recipe), ("--raw-dir", cfg.raw_dir), ("--chat-template", cfg.chat_template)]
    check_not_an_input(cfg.output, [(o, Path(p)) for o, p in inputs if p and Path(p).exists()], option="--output")
    started, cpu_started = time.perf_counter(), time.process_time()
    prompt_set = read_prompts(cfg)
    prompts = prompt_set.prompts
    if not prompts:
        raise MixerError(f"no prompt to generate for: {prompt_set.records_read} record(s) read, skipped "
                         f"{dict(prompt_set.skipped) or 'none'}")
    manifest = {"tool": "mixer generate", "sampling": cfg.sampling_identity(), "prompts": len(prompts),
                "prompts_digest": _prompts_digest(prompts)}
    state = prepare_output(cfg, manifest)
    out = Path(cfg.output)
    if state == "complete":
        say(f"{out} is complete (same settings); nothing to do")
        return json.loads((out / CARD).read_text(encoding="utf-8"))
    n_shards = (len(prompts) + cfg.shard_prompts - 1) // cfg.shard_prompts
    todo = [k for k in range(n_shards) if not _shard_path(out, k).is_file()]
    if state == "resume":
        say(f"resuming {out}: {n_shards - len(todo)} of {n_shards} shard(s) already done")
    backend: Backend | None = None
    scorer: Any = None
    generated_prompts = generated_tokens = 0
    gen_seconds = 0.0
    if progress is not None:
        progress(len(prompts) - sum(len(prompts[k * cfg.shard_prompts:(k + 1) * cfg.shard_prompts]) for k in todo),
                 len(prompts), 0, 0.0)
    for k in todo:
        if backend is None:
            backend, scorer = _load_models(cfg)
        chunk = prompts[k * cfg.shard_prompts:(k + 1) * cfg.shard_prompts]
        t0 = time.perf_counter()
        rows = _generate_shard(cfg, backend, scorer, chunk, k * cfg.shard_prompts)
        gen_seconds += time.perf_counter() - t0
        generated_prompts += len(chunk)
        generated_tokens += sum(r["n_tokens"] for r in rows)
        _write_parquet(_shard_path(out, k), rows, SAMPLE_SCHEMA)
        say(f"shard {k + 1}/{n_shards}: {len(chunk)} prompt(s) x {cfg.n} sample(s)")
        if progress is not None:
            progress(len(chunk), len(prompts), sum(r["n_tokens"] for r in rows), time.perf_counter() - t0)
    versions = backend.versions() if backend is not None else _recorded_versions(out)
    card = assemble(cfg, prompt_set, n_shards, versions)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _write_json(out / TIMINGS, {
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "generate_s": round(gen_seconds, 3),
        "prompts_generated": generated_prompts, "tokens_generated": generated_tokens,
        "prompts_per_s": round(generated_prompts / gen_seconds, 4) if gen_seconds else None,
        "tokens_per_s": round(generated_tokens / gen_seconds, 4) if gen_seconds else None,
        "backend": cfg.backend,
    })
    return card


def _shard_path(out: Path, k: int) -> Path:
    return out / SHARDS / f"samples-{k:05d}.parquet"


def _recorded_versions(out: Path) -> dict[str, str]:
    """Versions of the backend that sampled the shards, for a run whose shards were all done earlier."""
    path = out / VERSIONS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _load_models(cfg: GenerateConfig) -> tuple[Backend, Any]:
    from mixer.train.deps import require_train_deps

    require_train_deps(("torch", "transformers"))
    if cfg.backend == "vllm":
        from mixer.generate.backends import require_vllm

        require_vllm()  # before the reward model is loaded: the first thing a user without vLLM sees
    from mixer.train.reward import RewardScorer

    scorer = RewardScorer(cfg.reward_model, batch_size=cfg.batch_size)  # checked first: it fails faster
    sampling = SamplingSettings(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    backend = make_backend(cfg.backend, cfg.policy, sampling, chat_template=cfg.chat_template, dtype=cfg.dtype,
                           seed=cfg.seed)
    versions_path = Path(cfg.output) / VERSIONS
    recorded = _recorded_versions(Path(cfg.output))
    if recorded and recorded != backend.versions():
        logger.warning("resuming with other package versions than the first shards: %s, now %s", recorded,
                       backend.versions())
    else:
        _write_json(versions_path, backend.versions())
    return backend, scorer


def _generate_shard(cfg: GenerateConfig, backend: Backend, scorer: Any, chunk: list[Prompt],
                    first_index: int) -> list[dict[str, Any]]:
    """Sample and score one shard's prompts; rows in (prompt, sample) order."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(chunk), cfg.batch_size):
        batch = chunk[start:start + cfg.batch_size]
        seeds = [prompt_seed(cfg.seed, p.key) for p in batch]
        outputs = backend.generate([p.messages for p in batch], seeds)
        for j, (p, seed, completions) in enumerate(zip(batch, seeds, outputs, strict=True)):
            scored = [i for i, c in enumerate(completions) if c.text.strip()]
            rewards = scorer.score([[*p.messages, {"role": "assistant", "content": completions[i].text}]
                                    for i in scored]) if scored else []
            by_sample = dict(zip(scored, rewards, strict=True))
            for i, c in enumerate(completions):
                rows.append({"prompt_index": first_index + start + j, "prompt_key": p.key, "dataset": p.dataset,
                             "record_id": p.record_id, "prompt": p.messages, "sample": i, "seed": seed,
                             "completion": c.text, "n_tokens": c.n_tokens, "finish_reason": c.finish_reason,
                             "reward": by_sample.get(i)})
    return rows


# -- picking and the card -------------------------------------------------------------------------------


def pick(samples: list[dict[str, Any]], *, dedup: bool, keep_truncated: bool,
         min_reward_gap: float) -> tuple[dict | None, dict | None, str | None, Counter[str]]:
    """Best and worst of one prompt's samples, and why there is no pair when there is none.

    Returns ``(best, worst, no_pair_reason, sample_counts)``. Candidates are non-empty replies (and not cut
    at max_new_tokens unless ``keep_truncated``), once per distinct text when ``dedup``. Ties on reward go to
    the lower sample index. ``worst`` is None when there is no pair; ``best`` is None with no candidate.
    """
    counts: Counter[str] = Counter()
    candidates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for s in samples:
        if s["reward"] is None:
            counts["empty"] += 1
            continue
        if s["finish_reason"] == "length":
            counts["truncated"] += 1
            if not keep_truncated:
                continue
        text = s["completion"].strip()
        if dedup and text in seen:
            counts["duplicate"] += 1
            continue
        seen.add(text)
        candidates.append(s)
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


def _dist(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "max": None, "min": None}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))]

    return {"count": len(s), "mean": round(sum(s) / len(s), 6), "p50": round(q(0.5), 6), "p95": round(q(0.95), 6),
            "max": round(s[-1], 6), "min": round(s[0], 6)}


def assemble(cfg: GenerateConfig, prompt_set: PromptSet, n_shards: int, versions: dict[str, str]) -> dict[str, Any]:
    """Read every shard, pick per prompt, write the two datasets, the card and its README."""
    out = Path(cfg.output)
    label = cfg.label
    table = pa.concat_tables([pq.read_table(_shard_path(out, k), schema=SAMPLE_SCHEMA) for k in range(n_shards)])
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
    _write_parquet(out / BEST_OF_N / "data" / "train-00000-of-00001.parquet", best_rows, BEST_SCHEMA)
    _write_parquet(out / BEST_VS_WORST / "data" / "train-00000-of-00001.parquet", pair_rows, PAIR_SCHEMA)
    n_prompts = len(prompt_set.prompts)
    assert prompt_set.records_read == n_prompts + sum(prompt_set.skipped.values())
    assert n_prompts == len(pair_rows) + sum(no_pair.values())
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
        "samples": {"total": n_prompts * cfg.n, **dict(sorted(samples.items()))},
        "best_of_n": {"rows": len(best_rows), "no_valid_completion": n_prompts - len(best_rows)},
        "best_vs_worst": {"pairs": len(pair_rows), "no_pair": dict(sorted(no_pair.items()))},
        "rewards": {"all_samples": _dist(all_rewards), "per_prompt_spread": _dist(spreads),
                    "chosen": _dist([r["reward_chosen"] for r in pair_rows]),
                    "rejected": _dist([r["reward_rejected"] for r in pair_rows])},
        "lengths": {"chosen_tokens": _dist(chosen_len), "rejected_tokens": _dist(rejected_len),
                    "chosen_longer_share": round(sum(c > r for c, r in zip(chosen_len, rejected_len, strict=True))
                                                 / len(pair_rows), 6) if pair_rows else None},
        "outputs": {name: _digest_file(out / name / "data" / "train-00000-of-00001.parquet")
                    for name in (BEST_OF_N, BEST_VS_WORST)},
    }
    (out / "README.md").write_text(render_card(card), encoding="utf-8")
    _write_json(out / CARD, card)
    return card


def _assistant(sample: dict[str, Any]) -> dict[str, str]:
    return {"role": "assistant", "content": sample["completion"]}


def _digest_file(path: Path) -> dict[str, Any]:
    return {"path": str(path.relative_to(path.parents[2])), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": pq.ParquetFile(path).metadata.num_rows}


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
    lines += ["Samples: " + ", ".join(f"{k} {v}" for k, v in card["samples"].items()) + ".", "",
              "## Rewards and lengths", "", "| | count | mean | p50 | p95 | max |", "|---|---|---|---|---|---|",
              f"| reward, all samples | {fmt(r['all_samples'])} |",
              f"| reward spread per prompt (max - min) | {fmt(r['per_prompt_spread'])} |",
              f"| reward, chosen | {fmt(r['chosen'])} |", f"| reward, rejected | {fmt(r['rejected'])} |",
              f"| tokens, chosen | {fmt(lens['chosen_tokens'])} |",
              f"| tokens, rejected | {fmt(lens['rejected_tokens'])} |", "",
              f"Chosen reply longer than rejected in {lens['chosen_longer_share']} of pairs (reward models tend to "
              "prefer longer replies; check before training on these pairs).", ""]
    return "\n".join(lines)


def config_from_options(**options: Any) -> GenerateConfig:
    """A :class:`GenerateConfig` from keyword options, ignoring the ones left at None (not given)."""
    names = {f.name for f in dataclasses.fields(GenerateConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise MixerError(f"unknown generate option(s): {', '.join(unknown)}")
    return GenerateConfig(**{k: v for k, v in options.items() if v is not None})
