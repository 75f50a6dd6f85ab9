"""LLM-as-judge: a model scores every (instruction, answer) pair with a rubric; the score becomes a column.

OpenBezoar (Dissanayake et al. 2024) filters its generated instruction data with an LLM judge. Here the judge
reads a generated (or any SFT) source, answers the rubric's prompt for each pair, and the number it gives is
written as ``judge_score`` beside the unchanged record (its own ``dataset`` and ``id``, every turn); a recipe
keeps the records at or above a score with the ``messages`` adapter's ``min_score`` option, as AlpaGasus-style
filtering keeps or drops whole examples.

What is judged is one exchange per record, the one ``--prompt-mode`` cuts: ``first_user`` (the default) the
first user turn and the reply after it, ``conversation`` the last user turn and the last assistant reply. The
rubric shows the judge that user turn and that reply only; a record's other turns are written back unjudged,
and the card counts the records that have such turns (``records_with_unjudged_turns``). The card reports the scores'
quantiles and how many judgements gave no readable score (kept, with a null score).

A rubric is YAML/JSON: ``template`` (with ``{instruction}`` and ``{response}``), ``pattern`` (a regular
expression whose first group is the score; the last match counts) and ``scale`` ``[low, high]``; the default is
MT-Bench's single-answer grading (:data:`mixer.generate.texts.DEFAULT_RUBRIC`). A rubric that does not parse is
an error before anything runs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mixer.core.errors import MixerError
from mixer.core.records import MESSAGE_TYPE
from mixer.generate.checks import load_yaml_file
from mixer.generate.config import GenerateConfig
from mixer.generate.job import Method, Models, key_row, last_user_text, quantiles, user
from mixer.generate.prompts import Prompt
from mixer.generate.texts import DEFAULT_RUBRIC

#: what the judge grades per record, by ``--prompt-mode`` (the card states it)
JUDGED_EXCHANGE = {
    "first_user": "the first user turn and the assistant reply after it (--prompt-mode first_user)",
    "conversation": "the last user turn and the last assistant reply (--prompt-mode conversation)",
}


@dataclass(frozen=True)
class Rubric:
    template: str
    pattern: str
    low: float
    high: float

    def prompt(self, instruction: str, response: str) -> str:
        """The template with both slots filled in one pass: a ``{response}`` written inside the instruction (a
        format-string question, say) stays as written, and so does an ``{instruction}`` inside the response."""
        values = {"instruction": instruction, "response": response}
        return re.sub(r"\{(instruction|response)\}", lambda m: values[m.group(1)], self.template)

    def score(self, judgement: str) -> tuple[float | None, str]:
        """``(score, outcome)``: the last match's first group as a number, if on the scale."""
        matches = list(re.finditer(self.pattern, judgement))
        if not matches:
            return None, "unparsed"
        try:
            value = float(matches[-1].group(1))
        except (TypeError, ValueError):
            return None, "unparsed"
        if not self.low <= value <= self.high:
            return None, "out_of_scale"
        return value, "scored"


def load_rubric(path: str | None) -> Rubric:
    """The rubric from ``path`` (or the default), checked: every problem names the file and the key."""
    where = f"--rubric {path}" if path else "the default rubric"
    data = DEFAULT_RUBRIC if path is None else load_yaml_file("--rubric", path)
    if not isinstance(data, dict):
        raise MixerError(f"{where}: expected a mapping with template, pattern and scale")
    unknown = sorted(set(data) - {"template", "pattern", "scale"})
    missing = [k for k in ("template", "pattern", "scale") if k not in data]
    if unknown or missing:
        raise MixerError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])) + " (keys: template, pattern, scale)")
    template, pattern, scale = data["template"], data["pattern"], data["scale"]
    if not isinstance(template, str) or "{instruction}" not in template or "{response}" not in template:
        raise MixerError(f"{where}: template must be a string with {{instruction}} and {{response}}")
    if not isinstance(pattern, str):
        raise MixerError(f"{where}: pattern must be a string (a regular expression)")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise MixerError(f"{where}: pattern is not a regular expression ({e})") from None
    if compiled.groups < 1:
        raise MixerError(f"{where}: pattern needs a group that captures the score, e.g. \\[\\[(\\d+)\\]\\]")
    if (not isinstance(scale, list) or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale) or scale[0] >= scale[1]):
        raise MixerError(f"{where}: scale must be [low, high] with low < high, got {scale!r}")
    return Rubric(template, pattern, float(scale[0]), float(scale[1]))


