"""Distillation from the model itself: context distillation (Llama 2) and self-data distillation.

- :class:`ContextDistill` (Touvron et al. 2023, §4.2.4): the model answers each prompt with a safety
  pre-prompt in front of it; the SFT record keeps the prompt *without* the pre-prompt, so fine-tuning moves the
  pre-prompt's effect into the model. ``--targeted``: the model also answers without the pre-prompt, the reward
  model scores both, and the distilled answer is kept only when it scores strictly higher (the paper's
  safety-RM gate).
- :class:`SelfDistill` (Thangarasa et al. 2024): the model rewrites each gold answer in its own words; where the
  gold answer states a checkable final answer (``#### 42``, ``\\boxed{}``), the rewrite is kept only when its
  final answer is the same, else the gold answer is kept.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from mixer.core.errors import MixerError
from mixer.generate.answers import extract_final_answer, same_final_answer
from mixer.generate.checks import load_yaml_file
from mixer.generate.config import GenerateConfig, prompt_seed
from mixer.generate.job import Method, Models, assistant, key_row, last_user_text, quantiles, user
from mixer.generate.prompts import Prompt
from mixer.generate.texts import (
    PREPROMPT_TEMPLATE,
    RISK_TEMPLATES,
    SAFETY_ADJECTIVES,
    SELF_DISTILL_TEMPLATE,
)

Messages = list[dict[str, str]]


def load_preprompts(path: str | None) -> dict[str, Any]:
    """The pre-prompt texts: the built-in ones (:mod:`mixer.generate.texts`), or a YAML/JSON file with
    ``adjectives`` (list of strings), ``template`` (with ``{adjective}``) and ``risk_templates`` ({category:
    text}); a key the file leaves out keeps its built-in value. A malformed file is an error naming it."""
    texts: dict[str, Any] = {"adjectives": list(SAFETY_ADJECTIVES), "template": PREPROMPT_TEMPLATE,
                             "risk_templates": dict(RISK_TEMPLATES)}
    if path is None:
        return texts
    data = load_yaml_file("--preprompts", path)
    if not isinstance(data, dict):
        raise MixerError(f"{path}: expected a mapping with adjectives, template and/or risk_templates")
    unknown = sorted(set(data) - set(texts))
    if unknown:
        raise MixerError(f"{path}: unknown key(s) {', '.join(unknown)}; expected adjectives, template, risk_templates")
    texts.update(data)
    adjectives, template, risks = texts["adjectives"], texts["template"], texts["risk_templates"]
    if not isinstance(adjectives, list) or not adjectives or not all(isinstance(a, str) and a for a in adjectives):
        raise MixerError(f"{path}: adjectives must be a non-empty list of strings")
    if not isinstance(template, str) or "{adjective}" not in template:
        raise MixerError(f"{path}: template must be a string containing {{adjective}}")
    try:  # filled in with str.format per prompt: any other field or a lone brace must fail here, not mid-run
        template.format(adjective=adjectives[0])
    except (KeyError, IndexError, ValueError) as e:
        raise MixerError(f"{path}: template may name no field but {{adjective}} (write a literal brace as {{{{ or "
                         f"}}}}); formatting it failed: {type(e).__name__} {e}") from None
    if not isinstance(risks, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in risks.items()):
        raise MixerError(f"{path}: risk_templates must map category names to strings")
    return texts


def build_preprompt(texts: dict[str, Any], adjective_index: int, risk_category: str | None) -> str:
    """A pre-prompt: the template with one adjective, then the risk category's answer template if any."""
    adjectives = texts["adjectives"]
    text = texts["template"].format(adjective=adjectives[adjective_index % len(adjectives)])
    if risk_category is not None:
        text += " " + texts["risk_templates"][risk_category]
    return text


