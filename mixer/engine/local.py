"""``LocalEngine``: the build's work on this machine's cores.

Every process and thread pool of a build is created here. Processes are spawned (never forked: the
parent may hold gigabytes of Arrow buffers) lazily, on the first unit that needs one, and are kept
until the stage ends (``release``), so a stage that ships many batches (token counting, signing)
starts its workers once. Work marked ``local``, and every unit when ``workers`` is 1, runs in the
calling process, which gives the same results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, TypeVar

from mixer.core.executor import Pending, scatter_chunks

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")


class LocalEngine:
    """Runs units on up to ``workers`` spawned processes (or threads, for GIL-free work)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._processes: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None

    @property
    def parallelism(self) -> int:
        return self.workers

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._processes

    def map(self, fn: Callable[[U], R], units: Iterable[U], *, threads: bool = False,
            local: bool = False) -> Iterator[R]:
        units = list(units)
        width = min(self.workers, len(units))
        if local or width <= 1:
            return (fn(u) for u in units)
        if threads:
            return _thread_map(fn, units, width)
        pool = self._process_pool()
        return _in_order([pool.submit(fn, u) for u in units])

    def scatter(self, fn: Callable[[list[T]], R], items: Sequence[T], *, local: bool = False,
                width: int | None = None, max_chunk: int | None = None) -> Pending[list[R]]:
        width = min(self.workers, width or self.workers)
        if local or width <= 1 or len(items) < 2:
            result = [fn(list(items))]
            return lambda: result
        pool = self._process_pool()
        futures = [pool.submit(fn, chunk) for chunk in scatter_chunks(items, width, max_chunk)]
        return lambda: list(_in_order(futures))

    def submit(self, fn: Callable[..., R], *args: Any, threads: bool = False) -> Pending[R]:
        if self.workers <= 1 and not threads:
            result = fn(*args)
            return lambda: result
        if threads:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers)
            future: Future[R] = self._threads.submit(fn, *args)
        else:
            future = self._process_pool().submit(fn, *args)
        return future.result

    def release(self) -> None:
        if self._processes is not None:
            self._processes.shutdown()
            self._processes = None
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None

    def close(self) -> None:
        self.release()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)
            self._processes = None
        self.close()


def _in_order(futures: list[Future[R]]) -> Iterator[R]:
    """The results in submission order. When one fails, the units not started are cancelled and the running
    ones waited for before its error goes up: they write into the build's work folder, which the build
    removes as the error passes, and a unit still writing there would hide the error behind the removal's."""
    for i, future in enumerate(futures):
        try:
            yield future.result()
        except BaseException:
            rest = futures[i + 1:]
            for other in rest:
                other.cancel()
            wait(rest)
            raise


def _thread_map(fn: Callable[[U], R], units: list[U], width: int) -> Iterator[R]:
    with ThreadPoolExecutor(width) as pool:
        yield from pool.map(fn, units)
