"""The test suite's shared helpers, in one place: ``ROOT``, recipe and raw-file writers, an adapter's
records of a file, and one build of the bundled sample recipe per session.

Test files in the folders below import what they need from here (``from conftest import ROOT``):
pytest puts this folder on ``sys.path`` when it loads this file."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train"))  # train_fixtures: the generate and preference tests use it too

# Token counts are cached on disk between builds (mixer.tokens.cache); tests never touch the user's
# cache. Worker processes inherit the variable.
os.environ["MIXER_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixer-test-cache-")
atexit.register(shutil.rmtree, os.environ["MIXER_CACHE_DIR"], ignore_errors=True)  # gone with the test run
SAMPLE_RECIPE = ROOT / "recipes" / "v2-sample.yaml"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Write a recipe YAML into tmp_path with raw_dir and output inside tmp_path."""

    def make(sources: list[dict[str, Any]], **top: Any) -> Path:
        data = {"name": "test", "seed": 1, "raw_dir": str(tmp_path / "raw"),
                "output": str(tmp_path / "out"), **top, "sources": sources}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return make


def read_all(adapter: Any, path: Path) -> list[Any]:
    """Every record (and adapter-level drop) an adapter makes of a file; parse failures fail the test."""
    from mixer.readers.base import ParseFailure

    out: list[Any] = []
    for item in adapter.read_file(path):
        assert not isinstance(item.value, ParseFailure), item.value
        out.extend(adapter.convert(item.value, item.location))
    return out


def flan_rows(n: int, prefix: str = "question") -> list[dict[str, str]]:
    return [{"inputs": f"{prefix} number {i}: what is {i} plus {i}?", "targets": str(2 * i)}
            for i in range(n)]


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One build of recipes/v2-sample.yaml, shared by the end-to-end tests."""
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    out = tmp_path_factory.mktemp("sample") / "out"
    # exactly what `mixer build recipes/v2-sample.yaml` does from the repository root, so the card
    # (recipe path, file paths) equals the committed data_cards/v2-sample one
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = build(load_recipe(SAMPLE_RECIPE.relative_to(ROOT), output=str(out)))
    finally:
        os.chdir(cwd)
    yield result
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain one-process run on a host with no GPU: no launcher variables, no re-exec or launch."""
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    from mixer.train.accel import launch

    monkeypatch.setattr(launch, "detect_gpu_count", lambda: 0)
