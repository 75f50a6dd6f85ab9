"""The bytes of a build are pinned: refactoring the pipeline (issue 11) must not change any output file.

The hashes in ``tests/data/output_hashes/`` were recorded before the stage/engine redesign with
``bench/output_hashes.py``; Parquet files carry the writer's version, so they are only compared
under the pyarrow they were recorded with.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow
import pytest
from conftest import ROOT

from mixer.build import build
from mixer.recipe.load import load_recipe

HASHES = ROOT / "tests" / "data" / "output_hashes"
_spec = importlib.util.spec_from_file_location("output_hashes", ROOT / "bench" / "output_hashes.py")
output_hashes_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(output_hashes_module)

BUILDS = {
    "sample-near-decont": ("tests/data/v2-sample-near-decont.yaml", None),
    "reference-sample": ("recipes/tulu-v2-reference.yaml", "samples/raw_train"),
    "dpo-sample": ("recipes/dpo-sample.yaml", None),
}


def _expected(name: str) -> dict[str, str]:
    doc = json.loads((HASHES / f"{name}.json").read_text(encoding="utf-8"))
    if doc["pyarrow"] != pyarrow.__version__:
        pytest.skip(f"hashes recorded with pyarrow {doc['pyarrow']}, this is {pyarrow.__version__}")
    return doc["files"]


def test_sample_build_output_hashes_are_unchanged(sample_build) -> None:
    assert output_hashes_module.output_hashes(sample_build.out) == _expected("sample")


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_other_sample_builds_output_hashes_are_unchanged(name: str, tmp_path: Path, monkeypatch) -> None:
    expected = _expected(name)
    recipe, raw_dir = BUILDS[name]
    monkeypatch.chdir(ROOT)
    result = build(load_recipe(recipe, raw_dir=raw_dir, output=str(tmp_path / "out")))
    assert output_hashes_module.output_hashes(result.out) == expected
