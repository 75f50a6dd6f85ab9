"""Ghost Attention (GAtt; Touvron et al. 2023, Llama 2, §3.3): multi-turn data that keeps an instruction.

For each dialogue an instruction is drawn and attached to every user turn, and the policy generates every
assistant turn with that context. The training record then keeps the instruction in the first user turn
only, and every assistant turn but the last is marked ``train: false`` (the per-message loss flag,
:data:`mixer.core.records.FLAGGED_OUTPUT_SCHEMA`), so ``mixer train sft`` puts loss only on the last reply,
which had to honour an instruction it can only see at the start. The paper sets the loss to 0 for all
tokens of earlier turns, assistant ones included.

The instruction follows the paper's recipe (§3.3): constraints of the paper's kinds (hobby, language,
public figure) are combined at random ("we construct the final instruction by randomly combining the above
constraints": here 1 to 3 constraints, no two of one kind), and half of the time the instruction written
into the training record is the short form ("Always act as Napoleon from now" -> "Figure: Napoleon.");
the generation always sees the full form. Every draw comes from the dialogue's own seed.

``OUT/`` holds ``data/train-00000-of-00001.parquet`` (the ``messages`` adapter reads it) and ``card.json`` /
``README.md`` (every dialogue accounted for, the draws counted, the settings). The folder is written in a
sibling staging folder and moved into place when complete, so a failed run leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.core.errors import MixerError
from mixer.core.outdir import check_not_an_input, staged_dir
from mixer.core.records import FLAGGED_MESSAGE_TYPE, Message

#: The paper's kinds of synthetic constraints (§3.3: Hobbies "You enjoy e.g. Tennis", Language "Speak in
#: e.g. French", Public Figure "Act as e.g. Napoleon"). The paper had Llama 2-Chat write the lists of
#: hobbies and figures; these short lists are ours. ``--instructions FILE`` replaces them.
HOBBIES = ("tennis", "gardening", "chess", "painting", "hiking", "baking", "astronomy", "photography")
LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese")
FIGURES = ("Napoleon", "Marie Curie", "Shakespeare", "Cleopatra", "Albert Einstein")
#: A plain line of an ``--instructions`` file: all plain lines are one kind, so they are never combined.
PLAIN_KIND = "instruction"


@dataclass(frozen=True)
class Constraint:
    """One constraint: its kind (two of one kind are never combined), the full wording the policy sees while
    it generates, and the less verbose form the training record may carry instead (None: there is none)."""

    kind: str
    full: str
    short: str | None = None


#: The built-in constraints; the short forms follow the paper's one example ("Figure: Napoleon.").
DEFAULT_CONSTRAINTS = (
    *(Constraint("hobby", f"You enjoy {h}.", f"Hobby: {h}.") for h in HOBBIES),
    *(Constraint("language", f"Always speak in {lang}.", f"Language: {lang}.") for lang in LANGUAGES),
    *(Constraint("figure", f"Always act as {f} from now on.", f"Figure: {f}.") for f in FIGURES),
)
DEFAULT_INSTRUCTIONS = tuple(c.full for c in DEFAULT_CONSTRAINTS)
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}
OUTPUT_SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()),
                           ("messages", pa.list_(FLAGGED_MESSAGE_TYPE)), ("instruction", pa.string()),
                           ("sampled_instruction", pa.string()), ("constraint_kinds", pa.list_(pa.string())),
                           ("shortened", pa.bool_())])


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


def read_instructions(path: str | None) -> list[Constraint]:
    """The constraints: the built-in ones, or one per non-empty line of ``path`` (a ``#`` line is a comment).

    A line ``KIND<TAB>FULL`` or ``KIND<TAB>FULL<TAB>SHORT`` gives a constraint of that kind (constraints of
    different kinds are combined; SHORT is its less verbose form). A line without a tab is a whole
    instruction of the kind ``instruction``: plain lines are one kind, so a file of plain lines gives one
    instruction per dialogue, as written (never combined, never shortened)."""
    if path is None:
        return list(DEFAULT_CONSTRAINTS)
    p = Path(path)
    if not p.is_file():
        raise MixerError(f"--instructions {path}: no such file")
    found: list[Constraint] = []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" not in line:
            found.append(Constraint(PLAIN_KIND, line))
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) > 3 or not all(fields):
            raise MixerError(f"{path}:{n}: expected KIND<TAB>FULL or KIND<TAB>FULL<TAB>SHORT, each non-empty "
                             f"(or a line without tabs: one whole instruction); found {len(fields)} field(s)")
        found.append(Constraint(fields[0], fields[1], fields[2] if len(fields) == 3 else None))
    if not found:
        raise MixerError(f"{path}: no instruction in the file (one per line)")
    return found


@dataclass(frozen=True)
class DrawnInstruction:
    """A dialogue's draw: the constraints (distinct kinds, in the drawn order) and whether the training record
    carries their short forms (``shortened``: the draw said so and at least one constraint has one)."""

    constraints: tuple[Constraint, ...]
    shortened: bool
    shorten_drawn: bool

    @property
    def sampled(self) -> str:
        """The instruction on every user turn while the policy generates: always the full wording."""
        return " ".join(c.full for c in self.constraints)

    @property
    def training(self) -> str:
        """The instruction in the training record's first user turn."""
        return " ".join(c.short if self.shortened and c.short else c.full for c in self.constraints)


def check_draw_settings(constraints: list[Constraint], min_constraints: int, max_constraints: int,
                        shorten_prob: float, source: str) -> None:
    """Refuse settings no draw can meet, before anything is loaded or written."""
    if min_constraints < 1:
        raise MixerError(f"--min-constraints must be at least 1, got {min_constraints}")
    if max_constraints < min_constraints:
        raise MixerError(f"--max-constraints ({max_constraints}) is below --min-constraints ({min_constraints})")
    if not 0.0 <= shorten_prob <= 1.0:
        raise MixerError(f"--shorten-prob must be between 0 and 1, got {shorten_prob}")
    kinds = sorted({c.kind for c in constraints})
    if min_constraints > len(kinds):
        raise MixerError(f"--min-constraints {min_constraints}: {source} has {len(kinds)} kind(s) of constraint "
                         f"({', '.join(kinds)}), and no two of one kind are combined")


def draw_instruction(constraints: list[Constraint], seed: int, key: str, min_constraints: int = 1,
                     max_constraints: int = 3, shorten_prob: float = 0.5) -> DrawnInstruction:
    """The instruction of the dialogue ``key``, from its own seed: how many constraints (uniform between the
    bounds, capped at the number of kinds), which kinds (no two alike, random order), one constraint of each,
    then whether the training record gets the short form (probability ``shorten_prob``; the paper: half of
    the time). The same draws are made in the same order whatever the settings, so a dialogue's draw
    depends only on the seed, its id, the list and these settings."""
    rng = random.Random(dialogue_seed(seed, key))
    by_kind: dict[str, list[Constraint]] = {}
    for c in constraints:
        by_kind.setdefault(c.kind, []).append(c)
    k = rng.randint(min_constraints, min(max_constraints, len(by_kind)))
    kinds = rng.sample(list(by_kind), k)
    chosen = tuple(rng.choice(by_kind[kind]) for kind in kinds)
    drawn = rng.random() < shorten_prob
    return DrawnInstruction(chosen, drawn and any(c.short for c in chosen), drawn)


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
            raise MixerError(f"{path}: record {n}: GAtt needs `messages`, a list of {{role, content}} turns")
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise MixerError(f"{path}: record {n}: GAtt needs at least one user turn; found none")
        system = [m["content"] for m in messages if m["role"] == "system"]
        dialogue_id = str(row.get("id") or f"dialogue_{n - 1}")
        if dialogue_id in first_record:
            # the id names the output record and seeds its draws: two dialogues with one id would give two
            # records a build refuses (one (dataset, id)) and the same instruction
            raise MixerError(f"{path}: records {first_record[dialogue_id]} and {n} have the same id "
                             f"{dialogue_id!r}; give each dialogue its own id")
        first_record[dialogue_id] = n
        out.append({"id": dialogue_id, "users": users, "system": system[:1]})
    if not out:
        raise MixerError(f"{path}: no dialogue in the file")
    return out


def dialogue_seed(seed: int, key: str) -> int:
    """A dialogue's own seed: its instruction does not depend on the other dialogues, nor do its replies with
    greedy decoding (the default) or ``padded`` batching. Sampling (``--temperature`` > 0) under continuous
    batching, what ``auto`` picks, draws one RNG stream per backend call, which holds every dialogue of a turn:
    the replies are reproducible for the same file, but change with the other dialogues in it."""
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
    if cfg.max_dialogues is not None and cfg.max_dialogues < 1:  # 0 would read every dialogue, -1 all but one
        raise MixerError(f"--max-dialogues must be at least 1, got {cfg.max_dialogues}")
    constraints = read_instructions(cfg.instructions)
    check_draw_settings(constraints, cfg.min_constraints, cfg.max_constraints, cfg.shorten_prob,
                        cfg.instructions or "the built-in list")
    dialogues = read_dialogues(cfg.dialogues, cfg.max_dialogues)
    if backend is None:
        sampling = SamplingSettings(n=1, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens)
        backend = make_backend("transformers", cfg.policy, sampling, chat_template=cfg.chat_template,
                               dtype=cfg.dtype, seed=cfg.seed)
    name = cfg.name or out.name
    drawn = [draw_instruction(constraints, cfg.seed, d["id"], cfg.min_constraints, cfg.max_constraints,
                              cfg.shorten_prob) for d in dialogues]
    replies: list[list[str]] = [[] for _ in dialogues]
    cut = [False] * len(dialogues)
    finish: Counter[str] = Counter()
    for turn in range(max(len(d["users"]) for d in dialogues)):
        todo = [i for i, d in enumerate(dialogues) if turn < len(d["users"])]
        prompts = []
        for i in todo:
            d, conv = dialogues[i], [{"role": "system", "content": s} for s in dialogues[i]["system"]]
            for k in range(turn + 1):  # the instruction on every user turn while sampling
                conv.append({"role": "user", "content": with_instruction(drawn[i].sampled, d["users"][k])})
                if k < turn:
                    conv.append({"role": "assistant", "content": replies[i][k]})
            prompts.append(conv)
        seeds = [dialogue_seed(cfg.seed, f"{dialogues[i]['id']}\x00{turn}") for i in todo]
        for i, samples in zip(todo, backend.generate(prompts, seeds), strict=True):
            replies[i].append(samples[0].text.strip())
            finish[samples[0].finish_reason] += 1
            cut[i] = cut[i] or samples[0].finish_reason == "length"
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
                      "finish_reason": dict(sorted(finish.items())),
                      "untrained_assistant_turns": sum(len(dialogues[i]["users"]) - 1 for i in kept)},
            "instructions": instruction_counts(constraints, [drawn[i] for i in kept]),
            "settings": {k: v for k, v in asdict(cfg).items() if k != "output"}}
    _write(out, rows, card)
    return card


