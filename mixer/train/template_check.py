"""Check that the loss mask the trainer builds covers exactly the assistant turns.

The trainer's mask comes from the chat template's ``{% generation %}`` spans (``tokenize_sft`` in
:mod:`mixer.train.data`); a template whose spans also cover a role header, or stop before the end-of-turn
token, trains silently on the wrong tokens (TRL #4879, open-instruct #1800). This module renders records
with the very functions the trainer uses (the tokenizer and template from ``load_tokenizer``, the row
tokenisation of ``tokenize_sft``) and compares that mask with one derived without the markers:

- assistant turn *i* starts where the prompt the model sees at inference ends: the conversation up to
  turn *i* rendered with ``add_generation_prompt=True`` must be a prefix of the full rendering (a template
  that renders the prompt differently once later turns follow is reported: what it trains is not what the
  model will see);
- the turn ends with its end-of-turn token: the last special token of the turn when the conversation is
  rendered up to it (``</s>``, ``<|eot_id|>``, ``<|im_end|>``, ...). A turn that ends without one is
  reported: the model would never learn to stop.

Every token wholly inside such a span must carry loss, every token wholly outside none. Tokens that
straddle a span's edge (a BPE merge across the boundary) may go either way, and so may whitespace tokens
right after an end-of-turn token (TRL's Qwen3 training template trains the ``\\n`` after ``<|im_end|>``;
generation stops before it, so it is harmless).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mixer.core.errors import MixerError

# the trainer's own functions (imported, not copied, so the check sees what training sees)
from mixer.train.accel.modeling import load_tokenizer
from mixer.train.data import SFT_COLUMNS, _check_markers, _tokenize_row, load_parquet

#: rows scanned for conversations of each shape (system turn, multi-turn, tool calls, <think>)
SCAN_ROWS = 20_000
#: records checked before training (``mixer train sft``); ``mixer check-template`` checks more
TRAIN_SAMPLE = 64


class TemplateCheckError(MixerError):
    """The chat template's loss mask is wrong for some record (the report says which and where)."""


@dataclass
class TokenVerdict:
    """One token: its text, whether the trainer gives it loss, and what the check expected."""

    text: str
    loss: bool
    expected: bool | None  # None: either is fine (a span edge, whitespace after an end of turn)

    @property
    def wrong(self) -> bool:
        return self.expected is not None and self.expected != self.loss


