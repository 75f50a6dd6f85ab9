"""The stage contract (mixer.stages.base): record-level verdicts, one drop sink, rows marked out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mixer.core.records import DROPPED_SCHEMA, Dropped, Record
from mixer.core.stats import SourceStats
from mixer.core.tables import SpillFiles
from mixer.stages.base import (
    Candidates,
    DropSink,
    drop_record,
    dropped_records,
    dropped_table,
    run_record_stages,
)
from mixer.stages.read import CandidateStore


def _record(i: int, text: str = "hello") -> Record:
    return {"dataset": "d", "id": str(i), "messages": [{"role": "user", "content": text},
                                                       {"role": "assistant", "content": f"answer {i}"}]}


class DropOdd:
    name = "drop_odd"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process(self, source: str, records: list[Record], stats: SourceStats) -> list[Record | Dropped]:
        self.seen.extend(r["id"] for r in records)
        return [drop_record(r, "odd", "filter", f"id {r['id']}") if int(r["id"]) % 2 else r for r in records]


def test_each_record_stage_sees_only_the_records_still_in_and_verdicts_keep_input_order() -> None:
    first, second = DropOdd(), DropOdd()
    stats = SourceStats("s", "messages", None, "all", 1)
    out = run_record_stages([first, second], "s", [_record(i) for i in range(5)], stats)
    assert first.seen == ["0", "1", "2", "3", "4"] and second.seen == ["0", "2", "4"]
    assert [r.id if isinstance(r, Dropped) else r["id"] for r in out] == ["0", "1", "2", "3", "4"]
    assert [isinstance(r, Dropped) for r in out] == [False, True, False, True, False]
    assert out[1].reason == "odd" and out[1].stage == "filter" and out[1].detail == "id 1"


def test_the_sink_counts_each_drop_once_and_lists_a_units_drops_in_entry_order(tmp_path: Path) -> None:
    stats = {"s": SourceStats("s", "messages", None, "all", 1)}
    sink = DropSink(stats)
    sink.drop("s", Dropped("late", id="b"), entry=5)
    sink.drop("s", Dropped("early", id="a"), entry=2)
    assert [d.id for d in sink.dropped("s")] == ["a", "b"]
    assert all(d.source == "s" for d in sink.dropped("s"))
    assert stats["s"].dropped == {"late": 1, "early": 1}
    unit = tmp_path / "drops.arrow"  # a read unit's drops file, counted in the stats the unit returned
    with pa.OSFile(str(unit), "wb") as f, pa.ipc.new_file(f, DROPPED_SCHEMA) as w:
        w.write_table(dropped_table("s", [Dropped("already counted", id="c")]))
    sink.add_counted("s", [unit])
    assert stats["s"].dropped == {"late": 1, "early": 1}
    assert [d.id for d in sink.dropped("s")] == ["a", "b", "c"] and sink.total() == 3


def test_the_sink_writes_the_builds_drops_to_arrow_files_in_the_order_they_came(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setattr(DropSink, "COMPACT_ROWS", 4)
    sink = DropSink({"s": SourceStats("s", "messages", None, "all", 1)}, tmp_path / "drops")
    for i in range(10):
        sink.drop("s", Dropped("dup", id=str(i), messages=[{"role": "user", "content": f"q{i}"}],
                               extra={"kept": i} if i % 2 else {}))
    assert len(list((tmp_path / "drops").glob("*.arrow"))) == 2  # two full batches written, two drops held
    parts = sink.parts("s")
    assert [p.num_rows for p in parts] == [4, 4, 2] and sink.total() == 10
    assert all(isinstance(p, SpillFiles) for p in parts)  # the last two too, when asked for
    again = sink.dropped("s")
    assert [d.id for d in again] == [str(i) for i in range(10)] and {d.source for d in again} == {"s"}
    assert again[3].extra == {"kept": 3} and again[2].extra == {} and again[9].messages[0]["content"] == "q9"
    # one file of every drop, in order, from the files and the records held (how a read unit hands them over)
    whole = sink.write("s", tmp_path / "all-drops.arrow")
    assert whole is not None
    written = dropped_records(SpillFiles([whole], DROPPED_SCHEMA).to_table())
    assert [d.id for d in written] == [str(i) for i in range(10)]
    assert sink.write("t", tmp_path / "none.arrow") is None and not (tmp_path / "none.arrow").exists()


def test_candidates_remove_marks_rows_out_and_fills_the_drop_from_the_record(tmp_path: Path) -> None:
    store = CandidateStore(tmp_path / "c.arrow")
    for i in range(4):
        store.add(_record(i, f"question {i}"), 0)
    candidates = Candidates()
    candidates.add("s", SpillFiles([store.close()]))
    sink = DropSink({"s": SourceStats("s", "messages", None, "all", 1)})
    candidates.remove("s", {2: Dropped("near_duplicate", stage="dedup"), 0: Dropped("contaminated:x")}, sink)
    assert candidates.alive["s"].tolist() == [1, 3]
    dropped = sink.dropped("s")
    assert [d.id for d in dropped] == ["0", "2"]  # row order
    assert dropped[1].messages[0]["content"] == "question 2" and dropped[1].dataset == "d"
