"""User-facing errors.

Everything a user can get wrong (a recipe key, a raw file, a record) raises a subclass of
``MixerError``. The CLI prints its message and exits 2, so a user never sees a traceback from deep
inside a library; the message always names where the problem is (file, line or record, key).
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass


class MixerError(Exception):
    """An error caused by user input; the message is the whole story."""


class RecipeError(MixerError):
    """A recipe key, type or value is wrong."""


@dataclass(frozen=True)
class Location:
    """Where a raw record came from: a file plus a 1-based line and/or a 0-based record index.

    Written out, the record says it counts from 0 (``line 3, record 2 (0-based)``): beside a line number
    that counts from 1, a bare ``record 2`` reads as the second record. The ordinal is 0-based because the
    ids made from it are (``flan_v2_2`` is record 2).
    """

    path: str
    line: int | None = None
    record: int | None = None

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.record is not None:
            parts.append(f"record {self.record} (0-based)")
        return ", ".join(parts)


class InputError(MixerError):
    """A raw input file or record cannot be read as its format promises."""

    def __init__(self, location: Location | str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")

    def __reduce__(self) -> tuple[type[InputError], tuple[Location | str, str]]:
        # rebuilt from both fields: a worker process's error must reach the build unchanged (the default
        # pickling replays only the message, which __init__ cannot take, and the pool breaks instead)
        return (type(self), (self.location, self.problem))


class RecordError(ValueError):
    """Raised by an adapter's pure conversion function for one bad raw record.

    The pipeline attaches the location and either stops the build (``InputError``) or, with
    ``on_error: skip``, drops the record with reason ``invalid_record`` and counts it.
    """


#: OSErrors that say something about the user's machine (permissions, a read-only or full disk), never
#: about a bug in mixer: the commands report them as one line, like any user error
ENVIRONMENT_ERRNOS = frozenset({_errno.EACCES, _errno.EPERM, _errno.EROFS, _errno.ENOSPC, _errno.EDQUOT})


def user_message(e: BaseException) -> str | None:
    """The one-line message a command prints (exit 2, no traceback) for an error that is the user's to fix:
    a ``MixerError``'s own text, or for an OSError of ``ENVIRONMENT_ERRNOS`` the file and the reason; None
    for anything else, which is a bug and keeps its traceback."""
    if isinstance(e, MixerError):
        return str(e)
    if not isinstance(e, OSError) or e.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = f"{e.filename}: " if e.filename is not None else ""
    return f"{where}{e.strerror or e}"


def did_you_mean(name: str, valid: list[str] | tuple[str, ...] | set[str]) -> str:
    """`` (did you mean 'take'?)`` for a near miss among ``valid``, else empty: a typo'd key is the most
    common recipe error, and the full list of valid keys does not point at the one meant."""
    import difflib

    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
