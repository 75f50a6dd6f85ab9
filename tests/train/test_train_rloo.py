"""mixer train rloo (issue 21 point 3): on-policy RL on a build's prompts against a `mixer train rm` reward
model, with a KL penalty to the starting model; rewards, KL and lengths per step in metrics.jsonl; a resumed
run continues. Real TRL RLOO steps on CPU with tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.cli import app
from mixer.train.config import ConfigError, load_config
from mixer.train.rloo import load_prompt_dataset
from mixer.train.trainer import run

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "train" / "tiny-cpu-rloo.yaml"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny reward model trained by `mixer train rm` on the toy pairs."""
    root = tmp_path_factory.mktemp("rloo-rm")
    cfg = load_config("rm", REPO / "train" / "tiny-cpu-rm.yaml", ["max_steps=2", "eval_size=0"],
                      model=str(tiny_assets().model), data=str(tiny_assets().pref_data), output_dir=str(root / "rm"))
    run(cfg)
    return root / "rm"


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_rloo_trains_on_sft_prompts_and_logs_reward_kl_and_length_per_step(tmp_path: Path, reward_model: Path) -> None:
    out = tmp_path / "rloo"
    a = tiny_assets()
    result = CliRunner().invoke(app, ["rloo", "-c", str(TINY), "--model", str(a.model), "--data", str(a.sft_data),
                                      "-o", str(out), "--set", f"reward_model={reward_model}", "--set", "max_steps=2"])
    assert result.exit_code == 0, result.output
    steps = [m for m in _metrics(out) if "reward" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert isinstance(m["reward"], float) and "kl" in m
        assert 0 < m["completions/mean_length"] <= 8  # max_completion_length
    assert (out / "model.safetensors").is_file()


def test_a_resumed_rloo_run_continues_from_its_checkpoint(tmp_path: Path, reward_model: Path) -> None:
    a = tiny_assets()
    common = [f"reward_model={reward_model}", "save_strategy=steps", "save_steps=1"]
    run(load_config("rloo", TINY, [*common, "max_steps=2"], model=str(a.model), data=str(a.pref_data),
                    output_dir=str(tmp_path)))
    assert (tmp_path / "checkpoint-2").is_dir()
    run(load_config("rloo", TINY, [*common, "max_steps=3", "resume_from_checkpoint=last"], model=str(a.model),
                    data=str(a.pref_data), output_dir=str(tmp_path), overwrite_output_dir=True))
    assert [m["step"] for m in _metrics(tmp_path) if "reward" in m] == [1, 2, 3]


def test_prompts_come_from_preference_and_sft_builds_up_to_the_last_user_turn() -> None:
    a = tiny_assets()
    sft = load_prompt_dataset(a.sft_data)["prompt"]
    assert all(p[-1]["role"] == "user" for p in sft)
    assert [m["content"] for m in sft[2]] == ["Say hello.", "Hello there!", "Now say goodbye."]
    assert load_prompt_dataset(a.pref_data)["prompt"][0] == [{"role": "user", "content": "What is two plus two?"}]


def test_rloo_without_a_reward_model_or_with_one_generation_is_refused(tmp_path: Path) -> None:
    a = tiny_assets()
    cfg = load_config("rloo", TINY, [], model=str(a.model), data=str(a.sft_data), output_dir=str(tmp_path))
    with pytest.raises(MixerError, match="reward_model"):
        run(cfg)
    with pytest.raises(ConfigError, match="num_generations >= 2"):
        load_config("rloo", TINY, ["num_generations=1"], model="m", data="d", output_dir=str(tmp_path)).validate()
