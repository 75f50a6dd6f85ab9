"""The Ray engine (mixer.engine.ray_engine) keeps the executor contract and gives the local engine's bytes.

One Ray instance (2 CPUs) is started for the whole module; the tests skip, saying why, only when Ray
is not installed. Builds here force every stage's work through the engine (the size thresholds that
keep small inputs in the driver are lowered), so the sample builds really run as Ray tasks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from helpers.engines import force_units
from helpers.hashes import output_hashes

from mixer.build import build
from mixer.core.errors import InputError, Location
from mixer.engine import LocalEngine
from mixer.recipe.load import load_recipe

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' runs these tests")

from mixer.engine.ray_engine import RayEngine  # noqa: E402 - after the skip


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[RayEngine]:
    """One Ray instance for the module; the engine joins it (and leaves it running when closed)."""
    # Ray's workers cannot import this test module: its helper functions travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield RayEngine()
    finally:
        ray.shutdown()



def _square_slow_first(x: int) -> int:
    import time

    time.sleep(0.5 if x == 0 else 0.0)
    return x * x


def _lengths(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def _bad_record(x: int) -> int:
    if x == 3:
        raise InputError(Location("raw/file.jsonl", line=7), "not valid JSON")
    return x


def _fail_first_then_write_late(unit: tuple[int, str]) -> int:
    import time

    index, folder = unit
    if index == 0:
        raise InputError(Location("raw/file.jsonl", line=1), "not valid JSON")
    time.sleep(1.0)
    Path(folder, f"unit-{index}.done").write_text("written", encoding="utf-8")
    return index


def test_a_failed_ray_map_waits_for_its_running_units_before_the_error_goes_up(
        ray_engine: RayEngine, tmp_path: Path) -> None:
    """The build removes its work folder as a unit's error passes: a unit still writing there would make the
    removal fail and hide the error naming the bad record (seen under load as 'Directory not empty')."""
    with pytest.raises(InputError, match="not valid JSON"):
        list(ray_engine.map(_fail_first_then_write_late, [(0, str(tmp_path)), (1, str(tmp_path))]))
    assert (tmp_path / "unit-1.done").read_text(encoding="utf-8") == "written"


def _env(name: str, _: object) -> str | None:
    return os.environ.get(name)


def test_ray_map_returns_results_in_unit_order_whatever_finishes_first(ray_engine: RayEngine) -> None:
    assert list(ray_engine.map(_square_slow_first, range(6))) == [0, 1, 4, 9, 16, 25]


def test_ray_scatter_chunks_concatenate_to_the_result_of_one_call(ray_engine: RayEngine) -> None:
    texts = [f"text {i}" * (i % 7) for i in range(101)]
    chunks = ray_engine.scatter(_lengths, texts, max_chunk=10)()
    assert len(chunks) > 2 and all(len(c) <= 10 for c in chunks)
    assert [n for c in chunks for n in c] == _lengths(texts)


def test_an_input_error_in_a_ray_task_surfaces_as_the_same_mixer_error(ray_engine: RayEngine) -> None:
    with pytest.raises(InputError) as caught:
        list(ray_engine.map(_bad_record, range(6)))
    assert str(caught.value) == "raw/file.jsonl, line 7: not valid JSON"
    assert caught.value.location == Location("raw/file.jsonl", line=7)
    assert "Traceback" not in str(caught.value) and "Ray" not in str(caught.value)


def test_ray_tasks_see_the_drivers_mixer_environment(ray_engine: RayEngine, monkeypatch) -> None:
    monkeypatch.setenv("MIXER_TOKEN_CACHE", "0")
    assert set(ray_engine.map(partial(_env, "MIXER_TOKEN_CACHE"), range(4))) == {"0"}
    monkeypatch.delenv("MIXER_TOKEN_CACHE")
    assert set(ray_engine.map(partial(_env, "MIXER_TOKEN_CACHE"), range(4))) == {None}


@pytest.mark.parametrize("recipe", ["recipes/v2-sample.yaml", "tests/data/v2-sample-near-decont.yaml"])
def test_sample_build_on_ray_writes_the_local_engines_bytes_and_card(
        recipe: str, ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    force_units(monkeypatch)
    monkeypatch.chdir(ROOT)
    with LocalEngine(2) as local:
        expected = build(load_recipe(recipe, output=str(tmp_path / "local")), engine=local)
    ray_engine.units_run.clear()
    result = build(load_recipe(recipe, output=str(tmp_path / "ray")), engine=ray_engine,
                   work_dir=tmp_path / "work")
    assert output_hashes(result.out) == output_hashes(expected.out)
    assert result.card["sources"] == expected.card["sources"]
    ran = {name for name, _ in ray_engine.units_run}
    assert {"_read_task", "file_info", "_count_chunk"} <= ran
    assert list((tmp_path / "work").iterdir()) == []  # the build's own work folder is gone


def test_a_file_uri_work_dir_goes_through_pyarrows_filesystem_layer(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    force_units(monkeypatch)
    monkeypatch.chdir(ROOT)
    work = tmp_path / "shared" / "work"
    result = build(load_recipe("recipes/v2-sample.yaml", output=str(tmp_path / "out")), engine=ray_engine,
                   work_dir=work.as_uri())
    assert work.is_dir() and list(work.iterdir()) == []
    assert result.card["totals"]["records"] > 0


def test_bad_input_read_in_a_ray_task_fails_the_build_with_the_record_named(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch, make_recipe) -> None:
    force_units(monkeypatch, split_bytes=2048)
    raw = tmp_path / "raw" / "chat.jsonl"
    raw.parent.mkdir(parents=True)
    lines = [json.dumps(_conversation(i, f"question {i}", f"answer {i}")) for i in range(400)]
    lines[321] = '{"id": "broken", "messages": [ '  # cut off mid-record, in a later part of the file
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = make_recipe([{"name": "chat", "adapter": "messages", "files": ["chat.jsonl"]}])
    ray_engine.units_run.clear()  # the engine is shared by the module's tests: count this build's units only
    with pytest.raises(InputError, match=r"chat\.jsonl, line 322"):
        build(load_recipe(recipe), engine=ray_engine)
    assert {name for name, _ in ray_engine.units_run} >= {"_read_task"}


# --- a generated corpus with planted duplicates across units and sources --------------------------------

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def _conversation(i: int, question: str, answer: str, source: str = "chat") -> dict[str, Any]:
    return {"dataset": source, "id": f"{source}-{i}",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_corpus(raw: Path, per_source: int = 30_000, seed: int = 7) -> dict[str, int]:
    """Two JSONL sources of ``per_source`` conversations each. Planted: exact copies of the other
    source's records and of far-away records of the same source (so copies cross read units and
    sources), and near copies (one word changed in a long answer). Returns how many of each."""
    rng = random.Random(seed)
    texts: dict[str, list[tuple[str, str]]] = {}
    for source in ("alpha", "beta"):
        rows = []
        for i in range(per_source):
            question = f"{source} question {i}: " + " ".join(rng.choices(WORDS, k=8))
            answer = " ".join(rng.choices(WORDS, k=40)) + f" {i}"
            rows.append((question, answer))
        texts[source] = rows
    planted = {"exact": 0, "near": 0}
    for k in range(0, per_source, 97):  # beta copies alpha (across sources)
        texts["beta"][k] = texts["alpha"][(k * 7919) % per_source]
        planted["exact"] += 1
    for k in range(0, per_source // 2, 211):  # alpha's second half repeats its first half (across units)
        texts["alpha"][per_source - 1 - k] = texts["alpha"][k]
        planted["exact"] += 1
    for k in range(5, per_source, 149):  # beta's near copies of alpha: one word of the answer changed
        question, answer = texts["alpha"][(k * 104729) % per_source]
        words = answer.split()
        words[len(words) // 2] = "zebra"
        texts["beta"][k] = (question, " ".join(words))
        planted["near"] += 1
    for source, rows in texts.items():
        path = raw / f"{source}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for i, (question, answer) in enumerate(rows):
                f.write(json.dumps(_conversation(i, question, answer, source)) + "\n")
    return planted


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("corpus")
    planted = write_corpus(root / "raw")
    recipe = {
        "name": "generated", "seed": 3, "raw_dir": str(root / "raw"), "output": str(root / "out"),
        "tokenizer": "tiktoken:cl100k_base", "max_tokens": 4096,
        "filters": {"llm_mentions": {"enabled": True}},
        "dedup": {"exact": True, "near": {"threshold": 0.8}},
        "output_options": {"shard_max_bytes": 2_000_000, "row_group_rows": 2_000},
        "sources": [{"name": "alpha", "adapter": "messages", "files": ["alpha.jsonl"], "take": 0.6},
                    {"name": "beta", "adapter": "messages", "files": ["beta.jsonl"], "take": "all",
                     "repeat": 2}],
    }
    path = root / "recipe.yaml"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path, planted


def _split_bytes_for(sizes: list[int], units: int) -> int:
    """A ``SPLIT_MIN_BYTES`` that cuts files of these sizes into ``units`` read units in all (each file
    is cut into at least 2 parts, one per worker, once it is cut at all: ``plan_reads``)."""
    for divisor in range(1, 100):
        split = sum(sizes) // divisor
        if sum(max(2, -(-size // split)) for size in sizes) == units:
            return split
    raise AssertionError(f"no split gives {units} units for {sizes}")


def _read_units(engine: Any) -> int:
    return sum(n for (name, _), n in engine.units_run.items() if name == "_read_task")


def test_generated_corpus_with_planted_duplicates_is_identical_read_as_2_or_7_units_local_or_ray(
        corpus: tuple[Path, dict[str, int]], ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    recipe, planted = corpus
    sizes = [p.stat().st_size for p in sorted((recipe.parent / "raw").glob("*.jsonl"))]
    builds = {}
    # local: exact dedup and LSH in the driver; ray: as group-bys in tasks (hash partitions, bands)
    for name, engine_kind, split in [("local-2", "local", sum(sizes)), ("ray-2", "ray", sum(sizes)),
                                     ("ray-7", "ray", _split_bytes_for(sizes, 7))]:
        with monkeypatch.context() as patch:
            force_units(patch, split_bytes=split, group=engine_kind == "ray")
            ray_engine.units_run.clear()
            if engine_kind == "ray":
                result = build(load_recipe(recipe, output=str(tmp_path / name)), engine=ray_engine)
                assert _read_units(ray_engine) == int(name[-1]), name
                assert {"partition_hashes", "partition_duplicates", "sign_rows_to_part", "band_partition_pairs",
                        "write_shard"} <= \
                    {fn for fn, _ in ray_engine.units_run}
            else:
                with LocalEngine(2) as local:
                    result = build(load_recipe(recipe, output=str(tmp_path / name)), engine=local)
        builds[name] = result
    hashes = {name: output_hashes(r.out) for name, r in builds.items()}
    assert hashes["ray-2"] == hashes["local-2"]
    assert hashes["ray-7"] == hashes["local-2"]
    card = builds["ray-7"].card
    dropped = {s["name"]: s["dropped"] for s in card["sources"]}
    exact = sum(d.get("exact_duplicate", 0) for d in dropped.values())
    near = sum(d.get("near_duplicate", 0) for d in dropped.values())
    # planted copies are found (a few planted positions overlap; MinHash estimates, so one changed word
    # in a short answer sometimes falls under the threshold)
    assert exact >= planted["exact"] * 0.95 and near >= planted["near"] * 0.5, dropped
    assert len(list((builds["ray-7"].out / "data").glob("*.parquet"))) > 1


# --- a worker killed mid-unit -----------------------------------------------------------------------------

def _die_once(marker: str, fn: Any, unit: Any) -> Any:
    """Run the unit, cut its candidate files to half (as a write cut short would leave them) and kill
    this worker before it can answer, the first time any unit gets here: its result is lost, its
    files are damaged, and Ray must run it again."""
    result = fn(unit)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return result
    for path in result.candidates:
        os.truncate(path, os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
    return result  # not reached


class KillingEngine:
    """The module's Ray engine, with one read unit's worker killed mid-run."""

    def __init__(self, engine: RayEngine, marker: Path) -> None:
        self.engine, self.marker = engine, marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def map(self, fn: Any, units: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "_read_task":
            fn = partial(_die_once, str(self.marker), fn)
        return self.engine.map(fn, units, **kwargs)


def test_a_ray_worker_killed_mid_unit_is_retried_and_the_output_is_unchanged(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    force_units(monkeypatch)
    monkeypatch.chdir(ROOT)
    recipe = "tests/data/v2-sample-near-decont.yaml"
    with LocalEngine(2) as local:
        expected = build(load_recipe(recipe, output=str(tmp_path / "local")), engine=local)
    marker = tmp_path / "killed"
    result = build(load_recipe(recipe, output=str(tmp_path / "ray")), engine=KillingEngine(ray_engine, marker))
    assert marker.exists()  # a worker did die mid-unit
    assert output_hashes(result.out) == output_hashes(expected.out)


def test_mixer_build_engine_ray_reports_bad_input_like_the_local_engine(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch, make_recipe) -> None:
    from typer.testing import CliRunner

    from mixer.cli import app

    force_units(monkeypatch, split_bytes=2048)
    raw = tmp_path / "raw" / "chat.jsonl"
    raw.parent.mkdir(parents=True)
    lines = [json.dumps(_conversation(i, f"question {i}", f"answer {i}")) for i in range(400)]
    lines[321] = '{"id": "broken", "messages": [ '
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = make_recipe([{"name": "chat", "adapter": "messages", "files": ["chat.jsonl"]}])
    runs = {engine: CliRunner().invoke(app, ["build", str(recipe), "-q", "--engine", engine,
                                             "--work-dir", (tmp_path / "work").as_uri()])
            for engine in ("local", "ray")}
    assert runs["ray"].exit_code == runs["local"].exit_code == 2
    assert runs["ray"].output == runs["local"].output
    assert "chat.jsonl, line 322" in runs["ray"].output and "Traceback" not in runs["ray"].output


def test_lsh_split_in_partitions_and_bucket_chunks_as_ray_tasks_confirms_the_one_process_pairs(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    from helpers.near import confirm_in_units, confirmed_in_one_process, planted_signatures, split_tiny

    sig, n_new = planted_signatures()
    expected, expected_jac = confirmed_in_one_process(sig, n_new, 0.7)
    large = split_tiny(monkeypatch)
    ray_engine.units_run.clear()
    got, estimates = confirm_in_units(ray_engine, tmp_path, sig, n_new, 0.7, tmp_path)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(estimates, expected_jac)
    assert max(large) >= 201  # the planted bucket, confirmed in chunks
    ran = {name for name, _ in ray_engine.units_run}
    assert {"band_keys_unit", "band_partition_pairs", "bucket_chunk_pairs"} <= ran
    assert not list(tmp_path.glob("near-lsh-*"))


def test_a_rebuild_in_ray_tasks_signs_no_row_the_signature_cache_holds(
        ray_engine: RayEngine, tmp_path: Path, monkeypatch) -> None:
    """From ``BAND_UNITS_MIN_ROWS`` on, the Ray signing tasks read and write the signature blocks in
    the read-cache entries themselves: a rebuild signs nothing and writes the cold build's bytes."""
    import mixer.stages.near_dedup

    force_units(monkeypatch)
    monkeypatch.setattr(mixer.stages.near_dedup, "CHUNK_ROWS", 8)  # several blocks per source
    monkeypatch.setenv("MIXER_READ_CACHE", "1")
    monkeypatch.setenv("MIXER_TOKEN_CACHE", "1")  # it also turns the read cache off
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    recipe = "tests/data/v2-sample-near-decont.yaml"
    ray_engine.units_run.clear()
    cold = build(load_recipe(recipe, output=str(tmp_path / "cold")), engine=ray_engine, work_dir=tmp_path / "work")
    assert "sign_rows_to_part" in {name for name, _ in ray_engine.units_run}
    assert cold.timings["near_dedup_signed_rows"] > 0
    assert list((tmp_path / "cache" / "reads").glob("*/near-*/rows-*.npz"))
    warm = build(load_recipe(recipe, output=str(tmp_path / "warm")), engine=ray_engine, work_dir=tmp_path / "work")
    assert warm.timings["near_dedup_signed_rows"] == 0
    assert output_hashes(warm.out) == output_hashes(cold.out)
    assert warm.card["near_dedup"] == cold.card["near_dedup"]
