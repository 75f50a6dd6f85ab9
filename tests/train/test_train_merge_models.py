"""``mixer train merge-models``: SLERP and linear merges of two models, checked against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_assets
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.merge_models import REPORT_NAME, check_compatible, run_merge_models


def _llama(out: Path, seed: int, hidden: int = 64, set_: dict[str, list[float]] | None = None) -> Path:
    """A random tiny Llama with the test tokenizer; ``set_`` zeroes the named tensors and sets their first
    entries."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets().tokenizer)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, values in (set_ or {}).items():
            flat = params[name].view(-1)
            flat.zero_()
            flat[: len(values)] = torch.tensor(values)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(path).state_dict())


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """The textbook SLERP of two tensors as flat vectors, with the angle taken between their directions."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = float(a64 @ b64 / (a64.norm() * b64.norm()))
    if abs(cos) > 0.9995:
        return ((1 - t) * a64 + t * b64).float().view(a.shape)
    theta = math.acos(cos)
    return ((math.sin((1 - t) * theta) * a64 + math.sin(t * theta) * b64) / math.sin(theta)).float().view(a.shape)


def test_linear_merge_is_the_weighted_sum_of_every_tensor(tmp_path: Path) -> None:
    a, b = _llama(tmp_path / "a", 0), _llama(tmp_path / "b", 1)
    out = run_merge_models(a, b, "linear", 0.25, tmp_path / "merged")
    wa, wb, wm = _weights(a), _weights(b), _weights(out)
    assert set(wm) == set(wa)
    for name in wa:
        torch.testing.assert_close(wm[name], 0.75 * wa[name] + 0.25 * wb[name], rtol=1e-5, atol=1e-6)
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["method"] == "linear" and report["t"] == 0.25


def test_slerp_matches_hand_computed_tensors_and_falls_back_to_linear_when_colinear(tmp_path: Path) -> None:
    # the final norm: unit directions at right angles -> at t = 0.5 both weights are sin(pi/4) / sin(pi/2)
    # the first block's input norm: B = 2 * A (colinear) -> the linear mean 1.5 * A
    right, colinear = "model.norm.weight", "model.layers.0.input_layernorm.weight"
    a = _llama(tmp_path / "a", 0, set_={right: [3.0, 0.0], colinear: [1.0, 2.0, -1.0]})
    b = _llama(tmp_path / "b", 1, set_={right: [0.0, 3.0], colinear: [2.0, 4.0, -2.0]})
    out = run_merge_models(a, b, "slerp", 0.5, tmp_path / "merged")
    wa, wb, wm = _weights(a), _weights(b), _weights(out)
    h = 3.0 / math.sqrt(2)
    torch.testing.assert_close(wm[right][:3], torch.tensor([h, h, 0.0]), rtol=1e-6, atol=1e-6)
    assert wm[right][3:].abs().max() == 0
    torch.testing.assert_close(wm[colinear][:4], torch.tensor([1.5, 3.0, -1.5, 0.0]), rtol=1e-6, atol=1e-6)
    # every tensor is the SLERP of its own pair, taken as a whole
    for name in wa:
        torch.testing.assert_close(wm[name], _slerp(wa[name], wb[name], 0.5), rtol=1e-5, atol=1e-6)
    # at the start SLERP is model A
    start = _weights(run_merge_models(a, b, "slerp", 0.0, tmp_path / "t0"))
    for name in wa:
        torch.testing.assert_close(start[name], wa[name])


def test_models_of_different_shapes_are_refused_with_the_tensor_named(tmp_path: Path) -> None:
    a, b = _llama(tmp_path / "a", 0), _llama(tmp_path / "b", 1, hidden=32)
    with pytest.raises(MixerError, match=r"differ in shape, e\.g\. .* is \[.*\] in A and \[.*\] in B"):
        check_compatible(a, b)


def test_cli_merge_models_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    from mixer.cli import app

    a, b = _llama(tmp_path / "a", 0), _llama(tmp_path / "b", 1, hidden=32)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [([str(a), str(b)], "differ in shape"), ([str(a), str(empty)], "not a model folder"),
             ([str(a), str(a), "--method", "ties"], "choose one of slerp, linear"),
             ([str(a), str(a), "--t", "1.5"], "must lie in [0, 1]")]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = CliRunner().invoke(app, ["train", "merge-models", *args, "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "empty"]


def test_cli_merge_models_does_not_leak_mergekits_torch_dtype_notice(tmp_path: Path) -> None:
    # mergekit sets the merged config's torch_dtype, and transformers 5 said "`torch_dtype` is deprecated!" on
    # stderr of every merge; a fresh process, as transformers says it once per process
    import subprocess
    import sys

    a, b = _llama(tmp_path / "a", 0), _llama(tmp_path / "b", 1)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "mixer", "train", "merge-models", str(a), str(b), "-o",
                             str(tmp_path / "merged")], capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "merged " in result.stdout and "torch_dtype" not in result.stderr, result.stderr


def test_the_merge_drops_only_that_one_message_and_only_while_it_merges(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mixer.train.merge_models import MERGEKIT_TORCH_DTYPE, _without_mergekit_torch_dtype_notice

    name, message = MERGEKIT_TORCH_DTYPE
    log = logging.getLogger(name)
    with caplog.at_level(logging.WARNING, logger=name):
        with _without_mergekit_torch_dtype_notice():
            log.warning(message)
            log.warning("another warning")
        log.warning(message)
    assert [r.getMessage() for r in caplog.records] == ["another warning", message]
