"""The one-GPU speed levers (mixer/train/accel/levers.py, memory.py), pinned on CPU with the tiny random Llama:
token-sized micro-batches weigh the step's tokens as example-sized ones do, regional compilation computes the
same loss and reports its time, selective checkpointing covers exactly the chosen layers with the same
gradients, Liger is reached through TRL (or named as an extra), FA3 is chosen and loaded when installed, and a
card too small is refused before loading."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from mixer.core.errors import MixerError
from mixer.train.accel.levers import checkpoint_every_n
from mixer.train.config import ConfigError, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_fixtures import clear_launch_env, tiny_assets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_plain_process(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_launch_env(monkeypatch)


def _cfg(tmp_path: Path, *overrides: str) -> Any:
    a = tiny_assets()
    return load_config("sft", REPO / "train" / "tiny-cpu.yaml",
                       ["trl_args.use_cpu=true", "warmup_ratio=0", "lr_scheduler_type=constant", "save_strategy=no",
                        "logging_steps=1", "report_to=none", "seed=0", "max_steps=1", "effective_batch_size=8",
                        "per_device_train_batch_size=2", *overrides],
                       model=str(a.model), data=str(a.sft_data), output_dir=str(tmp_path / "run"))


class _Grabber:
    """A callback keeping the first step's gradients (before the optimizer) and logged loss."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class Grab(TrainerCallback):
            grads: dict[str, Any] = {}
            logs: list[dict] = []
            checkpointed: list[bool] = []

            def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
                from mixer.train.accel.levers import decoder_layers

                self.checkpointed = [bool(getattr(m, "gradient_checkpointing", False)) for m in decoder_layers(model)]

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
                if not self.grads:
                    self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                                  if p.grad is not None}

            def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
                self.logs.append(dict(logs or {}))

        return Grab()


def _step(cfg: Any) -> tuple[Any, Any]:
    from mixer.train.trainer import build_trainer

    grab = _Grabber()
    trainer = build_trainer(cfg, callbacks=[grab])
    trainer.train()
    return trainer, grab


def _same_grads(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=tol, rtol=1e-4, msg=name)


# --- token-sized micro-batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("batching", ["padding_free", "padded"])
def test_token_sized_micro_batches_give_the_example_sized_steps_loss_and_gradients(tmp_path: Path,
                                                                                   batching: str) -> None:
    base, base_grab = _step(_cfg(tmp_path / "a", f"batching={batching}"))
    assert base.args.gradient_accumulation_steps == 4
    tok, tok_grab = _step(_cfg(tmp_path / "b", f"batching={batching}", "max_tokens_per_microbatch=150"))
    assert tok.args.gradient_accumulation_steps == 1 and tok.args.per_device_train_batch_size == 8
    assert tok.mixer_microbatches > 1  # the 8 examples did not fit one 150-token micro-batch
    _same_grads(base_grab.grads, tok_grab.grads)
    assert tok_grab.logs[0]["loss"] == pytest.approx(base_grab.logs[0]["loss"], rel=1e-5)


def test_split_step_cuts_a_padding_free_row_at_example_starts_within_the_token_budget() -> None:
    from mixer.train.accel.levers import split_step

    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3, 0]])
    inputs = {"input_ids": torch.arange(10)[None], "position_ids": pos, "labels": torch.arange(10)[None],
              "cu_seq_lens_q": torch.tensor([0, 3, 5, 9, 10]), "cu_seq_lens_k": torch.tensor([0, 3, 5, 9, 10])}
    chunks = split_step(inputs, 5)
    assert [c["input_ids"].tolist() for c in chunks] == [[[0, 1, 2, 3, 4]], [[5, 6, 7, 8, 9]]]
    assert chunks[1]["cu_seq_lens_q"].tolist() == [0, 4, 5]
    assert len(split_step(inputs, 2)) == 4  # an example longer than the budget is a micro-batch of its own


def test_token_micro_batches_are_refused_for_packed_bins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="packed bins already hold max_length"):
        _cfg(tmp_path, "batching=packed", "max_tokens_per_microbatch=16384")


