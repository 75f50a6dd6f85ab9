"""Supervised fine-tuning (full, LoRA or QLoRA) with TRL's SFTTrainer on a V2 mixture."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from mixer.train.common import (
    make_trl_config,
    merge_trl_args,
    require_paths,
    train_and_save,
    training_kwargs,
)
from mixer.train.config import SFTRunConfig
from mixer.train.deps import require_train_deps
from mixer.train.precision import apply_mixed_precision
from mixer.train.runtime import resolve_runtime, tokenise_processes

logger = logging.getLogger("mixer.train")


def sft_trl_config(cfg: SFTRunConfig, n_processes: int | None = None, num_proc: int | None = None) -> Any:
    """The ``SFTConfig`` for this recipe.

    The data arrives tokenised (``input_ids`` + ``assistant_masks``), so TRL's own
    ``assistant_only_loss`` stays off and TRL builds the labels from the mask column. Batching:

    - ``padding_free``: TRL flattens each micro-batch into one row with ``position_ids``; ``max_length``
      is None for TRL because the rows are already truncated (TRL rejects it without packing).
    - ``packed``: best-fit-decreasing bins of ``max_length`` tokens (TRL then runs padding-free too).
    - ``padded``: right padding to the longest row of the micro-batch.
    """
    from trl import SFTConfig

    kwargs = training_kwargs(cfg, n_processes, num_proc)
    kwargs.update(
        max_length=None if cfg.batching == "padding_free" else cfg.max_length,
        packing=cfg.batching == "packed",
        packing_strategy=cfg.packing_strategy,
        padding_free=cfg.batching in ("padding_free", "packed"),
        assistant_only_loss=False,
        completion_only_loss=False,
    )
    return make_trl_config(SFTConfig, merge_trl_args(kwargs, cfg, SFTConfig))


def warn_small_micro_batches(cfg: SFTRunConfig, train: Any, sample: int = 2000) -> str | None:
    """Say at WARNING when a GPU's micro-batches would be launch-bound, and which per-device batch keeps
    the recipe's examples per step (the Tulu recipe's 2 per device is for 8 GPUs). The mean length comes
    from the first ``sample`` tokenised rows."""
    from mixer.train.batch import larger_micro_batch_hint
    from mixer.train.common import world_size

    n = min(sample, len(train))
    if n == 0:
        return None
    lengths = [len(x) for x in train.select(range(n))["input_ids"]]
    hint = larger_micro_batch_hint(sum(lengths) / n, cfg.per_device_train_batch_size, cfg.effective_batch_size,
                                   world_size())
    if hint:
        logger.warning("batch size: %s", hint)
    return hint


def build_sft_trainer(cfg: SFTRunConfig, callbacks: list[Any] | None = None) -> Any:
    """Load tokenizer, data and model and return a ready ``SFTTrainer`` (tests inspect it before training).

    The host-dependent choices (attention kernel, batching, fp32 master weights) are resolved first and
    printed at WARNING; ``trainer.mixer_runtime`` keeps them for the saved config.
    """
    require_train_deps()
    require_paths(cfg, "model", "data", "output_dir")
    cfg.validate()
    from mixer.train.data import SFT_COLUMNS, load_parquet, resolve_parquet_files, tokenize_sft

    resolve_parquet_files(cfg.data)  # a wrong --data fails before the slow imports
    from trl import SFTTrainer

    from mixer.train.deps import cuda_available
    from mixer.train.modeling import load_model, load_tokenizer, lora_config

    if cfg.load_in_4bit:
        from mixer.train.modeling import check_qlora_supported

        check_qlora_supported()  # before any loading: the error must be the first thing a CPU user sees
    runtime = resolve_runtime(cfg, cuda=cuda_available())
    cfg = dataclasses.replace(cfg, batching=runtime.batching)
    tokenizer = load_tokenizer(cfg, need_markers=cfg.assistant_only_loss)
    from mixer.train.tokenized import is_tokenized

    if is_tokenized(cfg.data):  # `mixer tokenize` output: checked against this run's tokenizer, not redone
        from mixer.train.tokenized import load_for_training

        train, cfg = load_for_training(cfg, tokenizer)
        args = sft_trl_config(cfg)
    else:
        raw = load_parquet(cfg.data, SFT_COLUMNS, cfg.max_train_samples)
        if cfg.check_template and cfg.assistant_only_loss:
            from mixer.train.template_check import check_before_training

            check_before_training(raw, tokenizer, cfg.max_length)
        num_proc = tokenise_processes(cfg.dataset_num_proc, len(raw))
        args = sft_trl_config(cfg, num_proc=num_proc)
        with args.main_process_first(desc="tokenising"):
            train = tokenize_sft(raw, tokenizer, cfg.max_length, cfg.assistant_only_loss, num_proc)
    if cuda_available() and cfg.batching != "packed":
        warn_small_micro_batches(cfg, train)
    model = load_model(cfg, runtime.attn_implementation, runtime.weights_dtype)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.use_lora else None,
        callbacks=callbacks,
    )
    apply_mixed_precision(trainer, runtime.mixed_precision)
    trainer.mixer_runtime = runtime
    return trainer


def run_sft(cfg: SFTRunConfig) -> dict[str, Any]:
    """Train, save the final model (or adapter) and tokenizer to ``output_dir``; return the train metrics."""
    return train_and_save(build_sft_trainer(cfg), cfg)
