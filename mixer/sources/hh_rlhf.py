"""Anthropic HH-RLHF preference pairs (``<subset>/train.jsonl.gz``), see SOURCES.md 3.2.

Each line is ``{"chosen": str, "rejected": str}``, two whole transcripts written as
``"\\n\\nHuman: …\\n\\nAssistant: …"`` repeated. The two normally share everything up to the final
Assistant turn, so:

- the prompt of each side is its text before its *last* ``"\\n\\nAssistant:"``; the two prompts must
  be identical (equivalently: ``rejected`` starts with the chosen prompt followed by
  ``"\\n\\nAssistant:"`` and has no later Assistant turn), else the pair differs before the last turn
  and is dropped as ``diverges_before_last_turn``: there is no single prompt the two responses answer;
- the prompt is split on ``"\\n\\nHuman:"`` / ``"\\n\\nAssistant:"`` into user / assistant messages,
  each with the single space after the colon removed. Turns are kept as they are: the real data has
  assistant replies cut mid-sentence and continued after a Human turn, and those stay separate turns
  (the pipeline's turn-order rule judges the structure; nothing is merged here);
- the responses are the texts after the last ``"\\n\\nAssistant:"`` (single leading space removed).

Dropped, never raised (stage ``read``): ``unparseable_transcript`` (no Assistant turn, a transcript
that does not begin with a Human turn after optional leading whitespace, a prompt whose last turn is
not a Human turn, or a final response that goes on with a Human turn), ``diverges_before_last_turn``
and ``chosen_equals_rejected`` (same response text, ignoring surrounding whitespace, which the
pipeline strips later). A line without ``chosen``/``rejected`` (the ``red-team-attempts`` schema)
raises ``RecordError``.

All four subsets name their file ``train.jsonl.gz``, so the id includes the parent folder:
``hh_rlhf_<subset>_<record ordinal>``. Texts are kept exactly as published.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Message, Record, make_pair, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict

DATASET = "hh_rlhf"
HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLE = {"Human": "user", "Assistant": "assistant"}


class TranscriptError(ValueError):
    """A transcript that does not follow the Human/Assistant layout; becomes ``unparseable_transcript``."""


def _drop_one_space(text: str) -> str:
    """The published format puts one space after ``Human:``/``Assistant:``; it belongs to the marker."""
    return text[1:] if text.startswith(" ") else text


def split_last_turn(transcript: str) -> tuple[str, str]:
    """``(prompt text, final response)``: the text before and after the last ``"\\n\\nAssistant:"``."""
    at = transcript.rfind(ASSISTANT)
    if at < 0:
        raise TranscriptError("no '\\n\\nAssistant:' turn")
    return transcript[:at], _drop_one_space(transcript[at + len(ASSISTANT):])


def parse_prompt(prompt: str) -> list[Message]:
    """The prompt text as user/assistant messages, in order, without merging or reordering turns."""
    body = prompt.lstrip()
    if not body.startswith(HUMAN.lstrip()):
        raise TranscriptError(f"the transcript does not start with 'Human:' (starts with {prompt[:40]!r})")
    parts = _TURN.split("\n\n" + body)
    # re.split with one group: ["", role, text, role, text, ...]; the first item is empty because
    # the text starts with a marker
    messages = [msg(_ROLE[role], _drop_one_space(text)) for role, text in zip(parts[1::2], parts[2::2], strict=True)]
    if messages[-1]["role"] != "user":
        raise TranscriptError("the turn before the final Assistant turn is not a Human turn")
    return messages


@register
class HhRlhf(Adapter):
    name = "hh_rlhf"
    kind = "preference"
    description = ("Anthropic HH-RLHF JSONL (<subset>/train.jsonl.gz): chosen/rejected transcripts "
                   "sharing all but the last Assistant turn")
    license = "MIT"

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        missing = [key for key in ("chosen", "rejected") if key not in raw]
        if missing:
            raise RecordError(
                f"missing required field(s) {missing} (fields present: {sorted(raw)}); HH-RLHF pairs have "
                "'chosen' and 'rejected' transcripts (red-team-attempts/ has a different schema and is not supported)"
            )
        for key in ("chosen", "rejected"):
            if not isinstance(raw[key], str):
                raise RecordError(f"field {key!r} must be a string, found {type(raw[key]).__name__}")
        chosen, rejected = raw["chosen"], raw["rejected"]
        if location.record is None:
            raise RecordError("no record ordinal in the location; the id needs it")
        record_id = f"{DATASET}_{Path(location.path).parent.name}_{location.record}"

        def drop(reason: str, detail: str) -> Dropped:
            return Dropped(reason=reason, dataset=DATASET, id=record_id, detail=detail, stage="read")

        try:
            prompt_text, chosen_reply = split_last_turn(chosen)
        except TranscriptError as e:
            yield drop("unparseable_transcript", f"chosen: {e}")
            return
        if not rejected.startswith(prompt_text + ASSISTANT):
            yield drop("diverges_before_last_turn",
                       f"chosen and rejected differ at character {_common_prefix_len(chosen, rejected)}, before "
                       f"chosen's last Assistant turn (character {len(prompt_text)})")
            return
        if rejected.rfind(ASSISTANT) != len(prompt_text):
            yield drop("diverges_before_last_turn",
                       "rejected has more turns than chosen: its last Assistant turn comes later")
            return
        rejected_reply = _drop_one_space(rejected[len(prompt_text) + len(ASSISTANT):])
        try:
            prompt = parse_prompt(prompt_text)
        except TranscriptError as e:
            yield drop("unparseable_transcript", str(e))
            return
        for side, reply in (("chosen", chosen_reply), ("rejected", rejected_reply)):
            if HUMAN in reply:
                yield drop("unparseable_transcript", f"the {side} transcript goes on with a Human turn "
                                                     "after its last Assistant turn")
                return
        if chosen_reply.strip() == rejected_reply.strip():
            yield drop("chosen_equals_rejected", "the chosen and rejected final responses are the same text")
            return
        yield make_pair(DATASET, record_id, [*prompt, msg("assistant", chosen_reply)],
                        [msg("assistant", rejected_reply)])


def _common_prefix_len(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))
