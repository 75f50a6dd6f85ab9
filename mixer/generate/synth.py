"""Synthetic instructions, as OpenBezoar makes them (Dissanayake et al. 2024): Evol-Instruct and Orca-style.

- :class:`EvolInstruct` (WizardLM, Xu et al. 2023): each seed prompt is evolved once by one operation drawn
  from the run seed and its key (in depth: add constraints, deepen, concretise, increase reasoning steps; in
  breadth: a new prompt in the same domain), the model answers the evolved prompt, and WizardLM's elimination
  rules (§3.3) drop the failed evolutions (:func:`eliminate`). Run it again over its own output for another
  round (WizardLM runs four).
- :class:`Orca` (Mukherjee et al. 2023): each prompt (FLAN's, in OpenBezoar) is answered under a system message
  that asks for step-by-step explanations (:data:`mixer.generate.texts.ORCA_SYSTEM_MESSAGES`, or
  ``--system-messages``), drawn per prompt from the run seed and its key; the record keeps the system message.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pyarrow as pa

from mixer.core.errors import MixerError
from mixer.generate.checks import load_yaml_file
from mixer.generate.config import GenerateConfig, prompt_seed
from mixer.generate.job import Method, Models, assistant, key_row, last_user_text, user
from mixer.generate.prompts import Prompt
from mixer.generate.texts import (
    EVOLUTIONS,
    IN_BREADTH_TEMPLATE,
    IN_DEPTH_OPERATIONS,
    IN_DEPTH_TEMPLATE,
    ORCA_SYSTEM_MESSAGES,
    SORRY_MAX_WORDS,
    TEMPLATE_LEAK_PHRASES,
)

#: function words for WizardLM's rule 3 ("only contains punctuation and stop words"); mixer's list (the paper
#: gives none): English articles, pronouns, auxiliaries, prepositions and conjunctions
STOP_WORDS = frozenset("""a an the and or but if then so as of at by for with about against between into through
during before after above below to from up down in out on off over under again further once here there when where
why how all any both each few more most other some such no nor not only own same than too very s t can will just
don should now i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these those am is are
was were be been being have has had having do does did doing would could ought i'm you're he's she's it's we're
they're ok okay yes""".split())


def evolution_prompt(operation: str, prompt: str) -> str:
    """What the model is asked in order to evolve ``prompt`` by ``operation`` (one of :data:`EVOLUTIONS`)."""
    if operation == "in_breadth":
        return IN_BREADTH_TEMPLATE.format(prompt=prompt)
    return IN_DEPTH_TEMPLATE.format(operation=IN_DEPTH_OPERATIONS[operation], prompt=prompt)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip(" .?!:;\"'")


def eliminate(seed: str, evolved: str, answer: str | None) -> str | None:
    """Why an evolution failed (WizardLM §3.3's elimination rules), or None when it stands.

    - ``empty_evolution``: the model gave no prompt;
    - ``no_information_gain`` (rule 1): the evolved prompt equals the seed after case, space and end
      punctuation are normalised (the paper asks ChatGPT whether the two are equal; mixer checks equality);
    - ``copies_template_words`` (rule 4): it contains "given prompt", "rewritten prompt", "created prompt";
    - ``answer_sorry_and_short`` (rule 2): the answer contains "sorry" and has fewer than 80 words;
    - ``answer_only_stop_words`` (rule 3): the answer holds only punctuation and stop words (or nothing).
    """
    if not evolved.strip():
        return "empty_evolution"
    if _normalise(evolved) == _normalise(seed):
        return "no_information_gain"
    lowered = evolved.casefold()
    if any(phrase in lowered for phrase in TEMPLATE_LEAK_PHRASES):
        return "copies_template_words"
    text = answer or ""
    if "sorry" in text.casefold() and len(text.split()) < SORRY_MAX_WORDS:
        return "answer_sorry_and_short"
    if all(w in STOP_WORDS for w in re.findall(r"[\w']+", text.casefold())):
        return "answer_only_stop_words"
    return None


def truncation(row: dict[str, Any]) -> str | None:
    """Why an evolution's shard row is cut off, or None: the evolved prompt (``evolution_truncated``; a cut
    instruction would become training data) or its answer (``answer_truncated``) stopped at max_new_tokens.
    An empty evolution is left to :func:`eliminate`."""
    if not row["evolved"].strip():
        return None
    if row["evolved_finish"] == "length":
        return "evolution_truncated"
    if row["answer_finish"] == "length":
        return "answer_truncated"
    return None


