"""GAtt's instructions (Touvron et al. 2023, Llama 2, §3.3): the constraints, and each dialogue's draw.

The instruction follows the paper's recipe: constraints of the paper's kinds (hobby, language, public figure)
are combined at random ("we construct the final instruction by randomly combining the above constraints":
here 1 to 3 constraints, no two of one kind), and half of the time the instruction written into the
training record is the short form ("Always act as Napoleon from now" -> "Figure: Napoleon."); the
generation always sees the full form. Every draw comes from the dialogue's own seed (:func:`dialogue_seed`),
so a dialogue's instruction does not depend on the others. :mod:`mixer.generate.gatt` runs the dialogues.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError

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


def dialogue_seed(seed: int, key: str) -> int:
    """A dialogue's own seed: its instruction does not depend on the other dialogues, nor do its replies with
    greedy decoding (the default) or ``padded`` batching. Sampling (``--temperature`` > 0) under continuous
    batching, what ``auto`` picks, draws one RNG stream per backend call, which holds a turn of every dialogue
    of a shard: the replies are reproducible for the same file and ``--shard-dialogues`` (a resumed shard too),
    but change with the other dialogues in the shard."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest(), "big") >> 1


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
