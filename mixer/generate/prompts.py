"""Prompts for ``mixer generate``: from a built mixture (SFT or preference) or from any recipe source.

A prompt is the context a policy answers: a conversation that ends with a user turn. Two ways to cut it
from a record (``prompt_mode``):

- ``first_user``: the conversation up to and including its first user turn (a leading system turn is
  kept), the single-turn prompts Llama 2's rejection sampling and most on-policy pipelines use;
- ``conversation``: everything before the record's last assistant turn, so the policy answers the final
  user turn of a multi-turn conversation with the earlier turns as context.

Every record read is accounted for: taken, or skipped with a reason (``no_user_turn``, ``empty_prompt`` when
the user turn to answer is blank, ``duplicate_prompt`` for an exact repeat of an earlier prompt
(``duplicate_prompt_and_reply``, ``duplicate_record`` for the methods that use each record's reply or whole record),
``no_reference_reply`` when a method that uses the record's reply finds none after the prompt,
``beyond_max_prompts``, ``adapter_dropped:<reason>`` for what a recipe source's adapter itself drops).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixer.core.errors import InputError, Location, MixerError, RecordError

PROMPT_MODES = ("first_user", "conversation")


@dataclass(frozen=True)
class Prompt:
    """One prompt: ``key`` is unique in the run (the record id, suffixed on a repeat) and seeds its samples."""

    key: str
    dataset: str
    record_id: str
    messages: list[dict[str, str]]
    #: the record's own reply to the prompt (the assistant turn right after it), when it has one: the gold
    #: answer self-distillation rewrites, the answer a judge scores; not part of the prompt's identity
    reference: str | None = None
    #: the whole record the prompt was cut from (role and content of every turn): what the judge writes back
    record: list[dict[str, str]] | None = None


@dataclass
class PromptSet:
    """The prompts of a run and what happened to every record they were cut from."""

    prompts: list[Prompt]
    records_read: int
    skipped: Counter[str] = field(default_factory=Counter)
    inputs: list[str] = field(default_factory=list)


def cut_prompt(messages: list[dict[str, str]], mode: str) -> list[dict[str, str]] | None:
    """The prompt part of a conversation (see the module docstring), or None when it has no user turn."""
    if mode not in PROMPT_MODES:
        raise MixerError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}; got {mode!r}")
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    if mode == "first_user":
        for i, m in enumerate(clean):
            if m["role"] == "user":
                return clean[:i + 1]
        return None
    last = len(clean)
    if clean and clean[-1]["role"] == "assistant":
        last = max(i for i, m in enumerate(clean) if m["role"] == "assistant")
    context = clean[:last]
    while context and context[-1]["role"] != "user":  # a trailing system turn has nothing to answer
        context = context[:-1]
    return context or None


def reference_reply(messages: list[dict[str, str]], prompt: list[dict[str, str]]) -> str | None:
    """The assistant turn that follows ``prompt`` in ``messages`` (its reply in the record), or None."""
    if len(messages) > len(prompt) and messages[len(prompt)]["role"] == "assistant":
        return messages[len(prompt)]["content"]
    return None


def _digest(messages: list[dict[str, str]]) -> bytes:
    return hashlib.blake2b(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode(), digest_size=16).digest()


class _Collector:
    def __init__(self, mode: str, max_prompts: int | None, repeat: str = "prompt") -> None:
        if repeat not in REPEATS:
            raise ValueError(f"repeat must be one of {REPEATS}, got {repeat!r}")
        self.mode = mode
        self.max_prompts = max_prompts
        self.repeat = repeat
        self.prompts: list[Prompt] = []
        self.skipped: Counter[str] = Counter()
        self.seen: set[bytes] = set()
        self.keys: Counter[str] = Counter()
        self.used_keys: set[str] = set()
        self.read = 0

    def _unique_key(self, record_id: str) -> str:
        """``record_id``, or ``record_id~n`` on its n-th repeat; a suffixed key that is itself another record's id
        (ids ``a``, ``a``, ``a~1``) takes the next free suffix, so keys (and the output ids made of them) stay
        unique and no two prompts share a seed."""
        while True:
            n = self.keys[record_id]
            self.keys[record_id] += 1
            key = record_id if n == 0 else f"{record_id}~{n}"
            if key not in self.used_keys:
                self.used_keys.add(key)
                return key

    def add(self, dataset: str, record_id: str, messages: list[dict[str, str]]) -> None:
        self.read += 1
        prompt = cut_prompt(messages, self.mode)
        if prompt is None:
            self.skipped["no_user_turn"] += 1
            return
        if not prompt[-1]["content"].strip():  # nothing to answer: a reply to it would be made-up data
            self.skipped["empty_prompt"] += 1
            return
        reference = reference_reply(messages, prompt)
        if self.repeat != "prompt" and not (reference or "").strip():
            # the method needs the record's reply; skipped here, before --max-prompts counts it, so a limit of N
            # gives N usable prompts when there are that many
            self.skipped["no_reference_reply"] += 1
            return
        record = [{"role": m["role"], "content": m["content"]} for m in messages]
        same = (record if self.repeat == "record" else prompt if self.repeat == "prompt"
                else [*prompt, {"role": "reference", "content": reference or ""}])
        digest = _digest(same)
        if digest in self.seen:
            self.skipped[f"duplicate_{self.repeat}"] += 1
            return
        if self.max_prompts is not None and len(self.prompts) >= self.max_prompts:
            self.skipped["beyond_max_prompts"] += 1
            return
        self.seen.add(digest)
        key = self._unique_key(record_id)
        self.prompts.append(Prompt(key, dataset, record_id, prompt, reference, record))


#: what makes a record a repeat of an earlier one (``duplicate_<repeat>`` when skipped): the same prompt; the same
#: prompt *and* reply (methods that use each record's reply: one prompt with two different replies is two records
#: to rewrite, not a repeat); the same whole record (the judge writes records back whole: two records that share
#: their first exchange but differ later are two records). The last two need the record's reply.
REPEATS = ("prompt", "prompt_and_reply", "record")


def _check_messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InputError(where, "expected a non-empty list of {role, content} messages")
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(where, f"message {j} is not a {{role, content}} object with string fields")
    return value


def build_files(path: str | Path, option: str = "--data") -> list[str]:
    """The Parquet files of the build ``option`` names; a path that does not exist is named with the option and
    what it expects (the trainer's resolver would call it "training data")."""
    from mixer.train.data import resolve_parquet_files

    if not Path(path).exists():
        raise MixerError(f"{option} {path}: no such file or folder; expected a mixer build (SFT or preference): "
                         "its output folder, its data/ folder or a .parquet file")
    return resolve_parquet_files(path)


def read_build_prompts(path: str | Path, mode: str, max_prompts: int | None = None, *,
                       repeat: str = "prompt") -> PromptSet:
    """Prompts from a ``mixer build`` output (``OUT/data/*.parquet``), a folder of Parquet or one file.

    SFT rows (``messages``) are cut per ``mode``; preference rows use their ``prompt`` (cut the same way, so
    ``first_user`` still takes the first user turn). ``repeat``: what a skipped repeat is the same in
    (:data:`REPEATS`).
    """
    import pyarrow.parquet as pq

    files = build_files(path)
    collector = _Collector(mode, max_prompts, repeat)
    for file in files:
        try:
            pf = pq.ParquetFile(file)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise InputError(file, f"not a readable Parquet file: {e}") from None
        names = pf.schema_arrow.names
        column = "messages" if "messages" in names else "prompt" if "prompt" in names else None
        if column is None:
            raise InputError(file, f"no `messages` or `prompt` column (found: {', '.join(names)}); expected a "
                                   "mixer build (SFT or preference)")
        cols = [c for c in ("dataset", "id", column) if c in names]
        ordinal = 0
        for batch in pf.iter_batches(columns=cols, batch_size=1024):
            data = batch.to_pydict()
            for i, messages in enumerate(data[column]):
                where = str(Location(file, record=ordinal))
                rid = data["id"][i] if "id" in data and data["id"][i] else f"{Path(file).stem}_{ordinal}"
                dataset = data["dataset"][i] if "dataset" in data and data["dataset"][i] else Path(file).stem
                collector.add(str(dataset), str(rid), _check_messages(messages, where))
                ordinal += 1
    return PromptSet(collector.prompts, collector.read, collector.skipped, [str(f) for f in files])


def read_recipe_prompts(recipe_path: str | Path, sources: list[str] | None, mode: str,
                        max_prompts: int | None = None, raw_dir: str | None = None, *,
                        repeat: str = "prompt") -> PromptSet:
    """Prompts from a recipe's sources, read through their adapters (no normalisation, filters or sampling:
    the raw records as the adapter converts them). A malformed record stops with its file and line.
    ``repeat``: as for :func:`read_build_prompts`."""
    from mixer.core.records import Dropped
    from mixer.readers.base import ParseFailure
    from mixer.recipe.load import load_recipe, resolve_files
    from mixer.sources import get_adapter
    from mixer.sources.base import SourceContext

    recipe = load_recipe(recipe_path, raw_dir=raw_dir)
    by_name = {s.name: s for s in recipe.sources}
    names = sources or list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise MixerError(f"{recipe_path}: no source {', '.join(map(repr, unknown))}; sources: {', '.join(by_name)}")
    collector = _Collector(mode, max_prompts, repeat)
    inputs: list[str] = []
    for name in names:
        source = by_name[name]
        paths = resolve_files(recipe, source)
        context = SourceContext(source.name, recipe.source_seed(source.name), recipe.tokenizer,
                                many_files=len(paths) > 1)
        adapter = get_adapter(source.adapter)(source.options, context)
        for path in paths:
            inputs.append(str(path))
            for item in _read_items(adapter, path):
                if isinstance(item.value, ParseFailure):
                    raise InputError(item.location, f"{item.value.problem} (source {name!r})")
                try:
                    converted = list(adapter.convert(item.value, item.location))
                except RecordError as e:
                    raise InputError(item.location, f"{e} (source {name!r}, adapter {source.adapter!r})") from None
                for out in converted:
                    if isinstance(out, Dropped):
                        collector.read += 1
                        collector.skipped[f"adapter_dropped:{out.reason}"] += 1
                    else:
                        collector.add(out["dataset"], out["id"], list(out["messages"]))
    return PromptSet(collector.prompts, collector.read, collector.skipped, inputs)


def _read_items(adapter: Any, path: Path) -> Iterator[Any]:
    return iter(adapter.read_file(path))
