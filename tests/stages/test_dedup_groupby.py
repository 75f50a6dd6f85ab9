"""The dedup group-bys that run in the executor's units for large corpora give what the driver's
single pass gives: exact dedup over hash partitions keeps the same copies whatever the partitions,
and LSH banding + confirmation per band confirm the same pairs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.near import confirm_in_units, confirmed_in_one_process, planted_signatures, split_tiny

import mixer.stages.exact_dedup as exact
from mixer.core.records import Record
from mixer.core.stats import SourceStats
from mixer.core.tables import SpillFiles
from mixer.engine import LocalEngine
from mixer.kernels import near
from mixer.recipe.load import parse_recipe
from mixer.stages.base import StageContext
from mixer.stages.read import CandidateStore

SOURCES = ("first", "second", "third")


def _context(tmp_path: Path, engine: LocalEngine) -> StageContext:
    """Three sources, each in several candidate files, with copies inside files, across files and
    across sources, and some rows already marked out (as an earlier stage would)."""
    recipe = parse_recipe({"name": "t", "seed": 1, "raw_dir": str(tmp_path), "output": str(tmp_path / "out"),
                           "sources": [{"name": n, "adapter": "messages", "files": ["x.jsonl"]} for n in SOURCES]})
    stats = {n: SourceStats(n, "messages", None, "all", 1) for n in SOURCES}
    ctx = StageContext(recipe=recipe, executor=engine, work_dir=tmp_path, stats=stats)
    rng = random.Random(5)
    for name in SOURCES:
        paths = []
        for f in range(3):
            store = CandidateStore(tmp_path / f"{name}-{f}.arrow", batch_rows=50)
            for i in range(120):
                text = f"text {rng.randrange(150)}"  # about a third of the rows repeat an earlier text
                record: Record = {"dataset": name, "id": f"{name}-{f}-{i}",
                                  "messages": [{"role": "user", "content": text},
                                               {"role": "assistant", "content": "same answer"}]}
                store.add(record, file_index=f)
            paths.append(store.close())
        ctx.candidates.add(name, SpillFiles(paths))
        alive = ctx.candidates.alive[name]
        ctx.candidates.alive[name] = alive[alive % 17 != 0]
    return ctx


def _drops(ctx: StageContext) -> dict[str, list[tuple[str, str | None, str]]]:
    return {n: [(d.id, d.kept_id, d.detail) for d in ctx.sink.dropped(n)] for n in SOURCES}


def test_grouped_exact_dedup_keeps_the_same_copies_as_one_sort(tmp_path: Path, monkeypatch) -> None:
    with LocalEngine(2) as engine:
        (tmp_path / "single").mkdir()
        single = _context(tmp_path / "single", engine)
        exact.exact_dedup(single)
        monkeypatch.setattr(exact, "GROUP_MIN_ROWS", 0)
        monkeypatch.setattr(exact, "PARTITION_ROWS", 100)  # many partitions, several files each
        (tmp_path / "grouped").mkdir()
        grouped = _context(tmp_path / "grouped", engine)
        exact.exact_dedup(grouped)
    assert sum(len(v) for v in _drops(single).values()) > 100
    assert _drops(grouped) == _drops(single)
    assert {n: a.tolist() for n, a in grouped.candidates.alive.items()} == \
        {n: a.tolist() for n, a in single.candidates.alive.items()}
    assert {n: s.dropped for n, s in grouped.stats.items()} == {n: s.dropped for n, s in single.stats.items()}
    assert not list((tmp_path / "grouped").glob("exact-dedup-*"))  # the partitions are deleted


@pytest.mark.parametrize("partition_rows", [1, 10_000])
def test_grouped_exact_dedup_does_not_depend_on_the_number_of_partitions(
        partition_rows: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(exact, "GROUP_MIN_ROWS", 0)
    monkeypatch.setattr(exact, "PARTITION_ROWS", 97)
    with LocalEngine(1) as engine:
        (tmp_path / "a").mkdir()
        reference = _context(tmp_path / "a", engine)
        exact.exact_dedup(reference)
        monkeypatch.setattr(exact, "PARTITION_ROWS", partition_rows)
        (tmp_path / "b").mkdir()
        other = _context(tmp_path / "b", engine)
        exact.exact_dedup(other)
    assert _drops(other) == _drops(reference)



@pytest.mark.parametrize("split", [False, True], ids=["default-limits", "tiny-partitions-and-buckets"])
def test_lsh_units_confirm_the_same_pairs_as_banding_in_one_process(tmp_path: Path, split: bool,
                                                                      monkeypatch) -> None:
    sig, n_new = planted_signatures()
    expected, expected_jac = confirmed_in_one_process(sig, n_new, 0.7)
    large = split_tiny(monkeypatch) if split else []
    with LocalEngine(2) as engine:
        got, estimates = confirm_in_units(engine, tmp_path, sig, n_new, 0.7, tmp_path)
    assert len(expected) > 300
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(estimates, expected_jac)
    if split:  # the planted bucket (201 members) went through chunk units, in every band
        assert large and max(large) >= 201
    assert not list(tmp_path.glob("near-lsh-*"))


def test_signature_parts_read_global_rows_across_part_files(tmp_path: Path) -> None:
    """Ranges and row sets that straddle part files (one part empty) read the rows of the whole matrix."""
    sig = np.random.default_rng(3).integers(0, 2**32, size=(50, 8), dtype=np.uint32)
    bounds = [0, 7, 7, 20, 49, 50]
    paths = []
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        paths.append(tmp_path / f"part-{k}.npy")
        np.save(paths[-1], sig[lo:hi])
    parts = near.SignatureParts(tuple(paths), tuple(bounds), 8)
    assert parts.shape == sig.shape
    for lo, hi in [(0, 50), (5, 21), (7, 7), (19, 50), (48, 60)]:
        np.testing.assert_array_equal(parts.rows(slice(lo, hi)), sig[lo:hi])
    index = np.array([49, 0, 6, 7, 20, 19, 6, 33])  # unsorted, repeated
    np.testing.assert_array_equal(parts.rows(index), sig[index])


class RecordingEngine(LocalEngine):
    """A local engine that keeps what the signing units returned to the driver and, when the LSH key
    units start, which signature part files are in the work folder."""

    def __init__(self, work: Path) -> None:
        super().__init__(2)
        self.work = work
        self.signed: dict[str, list[Any]] = {}
        self.parts_at_lsh: list[str] = []

    def map(self, fn, units, *, threads=False, local=False):  # noqa: ANN001, ANN201
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        if name == "band_keys_unit":
            self.parts_at_lsh = sorted(p.name for p in self.work.glob("*/near-sig-*/signatures-*.npy"))
        results = super().map(fn, units, threads=threads, local=local)
        if name.startswith("sign_rows"):
            results = list(results)
            self.signed.setdefault(name, []).extend(results)
            return iter(results)
        return results


def test_a_build_in_units_writes_signatures_to_part_files_and_the_driver_gets_none(
        tmp_path: Path, monkeypatch) -> None:
    """From ``BAND_UNITS_MIN_ROWS`` candidates on, each signing unit writes its signatures to its own
    file in the work folder and returns only counts and assistant-text lengths; the LSH units read
    those parts; the build's bytes and near-dedup card equal the in-process path's, and the parts are
    gone afterwards."""
    from conftest import ROOT
    from helpers.hashes import assert_pinned, output_hashes

    import mixer.stages.near_dedup as stage
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    monkeypatch.chdir(ROOT)
    recipe = "tests/data/v2-sample-near-decont.yaml"
    with LocalEngine(2) as engine:
        in_process = build(load_recipe(recipe, output=str(tmp_path / "in-process")), engine=engine)
    monkeypatch.setattr(stage, "BAND_UNITS_MIN_ROWS", 0)
    monkeypatch.setattr(stage, "CHUNK_ROWS", 64)  # several part files per source
    work = tmp_path / "work"
    work.mkdir()
    with RecordingEngine(work) as engine:
        in_units = build(load_recipe(recipe, output=str(tmp_path / "in-units")), engine=engine, work_dir=work)
    results = engine.signed["sign_rows_to_part"]
    assert "sign_rows" not in engine.signed  # no unit sent signatures back
    assert len(results) > 5
    for count, live, chars, signed, damaged in results:  # narrow: counts and one length per row, no signatures
        assert isinstance(count, int) and isinstance(live, int) and 0 <= live <= count
        assert chars.shape == (count,) and chars.dtype == np.int64
        assert signed == count and damaged is None  # no read cache: every row is signed
    assert engine.parts_at_lsh == [f"signatures-{k:08d}.npy" for k in range(len(results))]
    assert not list(work.glob("**/near-sig-*")) and not list(work.glob("**/near-lsh-*"))
    assert in_units.card["near_dedup"]["removed_total"] > 0
    assert in_units.card["near_dedup"] == in_process.card["near_dedup"]
    assert output_hashes(in_units.out) == output_hashes(in_process.out)
    assert_pinned(in_units.out, "sample-near-decont")
