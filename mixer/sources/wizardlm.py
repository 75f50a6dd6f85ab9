"""WizardLM Evol-Instruct V2 (``WizardLM_evol_instruct_V2_143k.json`` or its Parquet backup).

See SOURCES.md 2.8. Turns are mapped one by one and never reordered: a conversation that does not
alternate user/assistant (a leading ``gpt`` turn, an odd count) is dropped later by the pipeline's
normaliser, which counts it, rather than being repaired here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources._columns import ascii_present, clean_turns, is_text, text_lengths, within_size_bound
from mixer.sources.base import Adapter, require_dict, require_list, require_str

ROLE_MAP = {"human": "user", "gpt": "assistant"}


@register
class WizardLM(Adapter):
    name = "wizardlm"
    description = ("WizardLM evol-instruct V2 JSON array (or Parquet backup): "
                   "{idx, conversations: [{from: human|gpt, value}]}")
    # The dataset card says MIT; the Tulu V2 card lists "No license provided" for this subset.
    license = "MIT"
    columns = ("idx", "conversations")

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        raw = require_dict(raw)
        record_id = f"wizardlm_{require_str(raw, 'idx')}"
        turns = require_list(raw, "conversations")
        messages: list[Message] = []
        for i, turn in enumerate(turns):
            try:
                turn = require_dict(turn)
                role = require_str(turn, "from")
                text = require_str(turn, "value")
            except RecordError as e:
                raise RecordError(f"conversations[{i}]: {e}") from None
            if role not in ROLE_MAP:
                yield Dropped(reason="unknown_role", dataset="wizardlm", id=record_id,
                              detail=f"role {role!r} in turn {i}", stage="read")
                return
            messages.append(msg(ROLE_MAP[role], text))
        yield make_record("wizardlm", record_id, messages)

    def convert_columns(self, batch: pa.RecordBatch) -> list[Record | None] | None:
        """``convert`` on the batch's columns for the rows it keeps as they are (``Adapter.convert_columns``):
        conversations of human/gpt pairs, in that order, whose every turn is clean."""
        idx, conversations = batch.column("idx"), batch.column("conversations")
        kind = conversations.type
        if not (is_text(idx) and pa.types.is_list(kind) and pa.types.is_struct(kind.value_type)) \
                or conversations.null_count:
            return None
        fields = {kind.value_type.field(i).name: kind.value_type.field(i).type
                  for i in range(kind.value_type.num_fields)}
        if not (is_text(pa.nulls(0, fields.get("from", pa.null()))) and
                is_text(pa.nulls(0, fields.get("value", pa.null())))):
            return None
        turns = pc.list_flatten(conversations)  # the turns of non-null lists, in order
        parents = np.asarray(pc.list_parent_indices(conversations).to_numpy(zero_copy_only=False), dtype=np.int64)
        counts = np.asarray(pc.fill_null(pc.list_value_length(conversations), 0)
                            .to_numpy(zero_copy_only=False), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(len(turns), dtype=np.int64) - starts[parents]
        roles, values = pc.struct_field(turns, "from"), pc.struct_field(turns, "value")
        expected = np.where(position % 2 == 0, "human", "gpt")
        turn_ok = (np.asarray(turns.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                   & _mask_equal(roles, expected) & clean_turns(values))
        bad_turns = np.bincount(parents[~turn_ok], minlength=len(batch))
        chars = np.bincount(parents, weights=text_lengths(values), minlength=len(batch))
        ok = (ascii_present(idx) & conversations.is_valid().to_numpy(zero_copy_only=False)
              & (counts > 0) & (counts % 2 == 0) & (bad_turns == 0) & within_size_bound(chars))
        texts = values.to_pylist()
        out: list[Record | None] = []
        for row, (keep, raw_id) in enumerate(zip(ok.tolist(), idx.to_pylist(), strict=True)):
            if not keep:
                out.append(None)
                continue
            first = int(starts[row])
            messages: list[Message] = [msg("user" if k % 2 == 0 else "assistant", texts[first + k])
                                       for k in range(int(counts[row]))]
            out.append(make_record("wizardlm", f"wizardlm_{raw_id}", messages))
        return out


def _mask_equal(values: pa.Array, expected: np.ndarray) -> np.ndarray:
    """Per element: ``values`` equals ``expected`` (null counting as not equal)."""
    same = pc.equal(values, pa.array(expected, type=values.type))
    return np.asarray(pc.fill_null(same, False).to_numpy(zero_copy_only=False), dtype=bool)
