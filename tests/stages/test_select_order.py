"""The select stage's permutation: its own array-based draw must give the exact order (and leave the
generator in the exact state) that ``random.Random.sample`` gives, since the pinned outputs (the
sampled records, the order of ``dropped/``'s ``not_sampled`` rows and of later per-file groups)
depend on it."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.stages.select import sample_order


@pytest.mark.parametrize("n", [0, 1, 2, 5, 6, 7, 64, 1000, 20_001])
def test_sample_order_is_random_sample_of_range(n: int) -> None:
    ours, theirs = random.Random(f"seed-{n}"), random.Random(f"seed-{n}")
    got = sample_order(ours, n)
    assert got.dtype == np.int64
    assert got.tolist() == theirs.sample(range(n), n)
    assert ours.getstate() == theirs.getstate()  # the next group of the same source draws the same


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**64), sizes=st.lists(st.integers(0, 300), max_size=4))
def test_consecutive_groups_draw_the_same_orders_as_random_sample(seed: int, sizes: list[int]) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    for n in sizes:  # per-file groups share one generator, in file order
        group = list(range(1000, 1000 + 3 * n, 3))
        assert np.asarray(group, dtype=np.int64)[sample_order(ours, n)].tolist() == theirs.sample(group, n)


def test_record_token_counts_from_a_generator_equal_those_from_a_list() -> None:
    """The select stage hands its records as a generator of slices, so no chunk's record dicts are
    all alive at once; the counts (and their order) must not change."""
    from mixer.tokens.count import count_record_tokens_async, get_token_counter

    counter = get_token_counter("tiktoken:cl100k_base")
    records = [{"dataset": "d", "id": str(i), "messages": [{"role": "user", "content": "hi " * i},
                                                           {"role": "assistant", "content": "yes"}]}
               for i in range(40)]
    records[3]["rejected"] = [{"role": "assistant", "content": "no " * 200}]
    expected = count_record_tokens_async(counter, list(records))()
    assert count_record_tokens_async(counter, (r for r in records))() == expected
    assert count_record_tokens_async(counter, iter([]))() == []
    assert expected[3] > expected[2] + 150  # the longer rejected side counts
