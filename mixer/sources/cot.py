"""FLAN v2 chain-of-thought exports (``cot_zsopt.jsonl``, ``cot_fsopt.jsonl``), see SOURCES.md 2.2."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from mixer.core.errors import Location
from mixer.core.records import Record
from mixer.sources import register
from mixer.sources.base import Adapter
from mixer.sources.flan_v2 import inputs_targets_record


def cot_id_prefix(path: str) -> str:
    """The id prefix for records of one CoT file, so ids stay unique across the zs and fs files.

    Tulu numbers both files ``cot_<i>`` and so repeats ids; we keep the file in the id, shortened to
    ``cot_zs``/``cot_fs`` for the two published files (``cot_cot_zsopt`` would stutter).
    """
    name = PurePath(path).name
    if name.endswith(".gz"):
        name = name[:-3]
    stem = PurePath(name).stem
    if "zs" in stem:
        return "cot_zs"
    if "fs" in stem:
        return "cot_fs"
    return f"cot_{stem}"


@register
class Cot(Adapter):
    name = "cot"
    description = "FLAN v2 CoT JSON Lines (cot_zsopt, cot_fsopt): {inputs, targets}; extra keys ignored"
    license = "Apache-2.0"

    def convert(self, raw: Any, location: Location) -> Iterable[Record]:
        yield inputs_targets_record(raw, "cot", f"{cot_id_prefix(location.path)}_{location.record}")
