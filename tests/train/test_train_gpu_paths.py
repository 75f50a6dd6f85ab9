"""What `mixer train` does on GPU hosts, pinned on CPU: kernel choice, batching fallback, fp32 master
weights, launch pinning and dependency checks, tokenisation workers, LoRA + ZeRO-3, config parsing,
shipped recipes and the loss history.
"""

from __future__ import annotations

import logging
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mixer.core.errors import MixerError
from mixer.train.accel import attention as attn_mod
from mixer.train.accel import launch as launch_mod
from mixer.train.accel.attention import AttentionChoice, choose_attention
from mixer.train.accel.host import choose_batching, resolve_runtime, tokenise_processes, weights_dtype
from mixer.train.cli import app
from mixer.train.config import load_config, shipped_recipes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_fixtures import clear_launch_env, tiny_assets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_launch_env(monkeypatch, "CUDA_VISIBLE_DEVICES")


def _gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], usable: set[str]) -> None:
    """Pretend to be a CUDA host of ``capability`` on which transformers reports ``usable`` kernels."""
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(attn_mod, "flash_available", lambda name: name in usable)


# --- 1. auto asks transformers, falls back to PyTorch's varlen kernel, says why -----------------------


@pytest.mark.parametrize(("usable", "expected"), [
    ({"flash_attention_3", "flash_attention_2"}, "flash_attention_3"),
    ({"flash_attention_2"}, "flash_attention_2"),
    ({"flash_attention_4"}, "flash_attention_4"),
    (set(), "torch_varlen"),
])
def test_auto_takes_the_best_kernel_transformers_reports(monkeypatch: pytest.MonkeyPatch, usable: set[str],
                                                         expected: str) -> None:
    _gpu(monkeypatch, (9, 0), usable)
    choice = choose_attention("auto", cuda=True)
    assert choice.implementation == expected and choice.varlen and choice.reason


def test_auto_is_sdpa_on_cpu_and_on_pre_ampere_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_attention("auto", cuda=False).implementation == "sdpa"
    _gpu(monkeypatch, (7, 5), {"flash_attention_2"})
    choice = choose_attention("auto", cuda=True)
    assert choice.implementation == "sdpa" and "7.5" in choice.reason


def test_asking_for_an_uninstalled_flash_attention_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, (9, 0), set())
    with pytest.raises(MixerError, match="flash-attn-4"):
        choose_attention("flash_attention_4", cuda=True)


