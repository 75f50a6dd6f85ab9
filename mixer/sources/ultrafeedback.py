"""UltraFeedback binarized preference pairs (Parquet ``train_prefs``), see SOURCES.md 3.1.

Reads HuggingFaceH4/ultrafeedback_binarized (``data/train_prefs-00000-of-00001.parquet``) and
allenai/ultrafeedback_binarized_cleaned, which has the same columns plus ``source``. Each row holds
``chosen`` and ``rejected`` as full conversations (``[user, assistant]``: both repeat the prompt), so
the prompt turns are ``chosen[:-1]`` and the two responses are the last message of each list. The
``prompt`` column is read and checked to be a string but not used to build messages: ``chosen``
already carries the prompt turns with their roles (and a system turn where there is one).

Rows the source's own construction makes useless for DPO are dropped (stage ``read``), never raised:

- ``prompt_mismatch``: ``rejected[:-1] != chosen[:-1]``, so the two responses answer different
  prompts;
- ``placeholder_response``: a response that is the literal ``"N/A"`` the binarization writes when
  a prompt had fewer than two completions. It is not a model answer, so a pair built on it teaches
  nothing true about preference. Empty or whitespace-only responses are *not* dropped here: the
  pipeline's empty-turn rule handles them (and counts them) the same way as for every other source;
- ``chosen_equals_rejected``: both responses are the same text (compared ignoring surrounding
  whitespace, since the pipeline strips turns later and they would then be identical);
- ``tie``: ``score_chosen == score_rejected`` (row 0 of the real file is 8.5 vs 8.5), with option
  ``drop_ties`` (default true): the "chosen" side of a tie was picked arbitrarily.

The two ratings (the ``overall_score`` of each completion, 1-10, judged by GPT-4) go on with the pair as
``score_chosen``/``score_rejected``: ``mixer train rm`` derives Llama 2's margin from their gap, so a
build must keep them.

Texts are kept exactly as published; normalisation happens later in the pipeline. The id is
``ultrafeedback_<prompt_id>``; ``prompt_id`` is a hash of the prompt, so a prompt that appears in two
rows gives two records with the same id (the pipeline's prompt dedup keeps one of them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.core.errors import InputError, Location, RecordError
from mixer.core.records import ROLES, Dropped, Message, Record, make_pair, msg
from mixer.readers.base import RawItem
from mixer.readers.tabular import read_parquet
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list, require_str

DATASET = "ultrafeedback"
#: the response text the binarization writes when there was no second completion
PLACEHOLDER = "N/A"


@dataclass(frozen=True)
class UltraFeedbackOptions:
    #: drop pairs whose two responses got the same score (the preference between them is arbitrary)
    drop_ties: bool = True


def _messages(raw: dict[str, Any], key: str) -> list[Message]:
    """A ``list<{content, role}>`` column as canonical messages; names the field and item when malformed."""
    items = require_list(raw, key)
    if not items:
        raise RecordError(f"field {key!r} is an empty list; expected the prompt turns and a response")
    out: list[Message] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RecordError(f"field {key!r} item {i} must be an object with 'role' and 'content', "
                              f"found {type(item).__name__}")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise RecordError(f"field {key!r} item {i}: 'role' must be one of {list(ROLES)}, found {role!r}")
        if not isinstance(content, str):
            raise RecordError(f"field {key!r} item {i}: 'content' must be a string, "
                              f"found {type(content).__name__}")
        out.append(msg(role, content))
    if out[-1]["role"] != "assistant":
        raise RecordError(f"field {key!r}: the last message must be the assistant response, "
                          f"found role {out[-1]['role']!r}")
    return out


def _score(raw: dict[str, Any], key: str) -> float:
    if key not in raw:
        raise RecordError(f"missing required field {key!r} (fields present: {sorted(raw)})")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"field {key!r} must be a number, found {type(value).__name__}")
    return float(value)


@register
class UltraFeedback(Adapter):
    name = "ultrafeedback"
    kind = "preference"
    description = ("UltraFeedback binarized preference Parquet (train_prefs; H4 or allenai cleaned): "
                   "prompt_id, chosen, rejected, score_chosen, score_rejected")
    license = "MIT"
    columns = ("prompt", "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected")
    Options = UltraFeedbackOptions

    @classmethod
    def score_scale(cls, options: Any) -> str | None:
        return "UltraFeedback overall rating of each reply, 1-10 (GPT-4 as judge)"

    def read_file(self, path: Path) -> Iterator[RawItem]:
        """Read the fixed columns plus ``source`` when the file has it (the allenai cleaned variant).

        ``columns`` is a class attribute shared by both variants, so the optional column is decided
        per file from the Parquet schema rather than listed there (listing it would make the H4 file,
        which lacks it, fail the reader's missing-column check).
        """
        import pyarrow.parquet as pq

        if not path.exists():
            raise InputError(str(path), "file not found")
        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as e:  # pyarrow raises several types for a bad footer
            raise InputError(str(path), f"not a readable Parquet file: {e}") from None
        columns = list(self.columns or ())
        if "source" in names:
            columns.append("source")
        return read_parquet(path, columns)

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        prompt_id = require_str(raw, "prompt_id")
        if not prompt_id:
            raise RecordError("field 'prompt_id' is empty")
        require_str(raw, "prompt")
        chosen = _messages(raw, "chosen")
        rejected = _messages(raw, "rejected")
        score_chosen = _score(raw, "score_chosen")
        score_rejected = _score(raw, "score_rejected")
        source = raw.get("source")
        if source is not None and not isinstance(source, str):
            raise RecordError(f"field 'source' must be a string, found {type(source).__name__}")

        prompt = chosen[:-1]
        if not prompt:
            raise RecordError("field 'chosen' holds only the response; expected the prompt turns before it")
        if prompt[-1]["role"] != "user":
            raise RecordError(f"field 'chosen': the turn before the response must be a user turn, "
                              f"found role {prompt[-1]['role']!r}")
        record_id = f"{DATASET}_{prompt_id}"
        extra = {"source": source} if source is not None else {}

        def drop(reason: str, detail: str) -> Dropped:
            return Dropped(reason=reason, dataset=DATASET, id=record_id, detail=detail, stage="read", extra=extra)

        if rejected[:-1] != prompt:
            yield drop("prompt_mismatch", "chosen[:-1] and rejected[:-1] differ: the responses answer different "
                                          "prompts")
            return
        chosen_text, rejected_text = chosen[-1]["content"], rejected[-1]["content"]
        placeholders = [side for side, text in (("chosen", chosen_text), ("rejected", rejected_text))
                        if text.strip() == PLACEHOLDER]
        if placeholders:
            sides = " and ".join(placeholders)
            yield drop("placeholder_response", f"{sides} response is the {PLACEHOLDER!r} placeholder")
            return
        if chosen_text.strip() == rejected_text.strip():
            yield drop("chosen_equals_rejected", "the chosen and rejected responses are the same text")
            return
        if self.options.drop_ties and score_chosen == score_rejected:
            yield drop("tie", f"score_chosen {score_chosen:g} == score_rejected {score_rejected:g}")
            return
        yield make_pair(DATASET, record_id, [*prompt, chosen[-1]], [msg("assistant", rejected_text)],
                        {"score_chosen": score_chosen, "score_rejected": score_rejected})
