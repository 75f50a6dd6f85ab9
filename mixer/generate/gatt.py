"""Ghost Attention (GAtt; Touvron et al. 2023, Llama 2, §3.3): multi-turn data that keeps an instruction.

For each dialogue an instruction is drawn and attached to every user turn, and the policy generates every
assistant turn with that context. The training record then keeps the instruction in the first user turn
only, and every assistant turn but the last is marked ``train: false`` (the per-message loss flag,
:data:`mixer.core.records.FLAGGED_OUTPUT_SCHEMA`), so ``mixer train sft`` puts loss only on the last reply,
which had to honour an instruction it can only see at the start. The paper sets the loss to 0 for all
tokens of earlier turns, assistant ones included.

The instruction follows the paper's recipe (§3.3; :mod:`mixer.generate.gatt_draw`): constraints of its kinds
combined at random, written in the training record half of the time in their short form.

``OUT/`` holds ``data/train-00000-of-00001.parquet`` (the ``messages`` adapter reads it) and ``card.json`` /
``README.md`` (every dialogue accounted for, the draws counted, the settings). The dialogues are sampled in
shards (``OUT/shards/``, each written whole once its turns are done) after ``gatt.json`` records the
settings, so rerunning an interrupted command resumes it, as ``mixer generate`` does; the card is written
last, and a folder with one is complete (a rerun does nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.outdir import check_not_an_input
from mixer.core.records import FLAGGED_MESSAGE_TYPE, Message
from mixer.generate.gatt_draw import (
    Constraint,
    DrawnInstruction,
    check_draw_settings,
    dialogue_seed,
    draw_instruction,
    instruction_counts,
    read_instructions,
)
from mixer.generate.store import CARD, SHARDS, write_parquet, write_text

OUTPUT_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                           ("messages", pa.list_(FLAGGED_MESSAGE_TYPE)), ("instruction", pa.string()),
                           ("sampled_instruction", pa.string()), ("constraint_kinds", pa.list_(pa.string())),
                           ("shortened", pa.bool_())])
#: a shard of sampled dialogues, in dialogue order: every assistant turn's reply and why it stopped
SHARD_SCHEMA = pa.schema([("replies", pa.list_(pa.string())), ("finish_reasons", pa.list_(pa.string()))])
#: the settings of the run (written first): a rerun with the same ones resumes from the shards written
GATT_MANIFEST = "gatt.json"
#: the settings that only decide the assembly (which dialogues are written, their label): a change reassembles
#: from the shards; every other setting decides the replies, and a change is another run
ASSEMBLY_SETTINGS = ("keep_truncated", "name")


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
    min_constraints: int = 1
    max_constraints: int = 3
    shorten_prob: float = 0.5
    #: keep a dialogue whose reply stopped at max_new_tokens (default: dropped, counted as ``truncated``)
    keep_truncated: bool = False
    #: dialogues sampled together and written as one shard (what an interrupted run keeps)
    shard_dialogues: int = 64
    #: replace an existing OUT that is not this run's (or was made with other settings)
    overwrite: bool = False


def read_dialogues(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Dialogues from JSONL or Parquet records with ``messages`` (``id`` optional): each needs a user turn;
    the assistant turns are regenerated, so their content is not used. A record without them is an error
    naming the record (GAtt cannot run on it), found before anything is written."""
    p = Path(path)
    if not p.is_file():
        raise MixerError(f"--dialogues {path}: no such file")
    if p.suffix == ".parquet":
        try:
            rows = pq.read_table(p).to_pylist()
        except (OSError, pa.ArrowException) as e:
            raise MixerError(f"--dialogues {path}: not a readable Parquet file ({e})") from None
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise MixerError(f"--dialogues {path}: not UTF-8 text ({e}); expected JSONL or a .parquet file") from None
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise MixerError(f"{path}:{n}: not JSON: {e}") from None
    out = []
    first_record: dict[str, int] = {}
    for n, row in enumerate(rows[:limit] if limit else rows, 1):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                     and isinstance(m.get("content"), str) for m in messages):
            raise MixerError(f"{path}: record {n - 1} (0-based): GAtt needs `messages`, a list of {{role, content}} "
                             "turns")
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise MixerError(f"{path}: record {n - 1} (0-based): GAtt needs at least one user turn; found none")
        system = [m["content"] for m in messages if m["role"] == "system"]
        dialogue_id = str(row.get("id") or f"dialogue_{n - 1}")
        if dialogue_id in first_record:
            # the id names the output record and seeds its draws: two dialogues with one id would give two
            # records a build refuses (one (dataset, id)) and the same instruction
            raise MixerError(f"{path}: records {first_record[dialogue_id]} and {n - 1} (0-based, as the default ids "
                             f"dialogue_N count) have the same id {dialogue_id!r}; give each dialogue its own id")
        first_record[dialogue_id] = n - 1
        out.append({"id": dialogue_id, "users": users, "system": system[:1]})
    if not out:
        raise MixerError(f"{path}: no dialogue in the file")
    return out


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


