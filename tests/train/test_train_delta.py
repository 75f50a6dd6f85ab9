"""Delta tuning beyond LoRA (issue 21 point 4): every peft method trains on CPU, saves its adapter, and
merges when it is a weight delta; prompt and prefix tuning are refused by merge, and need padded rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.cli import app
from mixer.train.config import ConfigError, load_config
from mixer.train.delta import check_mergeable
from mixer.train.trainer import build_trainer, run

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "train" / "tiny-cpu.yaml"
STEP = ("max_steps=2", "learning_rate=1e-2", "lora_r=4", "lora_alpha=8", "lora_dropout=0.0",
        "num_virtual_tokens=4", "save_strategy=no")


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _cfg(out: Path, method: str, *sets: str):
    a = tiny_assets()
    batching = "batching=padded" if method in ("prompt_tuning", "prefix_tuning") else "batching=padding_free"
    return load_config("sft", TINY, [f"peft_method={method}", batching, *STEP, *sets], model=str(a.model),
                       data=str(a.sft_data), output_dir=str(out))


def _n_layers_heads_dim() -> tuple[int, int, int, int]:
    config = json.loads((tiny_assets().model / "config.json").read_text())
    heads = config["num_attention_heads"]
    return config["num_hidden_layers"], config["hidden_size"], config.get("num_key_value_heads", heads), heads


@pytest.mark.parametrize("method", ["dora", "ia3", "prompt_tuning", "prefix_tuning"])
def test_each_peft_method_trains_only_its_own_parameters_and_saves_its_adapter(tmp_path: Path, method: str) -> None:
    trainer = build_trainer(_cfg(tmp_path, method))
    named = dict(trainer.model.named_parameters())
    trainable = {k: v.numel() for k, v in named.items() if v.requires_grad}
    layers, hidden, kv_heads, heads = _n_layers_heads_dim()
    kv_dim = hidden // heads * kv_heads
    intermediate = json.loads((tiny_assets().model / "config.json").read_text())["intermediate_size"]
    if method == "ia3":  # one scale per output channel of k_proj, v_proj and per input channel of down_proj
        assert sum(trainable.values()) == layers * (kv_dim + kv_dim + intermediate)
    elif method == "prompt_tuning":  # one embedding per virtual token
        assert sum(trainable.values()) == 4 * hidden
    elif method == "prefix_tuning":  # a key and a value per layer per virtual token
        assert sum(trainable.values()) == 4 * layers * 2 * kv_dim
    else:  # DoRA: LoRA's A and B plus one magnitude per output channel of every adapted linear
        assert any("lora_magnitude_vector" in k for k in trainable) and all("lora_" in k for k in trainable)
    before = {k: v.detach().clone() for k, v in named.items()}
    trainer.train()
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(before[k], v.detach())}
    assert changed and changed <= set(trainable), sorted(changed - set(trainable))
    trainer.save_model(str(tmp_path))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    expected = {"dora": "LORA", "ia3": "IA3", "prompt_tuning": "PROMPT_TUNING", "prefix_tuning": "PREFIX_TUNING"}
    assert saved["peft_type"] == expected[method]
    assert saved.get("use_dora", False) == (method == "dora")


@pytest.mark.parametrize("method", ["dora", "ia3"])
def test_merge_folds_dora_and_ia3_adapters_into_the_base(tmp_path: Path, method: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    run(_cfg(adapter, method))
    result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "--output-dir", str(merged_dir),
                                      "--set", "dtype=float32"])
    assert result.exit_code == 0, result.output
    base = tiny_assets().model
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                             adapter).eval()
    x = torch.tensor([[1, 10, 20, 30, 40, 50, 60, 2]])
    with torch.no_grad():
        torch.testing.assert_close(merged(x).logits, with_adapter(x).logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_merge_refuses_an_adapter_that_adds_virtual_tokens(tmp_path: Path, method: str) -> None:
    adapter = tmp_path / "adapter"
    run(_cfg(adapter, method))
    result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "--output-dir", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "virtual tokens" in result.output and "nothing to fold" in result.output
    assert not (tmp_path / "m").exists()
    with pytest.raises(MixerError, match="virtual tokens"):
        check_mergeable({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}, "x")


def test_prompt_and_prefix_tuning_ask_for_padded_rows_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batching: padded"):
        load_config("sft", TINY, ["peft_method=prefix_tuning", "batching=packed"], model="m", data="d",
                    output_dir=str(tmp_path)).validate()


def test_peft_method_qlora_means_lora_over_4bit_weights_and_old_keys_still_say_lora(tmp_path: Path) -> None:
    from mixer.train.delta import resolved_method

    cfg = load_config("sft", TINY, ["peft_method=qlora"], model="m", data="d", output_dir=str(tmp_path))
    cfg.validate()
    assert cfg.use_peft and cfg.load_in_4bit and resolved_method(cfg) == "qlora"
    old = load_config("sft", TINY, ["use_lora=true"], model="m", data="d", output_dir=str(tmp_path))
    assert resolved_method(old) == "lora"
    with pytest.raises(ConfigError, match="peft_method"):
        load_config("sft", TINY, ["peft_method=adapters"], model="m", data="d", output_dir=str(tmp_path)).validate()
    with pytest.raises(ConfigError, match="use_peft is false"):
        load_config("sft", TINY, ["peft_method=ia3", "use_peft=false"], model="m", data="d",
                    output_dir=str(tmp_path)).validate()
