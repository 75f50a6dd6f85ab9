"""Planted MinHash signatures and tiny near-dedup limits, for the tests of the LSH units on every engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixer.kernels import near
from mixer.kernels.shingles import EMPTY_HASH
from mixer.recipe.load import parse_recipe
from mixer.recipe.settings import NearDedupSettings
from mixer.stages.base import StageContext
from mixer.stages.near_dedup import _confirm_in_units


def planted_signatures() -> tuple[np.ndarray, int]:
    """3,000 signatures with near copies (some in buckets of many), one planted bucket of 201 members,
    one row without shingles, and the last 200 rows standing for an ``against`` corpus."""
    rng = np.random.default_rng(3)
    sig = rng.integers(0, 2**32 - 1, size=(3000, 128), dtype=np.uint32)
    for k in range(0, 2900, 7):  # near copies: a share of the values changed; some in buckets of many
        sig[k + 1] = sig[k]
        sig[k + 1, rng.choice(128, size=int(rng.integers(0, 40)), replace=False)] = rng.integers(0, 2**31)
    sig[100:300] = sig[99]  # one bucket far larger than MAX_BUCKET_PAIRS
    sig[50] = EMPTY_HASH  # no shingles: never a candidate
    return sig, 2800


def confirmed_in_one_process(sig: np.ndarray, n_new: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """What ``find_near_duplicates`` confirms itself: every band in one process, then the estimates."""
    bands, rows = NearDedupSettings(threshold=threshold).lsh_params()
    pairs = near.lsh_candidate_pairs(sig, bands, rows, ~np.all(sig == EMPTY_HASH, axis=1))
    pairs = pairs[pairs[:, 0] < n_new]
    jac = near.estimated_jaccard(sig, pairs)
    return pairs[jac >= threshold], jac[jac >= threshold]


def confirm_in_units(engine: Any, work_dir: Any, sig: np.ndarray, n_new: int, threshold: float,
                     raw_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``_confirm_in_units`` of the near-dedup stage on ``engine``, with ``work_dir`` as its work folder."""
    recipe = parse_recipe({"name": "t", "seed": 1, "raw_dir": str(raw_dir), "output": str(raw_dir / "out"),
                           "dedup": {"near": {"threshold": threshold}},
                           "sources": [{"name": "s", "adapter": "messages", "files": ["x.jsonl"]}]})
    return _confirm_in_units(StageContext(recipe=recipe, executor=engine, work_dir=work_dir), sig, n_new)


def split_tiny(monkeypatch: pytest.MonkeyPatch, max_members: int = 20) -> list[int]:
    """Limits small enough to split the planted signatures everywhere: key units of 512 rows, each
    band in 8 partitions, buckets of more than ``max_members`` members in chunks of that many (a
    chunk's members pair with up to 64 following ones). Returns a list that gets each large
    bucket's size."""
    import mixer.stages.near_dedup as stage

    monkeypatch.setattr(stage, "KEY_RANGE_ROWS", 512)
    monkeypatch.setattr(stage, "PARTITION_KEYS", 400)
    monkeypatch.setattr(stage, "MAX_BUCKET_MEMBERS", max_members)
    large: list[int] = []
    chunks = stage.bucket_chunks

    def recorded(members: np.ndarray, max_members: int) -> list[tuple[np.ndarray, int]]:
        large.append(len(members))
        return chunks(members, max_members)

    monkeypatch.setattr(stage, "bucket_chunks", recorded)
    return large
