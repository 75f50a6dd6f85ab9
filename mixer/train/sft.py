"""Supervised fine-tuning (full, LoRA or QLoRA) with TRL's SFTTrainer on a V2 mixture."""

from __future__ import annotations

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

logger = logging.getLogger("mixer.train")


def sft_trl_config(cfg: SFTRunConfig, n_processes: int | None = None) -> Any:
    """The ``SFTConfig`` for this recipe.

    The data arrives tokenised (``input_ids`` + ``assistant_masks``), so TRL's own
    ``assistant_only_loss`` stays off and TRL builds the labels from the mask column. Batching:

    - ``padding_free``: TRL flattens each micro-batch into one row with ``position_ids``; ``max_length``
      is None for TRL because the rows are already truncated (TRL rejects it without packing).
    - ``packed``: best-fit-decreasing bins of ``max_length`` tokens (TRL then runs padding-free too).
    - ``padded``: right padding to the longest row of the micro-batch.
    """
    from trl import SFTConfig

    kwargs = training_kwargs(cfg, n_processes)
    kwargs.update(
        max_length=None if cfg.batching == "padding_free" else cfg.max_length,
        packing=cfg.batching == "packed",
        packing_strategy=cfg.packing_strategy,
        padding_free=cfg.batching in ("padding_free", "packed"),
        assistant_only_loss=False,
        completion_only_loss=False,
    )
    return make_trl_config(SFTConfig, merge_trl_args(kwargs, cfg, SFTConfig))


def build_sft_trainer(cfg: SFTRunConfig, callbacks: list[Any] | None = None) -> Any:
    """Load tokenizer, data and model and return a ready ``SFTTrainer`` (tests inspect it before training)."""
    require_train_deps()
    require_paths(cfg, "model", "data", "output_dir")
    cfg.validate()
    from mixer.train.data import SFT_COLUMNS, load_parquet, resolve_parquet_files, tokenize_sft

    resolve_parquet_files(cfg.data)  # a wrong --data fails before the slow imports
    from trl import SFTTrainer

    from mixer.train.modeling import choose_attn_implementation, load_model, load_tokenizer, lora_config

    if cfg.load_in_4bit:
        from mixer.train.modeling import check_qlora_supported

        check_qlora_supported()  # before any loading: the error must be the first thing a CPU user sees
    args = sft_trl_config(cfg)
    tokenizer = load_tokenizer(cfg, need_markers=cfg.assistant_only_loss)
    raw = load_parquet(cfg.data, SFT_COLUMNS, cfg.max_train_samples)
    with args.main_process_first(desc="tokenising"):
        train = tokenize_sft(raw, tokenizer, cfg.max_length, cfg.assistant_only_loss, cfg.dataset_num_proc)
    attn = choose_attn_implementation(cfg.attn_implementation)
    if cfg.batching != "padded" and not attn.startswith("flash"):
        logger.info("%s batches with %s: transformers masks the flattened sequences from position_ids "
                    "(correct; FlashAttention's varlen kernel is what makes it fast)", cfg.batching, attn)
    model = load_model(cfg, attn)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.use_lora else None,
        callbacks=callbacks,
    )


def run_sft(cfg: SFTRunConfig) -> dict[str, Any]:
    """Train, save the final model (or adapter) and tokenizer to ``output_dir``; return the train metrics."""
    return train_and_save(build_sft_trainer(cfg), cfg)