class EvolInstruct(Method):
    name = "evol-instruct"
    folder = "evol_instruct"
    paper = "Evol-Instruct, Xu et al. 2023, as OpenBezoar (Dissanayake et al. 2024) uses it"
    shard_fields = [("evolution", pa.string()), ("evolved", pa.string()), ("evolved_finish", pa.string()),
                    ("answer", pa.string()), ("answer_tokens", pa.int32()), ("answer_finish", pa.string())]
    output_fields = [("evolution", pa.string()), ("seed_prompt", pa.string()), ("prompt_dataset", pa.string()),
                     ("prompt_id", pa.string())]

    def __init__(self, cfg: GenerateConfig) -> None:
        super().__init__(cfg)
        self.evolutions = list(cfg.evolutions or EVOLUTIONS)
        unknown = [e for e in self.evolutions if e not in EVOLUTIONS]
        if unknown:
            raise MixerError(f"--evolution {', '.join(unknown)}: unknown; choose from {', '.join(EVOLUTIONS)}")

    def settings(self) -> dict[str, Any]:
        return {"evolutions": self.evolutions, "in_depth_template": IN_DEPTH_TEMPLATE,
                "in_breadth_template": IN_BREADTH_TEMPLATE}

    def evolution_for(self, p: Prompt) -> str:
        return self.evolutions[prompt_seed(self.cfg.seed, f"{p.key}\x00evolution") % len(self.evolutions)]

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        ops = [self.evolution_for(p) for p in items]
        evolved = models.complete([[user(evolution_prompt(op, last_user_text(p.messages)))]
                                   for op, p in zip(ops, items, strict=True)], [p.key for p in items], "evolve")
        to_answer = [i for i, c in enumerate(evolved) if c.text.strip()]
        answers = dict(zip(to_answer, models.complete([[user(evolved[i].text.strip())] for i in to_answer],
                                                      [items[i].key for i in to_answer], "answer"), strict=True))
        rows = []
        for i, p in enumerate(items):
            a = answers.get(i)
            rows.append({**key_row(p, first_index + i), "evolution": ops[i], "evolved": evolved[i].text,
                         "evolved_finish": evolved[i].finish_reason, "answer": a.text if a else None,
                         "answer_tokens": a.n_tokens if a else None, "answer_finish": a.finish_reason if a else None})
        return rows

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        outcome: Counter[str] = Counter()
        by_evolution: dict[str, Counter[str]] = {}
        for r in rows:
            seed = last_user_text(r["prompt"])
            truncated = None if self.cfg.keep_truncated else truncation(r)
            reason = truncated or eliminate(seed, r["evolved"], r["answer"])
            outcome["kept" if reason is None else f"dropped:{reason}"] += 1
            column = "kept" if reason is None else "truncated" if truncated else "eliminated"
            by_evolution.setdefault(r["evolution"], Counter())[column] += 1
            if reason is None:
                kept.append({**self.output_id(r), "messages": [user(r["evolved"].strip()), assistant(r["answer"])],
                             "evolution": r["evolution"], "seed_prompt": seed})
        section = {"evolutions": {k: dict(sorted(v.items())) for k, v in sorted(by_evolution.items())}}
        return kept, outcome, section

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        lines = ["## Evolutions", "", "| evolution | kept | eliminated | truncated |", "|---|---|---|---|"]
        for name, c in card[self.folder]["evolutions"].items():
            lines.append(f"| {name} | {c.get('kept', 0)} | {c.get('eliminated', 0)} | {c.get('truncated', 0)} |")
        return [*lines, "", "Eliminated: WizardLM's elimination rules; truncated: the evolved prompt or its answer "
                "stopped at --max-new-tokens (kept with --keep-truncated).", ""]


def load_system_messages(path: str | None) -> list[str]:
    """Orca's step-by-step system messages, or a YAML/JSON list of strings from ``path``."""
    if path is None:
        return list(ORCA_SYSTEM_MESSAGES)
    data = load_yaml_file("--system-messages", path)
    if not isinstance(data, list) or not data or not all(isinstance(s, str) and s.strip() for s in data):
        raise MixerError(f"--system-messages {path}: expected a non-empty list of non-empty strings")
    return data


class Orca(Method):
    name = "orca"
    folder = "orca"
    paper = "Orca, Mukherjee et al. 2023, as OpenBezoar (Dissanayake et al. 2024) uses it over FLAN"
    shard_fields = [("system", pa.string()), ("answer", pa.string()), ("answer_tokens", pa.int32()),
                    ("answer_finish", pa.string())]
    output_fields = [("system_message", pa.int32()), ("prompt_dataset", pa.string()), ("prompt_id", pa.string())]

    def __init__(self, cfg: GenerateConfig) -> None:
        super().__init__(cfg)
        self.system_messages = load_system_messages(cfg.system_messages)

    def settings(self) -> dict[str, Any]:
        return {"system_messages": self.system_messages}

    def system_for(self, p: Prompt) -> int:
        return prompt_seed(self.cfg.seed, f"{p.key}\x00system") % len(self.system_messages)

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        systems = [self.system_messages[self.system_for(p)] for p in items]
        convs = [[{"role": "system", "content": s}, *[m for m in p.messages if m["role"] != "system"]]
                 for s, p in zip(systems, items, strict=True)]
        answers = models.complete(convs, [p.key for p in items], "answer")
        return [{**key_row(p, first_index + i), "system": systems[i], "answer": a.text, "answer_tokens": a.n_tokens,
                 "answer_finish": a.finish_reason} for i, (p, a) in enumerate(zip(items, answers, strict=True))]

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        outcome: Counter[str] = Counter()
        per_system: Counter[int] = Counter()
        for r in rows:
            if not r["answer"].strip():
                outcome["dropped:empty_answer"] += 1
                continue
            if r["answer_finish"] == "length" and not self.cfg.keep_truncated:  # cut at --max-new-tokens
                outcome["dropped:truncated"] += 1
                continue
            outcome["kept"] += 1
            index = self.system_messages.index(r["system"])
            per_system[index] += 1
            turns = [m for m in r["prompt"] if m["role"] != "system"]
            kept.append({**self.output_id(r), "system_message": index,
                         "messages": [{"role": "system", "content": r["system"]}, *turns, assistant(r["answer"])]})
        section = {"system_messages": self.system_messages,
                   "rows_per_system_message": {str(k): v for k, v in sorted(per_system.items())}}
        return kept, outcome, section

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        s = card[self.folder]
        lines = ["## System messages", "", "| # | rows | system message |", "|---|---|---|"]
        for i, text in enumerate(s["system_messages"]):
            lines.append(f"| {i} | {s['rows_per_system_message'].get(str(i), 0)} | {text} |")
        return [*lines, ""]
