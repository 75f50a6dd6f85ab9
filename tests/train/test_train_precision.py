"""One-process full fine-tuning computes with bf16 copies of the fp32 master weights, cast once per
optimizer step (mixer/train/precision.py), pinned on CPU with a tiny random Llama and real TRL steps.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixer.core.errors import MixerError
from mixer.train.accel.host import choose_mixed_precision, resolve_runtime
from mixer.train.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_fixtures import clear_launch_env, tiny_assets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_plain_process(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_launch_env(monkeypatch)


def _cfg(tmp_path: Path, *overrides: str, kind: str = "sft") -> Any:
    a = tiny_assets()
    data = a.sft_data if kind == "sft" else a.pref_data
    recipe = REPO / "train" / ("tiny-cpu.yaml" if kind == "sft" else "tiny-cpu-dpo.yaml")
    return load_config(kind, recipe,
                       ["bf16=true", "trl_args.use_cpu=true", "warmup_ratio=0", "lr_scheduler_type=constant",
                        "save_strategy=no", "logging_steps=1", "report_to=none", "seed=0", *overrides],
                       model=str(a.model), data=str(data), output_dir=str(tmp_path / "run"))


def _trainer(cfg: Any) -> Any:
    if type(cfg).__name__.startswith("DPO"):
        from mixer.train.trainer import build_trainer

        return build_trainer(cfg)
    from mixer.train.trainer import build_trainer

    return build_trainer(cfg)


def _one_micro_batch(trainer: Any) -> dict[str, Any]:
    """One forward + backward of the first micro-batch, the way the Trainer runs it (accelerate wraps the
    model's forward in bf16 autocast)."""
    batch = next(iter(trainer.get_train_dataloader()))
    if trainer.args.gradient_checkpointing and not trainer.model.is_activation_checkpointing:
        trainer.model.activation_checkpointing_enable()  # the Trainer does this when training starts
    trainer.model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}, labels=batch["labels"],
                             use_cache=False).loss
    loss.backward()
    return batch


# --- which runs get the copies, and why --------------------------------------------------------------------


def test_one_process_full_fine_tuning_with_bf16_resolves_compute_copies(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path)
    with caplog.at_level(logging.INFO, logger="mixer.train"):
        runtime = resolve_runtime(cfg, cuda=False)
    assert runtime.mixed_precision == "bf16_copy"
    assert "once per optimizer step" in runtime.mixed_precision_reason
    assert any(r.getMessage().startswith("mixed precision: bf16_copy") for r in caplog.records)


@pytest.mark.parametrize(("overrides", "processes", "engine", "expected"), [
    (["mixed_precision=autocast"], 1, None, "autocast"),
    (["bf16=false"], 1, None, "none"),
    (["use_lora=true"], 1, None, "autocast"),
    ([], 8, None, "autocast"),
    ([], 8, "FSDP2", "FSDP2"),
    ([], 1, "DeepSpeed", "DeepSpeed"),
])
def test_where_the_copies_cannot_apply_another_policy_is_chosen(tmp_path: Path, overrides: list[str], processes: int,
                                                               engine: str | None, expected: str) -> None:
    mode, reason = choose_mixed_precision(_cfg(tmp_path, *overrides), processes=processes, engine=engine)
    assert mode == expected and reason


def test_asking_for_copies_where_the_recipe_contradicts_it_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(MixerError, match="full fine-tuning"):
        choose_mixed_precision(_cfg(tmp_path, "mixed_precision=bf16_copy", "use_lora=true"), processes=1, engine=None)
    with pytest.raises(MixerError, match="bf16: true"):
        choose_mixed_precision(_cfg(tmp_path, "mixed_precision=bf16_copy", "bf16=false"), processes=1, engine=None)
    with pytest.raises(MixerError, match="mixed_precision"):
        _cfg(tmp_path, "mixed_precision=fp8").validate()


