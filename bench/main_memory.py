"""Where the build's main process holds memory: one build in this process (``mixer build`` arguments
as given), its resident memory and Arrow's allocated bytes sampled every 10 ms, and the select and
write stages' functions marked, so a peak can be put on the step that made it.

    cd <checkout> && MIXER_READ_CACHE=0 MIXER_TOKEN_CACHE=0 PYTHONPATH=. python bench/main_memory.py \\
        build recipes/v2.yaml --raw-dir /tmp/mixer-bench/raw-3-0 --out /tmp/probe --quiet

Prints per stage and per marked call (over 50 ms): start (s), duration (s), RSS when it started, its
highest RSS and Arrow's highest allocated bytes while it ran (MiB), then the peak and what ran at it.
Only the main process is sampled (``bench/build.py`` reports the whole tree); the sampling thread
and the wrappers cost little, but the figures are one run's: compare runs made side by side.
"""

from __future__ import annotations

import functools
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

events: list[tuple[float, str, str]] = []  # (time, "start" | "end", what)
samples: list[tuple[float, float, float]] = []  # (time, RSS MiB, Arrow allocated MiB)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _sample(stop: threading.Event) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter(), _rss_mib(), pa.total_allocated_bytes() / 2**20))
        time.sleep(0.01)


def _mark(owner: Any, name: str, label: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def marked(*args: Any, **kwargs: Any) -> Any:
        events.append((time.perf_counter(), "start", label))
        try:
            return fn(*args, **kwargs)
        finally:
            events.append((time.perf_counter(), "end", label))

    setattr(owner, name, marked)


def _report() -> None:
    t0 = samples[0][0]
    started: dict[str, list[float]] = {}
    spans = []
    for t, kind, what in events:
        if kind == "start":
            started.setdefault(what, []).append(t)
        else:
            spans.append((started[what].pop(), t, what))
    print(f"{'stage / call':40s} {'start':>7s} {'dur':>6s} {'RSS at start':>12s} {'RSS max':>8s} {'Arrow max':>9s}")
    for a, e, what in sorted(spans):
        if e - a < 0.05 and not what.startswith("stage"):
            continue
        near = min(samples, key=lambda s: abs(s[0] - a))
        inside = [s for s in samples if a <= s[0] <= e] or [near]
        print(f"{what[:40]:40s} {a - t0:7.1f} {e - a:6.1f} {near[1]:12.0f} {max(s[1] for s in inside):8.0f} "
              f"{max(s[2] for s in inside):9.0f}")
    peak = max(samples, key=lambda s: s[1])
    at = [what for a, e, what in spans if a <= peak[0] <= e]
    print(f"peak RSS {peak[1]:.0f} MiB (Arrow {peak[2]:.0f} MiB allocated then) at {peak[0] - t0:.1f} s in {at}")
    print(f"ru_maxrss: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, "
          f"largest child {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    import mixer.build as build_module
    import mixer.stages.base as base_stage
    import mixer.stages.select as select_stage
    import mixer.stages.write as write_stage
    from mixer.cli import main as cli

    timed = build_module.BuildState.timed

    @contextmanager
    def marked_stage(self: build_module.BuildState, stage: str) -> Iterator[Any]:
        events.append((time.perf_counter(), "start", f"stage {stage}"))
        with timed(self, stage) as timing:  # the build adds the stage's drops to what it yields
            yield timing
        events.append((time.perf_counter(), "end", f"stage {stage}"))

    build_module.BuildState.timed = marked_stage  # type: ignore[method-assign]
    for name in ("select", "_not_sampled", "_walk", "_write"):
        _mark(select_stage.Selector, name, f"Selector.{name}")
    for name in ("write_dropped", "write_shards"):
        _mark(write_stage, name, name)
    _mark(base_stage, "dropped_table", "dropped_table")  # the drops made Arrow rows (DropSink)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(stop,), daemon=True)
    sampler.start()
    sys.argv = ["mixer", *sys.argv[1:]]
    try:
        cli()
    except SystemExit:
        pass
    finally:
        stop.set()
        sampler.join()
        _report()


if __name__ == "__main__":  # spawned workers re-import this file and must not start a build
    main()
