"""Per-unit statistics are values that add up (issue 11): parts of a source read apart, then summed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mixer.core.stats import FileInfo, SourceRead, SourceStats


def _part(files: list[FileInfo], raw: int, dropped: dict[str, int], name: str = "cot") -> SourceStats:
    return SourceStats(name=name, adapter="cot", license="Apache-2.0", take=10, repeat=1, files=files,
                       raw_records=raw, records_in=raw, dropped=Counter(dropped), normalised=Counter(nfc=raw))


def test_parts_of_one_source_add_up_to_the_whole_with_each_file_listed_once() -> None:
    a, b = FileInfo("a.jsonl", 10, "x"), FileInfo("b.jsonl", 20, "y")
    total = _part([a], 5, {"llm_mention": 1}) + _part([a], 7, {"llm_mention": 2, "bad_turn_order": 1}) \
        + _part([b], 3, {})
    assert total.files == [a, b]
    assert (total.raw_records, total.records_in) == (15, 15)
    assert total.dropped == Counter(llm_mention=3, bad_turn_order=1)
    assert total.normalised == Counter(nfc=15)
    assert (total.name, total.take, total.license) == ("cot", 10, "Apache-2.0")


def test_stats_of_different_sources_do_not_add() -> None:
    with pytest.raises(ValueError, match="flan_v2"):
        _part([], 1, {}) + _part([], 1, {}, name="flan_v2")


def test_source_reads_add_in_part_order() -> None:
    first = SourceRead(_part([], 2, {"x": 1}), [Path("d0.arrow")], [Path("p0.arrow")], {"seed"})
    second = SourceRead(_part([], 3, {"x": 1}), [Path("d1.arrow")], [Path("p1.arrow")], {"tokenizer"})
    total = first + second
    assert total.drops == [Path("d0.arrow"), Path("d1.arrow")]
    assert total.candidates == [Path("p0.arrow"), Path("p1.arrow")]
    assert total.used == {"seed", "tokenizer"} and total.stats.raw_records == 5
