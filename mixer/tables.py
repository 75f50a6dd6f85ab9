"""Arrow helpers for tables made of many record batches (memory-mapped candidates, concatenated
selections).

``Table.take`` on a chunked table concatenates every chunk of the selected columns first: on a
memory-mapped 1M-row source that copies all of it for each small gather (measured: RSS 126 -> 608 MiB
at 10% of Tulu V2 size for one stage). ``take_rows`` gathers batch by batch instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def take_rows(table: pa.Table, rows: Sequence[int] | np.ndarray) -> pa.Table:
    """``table.take(rows)`` without concatenating the table's chunks; same rows, same order."""
    index = np.asarray(rows, dtype=np.int64)
    batches = table.to_batches()
    if len(batches) <= 1 or len(index) == 0:
        return table.take(pa.array(index, pa.int64()))
    offsets = np.cumsum([0] + [b.num_rows for b in batches])
    which = np.searchsorted(offsets, index, side="right") - 1
    order = np.argsort(which, kind="stable")
    grouped_rows, grouped_batches = index[order], which[order]
    parts = []
    for b in np.unique(grouped_batches):
        local = grouped_rows[grouped_batches == b] - offsets[b]
        parts.append(batches[b].take(pa.array(local, pa.int64())))
    gathered = pa.Table.from_batches(parts, schema=table.schema).combine_chunks()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return gathered.take(pa.array(inverse, pa.int64()))
