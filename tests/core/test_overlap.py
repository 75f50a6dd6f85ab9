"""one_ahead: results in order, the next job started before the previous is awaited, never more
than two in flight."""

from __future__ import annotations

from mixer.core.overlap import one_ahead


def test_one_ahead_starts_the_next_job_before_waiting_and_keeps_order() -> None:
    events: list[str] = []

    def jobs():
        for i in range(3):
            events.append(f"start {i}")
            yield lambda i=i: events.append(f"wait {i}") or i

    assert list(one_ahead(jobs())) == [0, 1, 2]
    assert events == ["start 0", "start 1", "wait 0", "start 2", "wait 1", "wait 2"]
    assert list(one_ahead(iter([]))) == []
