"""The runner the data-making methods share: prompts in, one model call (or a few) per prompt, shards with
resume, one SFT source and a card out.

A method (:class:`Method`) says what it asks the model per prompt (:meth:`Method.shard`, through
:class:`Models`) and what it keeps (:meth:`Method.assemble`); this module does the rest the way best-of-N does
it (:mod:`mixer.generate.run`): the settings are checked and every input file read before the output folder
is made; ``generate.json`` holds the settings that decide the shards, so a rerun resumes (same bytes as an
uninterrupted run) and a folder of another run or not of ``mixer generate`` is refused (one protocol for every
method and best-of-N: :func:`mixer.generate.store.open_shards`); each call's seeds derive from the run seed
and the prompt's key; every prompt read ends up kept or dropped with a reason in ``card.json``/``README.md``.
The output ``OUT/<method>/data/train-00000-of-00001.parquet`` holds canonical ``messages`` rows that the
``messages`` recipe adapter reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from mixer import __version__
from mixer.core.errors import MixerError
from mixer.core.records import MESSAGE_TYPE
from mixer.generate.backends import Backend, Completion, SamplingSettings, make_backend
from mixer.generate.checks import check_policy_folder, check_reward_folder
from mixer.generate.config import GenerateConfig, prompt_seed
from mixer.generate.prompts import Prompt, PromptSet, read_build_prompts, read_recipe_prompts
from mixer.generate.scoring import score_by_length
from mixer.generate.store import (
    CARD,
    SHARDS,
    TIMINGS,
    digest_file,
    open_shards,
    record_versions,
    recorded_versions,
    shard_path,
    write_json,
    write_parquet,
)

logger = logging.getLogger("mixer.generate")

Messages = list[dict[str, str]]
#: columns every shard row starts with (a method adds its own)
SHARD_KEY_FIELDS = [("prompt_index", pa.int64()), ("prompt_key", pa.string()), ("dataset", pa.string()),
                    ("record_id", pa.string()), ("prompt", pa.list_(MESSAGE_TYPE))]
#: columns every output row starts with: a canonical SFT record plus where its prompt came from
OUTPUT_KEY_FIELDS = [("dataset", pa.string()), ("id", pa.string()), ("messages", pa.list_(MESSAGE_TYPE))]


def read_prompts(cfg: GenerateConfig, *, repeat: str = "prompt") -> PromptSet:
    """The run's prompts: from a build (``--data``) or a recipe's sources (``--recipe``). ``repeat``: what a
    skipped repeat is the same in (:data:`mixer.generate.prompts.REPEATS`)."""
    if cfg.data is not None:
        return read_build_prompts(cfg.data, cfg.prompt_mode, cfg.max_prompts, repeat=repeat)
    assert cfg.recipe is not None
    return read_recipe_prompts(cfg.recipe, cfg.sources, cfg.prompt_mode, cfg.max_prompts, cfg.raw_dir,
                               repeat=repeat)


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def last_user_text(messages: Messages) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def key_row(p: Prompt, index: int) -> dict[str, Any]:
    return {"prompt_index": index, "prompt_key": p.key, "dataset": p.dataset, "record_id": p.record_id,
            "prompt": p.messages}


class Models:
    """The policy (one reply per call, seeded per prompt) and, when the method needs it, the reward model."""

    def __init__(self, cfg: GenerateConfig, backend: Backend, scorer: Any) -> None:
        self.cfg = cfg
        self.backend = backend
        self.scorer = scorer

    def complete(self, convs: list[Messages], keys: list[str], step: str) -> list[Completion]:
        """One reply per conversation, ``--batch-size`` per backend call; ``step`` names the call so that two
        calls for one prompt (evolve, then answer) draw from different seeds."""
        out: list[Completion] = []
        size = self.cfg.batch_size
        for start in range(0, len(convs), size):
            seeds = [prompt_seed(self.cfg.seed, f"{k}\x00{step}") for k in keys[start:start + size]]
            out += [c[0] for c in self.backend.generate(convs[start:start + size], seeds)]
        return out

    def rewards(self, convs: list[Messages]) -> list[float]:
        """Reward per conversation (length-sorted, ``--score-tokens`` batches)."""
        return score_by_length(self.scorer, convs, self.cfg.score_tokens) if convs else []


class Method:
    """One data-making method: its name, what each prompt needs, what it asks the model, what it keeps."""

    name: ClassVar[str]
    #: the output folder inside OUT (also the ``dataset`` label's default)
    folder: ClassVar[str]
    #: the shard columns after :data:`SHARD_KEY_FIELDS`
    shard_fields: ClassVar[list[tuple[str, pa.DataType]]]
    #: the output columns after :data:`OUTPUT_KEY_FIELDS`
    output_fields: ClassVar[list[tuple[str, pa.DataType]]] = [("prompt_dataset", pa.string()),
                                                              ("prompt_id", pa.string())]
    #: prompts need the record's own reply (the gold answer to rewrite, the answer to judge)
    needs_reference: ClassVar[bool] = False
    #: the output is each input record whole (the judge adds a column): repeats are whole records, and the
    #: records decide the shards too
    keeps_record: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def __init__(self, cfg: GenerateConfig) -> None:
        self.cfg = cfg

    def needs_reward_model(self) -> bool:
        return False

    def settings(self) -> dict[str, Any]:
        """The method's own settings and texts that decide its shards (part of the resume check)."""
        return {}

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        """``(output rows, outcome per prompt, card section)``: every shard row (one per prompt) counted once in
        the outcome, as ``kept`` / ``kept:<how>`` or ``dropped:<reason>``."""
        raise NotImplementedError

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        """Markdown lines of the method's own section of the card."""
        return []

    @property
    def shard_schema(self) -> pa.Schema:
        return pa.schema([*SHARD_KEY_FIELDS, *self.shard_fields])

    @property
    def output_schema(self) -> pa.Schema:
        return pa.schema([*OUTPUT_KEY_FIELDS, *self.output_fields])

    def output_id(self, row: dict[str, Any]) -> dict[str, Any]:
        """The label, id and prompt origin of the output row made from a shard row. The id names the method too:
        two methods run over the same prompts under one ``--name`` give records a recipe can mix, and a build
        needs each (dataset, id) once."""
        label = self.cfg.label
        return {"dataset": label, "id": f"{label}_{self.folder}_{row['prompt_key']}", "prompt_dataset": row["dataset"],
                "prompt_id": row["record_id"]}


