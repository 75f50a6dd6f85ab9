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
from typing import Any, ClassVar

from mixer.core.errors import MixerError
from mixer.train.config import RunConfig
from mixer.train.method import METRICS_NAME, Method, say_dropped

logger = logging.getLogger("mixer.train")

EVAL_NAME = "rm_eval.json"


def warmup_steps(cfg: RunConfig, n_train: int) -> float | int:
    """``warmup_steps`` (below 1 a ratio: the recipes' ``warmup_ratio``) of the run's optimizer steps, and at
    least ``min_warmup_steps`` (Llama 2: 3 %, min 5).

    With no minimum the ratio is passed as is (transformers turns a float below 1 into a ratio).
    """
    if cfg.warmup_steps >= 1:  # a count of steps, not a ratio
        return max(int(cfg.warmup_steps), cfg.min_warmup_steps)
    if cfg.min_warmup_steps <= 0:
        return cfg.warmup_steps
    if cfg.max_steps > 0:
        total = cfg.max_steps
    else:
        per_epoch = max(1, math.ceil(n_train / cfg.effective_batch_size))
        total = max(1, math.ceil(per_epoch * cfg.num_train_epochs))
    return min(total, max(cfg.min_warmup_steps, math.ceil(cfg.warmup_steps * total)))


class RM(Method):
    """Pairs (with Llama 2's margin when asked), a seeded held-out split, and a one-label classifier."""

    trainer = "RewardTrainer"
    auto_class = "AutoModelForSequenceClassification"  # the base model plus a new one-scalar head
    model_kwargs: ClassVar[dict[str, Any]] = {"num_labels": 1}
    held_out: Any = None

    def load(self, cfg: RunConfig) -> Any:
        from mixer.train.reward import load_reward_dataset, split_eval

        pairs = load_reward_dataset(cfg.data, cfg.max_train_samples, margin=cfg.margin, full_gap=cfg.margin_full_gap)
        train, self.held_out = split_eval(pairs, cfg.eval_size, cfg.seed)
        self.n_train = len(train)
        return train

    def trl_kwargs(self, cfg: RunConfig, n_rows: int) -> dict[str, Any]:
        # pairs longer than max_length are dropped by TRL; the held-out pairs are scored once, at the end
        return {"warmup_steps": warmup_steps(cfg, n_rows), "eval_strategy": "no"}

    def ready(self, trainer: Any, cfg: RunConfig) -> None:
        say_dropped(self.n_train, trainer, "training pair(s)", f"chosen or rejected longer than max_length="
                    f"{cfg.max_length} tokens (TRL's RewardTrainer leaves them out)")
        if len(trainer.train_dataset) == 0:
            raise MixerError(f"no training pair fits max_length={cfg.max_length} tokens")
        trainer.mixer_eval_pairs = self.held_out
        from mixer.train.runlog import decide

        decide("reward head", "a new one-scalar `score` layer", "initialised at random and trained; the model's "
               "lm_head is not used")

    def finish(self, trainer: Any, cfg: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**metrics, **(evaluate_held_out(trainer, cfg) or {})}


def evaluate_held_out(trainer: Any, cfg: RunConfig) -> dict[str, Any] | None:
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
        logger.info("held-out pairwise accuracy %.4f over %d pairs (mean reward gap %.4f)%s",
                       result["eval_pairwise_accuracy"], result["eval_pairs"], result["eval_mean_reward_gap"], over)
    else:
        logger.warning("no held-out pair could be scored%s", over)
    return result
