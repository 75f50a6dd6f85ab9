"""``mixer train prune``: the angular distance, the window it picks, and a pruned model that loads and trains."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.train.prune import REPORT_NAME, angular_distance, run_prune, window_distances


def _model_with_identity_blocks(out: Path, identity: tuple[int, ...], layers: int = 5) -> Path:
    """A random Llama whose blocks in ``identity`` add nothing to the residual stream (o_proj and down_proj
    zeroed), so the hidden state leaving them is exactly the one entering them: their distance is 0."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    a = tiny_assets()
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight.mul_(3.0)  # the others move the state clearly
            if i in identity:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_angular_distance_matches_hand_computed_values() -> None:
    # token 0: orthogonal (1/2); token 1: same direction (0); token 2: opposite (1); token 3: 60 degrees (1/3)
    a = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    b = torch.tensor([[[0.0, 5.0], [7.0, 0.0], [-3.0, -3.0], [0.5, math.sqrt(3) / 2]]], dtype=torch.float64)
    total, count = angular_distance(a, b)
    assert count.item() == 4
    assert total.item() == pytest.approx(0.5 + 0.0 + 1.0 + 1 / 3, abs=1e-9)
    # a padding mask leaves the masked tokens out of both the sum and the count
    total, count = angular_distance(a, b, torch.tensor([[1, 1, 0, 1]]))
    assert (total / count).item() == pytest.approx((0.5 + 1 / 3) / 3, abs=1e-9)


def test_window_distance_compares_each_window_input_with_its_output() -> None:
    states = [torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 0.0]]]),
              torch.tensor([[[0.0, -1.0]]])]
    # windows of two blocks: states 0 -> 2 (same direction: 0) and states 1 -> 3 (opposite: 1)
    assert [float(s / c) for s, c in window_distances(states, 2)] == pytest.approx([0.0, 1.0])
    # windows of one block: 0 -> 1, 1 -> 2, 2 -> 3 are all at right angles
    assert [float(s / c) for s, c in window_distances(states, 1)] == pytest.approx([0.5, 0.5, 0.5])


def test_prune_removes_the_identity_like_blocks_and_the_model_loads_and_trains(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from mixer.train.config import load_config
    from mixer.train.trainer import run

    model_dir = _model_with_identity_blocks(tmp_path / "m", identity=(2, 3))
    out = tmp_path / "pruned"
    choice = run_prune(model_dir, tiny_assets().sft_data, 2, out, samples=12)
    assert choice.removed == [2, 3]
    assert choice.distances[2] == pytest.approx(0.0, abs=1e-6)
    assert min(d for i, d in enumerate(choice.distances) if i != 2) > 0.01
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["removed"] == [2, 3] and report["num_layers_after"] == 3
    assert [w["start"] for w in report["windows"]] == [0, 1, 2, 3]
    assert report["calibration_records"] == 12

    original = AutoModelForCausalLM.from_pretrained(model_dir)
    pruned = AutoModelForCausalLM.from_pretrained(out)
    assert pruned.config.num_hidden_layers == 3 and len(pruned.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2]
    # the kept blocks are the original 0, 1 and 4, in order
    for new, old in ((0, 0), (1, 1), (2, 4)):
        assert torch.equal(pruned.model.layers[new].mlp.up_proj.weight, original.model.layers[old].mlp.up_proj.weight)
    # removing blocks that were the identity leaves the logits unchanged
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, original(ids).logits, rtol=1e-5, atol=1e-5)

    cfg = load_config("sft", "tiny-cpu", ["max_steps=1", "report_to=none"], model=str(out),
                      data=str(tiny_assets().sft_data), output_dir=str(tmp_path / "sft"))
    metrics = run(cfg)
    assert math.isfinite(metrics["train_loss"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "sft").config.num_hidden_layers == 3


def test_cli_prune_refuses_bad_input_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    from mixer.cli import app

    a = tiny_assets()
    runner = CliRunner()
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    cases = [
        (["--model", str(not_a_model), "--blocks", "1"], "not a model folder"),
        (["--model", str(a.model), "--blocks", "2"], "--blocks 2: the model has 2 decoder blocks"),
        (["--model", str(a.model), "--blocks", "0"], "remove between 1 and 1"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = runner.invoke(app, ["train", "prune", "--data", str(a.sft_data), "-o", str(out), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_prune_writes_the_model_and_report(tmp_path: Path) -> None:
    from mixer.cli import app

    a = tiny_assets()
    out = tmp_path / "pruned"
    result = CliRunner().invoke(app, ["train", "prune", "--model", str(a.model), "--data", str(a.sft_data),
                                      "--blocks", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / REPORT_NAME).read_text())
    assert len(report["windows"]) == 2 and report["num_layers_after"] == 1
    assert f"removed blocks {report['removed']}" in result.output
