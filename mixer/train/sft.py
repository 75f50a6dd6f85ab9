"""Supervised fine-tuning (full, LoRA or QLoRA) with TRL's SFTTrainer on a V2 mixture.

The rows arrive tokenised (``input_ids`` + ``assistant_masks``, :func:`mixer.train.data.tokenize_sft`), so
every batching mode sees the same tokens and truncation; TRL builds the labels from the mask column.
"""

from __future__ import annotations

import logging
from typing import Any

from mixer.train.config import RunConfig
from mixer.train.method import Method

logger = logging.getLogger("mixer.train")


class SFT(Method):
    trainer = "SFTTrainer"

    def load(self, cfg: RunConfig) -> Any:
        from mixer.train.tokenized import is_tokenized, read_rows

        if is_tokenized(cfg.data):  # `mixer tokenize` output: checked in prepare, not tokenized again
            return read_rows(cfg.data, cfg.max_train_samples)
        from mixer.train.data import SFT_COLUMNS, load_parquet

        return load_parquet(cfg.data, SFT_COLUMNS, cfg.max_train_samples)

    def needs_markers(self, cfg: RunConfig) -> bool:
        return bool(cfg.assistant_only_loss)

    def trl_kwargs(self, cfg: RunConfig, n_rows: int) -> dict[str, Any]:
        """Batching: ``padding_free`` flattens each micro-batch into one row with ``position_ids`` (``max_length``
        None for TRL: the rows are already truncated, and TRL rejects it without packing); ``packed`` fills
        best-fit-decreasing bins of ``max_length`` tokens (then runs padding-free too); ``padded`` pads right."""
        from mixer.train.tokenized import is_tokenized, trl_overrides

        return {"max_length": None if cfg.batching == "padding_free" else cfg.max_length,
                "packing": cfg.batching == "packed", "padding_free": cfg.batching in ("padding_free", "packed"),
                "assistant_only_loss": False, "completion_only_loss": False,
                **(trl_overrides(cfg.data) if is_tokenized(cfg.data) else {})}  # packed rows: not packed again

    def prepare(self, cfg: RunConfig, rows: Any, tokenizer: Any, args: Any) -> Any:
        from mixer.train.data import tokenize_sft
        from mixer.train.deps import cuda_available
        from mixer.train.tokenized import check_for_training, is_tokenized

        if is_tokenized(cfg.data):  # made with this run's tokenizer and template, or refused naming both hashes
            check_for_training(cfg, tokenizer)
            return rows
        if cfg.check_template and cfg.assistant_only_loss:
            from mixer.train.template_check import check_before_training

            check_before_training(rows, tokenizer, cfg.max_length)
        with args.main_process_first(desc="tokenising"):
            rows = tokenize_sft(rows, tokenizer, cfg.max_length, cfg.assistant_only_loss, args.dataset_num_proc)
        if cuda_available() and cfg.batching != "packed":
            warn_small_micro_batches(cfg, rows)
        return rows


def warn_small_micro_batches(cfg: RunConfig, train: Any, sample: int = 2000) -> str | None:
    """Say at WARNING when a GPU's micro-batches would be launch-bound, and which per-device batch keeps
    the recipe's examples per step (the Tulu recipe's 2 per device is for 8 GPUs). The mean length comes
    from the first ``sample`` tokenised rows."""
    from mixer.train.accel.batch import larger_micro_batch_hint
    from mixer.train.accel.host import world_size

    n = min(sample, len(train))
    if n == 0:
        return None
    lengths = [len(x) for x in train.select(range(n))["input_ids"]]
    hint = larger_micro_batch_hint(sum(lengths) / n, cfg.per_device_train_batch_size, cfg.effective_batch_size,
                                   world_size())
    if hint:
        logger.warning("batch size: %s", hint)
    return hint
