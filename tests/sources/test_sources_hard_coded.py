"""Hard-coded identity examples: the bundled workbook, empty cells, CSV/JSONL variants."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import read_all

from mixer.core.errors import Location, RecordError
from mixer.core.records import Record
from mixer.sources import SourceContext, get_adapter
from mixer.sources.base import Adapter

RAW = Path(__file__).resolve().parents[2] / "samples" / "raw_train" / "hard_coded"


def make_adapter() -> Adapter:
    cls = get_adapter("hard_coded")
    return cls(cls.Options(), SourceContext("hard_coded", 42))


def convert_one(raw: object, record: int = 0) -> Record:
    location = Location("hard_coded_examples.xlsx", line=record + 2, record=record)
    (out,) = list(make_adapter().convert(raw, location))
    return out


def read_records(path: Path) -> list[Record]:
    return read_all(make_adapter(), path)


def test_hard_coded_row_becomes_one_user_assistant_exchange() -> None:
    record = convert_one({"Prompt": "Who made you?", "Output": "AI2 did."}, record=3)
    assert record == {
        "dataset": "hard_coded",
        "id": "hard_coded_3",
        "messages": [
            {"role": "user", "content": "Who made you?"},
            {"role": "assistant", "content": "AI2 did."},
        ],
    }


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_hard_coded_empty_cell_raises_record_error_naming_the_column(empty: object) -> None:
    with pytest.raises(RecordError, match="column 'Output' is empty"):
        convert_one({"Prompt": "Who are you?", "Output": empty})


def test_hard_coded_nan_cell_raises_record_error_naming_the_column() -> None:
    with pytest.raises(RecordError, match="column 'Prompt' is empty"):
        convert_one({"Prompt": float("nan"), "Output": "x"})


def test_hard_coded_missing_column_raises_record_error_listing_the_columns() -> None:
    expected = r"missing required column 'Output' \(columns present: \['Prompt', 'Reply'\]\)"
    with pytest.raises(RecordError, match=expected):
        convert_one({"Prompt": "x", "Reply": "y"})


def test_hard_coded_numeric_cell_becomes_text() -> None:
    record = convert_one({"Prompt": "What is 6 times 7?", "Output": 42})
    assert record["messages"][1]["content"] == "42"


def test_hard_coded_bundled_workbook_has_fourteen_identity_rows() -> None:
    records = read_records(RAW / "hard_coded_examples.xlsx")
    assert len(records) == 14
    assert [r["id"] for r in records] == [f"hard_coded_{i}" for i in range(14)]
    answers = [r["messages"][1]["content"] for r in records]
    assert all("AI2" in a or "Allen Institute" in a for a in answers if "camel" not in a)
    assert any("Tülu" in a for a in answers)


def test_hard_coded_accepts_the_same_columns_in_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [{"Prompt": "What is your name?", "Output": "I am Tülu."},
            {"Prompt": "Who built you?", "Output": "Researchers at AI2,\nin Seattle."}]
    csv_path = tmp_path / "hard_coded_examples.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["Prompt", "Output"])
        writer.writeheader()
        writer.writerows(rows)
    jsonl_path = tmp_path / "hard_coded_examples.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    from_csv = read_records(csv_path)
    from_jsonl = read_records(jsonl_path)
    assert from_csv == from_jsonl
    assert from_csv[1]["messages"][1]["content"] == "Researchers at AI2,\nin Seattle."


def test_hard_coded_csv_saved_by_excel_with_a_byte_order_mark_reads_the_same(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM; it must not become part of the first column's name."""
    plain, marked = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_bytes(b"Prompt,Output\r\nWho are you?,I am Tulu.\r\n")
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_records(marked) == read_records(plain)
    assert read_records(marked)[0]["messages"][0]["content"] == "Who are you?"


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def test_hard_coded_workbook_with_data_on_another_sheet_is_an_error_naming_the_sheets(tmp_path: Path) -> None:
    """Only the first sheet is read (as Tulu's pandas.read_excel does); rows elsewhere must not vanish."""
    from mixer.core.errors import InputError

    data = [["Prompt", "Output"], ["Who are you?", "I am Tulu."]]
    extra = _workbook(tmp_path / "extra.xlsx", {"examples": data, "more": [["Prompt", "Output"], ["Hi", "Hello"]]})
    with pytest.raises(InputError, match=r"extra\.xlsx.*other than the first \('more'\).*'examples'"):
        read_records(extra)
    notes_first = _workbook(tmp_path / "notes.xlsx", {"notes": [["written by hand"]], "examples": data})
    with pytest.raises(InputError, match=r"\('examples'\)"):
        read_records(notes_first)
    empty_other = _workbook(tmp_path / "ok.xlsx", {"examples": data, "Sheet2": []})
    assert [r["messages"][0]["content"] for r in read_records(empty_other)] == ["Who are you?"]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_hard_coded_header_naming_a_column_twice_is_an_error_naming_it(tmp_path: Path, suffix: str) -> None:
    """Read as a dict, a row keeps one of two same-named cells: the other's text would be lost unseen."""
    from mixer.core.errors import InputError

    rows = [["Prompt", "Output", "Output"], ["Who are you?", "I am Tulu.", "I am Tülu, by AI2."]]
    path = tmp_path / f"twice{suffix}"
    if suffix == ".xlsx":
        _workbook(path, {"examples": rows})
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
    message = r"line 1: the header names column\(s\) \['Output'\] more than once"
    with pytest.raises(InputError, match=rf"twice\{suffix}, {message}"):
        read_records(path)


def test_hard_coded_csv_row_with_more_cells_than_the_header_is_a_parse_failure(tmp_path: Path) -> None:
    """An unquoted comma cuts the Output there; the row is reported (or, with on_error: skip, dropped and counted)
    instead of keeping "Hello" and losing the rest."""
    from mixer.readers.base import ParseFailure
    from mixer.readers.raw import read_raw

    path = tmp_path / "h.csv"
    path.write_bytes(b"Prompt,Output\nWho are you?,Hello, I am Tulu.\nName?,Tulu\n")
    first, second = list(read_raw(path))
    assert isinstance(first.value, ParseFailure) and str(first.location) == f"{path}, line 2, record 0 (0-based)"
    assert first.value.problem.startswith("3 cells, but the header has 2 columns")
    assert first.value.text == "Who are you?,Hello, I am Tulu."
    assert second.value == {"Prompt": "Name?", "Output": "Tulu"}


def test_hard_coded_empty_csv_is_an_error_like_other_empty_files(tmp_path: Path) -> None:
    from mixer.core.errors import InputError

    path = tmp_path / "h.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"h\.csv: file is empty"):
        read_records(path)