def _require_references(prompt_set: PromptSet, method: Method) -> PromptSet:
    """Prompts without their record's reply are skipped (``no_reference_reply``, by the reader, before
    ``--max-prompts`` counts); an input with no reply at all (a preference build, bare prompts) is the wrong input
    for the method: an error, before anything is made."""
    with_ref = [p for p in prompt_set.prompts if p.reference is not None and p.reference.strip()]
    if not with_ref and (prompt_set.prompts or prompt_set.skipped["no_reference_reply"]):
        raise MixerError(f"{', '.join(prompt_set.inputs) or 'the input'}: no record has an assistant reply after "
                         f"its prompt; --method {method.name} needs SFT records (messages ending in a reply), not "
                         "a preference build or bare prompts")
    skipped = Counter(prompt_set.skipped)
    if len(with_ref) < len(prompt_set.prompts):
        skipped["no_reference_reply"] += len(prompt_set.prompts) - len(with_ref)
    return PromptSet(with_ref, prompt_set.records_read, skipped, prompt_set.inputs)


def references_digest(prompts: list[Prompt]) -> str:
    """A digest of the prompts' own replies, in order (the manifest's prompt digest covers the prompts only)."""
    h = hashlib.blake2b(digest_size=16)
    for p in prompts:
        h.update(json.dumps(p.reference, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def records_digest(prompts: list[Prompt]) -> str:
    """A digest of the whole records the prompts were cut from, in order (for methods that write them back)."""
    h = hashlib.blake2b(digest_size=16)
    for p in prompts:
        h.update(json.dumps(p.record, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def run_method(cfg: GenerateConfig, method: Method, *, log: Any = None) -> dict[str, Any]:
    """Run (or resume) ``method`` over the configured prompts and write its source and card; return the card."""
    say = log or (lambda msg: logger.info(msg))
    check_policy_folder(cfg.policy, chat_template=cfg.chat_template)
    if method.needs_reward_model():
        check_reward_folder(cfg.reward_model or "")
    started, cpu_started = time.perf_counter(), time.process_time()
    # the judge writes records back whole; the rewriting methods use each record's reply
    repeat = "record" if method.keeps_record else "prompt_and_reply" if method.needs_reference else "prompt"
    prompt_set = read_prompts(cfg, repeat=repeat)
    if method.needs_reference:
        prompt_set = _require_references(prompt_set, method)
    prompts = prompt_set.prompts
    if not prompts:
        raise MixerError(f"no prompt to generate for: {prompt_set.records_read} record(s) read, skipped "
                         f"{dict(prompt_set.skipped) or 'none'}")
    identity = {**cfg.sampling_identity(), **method.settings()}
    if method.needs_reference:
        # the replies decide the shards too (the answer judged, the gold answer rewritten): a rerun over changed
        # replies is another run, not a finished or resumable one
        identity["references_digest"] = references_digest(prompts)
    if method.keeps_record:  # the later turns are written back: another record is another run
        identity["records_digest"] = records_digest(prompts)
    plan = open_shards(cfg, prompts, identity, say, prompt_set.inputs)
    if plan.complete:
        return plan.finished_card()
    out = plan.out
    models: Models | None = None
    gen_seconds = 0.0
    for k, first_index, chunk in plan.pending():
        if models is None:
            models = _load(cfg, method)
        t0 = time.perf_counter()
        rows = method.shard(models, chunk, first_index)
        gen_seconds += time.perf_counter() - t0
        plan.write(k, rows, method.shard_schema)
        say(f"shard {k + 1}/{plan.n_shards}: {len(chunk)} prompt(s)")
    versions = models.backend.versions() if models is not None else recorded_versions(out)
    card = _assemble(cfg, method, prompt_set, plan.n_shards, versions, identity)
    write_json(out / TIMINGS, {"wall_s": round(time.perf_counter() - started, 3),
                               "cpu_s": round(time.process_time() - cpu_started, 3),
                               "generate_s": round(gen_seconds, 3), "backend": cfg.backend})
    return card


def _load(cfg: GenerateConfig, method: Method) -> Models:
    from mixer.train.deps import require_train_deps

    require_train_deps(("torch", "transformers"))
    if cfg.backend == "vllm":
        from mixer.generate.backends import require_vllm

        require_vllm()
    scorer = None
    if method.needs_reward_model():
        from mixer.train.reward import RewardScorer

        scorer = RewardScorer(cfg.reward_model, batch_size=cfg.batch_size, dtype=cfg.dtype)
    sampling = SamplingSettings(1, cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    backend = make_backend(cfg.backend, cfg.policy, sampling, chat_template=cfg.chat_template, dtype=cfg.dtype,
                           seed=cfg.seed, batching=cfg.batching)
    record_versions(Path(cfg.output), backend.versions())
    return Models(cfg, backend, scorer)


def _assemble(cfg: GenerateConfig, method: Method, prompt_set: PromptSet, n_shards: int, versions: dict[str, str],
              identity: dict[str, Any]) -> dict[str, Any]:
    out = Path(cfg.output)
    table = pa.concat_tables([pq.read_table(shard_path(out, k), schema=method.shard_schema) for k in range(n_shards)])
    rows = sorted(table.to_pylist(), key=lambda r: r["prompt_index"])
    if [r["prompt_index"] for r in rows] != list(range(len(prompt_set.prompts))):
        raise MixerError(f"{out / SHARDS}: the shards do not hold one row per prompt of the input "
                         f"({len(rows)} rows, {len(prompt_set.prompts)} prompts); pass --overwrite to start over")
    kept, outcome, section = method.assemble(rows)
    assert sum(outcome.values()) == len(rows), (outcome, len(rows))
    assert prompt_set.records_read == len(rows) + sum(prompt_set.skipped.values())
    path = out / method.folder / "data" / "train-00000-of-00001.parquet"
    write_parquet(path, kept, method.output_schema)
    card = {
        "tool": "mixer generate",
        "method": method.name,
        "paper": method.paper,
        "mixer_version": __version__,
        "backend": {"name": cfg.backend, "versions": versions},
        "models": {"policy": cfg.policy, "reward_model": cfg.reward_model if method.needs_reward_model() else None},
        "settings": {"sampling": identity, "assembly": cfg.assembly_settings(), "batch_size": cfg.batch_size},
        "inputs": prompt_set.inputs,
        "prompts": {"records_read": prompt_set.records_read, "skipped": dict(sorted(prompt_set.skipped.items())),
                    "generated": len(rows)},
        "outcome": dict(sorted(outcome.items())),
        "rows": len(kept),
        method.folder: section,
        "outputs": {method.folder: digest_file(path)},
    }
    (out / "README.md").write_text(render_method_card(card, method), encoding="utf-8")
    write_json(out / CARD, card)
    return card


def render_method_card(card: dict[str, Any], method: Method) -> str:
    """The card as Markdown: the model, the settings, and where every prompt went."""
    p, s = card["prompts"], card["settings"]["sampling"]
    lines = [f"# Generated data: {card['settings']['assembly']['name']} ({card['method']})", "",
             f"`mixer generate --method {card['method']}` ({card['paper']}) with `{card['models']['policy']}`"
             + (f", reward model `{card['models']['reward_model']}`" if card["models"]["reward_model"] else "")
             + f", backend {card['backend']['name']}: "
             + ", ".join(f"{k} {v}" for k, v in sorted(card["backend"]["versions"].items())) + ".", "",
             f"Sampling: temperature {s['temperature']}, top_p {s['top_p']}, max_new_tokens {s['max_new_tokens']}, "
             f"seed {s['seed']}, prompts cut as `{s['prompt_mode']}`.", "",
             "## Prompts", "", "| records read | skipped | generated | rows written |", "|---|---|---|---|",
             f"| {p['records_read']} | {sum(p['skipped'].values())} | {p['generated']} | {card['rows']} |", ""]
    if p["skipped"]:
        lines += ["Skipped before generation: " + ", ".join(f"{k} {v}" for k, v in p["skipped"].items()) + ".", ""]
    lines += ["Every generated prompt: " + ", ".join(f"{k} {v}" for k, v in card["outcome"].items()) + ".", ""]
    keep = card["settings"]["assembly"].get("keep_truncated")
    if keep is not None:
        lines += ["Replies cut at max_new_tokens: " + ("kept (--keep-truncated)." if keep else
                                                       "dropped, counted under a `*truncated` reason "
                                                       "(--keep-truncated keeps them)."), ""]
    return "\n".join(lines + method.card_lines(card))


def quantiles(values: list[float]) -> dict[str, float | int | None]:
    """Count, mean, min, p10, p25, p50, p75, p90 and max (nearest rank, rounded to 6 places)."""
    if not values:
        return {"count": 0, "mean": None, "min": None, "p10": None, "p25": None, "p50": None, "p75": None,
                "p90": None, "max": None}
    s = sorted(values)

    def q(f: float) -> float:
        return round(s[min(len(s) - 1, max(0, int(round(f * (len(s) - 1)))))], 6)

    return {"count": len(s), "mean": round(sum(s) / len(s), 6), "min": q(0), "p10": q(0.1), "p25": q(0.25),
            "p50": q(0.5), "p75": q(0.75), "p90": q(0.9), "max": q(1)}