def test_token_micro_batches_are_refused_under_deepspeed_whose_engine_steps_at_every_backward(tmp_path: Path) -> None:
    from mixer.train.accel.levers import before_loading

    cfg = _cfg(tmp_path, "max_tokens_per_microbatch=16384")
    with pytest.raises(ConfigError, match="DeepSpeed"):
        before_loading(cfg, "DeepSpeed", cuda=False)
    before_loading(cfg, "FSDP2", cuda=False)  # FSDP2 reduces every micro-batch: correct


# --- selective activation checkpointing --------------------------------------------------------------------


def test_every_other_layer_is_checkpointed_with_the_full_checkpointing_gradients(tmp_path: Path) -> None:
    full, full_grab = _step(_cfg(tmp_path / "a", "gradient_checkpointing=true"))
    half, half_grab = _step(_cfg(tmp_path / "b", "gradient_checkpointing=true",
                                 "gradient_checkpointing_layers=every_other"))
    assert full_grab.checkpointed == [True, True]
    assert half_grab.checkpointed == [True, False]  # 2 layers: the first of every 2
    _same_grads(full_grab.grads, half_grab.grads)


def test_checkpointing_layers_read_as_a_stride() -> None:
    assert [checkpoint_every_n(x) for x in ("all", "every_other", "0.25", "1")] == [1, 2, 4, 1]
    with pytest.raises(ConfigError, match="gradient_checkpointing_layers"):
        checkpoint_every_n("most")


def test_lever_keys_are_read_and_checked_when_the_config_loads() -> None:
    cfg = load_config("sft", None, ["gradient_checkpointing_layers=0.25", "compile=regional",
                                    "max_tokens_per_microbatch=16384"])
    assert (cfg.gradient_checkpointing_layers, cfg.compile, cfg.max_tokens_per_microbatch) == (0.25, "regional", 16384)
    for bad, message in (("compile=full", "compile must be one of none, regional"),
                         ("gradient_checkpointing_layers=2", "a fraction in"),
                         ("max_tokens_per_microbatch=0", "must be positive"),
                         ("compile=regional,torch_compile=true", "keep one")):
        with pytest.raises(ConfigError, match=message):
            load_config("sft", None, bad.split(","))


# --- regional torch.compile --------------------------------------------------------------------------------


def test_regional_compile_trains_with_the_eager_loss_and_logs_its_compile_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXER_COMPILE_BACKEND", "aot_eager")  # dynamo + AOT autograd, no C++ build: seconds
    from mixer.train.trainer import run

    eager_cfg = _cfg(tmp_path / "a", "max_steps=2", "effective_batch_size=4")
    compiled_cfg = _cfg(tmp_path / "b", "max_steps=2", "effective_batch_size=4", "compile=regional")
    run(eager_cfg)
    run(compiled_cfg)
    read = [[json.loads(x) for x in (Path(c.output_dir) / "metrics.jsonl").read_text().splitlines()]
            for c in (eager_cfg, compiled_cfg)]
    losses = [[r["loss"] for r in recs if "loss" in r] for recs in read]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert any("compile_s" in r and r["compile_s"] > 0 and r["first_step_s"] > 0 for r in read[1])
    assert not any("compile_s" in r for r in read[0])


def test_regional_compile_compiles_each_decoder_layer_not_the_model(tmp_path: Path) -> None:
    from mixer.train.accel.levers import compile_regional, decoder_layers
    from mixer.train.accel.modeling import load_model

    model = load_model(_cfg(tmp_path), "sdpa")
    assert compile_regional(model) == 2
    layers = decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 2
    assert all(m._compiled_call_impl is not None for m in layers)
    assert model._compiled_call_impl is None and model.model._compiled_call_impl is None


# --- Liger kernels -----------------------------------------------------------------------------------------


def test_liger_without_the_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "liger_kernel" else real(n, *a))
    from mixer.train.trainer import build_trainer

    with pytest.raises(MixerError, match=r"mixer\[liger\]"):
        build_trainer(_cfg(tmp_path, "use_liger_kernel=true"))


