"""Reward models with TRL's RewardTrainer: the base model plus a one-scalar head, Llama 2's ranking loss.

The loss is ``-log sigmoid(r(x, y_chosen) - r(x, y_rejected) - m)``; TRL applies ``m`` when the data has a
``margin`` column, which :func:`mixer.train.reward.load_reward_dataset` adds from the rating gap when the
recipe says ``margin: true``. A seeded share of the pairs is held out and the run ends by scoring it: the
pairwise accuracy goes to ``OUTPUT/rm_eval.json`` and as the last line of ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from mixer.core.errors import MixerError
from mixer.train.common import (
    METRICS_NAME,
    make_trl_config,
    merge_trl_args,
    require_paths,
    train_and_save,
    training_kwargs,
    world_size,
)
from mixer.train.config import RMRunConfig
from mixer.train.deps import require_train_deps
from mixer.train.precision import apply_mixed_precision
from mixer.train.runtime import resolve_runtime, tokenise_processes

logger = logging.getLogger("mixer.train")

EVAL_NAME = "rm_eval.json"


def warmup_steps(cfg: RMRunConfig, n_train: int, n_processes: int) -> float | int:
    """``warmup_ratio`` of the run's optimizer steps, and at least ``min_warmup_steps`` (Llama 2: 3 %, min 5).

    With no minimum the ratio is passed as is (transformers turns a float below 1 into a ratio).
    """
    if cfg.min_warmup_steps <= 0:
        return cfg.warmup_ratio
    if cfg.max_steps > 0:
        total = cfg.max_steps
    else:
        per_epoch = max(1, math.ceil(n_train / cfg.effective_batch_size))
        total = max(1, math.ceil(per_epoch * cfg.num_train_epochs))
    return min(total, max(cfg.min_warmup_steps, math.ceil(cfg.warmup_ratio * total)))


def rm_trl_config(cfg: RMRunConfig, n_train: int, n_processes: int | None = None,
                  num_proc: int | None = None) -> Any:
    """The ``RewardConfig`` for this recipe; pairs longer than ``max_length`` are dropped by TRL."""
    from trl import RewardConfig

    n = world_size() if n_processes is None else n_processes
    kwargs = training_kwargs(cfg, n, num_proc)
    kwargs.update(
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        warmup_steps=warmup_steps(cfg, n_train, n),
        eval_strategy="no",  # the held-out pairs are scored once, exactly, at the end (evaluate_held_out)
    )
    return make_trl_config(RewardConfig, merge_trl_args(kwargs, cfg, RewardConfig))


def load_rm_model(cfg: RMRunConfig, attn_implementation: str, dtype: str) -> Any:
    """The base model as a one-label sequence classifier; the head is new, seeded by ``cfg.seed``."""
    from transformers import AutoModelForSequenceClassification, set_seed

    from mixer.train.attention import TORCH_VARLEN, register_torch_varlen
    from mixer.train.modeling import torch_dtype

    if attn_implementation == TORCH_VARLEN:
        register_torch_varlen()
    set_seed(cfg.seed)
    kwargs: dict[str, Any] = {"num_labels": 1, "dtype": torch_dtype(dtype), "attn_implementation": attn_implementation}
    if cfg.load_in_4bit:
        from mixer.train.modeling import quantization_config

        kwargs["quantization_config"] = quantization_config(cfg)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(cfg.model, **kwargs)
    except OSError as e:
        raise MixerError(f"cannot load a model from {cfg.model}: {e}") from e
    except ValueError as e:
        raise MixerError(f"{cfg.model}: no sequence-classification head for this architecture: {e}") from e
    return model


def rm_lora_config(cfg: RMRunConfig) -> Any:
    """LoRA for a classifier: ``SEQ_CLS`` makes PEFT train and save the new ``score`` head in full."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), bias="none", task_type="SEQ_CLS")


