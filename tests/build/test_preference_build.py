"""Preference builds (kind: preference) over the bundled UltraFeedback and HH-RLHF samples, and the
hand-off to the DPO trainer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from mixer.build import build
from mixer.core.errors import RecipeError
from mixer.core.records import PREFERENCE_OUTPUT_SCHEMA
from mixer.recipe.load import load_recipe, parse_recipe

DPO_SAMPLE = ROOT / "recipes" / "dpo-sample.yaml"


@pytest.fixture(scope="module")
def dpo_build(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dpo") / "out"
    return build(load_recipe(DPO_SAMPLE, raw_dir=str(ROOT / "samples" / "raw_train"), output=str(out)))


def test_preference_build_writes_prompt_chosen_rejected(dpo_build) -> None:
    table = pq.read_table(dpo_build.out / "data")
    assert table.schema.remove_metadata() == PREFERENCE_OUTPUT_SCHEMA
    for row in table.to_pylist():
        assert row["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        assert row["n_tokens"] <= 512


def test_preference_pairs_are_deduplicated_on_the_prompt(dpo_build) -> None:
    table = pq.read_table(dpo_build.out / "data").to_pylist()
    prompts = Counter(tuple((m["role"], m["content"]) for m in r["prompt"]) for r in table)
    assert max(prompts.values()) == 1
    uf = next(s for s in dpo_build.card["sources"] if s["name"] == "ultrafeedback")
    assert uf["dropped"]["exact_duplicate"] >= 1 and uf["dropped"]["tie"] >= 1


def test_preference_card_adds_up_and_front_matter_lists_the_pair_columns(dpo_build) -> None:
    for s in dpo_build.card["sources"]:
        assert s["records_in"] == s["dropped_total"] + s["not_sampled"] + s["selected"]
    readme = (dpo_build.out / "README.md").read_text()
    assert "name: rejected" in readme and "name: messages" not in readme


def test_sft_adapter_in_a_preference_recipe_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="yields sft records"):
        parse_recipe({"kind": "preference", "sources": [{"name": "flan_v2", "files": "x.jsonl"}]})
    with pytest.raises(RecipeError, match="yields preference records"):
        parse_recipe({"sources": [{"name": "hh_rlhf", "files": "x.jsonl.gz"}]})


def test_dpo_trainer_accepts_the_preference_build(dpo_build) -> None:
    pytest.importorskip("trl")
    from mixer.train.data import load_preference_dataset

    ds = load_preference_dataset(dpo_build.out)
    assert ds.num_rows == dpo_build.card["totals"]["records"]
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)


def test_sft_trainer_accepts_the_sample_sft_build(sample_build, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from mixer.train.data import load_parquet

    ds = load_parquet(sample_build.out, required=("messages",))
    assert ds.num_rows == sample_build.card["totals"]["records"]


def test_sft_on_the_sample_mixture_and_dpo_on_the_preference_build_take_real_steps(
        sample_build, dpo_build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two builds a user makes with the bundled recipes train as they are (a few TRL steps)."""
    pytest.importorskip("trl")
    import math

    from train_fixtures import tiny_assets

    from mixer.train.config import load_config
    from mixer.train.trainer import build_trainer

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    a = tiny_assets()
    sft = load_config("sft", ROOT / "train" / "tiny-cpu.yaml", ["max_steps=3", "max_train_samples=24"],
                      model=str(a.model), data=str(sample_build.out), output_dir=str(tmp_path / "sft"))
    trainer = build_trainer(sft)
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    dpo = load_config("dpo", ROOT / "train" / "tiny-cpu-dpo.yaml", ["max_steps=2"], model=str(a.model),
                      data=str(dpo_build.out), output_dir=str(tmp_path / "dpo"))
    trainer = build_trainer(dpo)
    trainer.train()
    first = next(h for h in trainer.state.log_history if "loss" in h)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