def test_liger_reaches_trl_and_patches_the_model_mixer_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patched: list[Any] = []
    fake = types.ModuleType("liger_kernel")
    fake_tf = types.ModuleType("liger_kernel.transformers")
    fake_tf._apply_liger_kernel_to_instance = lambda model, **kw: patched.append((model, kw))
    fake.__spec__ = types.SimpleNamespace(name="liger_kernel")
    monkeypatch.setitem(sys.modules, "liger_kernel", fake)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", fake_tf)
    import transformers.integrations.liger as liger_integration

    monkeypatch.setattr(liger_integration, "is_liger_kernel_available", lambda: True)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: types.SimpleNamespace(name=n) if n == "liger_kernel" else real(n, *a))
    from mixer.train.trainer import build_trainer

    trainer = build_trainer(_cfg(tmp_path, "use_liger_kernel=true", "bf16=true"))
    assert trainer.args.use_liger_kernel is True
    trainer.train()  # the Trainer applies the kernels when training starts, to the model mixer loaded
    assert patched and patched[0][0] is trainer.model
    assert patched[0][1].get("fused_linear_cross_entropy") is False  # TRL keeps its fused LM head
    assert trainer.mixer_compute_copies is not None  # bf16 copies still on: liger reads the modules' weights


# --- FlashAttention 3 when installed -----------------------------------------------------------------------


def test_auto_picks_flash_attention_3_when_installed_and_the_model_loads_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.utils as tu
    from transformers import PreTrainedModel

    fake = types.ModuleType("flash_attn_interface")
    for name in ("flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache"):
        setattr(fake, name, lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "flash_attn_interface", fake)
    import transformers.modeling_flash_attention_utils as fa_utils

    yes = lambda *a, **k: True  # noqa: E731 - transformers' checks: the package, its distribution, CUDA
    monkeypatch.setattr(tu, "is_flash_attn_3_available", yes)
    monkeypatch.setattr(fa_utils, "is_flash_attn_3_available", yes)
    fa3 = {**fa_utils.FLASH_ATTENTION_COMPATIBILITY_MATRIX[3], "general_availability_check": yes,
           "pkg_availability_check": yes}
    monkeypatch.setitem(fa_utils.FLASH_ATTENTION_COMPATIBILITY_MATRIX, 3, fa3)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))  # an H100
    monkeypatch.setattr(PreTrainedModel, "_flash_attn_can_dispatch", lambda self, *a, **k: True)
    from mixer.train.accel.attention import choose_attention, read_model_config
    from mixer.train.accel.modeling import load_model

    cfg = _cfg(tmp_path)
    choice = choose_attention("auto", cuda=True, model_config=read_model_config(cfg.model))
    assert choice.implementation == "flash_attention_3" and choice.varlen
    model = load_model(cfg, choice.implementation)
    assert model.config._attn_implementation == "flash_attention_3"


# --- the memory check before loading -----------------------------------------------------------------------

LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}


def test_parameters_are_counted_from_config_json() -> None:
    from mixer.train.accel.memory import count_parameters

    assert count_parameters(LLAMA2_7B) == pytest.approx(6.74e9, rel=0.002)  # Llama 2 7B: 6,738,415,616


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "llama7b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA2_7B))
    return d


def test_a_7b_full_fine_tune_is_refused_on_an_80_gb_card_with_what_to_do(tmp_path: Path) -> None:
    from mixer.train.accel.memory import MemoryFitError, check_fits

    cfg = _cfg(tmp_path).replace(model=str(_model_dir(tmp_path)))
    with pytest.raises(MemoryFitError, match=r"18\.00 B .*113\.0 GiB.*LoRA.*QLoRA.*bigger card.*ZeRO-3 or FSDP2"):
        check_fits(cfg, "bf16_copy", free_bytes=79 * 2**30)
    assert "GiB" in check_fits(cfg, "bf16_copy", free_bytes=139 * 2**30)  # an H200 holds it
    assert check_fits(cfg.replace(use_peft=True), "autocast", free_bytes=79 * 2**30)  # LoRA fits an H100


def test_build_trainer_refuses_before_loading_on_a_faked_small_card(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import mixer.train.accel.modeling as modeling
    import mixer.train.deps as deps

    monkeypatch.setattr(deps, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (1000, 2000))  # a 2 kB "card"
    monkeypatch.setattr(modeling, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    from mixer.train.trainer import build_trainer

    with pytest.raises(MixerError, match="will not fit"):
        build_trainer(_cfg(tmp_path, "attn_implementation=sdpa", "batching=padded"))
