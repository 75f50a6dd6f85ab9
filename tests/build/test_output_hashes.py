"""The output of a build is pinned: refactoring the pipeline (issues 11 and 22) must not change it.

The pins in ``tests/data/output_hashes/`` hold, for each sample build, the hashes of its content
(Parquet schema, row groups and rows read back; the card) and of its file bytes, both recorded with
``bench/output_hashes.py`` (see ``tests/helpers/hashes.py``). The content must match on any pyarrow.
The bytes of a Parquet file carry the writer's version, so they are compared under the pyarrow the pin
names; on another pyarrow these tests fail and say so, instead of skipping: a byte check that quietly
stops running is worse than one that asks for the right pyarrow or a deliberate re-recording.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from helpers.hashes import assert_pinned

from mixer.build import build
from mixer.recipe.load import load_recipe

BUILDS = {
    "sample-near-decont": ("tests/data/v2-sample-near-decont.yaml", None),
    "reference-sample": ("recipes/tulu-v2-reference.yaml", "samples/raw_train"),
    "dpo-sample": ("recipes/dpo-sample.yaml", None),
}


def test_sample_build_content_and_bytes_are_unchanged(sample_build) -> None:
    assert_pinned(sample_build.out, "sample")


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_other_sample_builds_content_and_bytes_are_unchanged(name: str, tmp_path: Path, monkeypatch) -> None:
    recipe, raw_dir = BUILDS[name]
    monkeypatch.chdir(ROOT)
    result = build(load_recipe(recipe, raw_dir=raw_dir, output=str(tmp_path / "out")))
    assert_pinned(result.out, name)
