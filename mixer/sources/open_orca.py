"""Open-Orca GPT-4 completions (``1M-GPT4-Augmented.parquet``), see SOURCES.md 2.9."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from mixer.core.errors import Location, RecordError
from mixer.core.records import Message, Record, make_record, msg
from mixer.sources import register
from mixer.sources._columns import ascii_present, clean_turns, is_text, text_lengths, within_size_bound
from mixer.sources.base import Adapter, require_dict, require_str


@register
class OpenOrca(Adapter):
    name = "open_orca"
    description = "OpenOrca Parquet: columns id, system_prompt, question, response"
    license = "MIT"
    columns = ("id", "system_prompt", "question", "response")

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        raw = require_dict(raw)
        raw_id = require_str(raw, "id")
        if not raw_id:
            raise RecordError("field 'id' is empty")
        system_prompt = require_str(raw, "system_prompt", allow_none=True)
        question = require_str(raw, "question")
        response = require_str(raw, "response")
        # Tulu writes an empty system message when system_prompt is ""; an empty system turn
        # carries nothing and only changes the chat template's output, so we leave it out.
        messages: list[Message] = [msg("system", system_prompt)] if system_prompt else []
        messages += [msg("user", question), msg("assistant", response)]
        yield make_record("open_orca", f"open_orca_{raw_id}", messages)

    def convert_columns(self, batch: pa.RecordBatch) -> list[Record | None] | None:
        """``convert`` on the batch's columns for the rows it keeps as they are (``Adapter.convert_columns``)."""
        ids, system, question, response = (batch.column(c) for c in self.columns)
        if not (is_text(ids) and is_text(question) and is_text(response)
                and (is_text(system) or pa.types.is_null(system.type))):
            return None
        lengths = text_lengths(question) + text_lengths(response)
        no_system = np.asarray(system.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if is_text(system):
            lengths += text_lengths(system)
            no_system |= text_lengths(system) == 0
            system_ok = no_system | clean_turns(system)
        else:
            system_ok = no_system
        ok = (ascii_present(ids) & (text_lengths(ids) > 0) & clean_turns(question) & clean_turns(response)
              & system_ok & within_size_bound(lengths))
        out: list[Record | None] = []
        for keep, raw_id, sys_text, q, a in zip(ok.tolist(), ids.to_pylist(), system.to_pylist(),
                                                question.to_pylist(), response.to_pylist(), strict=True):
            if not keep:
                out.append(None)
                continue
            messages: list[Message] = [msg("system", sys_text)] if sys_text else []
            messages += [msg("user", q), msg("assistant", a)]
            out.append(make_record("open_orca", f"open_orca_{raw_id}", messages))
        return out