def instruction_counts(constraints: list[Constraint], drawn: list[DrawnInstruction]) -> dict[str, Any]:
    """The card's account of the draws: the list per kind, how many constraints each dialogue combined, the
    kinds and constraints used, and how many training records carry the short form (``shortened``), the full
    one (``full``), and of those how many drew the short form but had none (``no_short_form``)."""
    return {"available": dict(sorted(Counter(c.kind for c in constraints).items())),
            "combined": {str(k): v for k, v in sorted(Counter(len(x.constraints) for x in drawn).items())},
            "kinds": dict(sorted(Counter(c.kind for x in drawn for c in x.constraints).items())),
            "used": dict(sorted(Counter(c.full for x in drawn for c in x.constraints).items())),
            "shortened": sum(x.shortened for x in drawn), "full": sum(not x.shortened for x in drawn),
            "no_short_form": sum(x.shorten_drawn and not x.shortened for x in drawn)}


def _write(out: Path, rows: list[dict[str, Any]], card: dict[str, Any]) -> None:
    """Write in a staging sibling, then move it into place: never a half-written ``out``."""
    ins = card["instructions"]
    combined = ", ".join(f"{v} with {k}" for k, v in ins["combined"].items())
    with staged_dir(out) as tmp:
        (tmp / "data").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), tmp / "data" / "train-00000-of-00001.parquet",
                       **PARQUET_OPTIONS)
        (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            f"# GAtt data\n\n{card['dialogues']['written']} dialogue(s) of {card['dialogues']['read']} read"
            + (f" ({card['dialogues']['dropped']['truncated']} dropped: a reply stopped at max_new_tokens; "
               "--keep-truncated keeps them)" if card["dialogues"]["dropped"] else "") + "; "
            f"{card['turns']['generated']} assistant turn(s) generated, "
            f"{card['turns']['untrained_assistant_turns']} of them marked `train: false`; "
            f"dialogues by constraints combined in the instruction: {combined}; {ins['shortened']} instruction(s) "
            f"written in the short form, {ins['full']} in full.\n\n"
            f"```json\n{json.dumps(card, indent=2, sort_keys=True)}\n```\n", encoding="utf-8")
