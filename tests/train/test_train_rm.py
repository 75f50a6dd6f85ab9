"""Reward models: real TRL RewardTrainer steps on CPU with a tiny random Llama, margins, held-out accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_fixtures import tiny_assets, write_preference_build
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.cli import app
from mixer.train.config import ConfigError, RunConfig, load_config
from mixer.train.reward import RewardScorer, load_reward_dataset, load_reward_model, margin_from_scores
from mixer.train.rm import warmup_steps
from mixer.train.trainer import build_trainer, run

REPO = Path(__file__).resolve().parents[2]
TINY_RM = REPO / "train" / "tiny-cpu-rm.yaml"
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_process")


def _m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def separable_pairs(n: int = 24) -> list[dict]:
    """Chosen replies are always the same polite answer, rejected ones always the same refusal: one feature
    (the reply's tokens) separates every pair, so a reward model can reach full accuracy."""
    return [{"dataset": "toy_rm", "id": f"sep_{i}", "prompt": [_m("user", f"The quick brown fox {i} jumps?")],
             "chosen": [_m("assistant", "Yes, on a clear day.")],
             "rejected": [_m("assistant", "No, it is green.")]} for i in range(n)]


@pytest.fixture(scope="module")
def separable_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_preference_build(tmp_path_factory.mktemp("rm-sep"), separable_pairs())


def _cfg(data: Path, out: Path, *sets: str) -> RunConfig:
    a = tiny_assets()
    return load_config("rm", TINY_RM, list(sets), model=str(a.model), data=str(data), output_dir=str(out))


def test_margin_maps_rating_gaps_to_llama2_margin_small() -> None:
    # Table 28 "Margin Small": negligibly better 0, slightly better 1/3, better 2/3, significantly better 1
    assert [margin_from_scores(8, 8 - g) for g in (0, 1, 2, 3)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert margin_from_scores(10, 1) == 1.0  # capped
    assert margin_from_scores(7.5, 6.0) == pytest.approx(0.5)  # half points scale linearly
    assert margin_from_scores(5, 7) == 0.0  # a reversed pair never asks for the reverse order
    assert margin_from_scores(9, 5, full_gap=8) == pytest.approx(0.5)


def test_rm_recipe_carries_the_llama2_values() -> None:
    cfg = load_config("rm", REPO / "train" / "rm.yaml")
    assert (cfg.num_train_epochs, cfg.learning_rate, cfg.effective_batch_size) == (1.0, 1e-5, 512)
    assert (cfg.lr_scheduler_type, cfg.lr_scheduler_kwargs) == ("cosine_with_min_lr", {"min_lr_rate": 0.1})
    assert (cfg.warmup_ratio, cfg.min_warmup_steps) == (0.03, 5)
    assert cfg.margin is False and cfg.batching == "padded"


def test_a_reward_model_scores_in_bf16_on_a_gpu_and_fp32_on_cpu_unless_a_dtype_is_named() -> None:
    from mixer.train.reward import scoring_dtype

    assert (scoring_dtype("auto", "cuda"), scoring_dtype("auto", "cuda:1"), scoring_dtype("auto", "cpu")) == (
        "bfloat16", "bfloat16", "float32")
    assert scoring_dtype("float32", "cuda") == "float32"


def test_warmup_is_three_percent_of_steps_but_at_least_five() -> None:
    cfg = load_config("rm", REPO / "train" / "rm.yaml")
    assert warmup_steps(cfg, n_train=512 * 100) == 5  # 3 % of 100 steps = 3 -> 5
    assert warmup_steps(cfg, n_train=512 * 1000) == 30
    assert warmup_steps(cfg, n_train=512 * 2) == 2  # never more than the run has


def test_rm_rejects_padding_free_batches() -> None:
    with pytest.raises(ConfigError, match="padded"):
        load_config("rm", TINY_RM, ["batching=padding_free"])


def test_rm_loss_falls_and_held_out_accuracy_is_written(separable_build: Path, tmp_path: Path) -> None:
    cfg = _cfg(separable_build, tmp_path / "rm", "max_steps=12")
    metrics = run(cfg)
    lines = [json.loads(x) for x in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    result = json.loads((tmp_path / "rm" / "rm_eval.json").read_text())
    assert result["eval_pairs"] == 4 and result["eval_pairwise_accuracy"] == 1.0
    assert lines[-1]["eval_pairwise_accuracy"] == 1.0 and metrics["eval_pairwise_accuracy"] == 1.0
    # the saved folder is a reward model a scorer can load, and it orders the pair as trained
    scorer = RewardScorer(tmp_path / "rm")
    good, bad = scorer.score([[_m("user", "Is it?"), _m("assistant", "Yes, on a clear day.")],
                              [_m("user", "Is it?"), _m("assistant", "No, it is green.")]])
    assert good > bad
    # dtype auto: fp32 on CPU (bf16 on a GPU, as generate's policy); a named dtype is taken as given
    assert str(scorer.model.dtype) == "torch.float32"
    assert str(RewardScorer(tmp_path / "rm", dtype="bfloat16").model.dtype) == "torch.bfloat16"


def test_rm_in_bf16_trains_on_compute_copies_and_scores_held_out_pairs_on_plain_fp32_weights(
        separable_build: Path, tmp_path: Path) -> None:
    import yaml

    cfg = _cfg(separable_build, tmp_path / "rm", "max_steps=12", "bf16=true", "trl_args.use_cpu=true")
    trainer = build_trainer(cfg)
    assert trainer.mixer_runtime.mixed_precision == "bf16_copy" and trainer.mixer_compute_copies is not None
    from mixer.train.rm import evaluate_held_out
    from mixer.train.trainer import train_and_save

    train_and_save(trainer, cfg)
    assert not any(m._forward_pre_hooks for m in trainer.model.modules())
    assert {str(p.dtype) for p in trainer.model.parameters()} == {"torch.float32"}
    assert evaluate_held_out(trainer, cfg)["eval_pairwise_accuracy"] == 1.0
    resolved = yaml.safe_load((tmp_path / "rm" / "mixer_train_config.yaml").read_text())["resolved"]
    assert resolved["mixed_precision"] == "bf16_copy"


def test_every_rank_scores_the_held_out_pairs_of_a_sharded_model_and_only_rank_0_writes(
        separable_build: Path, tmp_path: Path) -> None:
    """Under FSDP2 (rm.yaml's preset) or ZeRO-3 each forward all-gathers the sharded weights: a forward run by
    rank 0 alone waits for ranks that never join (a hang until the collective times out). Every rank must run
    the same held-out forwards; only rank 0 writes the result. Unsharded (DDP) ranks other than 0 skip it."""
    from mixer.train.rm import EVAL_NAME, evaluate_held_out

    out = tmp_path / "rm"
    cfg = _cfg(separable_build, out)
    trainer = build_trainer(cfg)
    out.mkdir(parents=True, exist_ok=True)
    calls: list[int] = []
    trainer.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    trainer.is_world_process_zero = lambda: False

    trainer.is_fsdp_enabled = False  # DDP rank 1: a full replica, rank 0 scores alone
    assert evaluate_held_out(trainer, cfg) is None and calls == []

    trainer.is_fsdp_enabled = True  # FSDP rank 1: takes part in every forward, writes nothing
    result = evaluate_held_out(trainer, cfg)
    assert calls and result is not None and result["eval_pairs"] == 4
    assert not (out / EVAL_NAME).exists() and not (out / "metrics.jsonl").exists()

    trainer.is_world_process_zero = lambda: True  # FSDP rank 0: the same forwards, and the files
    n = len(calls)
    assert evaluate_held_out(trainer, cfg) == result and len(calls) == 2 * n
    assert json.loads((out / EVAL_NAME).read_text()) == result


def test_held_out_pairs_are_not_trained_on(separable_build: Path, tmp_path: Path) -> None:
    trainer = build_trainer(_cfg(separable_build, tmp_path))
    assert len(trainer.train_dataset) == 20 and len(trainer.mixer_eval_pairs) == 4


def test_margin_column_comes_from_ultrafeedback_ratings(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "prompt_id": str(i), "chosen": [_m("user", f"q{i}"), _m("assistant", "good")],
             "rejected": [_m("user", f"q{i}"), _m("assistant", "bad")], "score_chosen": 8.0,
             "score_rejected": 8.0 - i} for i in range(4)]
    path = tmp_path / "train_prefs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ds = load_reward_dataset(path, margin=True)
    assert ds.column_names == ["chosen", "rejected", "margin"]
    assert ds["margin"] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert load_reward_dataset(path).column_names == ["chosen", "rejected"]


def test_margin_without_ratings_exits_2_naming_the_columns(tmp_path: Path) -> None:
    a = tiny_assets()
    result = runner.invoke(app, ["rm", "--config", str(TINY_RM), "--model", str(a.model), "--data",
                                 str(a.pref_data), "--output-dir", str(tmp_path), "--set", "margin=true"])
    assert result.exit_code == 2, result.output
    assert "score_chosen" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def dpo_sample_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recipes/dpo-sample.yaml built: UltraFeedback pairs with their ratings, HH-RLHF pairs without."""
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    out = tmp_path_factory.mktemp("rm-dpo-sample") / "out"
    return build(load_recipe(REPO / "recipes" / "dpo-sample.yaml", raw_dir=str(UF_FILE.parents[1]),
                             output=str(out))).out


UF_FILE = REPO / "samples" / "raw_train" / "ultrafeedback" / "train_prefs-00000-of-00001.parquet"


def _keys(files: list[str], *, build: bool) -> list[tuple[str, str]]:
    """(pair id, chosen reply stripped) per row, in the order load_reward_dataset reads the rows."""
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    if build:
        return [(r["id"], r["chosen"][0]["content"]) for r in rows]
    return [(f"ultrafeedback_{r['prompt_id']}", r["chosen"][-1]["content"].strip()) for r in rows]


def test_margin_from_a_built_mixture_equals_the_one_from_the_raw_ultrafeedback_file(dpo_sample_build: Path) -> None:
    from mixer.train.data import resolve_parquet_files

    built = load_reward_dataset(dpo_sample_build, margin=True)
    raw = load_reward_dataset(UF_FILE, margin=True)
    from_build = dict(zip(_keys(resolve_parquet_files(dpo_sample_build), build=True), built["margin"], strict=True))
    from_raw = dict(zip(_keys([str(UF_FILE)], build=False), raw["margin"], strict=True))
    uf = {k: m for k, m in from_build.items() if k[0].startswith("ultrafeedback_")}
    assert len(uf) == 14 and any(0 < m < 1 for m in uf.values()) and 1.0 in uf.values()
    assert uf == {k: from_raw[k] for k in uf}
    assert all(m == 0.0 for k, m in from_build.items() if k[0].startswith("hh_rlhf_"))


def test_unrated_pairs_of_a_mixed_build_get_margin_zero_with_a_warning_counting_them(
        dpo_sample_build: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="mixer.train"):
        ds = load_reward_dataset(dpo_sample_build, margin=True)
    assert "15 of 29 pairs carry no scores (hh_rlhf: 15) and get margin 0" in caplog.text
    assert "other 14 get min(gap / 3, 1)" in caplog.text
    assert sum(m > 0 for m in ds["margin"]) == 14


def test_rm_trains_with_margins_from_a_built_mixture(dpo_sample_build: Path, tmp_path: Path) -> None:
    cfg = _cfg(dpo_sample_build, tmp_path / "rm", "margin=true", "max_steps=2", "eval_size=0")
    trainer = build_trainer(cfg)
    margins = trainer.train_dataset["margin"]
    # the UltraFeedback pairs' rating gaps (pairs past max_length are left out), HH-RLHF's 0
    assert any(m > 0 for m in margins) and any(m == 0 for m in margins)
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_margin_on_a_build_where_no_pair_carries_scores_exits_2(tmp_path: Path) -> None:
    from mixer.build import build
    from mixer.recipe.load import load_recipe

    recipe = tmp_path / "hh.yaml"
    recipe.write_text(f"name: hh\nkind: preference\nraw_dir: {UF_FILE.parents[1]}\noutput: {tmp_path / 'hh'}\n"
                      "sources:\n  - {name: hh_rlhf, files: hh_rlhf/helpful-base/train.jsonl.gz}\n")
    out = build(load_recipe(recipe)).out
    a = tiny_assets()
    result = runner.invoke(app, ["rm", "--config", str(TINY_RM), "--model", str(a.model), "--data", str(out),
                                 "--output-dir", str(tmp_path / "rm"), "--set", "margin=true"])
    assert result.exit_code == 2, result.output
    assert str(out) in result.output and "no pair carries scores" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "rm" / "metrics.jsonl").exists()


def test_rm_dry_run_prints_the_resolved_config() -> None:
    result = runner.invoke(app, ["rm", "--config", "tiny-cpu-rm", "--model", "m", "--data", "d",
                                 "--output-dir", "o", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "margin: false" in result.output and "in-process" in result.output


def test_a_policy_model_is_not_taken_for_a_reward_model() -> None:
    with pytest.raises(MixerError, match="not a reward model"):
        load_reward_model(tiny_assets().model)


def test_held_out_pairs_longer_than_max_length_are_left_out_and_counted_as_in_training() -> None:
    from mixer.train.reward import RewardScorer, pairwise_accuracy

    a = tiny_assets()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    scorer = RewardScorer(model=model, tokenizer=tokenizer)
    short = separable_pairs(3)
    long = {**short[0], "id": "long", "chosen": [_m("assistant", "word " * 400)]}
    result = pairwise_accuracy(scorer, [*short, long], max_length=64)
    assert result["eval_pairs"] == 3 and result["eval_pairs_over_max_length"] == 1
    assert pairwise_accuracy(scorer, [*short, long])["eval_pairs"] == 4  # no limit: all scored
    none_fit = pairwise_accuracy(scorer, [long], max_length=64)
    assert none_fit["eval_pairs"] == 0 and none_fit["eval_pairwise_accuracy"] is None
