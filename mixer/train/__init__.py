"""``mixer train``: a thin layer over TRL for SFT, (Q)LoRA, DPO and reward models on ``mixer build``'s mixtures.

TRL does the training. This package only turns one command plus a YAML recipe (``train/*.yaml``) into
the right TRL config: it resolves the effective batch into gradient accumulation, reads the built
Parquet, applies the Tulu chat format with ``{% generation %}`` markers so the loss covers only the
assistant turns, picks the attention kernel, and launches through ``accelerate`` on several GPUs.

Importing this package is cheap: torch, transformers and TRL are imported only where a command needs
them, so ``mixer`` works without the ``[train]`` extra and says how to install it when it is missing.
"""

from __future__ import annotations

from mixer.train.batch import gradient_accumulation_steps
from mixer.train.config import DPORunConfig, MergeRunConfig, RMRunConfig, SFTRunConfig, load_config

__all__ = ["DPORunConfig", "MergeRunConfig", "RMRunConfig", "SFTRunConfig", "gradient_accumulation_steps",
           "load_config"]
