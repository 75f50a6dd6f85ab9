"""The adapter contract: raw records of one published format in, canonical chat records out.

An adapter is a small class registered by name (``@register``); the recipe's ``adapter:`` key, the
module file name under ``mixer/sources/`` and the class's ``name`` are the same string. Its
``convert`` is a pure function from one raw record to zero or more canonical records (or
``Dropped`` items for records the source's own rules exclude), so it can be tested on a dict and run
anywhere (a process pool, Ray) without hidden state. Reading the file is separate
(``read_file``), which by default picks the reader from the file name.
"""

from __future__ import annotations

import hashlib
import random
import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mixer.errors import Location, RecordError
from mixer.io import FilePart, RawItem, read_raw
from mixer.records import Dropped, Record

if TYPE_CHECKING:
    from mixer.tokens import TokenCounter

#: a record carrying more message text than this (characters) is dropped, reason
#: ``record_too_large``: one pathological record must not cost every later stage its memory
MAX_RECORD_CHARS = 10 * 2**20


@dataclass(frozen=True)
class NoOptions:
    """Adapters without options use this; any option in the recipe is then an error."""


@dataclass(frozen=True)
class SourceContext:
    """What an adapter may know about the source it reads: its recipe name and seed."""

    source: str
    seed: int
    tokenizer: str = "tiktoken:cl100k_base"
    #: which of ``seed`` and ``tokenizer`` the adapter drew on: a cached read (``mixer.read_cache``)
    #: is reused under another seed or tokenizer only when it did not
    used: set[str] = field(default_factory=set, compare=False, repr=False)

    def rng_for(self, *key: object) -> random.Random:
        """A random generator determined by the source seed and a per-record key.

        Keyed per record (not one stream per source) so a record's random choices (e.g. its prompt
        template) do not depend on which other records were read before it.
        """
        self.used.add("seed")
        digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def token_counter(self) -> TokenCounter:
        """The recipe tokenizer's counter, for adapters whose output depends on token counts."""
        from mixer.tokens import get_token_counter

        self.used.add("tokenizer")
        return get_token_counter(self.tokenizer)


class Adapter:
    """Base class: subclasses set the class attributes and implement ``convert``."""

    #: registry name; equals the module name and the recipe's ``adapter:`` value
    name: ClassVar[str]
    #: the published format(s) it reads, one line, shown by ``mixer sources``
    description: ClassVar[str] = ""
    #: licence of the published data, recorded in the card (None: unknown, user must say)
    license: ClassVar[str | None] = None
    #: "sft" (conversations) or "preference" (records with a ``rejected`` reply, for DPO)
    kind: ClassVar[str] = "sft"
    #: Parquet columns to read (None: all)
    columns: ClassVar[tuple[str, ...] | None] = None
    #: options dataclass; fields are the adapter options a recipe may set
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, context: SourceContext) -> None:
        self.options = options
        self.context = context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every adapter's ``convert`` gets the record size bound, so no adapter can forget it."""
        super().__init_subclass__(**kwargs)
        convert = cls.__dict__.get("convert")
        if convert is not None and not getattr(convert, "_bounded", False):
            cls.convert = _bounded(convert)  # type: ignore[method-assign]

    def read_file(self, path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
        """Stream raw records of one file (or of one part of a large JSONL/Parquet file, so several
        processes can read it); override for formats that need special reading (such an adapter's
        files are then read whole, by one process)."""
        return read_raw(path, self.columns, part)

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        """Turn one raw record into canonical records; raise ``RecordError`` when it is malformed."""
        raise NotImplementedError


def _text_chars(record: Record) -> int:
    total = 0
    for key in ("messages", "rejected"):
        turns = record.get(key)
        if isinstance(turns, list):
            total += sum(len(m["content"]) for m in turns if isinstance(m, dict) and isinstance(m.get("content"), str))
    return total


_PREVIEW = reprlib.Repr()
_PREVIEW.maxstring, _PREVIEW.maxother = 500, 500


def _bounded(convert: Any) -> Any:
    def bounded(self: Adapter, raw: Any, location: Location) -> Iterator[Record | Dropped]:
        for out in convert(self, raw, location):
            if not isinstance(out, Dropped) and (chars := _text_chars(out)) > MAX_RECORD_CHARS:
                preview = _PREVIEW.repr(raw)  # bounded: repr of the whole record would copy it
                yield Dropped(reason="record_too_large", dataset=str(out.get("dataset", "")),
                              id=str(out.get("id", "")), raw=preview,
                              detail=f"{chars:,} characters of message text, above the bound of "
                                     f"{MAX_RECORD_CHARS:,}")
            else:
                yield out

    bounded._bounded = True  # type: ignore[attr-defined]
    bounded.__doc__, bounded.__name__, bounded.__qualname__ = convert.__doc__, convert.__name__, convert.__qualname__
    return bounded


# -- helpers shared by adapters -------------------------------------------------------------

def require_dict(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, found {type(raw).__name__}")
    return raw


def require_str(raw: dict[str, Any], key: str, *, allow_none: bool = False) -> str:
    """A string field; missing or mistyped fields name the key and what was found."""
    if key not in raw:
        raise RecordError(f"missing required field {key!r} (fields present: {sorted(raw)})")
    value = raw[key]
    if value is None and allow_none:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string, found {type(value).__name__}")
    return value


def require_list(raw: dict[str, Any], key: str) -> list[Any]:
    if key not in raw:
        raise RecordError(f"missing required field {key!r} (fields present: {sorted(raw)})")
    value = raw[key]
    if hasattr(value, "tolist") and not isinstance(value, list):  # numpy arrays from pandas
        value = value.tolist()
    if not isinstance(value, list):
        raise RecordError(f"field {key!r} must be a list, found {type(value).__name__}")
    return value
