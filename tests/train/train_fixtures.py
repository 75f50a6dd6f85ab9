"""Offline assets for the trainer tests: a tiny random Llama, a locally trained byte-level BPE
tokenizer with the Tulu chat template, and small SFT and preference Parquet builds.

Nothing can be downloaded in CI, so everything is made here, once per test process (``tiny_assets``
caches it in a temporary directory), small enough that real TRL steps take well under a second on CPU.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.records import MESSAGE_TYPE, OUTPUT_SCHEMA
from mixer.train.tiny_model import make_model, make_tokenizer  # what `mixer dev tiny-model` ships

#: what a launcher (accelerate, torchrun, DeepSpeed) sets: a test of one plain process clears them
LAUNCH_ENV = ("LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE",
              "ACCELERATE_USE_FSDP")


def clear_launch_env(monkeypatch: Any, *extra: str) -> None:
    """Run the test as one plain process, whatever launcher variables the shell running pytest has."""
    for var in (*LAUNCH_ENV, *extra):
        monkeypatch.delenv(var, raising=False)


def copy_without_chat_template(model: Path, to: Path) -> Path:
    """A copy of a model folder whose tokenizer has no chat template (a base model's): the case that
    commands needing one must refuse with a message."""
    shutil.copytree(model, to)
    config = json.loads((to / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (to / "tokenizer_config.json").write_text(json.dumps(config))
    for f in to.glob("chat_template.*"):
        f.unlink()
    return to


def _m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


#: A dozen canonical V2 records: single-turn, multi-turn and one with a system turn.
SFT_RECORDS: list[dict] = [
    {"dataset": "toy", "id": "toy_0", "messages": [_m("user", "What is two plus two?"), _m("assistant", "Four.")]},
    {"dataset": "toy", "id": "toy_1", "messages": [
        _m("system", "You are a terse assistant."), _m("user", "Name a colour."), _m("assistant", "Blue.")]},
    {"dataset": "toy", "id": "toy_2", "messages": [
        _m("user", "Say hello."), _m("assistant", "Hello there!"),
        _m("user", "Now say goodbye."), _m("assistant", "Goodbye, friend.")]},
    {"dataset": "toy", "id": "toy_3", "messages": [
        _m("user", "Count to three."), _m("assistant", "One, two, three.")]},
    {"dataset": "toy", "id": "toy_4", "messages": [
        _m("user", "What is the capital of France?"), _m("assistant", "Paris is the capital of France.")]},
    {"dataset": "toy", "id": "toy_5", "messages": [
        _m("user", "Spell cat."), _m("assistant", "C, A, T."),
        _m("user", "And dog?"), _m("assistant", "D, O, G."),
        _m("user", "And fox?"), _m("assistant", "F, O, X.")]},
    {"dataset": "toy", "id": "toy_6", "messages": [
        _m("user", "Is the sky blue?"), _m("assistant", "Yes, on a clear day.")]},
    {"dataset": "toy", "id": "toy_7", "messages": [
        _m("user", "Translate 'chat' to English."), _m("assistant", "Cat.")]},
    {"dataset": "toy", "id": "toy_8", "messages": [
        _m("user", "Give me a number between one and ten."), _m("assistant", "Seven.")]},
    {"dataset": "toy", "id": "toy_9", "messages": [
        _m("user", "What do cows drink?"), _m("assistant", "Water."),
        _m("user", "Are you sure?"), _m("assistant", "Yes, cows drink water, not milk.")]},
    {"dataset": "toy", "id": "toy_10", "messages": [
        _m("user", "Write a haiku about rain."),
        _m("assistant", "Soft rain on the roof,\nquiet drums for sleeping towns,\nmorning smells of earth.")]},
    {"dataset": "toy", "id": "toy_11", "messages": [
        _m("user", "Reverse the word stressed."), _m("assistant", "Desserts.")]},
]

#: Conversational preference rows (the TRL format a preference build writes).
PREFERENCE_RECORDS: list[dict] = [
    {"dataset": "toy_pref", "id": f"pref_{i}", "prompt": [_m("user", q)],
     "chosen": [_m("assistant", good)], "rejected": [_m("assistant", bad)]}
    for i, (q, good, bad) in enumerate([
        ("What is two plus two?", "Four.", "Five, probably."),
        ("Name a colour.", "Blue.", "I will not answer that."),
        ("What is the capital of France?", "Paris.", "London is the capital of France."),
        ("Count to three.", "One, two, three.", "One, three, two."),
        ("Spell cat.", "C, A, T.", "K, A, T."),
        ("What do cows drink?", "Water.", "Milk, of course."),
        ("Reverse the word stressed.", "Desserts.", "Stressed."),
        ("Is the sky blue?", "Yes, on a clear day.", "No, it is green."),
    ])
]

PREFERENCE_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("id", pa.string()), ("prompt", pa.list_(MESSAGE_TYPE)),
    ("chosen", pa.list_(MESSAGE_TYPE)), ("rejected", pa.list_(MESSAGE_TYPE)),
])


def _training_texts() -> list[str]:
    texts = []
    for r in SFT_RECORDS:
        texts += [m["content"] for m in r["messages"]]
    for r in PREFERENCE_RECORDS:
        texts += [r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]]
    filler = [f"The quick brown fox {i} jumps over the lazy dog; answer {i * 7} is fine." for i in range(300)]
    return texts * 5 + filler


def write_sft_build(out: Path, records: list[dict] | None = None) -> Path:
    """A `mixer build`-shaped output dir: ``out/data/train-00000-of-00001.parquet`` (V2 schema)."""
    rows = [dict(r, n_tokens=sum(len(m["content"]) for m in r["messages"])) for r in (records or SFT_RECORDS)]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), out / "data" / "train-00000-of-00001.parquet")
    return out


def write_preference_build(out: Path, records: list[dict] | None = None) -> Path:
    """A preference build dir with ``prompt``/``chosen``/``rejected`` in conversational form."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(records or PREFERENCE_RECORDS, schema=PREFERENCE_SCHEMA)
    pq.write_table(table, out / "data" / "train-00000-of-00001.parquet")
    return out


@dataclass(frozen=True)
class TinyAssets:
    root: Path
    tokenizer: Path
    model: Path
    sft_data: Path
    pref_data: Path


@functools.lru_cache(maxsize=1)
def tiny_assets() -> TinyAssets:
    """Build (once per process) and return the tiny model, tokenizer and data directories.

    The model directory also holds the tokenizer, as a real checkpoint does.
    """
    from transformers import AutoTokenizer

    root = Path(tempfile.mkdtemp(prefix="mixer-train-assets-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    tok_dir = make_tokenizer(root / "tokenizer", _training_texts())
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    model_dir = make_model(root / "model", vocab_size=len(tokenizer))
    tokenizer.save_pretrained(model_dir)
    return TinyAssets(
        root=root,
        tokenizer=tok_dir,
        model=model_dir,
        sft_data=write_sft_build(root / "sft"),
        pref_data=write_preference_build(root / "pref"),
    )
