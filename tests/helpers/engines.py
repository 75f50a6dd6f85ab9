"""Settings that send every stage's work through the engine, for the engine tests."""

from __future__ import annotations

import pytest


def force_units(monkeypatch: pytest.MonkeyPatch, split_bytes: int = 4096, group: bool = True) -> None:
    """Every stage's work through the engine, large files cut into ranges of about ``split_bytes``;
    ``group``: exact dedup as the partitioned group-by and LSH as per-band units (else both in the
    driver)."""
    import mixer.kernels.near
    import mixer.stages.exact_dedup
    import mixer.stages.near_dedup
    import mixer.stages.read
    import mixer.tokens.count

    if group:
        monkeypatch.setattr(mixer.stages.exact_dedup, "GROUP_MIN_ROWS", 0)
        monkeypatch.setattr(mixer.stages.near_dedup, "BAND_UNITS_MIN_ROWS", 0)

    monkeypatch.setattr(mixer.stages.read, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", split_bytes)
    monkeypatch.setattr(mixer.tokens.count, "POOL_MIN_CHARS", 0)
    monkeypatch.setattr(mixer.kernels.near, "POOL_MIN_CHARS", 0)
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    monkeypatch.setenv("MIXER_TOKEN_CACHE", "0")  # counted, not found in the cache an earlier build left