@dataclass
class RecordCheck:
    """The verdict on one record."""

    row: int
    record_id: str
    dataset: str
    tokens: list[TokenVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    end_of_turn: list[str] = field(default_factory=list)  # each assistant turn's end-of-turn token

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    """What the check looked at and what it found."""

    template_sha256: str
    end_of_turn: list[str]
    records: list[RecordCheck]
    shapes: dict[str, int]
    total_rows: int

    @property
    def failures(self) -> list[RecordCheck]:
        return [r for r in self.records if not r.ok]


def load_check_tokenizer(model: str | None, tokenizer: str | None, chat_template: str = "auto") -> Any:
    """The tokenizer with the template ``mixer train`` would choose (``resolve_chat_template``), for a
    model folder or a tokenizer folder. A template without assistant markers (and none TRL can swap in)
    is a ``ConfigError``: exit 2."""
    from mixer.train.deps import require_train_deps

    if not model and not tokenizer:
        raise MixerError("give --model PATH or --tokenizer PATH: the check renders with that tokenizer's template")
    require_train_deps(("transformers", "trl"))
    cfg = SimpleNamespace(model=model, tokenizer=tokenizer, chat_template=chat_template)
    return load_tokenizer(cfg, need_markers=True)


def _shapes(messages: list[dict[str, Any]]) -> list[str]:
    """The conversation features the check wants covered."""
    out = []
    roles = [m.get("role") for m in messages]
    if "system" in roles:
        out.append("system turn")
    if roles.count("assistant") > 1:
        out.append("multi-turn")
    if any(m.get("tool_calls") for m in messages) or "tool" in roles:
        out.append("tool calls")
    if any("<think>" in (m.get("content") or "") or m.get("reasoning_content") for m in messages):
        out.append("<think>")
    return out


def pick_sample(rows: Any, n: int, scan: int = SCAN_ROWS) -> tuple[list[int], dict[str, int]]:
    """Row indices to check: for each shape (system turn, multi-turn, tool calls, <think>) the first rows
    that have it among the first ``scan`` rows, then the first rows, ``n`` in all (all rows when ``n`` is
    None or larger). Deterministic; returns the indices in row order and how many rows of each shape are
    among them."""
    total = len(rows)
    if n is None or n >= total:
        chosen = list(range(total))
    else:
        per_shape = max(1, n // 8)
        chosen_set: set[int] = set()
        seen: dict[str, int] = {}
        head = rows.select(range(min(scan, total)))["messages"]
        for i, messages in enumerate(head):
            for shape in _shapes(messages):
                if seen.get(shape, 0) < per_shape:
                    seen[shape] = seen.get(shape, 0) + 1
                    chosen_set.add(i)
        i = 0
        while len(chosen_set) < n and i < total:
            chosen_set.add(i)
            i += 1
        chosen = sorted(chosen_set)[:n] if len(chosen_set) > n else sorted(chosen_set)
    counts: dict[str, int] = {}
    for messages in rows.select(chosen)["messages"] if chosen else []:
        for shape in _shapes(messages):
            counts[shape] = counts.get(shape, 0) + 1
    return chosen, counts


def _special_tokens(tokenizer: Any) -> list[str]:
    """Added and special token strings, longest first (for matching the end of a turn)."""
    names = set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens)
    return sorted((t for t in names if t), key=len, reverse=True)


def _render(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def _plain(content: str | None) -> str:
    """An assistant content as the template shows it: stripped, without a leading reasoning block."""
    text = content or ""
    if "</think>" in text:
        text = text.split("</think>")[-1]
    return text.strip()


def expected_spans(tokenizer: Any, messages: list[dict[str, Any]], specials: list[str]
                   ) -> tuple[list[tuple[int, int]], list[str], list[str]]:
    """Character spans of the rendered conversation that must carry loss (each assistant turn's output
    through its end-of-turn token), the end-of-turn tokens found, and the problems that leave no span."""
    full = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    ends: list[str] = []
    problems: list[str] = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        turn = sum(1 for x in messages[:i] if x.get("role") == "assistant") + 1
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        if not full.startswith(prompt):
            problems.append(f"assistant turn {turn}: the prompt renders differently once later turns follow (the "
                            "template is not prefix-preserving), so training does not see what inference sees")
            continue
        start = len(prompt)
        upto = _render(tokenizer, messages[: i + 1])
        turn_text = upto[start:].rstrip() if upto.startswith(prompt) else full[start:].rstrip()
        eot = next((s for s in specials if turn_text.endswith(s)), None)
        if eot is None:
            problems.append(f"assistant turn {turn} ends without an end-of-turn token ({turn_text[-40:]!r}): the "
                            "model is never taught to stop")
            continue
        if upto.startswith(prompt) and full.startswith(upto.rstrip()):
            end = start + len(turn_text)  # the turn renders the same whether or not turns follow
        else:  # e.g. reasoning dropped from earlier turns: the turn ends at its first end-of-turn token
            at = full.find(eot, start)
            if at < 0:
                problems.append(f"assistant turn {turn}: its end-of-turn token {eot} is not in the full rendering")
                continue
            end = at + len(eot)
        plain = _plain(m.get("content"))
        if plain and plain not in full[start:end]:
            problems.append(f"assistant turn {turn}: its content is not rendered between the generation prompt "
                            f"and {eot}")
            continue
        spans.append((start, end))
        ends.append(eot)
    return spans, ends, problems


def _classify(offsets: list[tuple[int, int]], text: str, spans: list[tuple[int, int]]) -> list[bool | None]:
    """Expected loss per token from the character spans (None where either is fine)."""
    expected: list[bool | None] = []
    for a, b in offsets:
        inside = any(a >= s and b <= e for s, e in spans)
        outside = all(b <= s or a >= e for s, e in spans)
        if inside and b > a:
            expected.append(True)
        elif outside:
            after_eot = any(a >= e and text[e:b].strip() == "" for _, e in spans)
            expected.append(None if after_eot and b > a else False)
        else:
            expected.append(None)
    return expected


def check_record(tokenizer: Any, example: dict[str, Any], row: int, max_length: int | None,
                 specials: list[str]) -> RecordCheck:
    """One record through the trainer's tokenisation, its mask compared with the expected spans."""
    rec = RecordCheck(row=row, record_id=str(example.get("id") or row), dataset=str(example.get("dataset") or ""))
    messages = example["messages"]
    try:
        out = _tokenize_row(example, tokenizer, max_length or 10**9, True)
        spans, rec.end_of_turn, problems = expected_spans(tokenizer, messages, specials)
    except Exception as e:  # noqa: BLE001 - jinja raise_exception and TemplateError: the trainer would fail too
        rec.problems.append(f"the chat template cannot render this record: {e}")
        return rec
    text = _render(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if list(enc["input_ids"][: len(ids)]) != ids:
        rec.problems.append("tokenising the rendered text gives other tokens than apply_chat_template")
        return rec
    offsets = [tuple(o) for o in enc["offset_mapping"][: len(ids)]]
    expected = _classify(offsets, text, spans)
    rec.tokens = [TokenVerdict(text[a:b] or tokenizer.convert_ids_to_tokens(i), bool(m), x)
                  for (a, b), i, m, x in zip(offsets, ids, mask, expected, strict=True)]
    rec.problems.extend(problems)
    extra = [k for k, v in enumerate(rec.tokens) if v.wrong and v.loss]
    missed = [k for k, v in enumerate(rec.tokens) if v.wrong and not v.loss]
    if extra:
        rec.problems.append(f"{len(extra)} token(s) outside the assistant turns carry loss, first at token "
                            f"{extra[0]}: {_snippet(rec.tokens, extra)!r}")
    if missed:
        rec.problems.append(f"{len(missed)} assistant token(s) carry no loss, first at token {missed[0]}: "
                            f"{_snippet(rec.tokens, missed)!r}")
    return rec


def _snippet(tokens: list[TokenVerdict], indices: list[int]) -> str:
    """The text of the first contiguous run of the given token indices."""
    run = [indices[0]]
    for k in indices[1:]:
        if k != run[-1] + 1:
            break
        run.append(k)
    return "".join(tokens[k].text for k in run)


def check_rows(rows: Any, tokenizer: Any, *, sample: int | None, max_length: int | None = None) -> CheckReport:
    """Check ``sample`` records of a ``datasets.Dataset`` with a ``messages`` column (all when None)."""
    import hashlib

    _check_markers(tokenizer)  # a template that marks nothing: DataError, exit 2
    specials = _special_tokens(tokenizer)
    chosen, shapes = pick_sample(rows, sample)
    records = [check_record(tokenizer, rows[i], i, max_length, specials) for i in chosen]
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    ends = list(dict.fromkeys(e for r in records for e in r.end_of_turn))
    return CheckReport(template_sha256=hashlib.sha256(template.encode("utf-8")).hexdigest(), end_of_turn=ends,
                       records=records, shapes=shapes, total_rows=len(rows))


def spans_text(rec: RecordCheck) -> list[str]:
    """The record as alternating loss / no-loss spans, wrong tokens flagged (for the terminal)."""
    lines: list[str] = []
    run: list[TokenVerdict] = []

    def flush() -> None:
        if not run:
            return
        kind = "LOSS   " if run[0].loss else "no loss"
        flag = ""
        if any(v.wrong for v in run):
            flag = "  <-- should not carry loss" if run[0].loss else "  <-- should carry loss"
        lines.append(f"  {kind} {''.join(v.text for v in run)!r}{flag}")
        run.clear()

    for v in rec.tokens:
        if run and (v.loss != run[-1].loss or v.wrong != run[-1].wrong):
            flush()
        run.append(v)
    flush()
    return lines


def describe_failure(rec: RecordCheck) -> str:
    """The first offending record with its masked and unmasked spans."""
    head = f"record {rec.record_id} (row {rec.row}{', ' + rec.dataset if rec.dataset else ''}):"
    return "\n".join([head, *(f"  - {p}" for p in rec.problems), *spans_text(rec)])


def summary(report: CheckReport) -> str:
    shapes = ", ".join(f"{k}: {v}" for k, v in sorted(report.shapes.items())) or "single-turn only"
    eot = ", ".join(report.end_of_turn) or "none found"
    return (f"checked {len(report.records)} of {report.total_rows} records ({shapes}); end-of-turn token(s): {eot}; "
            f"template sha256 {report.template_sha256[:12]}")


def check_before_training(rows: Any, tokenizer: Any, max_length: int, sample: int = TRAIN_SAMPLE) -> CheckReport:
    """``mixer train sft``'s guard: raise ``TemplateCheckError`` (exit 2) when the mask is wrong for any of
    ``sample`` records, naming the first, with how to skip the check."""
    report = check_rows(rows, tokenizer, sample=sample, max_length=max_length)
    if report.failures:
        bad = report.failures
        raise TemplateCheckError(
            f"the chat template's loss mask is wrong for {len(bad)} of {len(report.records)} sampled records; "
            f"{describe_failure(bad[0])}\nrun `mixer check-template` for the full report, fix the template "
            "(chat_template: tulu or a .jinja file), or skip with --set check_template=false")
    from mixer.train.runlog import decide

    decide("template check", "passed", summary(report))
    return report


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
.rec{border:1px solid #ccc;border-radius:6px;padding:.6em;margin:1em 0}.bad{border-color:#c00}
.toks{font-family:monospace;white-space:pre-wrap;line-height:1.8}
.t{border-right:1px dotted #bbb}.loss{background:#b7f0b1}.extra{background:#f7a1a1}
.missed{outline:2px solid #e08000;background:#ffe2b0}.either{background:#e5f6e3}
.legend span{padding:0 .4em;margin-right:.6em}"""


def write_html(report: CheckReport, path: Path, limit: int = 50) -> Path:
    """A self-contained page showing each checked record's tokens, the loss tokens highlighted and the
    wrong ones marked (every failing record, then passing ones up to ``limit`` records)."""
    shown = report.failures + [r for r in report.records if r.ok]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='generator' content='mixer'>"
             f"<title>mixer check-template</title><style>{_CSS}</style></head><body>",
             f"<h1>Chat template loss mask</h1><p>{html.escape(summary(report))}</p>",
             f"<p><b>{len(report.failures)}</b> record(s) with a wrong mask.</p>",
             "<p class='legend'><span class='loss'>carries loss</span><span class='extra'>carries loss, should not"
             "</span><span class='missed'>should carry loss</span><span class='either'>either is fine</span></p>"]
    for rec in shown[:max(limit, len(report.failures))]:
        parts.append(f"<div class='rec{'' if rec.ok else ' bad'}'><b>{html.escape(rec.record_id)}</b> "
                     f"(row {rec.row}{', ' + html.escape(rec.dataset) if rec.dataset else ''})")
        parts.extend(f"<div style='color:#c00'>{html.escape(p)}</div>" for p in rec.problems)
        parts.append("<div class='toks'>")
        for v in rec.tokens:
            cls = ("extra" if v.loss else "missed") if v.wrong else ("either loss" if v.expected is None and v.loss
                                                                      else "loss" if v.loss else "")
            text = html.escape(v.text).replace("\n", "\u21b5\n")
            parts.append(f"<span class='t {cls}'>{text}</span>")
        parts.append("</div></div>")
    parts.append(f"<script type='application/json' id='summary'>{json.dumps({'failures': len(report.failures)})}"
                 "</script></body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def run_check(data: str | Path, model: str | None, tokenizer_path: str | None, chat_template: str = "auto",
              sample: int | None = 1000, max_length: int | None = None) -> CheckReport:
    """``mixer check-template``: load the records and the tokenizer as the trainer does and check them."""
    tokenizer = load_check_tokenizer(model, tokenizer_path, chat_template)
    rows = load_parquet(data, SFT_COLUMNS)
    return check_rows(rows, tokenizer, sample=sample, max_length=max_length)


def is_check_html(head: bytes) -> bool:
    """Whether a file is a page this module wrote (so it may be replaced)."""
    return b"<title>mixer check-template</title>" in head and re.search(rb"name='generator' content='mixer'",
                                                                         head) is not None
