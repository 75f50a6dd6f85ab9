"""The executor interface the stages send their work through.

A stage never creates a pool or decides how many processes run: it cuts its work into units and
calls ``map`` (many units, results in unit order), ``scatter`` (one list of items cut into chunks,
per-chunk results in order) or ``submit`` (one unit, started now, waited for later). The contract
that lets a distributed engine (Ray: tasks or ``map_batches``) implement the same interface:

- ``fn`` is a module-level function (or a ``functools.partial`` of one) and every unit is a plain,
  picklable value: a source name with a file and a byte or row range, a chunk of texts, a shard's
  path and the spill files it gathers; never an open file, a lock or a closure over stage state;
- results are small (counts, signatures, a ``SourceRead`` naming Arrow files in the work folder);
  bulk data goes to files in the work folder, which every worker can reach;
- results are returned in unit order, so no result depends on the order units complete in;
- ``local=True`` marks work too small to be worth shipping: an engine may run it in the calling
  process. The result is the same either way;
- ``threads=True`` marks work that releases the GIL and may share the caller's memory (hashing
  files, encoding Parquet, writing ``dropped/`` from the drops the build holds): a local engine runs
  it on threads, a distributed engine in the driver process (or as a task, when its unit is
  picklable, as a shard's is).

``parallelism`` is a planning hint only (how many units are worth making: a large file is cut into
at least that many parts); outputs never depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")

#: a started unit of work: calling it waits for its result (or raises the unit's exception)
Pending = Callable[[], R]


class Executor(Protocol):
    """Runs units of work for the stages; see the module docstring for the contract."""

    @property
    def parallelism(self) -> int:
        """How many units run at once (a hint for cutting work into units; never changes results)."""
        ...

    def map(self, fn: Callable[[U], R], units: Iterable[U], *, threads: bool = False,
            local: bool = False) -> Iterator[R]:
        """``fn(unit)`` for every unit, results in unit order. ``threads``: the work releases the GIL
        and reads files by path (hashing, Parquet encoding), so a local engine may use threads."""
        ...

    def scatter(self, fn: Callable[[list[T]], R], items: Sequence[T], *, local: bool = False,
                width: int | None = None, max_chunk: int | None = None) -> Pending[list[R]]:
        """Cut ``items`` into chunks (at most ``max_chunk`` items, about ``width`` x 4 chunks), start
        ``fn(chunk)`` for each; the returned function waits for the per-chunk results in order.
        Concatenating them must give the same as ``fn(items)`` (each item is processed on its own)."""
        ...

    def submit(self, fn: Callable[..., R], *args: Any, threads: bool = False) -> Pending[R]:
        """Start ``fn(*args)`` now; the returned function waits for its result."""
        ...

    def release(self) -> None:
        """End of a stage: let go of workers the next stage may not need (the build calls this)."""
        ...

    def close(self) -> None:
        """End of the build."""
        ...


def scatter_chunks(items: Sequence[T], width: int, max_chunk: int | None = None) -> list[list[T]]:
    """How every engine cuts ``scatter``'s items: about ``width`` x 4 chunks of consecutive items, at
    most ``max_chunk`` each, so the engines split work the same way (results never depend on it)."""
    size = max(1, -(-len(items) // (width * 4)))
    if max_chunk is not None:
        size = min(size, max_chunk)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
