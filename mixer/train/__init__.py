"""``mixer train``: a thin layer over TRL for SFT, (Q)LoRA, DPO and reward models on ``mixer build``'s mixtures.

TRL does the training and its config classes own its settings (:mod:`mixer.train.config`). Mixer adds
what TRL lacks: reading the built Parquet with the Tulu chat format and an assistant-only loss mask
(:mod:`~mixer.train.data`), an effective batch that derives gradient accumulation, and the host-dependent
pieces in :mod:`mixer.train.accel` (attention kernel, bf16 compute copies, model loading, launching through
``accelerate`` on several GPUs). One builder (:mod:`~mixer.train.trainer`) makes every TRL trainer;
:mod:`~mixer.train.sft`, :mod:`~mixer.train.dpo` and :mod:`~mixer.train.rm` say what each method adds.

Importing this package is cheap: torch, transformers and TRL are imported only where a command needs
them, so ``mixer`` works without the ``[train]`` extra and says how to install it when it is missing.
"""

from __future__ import annotations

from mixer.train.accel.batch import gradient_accumulation_steps
from mixer.train.config import RunConfig, load_config

__all__ = ["RunConfig", "gradient_accumulation_steps", "load_config"]
