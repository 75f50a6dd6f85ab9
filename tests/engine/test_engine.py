"""The executor contract (mixer.engine): results in unit order, chunks that add up, errors surface."""

from __future__ import annotations

import os
import pickle
import time
from functools import partial
from pathlib import Path

import pytest
from conftest import ROOT

from mixer.engine import LocalEngine


def _slow_square(x: int) -> int:
    time.sleep(0.05 if x == 0 else 0.0)  # the first unit finishes last
    return x * x


def _lengths(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def _pid(_: object) -> int:
    return os.getpid()


def _fail(x: int) -> int:
    if x == 3:
        raise ValueError("unit 3 is bad")
    return x


def _fail_first_then_write_late(unit: tuple[int, str]) -> int:
    index, folder = unit
    if index == 0:
        raise ValueError("unit 0 failed")
    time.sleep(1.0)
    Path(folder, f"unit-{index}.done").write_text("written", encoding="utf-8")
    return index


def test_a_failed_map_waits_for_its_running_units_before_the_error_goes_up(tmp_path: Path) -> None:
    """The build removes its work folder as a unit's error passes: a unit still writing there must be done
    first, or the removal fails and hides the error naming the bad record."""
    with LocalEngine(2) as engine:  # checked before the engine closes (closing waits for its pool anyway)
        with pytest.raises(ValueError, match="unit 0 failed"):
            list(engine.map(_fail_first_then_write_late, [(0, str(tmp_path)), (1, str(tmp_path))]))
        assert (tmp_path / "unit-1.done").read_text(encoding="utf-8") == "written"


def _bad_record(x: int) -> int:
    from mixer.core.errors import InputError, Location

    if x == 2:
        raise InputError(Location("raw/chat.jsonl", line=3, record=2), "malformed JSON")
    return x


@pytest.mark.parametrize("threads", [False, True])
def test_map_returns_results_in_unit_order_whatever_finishes_first(threads: bool) -> None:
    with LocalEngine(2) as engine:
        assert list(engine.map(_slow_square, range(6), threads=threads)) == [0, 1, 4, 9, 16, 25]


def test_scatter_chunks_concatenate_to_the_result_of_one_call() -> None:
    texts = [f"text {i}" * (i % 7) for i in range(101)]
    with LocalEngine(2) as engine:
        chunks = engine.scatter(_lengths, texts, max_chunk=10)()
        assert len(chunks) > 2 and all(len(c) <= 10 for c in chunks)
        assert [n for c in chunks for n in c] == _lengths(texts)
        assert engine.scatter(_lengths, texts, local=True)() == [_lengths(texts)]


def test_work_runs_in_worker_processes_unless_local_or_one_worker() -> None:
    with LocalEngine(2) as engine:
        assert os.getpid() not in set(engine.map(_pid, range(4)))
        assert set(engine.map(_pid, range(4), local=True)) == {os.getpid()}
    with LocalEngine(1) as engine:
        assert set(engine.map(_pid, range(4))) == {os.getpid()}
        assert engine.submit(_pid, None)() == os.getpid()


def test_a_failing_unit_raises_in_the_caller() -> None:
    with LocalEngine(2) as engine, pytest.raises(ValueError, match="unit 3"):
        list(engine.map(_fail, range(6)))


def test_an_input_error_raised_in_a_worker_process_reaches_the_caller_with_its_location() -> None:
    from mixer.core.errors import InputError

    with LocalEngine(2) as engine, pytest.raises(InputError) as caught:
        list(engine.map(_bad_record, range(4)))
    assert str(caught.value) == "raw/chat.jsonl, line 3, record 2 (0-based): malformed JSON"
    assert caught.value.problem == "malformed JSON" and caught.value.location.line == 3


def test_one_large_source_is_read_in_parts_by_worker_processes(tmp_path: Path, monkeypatch, make_recipe) -> None:
    """A recipe of one big file is cut into parts for every worker (it used to be read in the main
    process, since workers were capped at the number of sources); a broken record in a later part
    fails the build with its line, as the in-process read does."""
    import json

    import mixer.stages.read
    from mixer.build import build
    from mixer.core.errors import InputError
    from mixer.recipe.load import load_recipe

    monkeypatch.setattr(mixer.stages.read, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", 2048)
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    raw = tmp_path / "raw" / "chat.jsonl"
    raw.parent.mkdir(parents=True)
    lines = [json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": f"question {i}"},
                                                      {"role": "assistant", "content": f"answer {i}"}]})
             for i in range(400)]
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = load_recipe(make_recipe([{"name": "chat", "adapter": "messages", "files": ["chat.jsonl"]}]))
    from helpers.hashes import output_hashes

    shipped: list[tuple[str, int]] = []
    with LocalEngine(2) as engine:
        real_map = engine.map

        def recording_map(fn, units, **kw):  # noqa: ANN001, ANN202
            units = list(units)
            shipped.append((fn.__name__, len(units)))
            return real_map(fn, units, **kw)

        monkeypatch.setattr(engine, "map", recording_map)
        in_parts = output_hashes(build(recipe, engine=engine, overwrite=True).out)
        assert any(name == "_read_task" and n >= 2 for name, n in shipped)  # parts, not one in-process read
        whole = output_hashes(build(recipe, engine=LocalEngine(1), overwrite=True).out)
        assert in_parts == whole
        lines[321] = '{"id": "broken", "messages": [ '  # cut off mid-record, in a later part of the file
        raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(InputError, match=r"chat\.jsonl, line 322"):
            build(recipe, engine=engine, overwrite=True)


