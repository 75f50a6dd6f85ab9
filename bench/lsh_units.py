"""Near dedup's LSH banding + confirmation as executor units (``_confirm_in_units``), against the
same work in one process, on synthetic MinHash signatures.

    python bench/lsh_units.py --n 1000000 --workers 2 [--work-dir s3://...] [--max-members 5000]

``--n`` random 128-value signatures, 5 % of them near copies of another (up to 40 values changed),
one planted bucket of ``--bucket`` identical signatures, and 1 % rows without shingles. Reports
wall and CPU seconds (this process, and the worker processes the engine ended), the largest worker's
peak RSS, and checks that the units confirm exactly the pairs of the one-process path.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixer.engine import LocalEngine  # noqa: E402
from mixer.kernels.lsh import estimated_jaccard, lsh_candidate_pairs  # noqa: E402
from mixer.kernels.shingles import EMPTY_HASH  # noqa: E402
from mixer.recipe.load import parse_recipe  # noqa: E402
from mixer.recipe.settings import NearDedupSettings  # noqa: E402
from mixer.stages import near_dedup  # noqa: E402
from mixer.stages.base import StageContext  # noqa: E402


def planted(n: int, bucket: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 2**32 - 1, size=(n, 128), dtype=np.uint32)
    copies = rng.choice(n, size=n // 20, replace=False)
    sources = rng.integers(0, n, size=len(copies))
    sig[copies] = sig[sources]
    for row in copies[: min(len(copies), 200_000)]:
        sig[row, rng.choice(128, size=int(rng.integers(0, 40)), replace=False)] = rng.integers(0, 2**31)
    sig[n // 2:n // 2 + bucket] = sig[n // 2 - 1]
    sig[rng.choice(n, size=n // 100, replace=False)] = EMPTY_HASH
    return sig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bucket", type=int, default=20_000, help="members of the planted bucket")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--work-dir", default=None, help="a path or URI (default: a temporary folder)")
    ap.add_argument("--max-members", type=int, default=None, help="override MAX_BUCKET_MEMBERS")
    ap.add_argument("--skip-reference", action="store_true", help="do not run the one-process path")
    args = ap.parse_args()
    if args.max_members is not None and hasattr(near_dedup, "MAX_BUCKET_MEMBERS"):
        near_dedup.MAX_BUCKET_MEMBERS = args.max_members
    sig = planted(args.n, args.bucket)
    config = NearDedupSettings(threshold=args.threshold)
    bands, rows = config.lsh_params()
    with tempfile.TemporaryDirectory() as tmp:
        from mixer.build import resolve_work_dir

        work = resolve_work_dir(args.work_dir) if args.work_dir else Path(tmp)
        recipe = parse_recipe({"name": "b", "seed": 1, "raw_dir": tmp, "output": f"{tmp}/out",
                               "dedup": {"near": {"threshold": args.threshold}},
                               "sources": [{"name": "s", "adapter": "messages", "files": ["x.jsonl"]}]})
        t0, c0 = time.perf_counter(), time.process_time()
        k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with LocalEngine(args.workers) as engine:
            got, jac = near_dedup._confirm_in_units(StageContext(recipe=recipe, executor=engine, work_dir=work),
                                                    sig, args.n)
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        workers_cpu = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    print(f"units: n={args.n} bands={bands} rows={rows} confirmed={len(got)} wall={wall:.1f}s "
          f"cpu_driver={cpu:.1f}s cpu_workers={workers_cpu:.1f}s worker_peak_rss={k1.ru_maxrss / 1024:.0f}MiB "
          f"driver_peak_rss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MiB")
    if args.skip_reference:
        return
    t0, c0 = time.perf_counter(), time.process_time()
    pairs = lsh_candidate_pairs(sig, bands, rows, ~np.all(sig == EMPTY_HASH, axis=1))
    est = estimated_jaccard(sig, pairs)
    keep = est >= args.threshold
    print(f"one process: confirmed={int(keep.sum())} wall={time.perf_counter() - t0:.1f}s "
          f"cpu={time.process_time() - c0:.1f}s")
    assert np.array_equal(pairs[keep], got) and np.array_equal(est[keep], jac), "units differ from one process"
    print("identical pairs and estimates")


if __name__ == "__main__":
    main()
