"""Ghost Attention (GAtt; Touvron et al. 2023, Llama 2, §3.3): multi-turn data that keeps an instruction.

For each dialogue an instruction (a hobby, a language, a public figure: the paper's kinds) is attached to
every user turn and the policy generates every assistant turn with that context. The training record then
keeps the instruction in the first user turn only, and every assistant turn but the last is marked
``train: false`` (the per-message loss flag, :data:`mixer.core.records.FLAGGED_OUTPUT_SCHEMA`), so
``mixer train sft`` puts loss only on the last reply, which had to honour an instruction it can only see
at the start. The paper sets the loss to 0 for all tokens of earlier turns, assistant ones included.

``OUT/`` holds ``data/train-00000-of-00001.parquet`` (the ``messages`` adapter reads it), ``card.json`` /
``README.md`` (every dialogue accounted for), ``gatt.json`` (the settings). The folder is written in a
sibling staging folder and moved into place when complete, so a failed run leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.outdir import check_not_an_input
from mixer.core.records import FLAGGED_MESSAGE_TYPE, Message

#: The paper's kinds of synthetic constraints (§3.3: Hobbies "You enjoy e.g. Tennis", Language "Speak in
#: e.g. French", Public Figure "Act as e.g. Napoleon"). The paper had Llama 2-Chat write the lists of
#: hobbies and figures; these short lists are ours. ``--instructions FILE`` replaces them.
HOBBIES = ("tennis", "gardening", "chess", "painting", "hiking", "baking", "astronomy", "photography")
LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese")
FIGURES = ("Napoleon", "Marie Curie", "Shakespeare", "Cleopatra", "Albert Einstein")
DEFAULT_INSTRUCTIONS = (
    *(f"You enjoy {h}." for h in HOBBIES),
    *(f"Always speak in {lang}." for lang in LANGUAGES),
    *(f"Always act as {f} from now on." for f in FIGURES),
)
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}
OUTPUT_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                           ("messages", pa.list_(FLAGGED_MESSAGE_TYPE)), ("instruction", pa.string())])


@dataclass(frozen=True)
class GattConfig:
    policy: str
    dialogues: str
    output: str
    instructions: str | None = None
    max_dialogues: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 42
    chat_template: str | None = None
    dtype: str = "auto"
    name: str | None = None


def read_instructions(path: str | None) -> list[str]:
    """The instruction list: one per non-empty line of ``path`` (a ``#`` line is a comment), or the default."""
    if path is None:
        return list(DEFAULT_INSTRUCTIONS)
    p = Path(path)
    if not p.is_file():
        raise MixerError(f"--instructions {path}: no such file")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    found = [line for line in lines if line and not line.startswith("#")]
    if not found:
        raise MixerError(f"{path}: no instruction in the file (one per line)")
    return found


def read_dialogues(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Dialogues from JSONL or Parquet records with ``messages`` (``id`` optional): each needs a user turn;
    the assistant turns are regenerated, so their content is not used. A record without them is an error
    naming the record (GAtt cannot run on it), found before anything is written."""
    p = Path(path)
    if not p.is_file():
        raise MixerError(f"--dialogues {path}: no such file")
    if p.suffix == ".parquet":
        rows = pq.read_table(p).to_pylist()
    else:
        rows = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise MixerError(f"{path}:{n}: not JSON: {e}") from None
    out = []
    for n, row in enumerate(rows[:limit] if limit else rows, 1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                     and isinstance(m.get("content"), str) for m in messages):
            raise MixerError(f"{path}: record {n}: GAtt needs `messages`, a list of {{role, content}} turns")
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise MixerError(f"{path}: record {n}: GAtt needs at least one user turn; found none")
        system = [m["content"] for m in messages if m["role"] == "system"]
        out.append({"id": str(row.get("id") or f"dialogue_{n - 1}"), "users": users, "system": system[:1]})
    if not out:
        raise MixerError(f"{path}: no dialogue in the file")
    return out


def dialogue_seed(seed: int, key: str) -> int:
    """A dialogue's own seed: its instruction and samples do not depend on the other dialogues."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest(), "big") >> 1


def with_instruction(instruction: str, user: str) -> str:
    return f"{instruction}\n\n{user}"


def training_record(instruction: str, system: list[str], users: list[str], replies: list[str]) -> list[Message]:
    """The GAtt training conversation: the instruction in the first user turn only; every assistant turn but
    the last ``train: false`` (the last carries no flag: trained as usual)."""
    messages: list[Message] = [{"role": "system", "content": s} for s in system]
    for k, (user, reply) in enumerate(zip(users, replies, strict=True)):
        messages.append({"role": "user", "content": with_instruction(instruction, user) if k == 0 else user})
        turn: Message = {"role": "assistant", "content": reply}
        if k < len(users) - 1:
            turn["train"] = False
        messages.append(turn)
    return messages


def run_gatt(cfg: GattConfig, backend: Any = None) -> dict[str, Any]:
    """Generate and write the GAtt set; return the card. ``backend``: an already-loaded one (tests)."""
    from mixer.generate.backends import SamplingSettings, make_backend

    out = Path(cfg.output)
    if out.exists():
        raise MixerError(f"{out}: the output folder exists; GAtt writes a new folder (remove it or pick another)")
    inputs = (("--policy", cfg.policy), ("--dialogues", cfg.dialogues), ("--instructions", cfg.instructions))
    check_not_an_input(out, [(what, p) for what, p in inputs if p], option="--output")
    instructions = read_instructions(cfg.instructions)
    dialogues = read_dialogues(cfg.dialogues, cfg.max_dialogues)
    if backend is None:
        sampling = SamplingSettings(n=1, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens)
        backend = make_backend("transformers", cfg.policy, sampling, chat_template=cfg.chat_template,
                               dtype=cfg.dtype, seed=cfg.seed)
    name = cfg.name or out.name
    picked = [random.Random(dialogue_seed(cfg.seed, d["id"])).choice(instructions) for d in dialogues]
    replies: list[list[str]] = [[] for _ in dialogues]
    finish: Counter[str] = Counter()
    for turn in range(max(len(d["users"]) for d in dialogues)):
        todo = [i for i, d in enumerate(dialogues) if turn < len(d["users"])]
        prompts = []
        for i in todo:
            d, conv = dialogues[i], [{"role": "system", "content": s} for s in dialogues[i]["system"]]
            for k in range(turn + 1):  # the instruction on every user turn while sampling
                conv.append({"role": "user", "content": with_instruction(picked[i], d["users"][k])})
                if k < turn:
                    conv.append({"role": "assistant", "content": replies[i][k]})
            prompts.append(conv)
        seeds = [dialogue_seed(cfg.seed, f"{dialogues[i]['id']}\x00{turn}") for i in todo]
        for i, samples in zip(todo, backend.generate(prompts, seeds), strict=True):
            replies[i].append(samples[0].text.strip())
            finish[samples[0].finish_reason] += 1
    rows = [{"dataset": name, "id": f"{name}_{d['id']}", "instruction": picked[i],
             "messages": training_record(picked[i], d["system"], d["users"], replies[i])}
            for i, d in enumerate(dialogues)]
    card = {"method": "gatt", "dialogues": {"read": len(dialogues), "written": len(rows)},
            "turns": {"generated": sum(len(d["users"]) for d in dialogues),
                      "finish_reason": dict(sorted(finish.items())),
                      "untrained_assistant_turns": sum(len(d["users"]) - 1 for d in dialogues)},
            "instructions": {"available": len(instructions), "used": dict(sorted(Counter(picked).items()))},
            "settings": {k: v for k, v in asdict(cfg).items() if k != "output"}}
    _write(out, rows, card)
    return card


def _write(out: Path, rows: list[dict[str, Any]], card: dict[str, Any]) -> None:
    """Write in a staging sibling, then move it into place: never a half-written ``out``."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "data").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), tmp / "data" / "train-00000-of-00001.parquet",
                       **PARQUET_OPTIONS)
        (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            f"# GAtt data\n\n{card['dialogues']['written']} dialogue(s) of {card['dialogues']['read']} read; "
            f"{card['turns']['generated']} assistant turn(s) generated, "
            f"{card['turns']['untrained_assistant_turns']} of them marked `train: false`.\n\n"
            f"```json\n{json.dumps(card, indent=2, sort_keys=True)}\n```\n", encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
