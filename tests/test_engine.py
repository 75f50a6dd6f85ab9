"""The executor contract (mixer.engine): results in unit order, chunks that add up, errors surface."""

from __future__ import annotations

import os
import time
from functools import partial

import pytest

from mixer.engine import LocalEngine


def _slow_square(x: int) -> int:
    time.sleep(0.05 if x == 0 else 0.0)  # the first unit finishes last
    return x * x


def _lengths(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def _pid(_: object) -> int:
    return os.getpid()


def _fail(x: int) -> int:
    if x == 3:
        raise ValueError("unit 3 is bad")
    return x


@pytest.mark.parametrize("threads", [False, True])
def test_map_returns_results_in_unit_order_whatever_finishes_first(threads: bool) -> None:
    with LocalEngine(2) as engine:
        assert list(engine.map(_slow_square, range(6), threads=threads)) == [0, 1, 4, 9, 16, 25]


def test_scatter_chunks_concatenate_to_the_result_of_one_call() -> None:
    texts = [f"text {i}" * (i % 7) for i in range(101)]
    with LocalEngine(2) as engine:
        chunks = engine.scatter(_lengths, texts, max_chunk=10)()
        assert len(chunks) > 2 and all(len(c) <= 10 for c in chunks)
        assert [n for c in chunks for n in c] == _lengths(texts)
        assert engine.scatter(_lengths, texts, local=True)() == [_lengths(texts)]


def test_work_runs_in_worker_processes_unless_local_or_one_worker() -> None:
    with LocalEngine(2) as engine:
        assert os.getpid() not in set(engine.map(_pid, range(4)))
        assert set(engine.map(_pid, range(4), local=True)) == {os.getpid()}
    with LocalEngine(1) as engine:
        assert set(engine.map(_pid, range(4))) == {os.getpid()}
        assert engine.submit(_pid, None)() == os.getpid()


def test_a_failing_unit_raises_in_the_caller() -> None:
    with LocalEngine(2) as engine, pytest.raises(ValueError, match="unit 3"):
        list(engine.map(_fail, range(6)))


def test_release_ends_the_stage_workers_and_the_engine_starts_new_ones_on_demand() -> None:
    engine = LocalEngine(2)
    first = set(engine.map(_pid, range(4)))
    engine.release()
    assert engine._processes is None
    second = set(engine.map(partial(_pid), range(4)))
    engine.close()
    assert first.isdisjoint(second)
