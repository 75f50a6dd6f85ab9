"""What one training method (SFT, DPO, a reward model) adds to the run :mod:`mixer.train.trainer` builds."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from mixer.core.outdir import TRAIN_MARKER
from mixer.train.config import RunConfig

RESOLVED_CONFIG_NAME = TRAIN_MARKER  # also what marks a folder as an earlier run of ours
METRICS_NAME = "metrics.jsonl"

logger = logging.getLogger("mixer.train")


def say_dropped(loaded: int, trainer: Any, what: str, why: str) -> int:
    """Say at WARNING how many of the ``loaded`` rows the TRL trainer's own preprocessing left out of its
    ``train_dataset`` (TRL filters over-long pairs without a word); return how many."""
    dropped = loaded - len(trainer.train_dataset)
    if dropped > 0:
        logger.warning("dropped %d of %d %s: %s", dropped, loaded, what, why)
    return dropped


class Method:
    """What one training method adds to the common run; the defaults are a causal LM on conversations."""

    trainer = ""  # the TRL trainer class
    auto_class = "AutoModelForCausalLM"
    #: what the model's from_pretrained takes beyond mixer's loading settings (read, never changed)
    model_kwargs: ClassVar[dict[str, Any]] = {}

    def needs_markers(self, cfg: RunConfig) -> bool:
        """Whether the chat template must mark the assistant turns (``{% generation %}``) for the loss mask."""
        return False

    def load(self, cfg: RunConfig) -> Any:
        """The training rows, read from ``cfg.data`` (before the model: a bad file fails fast)."""
        raise NotImplementedError

    def trl_kwargs(self, cfg: RunConfig, n_rows: int) -> dict[str, Any]:
        """The TRL config fields this method derives from mixer's settings."""
        return {}

    def prepare(self, cfg: RunConfig, rows: Any, tokenizer: Any, args: Any) -> Any:
        """The rows as the TRL trainer takes them (SFT tokenises here)."""
        return rows

    def trainer_kwargs(self, cfg: RunConfig) -> dict[str, Any]:
        """What the TRL trainer's constructor takes beyond model, args, data and tokenizer (RLOO: the reward)."""
        return {}

    def ready(self, trainer: Any, cfg: RunConfig) -> None:
        """Checks and attachments once the trainer is built."""

    def finish(self, trainer: Any, cfg: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
        """After training and saving: what the run adds to its metrics (the reward model's held-out accuracy)."""
        return metrics
