"""What a build's stages cost: wall and CPU time, the workers' CPU, resident memory.

``mixer build`` measures each stage with :func:`measured` into a :class:`StageTiming` and writes the
totals to ``timings.json`` (with :func:`peak_rss_mb`); nothing here changes what a build writes.
Memory is read from ``/proc`` and ``getrusage``, so on a system without ``/proc`` it reads 0.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class StageTiming:
    """What one stage cost: wall and CPU time, its workers' CPU, memory after it, records it dropped."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    #: CPU of the worker processes the stage started and the engine ended with it (0 for an engine
    #: whose workers outlive the stage, e.g. a cluster's): with ``cpu_s``, what the stage cost
    cpu_workers_s: float = 0.0
    #: this process's resident memory when the stage ended (MiB), to see which stage holds memory
    rss_mb_after: float = 0.0
    #: records the stage dropped (every drop goes through the one sink, so this is counted once, here)
    dropped: int = 0


@contextmanager
def measured(t: StageTiming) -> Iterator[StageTiming]:
    """Add the block's wall time, this process's CPU, its ended workers' CPU to ``t``; set the memory after."""
    t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu_s()
    try:
        yield t
    finally:
        t.wall_s += time.perf_counter() - t0
        t.cpu_s += time.process_time() - c0
        t.cpu_workers_s += children_cpu_s() - k0
        t.rss_mb_after = current_rss_mb()


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's ended and reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024
