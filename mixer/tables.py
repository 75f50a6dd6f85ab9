"""Arrow helpers for the build's intermediate files: candidate and selected records live in Arrow
IPC files in the build's work folder and are read back a batch at a time, never as a whole.

Why not memory-map them: every page a gather touches stays mapped and counts as the process's
resident memory until the map is closed, so a build that samples 30k rows scattered over a 1M-row
source ended up "holding" the whole source (5 GiB peak at full Tulu V2 size). Reading the needed
columns of one batch at a time (``IpcReadOptions.included_fields`` reads only those buffers) keeps
memory bounded by the batch size, and from the page cache it is about as fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.workstore import IpcWriter, RemotePath, WorkPath, open_input


def list_sums(lists: pa.Array, values: np.ndarray) -> np.ndarray:
    """Per list of ``lists`` (e.g. each record's messages), the sum of ``values``, which holds one
    number per element of ``pc.list_flatten(lists)`` (e.g. each message's text length)."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.cumsum(lengths)
    csum = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return csum[ends] - csum[ends - lengths]


class SpillFiles:
    """The rows of one or more Arrow IPC files (same schema), in file order, read on demand.

    The files are this build's own intermediate files; a build keeps them in its work folder (local,
    or remote: ``mixer.workstore``) and deletes them with it.
    """

    def __init__(self, paths: Sequence[WorkPath | str], schema: pa.Schema | None = None) -> None:
        self.paths: list[WorkPath] = [p if isinstance(p, RemotePath) else Path(p) for p in paths]
        if not self.paths and schema is None:
            raise ValueError("SpillFiles needs at least one file or a schema")
        self.schema = schema if schema is not None else self._reader(self.paths[0]).schema
        #: (file, batch) of every batch, in row order, and the global row where each starts
        self._batches: list[tuple[int, int]] = []
        rows = [0]
        probe = [0]  # the cheapest way to learn batch sizes: read one column's buffers
        for f, path in enumerate(self.paths):
            reader = self._reader(path, probe)
            for b in range(reader.num_record_batches):
                self._batches.append((f, b))
                rows.append(rows[-1] + reader.get_batch(b).num_rows)
        self._offsets = np.asarray(rows, dtype=np.int64)

    @staticmethod
    def _reader(path: WorkPath, fields: Sequence[int] | None = None) -> pa.ipc.RecordBatchFileReader:
        options = pa.ipc.IpcReadOptions(included_fields=list(fields)) if fields is not None else None
        return pa.ipc.open_file(open_input(path), options=options)

    @property
    def num_rows(self) -> int:
        return int(self._offsets[-1])

    def _fields(self, columns: Sequence[str] | None) -> tuple[list[int] | None, pa.Schema]:
        if columns is None:
            return None, self.schema
        idx = [self.schema.get_field_index(c) for c in columns]
        if any(i < 0 for i in idx):
            raise KeyError(f"no column(s) {[c for c, i in zip(columns, idx, strict=True) if i < 0]}")
        # included_fields returns columns in schema order; callers get them in that order too
        order = sorted(idx)
        return order, pa.schema([self.schema.field(i) for i in order])

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every batch, in row order, with only ``columns`` read (in schema order)."""
        fields, _ = self._fields(columns)
        for path in self.paths:
            reader = self._reader(path, fields)
            for b in range(reader.num_record_batches):
                yield reader.get_batch(b)

    def column(self, name: str) -> pa.ChunkedArray:
        """One whole column (only its buffers are read)."""
        _, schema = self._fields([name])
        chunks = [batch.column(0) for batch in self.iter_batches([name])]
        return pa.chunked_array(chunks, type=schema.field(0).type)

    def take(self, rows: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows by global row number, in the order given, with ``columns`` (in schema order); one chunk
        per column."""
        fields, schema = self._fields(columns)
        index = np.asarray(rows, dtype=np.int64)
        if len(index) == 0:
            return schema.empty_table()
        readers: dict[int, pa.ipc.RecordBatchFileReader] = {}
        which = np.searchsorted(self._offsets, index, side="right") - 1
        order = np.argsort(which, kind="stable")
        grouped_rows, grouped_batches = index[order], which[order]
        parts = []
        for b in np.unique(grouped_batches):  # each batch holding a wanted row is read once
            f, k = self._batches[b]
            if f not in readers:
                readers[f] = self._reader(self.paths[f], fields)
            local = grouped_rows[grouped_batches == b] - self._offsets[b]
            parts.append(readers[f].get_batch(k).take(pa.array(local, pa.int64())))
        gathered = pa.Table.from_batches(parts, schema=schema).combine_chunks()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return gathered.take(pa.array(inverse, pa.int64())).combine_chunks()

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Everything (or ``columns``) in memory: for small files and tests."""
        _, schema = self._fields(columns)
        return pa.Table.from_batches(list(self.iter_batches(columns)), schema=schema)


class SpillWriter:
    """Writes record batches to an Arrow IPC file that ``SpillFiles`` reads back."""

    def __init__(self, path: WorkPath, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._writer = IpcWriter(path, schema)
        self.rows = 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if table.num_rows:
            self._writer.write(table)
            self.rows += table.num_rows

    def close(self) -> SpillFiles:
        self._writer.close()
        return SpillFiles([self.path], self.schema)
