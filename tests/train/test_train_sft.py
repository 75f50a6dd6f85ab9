"""Real TRL SFT steps on CPU with a tiny random Llama: masks, learning, batching modes, resume, LoRA, merge."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from train_fixtures import SFT_RECORDS, tiny_assets
from transformers import TrainerCallback
from typer.testing import CliRunner

from mixer.train.cli import app
from mixer.train.config import RunConfig, load_config
from mixer.train.trainer import build_trainer, run

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "train" / "tiny-cpu.yaml"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _cfg(out: Path, *sets: str) -> RunConfig:
    a = tiny_assets()
    return load_config("sft", TINY, list(sets), model=str(a.model), data=str(a.sft_data), output_dir=str(out))


def _losses(trainer: Any) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _labelled_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """Contiguous runs of tokens that carry a label (i.e. are in the loss)."""
    spans: list[list[int]] = []
    prev = False
    for tok, lab in zip(input_ids, labels, strict=True):
        if lab != -100:
            if not prev:
                spans.append([])
            spans[-1].append(tok)
        prev = lab != -100
    return spans


def test_assistant_only_mask_is_exactly_the_assistant_turns(tmp_path: Path) -> None:
    trainer = build_trainer(_cfg(tmp_path, "batching=padded"))
    tok = trainer.processing_class
    eos = tok.eos_token
    assert len(trainer.train_dataset) == len(SFT_RECORDS)
    for row, record in zip(trainer.train_dataset, SFT_RECORDS, strict=True):
        spans = [tok.decode(s) for s in _labelled_spans(row["input_ids"], row["labels"])]
        expected = [m["content"] + eos for m in record["messages"] if m["role"] == "assistant"]
        assert spans == expected, record["id"]
        # the unlabelled part is everything else: role headers, user and system turns
        unlabelled = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab == -100])
        for m in record["messages"]:
            if m["role"] != "assistant":
                assert m["content"] in unlabelled
        assert "<|assistant|>" in unlabelled and eos not in unlabelled
        assert row["input_ids"][0] == tok.bos_token_id and row["labels"][0] == -100  # <s> first, as open-instruct
    # a multi-turn example with a system turn is in the sample
    assert any(m["role"] == "system" for m in SFT_RECORDS[1]["messages"])
    assert sum(m["role"] == "assistant" for m in SFT_RECORDS[5]["messages"]) == 3


def test_padding_free_batches_keep_the_mask(tmp_path: Path) -> None:
    """The collator flattens a micro-batch; labels still cover only assistant tokens."""
    trainer = build_trainer(_cfg(tmp_path, "batching=padding_free"))
    batch = trainer.data_collator([trainer.train_dataset[1], trainer.train_dataset[5]])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    spans = [trainer.processing_class.decode(s) for s in _labelled_spans(ids, labels)]
    assert spans == ["Blue.</s>", "C, A, T.</s>", "D, O, G.</s>", "F, O, X.</s>"]
    assert (batch["position_ids"][0] == 0).sum().item() == 2  # two sequences, positions restart


def test_sft_loss_finite_and_falling_when_overfitting(tmp_path: Path) -> None:
    trainer = build_trainer(_cfg(tmp_path, "max_train_samples=4", "max_steps=30", "learning_rate=3e-3",
                                     "lr_scheduler_type=constant"))
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_padding_free_equals_padded_and_packed_runs(tmp_path: Path) -> None:
    """Padding-free is only a layout change: same examples per step, same loss as padded batches."""
    runs = {}
    for mode in ("padding_free", "padded", "packed"):
        trainer = build_trainer(_cfg(tmp_path / mode, f"batching={mode}", "max_steps=4"))
        trainer.train()
        runs[mode] = _losses(trainer)
        assert len(runs[mode]) == 4 and all(math.isfinite(x) for x in runs[mode])
    assert runs["padding_free"] == pytest.approx(runs["padded"], rel=1e-4)
    assert runs["packed"][-1] < runs["packed"][0]


def test_a_step_weighs_every_assistant_token_equally_however_examples_fall_into_micro_batches(tmp_path: Path) -> None:
    """transformers' num_items_in_batch: the step's loss is the sum over the step's assistant tokens divided by their
    number, so 4 micro-batches of 1 and 1 micro-batch of 4 give the same losses and the same weights (README)."""
    runs = {}
    for per_device in (1, 4):
        trainer = build_trainer(_cfg(tmp_path / str(per_device), f"per_device_train_batch_size={per_device}",
                                         "max_train_samples=8", "max_steps=2", "lr_scheduler_type=constant"))
        assert trainer.args.gradient_accumulation_steps == 4 // per_device
        trainer.train()
        runs[per_device] = (_losses(trainer), {k: v.detach().clone() for k, v in trainer.model.named_parameters()})
    assert runs[1][0] == pytest.approx(runs[4][0], rel=1e-5)
    for name, weight in runs[1][1].items():
        torch.testing.assert_close(weight, runs[4][1][name], rtol=0, atol=1e-5)


class _CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


def test_resume_from_checkpoint(tmp_path: Path) -> None:
    common = ["save_strategy=steps", "save_steps=2", "lr_scheduler_type=constant"]
    # reference: 6 uninterrupted steps
    ref = build_trainer(_cfg(tmp_path / "ref", *common, "max_steps=6"))
    ref.train()
    # interrupted after 4 steps (a checkpoint every 2), then resumed to 6
    run(_cfg(tmp_path / "run", *common, "max_steps=4"))
    assert (tmp_path / "run" / "checkpoint-4").is_dir()
    counter = _CountSteps()
    resumed = build_trainer(_cfg(tmp_path / "run", *common, "max_steps=6", "resume_from_checkpoint=last"),
                                callbacks=[counter])
    from mixer.train.trainer import resume_checkpoint

    ckpt = resume_checkpoint(resumed_cfg := _cfg(tmp_path / "run", "resume_from_checkpoint=last"))
    assert ckpt is not None and ckpt.endswith("checkpoint-4") and resumed_cfg.resume_from_checkpoint == "last"
    resumed.train(resume_from_checkpoint=ckpt)
    assert counter.steps == [5, 6]  # only the remaining steps ran
    assert resumed.state.global_step == 6
    assert _losses(resumed)[-2:] == pytest.approx(_losses(ref)[-2:], rel=1e-4)


def test_resume_keeps_the_metrics_history_up_to_the_checkpoint_without_repeating_redone_steps(tmp_path: Path) -> None:
    """A run that logged step 3 and died before its next checkpoint redoes step 3 from checkpoint-2: the
    metrics.jsonl of the resumed run holds each step once, as an uninterrupted run's does."""
    import json
    import shutil

    common = ["save_strategy=steps", "save_steps=2", "lr_scheduler_type=constant"]
    out = tmp_path / "run"
    run(_cfg(out, *common, "max_steps=3"))
    for late in out.glob("checkpoint-3"):  # the crash came before checkpoint-3 was written
        shutil.rmtree(late)
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"step": 3, "lo')  # and cut a line short
    run(_cfg(out, *common, "max_steps=4", "resume_from_checkpoint=last"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]


def test_lora_changes_only_adapter_weights(tmp_path: Path) -> None:
    trainer = build_trainer(_cfg(tmp_path, "use_lora=true", "lora_r=4", "lora_alpha=8", "lora_dropout=0.0",
                                     "max_steps=3", "learning_rate=1e-2"))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainable = {k for k, v in trainer.model.named_parameters() if v.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k].detach())}
    assert changed, "no weight changed"
    assert all("lora_" in k for k in changed), sorted(changed - trainable)
    assert any("lora_B" in k for k in changed)