def test_the_choice_and_reason_are_said_at_info_not_as_warnings(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _gpu(monkeypatch, (9, 0), set())
    cfg = load_config("sft", REPO / "train" / "tulu2-sft.yaml")
    with caplog.at_level(logging.INFO, logger="mixer.train"):
        runtime = resolve_runtime(cfg, cuda=True)
    assert runtime.attn_implementation == "torch_varlen"
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert said[0].startswith("attention: torch_varlen (no FlashAttention package installed")
    assert said[1].startswith("batching: padding_free") and said[2].startswith("weights: float32")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # routine: no warning


# --- 2. flash-attn-4's flash_attn/cute is not taken for FA2 ---------------------------------------------


def test_flash_attn_4_layout_is_not_taken_for_flash_attention_2(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """flash-attn-4 ships ``flash_attn/cute/`` without ``flash_attn/__init__.py``: ``find_spec`` finds a
    namespace package, which the old check took for FA2. transformers' helpers look at the distribution."""
    import importlib.util

    import torch

    (tmp_path / "flash_attn" / "cute").mkdir(parents=True)
    (tmp_path / "flash_attn" / "cute" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.util.find_spec("flash_attn") is not None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert not attn_mod.flash_available("flash_attention_2")
    assert choose_attention("auto", cuda=True).implementation in ("torch_varlen", "flash_attention_4")


# --- 3. padding-free on CUDA without a varlen kernel falls back to padding ------------------------------


def test_padding_free_with_sdpa_on_cuda_falls_back_to_padded_with_a_hint() -> None:
    batching, why = choose_batching("padding_free", AttentionChoice("sdpa", "requested"), cuda=True)
    assert batching == "padded" and "torch_varlen" in why and "flash-attn-4" in why
    assert choose_batching("packed", AttentionChoice("torch_varlen", "auto"), cuda=True)[0] == "packed"
    assert choose_batching("padding_free", AttentionChoice("sdpa", "cpu"), cuda=False)[0] == "padding_free"


# --- the varlen kernel's boundaries: torch_varlen padding-free == SDPA on each sequence alone ------------


def test_torch_varlen_padding_free_matches_each_sequence_alone() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mixer.train.accel.attention import register_torch_varlen

    register_torch_varlen()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    seqs = [list(range(3, 3 + n)) for n in (7, 12, 5)]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": s} for s in seqs])
    with torch.no_grad():
        model.set_attn_implementation("torch_varlen")
        flat = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                     cu_seq_lens_q=batch["cu_seq_lens_q"], cu_seq_lens_k=batch["cu_seq_lens_k"],
                     max_length_q=batch["max_length_q"], max_length_k=batch["max_length_k"]).logits[0]
        model.set_attn_implementation("sdpa")
        alone = torch.cat([model(input_ids=torch.tensor([s]), use_cache=False).logits[0] for s in seqs])
        padded = DataCollatorForLanguageModeling(pad_token_id=0)([{"input_ids": s} for s in seqs])
        model.set_attn_implementation("torch_varlen")
        masked = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                       use_cache=False).logits
    torch.testing.assert_close(flat, alone, rtol=1e-4, atol=1e-4)
    real = padded["attention_mask"].bool()
    torch.testing.assert_close(masked[real], alone, rtol=1e-4, atol=1e-4)


# --- 4. the benchmark measures what the trainer runs ------------------------------------------------------


def test_benchmark_peak_tells_pcie_from_sxm(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "bench" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    assert bench.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert bench.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench.peak_flops("NVIDIA H200 NVL") == 835e12
    assert bench.peak_flops("NVIDIA H200") == 989e12
    assert bench.SHAPES["7b"]["num_hidden_layers"] == 32 and bench.SHAPES["7b"]["hidden_size"] == 4096


# --- 5. one process on a multi-GPU host is pinned to one GPU -----------------------------------------------

SFT = ["sft", "--config", "tulu2-sft", "--model", "/models/llama-2-7b", "--data", "out/v2", "--output-dir", "runs/x"]


def test_one_process_on_eight_gpus_is_pinned_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    result = runner.invoke(app, [*SFT, "--num-processes", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    launch = result.output.split("# launch\n", 1)[1]
    assert launch.startswith("CUDA_VISIBLE_DEVICES=3 ") and "-m mixer.train.run sft" in launch
    assert "accelerate" not in launch


# --- 6. a DeepSpeed preset without deepspeed is refused before launching -------------------------------------


def test_deepspeed_preset_without_deepspeed_exits_2_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(launch_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else real(name, *a))
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 8)
    result = runner.invoke(app, [*SFT, "--accelerate-config", "zero3", "--dry-run"])
    assert result.exit_code == 2
    assert "pip install 'mixer[deepspeed]'" in result.output and "fsdp2" in result.output
    assert "Traceback" not in result.output
    default = runner.invoke(app, [*SFT, "--dry-run"])  # the shipped default is FSDP2: no extra package
    assert default.exit_code == 0 and "fsdp2.yaml" in default.output


# --- 7. full fine-tuning keeps fp32 master weights ---------------------------------------------------------


def test_one_dpo_sized_step_changes_bf16_configured_weights(tmp_path: Path) -> None:
    """lr 5e-7 (Tulu 2 DPO) is far below bf16's spacing at typical weight sizes: pure-bf16 weights would
    not move. The single-process path loads fp32 master weights, so one step changes them."""
    import torch

    from mixer.train.trainer import build_trainer

    a = tiny_assets()
    cfg = load_config("sft", REPO / "train" / "tiny-cpu.yaml",
                      ["dtype=bfloat16", "bf16=true", "learning_rate=5e-7", "max_steps=1", "warmup_ratio=0",
                       "lr_scheduler_type=constant", "effective_batch_size=2", "trl_args.use_cpu=true"],
                      model=str(a.model), data=str(a.sft_data), output_dir=str(tmp_path / "run"))
    assert weights_dtype(cfg)[0] == "float32"
    trainer = build_trainer(cfg)
    weight = trainer.model.model.layers[0].mlp.up_proj.weight
    assert weight.dtype == torch.float32
    before = weight.detach().clone()
    trainer.train()
    changed = (weight.detach() != before).float().mean().item()
    assert changed > 0.5, f"only {changed:.0%} of the weights moved"
    as_bf16 = before.to(torch.bfloat16)
    kept_in_bf16 = ((as_bf16 + 5e-7) != as_bf16).float().mean().item()  # what bf16 weights would have moved
    assert kept_in_bf16 < 0.05, kept_in_bf16


def test_lora_keeps_the_configured_dtype_for_the_frozen_base() -> None:
    cfg = load_config("sft", REPO / "train" / "tulu2-qlora.yaml")
    assert weights_dtype(cfg)[0] == "bfloat16"


# --- 8. tokenisation in parallel, barrier timeout configurable ------------------------------------------------


def test_tokenisation_uses_up_to_sixteen_processes_for_large_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert tokenise_processes(None, 326_000) == 16
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert tokenise_processes(None, 326_000) == 6
    assert tokenise_processes(None, 500) is None  # small data: in-process
    assert tokenise_processes(4, 10) == 4


def test_ddp_timeout_reaches_the_training_arguments() -> None:
    from mixer.train.trainer import derived_kwargs

    cfg = load_config("sft", REPO / "train" / "tiny-cpu.yaml", ["ddp_timeout=7200"], output_dir="/tmp/x")
    args = cfg.trl_config(**derived_kwargs(cfg, n_processes=1, num_proc=3))
    assert (args.ddp_timeout, args.dataset_num_proc) == (7200, 3)


# --- 9. LoRA + ZeRO-3 gets reentrant checkpointing under the name the Trainer reads -----------------------


def test_lora_under_zero3_sets_reentrant_checkpointing(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.train.trainer import derived_kwargs

    cfg = load_config("sft", REPO / "train" / "tulu2-qlora.yaml", ["load_in_4bit=false"], output_dir="/tmp/x")
    assert "activation_checkpointing_kwargs" not in derived_kwargs(cfg, n_processes=8)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert derived_kwargs(cfg, n_processes=8)["activation_checkpointing_kwargs"] == {"use_reentrant": True}


# --- 10. YAML booleans, shipped recipes by name, package data -------------------------------------------------


def test_save_strategy_no_stays_a_string(tmp_path: Path) -> None:
    cfg = load_config("sft", None, ["save_strategy=no"])
    assert cfg.save_strategy == "no"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: sft\nsave_strategy: no\nbf16: false\nuse_lora: yes\n")
    cfg = load_config("sft", recipe)
    assert (cfg.save_strategy, cfg.bf16, cfg.use_lora) == ("no", False, True)


def test_shipped_recipes_load_by_name_from_any_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert {"tulu2-sft", "tulu2-dpo", "tulu2-qlora"} <= set(shipped_recipes())
    assert load_config("sft", "tulu2-sft").learning_rate == 2e-5
    assert load_config("dpo", "train/tulu2-dpo.yaml").beta == 0.1  # the README's path, outside a checkout
    with pytest.raises(MixerError, match="shipped: "):
        load_config("sft", "tulu3-sft")
    help_text = runner.invoke(app, ["--help"]).output
    assert "tulu2-sft" in help_text and "tulu2-qlora" in help_text


def test_the_wheel_ships_the_recipes_and_accelerate_presets(tmp_path: Path) -> None:
    import shutil
    import subprocess

    src = tmp_path / "src"  # a copy: setuptools leaves build/ in the tree it builds
    shutil.copytree(REPO / "mixer", src / "mixer", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(src)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("mixer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in ("tulu2-sft", "tulu2-dpo", "tulu2-qlora", "tiny-cpu"):
        assert f"mixer/train/recipes/{recipe}.yaml" in names
    for preset in ("ddp", "fsdp2", "zero3"):
        assert f"mixer/train/recipes/accelerate/{preset}.yaml" in names


# --- 11. the loss history is kept without checkpoints; the run says where ---------------------------------------


def test_run_keeps_its_loss_history_and_resolved_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 0)
    a = tiny_assets()
    out = tmp_path / "run"
    result = runner.invoke(app, ["sft", "--config", "tiny-cpu", "--model", str(a.model), "--data", str(a.sft_data),
                                 "--output-dir", str(out), "--set", "max_steps=3", "--set", "save_strategy=no"])
    assert result.exit_code == 0, result.output
    assert f"loss history: {out / 'metrics.jsonl'}" in result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    saved = yaml.safe_load((out / "mixer_train_config.yaml").read_text())
    assert saved["resolved"]["attn_implementation"] == "sdpa" and saved["resolved"]["attention_reason"]
    assert saved["resolved"]["weights_dtype"] == "float32"
    again = load_config("sft", out / "mixer_train_config.yaml")  # the saved config is a recipe again
    assert again.max_steps == 3 and again.save_strategy == "no"


# --- issue 15: a run folder is never a bin ----------------------------------------------------------------


def _precious_folder(tmp_path: Path) -> Path:
    """A user's folder that is not a run: a training command must refuse to write into it."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    return precious


def test_train_refuses_a_non_empty_folder_that_is_not_a_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 1)
    precious = _precious_folder(tmp_path)
    args = ["sft", "--config", "tiny-cpu", "--model", "m", "--data", "d", "--output-dir", str(precious), "--dry-run"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite-output-dir" in refused.output and "Traceback" not in refused.output
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert runner.invoke(app, [*args, "--overwrite-output-dir"]).exit_code == 0
    earlier_run = tmp_path / "run"
    earlier_run.mkdir()
    (earlier_run / "mixer_train_config.yaml").write_text("trainer: sft\n")
    (earlier_run / "checkpoint-10").mkdir()
    # an earlier run is replaced only when asked, or continued (issue 24)
    assert runner.invoke(app, [*args[:-2], str(earlier_run), "--dry-run"]).exit_code == 2
    assert runner.invoke(app, [*args[:-2], str(earlier_run), "--overwrite-output-dir", "--dry-run"]).exit_code == 0


def test_rm_refusal_names_an_option_rm_takes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 1)
    precious = _precious_folder(tmp_path)
    args = ["rm", "--config", "tiny-cpu-rm", "--model", "m", "--data", "d", "--output-dir", str(precious), "--dry-run"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite-output-dir" in refused.output
    assert runner.invoke(app, [*args, "--overwrite-output-dir"]).exit_code == 0
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_merge_refuses_a_non_empty_folder_that_is_not_a_mixer_output(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "config.json").write_text("my own model's config")
    args = ["merge", "--model", str(tmp_path / "adapter"), "--output-dir", str(precious)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite-output-dir" in refused.output and "Traceback" not in refused.output
    assert (precious / "config.json").read_text() == "my own model's config"
    assert runner.invoke(app, [*args, "--dry-run"]).exit_code == 2
    assert runner.invoke(app, [*args, "--overwrite-output-dir", "--dry-run"]).exit_code == 0
    earlier = tmp_path / "merged"
    earlier.mkdir()
    (earlier / "mixer_train_config.yaml").write_text("trainer: merge\n")
    assert runner.invoke(app, [*args[:-1], str(earlier), "--dry-run"]).exit_code == 0


def test_pinned_single_gpu_rerun_forwards_the_overwrite_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(launch_mod, "detect_gpu_count", lambda: 8)
    (tmp_path / "notes.txt").write_text("x")
    result = runner.invoke(app, [*SFT[:-1], str(tmp_path), "--num-processes", "1", "--overwrite-output-dir",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "--overwrite-output-dir" in result.output.split("# launch\n", 1)[1]


# --- one GPU: micro-batches too small to keep it busy are named, with a per-device batch that keeps the step ---


def test_small_micro_batches_get_a_hint_that_keeps_the_examples_per_step() -> None:
    from mixer.train.accel.batch import larger_micro_batch_hint

    hint = larger_micro_batch_hint(580.0, 2, 128, 1)  # Tulu V2's mean length, the recipe's 2 per device
    assert hint is not None
    assert "per_device_train_batch_size=16" in hint and "accumulation 8" in hint and "128 examples" in hint
    assert larger_micro_batch_hint(580.0, 16, 128, 1) is None  # ~9k tokens: big enough
    assert larger_micro_batch_hint(4200.0, 2, 128, 8) is None  # long examples: already over 8k tokens
    assert larger_micro_batch_hint(580.0, 2, 16, 8) is None  # 2 per process is all there is


def test_sft_on_a_gpu_host_warns_about_launch_bound_micro_batches(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from datasets import Dataset

    from mixer.train.sft import warn_small_micro_batches

    cfg = load_config("sft", REPO / "train" / "tulu2-sft.yaml")
    train = Dataset.from_dict({"input_ids": [[1] * 500, [1] * 700] * 50})
    with caplog.at_level(logging.WARNING, logger="mixer.train"):
        hint = warn_small_micro_batches(cfg, train)
    assert hint and "~1,200 tokens" in hint and any("batch size:" in r.getMessage() for r in caplog.records)