def prefix_last_user_turn(messages: Messages, preprompt: str) -> Messages:
    """``messages`` with ``preprompt`` and a blank line in front of the last user turn (the one answered)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [dict(m, content=f"{preprompt}\n\n{m['content']}") if i == last else dict(m)
            for i, m in enumerate(messages)]


class ContextDistill(Method):
    name = "context-distill"
    folder = "context_distill"
    paper = "Llama 2, Touvron et al. 2023, §4.2.4"
    shard_fields = [("preprompt", pa.string()), ("distilled", pa.string()), ("distilled_tokens", pa.int32()),
                    ("distilled_finish", pa.string()), ("base", pa.string()), ("reward_distilled", pa.float64()),
                    ("reward_base", pa.float64())]
    output_fields = [("preprompt", pa.string()), ("reward_distilled", pa.float64()), ("reward_base", pa.float64()),
                     ("prompt_dataset", pa.string()), ("prompt_id", pa.string())]

    def __init__(self, cfg: GenerateConfig) -> None:
        super().__init__(cfg)
        self.texts = load_preprompts(cfg.preprompts)
        if cfg.risk_category is not None and cfg.risk_category not in self.texts["risk_templates"]:
            raise MixerError(f"--risk-category {cfg.risk_category!r} has no answer template; categories: "
                             f"{', '.join(self.texts['risk_templates'])}")

    def needs_reward_model(self) -> bool:
        return self.cfg.targeted

    def settings(self) -> dict[str, Any]:
        return {"targeted": self.cfg.targeted, "risk_category": self.cfg.risk_category, "preprompts": self.texts}

    def preprompt_for(self, p: Prompt) -> str:
        """The prompt's pre-prompt: its adjective drawn from the run seed and the prompt's key."""
        return build_preprompt(self.texts, prompt_seed(self.cfg.seed, f"{p.key}\x00adjective"), self.cfg.risk_category)

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        keys = [p.key for p in items]
        pres = [self.preprompt_for(p) for p in items]
        distilled = models.complete([prefix_last_user_turn(p.messages, pre) for p, pre in zip(items, pres,
                                                                                              strict=True)],
                                    keys, "distilled")
        base: list[Any] = [None] * len(items)
        rewards_d: list[float | None] = [None] * len(items)
        rewards_b: list[float | None] = [None] * len(items)
        if self.cfg.targeted:
            base = models.complete([p.messages for p in items], keys, "base")
            convs, where = [], []
            for i, p in enumerate(items):
                for side, reply in (("d", distilled[i]), ("b", base[i])):
                    if reply.text.strip():
                        convs.append([*p.messages, assistant(reply.text)])
                        where.append((i, side))
            for (i, side), r in zip(where, models.rewards(convs), strict=True):
                (rewards_d if side == "d" else rewards_b)[i] = r
        return [{**key_row(p, first_index + i), "preprompt": pres[i], "distilled": distilled[i].text,
                 "distilled_tokens": distilled[i].n_tokens, "distilled_finish": distilled[i].finish_reason,
                 "base": base[i].text if base[i] is not None else None, "reward_distilled": rewards_d[i],
                 "reward_base": rewards_b[i]} for i, p in enumerate(items)]

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        outcome: Counter[str] = Counter()
        gate: Counter[str] = Counter()
        for r in rows:
            if r["distilled"].strip() and r["distilled_finish"] == "length" and not self.cfg.keep_truncated:
                decision = "dropped:truncated"  # cut at --max-new-tokens: not an answer to train on
            else:
                decision = context_gate(r["distilled"], r["reward_distilled"], r["reward_base"], self.cfg.targeted)
            outcome[decision] += 1
            if self.cfg.targeted and decision not in ("dropped:empty_answer", "dropped:truncated"):
                gate["kept" if decision.startswith("kept") else "rejected"] += 1
            if decision.startswith("kept"):
                kept.append({**self.output_id(r), "messages": [*r["prompt"], assistant(r["distilled"])],
                             "preprompt": r["preprompt"], "reward_distilled": r["reward_distilled"],
                             "reward_base": r["reward_base"]})
        section = {"targeted": self.cfg.targeted, "risk_category": self.cfg.risk_category,
                   "gate": {"kept": gate["kept"], "rejected": gate["rejected"]} if self.cfg.targeted else None,
                   "preprompts": self.texts,
                   "reward_gain": quantiles([r["reward_distilled"] - r["reward_base"] for r in rows
                                             if r["reward_distilled"] is not None and r["reward_base"] is not None])}
        return kept, outcome, section

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        s = card[self.folder]
        lines = ["## Context distillation", "",
                 "Pre-prompt adjectives: " + ", ".join(s["preprompts"]["adjectives"]) + f"; template: "
                 f"`{s['preprompts']['template']}`; risk category: {s['risk_category'] or 'none'}.", ""]
        if s["gate"] is not None:
            lines += [f"Reward-model gate (distilled answer kept only when it scores above the answer without the "
                      f"pre-prompt): kept {s['gate']['kept']}, rejected {s['gate']['rejected']}; reward gain "
                      f"p50 {s['reward_gain']['p50']}.", ""]
        return lines


def context_gate(distilled: str, reward_distilled: float | None, reward_base: float | None, targeted: bool) -> str:
    """The outcome of one prompt: ``kept``; with ``targeted``, ``kept:gate_preferred_distilled`` (strictly
    higher reward), ``kept:base_answer_empty`` (nothing to compare against) or ``dropped:gate_not_better``;
    ``dropped:empty_answer`` when the distilled answer is empty."""
    if not distilled.strip():
        return "dropped:empty_answer"
    if not targeted:
        return "kept"
    if reward_base is None:
        return "kept:base_answer_empty"
    assert reward_distilled is not None
    return "kept:gate_preferred_distilled" if reward_distilled > reward_base else "dropped:gate_not_better"


def self_distill_choice(gold: str, rewrite: str, rewrite_finish: str) -> tuple[str, str]:
    """``(answer_source, reason)`` for one item: the rewrite, or the gold answer, and why.

    A rewrite that is empty or cut at ``max_new_tokens`` is not used. Where the gold answer states a final
    answer (``\\boxed{}`` or ``####``), the rewrite must state the same one; where it does not, the rewrite is
    kept unchecked."""
    if not rewrite.strip():
        return "gold", "empty_rewrite"
    if rewrite_finish == "length":
        return "gold", "rewrite_truncated"
    gold_final = extract_final_answer(gold)
    if gold_final is None:
        return "rewrite", "unchecked"
    rewrite_final = extract_final_answer(rewrite)
    if rewrite_final is None:
        return "gold", "rewrite_without_final_answer"
    if same_final_answer(gold_final, rewrite_final):
        return "rewrite", "final_answer_matches"
    return "gold", "final_answer_differs"


class SelfDistill(Method):
    name = "self-distill"
    folder = "self_distill"
    paper = "self-data distillation, Thangarasa et al. 2024"
    needs_reference = True
    shard_fields = [("gold", pa.string()), ("rewrite", pa.string()), ("rewrite_tokens", pa.int32()),
                    ("rewrite_finish", pa.string())]
    output_fields = [("answer_source", pa.string()), ("reason", pa.string()), ("prompt_dataset", pa.string()),
                     ("prompt_id", pa.string())]

    def settings(self) -> dict[str, Any]:
        return {"template": SELF_DISTILL_TEMPLATE}

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        asks = [[user(SELF_DISTILL_TEMPLATE.format(instruction=last_user_text(p.messages), answer=p.reference))]
                for p in items]
        rewrites = models.complete(asks, [p.key for p in items], "rewrite")
        return [{**key_row(p, first_index + i), "gold": p.reference, "rewrite": c.text, "rewrite_tokens": c.n_tokens,
                 "rewrite_finish": c.finish_reason} for i, (p, c) in enumerate(zip(items, rewrites, strict=True))]

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        outcome: Counter[str] = Counter()
        for r in rows:
            source, reason = self_distill_choice(r["gold"], r["rewrite"], r["rewrite_finish"])
            outcome[f"kept:{source}:{reason}"] += 1
            answer = r["rewrite"] if source == "rewrite" else r["gold"]
            kept.append({**self.output_id(r), "messages": [*r["prompt"], assistant(answer)], "answer_source": source,
                         "reason": reason})
        by_source = Counter(k.split(":")[1] for k in outcome.elements())
        checkable = sum(v for k, v in outcome.items() if k.endswith(("matches", "differs", "without_final_answer")))
        section = {"rewrite": by_source["rewrite"], "gold": by_source["gold"], "checkable": checkable,
                   "template": SELF_DISTILL_TEMPLATE}
        return kept, outcome, section

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        s = card[self.folder]
        return ["## Self-data distillation", "",
                f"Rows with the model's rewrite: {s['rewrite']}; with the gold answer: {s['gold']} "
                f"({s['checkable']} item(s) had a checkable final answer).", ""]

