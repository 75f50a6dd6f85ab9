"""Real TRL DPO steps on CPU with a tiny random Llama and a conversational preference build."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.cli import app
from mixer.train.config import load_config
from mixer.train.data import load_preference_dataset
from mixer.train.trainer import build_trainer

REPO = Path(__file__).resolve().parents[2]
TINY_DPO = REPO / "train" / "tiny-cpu-dpo.yaml"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_dpo_starts_at_ln2_and_the_margin_rises(tmp_path: Path) -> None:
    a = tiny_assets()
    cfg = load_config("dpo", TINY_DPO, ["max_steps=10"], model=str(a.model), data=str(a.pref_data),
                      output_dir=str(tmp_path))
    trainer = build_trainer(cfg)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 10
    # policy == reference at step 0: every implicit reward is 0, so the sigmoid loss is -log sigmoid(0)
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    margins = [h["rewards/margins"] for h in logs]
    assert all(math.isfinite(h["loss"]) for h in logs)
    assert sum(margins[-4:]) / 4 > sum(margins[:4]) / 4 + 0.05, margins
    assert logs[-1]["loss"] < math.log(2)


def test_preference_data_must_be_conversational(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "hi", "chosen": "a", "rejected": "b"}]), tmp_path / "p.parquet")
    with pytest.raises(MixerError, match="messages"):
        load_preference_dataset(tmp_path / "p.parquet")


def test_sft_build_given_to_dpo_names_the_missing_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.train.accel import launch

    monkeypatch.setattr(launch, "detect_gpu_count", lambda: 0)
    a = tiny_assets()
    result = CliRunner().invoke(app, ["dpo", "--config", str(TINY_DPO), "--model", str(a.model),
                                      "--data", str(a.sft_data), "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "prompt" in result.output and "chosen" in result.output


def test_reference_computes_in_fp32_like_the_policy_when_bf16_is_off(tmp_path: Path) -> None:
    """With ``bf16: false`` the policy (fp32 master weights) computes in fp32; a reference loaded in the recipe's
    ``dtype: bfloat16`` would compute in bf16, so the two differ before any update and the loss starts off ln 2."""
    import torch

    a = tiny_assets()
    cfg = load_config("dpo", TINY_DPO, ["max_steps=1", "dtype=bfloat16"], model=str(a.model), data=str(a.pref_data),
                      output_dir=str(tmp_path))
    assert cfg.bf16 is False
    trainer = build_trainer(cfg)
    assert trainer.model.dtype == torch.float32
    assert trainer.ref_model.dtype == torch.float32
    trainer.train()
    first = next(h for h in trainer.state.log_history if "loss" in h)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