def test_asking_for_copies_under_a_multi_process_launch_warns_and_uses_the_launch_policy(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path, "mixed_precision=bf16_copy")
    with caplog.at_level(logging.WARNING, logger="mixer.train"):
        assert choose_mixed_precision(cfg, processes=1, engine="FSDP2")[0] == "FSDP2"
        assert choose_mixed_precision(cfg, processes=4, engine=None)[0] == "autocast"
    assert sum("bf16_copy is not used" in r.getMessage() for r in caplog.records) == 2


# --- what a micro-batch computes with ------------------------------------------------------------------------


class _WeightCasts:
    """Counts bf16 casts that read a master weight's storage (what autocast does in every forward)."""

    def __init__(self, masters: list[Any]) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        pointers = {m.data_ptr() for m in masters}
        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
                kwargs = kwargs or {}
                if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
                    src = args[0]
                    if isinstance(src, torch.Tensor) and src.data_ptr() in pointers:
                        counter.n += 1
                return func(*args, **kwargs)

        self.n = 0
        self.mode = Mode()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_micro_batch_computes_with_the_copies_and_casts_no_weight(tmp_path: Path, checkpointing: bool) -> None:
    flag = f"gradient_checkpointing={'true' if checkpointing else 'false'}"
    autocast = _trainer(_cfg(tmp_path, "mixed_precision=autocast", flag))
    masters = [p for p in autocast.model.parameters() if p.requires_grad]
    casts = _WeightCasts(masters)
    with casts.mode:
        _one_micro_batch(autocast)
    linears = sum(isinstance(m, torch.nn.Linear) for m in autocast.model.modules())
    recomputed = sum(isinstance(m, torch.nn.Linear) for m in autocast.model.model.layers.modules())
    # autocast casts every matmul weight in the forward, and the decoder layers' again when recomputed
    assert casts.n == linears + (recomputed if checkpointing else 0), (casts.n, linears, recomputed)

    copying = _trainer(_cfg(tmp_path, flag))
    copies = copying.mixer_compute_copies
    masters = [p for p in copying.model.parameters() if p.requires_grad]
    assert len(copies) == len(masters) and {c.dtype for c in copies.copies} == {torch.bfloat16}
    seen: list[Any] = []
    proj = copying.model.model.layers[0].mlp.up_proj
    handle = proj.register_forward_pre_hook(lambda m, a: seen.append(m.weight.dtype))  # runs after the swap
    casts = _WeightCasts(masters)
    with casts.mode:
        _one_micro_batch(copying)
    handle.remove()
    assert casts.n == 0
    assert seen and set(seen) == {torch.bfloat16}
    assert proj.weight.dtype == torch.float32 and proj.weight is copies.masters[copies._index[id(proj.weight)]]


def test_gradients_accumulate_in_fp32_on_the_masters_and_no_bf16_gradient_is_kept(tmp_path: Path) -> None:
    trainer = _trainer(_cfg(tmp_path))
    copies = trainer.mixer_compute_copies
    _one_micro_batch(trainer)
    first = [m.grad.clone() for m in copies.masters]
    assert all(g.dtype == torch.float32 for g in first)
    assert all(c.grad is None for c in copies.copies)
    _one_micro_batch(trainer)  # the same micro-batch again: the fp32 gradient doubles
    for g1, m in zip(first, copies.masters, strict=True):
        torch.testing.assert_close(m.grad, 2 * g1)


def test_a_forward_that_raises_leaves_the_fp32_masters_in_the_model(tmp_path: Path) -> None:
    trainer = _trainer(_cfg(tmp_path))
    proj = trainer.model.model.layers[0].mlp.up_proj
    master = proj.weight
    with pytest.raises(RuntimeError):
        proj(torch.zeros(2, 3))  # wrong width
    assert proj.weight is master


def test_tied_weights_share_one_copy(tmp_path: Path) -> None:
    from mixer.train.accel.precision import ComputeCopies

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    copies = ComputeCopies(model, torch.bfloat16)
    assert len(copies) == 1
    out = model[1](model[0](torch.tensor([1, 2])).to(torch.bfloat16))
    out.float().sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.dtype == torch.float32


# --- training: the masters move, the copies follow, the saved model is plain fp32 --------------------------------


