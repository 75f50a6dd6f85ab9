"""Tables: Parquet (row batches, only the needed columns, whole or one row range), XLSX (the first
sheet, as Tulu reads it) and CSV."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mixer.core.errors import InputError, Location
from mixer.readers.base import READ_ERRORS, FilePart, ParseFailure, RawItem, check_not_compressed, open_bytes

if TYPE_CHECKING:
    import pyarrow as pa


def read_parquet(
    path: Path, columns: Sequence[str] | None = None, batch_size: int = 8192, part: FilePart | None = None
) -> Iterator[RawItem]:
    """Parquet in record batches, only the needed columns (and with ``part``, only the row groups
    that hold its rows); rows become dicts of plain Python values."""
    for first, batch in read_parquet_batches(path, columns, batch_size, part):
        for i, item in enumerate(batch.to_pylist(), start=first):
            yield RawItem(item, Location(str(path), record=i))


def read_parquet_batches(
    path: Path, columns: Sequence[str] | None = None, batch_size: int = 8192, part: FilePart | None = None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The Arrow record batches ``read_parquet`` turns into dicts, each with the file ordinal of its
    first row: for adapters that convert whole columns at once (``Adapter.convert_columns``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad footer
        check_not_compressed(path, "parquet")
        raise InputError(str(path), f"not a readable Parquet file: {e}") from None
    available = pf.schema_arrow.names
    if columns is not None:
        missing = [c for c in columns if c not in available]
        if missing:
            raise InputError(str(path), f"missing column(s) {missing}; the file has {available}")
    meta = pf.metadata
    if meta.num_rows == 0:  # as an empty JSONL file: an export that failed, not a source of no records
        raise InputError(str(path), "the file has no rows: expected records")
    start, stop = part.bounds(meta.num_rows) if part is not None else (0, meta.num_rows)
    groups, row = [], 0
    first = None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row + n > start and row < stop:
            groups.append(g)
            first = row if first is None else first
        row += n
    if not groups:
        return
    row = first
    batches = pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=list(columns) if columns else None)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as e:
            # a damaged data page: the footer read fine, so this surfaces only here, mid-file
            raise InputError(Location(str(path), record=row),
                             f"corrupt Parquet data at or after this row ({type(e).__name__}: {e}); "
                             "the file is damaged: download it again") from None
        if batch is None:
            return
        lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
        if lo < hi:
            yield row + lo, batch.slice(lo, hi - lo)
        row += batch.num_rows


#: what a damaged workbook raises while its sheets are read: a bad zip entry, cut or invalid XML (ElementTree's
#: and lxml's errors are SyntaxErrors), and what any damaged file raises (a corrupt deflate stream, ...)
_DAMAGED_XLSX = (zipfile.BadZipFile, SyntaxError, *READ_ERRORS)


def read_xlsx(path: Path) -> Iterator[RawItem]:
    """First sheet, as Tulu's ``pandas.read_excel`` reads it; the header row names the fields; empty
    cells become None.

    A workbook with data on any other sheet is an error naming those sheets: reading the first sheet
    alone would drop their rows without a word, and a notes sheet placed first would otherwise surface
    only as a confusing "missing column" error.
    """
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise InputError(str(path), f"not a readable .xlsx workbook: {e}") from None
    try:
        others = [ws.title for ws in wb.worksheets[1:]
                  if any(any(v is not None for v in row) for row in ws.iter_rows(values_only=True))]
        if others:
            listed = ", ".join(repr(t) for t in others)
            raise InputError(str(path), f"the workbook has data on sheets other than the first ({listed}); only the "
                             f"first sheet ({wb.worksheets[0].title!r}) is read, as Tulu reads it: keep the records "
                             "on the first sheet and move or delete the others")
        rows = wb.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise InputError(str(path), "workbook is empty: expected a header row")
        names = [str(h).strip() if h is not None else "" for h in header]
        _check_header(path, names)
        ordinal = 0
        for lineno, values in enumerate(rows, start=2):
            if all(v is None for v in values):
                continue
            yield RawItem(dict(zip(names, values, strict=False)),
                          Location(str(path), line=lineno, record=ordinal))
            ordinal += 1
        if ordinal == 0:
            raise InputError(str(path), "the first sheet has a header row but no records below it")
    except _DAMAGED_XLSX as e:
        # read_only sheets are parsed as they are walked: a damaged sheet inside an intact zip shows only here
        raise InputError(str(path), f"damaged .xlsx workbook ({type(e).__name__}: {e}): save it again "
                         "from the spreadsheet program, or download it again") from None
    finally:
        wb.close()


def _check_header(path: Path, names: list[str]) -> None:
    """A column name given twice is an error: a row read as a dict keeps one of the two cells and the
    other would be lost without a word."""
    seen: set[str] = set()
    twice = [n for n in names if n and (n in seen or seen.add(n))]
    if twice:
        raise InputError(Location(str(path), line=1),
                         f"the header names column(s) {sorted(set(twice))} more than once: rename or remove "
                         "the duplicates, or only one of their cells would be read")


def read_csv(path: Path) -> Iterator[RawItem]:
    """UTF-8 (plain or gzipped) with or without the byte-order mark Excel writes ("CSV UTF-8"): a BOM is
    not part of the first column's name.

    A row with more cells than the header (most often an unquoted comma inside a cell, which cuts the
    text there) becomes a ``ParseFailure`` rather than losing the text after it without a word; a file
    without a record (empty, or a header alone) is an error, as an empty JSONL file is.
    """
    try:
        with io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise InputError(str(path), "file is empty: expected a header row")
            _check_header(path, list(reader.fieldnames))
            ordinal = -1
            for ordinal, row in enumerate(reader):  # read after the loop: still -1 when there was no row
                location = Location(str(path), line=reader.line_num, record=ordinal)
                extra = row.pop(None, None)  # DictReader's key for the cells past the header's columns
                if extra is not None:
                    cells = [*(v if v is not None else "" for v in row.values()), *extra]
                    yield RawItem(ParseFailure(f"{len(cells)} cells, but the header has {len(reader.fieldnames)} "
                                               "columns (an unquoted comma in a cell?)", ",".join(cells)), location)
                    continue
                yield RawItem(row, location)
            if ordinal < 0:
                raise InputError(str(path), "the file has a header row but no records below it")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8: {e}") from None
    except csv.Error as e:
        raise InputError(str(path), f"not a readable CSV file: {e}") from None
    except READ_ERRORS as e:  # a .csv.gz that is not gzip, is cut short or damaged
        raise InputError(str(path), f"cannot read file: {e}") from None