def test_merge_folds_the_adapter_into_the_base(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    a = tiny_assets()
    adapter = tmp_path / "adapter"
    run(_cfg(adapter, "use_lora=true", "lora_r=4", "lora_alpha=8", "max_steps=3", "learning_rate=1e-2"))
    assert (adapter / "adapter_config.json").is_file()
    merged_dir = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", "--model", str(adapter), "--output-dir", str(merged_dir)])
    assert result.exit_code == 0, result.output
    # the base's own dtype by default (fp32 here): a bf16 default halved an fp32 base without a word
    assert json.loads((merged_dir / "config.json").read_text())["dtype"] == "float32"

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    assert not any("lora" in name for name, _ in merged.named_modules())
    assert not (merged_dir / "adapter_config.json").exists()
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32), adapter
    ).eval()
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    x = torch.tensor([[1, 10, 20, 30, 40, 50, 60, 2]])
    with torch.no_grad():
        out_merged, out_adapter, out_base = merged(x).logits, with_adapter(x).logits, base(x).logits
    torch.testing.assert_close(out_merged, out_adapter, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out_merged, out_base, atol=1e-5)  # the adapter did something
    assert (merged_dir / "tokenizer_config.json").is_file()


def test_qlora_on_cpu_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.train.accel import launch

    monkeypatch.setattr(launch, "detect_gpu_count", lambda: 0)
    a = tiny_assets()
    result = CliRunner().invoke(app, ["sft", "--config", str(REPO / "train" / "tulu2-qlora.yaml"),
                                      "--model", str(a.model), "--data", str(a.sft_data),
                                      "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "QLoRA" in result.output and "CUDA" in result.output and "Traceback" not in result.output


def test_cli_sft_runs_in_process_and_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.train.accel import launch

    monkeypatch.setattr(launch, "detect_gpu_count", lambda: 0)
    a = tiny_assets()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sft", "--config", str(TINY), "--model", str(a.model), "--data",
                                      str(a.sft_data / "data" / "train-00000-of-00001.parquet"),
                                      "--output-dir", str(out), "--set", "max_steps=2"])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "mixer_train_config.yaml").is_file()
    assert "tokenizer_config.json" in {p.name for p in out.iterdir()}