def test_each_optimizer_step_refreshes_the_copies_from_the_masters(tmp_path: Path) -> None:
    trainer = _trainer(_cfg(tmp_path, "max_steps=3", "learning_rate=1e-3"))
    copies = trainer.mixer_compute_copies
    before = [c.detach().clone() for c in copies.copies]
    refreshed: list[bool] = []

    from transformers import TrainerCallback

    class Check(TrainerCallback):  # runs after the refresh callback (added first)
        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            refreshed.append(all(torch.equal(c, m.detach().to(torch.bfloat16))
                                 for c, m in zip(copies.copies, copies.masters, strict=True)))

    trainer.add_callback(Check())
    trainer.train()
    assert refreshed == [True, True, True]
    assert any(not torch.equal(b, c) for b, c in zip(before, copies.copies, strict=True))


def test_tiny_steps_below_bf16_resolution_still_add_up_in_the_masters(tmp_path: Path) -> None:
    """lr 5e-7 (Tulu 2 DPO): the bf16 copies may not change in one step, the fp32 masters must."""
    trainer = _trainer(_cfg(tmp_path, "max_steps=2", "learning_rate=5e-7", "effective_batch_size=2"))
    weight = trainer.model.model.layers[0].mlp.up_proj.weight
    before = weight.detach().clone()
    trainer.train()
    assert weight.dtype == torch.float32
    assert (weight.detach() != before).float().mean().item() > 0.5


def test_losses_follow_the_autocast_run_within_bf16_tolerance(tmp_path: Path) -> None:
    def losses(mode: str) -> list[float]:
        torch.manual_seed(0)
        trainer = _trainer(_cfg(tmp_path, f"mixed_precision={mode}", "max_steps=6", "learning_rate=1e-3",
                                "gradient_checkpointing=true"))
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h]

    reference, copied = losses("autocast"), losses("bf16_copy")
    assert len(copied) == 6 and copied[-1] < copied[0]
    for a, b in zip(reference, copied, strict=True):
        assert math.isclose(a, b, rel_tol=5e-3), (reference, copied)


def test_a_run_saves_fp32_weights_equal_to_the_masters_and_records_the_choice(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mixer.train.trainer import train_and_save

    cfg = _cfg(tmp_path, "max_steps=2", "learning_rate=1e-3")
    trainer = _trainer(cfg)
    train_and_save(trainer, cfg)
    model = trainer.model
    assert not any(m._forward_pre_hooks for m in model.modules())  # removed after training
    saved = load_file(str(Path(cfg.output_dir) / "model.safetensors"))
    state = model.state_dict()
    assert {t.dtype for t in saved.values()} == {torch.float32}
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    resolved = yaml.safe_load((Path(cfg.output_dir) / "mixer_train_config.yaml").read_text())["resolved"]
    assert resolved["mixed_precision"] == "bf16_copy" and resolved["weights_dtype"] == "float32"
    assert [json.loads(x)["step"] for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)] == [1, 2]


def test_weights_loaded_into_the_masters_reach_the_copies_before_the_next_forward(tmp_path: Path) -> None:
    """Resuming loads a checkpoint into the fp32 masters (``load_state_dict``): the next forward must
    compute with it, not with the copies cast before."""
    trainer = _trainer(_cfg(tmp_path))
    model = trainer.model
    proj = model.model.layers[0].mlp.up_proj
    new = {name: torch.randn_like(t) * 0.02 for name, t in model.state_dict().items() if "up_proj" in name}
    model.load_state_dict(new, strict=False)
    seen: list[Any] = []
    handle = proj.register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().clone()))
    _one_micro_batch(trainer)
    handle.remove()
    torch.testing.assert_close(seen[0], proj.weight.detach().to(torch.bfloat16), rtol=0, atol=0)


def test_dpo_on_one_process_uses_the_copies_and_starts_at_ln2(tmp_path: Path) -> None:
    trainer = _trainer(_cfg(tmp_path, "max_steps=2", kind="dpo"))
    assert trainer.mixer_compute_copies is not None and len(trainer.mixer_compute_copies) > 0
    trainer.train()
    first = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert math.isclose(first, math.log(2), abs_tol=2e-3), first