def build_rm_trainer(cfg: RMRunConfig, callbacks: list[Any] | None = None) -> Any:
    """A ready ``RewardTrainer``; ``trainer.mixer_eval_pairs`` holds the held-out pairs (or None)."""
    require_train_deps()
    require_paths(cfg, "model", "data", "output_dir")
    cfg.validate()
    from mixer.train.data import resolve_parquet_files
    from mixer.train.reward import load_reward_dataset, split_eval

    resolve_parquet_files(cfg.data)
    from trl import RewardTrainer

    from mixer.train.deps import cuda_available
    from mixer.train.modeling import load_tokenizer

    if cfg.load_in_4bit:
        from mixer.train.modeling import check_qlora_supported

        check_qlora_supported()
    runtime = resolve_runtime(cfg, cuda=cuda_available())
    tokenizer = load_tokenizer(cfg, need_markers=False)
    pairs = load_reward_dataset(cfg.data, cfg.max_train_samples, margin=cfg.margin, full_gap=cfg.margin_full_gap)
    train, held_out = split_eval(pairs, cfg.eval_size, cfg.seed)
    args = rm_trl_config(cfg, len(train), num_proc=tokenise_processes(cfg.dataset_num_proc, len(train)))
    model = load_rm_model(cfg, runtime.attn_implementation, runtime.weights_dtype)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=rm_lora_config(cfg) if cfg.use_lora else None,
        callbacks=callbacks,
    )
    if len(trainer.train_dataset) == 0:
        raise MixerError(f"no training pair fits max_length={cfg.max_length} tokens")
    apply_mixed_precision(trainer, runtime.mixed_precision)
    trainer.mixer_runtime = runtime
    trainer.mixer_eval_pairs = held_out
    return trainer


def evaluate_held_out(trainer: Any, cfg: RMRunConfig) -> dict[str, Any] | None:
    """Score the held-out pairs with the trained model; write ``rm_eval.json`` and a ``metrics.jsonl`` line.

    A model sharded by FSDP or DeepSpeed ZeRO-3 all-gathers its weights in every forward, a collective that
    all ranks must join: there every rank scores the same pairs (the split is seeded, so they agree) and rank 0
    writes. A DDP replica is whole on rank 0, which scores alone.
    """
    held_out = trainer.mixer_eval_pairs
    if held_out is None:
        return None
    writer = trainer.is_world_process_zero()
    if not writer and not (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled",
                                                                                  False)):
        return None
    from mixer.train.reward import RewardScorer, pairwise_accuracy

    model = trainer.accelerator.unwrap_model(trainer.model)
    scorer = RewardScorer(model=model, tokenizer=trainer.processing_class,
                          batch_size=max(1, cfg.per_device_train_batch_size * 2))
    result: dict[str, Any] = {"step": trainer.state.global_step, **pairwise_accuracy(scorer, held_out, cfg.max_length)}
    if not writer:
        return result
    out = Path(cfg.output_dir)
    (out / EVAL_NAME).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with (out / METRICS_NAME).open("a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")
    over = (f"; {result['eval_pairs_over_max_length']} pairs longer than max_length={cfg.max_length} left out, "
            "as in training") if result["eval_pairs_over_max_length"] else ""
    if result["eval_pairs"]:
        logger.warning("held-out pairwise accuracy %.4f over %d pairs (mean reward gap %.4f)%s",
                       result["eval_pairwise_accuracy"], result["eval_pairs"], result["eval_mean_reward_gap"], over)
    else:
        logger.warning("no held-out pair could be scored%s", over)
    return result


def run_rm(cfg: RMRunConfig) -> dict[str, Any]:
    """Train and save the reward model and tokenizer to ``output_dir``, then score the held-out pairs."""
    trainer = build_rm_trainer(cfg)
    metrics = train_and_save(trainer, cfg)
    held_out = evaluate_held_out(trainer, cfg)
    return {**metrics, **(held_out or {})}
