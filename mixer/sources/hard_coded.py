"""Hand-written identity examples (``hard_coded_examples.xlsx``), see SOURCES.md 2.11.

The recipe repeats these (``repeat: 10``, as Tulu does); the adapter reads each row once. The same
``Prompt``/``Output`` columns are accepted in .csv and .jsonl so users can edit the examples
without a spreadsheet program.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record, make_record, msg
from mixer.sources import register
from mixer.sources.base import Adapter, require_dict


def cell_text(raw: dict[str, Any], column: str) -> str:
    """The text of one spreadsheet cell; empty cells are errors rather than ``NaN``/``None`` text.

    Tulu reads the sheet with pandas, where an empty cell becomes ``NaN`` and ends up as invalid
    JSON; here it is reported. Numeric cells (a spreadsheet may store "42" as a number) become text.
    """
    if column not in raw:
        raise RecordError(f"missing required column {column!r} (columns present: {sorted(raw)})")
    value = raw[column]
    if isinstance(value, bool):
        raise RecordError(f"column {column!r} must be text, found a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise RecordError(f"column {column!r} is empty (NaN)")
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"column {column!r} is empty")
    if not isinstance(value, str):
        raise RecordError(f"column {column!r} must be text, found {type(value).__name__}")
    return value


@register
class HardCoded(Adapter):
    name = "hard_coded"
    description = "Tulu hard-coded identity examples: .xlsx (or .csv/.jsonl) with columns Prompt, Output"
    license = "ODC-BY"

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        raw = require_dict(raw)
        prompt = cell_text(raw, "Prompt")
        output = cell_text(raw, "Output")
        yield make_record(
            "hard_coded",
            f"hard_coded_{location.record}",
            [msg("user", prompt), msg("assistant", output)],
        )
