"""Killed builds and concurrent builds: a SIGKILL at any moment leaves the previous output intact,
no half-written folder under the output's name, every cache entry complete and valid or absent, and
the next build identical to an uninterrupted one; builds sharing a cache or an output folder never
corrupt each other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from helpers.caches import assert_caches_valid

from mixer.build import build
from mixer.core.outdir import lock_output
from mixer.recipe.load import load_recipe

SAMPLE = ROOT / "recipes" / "v2-sample.yaml"
#: as the CLI is run from the repository root: the card records the recipe and file paths as given
SAMPLE_ARG = "recipes/v2-sample.yaml"
RUNNER = ROOT / "tests" / "build" / "kill_runner.py"


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file of a build but timings.json (wall times differ run to run)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "timings.json"}


def _mixer(args: list[str], cache: Path, moment: str | None = None) -> subprocess.Popen:
    """``mixer build ARGS`` in a new process (killed at ``moment`` when given)."""
    env = {**os.environ, "MIXER_CACHE_DIR": str(cache)}
    command = [sys.executable, str(RUNNER), moment, "--"] if moment else \
        [sys.executable, "-c", "from mixer.cli import app; app(prog_name='mixer')", "build"]
    return subprocess.Popen([*command, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """The previous build (seed 1) and an uninterrupted reference of the next one (seed 2)."""
    base = tmp_path_factory.mktemp("builds")
    with pytest.MonkeyPatch.context() as m:
        m.chdir(ROOT)
        m.setenv("MIXER_CACHE_DIR", str(base / "cache"))
        build(load_recipe(SAMPLE.relative_to(ROOT), output=str(base / "previous"), seed=1))
        build(load_recipe(SAMPLE.relative_to(ROOT), output=str(base / "reference"), seed=2))
    return {"previous": _outputs(base / "previous"), "reference": _outputs(base / "reference"),
            "previous_dir": base / "previous"}  # type: ignore[dict-item]


@pytest.mark.parametrize("moment", ["reading", "exact_dedup", "selection", "writing_read_cache_entry",
                                    "writing_token_cache", "writing_shards", "writing_card"])
def test_a_build_killed_at_any_moment_leaves_the_previous_output_and_valid_caches(
        builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"  # a cold cache: the killed build writes entries
    shutil.copytree(builds["previous_dir"], out)
    killed = _mixer([SAMPLE_ARG, "--out", str(out), "--seed", "2", "-q"], cache, moment)
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr
    assert _outputs(out) == builds["previous"]
    assert [p.name for p in tmp_path.iterdir() if p.name == "out" or p.name.startswith("out")] == ["out"]
    assert_caches_valid(cache)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MIXER_CACHE_DIR", str(cache))
    build(load_recipe(SAMPLE.relative_to(ROOT), output=str(out), seed=2))
    assert _outputs(out) == builds["reference"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # leftovers cleared
    assert_caches_valid(cache)


def test_a_build_killed_during_near_dedup_leaves_valid_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    data["dedup"]["near"] = {"threshold": 0.7}
    data["raw_dir"] = str(ROOT / "samples" / "raw_train")
    recipe = tmp_path / "near.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    killed = _mixer([str(recipe), "--out", str(tmp_path / "out"), "-q"], tmp_path / "cache", "near_dedup")
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr
    assert not (tmp_path / "out").exists()
    assert_caches_valid(tmp_path / "cache")
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    warm = build(load_recipe(recipe, output=str(tmp_path / "out")))
    monkeypatch.setenv("MIXER_READ_CACHE", "0")
    cold = build(load_recipe(recipe, output=str(tmp_path / "cold")))
    assert _outputs(warm.out) == _outputs(cold.out)


def test_a_second_build_into_a_locked_output_fails_at_once_naming_the_holder(builds, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with lock_output(out):
        second = _mixer([SAMPLE_ARG, "--out", str(out), "-q"], tmp_path / "cache")
        _, stderr = second.communicate(timeout=120)
    assert second.returncode == 2
    assert f"pid {os.getpid()}" in stderr and "another build is writing" in stderr
    assert not out.exists()


def test_two_builds_started_together_into_one_output_give_one_correct_output(builds, tmp_path: Path) -> None:
    out = tmp_path / "out"
    both = [_mixer([SAMPLE_ARG, "--out", str(out), "--seed", "2", "-q"], tmp_path / f"cache{i}") for i in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in both]  # type: ignore[union-attr]
    assert any(code == 0 for code, _ in results), results
    for code, stderr in results:
        assert code == 0 or (code == 2 and "another build is writing" in stderr), stderr
    assert _outputs(out) == builds["reference"]


def test_builds_sharing_one_cache_started_together_match_serial_builds(builds, tmp_path: Path) -> None:
    for round_ in range(3):
        cache = tmp_path / f"cache{round_}"  # cold each round: both builds race to write every entry
        outs = [tmp_path / f"out{round_}-{i}" for i in (1, 2)]
        both = [_mixer([SAMPLE_ARG, "--out", str(o), "--seed", "2", "-q"], cache) for o in outs]
        for p in both:
            assert p.wait(timeout=300) == 0, p.stderr.read()  # type: ignore[union-attr]
        for o in outs:
            assert _outputs(o) == builds["reference"]
        assert_caches_valid(cache)
        timings = json.loads((outs[0] / "timings.json").read_text(encoding="utf-8"))
        assert timings["cache_damaged"] == {"read_cache": 0, "token_cache": 0}