def test_release_ends_the_stage_workers_and_the_engine_starts_new_ones_on_demand() -> None:
    engine = LocalEngine(2)
    first = set(engine.map(_pid, range(4)))
    engine.release()
    assert engine._processes is None
    second = set(engine.map(partial(_pid), range(4)))
    engine.close()
    assert first.isdisjoint(second)


class ShippingEngine:
    """A stand-in for a distributed engine: every unit crosses a pickle boundary (as it would to a Ray
    worker), units run in reverse order, results come back in unit order. Only ``submit(threads=True)``
    work, which the contract lets an engine run in the driver, is called directly."""

    parallelism = 3

    def __init__(self) -> None:
        self.shipped = 0

    def _ship(self, fn, *args):  # noqa: ANN001, ANN202 - any picklable callable and arguments
        fn, args = pickle.loads(pickle.dumps((fn, args)))
        self.shipped += 1
        return pickle.loads(pickle.dumps(fn(*args)))

    def map(self, fn, units, *, threads=False, local=False):  # noqa: ANN001, ANN201
        units = list(units)
        results = {i: self._ship(fn, u) for i, u in reversed(list(enumerate(units)))}
        return iter([results[i] for i in range(len(units))])

    def scatter(self, fn, items, *, local=False, width=None, max_chunk=None):  # noqa: ANN001, ANN201
        size = max(1, min(max_chunk or 7, 7))
        chunks = [list(items[i:i + size]) for i in range(0, len(items), size)] or [[]]
        results = list(self.map(fn, chunks))
        return lambda: results

    def submit(self, fn, *args, threads=False):  # noqa: ANN001, ANN201
        result = fn(*args) if threads else self._ship(fn, *args)
        return lambda: result

    def release(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize(("name", "recipe"), [("sample", "recipes/v2-sample.yaml"),
                                              ("sample-near-decont", "tests/data/v2-sample-near-decont.yaml")])
def test_a_build_whose_units_are_pickled_and_run_out_of_order_gives_the_same_bytes(
        name: str, recipe: str, tmp_path: Path, monkeypatch) -> None:
    from helpers.hashes import assert_pinned

    import mixer.kernels.near
    import mixer.stages.exact_dedup
    import mixer.stages.near_dedup
    import mixer.stages.read
    import mixer.tokens.count
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    monkeypatch.setattr(mixer.stages.read, "PARALLEL_MIN_BYTES", 0)  # every source read as units
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", 4096)  # large files in byte/row ranges
    monkeypatch.setattr(mixer.tokens.count, "POOL_MIN_CHARS", 0)  # token counts shipped in chunks
    monkeypatch.setattr(mixer.kernels.near, "POOL_MIN_CHARS", 0)  # signatures too
    monkeypatch.setattr(mixer.stages.exact_dedup, "GROUP_MIN_ROWS", 0)  # exact dedup as a group-by in units
    monkeypatch.setattr(mixer.stages.near_dedup, "BAND_UNITS_MIN_ROWS", 0)  # LSH bands as units
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    monkeypatch.chdir(ROOT)
    engine = ShippingEngine()
    result = build(load_recipe(recipe, output=str(tmp_path / "out")), engine=engine)
    assert engine.shipped > 20
    assert_pinned(result.out, name)


def test_json_arrays_streamed_and_read_in_parts_out_of_order_give_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    """Every JSON array of the sample streamed (as files of 64 MB or more are) and cut into byte
    ranges, one unit each, run in reverse order: the bytes of the sample build, which parsed each
    array whole."""
    from helpers.hashes import assert_pinned

    import mixer.readers.json_array
    import mixer.readers.raw
    import mixer.stages.read
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    monkeypatch.setattr(mixer.readers.json_array, "STREAM_MIN_BYTES", 4096)
    monkeypatch.setattr(mixer.readers.json_array, "JSON_CHUNK_BYTES", 1000)  # elements cut across chunks
    monkeypatch.setattr(mixer.stages.read, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(mixer.stages.read, "SPLIT_MIN_BYTES", 4096)
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    monkeypatch.chdir(ROOT)
    plans = []
    real_plan = mixer.stages.read.plan_reads
    monkeypatch.setattr(mixer.stages.read, "plan_reads",
                        lambda *a: plans.append((a[1], real_plan(*a))) or plans[-1][1])
    result = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "out")), engine=ShippingEngine())
    split = {p.name for paths, plan in plans if len(plan) > 1 for p in paths if mixer.readers.raw.json_array(p)}
    assert {"sharegpt_html_cleaned_and_split_4096.json", "alpaca_gpt4_data.json"} <= split
    assert_pinned(result.out, "sample")
