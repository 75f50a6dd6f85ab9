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

from mixer.core.workstore import IpcWriter, RemotePath, WorkPath, open_input


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
    or remote: ``mixer.core.workstore``) and deletes them with it.
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
        """One whole column (only its buffers are read), each chunk copied out of its batch.

        Why the copy: the IPC reader allocates a batch's whole body, every column's bytes, and the
        column read is a slice of it, so keeping the slices kept each batch's body allocated: the
        select stage's ``n_tokens`` of Open-Orca's 3 M candidates at scale 3.0 held 3.7 GB of
        allocations (the messages' share mostly never touched, yet ~800 MiB of RSS) for 12 MB of
        counts. A copy keeps only the column's own bytes, one batch's body at a time."""
        _, schema = self._fields([name])
        chunks = [pa.concat_arrays([batch.column(0)]) for batch in self.iter_batches([name])]
        return pa.chunked_array(chunks, type=schema.field(0).type)

    def take(self, rows: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows by global row number, in the order given, with ``columns`` (in schema order); one chunk
        per column."""
        fields, schema = self._fields(columns)
        if len(rows) == 0:
            return schema.empty_table()
        answered, parts = [], []
        for which, batch in self.gather_by_batch(rows, columns):
            answered.append(which)
            parts.append(batch)
        order = np.concatenate(answered)
        gathered = pa.Table.from_batches(parts, schema=schema).combine_chunks()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return gathered.take(pa.array(inverse, pa.int64())).combine_chunks()

    def gather_by_batch(self, rows: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None
                        ) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """``rows`` (global row numbers, any order) gathered one stored batch at a time, in file order:
        for each batch that holds some of them, which entries of ``rows`` it holds (ascending) and
        those rows, in that order. Each batch is read once (only ``columns``), and unlike ``take``
        nothing of the earlier batches stays alive: a caller that writes each piece away holds one
        batch's worth, however many rows it gathers."""
        fields, _ = self._fields(columns)
        index = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self._offsets, index, side="right") - 1
        order = np.argsort(which, kind="stable")
        by_batch = which[order]
        del which
        bounds = [0, *(np.flatnonzero(np.diff(by_batch)) + 1).tolist(), len(order)]
        readers: dict[int, pa.ipc.RecordBatchFileReader] = {}
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if start == end:  # no rows at all
                continue
            b = int(by_batch[start])
            f, k = self._batches[b]
            if f not in readers:
                readers[f] = self._reader(self.paths[f], fields)
            entries = order[start:end]
            yield entries, readers[f].get_batch(k).take(pa.array(index[entries] - self._offsets[b], pa.int64()))

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


class OrderedSpillWriter:
    """Rows that arrive in any order, each with its position in the final order (0..n-1), spilled to
    Arrow files in the work folder and read back in that order (``OrderedSpill``): an external sort
    by buckets of ``bucket_rows`` consecutive positions, so neither side holds more than a batch (while
    writing) or a bucket (while reading), however many rows there are.

    Why: a gather in an arbitrary order (the ids of records in sampling order) either holds every row
    until the last one is found, or reads every batch of the source again for each piece of the
    order; this reads each source batch once and keeps nothing of it.
    """

    def __init__(self, folder: WorkPath, schema: pa.Schema, bucket_rows: int) -> None:
        self.folder = folder
        self.schema = schema
        self.bucket_rows = bucket_rows
        self._with_position = schema.append(pa.field("position", pa.int64()))
        self._buckets: dict[int, SpillWriter] = {}
        self.rows = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, batch: pa.RecordBatch | pa.Table, positions: np.ndarray) -> None:
        """``batch``'s rows, whose positions in the final order are ``positions`` (one each)."""
        positions = np.asarray(positions, dtype=np.int64)
        bucket = positions // self.bucket_rows
        for b in np.unique(bucket).tolist():
            mask = bucket == b
            part = batch.filter(pa.array(mask))
            if b not in self._buckets:
                self._buckets[b] = SpillWriter(self.folder / f"bucket-{b:06d}.arrow", self._with_position)
            self._buckets[b].write(pa.table([*part.columns, pa.array(positions[mask], pa.int64())],
                                            schema=self._with_position))
        self.rows += len(positions)

    def close(self) -> OrderedSpill:
        files = [self._buckets[b].close() for b in sorted(self._buckets)]
        self._buckets = {}
        return OrderedSpill(files, self.schema, self.rows)


class OrderedSpill:
    """What ``OrderedSpillWriter`` wrote: ``num_rows`` rows, read back in their final order one bucket
    at a time (``iter_tables``). Picklable (file names only), so any process that reaches the work
    folder can read it."""

    def __init__(self, buckets: list[SpillFiles], schema: pa.Schema, num_rows: int) -> None:
        self.buckets = buckets
        self.schema = schema
        self.num_rows = num_rows

    def iter_tables(self) -> Iterator[pa.Table]:
        """The rows in their final order, a bucket (one table, one chunk per column) at a time."""
        for bucket in self.buckets:
            rows = bucket.to_table()
            rows = rows.take(pc.sort_indices(rows.column("position"))).drop_columns(["position"])
            yield rows.combine_chunks()