class Judge(Method):
    name = "judge"
    folder = "judged"
    paper = "LLM-as-judge filtering, OpenBezoar (Dissanayake et al. 2024); rubric: MT-Bench, Zheng et al. 2023"
    needs_reference = True
    keeps_record = True
    shard_fields = [("record", pa.list_(MESSAGE_TYPE)), ("response", pa.string()), ("judgement", pa.string()),
                    ("judgement_finish", pa.string()), ("judge_score", pa.float64()), ("score_outcome", pa.string())]
    output_fields = [("judge_score", pa.float64())]

    def __init__(self, cfg: GenerateConfig) -> None:
        super().__init__(cfg)
        self.rubric = load_rubric(cfg.rubric)

    def settings(self) -> dict[str, Any]:
        r = self.rubric
        return {"rubric": {"template": r.template, "pattern": r.pattern, "scale": [r.low, r.high]}}

    def shard(self, models: Models, items: list[Prompt], first_index: int) -> list[dict[str, Any]]:
        asks = [[user(self.rubric.prompt(last_user_text(p.messages), p.reference or ""))] for p in items]
        # shortest first, so padded batches pad little (continuous batching needs no help); order restored below
        order = sorted(range(len(items)), key=lambda i: (len(asks[i][0]["content"]), i))
        done = models.complete([asks[i] for i in order], [items[i].key for i in order], "judge")
        judgements = dict(zip(order, done, strict=True))
        rows = []
        for i, p in enumerate(items):
            j = judgements[i]
            score, outcome = self.rubric.score(j.text)
            rows.append({**key_row(p, first_index + i), "record": p.record, "response": p.reference,
                         "judgement": j.text, "judgement_finish": j.finish_reason, "judge_score": score,
                         "score_outcome": outcome})
        return rows

    def output_id(self, row: dict[str, Any]) -> dict[str, Any]:
        # the judged record keeps its own dataset and id: judging adds a column, it does not make new data
        return {"dataset": row["dataset"], "id": row["record_id"]}

    def assemble(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str], dict[str, Any]]:
        # the record as it was read, every turn: judging adds a column, it does not cut the conversation
        kept = [{**self.output_id(r), "messages": r["record"], "judge_score": r["judge_score"]} for r in rows]
        outcome = Counter(f"kept:{r['score_outcome']}" for r in rows)
        scores = [r["judge_score"] for r in rows if r["judge_score"] is not None]
        unjudged = sum(len(r["record"]) > len(r["prompt"]) + 1 or any(m["role"] != "system" for m in r["prompt"][:-1])
                       for r in rows)
        section = {"judged_exchange": JUDGED_EXCHANGE[self.cfg.prompt_mode], "records_with_unjudged_turns": unjudged,
                   "scores": quantiles(scores), "unscored": len(rows) - len(scores),
                   "histogram": dict(sorted(Counter(str(s) for s in scores).items())), **self.settings()}
        return kept, outcome, section

    def card_lines(self, card: dict[str, Any]) -> list[str]:
        s = card[self.folder]
        q = s["scores"]
        return ["## Judge scores", "", "| count | mean | min | p10 | p25 | p50 | p75 | p90 | max | unscored |",
                "|---|---|---|---|---|---|---|---|---|---|",
                "| " + " | ".join(str(q[k]) for k in ("count", "mean", "min", "p10", "p25", "p50", "p75", "p90", "max"))
                + f" | {s['unscored']} |", "",
                f"Rubric scale {s['rubric']['scale']}, score pattern `{s['rubric']['pattern']}`. Filter in a recipe "
                "with the `messages` adapter's `min_score` option.", "",
                f"Judged per record: {s['judged_exchange']}. Every record is written whole with its score; "
                f"{s['records_with_unjudged_turns']} record(s) have turns the judge did not see.", ""]
