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
import re
import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mixer.core.errors import Location, RecordError
from mixer.core.records import Dropped, Record
from mixer.readers.base import FilePart, RawItem
from mixer.readers.raw import read_raw

if TYPE_CHECKING:
    import pyarrow as pa

    from mixer.tokens.count import TokenCounter

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
    #: the source reads more than one file: ids an adapter numbers per file then carry the file's
    #: stem (``numbered_id``), so two files' ``alpaca_0`` never share one ``(dataset, id)``
    many_files: bool = False
    #: which of ``seed`` and ``tokenizer`` the adapter drew on: a cached read (``mixer.stages.read_cache``)
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
        from mixer.tokens.count import get_token_counter

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
        """Every adapter's ``convert`` output is checked by :func:`invalid_record` (lone surrogates, the
        record size bound), so no adapter can forget it."""
        super().__init_subclass__(**kwargs)
        convert = cls.__dict__.get("convert")
        if convert is not None and not getattr(convert, "_bounded", False):
            cls.convert = _bounded(convert)  # type: ignore[method-assign]

    @classmethod
    def score_scale(cls, options: Any) -> str | None:
        """What the ``score_chosen``/``score_rejected`` of this source's pairs measure, for the data card
        (a gap means nothing without its scale); None for a source that never rates its pairs."""
        return None

    def read_file(self, path: Path, part: FilePart | None = None) -> Iterator[RawItem]:
        """Stream raw records of one file (or of one part of a large JSONL/Parquet file, so several
        processes can read it); override for formats that need special reading (such an adapter's
        files are then read whole, by one process)."""
        return read_raw(path, self.columns, part)

    def numbered_id(self, prefix: str, location: Location) -> str:
        """The id of a record that has none of its own: ``<prefix>_<ordinal in the file>``.

        Ordinals restart per file and per source, so the id also carries the source's name when the
        recipe names it otherwise than the adapter and the prefix (two ``flan_v2`` sources ``first`` and
        ``second``: ``flan_v2_first_3``, ``flan_v2_second_3``; Tulu V2's sources, named as their adapters,
        keep their published ids), and the file's stem when the source reads several files
        (``alpaca_first_0``)."""
        parts = [prefix]
        if prefix == self.name and self.context.source != self.name:  # the adapter's fixed label
            parts.append(self.context.source)
        if self.context.many_files:
            parts.append(file_stem(location.path))
        return "_".join([*parts, str(location.record)])

    def convert(self, raw: Any, location: Location) -> Iterable[Record | Dropped]:
        """Turn one raw record into canonical records; raise ``RecordError`` when it is malformed."""
        raise NotImplementedError

    def convert_columns(self, batch: pa.RecordBatch) -> list[Record | None] | None:
        """Optional, for Parquet sources: convert a whole Arrow batch without a dict per row.

        One entry per row: the record for a row that ``convert`` would turn into exactly that one
        record and that ``invalid_record`` and the normaliser would pass unchanged (see
        ``mixer.sources._columns``), None for any other row, which then takes the per-record path.
        None for the whole batch when its columns are not of the expected types. Per-record reading
        of a 1M-row file is mostly dict building and per-field checks; this does them on columns.
        """
        return None


#: UTF-16 surrogate code points: JSON may escape them singly ("\\ud800"), Python keeps them in a str,
#: but they are not Unicode scalar values and UTF-8 (Arrow, Parquet) cannot store them.
_SURROGATE = re.compile("[\ud800-\udfff]")

#: the canonical record fields holding conversation turns (a preference record: messages + rejected)
_TURN_FIELDS = ("messages", "rejected")


def _strings(record: Record) -> Iterator[tuple[str, str]]:
    """Every string of a canonical record with where it sits (``messages[1].content``)."""
    for key, value in record.items():
        if isinstance(value, str):
            yield key, value
        elif key in _TURN_FIELDS and isinstance(value, list):
            for i, turn in enumerate(value):
                if isinstance(turn, dict):
                    for name, text in turn.items():
                        if isinstance(text, str):
                            yield f"{key}[{i}].{name}", text


def invalid_record(record: Record) -> tuple[str, str] | None:
    """``(reason, detail)`` when a converted record cannot go on, else None; applied to every
    adapter's output (see ``Adapter.__init_subclass__``), so the rules live in one place:

    - ``invalid_text``: a string holds a lone surrogate (not valid Unicode). Dropped and counted rather
      than repaired: replacing it would silently change the text of a record nobody has looked at.
    - ``record_too_large``: more than ``MAX_RECORD_CHARS`` characters of message text; one
      pathological record must not cost every later stage its memory.
    """
    chars = 0
    for where, text in _strings(record):
        if where.endswith(".content"):
            chars += len(text)
        if not text.isascii() and (m := _SURROGATE.search(text)):
            return "invalid_text", (f"{where} holds a lone surrogate U+{ord(m.group()):04X} at character "
                                    f"{m.start()}: not valid Unicode, so it cannot be written as UTF-8")
    if chars > MAX_RECORD_CHARS:
        return "record_too_large", f"{chars:,} characters of message text, above the bound of {MAX_RECORD_CHARS:,}"
    return None


_PREVIEW = reprlib.Repr()
_PREVIEW.maxstring, _PREVIEW.maxother = 500, 500


def _bounded(convert: Any) -> Any:
    def bounded(self: Adapter, raw: Any, location: Location) -> Iterator[Record | Dropped]:
        for out in convert(self, raw, location):
            problem = None if isinstance(out, Dropped) else invalid_record(out)
            if problem is None:
                yield out
                continue
            reason, detail = problem
            preview = _PREVIEW.repr(raw)  # bounded: repr of the whole record would copy it
            if reason == "invalid_text":  # the preview itself must be storable as UTF-8
                preview = preview.encode("utf-8", "backslashreplace").decode("utf-8")
            yield Dropped(reason=reason, dataset=_storable(out.get("dataset", "")), id=_storable(out.get("id", "")),
                          raw=preview, detail=detail)

    bounded._bounded = True  # type: ignore[attr-defined]
    bounded.__doc__, bounded.__name__, bounded.__qualname__ = convert.__doc__, convert.__name__, convert.__qualname__
    return bounded


def _storable(value: Any) -> str:
    """``value`` as a string UTF-8 can hold (surrogates written as ``\\udXXX`` escapes)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


# -- helpers shared by adapters -------------------------------------------------------------

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def file_stem(path: str) -> str:
    """A raw file's name without its format and compression suffixes (``a.jsonl.gz`` -> ``a``)."""
    name = Path(path).name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return Path(name).stem

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
