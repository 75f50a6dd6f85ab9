"""``mixer tokenize`` with a memory line at each step: this process's RssAnon/RssFile and Arrow's pool.

Runs the CLI in this process (same arguments as ``mixer tokenize``) with :mod:`mixer.train.tokenized`'s
steps wrapped, and prints to stderr, after the tokenising map, after the packing plan and after each shard
is written: RssAnon and RssFile of this process (``/proc/self/status``), ``pyarrow.total_allocated_bytes()``
and the pool's ``max_memory()``. Wrap it in ``bench/proc_memory.py`` to see the workers too.

    python bench/tokenize_trace.py BUILD --tokenizer TOK --max-length 8192 --pack bfd -o OUT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

START = time.perf_counter()


def line(what: str) -> None:
    import pyarrow as pa

    status = {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in
              Path("/proc/self/status").read_text().splitlines()) if k in ("RssAnon", "RssFile", "VmHWM")}
    pool = pa.default_memory_pool()
    print(f"[trace {time.perf_counter() - START:7.1f}s] {what}: RssAnon {status['RssAnon'] / 1024:,.0f} MiB, "
          f"RssFile {status['RssFile'] / 1024:,.0f} MiB, VmHWM {status['VmHWM'] / 1024:,.0f} MiB; Arrow pool "
          f"{pa.total_allocated_bytes() / 2**20:,.0f} MiB now, {pool.max_memory() / 2**20:,.0f} MiB max "
          f"({pool.backend_name})", file=sys.stderr, flush=True)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mixer, not an installed one
    import pyarrow.parquet as pq

    from mixer import cli
    from mixer.train import tokenized

    tokenize_rows, output_shards, write_table = tokenized.tokenize_rows, tokenized.output_shards, pq.write_table
    shard = [0]

    def traced_tokenize_rows(*args: Any, **kwargs: Any) -> Any:
        line("before the tokenising map")
        out = tokenize_rows(*args, **kwargs)
        line("after tokenize_rows (table, kept, stats)")
        return out

    def traced_output_shards(*args: Any, **kwargs: Any) -> Any:
        out = output_shards(*args, **kwargs)
        line("after output_shards (packing plan)")
        return out

    def traced_write_table(table: Any, *args: Any, **kwargs: Any) -> Any:
        line(f"shard {shard[0]} built ({table.num_rows} rows, {table.nbytes / 2**20:,.0f} MiB)")
        write_table(table, *args, **kwargs)
        shard[0] += 1

    tokenized.tokenize_rows, tokenized.output_shards, pq.write_table = (traced_tokenize_rows, traced_output_shards,
                                                                        traced_write_table)
    sys.argv = ["mixer", "tokenize", *sys.argv[1:]]
    line("start")
    try:
        cli.main()
    finally:
        line("end")


if __name__ == "__main__":
    main()
