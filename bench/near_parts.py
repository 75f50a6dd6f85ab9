"""Near dedup's stage on synthetic candidates, in this process (signatures gathered) and in units
(signing units write part files; ``BAND_UNITS_MIN_ROWS`` set to 0), with the driver's peak of
traced Python/NumPy allocations during the stage (``tracemalloc``: the signature matrix shows here
when it is gathered).

    python bench/near_parts.py --n 100000 --workers 2

Reports per mode wall seconds of the stage, CPU seconds (this process and the engine's worker
processes, until the engine closed) and
the driver's traced peak, and checks both modes drop the same records with the same details.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixer.core.stats import SourceStats  # noqa: E402
from mixer.core.tables import SpillFiles  # noqa: E402
from mixer.engine import LocalEngine  # noqa: E402
from mixer.recipe.load import parse_recipe  # noqa: E402
from mixer.stages import near_dedup  # noqa: E402
from mixer.stages.base import StageContext  # noqa: E402
from mixer.stages.read import CandidateStore  # noqa: E402

WORDS = [f"w{i}" for i in range(5000)]


def context(work: Path, engine: LocalEngine, n: int) -> StageContext:
    """One source of ``n`` records of 60 random words, 5 % of them a copy of an earlier one with one
    word changed."""
    recipe = parse_recipe({"name": "b", "seed": 1, "raw_dir": str(work), "output": str(work / "out"),
                           "dedup": {"near": {"threshold": 0.7}},
                           "sources": [{"name": "s", "adapter": "messages", "files": ["x.jsonl"]}]})
    ctx = StageContext(recipe=recipe, executor=engine, work_dir=work,
                       stats={"s": SourceStats("s", "messages", None, "all", 1)})
    rng = random.Random(7)
    texts: list[list[str]] = []
    store = CandidateStore(work / "s.arrow")
    for i in range(n):
        if texts and rng.random() < 0.05:
            words = list(rng.choice(texts))
            for _ in range(1):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
        else:
            words = [rng.choice(WORDS) for _ in range(60)]
        if len(texts) < 10_000:
            texts.append(words)
        store.add({"dataset": "s", "id": f"s-{i}", "messages": [
            {"role": "user", "content": " ".join(words)}, {"role": "assistant", "content": "ok"}]}, file_index=0)
    ctx.candidates.add("s", SpillFiles([store.close()]))
    return ctx


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    drops = {}
    for mode in ("in-process", "in-units"):
        near_dedup.BAND_UNITS_MIN_ROWS = 0 if mode == "in-units" else 1 << 62
        with tempfile.TemporaryDirectory() as tmp, LocalEngine(args.workers) as engine:
            ctx = context(Path(tmp), engine, args.n)
            tracemalloc.start()
            t0, c0 = time.perf_counter(), cpu()
            near_dedup.near_dedup(ctx)
            wall = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            drops[mode] = [(d.id, d.kept_id, d.detail) for d in ctx.sink.dropped("s")]
        used = cpu() - c0  # after the engine closed: its worker processes' CPU is counted once they end
        print(f"{mode}: n={args.n} dropped={len(drops[mode])} wall={wall:.1f}s cpu={used:.1f}s "
              f"driver traced peak={peak / 2**20:.1f} MiB (signature matrix: {args.n * 512 / 2**20:.1f} MiB)")
    assert drops["in-process"] == drops["in-units"], "the two modes dropped different records"
    print("same drops: yes")


if __name__ == "__main__":
    main()
