"""Keeping worker processes busy while the main process prepares their next batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def one_ahead(started: Iterable[Callable[[], T]]) -> Iterator[T]:
    """The results of started jobs, in order, with the next job started before waiting for the
    previous one: ``started`` yields a function that waits for its job's result each time it is
    advanced (which is when the job is prepared and handed to the workers). At most two jobs are in
    flight, so a fast producer never queues the whole input."""
    pending: Callable[[], T] | None = None
    for job in started:
        if pending is not None:
            yield pending()
        pending = job
    if pending is not None:
        yield pending()
