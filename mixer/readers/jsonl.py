"""JSON Lines (``.jsonl``, and ``.json`` files that hold JSON Lines), plain or gzipped, whole or one
byte range of the file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from mixer.core.errors import InputError, Location
from mixer.readers.base import (
    READ_ERRORS,
    FilePart,
    ParseFailure,
    RawItem,
    json_problem,
    open_bytes,
    safe_text,
    with_lone_surrogates,
)


def read_jsonl(path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
    """One JSON value per line; blank lines are skipped, bad lines become ParseFailures.

    With ``part``, the lines before the part are still scanned (cheap: it keeps line numbers and
    ordinals those of the whole file) but only the part's lines are parsed, and the scan stops where
    the next part begins.
    """
    start, stop = part.bounds(path.stat().st_size) if part is not None else (0, sys.maxsize)
    stopped = False
    try:
        with open_bytes(path) as f:
            ordinal = 0
            pos = 0
            for lineno, line in enumerate(f, start=1):
                at = pos
                pos += len(line)
                if at >= stop:
                    stopped = True
                    break
                if not line.strip():
                    continue
                ordinal += 1
                if at < start:
                    continue
                loc = Location(str(path), line=lineno, record=ordinal - 1)
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    value = with_lone_surrogates(line, e)
                    if value is None:
                        yield RawItem(ParseFailure(json_problem(line, e), safe_text(line)), loc)
                        continue
                yield RawItem(value, loc)
    except READ_ERRORS as e:
        raise InputError(str(path), f"cannot read file: {e}") from None
    if ordinal == 0 and not stopped:  # a part that stopped early leaves the verdict to the last part
        raise InputError(str(path), "file is empty: expected JSON Lines records")
