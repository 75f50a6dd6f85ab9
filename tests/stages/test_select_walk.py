"""The select stage's walk keeps the rows it takes as arrays, a chunk at a time (a take-all source
walks millions of rows): it must take, drop and stop exactly where the per-record loop it replaced
did, since the pinned outputs depend on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import flan_rows, write_jsonl

from mixer.core.records import CANDIDATE_SCHEMA
from mixer.core.stats import SourceStats
from mixer.core.tables import SpillWriter
from mixer.engine import LocalEngine
from mixer.recipe.load import load_recipe
from mixer.stages import select as select_stage
from mixer.stages.base import StageContext


def _reference_walk(counts: list[int], order: list[int], want: int, max_tokens: int
                    ) -> tuple[list[int], list[int], int, list[int]]:
    """The per-record loop the walk replaced: rows taken, their counts, rows walked, rows too long."""
    got, tokens, too_long, pos = [], [], [], 0
    while len(got) < want and pos < len(order):
        for row in order[pos:]:
            pos += 1
            if counts[row] > max_tokens:
                too_long.append(row)
                continue
            got.append(row)
            tokens.append(counts[row])
            if len(got) == want:
                break
    return got, tokens, pos, too_long


@pytest.mark.parametrize(("chunk_rows", "want", "seed"), [(7, 1, 0), (7, 40, 1), (50, 199, 2), (20_000, 120, 3),
                                                          (3, 300, 4), (64, 0, 5)])
def test_walk_takes_drops_and_stops_where_the_per_record_loop_did(tmp_path: Path, make_recipe, monkeypatch,
                                                                  chunk_rows: int, want: int, seed: int) -> None:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(3))
    recipe = load_recipe(make_recipe([{"name": "flan_v2", "files": ["flan.jsonl"]}], max_tokens=100))
    rng = np.random.default_rng(seed)
    n = 250
    counts = rng.integers(1, 160, n).tolist()  # about a third over max_tokens
    rows = [{"dataset": "d", "id": f"r{i}", "messages": [{"role": "user", "content": "q"},
                                                        {"role": "assistant", "content": "a"}],
             "rejected": None, "file_index": 0, "hash": bytes(16), "n_tokens": counts[i]} for i in range(n)]
    out = SpillWriter(tmp_path / "candidates.arrow", CANDIDATE_SCHEMA)
    for batch in pa.Table.from_pylist(rows, schema=CANDIDATE_SCHEMA).to_batches(max_chunksize=40):
        out.write(batch)
    table = out.close()
    order = rng.permutation(n)
    monkeypatch.setattr(select_stage, "WALK_CHUNK_ROWS", chunk_rows)
    stats = {"flan_v2": SourceStats(name="flan_v2", adapter="flan_v2", license="", take="all", repeat=1)}
    ctx = StageContext(recipe=recipe, executor=LocalEngine(workers=1), work_dir=tmp_path, stats=stats)
    selector = select_stage.Selector(ctx, counter=None)  # type: ignore[arg-type]  # every count is known

    got, tokens, walked = selector._walk("flan_v2", table, table.column("n_tokens").combine_chunks(), order, want)

    want_rows, want_tokens, want_walked, too_long = _reference_walk(counts, order.tolist(), want, 100)
    assert (got.dtype, tokens.dtype) == (np.int64, np.int32)
    assert got.tolist() == want_rows and tokens.tolist() == want_tokens and walked == want_walked
    dropped = ctx.sink.dropped("flan_v2")
    assert [d.id for d in dropped] == [f"r{r}" for r in too_long]
    assert [d.detail for d in dropped] == [f"{counts[r]} tokens > max_tokens 100" for r in too_long]
    assert stats["flan_v2"].dropped.get("too_many_tokens", 0) == len(too_long)
