"""ShareGPT conversations (JSON arrays of ``{"id", "conversations": [{"from", "value"}]}``), SOURCES.md 2.4.

Two ways to use it:

- Tulu V2 reads the pre-split ``sharegpt_html_cleaned_and_split_4096.json``: ids already look like
  ``<orig id>_<start index>`` and the roles are only ``human``/``gpt``. The role mapping follows
  open-instruct's ``convert_sharegpt_data``: human|user -> user, gpt|chatgpt -> assistant; a
  conversation with a ``system`` or ``bing`` turn is dropped; any other role made open-instruct
  raise ``ValueError`` - here it is dropped and counted (``unknown_role``) so one odd record in a
  user's file cannot stop a build.
- With ``split_max_tokens`` set (4096 for Tulu V2) it reads the raw ``sg_90k_part{1,2}_html_cleaned.json``
  and does the split itself, reproducing open-instruct's copy of FastChat's
  ``split_long_conversation.py`` (scripts/data/sft_v1_v2/split_sharegpt_conversations.py) followed by
  its ``filter_invalid_roles``; see ``split_conversation``.

The same adapter serves users' own ShareGPT-format files: ``dataset`` sets the record label and
the id prefix. Licence: the data is listed Apache-2.0, but the assistant turns are ChatGPT outputs
and OpenAI's terms of use apply to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mixer.core.errors import Location, RecipeError, RecordError
from mixer.core.records import Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict, require_list, require_str

#: ShareGPT speaker -> canonical role (open-instruct convert_sharegpt_data)
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant"}
#: speakers whose presence drops the whole conversation (open-instruct: "invalid example")
DROP_ROLES = ("system", "bing")
#: FastChat adds 6 tokens per message for the role header and separators. The original counted
#: with the slow llama tokenizer (``oobabooga/llama-tokenizer``), whose ``input_ids`` also include
#: a BOS token; we count with the recipe's tokenizer, so chunk boundaries can differ slightly.
MESSAGE_OVERHEAD_TOKENS = 6


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


@dataclass(frozen=True)
class Chunk:
    """A slice ``turns[start:end]`` of one conversation produced by the split."""

    start: int
    end: int


@dataclass(frozen=True)
class SplitResult:
    chunks: list[Chunk]
    #: start indices of human/gpt pairs longer than the maximum on their own (skipped)
    oversized_pairs: list[int]
    #: start index of a final pair lost because it overflowed the chunk before it (FastChat quirk)
    lost_tail_pair: int | None


def split_conversation(lengths: list[int], max_tokens: int) -> SplitResult:
    """Split a conversation into chunks of whole human/gpt pairs within ``max_tokens``.

    ``lengths`` are per-message lengths (tokens + overhead). The rule is FastChat's as patched
    by open-instruct, reproduced exactly because the Tulu V2 file was made with it:

    - an odd last message is cut off; fewer than two messages give no chunk;
    - pairs are added while the running sum stays within ``max_tokens``; when the next pair
      would overflow, the chunk so far is emitted and a new one starts at that pair;
    - a pair that alone exceeds the maximum is skipped (its length still counts towards the
      running sum, so the following pair also flushes an *empty* chunk, which is dropped here
      as ``filter_invalid_roles`` drops it there);
    - the last chunk is emitted only when the final pair fits; a final pair that overflows is
      silently lost in the original. We report it in ``lost_tail_pair`` so it can be counted.
    """
    n = len(lengths) // 2 * 2
    chunks: list[Chunk] = []
    oversized: list[int] = []
    lost_tail: int | None = None
    if n < 2:
        return SplitResult(chunks, oversized, lost_tail)
    start = 0
    running = 0
    for i in range(0, n, 2):
        pair = lengths[i] + lengths[i + 1]
        if running + pair > max_tokens:
            if start < i:
                chunks.append(Chunk(start, i))
            if pair > max_tokens:
                oversized.append(i)
                start = i + 2
            else:
                start = i
                if i == n - 2:
                    lost_tail = i
            running = 0
        elif i == n - 2:
            chunks.append(Chunk(start, i + 2))
        running += pair
    return SplitResult(chunks, oversized, lost_tail)


def _read_turns(raw: dict[str, Any]) -> list[Turn]:
    turns: list[Turn] = []
    for j, turn in enumerate(require_list(raw, "conversations")):
        if not isinstance(turn, dict):
            raise RecordError(f"conversations[{j}] must be a JSON object, found {type(turn).__name__}")
        try:
            turns.append(Turn(require_str(turn, "from"), require_str(turn, "value")))
        except RecordError as e:
            raise RecordError(f"conversations[{j}]: {e}") from None
    return turns


def _record_id(raw: dict[str, Any], location: Location) -> str:
    """The conversation's own id (str or int in users' files), else its ordinal in the file."""
    value = raw.get("id")
    if value is None:
        return str(location.record)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"field 'id' must be a string or integer, found {type(value).__name__}")


@dataclass(frozen=True)
class ShareGPTOptions:
    #: label written to each record's ``dataset`` and used as the id prefix
    dataset: str = "sharegpt"
    #: split raw conversations to at most this many tokens (Tulu V2: 4096); None reads pre-split files
    split_max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.split_max_tokens is not None and self.split_max_tokens <= 0:
            raise RecipeError(f"option split_max_tokens must be positive, found {self.split_max_tokens}")


@register
class ShareGPT(Adapter):
    name = "sharegpt"
    description = (
        "ShareGPT JSON array {id, conversations:[{from, value}]}; optionally split to N tokens "
        "(ChatGPT outputs: OpenAI terms apply)"
    )
    license = "Apache-2.0"
    Options = ShareGPTOptions

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        conv_id = _record_id(raw, location)
        turns = _read_turns(raw)
        if self.options.split_max_tokens is None:
            yield self._convert_turns(conv_id, turns)
        else:
            yield from self._split(conv_id, turns)

    def _convert_turns(self, conv_id: str, turns: list[Turn]) -> Record | Dropped:
        """Map roles as open-instruct does; the first offending speaker decides the drop reason."""
        dataset = self.options.dataset
        rid = f"{dataset}_{conv_id}"
        messages: list[Message] = []
        for turn in turns:
            if turn.speaker in ROLE_MAP:
                messages.append(msg(ROLE_MAP[turn.speaker], turn.text))
            elif turn.speaker in DROP_ROLES:
                return Dropped(reason="system_or_bing_turn", dataset=dataset, id=rid,
                               detail=f"conversation has a {turn.speaker!r} turn")
            else:
                return Dropped(reason="unknown_role", dataset=dataset, id=rid,
                               detail=f"unknown speaker {turn.speaker!r}")
        if not messages:
            return Dropped(reason="empty_conversation", dataset=dataset, id=rid,
                           detail="'conversations' is empty")
        return make_record(dataset, rid, messages)

    def _split(self, conv_id: str, turns: list[Turn]) -> Iterator[Record | Dropped]:
        dataset = self.options.dataset
        counter = self.context.token_counter()
        lengths = [n + MESSAGE_OVERHEAD_TOKENS for n in counter.count_texts([t.text for t in turns])]
        result = split_conversation(lengths, self.options.split_max_tokens)
        if len(turns) < 2:
            yield Dropped(reason="no_complete_turn_pair", dataset=dataset, id=f"{dataset}_{conv_id}",
                          detail=f"{len(turns)} message(s): nothing to split")
        for start in result.oversized_pairs:
            yield Dropped(reason="turn_pair_too_long", dataset=dataset, id=f"{dataset}_{conv_id}_{start}",
                          detail=f"messages {start}-{start + 1} are {lengths[start] + lengths[start + 1]} "
                                 f"tokens with overhead, over {self.options.split_max_tokens}")
        if result.lost_tail_pair is not None:
            start = result.lost_tail_pair
            yield Dropped(reason="split_tail_pair_lost", dataset=dataset, id=f"{dataset}_{conv_id}_{start}",
                          detail="the last pair overflowed the chunk before it and FastChat's split "
                                 "never emits it (reproduced for fidelity)")
        for chunk in result.chunks:
            rid = f"{dataset}_{conv_id}_{chunk.start}"
            part = turns[chunk.start:chunk.end]
            speakers = [t.speaker for t in part]
            # open-instruct filter_invalid_roles: strictly human, gpt, human, gpt, ...
            if any(s != ("human", "gpt")[j % 2] for j, s in enumerate(speakers)):
                yield Dropped(reason="invalid_roles_after_split", dataset=dataset, id=rid,
                              detail=f"speakers {speakers[:8]}{'...' if len(speakers) > 8 else ''}")
                continue
            yield make_record(dataset, rid, [msg(ROLE_MAP[t.speaker], t.text) for t in part])