def run_gatt(cfg: GattConfig, backend: Any = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate and write the GAtt set, or resume an interrupted run of the same settings; return the card.

    The dialogues are sampled in shards of ``shard_dialogues``: each shard's replies are written atomically
    under ``OUT/shards/`` once all its turns are done, so a rerun samples only the missing shards (a finished
    run is not redone), and the training set and card are assembled from the shards at the end.
    ``backend``: an already-loaded one (tests)."""
    from mixer.generate.store import ready_run_folder, resolved_paths

    out = Path(cfg.output)
    inputs = (("--policy", cfg.policy), ("--dialogues", cfg.dialogues), ("--instructions", cfg.instructions))
    check_not_an_input(out, [(what, Path(p)) for what, p in inputs if p], option="--output")
    if cfg.max_dialogues is not None and cfg.max_dialogues < 1:  # 0 would read every dialogue, -1 all but one
        raise MixerError(f"--max-dialogues must be at least 1, got {cfg.max_dialogues}")
    if cfg.shard_dialogues < 1:
        raise MixerError(f"--shard-dialogues must be at least 1, got {cfg.shard_dialogues}")
    constraints = read_instructions(cfg.instructions)
    check_draw_settings(constraints, cfg.min_constraints, cfg.max_constraints, cfg.shorten_prob,
                        cfg.instructions or "the built-in list")
    dialogues = read_dialogues(cfg.dialogues, cfg.max_dialogues)
    settings = run_settings(cfg)
    sampling = {k: v for k, v in settings.items() if k not in ASSEMBLY_SETTINGS}
    manifest = {"tool": "mixer gatt", "sampling": sampling, "dialogues": len(dialogues),
                "dialogues_digest": hashlib.blake2b(json.dumps(dialogues, ensure_ascii=False).encode(),
                                                    digest_size=16).hexdigest(),
                "paths": resolved_paths(sampling, ("policy", "dialogues", "instructions", "chat_template"))}
    state = ready_run_folder(out, manifest, overwrite=cfg.overwrite, marker=GATT_MANIFEST, tool="mixer gatt",
                             finished=lambda card: all(card.get("settings", {}).get(k) == settings[k]
                                                       for k in ASSEMBLY_SETTINGS))
    if state == "complete":
        say(f"{out} is complete (same settings); nothing to do")
        return json.loads((out / CARD).read_text(encoding="utf-8"))
    drawn = [draw_instruction(constraints, cfg.seed, d["id"], cfg.min_constraints, cfg.max_constraints,
                              cfg.shorten_prob) for d in dialogues]
    size = cfg.shard_dialogues
    n_shards = (len(dialogues) + size - 1) // size
    todo = [k for k in range(n_shards) if not _shard(out, k).is_file()]
    if state == "resume":
        say(f"resuming {out}: {n_shards - len(todo)} of {n_shards} shard(s) already done")
    if todo and backend is None:
        from mixer.generate.backends import SamplingSettings, make_backend

        one_reply = SamplingSettings(n=1, temperature=cfg.temperature, top_p=cfg.top_p,
                                     max_new_tokens=cfg.max_new_tokens)
        backend = make_backend("transformers", cfg.policy, one_reply, chat_template=cfg.chat_template,
                               dtype=cfg.dtype, seed=cfg.seed)
    for k in todo:
        first = k * size
        replies, finish = sample_dialogues(backend, dialogues[first:first + size], drawn[first:first + size],
                                           cfg.seed)
        write_parquet(_shard(out, k), [{"replies": r, "finish_reasons": f} for r, f in zip(replies, finish,
                                                                                            strict=True)],
                      SHARD_SCHEMA)
    replies, finish = [], []
    for k in range(n_shards):
        rows = pq.read_table(_shard(out, k), schema=SHARD_SCHEMA).to_pylist()
        replies += [r["replies"] for r in rows]
        finish += [r["finish_reasons"] for r in rows]
    return assemble(cfg, dialogues, drawn, replies, finish, constraints, settings)


def run_settings(cfg: GattConfig) -> dict[str, Any]:
    """The settings that decide a run's output (every option but where it goes and whether to replace it):
    the manifest a rerun must match and the card's ``settings``."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("output", "overwrite")}


def sample_dialogues(backend: Any, dialogues: list[dict[str, Any]], drawn: list[DrawnInstruction],
                     seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Every assistant turn of ``dialogues``, turn by turn (one backend call per turn holds the dialogues that
    have it), with the full instruction on every user turn; each dialogue's replies and finish reasons."""
    replies: list[list[str]] = [[] for _ in dialogues]
    finish: list[list[str]] = [[] for _ in dialogues]
    for turn in range(max((len(d["users"]) for d in dialogues), default=0)):
        todo = [i for i, d in enumerate(dialogues) if turn < len(d["users"])]
        prompts = []
        for i in todo:
            d, conv = dialogues[i], [{"role": "system", "content": s} for s in dialogues[i]["system"]]
            for k in range(turn + 1):  # the instruction on every user turn while sampling
                conv.append({"role": "user", "content": with_instruction(drawn[i].sampled, d["users"][k])})
                if k < turn:
                    conv.append({"role": "assistant", "content": replies[i][k]})
            prompts.append(conv)
        seeds = [dialogue_seed(seed, f"{dialogues[i]['id']}\x00{turn}") for i in todo]
        for i, samples in zip(todo, backend.generate(prompts, seeds), strict=True):
            replies[i].append(samples[0].text.strip())
            finish[i].append(samples[0].finish_reason)
    return replies, finish


def assemble(cfg: GattConfig, dialogues: list[dict[str, Any]], drawn: list[DrawnInstruction],
             replies: list[list[str]], finish: list[list[str]], constraints: list[Constraint],
             settings: dict[str, Any]) -> dict[str, Any]:
    """The training records and the card from every dialogue's replies; written to ``OUT/data``,
    ``README.md`` and, last (it marks the run complete), ``card.json``."""
    out = Path(cfg.output)
    name = cfg.name or out.name
    cut = [any(f == "length" for f in reasons) for reasons in finish]
    # a reply cut at max_new_tokens is not a reply to train on, and a cut earlier reply was the context of the
    # later ones: the whole dialogue is dropped (counted) unless --keep-truncated
    kept = [i for i in range(len(dialogues)) if cfg.keep_truncated or not cut[i]]
    rows = [{"dataset": name, "id": f"{name}_{dialogues[i]['id']}", "instruction": drawn[i].training,
             "messages": training_record(drawn[i].training, dialogues[i]["system"], dialogues[i]["users"],
                                         replies[i]),
             "sampled_instruction": drawn[i].sampled, "constraint_kinds": [c.kind for c in drawn[i].constraints],
             "shortened": drawn[i].shortened}
            for i in kept]
    dropped = {"truncated": len(dialogues) - len(kept)} if len(kept) < len(dialogues) else {}
    card = {"method": "gatt", "dialogues": {"read": len(dialogues), "written": len(rows), "dropped": dropped,
                                            "with_truncated_reply": sum(cut)},
            "turns": {"generated": sum(len(d["users"]) for d in dialogues),
                      "finish_reason": dict(sorted(Counter(f for reasons in finish for f in reasons).items())),
                      "untrained_assistant_turns": sum(len(dialogues[i]["users"]) - 1 for i in kept)},
            "instructions": instruction_counts(constraints, [drawn[i] for i in kept]),
            "settings": settings}
    _write(out, rows, card)
    return card


def _write(out: Path, rows: list[dict[str, Any]], card: dict[str, Any]) -> None:
    """Write the training set, the README and the card, each atomically, the card last: a folder with a card
    is complete, and a run stopped before it is resumed (its shards kept)."""
    ins = card["instructions"]
    combined = ", ".join(f"{v} with {k}" for k, v in ins["combined"].items())
    write_parquet(out / "data" / "train-00000-of-00001.parquet", rows, OUTPUT_SCHEMA)
    write_text(out / "README.md",
                f"# GAtt data\n\n{card['dialogues']['written']} dialogue(s) of {card['dialogues']['read']} read"
                + (f" ({card['dialogues']['dropped']['truncated']} dropped: a reply stopped at max_new_tokens; "
                   "--keep-truncated keeps them)" if card["dialogues"]["dropped"] else "") + "; "
                f"{card['turns']['generated']} assistant turn(s) generated, "
                f"{card['turns']['untrained_assistant_turns']} of them marked `train: false`; "
                f"dialogues by constraints combined in the instruction: {combined}; {ins['shortened']} "
                f"instruction(s) written in the short form, {ins['full']} in full.\n\n"
                f"```json\n{json.dumps(card, indent=2, sort_keys=True)}\n```\n")
    write_text(out / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")


def _shard(out: Path, k: int) -> Path:
    return out / SHARDS / f"gatt-{k:05d}.parquet"
