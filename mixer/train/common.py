"""What SFT and DPO share: TrainingArguments from a run config, resume, saving the resolved recipe."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from mixer.core.errors import MixerError
from mixer.core.outdir import TRAIN_MARKER
from mixer.train.batch import gradient_accumulation_steps
from mixer.train.config import BaseRunConfig, ConfigError, to_yaml

logger = logging.getLogger("mixer.train")

RESOLVED_CONFIG_NAME = TRAIN_MARKER  # also what marks a folder as an earlier run of ours


def world_size() -> int:
    """Processes in this run: ``WORLD_SIZE`` as set by ``accelerate launch``/torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def require_paths(cfg: Any, *names: str) -> None:
    """Fail with the option to pass when a required path was given neither in YAML nor on the CLI."""
    for name in names:
        if not getattr(cfg, name):
            raise ConfigError(f"`{name}` is not set: pass --{name.replace('_', '-')} or set it in the config")


def deepspeed_zero3_launched() -> bool:
    """Whether this process was started by ``accelerate launch`` with a DeepSpeed ZeRO-3 config."""
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def engine_mixed_precision() -> str | None:
    """``FSDP2``/``DeepSpeed`` when ``accelerate launch`` started this process with that engine (whose
    mixed-precision policy then owns the bf16 casts), else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP2"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed"
    return None


def training_kwargs(cfg: BaseRunConfig, n_processes: int | None = None,
                    num_proc: int | None = None) -> dict[str, Any]:
    """``TrainingArguments`` fields shared by SFTConfig and DPOConfig.

    Gradient accumulation is derived from the effective batch (``BatchError`` if it does not divide).
    transformers 5 dropped ``warmup_ratio``: a float below 1 in ``warmup_steps`` is the ratio.
    ``num_proc``: tokenisation processes as resolved for the data (``dataset_num_proc``).
    LoRA with ZeRO-3 and gradient checkpointing needs reentrant checkpointing; TRL sets it under the old
    ``gradient_checkpointing_kwargs`` name, which transformers 5 reads only at construction, so it is
    set here under the name the Trainer reads.
    """
    if not 0 <= cfg.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    n = world_size() if n_processes is None else n_processes
    accumulation = gradient_accumulation_steps(cfg.effective_batch_size, cfg.per_device_train_batch_size, n)
    logger.info(
        "effective batch %d = per-device %d x accumulation %d x %d process(es)",
        cfg.effective_batch_size, cfg.per_device_train_batch_size, accumulation, n,
    )
    kwargs: dict[str, Any] = {
        "output_dir": cfg.output_dir,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "optim": cfg.optim,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": accumulation,
        "seed": cfg.seed,
        "bf16": cfg.bf16,
        "fp16": False,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "logging_steps": cfg.logging_steps,
        "save_strategy": cfg.save_strategy,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "report_to": cfg.report_to,
        "dataset_num_proc": num_proc,
        "ddp_timeout": cfg.ddp_timeout,
    }
    if cfg.use_lora and cfg.gradient_checkpointing and deepspeed_zero3_launched():
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": True}
    return kwargs


def merge_trl_args(kwargs: dict[str, Any], cfg: BaseRunConfig, config_cls: type) -> dict[str, Any]:
    """Add ``trl_args``, rejecting names the TRL config does not have (listing close ones)."""
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg.trl_args) - valid)
    if unknown:
        raise ConfigError(f"trl_args: {', '.join(unknown)} not fields of {config_cls.__name__}")
    kwargs = dict(kwargs)
    if "activation_checkpointing" in valid:  # transformers >= 5.x name; the old one only warns
        kwargs["activation_checkpointing"] = kwargs["gradient_checkpointing"]
    return {**kwargs, **cfg.trl_args}


def make_trl_config(config_cls: type, kwargs: dict[str, Any]) -> Any:
    """Instantiate SFTConfig/DPOConfig, turning its ValueErrors (bad combinations) into MixerErrors."""
    try:
        return config_cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{config_cls.__name__}: {e}") from e


def resume_checkpoint(cfg: BaseRunConfig) -> str | None:
    """``resume_from_checkpoint``: a directory as is, or ``last`` for the newest ``checkpoint-N``."""
    value = cfg.resume_from_checkpoint
    if not value:
        return None
    if value in ("last", "latest", "true", "True"):
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(cfg.output_dir or ".")
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise MixerError(f"resume_from_checkpoint: last, but {out} has no checkpoint-* directory")
        return last
    if not Path(value).is_dir():
        raise MixerError(f"resume_from_checkpoint: {value} is not a directory")
    return value


def save_resolved_config(cfg: Any, resolved: dict[str, Any] | None = None) -> Path:
    """Keep the exact recipe next to the model so a run can be reproduced; ``resolved`` (what the host
    decided: attention kernel, batching, weight dtype, and why) is saved under ``resolved:``, which
    ``load_config`` skips when the file is used as a recipe again."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = to_yaml(cfg)
    if resolved:
        text += yaml.safe_dump({"resolved": resolved}, sort_keys=False, width=200)
    path = out / RESOLVED_CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def metrics_callback(path: Path, *, fresh: bool) -> Any:
    """A ``TrainerCallback`` appending every log record (loss, learning rate, grad norm, ...) to
    ``path`` (JSON lines) as it happens, whatever ``save_strategy`` is: a run with no checkpoints still
    leaves its loss history to plot. ``fresh``: start the file anew (not resuming a run).

    A resumed run keeps the history up to its checkpoint's step and drops the records of later steps (the
    interrupted run logged them, and the resumed run does those steps again), and a last line the interruption
    cut short; with no file left, the history is the checkpoint's own ``log_history``."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            if fresh:
                path.write_text("", encoding="utf-8")
                return
            path.write_text("".join(json.dumps(r, default=float) + "\n"
                                    for r in resumed_history(path, state)), encoding="utf-8")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                record = {"step": state.global_step, "epoch": state.epoch, **logs}
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, default=float) + "\n")

    return MetricsLog()


METRICS_NAME = "metrics.jsonl"


def resumed_history(path: Path, state: Any) -> list[dict[str, Any]]:
    """The metrics records a run resumed at ``state.global_step`` keeps (see :func:`metrics_callback`)."""
    if not path.exists():
        return [{"step": r.get("step"), "epoch": r.get("epoch"), **r} for r in state.log_history]
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line the interruption cut short
            continue
        if isinstance(record, dict) and (record.get("step") or 0) <= state.global_step:
            kept.append(record)
    return kept


def train_and_save(trainer: Any, cfg: BaseRunConfig) -> dict[str, Any]:
    """Train (resuming when asked), save the model or adapter, the tokenizer and the resolved config to
    ``output_dir``; return the train metrics. Shared by SFT and DPO.

    The loss history goes to ``output_dir/metrics.jsonl`` as training runs; the resolved config is
    written first, so a run that crashes still says what it was.
    """
    resolved = getattr(trainer, "mixer_runtime", None)
    resolved = resolved.as_dict() if resolved is not None else None
    if trainer.is_world_process_zero():
        save_resolved_config(cfg, resolved)
    checkpoint = resume_checkpoint(cfg)
    trainer.add_callback(metrics_callback(Path(cfg.output_dir) / METRICS_NAME, fresh=checkpoint is None))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    copies = getattr(trainer, "mixer_compute_copies", None)
    if copies is not None:  # leave a plain fp32 model for saving and for what runs after (RM held-out eval)
        copies.remove()
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(cfg.output_dir)
        save_resolved_config(cfg, resolved)
    return dict(result.metrics)
