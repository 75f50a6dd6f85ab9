"""Checks on Arrow columns for adapters that convert a Parquet batch at once (``Adapter.convert_columns``).

A columnar convert takes only rows whose fate is already known without looking at them one by one:
every field present and of the right type, every turn ASCII (so NFC and free of surrogates), non-empty
and with nothing ``str.strip`` would remove, turns in a valid order, and the record below the size
bound. For such a row the per-record path (``convert``, ``invalid_record``, ``normalise``) returns the
record unchanged, so skipping it changes nothing; every other row goes through that path as before,
with its errors, repairs and drops.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.sources.base import MAX_RECORD_CHARS

#: the ASCII characters ``str.strip()`` removes (``str.isspace``), which Arrow's trim does not all know
_PY_ASCII_SPACE = pa.array(list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"))


def is_text(column: pa.Array) -> bool:
    """A UTF-8 column (``string`` or ``large_string``)."""
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _mask(values: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null counting as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def ascii_present(column: pa.Array) -> np.ndarray:
    """Per row: not null and ASCII."""
    return _mask(pc.and_(pc.is_valid(column), pc.string_is_ascii(column)))


def clean_turns(column: pa.Array) -> np.ndarray:
    """Per row: a turn text the normaliser keeps as it is (not null, non-empty, ASCII, no leading or
    trailing whitespace as Python's ``str.strip`` sees it)."""
    ok = pc.and_(pc.is_valid(column), pc.string_is_ascii(column))
    ok = pc.and_(ok, pc.greater(pc.binary_length(column), 0))
    for edge in (pc.utf8_slice_codeunits(column, 0, 1), pc.utf8_slice_codeunits(column, -1)):
        ok = pc.and_(ok, pc.invert(pc.is_in(edge, value_set=_PY_ASCII_SPACE)))
    return _mask(ok)


def text_lengths(column: pa.Array) -> np.ndarray:
    """Per row: bytes of text (characters, for the ASCII rows the columnar path keeps); 0 for null."""
    return np.asarray(pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def within_size_bound(chars: np.ndarray) -> np.ndarray:
    """Per row: message text at most ``MAX_RECORD_CHARS`` (above it the record is dropped)."""
    return chars <= MAX_RECORD_CHARS
