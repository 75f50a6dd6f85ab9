"""Damaged raw files: bytes changed inside a file whose outline still reads (a Parquet footer intact over a
damaged data page) are an ``InputError`` naming the file and where, never a library traceback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.core.errors import InputError
from mixer.readers.tabular import read_parquet

ROW = {"idx": "alpaca_1", "conversations": [{"from": "human", "value": "h" * 50}, {"from": "gpt", "value": "g" * 50}]}


def test_damaged_parquet_data_pages_are_input_errors_naming_the_file(tmp_path: Path) -> None:
    source = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pylist([ROW] * 2000), source, compression="snappy")
    data = source.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    pages_end = len(data) - 8 - footer
    damaged = tmp_path / "w.parquet"
    outcomes = {"read": 0, "footer": 0, "page": 0}
    for offset in range(4, pages_end, max(1, pages_end // 60)):
        damaged.write_bytes(data[:offset] + b"\xff\x00\x13\x99\xff\xff\x7f\x01" + data[offset + 8:])
        try:
            rows = sum(1 for _ in read_parquet(damaged, ("idx", "conversations")))
        except InputError as e:
            assert str(e).startswith(f"{damaged}"), e
            if "corrupt Parquet data at or after this row" in str(e):
                assert str(e).startswith(f"{damaged}, record "), e
                outcomes["page"] += 1
            else:
                outcomes["footer"] += 1
            continue
        assert rows == 2000  # bytes inside a string's value: no checksum to tell, the rows still read
        outcomes["read"] += 1
    assert outcomes["page"] > 0, outcomes  # the damage reached a data page past the footer's check


def _damaged_workbook(tmp_path: Path, change: object) -> Path:
    """A workbook whose first sheet's XML is replaced by ``change(xml)`` inside an otherwise intact zip."""
    import zipfile

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Prompt", "Output"])
    for i in range(50):
        ws.append([f"question {i}", f"answer {i}"])
    whole = tmp_path / "whole.xlsx"
    wb.save(whole)
    damaged = tmp_path / "h.xlsx"
    with zipfile.ZipFile(whole) as zin, zipfile.ZipFile(damaged, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, change(data) if name == "xl/worksheets/sheet1.xml" else data)  # type: ignore[operator]
    return damaged


@pytest.mark.parametrize("change", [lambda xml: xml[: len(xml) // 2], lambda xml: xml.replace(b"<row ", b"<<row ", 3)],
                         ids=["sheet-cut-short", "sheet-invalid-xml"])
def test_damaged_xlsx_sheet_is_an_input_error_naming_the_file(tmp_path: Path, change: object) -> None:
    from mixer.readers.tabular import read_xlsx

    damaged = _damaged_workbook(tmp_path, change)
    with pytest.raises(InputError, match=rf"^{damaged}: damaged \.xlsx workbook \(ParseError"):
        list(read_xlsx(damaged))


@pytest.mark.parametrize("name", ["f.jsonl.gz", "a.json.gz", "h.csv.gz"])
def test_damaged_gzip_stream_is_an_input_error_naming_the_file(tmp_path: Path, name: str) -> None:
    """Bytes changed inside a gzip file: a damaged deflate block raises ``zlib.error``, which is no OSError."""
    import gzip
    import hashlib
    import json

    from mixer.readers.raw import read_raw

    texts = [hashlib.sha256(str(i).encode()).hexdigest() * (1 + i % 3) for i in range(3000)]
    if name.endswith(".jsonl.gz"):
        plain = "".join(json.dumps({"inputs": t, "targets": "a"}) + "\n" for t in texts)
    elif name.endswith(".json.gz"):
        plain = json.dumps([{"inputs": t} for t in texts])
    else:
        plain = "Prompt,Output\n" + "".join(f"{t},a\n" for t in texts)
    data = gzip.compress(plain.encode(), mtime=0)
    path = tmp_path / name
    deflate_errors = 0
    for offset in range(20, len(data) - 10, len(data) // 40):
        path.write_bytes(data[:offset] + b"\xff\xfe\x00\x13" + data[offset + 4:])
        try:
            list(read_raw(path))
        except InputError as e:
            assert str(e).startswith(f"{path}: cannot read file: "), e
            deflate_errors += "while decompressing data" in str(e)
    assert deflate_errors > 0
